"""FAISS index over catalogue embeddings, chosen by catalogue size.

Embeddings are L2-normalised, so inner product = cosine. Up to ``exact_max`` items an
exact flat index (no recall loss, fast enough); up to ``hnsw_max`` HNSW (graph, high
recall, no training); beyond, IVF-Flat with ~4 sqrt(n) lists. Files are FAISS's own
binary format (no pickle).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shelfops.errors import ModelError


@dataclass
class IndexInfo:
    kind: str
    n: int
    dim: int
    params: dict


def choose_kind(n: int, exact_max: int = 50_000, hnsw_max: int = 2_000_000) -> str:
    return "flat" if n <= exact_max else ("hnsw" if n <= hnsw_max else "ivf")


def build_index(
    emb: np.ndarray,
    *,
    kind: str = "auto",
    hnsw_m: int = 32,
    ef_search: int = 128,
    nprobe: int = 16,
    seed: int = 0,
):
    import faiss

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
    return index, IndexInfo(kind=kind, n=n, dim=d, params=params)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids


def save_index(index, info: IndexInfo, folder: Path) -> None:
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(folder / "index.faiss"))
    (folder / "index.json").write_text(json.dumps(asdict(info)))


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
