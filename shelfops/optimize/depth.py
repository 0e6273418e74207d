"""Re-rank depth for a latency budget: how many retrieved products one search can afford to re-rank.

A search answers in stages: retrieval (the server's: BM25 and a dense retriever fused, or
BM25 alone, over the whole catalogue), re-rank (the
cross-encoder scores the top ``depth`` retrieved products) and the response. Re-ranking
deeper finds more of what the shopper wants and costs one model call per product more, so
the depth is a latency decision that depends on the machine and on the variant the optimize
stage chose. For each candidate depth this measures, over the whole catalogue:

* the latency of one search at concurrency 1, retrieval + re-rank as the server runs them
  (the variant's tuned threads, each of its workers scoring its share of the products);
* NDCG@10 and Recall@10 of the re-ranked list against the validation judgements (products
  nobody judged count as not relevant), beside BM25's own list.

:func:`choose_depth` (pure) keeps the deepest depth whose p99 fits the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from shelfops.train.baselines import BM25Index
from shelfops.train.retrieval import catalogue_eval


@dataclass
class DepthPoint:
    depth: int
    p50_ms: float  # retrieval + re-rank of one search, concurrency 1
    p99_ms: float
    retrieval_p50_ms: float
    ndcg10: float  # mean over validation queries, whole catalogue
    recall10: float
    searches: int  # timed searches behind p50 / p99

    def to_dict(self) -> dict:
        return asdict(self)


def candidate_depths(depths, quality_depth: int | None) -> list[int]:
    """The depths worth timing: none deeper than the one the train stage chose for quality on
    validation (deeper would cost latency for no measured gain); the shallowest if all are."""
    keep = sorted(d for d in depths if quality_depth is None or d <= quality_depth)
    return keep or [min(depths)]


def choose_depth(points: list[DepthPoint], budget_ms: float) -> tuple[int, str]:
    """The deepest re-rank whose p99 is within ``budget_ms``; the shallowest if none is."""
    if not points:
        raise ValueError("choose_depth: no measured depths")
    fits = [p for p in points if p.p99_ms <= budget_ms]
    if fits:
        p = max(fits, key=lambda x: x.depth)
        return p.depth, (f"re-rank depth {p.depth}: the deepest whose search p99 ({p.p99_ms:.1f} ms) is within "
                         f"{budget_ms:g} ms; NDCG@10 over the catalogue {p.ndcg10:.4f}")
    p = min(points, key=lambda x: x.depth)
    return p.depth, (f"re-rank depth {p.depth}: no depth meets {budget_ms:g} ms (the shallowest takes "
                     f"p99 {p.p99_ms:.1f} ms); NDCG@10 over the catalogue {p.ndcg10:.4f}")


def measure_depths(shipped, items: pl.DataFrame, judged: pl.DataFrame, *, lo: float, hi: float,
                   depths: tuple[int, ...], queries: int, seconds: float, min_searches: int = 40,
                   threshold: float = 0.5, seed: int = 0,
                   retrieve: Callable[[list[str], int], np.ndarray] | None = None,
                   ) -> tuple[list[DepthPoint], dict]:
    """Every depth's latency and quality (see the module's docstring), and BM25's own quality.

    ``shipped``: the chosen variant as it ships (``optimize.shipped.Shipped``); ``items`` the
    catalogue (item_id, text); ``judged`` graded (query, item_id) pairs, e.g. the validation split;
    ``retrieve(queries, n)``: the server's retriever (``(queries, n)`` catalogue rows, -1 padded;
    the hybrid of train.catalogue), BM25 alone by default."""

    texts, ids = items["text"].to_list(), items["item_id"].to_list()
    depths = tuple(sorted({min(d, len(ids)) for d in depths}))
    bm = BM25Index(texts)
    retrieve = retrieve or (lambda q, n: bm.search(q, n)[0])
    qs = judged["query"].unique(maintain_order=True).to_list()
    rng = np.random.default_rng(seed)
    qs = [qs[i] for i in sorted(rng.permutation(len(qs))[:queries])]
    judged = judged.filter(pl.col("query").is_in(qs) & pl.col("item_id").is_in(ids))
    dmax = max(depths)
    rows = np.asarray(retrieve(qs, max(dmax, 10)))
    shipped.workers = int(shipped.serving.get("workers", 1))  # as the server's batcher runs it
    flat = shipped.run([q for q in qs for _ in range(dmax)], [texts[i] for r in rows for i in r[:dmax]])
    scores = np.asarray(flat, dtype=np.float64).reshape(len(qs), dmax)
    scores[rows[:, :dmax] < 0] = -np.inf  # fewer hits than the depth: nothing there to re-rank
    kw = dict(lo=lo, hi=hi, threshold=threshold, ks=(10,))
    bm25 = catalogue_eval(None, None, qs, judged, ids, retrieved=bm.search(qs, 10)[0], **kw)
    retrieved = catalogue_eval(None, None, qs, judged, ids, retrieved=rows[:, :10], **kw)
    quality = {}
    for d in depths:
        order = np.argsort(-scores[:, :d], axis=1, kind="stable")
        top = np.concatenate([np.take_along_axis(rows[:, :d], order, axis=1), rows[:, d:]], axis=1)
        quality[d] = catalogue_eval(None, None, qs, judged, ids, retrieved=top, **kw)
    lat, ret = _time_searches(shipped, retrieve, qs, texts, depths, min_searches, seconds, rng)
    points = [DepthPoint(d, float(np.percentile(lat[d], 50)), float(np.percentile(lat[d], 99)),
                         float(np.percentile(ret[d], 50)), float(np.nanmean(quality[d]["ndcg@10"])),
                         float(np.nanmean(quality[d]["recall@10"])), len(lat[d])) for d in depths]
    return points, {"queries": len(qs), "bm25_ndcg10": float(np.nanmean(bm25["ndcg@10"])),
                    "bm25_recall10": float(np.nanmean(bm25["recall@10"])), "catalogue": len(ids),
                    "retriever_ndcg10": float(np.nanmean(retrieved["ndcg@10"])),
                    "retriever_recall10": float(np.nanmean(retrieved["recall@10"]))}


def _time_searches(shipped, retrieve, qs: list[str], texts: list[str], depths: tuple[int, ...], min_searches: int,
                   seconds: float, rng: np.random.Generator) -> tuple[dict, dict]:
    """Wall times (ms) of whole searches at each depth and of their retrieval alone. The depths
    take turns, one search each, so a slow moment of a shared machine lands on all of them
    instead of on whichever depth was being measured then."""
    # warm-up: the re-ranker's first call, and the retriever's first single query (which opens,
    # and the first time exports, the query encoder's ONNX session: seconds, once per process)
    shipped.run([qs[0]] * max(depths), texts[:max(depths)])
    retrieve([qs[0]], max(depths))
    lat: dict[int, list[float]] = {d: [] for d in depths}
    ret: dict[int, list[float]] = {d: [] for d in depths}
    t_end = time.perf_counter() + seconds * len(depths)
    while len(lat[depths[0]]) < min_searches or time.perf_counter() < t_end:
        for d in depths:
            q = qs[int(rng.integers(len(qs)))]
            t0 = time.perf_counter()
            r = np.asarray(retrieve([q], d))
            t1 = time.perf_counter()
            shipped.run([q] * d, [texts[i] for i in r[0] if i >= 0])
            t2 = time.perf_counter()
            lat[d].append((t2 - t0) * 1e3)
            ret[d].append((t1 - t0) * 1e3)
    return ({d: np.asarray(v) for d, v in lat.items()}, {d: np.asarray(v) for d, v in ret.items()})
