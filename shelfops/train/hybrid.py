"""Hybrid retrieval: keyword (BM25) and dense (FAISS) candidate lists fused by rank.

Two retrievers miss different products: BM25 misses a product described in other words
than the query's, a bi-encoder misses exact part numbers, sizes and brands it never saw.
Fusing their ranked lists finds both. Fusion is weighted reciprocal rank (Cormack et al.,
SIGIR 2009): a product's score is ``sum_r w_r / (k + rank_r)`` over the retrievers that
returned it, with the dense list weighted ``w`` and the lexical one ``1 - w``. It uses ranks
only, so it needs no calibration between BM25's unbounded scores and cosines, which is what
lets one default carry to a new shop; ``w`` is chosen on validation (``choose``), and the
grid holds 0 and 1, so a shop where one retriever alone is best gets that retriever.

Also here, because they read the same fused lists: mining hard negatives for training
(:func:`hard_negatives`) and the whole-catalogue systems of an evaluation
(:func:`rerank`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

#: RRF's constant: 60 is the value of the original paper and of Elasticsearch, OpenSearch and
#: Vespa's defaults; it damps the head of each list so that one retriever's first place cannot
#: outvote agreement further down. Not tuned here (the weight is).
RRF_K = 60
#: dense weights tried on validation: 0 is BM25 alone, 1 the dense retriever alone
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the default where nothing was chosen: both retrievers count the same
DEFAULT_WEIGHT = 0.5


def fuse(lexical: np.ndarray, dense: np.ndarray, weight: float, *, n: int, k: int = RRF_K) -> np.ndarray:
    """Weighted reciprocal-rank fusion of two ``(queries, depth)`` arrays of item rows (-1 =
    padding), best first, into ``(queries, n)`` rows (-1 padded). ``weight`` is the dense
    list's, ``1 - weight`` the lexical one's; ties keep the lexical list's order first."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be in [0, 1], got {weight}")
    lexical, dense = np.atleast_2d(lexical), np.atleast_2d(dense)
    if len(lexical) != len(dense):
        raise ValueError(f"fuse: {len(lexical)} lexical rows vs {len(dense)} dense rows")
    out = np.full((len(lexical), n), -1, dtype=np.int64)
    lw = (1.0 - weight) / (k + 1.0 + np.arange(lexical.shape[1]))
    dw = weight / (k + 1.0 + np.arange(dense.shape[1]))
    for row in range(len(lexical)):
        ids = np.concatenate([lexical[row], dense[row]])
        w = np.concatenate([lw, dw])
        keep = (ids >= 0) & (w > 0)
        ids, w = ids[keep], w[keep]
        if not len(ids):
            continue
        uniq, first, inv = np.unique(ids, return_index=True, return_inverse=True)
        score = np.bincount(inv, weights=w)
        # best score first; among equals, the earlier position in (lexical, dense) first
        order = np.lexsort((first, -score))[:n]
        out[row, : len(order)] = uniq[order]
    return out


@dataclass(frozen=True)
class Candidates:
    """Both retrievers' ranked rows for a list of queries (computed once, fused many times)."""

    lexical: np.ndarray  # (queries, depth) item rows, -1 padded
    dense: np.ndarray

    def fused(self, weight: float, n: int) -> np.ndarray:
        if weight <= 0.0:
            return _pad(self.lexical, n)
        if weight >= 1.0:
            return _pad(self.dense, n)
        return fuse(self.lexical, self.dense, weight, n=n)


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    if a.shape[1] >= n:
        return a[:, :n]
    return np.concatenate([a, np.full((len(a), n - a.shape[1]), -1, dtype=a.dtype)], axis=1)


