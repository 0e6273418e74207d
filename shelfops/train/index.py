"""FAISS index over catalogue embeddings, chosen by catalogue size.

Embeddings are L2-normalised, so inner product = cosine. Up to ``exact_max`` items an
exact flat index (no recall loss, fast enough); beyond, IVF-Flat with ~4 sqrt(n) lists. HNSW
stays available by name but is not chosen: shoppers' queries are short texts that lie apart
from the product texts they find, and a graph walked from product to product loses them (at
590k products, Recall@10 on the synthetic shop's queries: HNSW efSearch 128 0.85 and 1024 0.96
at 2.5 ms; IVF nprobe 32 0.98 at 1.6 ms, half the build time, less memory; bench/RESULTS.md).
An approximate index is tuned as it is built: its search breadth (IVF's nprobe, HNSW's
efSearch) is doubled until its Recall@10 against exact search reaches ``target_recall`` with
95% confidence (0.95: the recall a shopper cannot tell from exact, at a fraction of its cost;
a shop that wants more sets it) on ``probes``: real queries where the caller has them (past
searches, validation queries), else vectors near the catalogue's own, which overestimate recall
(0.996 where real queries got 0.85). It starts from a breadth already cheap at a million items (nprobe 16,
efSearch 128), so tuning only ever widens it. What it reached, the build time and the bytes per
item are recorded with the index. Files are FAISS's own binary format (no pickle).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shelfops.errors import ModelError


@dataclass
class IndexInfo:
    kind: str
    n: int
    dim: int
    params: dict


def choose_kind(n: int, exact_max: int = 50_000) -> str:
    return "flat" if n <= exact_max else "ivf"


def build_index(
    emb: np.ndarray,
    *,
    kind: str = "auto",
    hnsw_m: int = 32,
    ef_search: int = 128,
    nprobe: int = 16,
    target_recall: float | None = 0.95,
    probes: np.ndarray | None = None,
    seed: int = 0,
):
    import faiss

    t0 = time.perf_counter()
    x = np.ascontiguousarray(emb, dtype=np.float32)
    n, d = x.shape
    kind = choose_kind(n) if kind == "auto" else kind
    params: dict = {}
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 2 * hnsw_m
        index.hnsw.efSearch = ef_search
        params = {"m": hnsw_m, "ef_search": ef_search}
    elif kind == "ivf":
        nlist = max(16, int(4 * math.sqrt(n)))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(train)
        index.nprobe = nprobe
        params = {"nlist": nlist, "nprobe": nprobe}
    else:
        raise ModelError(f"unknown index kind {kind!r} (flat, hnsw, ivf or auto)")
    index.add(x)
    if kind != "flat" and target_recall is not None:
        real = probes is not None and len(probes) > 0
        q = np.ascontiguousarray(probes, dtype=np.float32) if real else probe_queries(x, seed=seed)
        params.update(_tune(index, kind, x, q, target_recall))
        params["probes"] = f"{len(q)} queries" if real else "synthetic"
    params["build_seconds"] = round(time.perf_counter() - t0, 2)
    params["bytes_per_item"] = round(len(faiss.serialize_index(index)) / max(n, 1), 1)
    return index, IndexInfo(kind=kind, n=n, dim=d, params=params)


def probe_queries(x: np.ndarray, n: int = 200, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """Queries near the catalogue: ``n`` of its vectors, each moved by Gaussian noise of norm
    about ``noise`` and normalised again. At 1.0 a probe's cosine to the product it came from is
    ~0.7, about what a shopper's query has to its best product under a sentence encoder (the
    synthetic shop's queries: bench/catalogue_scale.py records it); probes much closer than
    real queries made a 100k-product HNSW look at 0.999 Recall@10 when real queries got 0.948."""
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), size=min(n, len(x)), replace=False)]
    q = q + rng.normal(0.0, noise / np.sqrt(x.shape[1]), q.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, k: int = 10, block: int = 200_000) -> np.ndarray:
    """The exact top-``k`` ids of each query by inner product, the catalogue in blocks."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for lo in range(0, len(x), block):
        s = q @ x[lo:lo + block].T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
        best_i = np.concatenate([best_i, top + lo], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def recall_at(x: np.ndarray, q: np.ndarray, found: np.ndarray, exact: np.ndarray) -> float:
    """Recall@k of ``found`` (ids, queries x k) against the exact top-k ``exact``: a found
    product counts when its score is at least the exact k-th best score, so products with
    equal vectors (a catalogue repeats titles) are equally right, whichever of them is returned."""
    return float(per_query_recall(x, q, found, exact).mean())


def per_query_recall(x: np.ndarray, q: np.ndarray, found: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Each query's Recall@k, as :func:`recall_at` counts it."""
    k = exact.shape[1]
    kth = np.einsum("qkd,qd->qk", x[exact], q).min(axis=1, keepdims=True)
    ids = found[:, :k]
    got = np.einsum("qkd,qd->qk", x[np.maximum(ids, 0)], q)
    order = np.argsort(ids, axis=1)
    ranked = np.take_along_axis(ids, order, axis=1)
    again = np.zeros_like(ids, dtype=bool)  # an id listed twice counts once
    np.put_along_axis(again, order[:, 1:], ranked[:, 1:] == ranked[:, :-1], axis=1)
    hit = (got >= kth - 1e-5) & (ids >= 0) & ~again  # FAISS pads with -1 when it finds fewer than k
    return hit.sum(axis=1) / k


def _tune(index, kind: str, x: np.ndarray, q: np.ndarray, target: float) -> dict:
    """Double the search breadth until Recall@10 vs exact on queries ``q`` reaches ``target``
    with 95% confidence (the one-sided lower bound of its mean over the queries: a few hundred
    queries are a sample, and tuned to the bare mean an index missed the target on others), or
    the breadth is exhaustive; returns the breadth kept and the recall it measured."""
    exact = exact_top(x, q)
    key, top = ("ef_search", 4096) if kind == "hnsw" else ("nprobe", index.nlist)
    while True:
        breadth = index.hnsw.efSearch if kind == "hnsw" else index.nprobe
        r = per_query_recall(x, q, index.search(q, 10)[1], exact)
        recall = float(r.mean())
        lower = recall - (1.645 * float(r.std(ddof=1)) / np.sqrt(len(r)) if len(r) > 1 else 0.0)
        if lower >= target or breadth >= top:
            return {key: int(breadth), "recall@10": round(recall, 4), "recall@10_lower": round(lower, 4),
                    "target_recall": target}
        if kind == "hnsw":
            index.hnsw.efSearch = min(top, 2 * breadth)
        else:
            index.nprobe = min(top, 2 * breadth)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids


def save_index(index, info: IndexInfo, folder: Path) -> None:
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(folder / "index.faiss"))
    (folder / "index.json").write_text(json.dumps(asdict(info)))


def save_embeddings(folder: Path, ids: Sequence[str], emb: np.ndarray) -> None:
    """A catalogue's embeddings beside its index (``embeddings.npy``) with the item id of each row
    (``items.parquet``), so that a reader can tell whether they are its catalogue's."""
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"item_id": list(ids)}).with_row_index("row").write_parquet(folder / "items.parquet")
    np.save(folder / "embeddings.npy", emb)


def saved_embeddings(folder: Path, ids: Sequence[str]) -> np.ndarray | None:
    """The embeddings :func:`save_embeddings` wrote, when their rows are exactly ``ids`` in that
    order (the same catalogue): a server start or an evaluation then indexes 55k products in
    seconds instead of embedding them for minutes. None for another catalogue or none saved."""
    emb_path, ids_path = folder / "embeddings.npy", folder / "items.parquet"
    if not emb_path.exists() or not ids_path.exists():
        return None
    if pl.read_parquet(ids_path, columns=["item_id"])["item_id"].to_list() != list(ids):
        return None
    emb = np.load(emb_path, allow_pickle=False)
    return np.ascontiguousarray(emb, dtype=np.float32) if emb.ndim == 2 and len(emb) == len(ids) else None


def past_queries(data_dir: Path, n: int = 200, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct queries shoppers typed (search events drawn at random, so common
    queries come up as often as they are typed; else the judged queries): what an approximate
    index is tuned to find its products for (``train.index``). Empty when the folder has none."""
    for table, where in (("events", pl.col("event_type") == "search"), ("judgements", pl.lit(True))):
        path = data_dir / f"{table}.parquet"
        if not path.exists() or "query" not in pl.read_parquet_schema(path):
            continue
        q = pl.scan_parquet(path).filter(where & pl.col("query").is_not_null()).select("query").collect()
        if len(q):
            return q.sample(min(len(q), 20 * n), seed=seed)["query"].unique(maintain_order=True).head(n).to_list()
    return []


def load_index(folder: Path):
    import faiss

    p = Path(folder) / "index.faiss"
    if not p.exists():
        raise ModelError(f"no FAISS index at {p}")
    index = faiss.read_index(str(p))
    info = IndexInfo(**json.loads((Path(folder) / "index.json").read_text()))
    if info.kind == "hnsw":
        index.hnsw.efSearch = info.params.get("ef_search", 128)
    elif info.kind == "ivf":
        index.nprobe = info.params.get("nprobe", 16)
    return index, info