def final_order(scores: np.ndarray, blend: float = 0.0, *, k: int = RRF_K) -> np.ndarray:
    """The re-ranked order of candidates given in retrieved order (last axis): by the
    re-ranker's ``scores`` alone (``blend`` 0), or by reciprocal-rank fusion of the re-ranker's
    order (weight ``1 - blend``) with the retrieved order (``blend``), which keeps the lexical
    and dense evidence in the final ranking where the re-ranker is unsure."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    if blend <= 0:
        return order
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[-1]) + np.zeros_like(order), axis=-1)
    fused = (1 - blend) / (k + 1.0 + rank) + blend / (k + 1.0 + np.arange(scores.shape[-1]))
    fused = np.where(np.isneginf(scores), -np.inf, fused)
    return np.argsort(-fused, axis=-1, kind="stable")


def rerank(candidates: np.ndarray, scores: Callable[[np.ndarray], np.ndarray], depth: int,
           blend: float = 0.0) -> np.ndarray:
    """Re-order each row's first ``depth`` candidates by ``scores`` (a ``(queries, depth)``
    array for the given rows, higher first; see :func:`final_order` for ``blend``); the rest
    keep their retrieved order."""
    head = candidates[:, :depth]
    s = np.where(head >= 0, scores(head), -np.inf)
    order = final_order(s, blend)
    return np.concatenate([np.take_along_axis(head, order, axis=1), candidates[:, depth:]], axis=1)


def pool_order(reranker: np.ndarray, lexical: np.ndarray, dense: np.ndarray, *, weight: float,
               depth: int, blend: float = 0.0) -> np.ndarray:
    """The order the served pipeline gives one judged pool if the pool were all it could
    retrieve: BM25's list holds the products sharing a query term (``lexical`` > 0) in its
    order, the dense list every product in its order, fused with ``weight`` (:func:`fuse`; at 0
    only BM25's list), and the first ``depth`` of that are re-ranked by ``reranker`` with
    ``blend`` (:func:`rerank`). Products no list kept, which the server would never show, follow
    in the order given. Positions into the pool, best first. This is how the re-ranker is judged
    as it serves, beside its own scores alone."""
    reranker, lexical, dense = (np.asarray(a, dtype=np.float64) for a in (reranker, lexical, dense))
    if not len(reranker) == len(lexical) == len(dense):
        raise ValueError(f"pool_order: {len(reranker)} re-ranker, {len(lexical)} lexical and "
                         f"{len(dense)} dense scores")
    lex = np.argsort(-lexical, kind="stable")
    lex = lex[lexical[lex] > 0]
    den = np.argsort(-dense, kind="stable")
    kept = fuse(lex[None, :], den[None, :], weight, n=len(dense))[0]
    kept = kept[kept >= 0]
    served = rerank(kept[None, :], lambda head: reranker[head], depth, blend)[0]
    return np.concatenate([served, np.setdiff1d(np.arange(len(dense)), kept)])


@dataclass(frozen=True)
class Choice:
    weight: float
    depth: int
    value: float  # the validation metric of the chosen settings
    table: dict[str, float]  # "w=0.5,depth=20,blend=0" -> validation metric
    blend: float = 0.0

    def to_dict(self) -> dict:
        return {"fusion_weight": self.weight, "rerank_depth": self.depth, "rerank_blend": self.blend,
                "validation": self.value, "grid": self.table}


def choose(metric: Callable[..., float], weights: Sequence[float] = WEIGHTS,
           depths: Sequence[int] = (10, 20, 30, 50), *, blends: Sequence[float] = (0.0,),
           tolerance: float = 0.0) -> Choice:
    """The (fusion weight, re-rank depth, blend) with the best validation ``metric(w, d, b)``;
    among settings within ``tolerance`` of the
    best, the shallowest depth (each product re-ranked costs a model call per search), then
    the smallest blend (the re-ranker's own order), then the weight nearest the middle (the
    most robust to a shift between retrievers)."""
    if not weights or not depths or not blends:
        raise ValueError("choose: empty weight, depth or blend grid")
    grid = [(w, d, b) for w in weights for d in depths for b in blends]
    table = {g: float(metric(*g)) for g in grid}
    best = max(table.values())
    ok = [(d, b, abs(w - DEFAULT_WEIGHT), w) for (w, d, b), v in table.items() if v >= best - tolerance]
    d, b, _, w = min(ok)
    return Choice(weight=float(w), depth=int(d), blend=float(b), value=table[(w, d, b)],
                  table={f"w={w:g},depth={d},blend={b:g}": round(v, 6) for (w, d, b), v in table.items()})


def negative_triples(negatives: pl.DataFrame, judged: pl.DataFrame, *, relevant: float,
                     seed: int = 0) -> pl.DataFrame:
    """Each mined negative (query, item_id) paired with one of its query's judged products
    graded at least ``relevant`` (drawn at random): rows (query, positive, negative). A query
    with no such product gives no triple (nothing is known to belong above its negatives)."""
    pos = judged.filter(pl.col("grade") >= relevant).group_by("query").agg(pl.col("item_id").alias("pos"))
    rows = negatives.join(pos, on="query", how="inner")
    rng = np.random.default_rng(seed)
    pick = [p[int(rng.integers(len(p)))] for p in rows["pos"].to_list()]
    return pl.DataFrame({"query": rows["query"], "positive": pick, "negative": rows["item_id"]},
                        schema={"query": pl.String, "positive": pl.String, "negative": pl.String})


def hard_negatives(queries: Sequence[str], candidates: np.ndarray, judged: pl.DataFrame,
                   item_ids: Sequence[str], *, per_query: int, skip: int, seed: int = 0) -> pl.DataFrame:
    """Negatives a retriever brings: for each query, ``per_query`` products drawn at random
    from its retrieved rows below the first ``skip``, leaving out every product judged for it
    (whatever its grade). Rows (query, item_id).

    The first few unjudged hits are skipped because they are the ones most likely to be
    relevant products nobody judged (false negatives); the rest are what the re-ranker must
    learn to demote, which judged pools alone never show it."""
    rng = np.random.default_rng(seed)
    seen: dict[str, set[str]] = {}
    for q, iid in judged.select("query", "item_id").iter_rows():
        seen.setdefault(q, set()).add(iid)
    qs, ids = [], []
    for q, row in zip(queries, candidates):
        pool = [item_ids[i] for i in row[skip:] if i >= 0 and item_ids[i] not in seen.get(q, ())]
        if not pool:
            continue
        take = rng.choice(len(pool), size=min(per_query, len(pool)), replace=False)
        qs += [q] * len(take)
        ids += [pool[i] for i in sorted(take)]
    return pl.DataFrame({"query": qs, "item_id": ids}, schema={"query": pl.String, "item_id": pl.String})
