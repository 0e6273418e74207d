"""Search over the whole catalogue, as it is served: retrieve -> fuse -> re-rank.

Judged pools say how a model orders products someone already put in front of raters; a
shopper's search starts from every product. This module builds both retrievers over a
dataset's catalogue (BM25 and a dense encoder with a FAISS index), produces the candidate
lists of any set of queries, scores (query, product) pairs with a re-ranker through a cache
(each pair once, however many fusion weights and depths a choice tries), and evaluates the
four systems a search team compares, on the same queries:

* ``bm25``: the lexical retriever alone;
* ``dense``: the dense retriever alone (the untuned encoder, or a trained bi-encoder);
* ``hybrid``: both fused (``hybrid.fuse``) at the chosen weight;
* ``pipeline``: the hybrid's top ``depth`` re-ranked by the cross-encoder, which is what
  ``/v1/search`` answers.

Relevance follows bench/RESULTS.md's whole-catalogue protocol: a product is relevant if it
was judged in the upper half of the grade scale; a product nobody judged counts as not
relevant (so every number here is a lower bound on what shoppers would find).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shelfops.errors import ModelError
from shelfops.eval.metrics import compare, summarize
from shelfops.train import text_models
from shelfops.train.baselines import BM25Index
from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer
from shelfops.train.hybrid import (
    DEFAULT_WEIGHT,
    Candidates,
    Choice,
    choose,
    hard_negatives,
    negative_triples,
    pool_order,
    rerank,
)
from shelfops.train.index import build_index, saved_embeddings
from shelfops.train.index import search as index_search
from shelfops.train.query_encoder import QueryEncoder
from shelfops.train.retrieval import catalogue_eval
from shelfops.train.search import embed_texts

SYSTEMS = ("pipeline", "hybrid", "dense", "bm25")
METRICS = ("ndcg@10", "recall@10")
#: candidates kept per retriever: deep enough for the deepest re-rank and for fusion to find
#: a product ranked low by one retriever but high by the other
RETRIEVE_DEPTH = 100


@dataclass
class Retrievers:
    """Both retrievers over one catalogue. ``embed`` maps query texts to normalised vectors in
    the same space as the index."""

    ids: list[str]
    texts: list[str]
    bm25: BM25Index
    index: Any
    embed: Callable[[list[str]], np.ndarray]
    dense_name: str
    vectors: np.ndarray | None = None  # the catalogue's embeddings, row-aligned with ids

    @classmethod
    def open(cls, items: pl.DataFrame, encoder_path: str, retriever: str | None, *, max_length: int,
             progress: bool = True, served: bool = False, probes: Sequence[str] = ()) -> Retrievers:
        """BM25 and the dense side (:func:`dense_side`) over ``items`` (item_id, text); ``served``:
        one query at a time as the server embeds it, on the index the server builds, tuned for
        ``probes`` as the server tunes it for past queries (optimize times searches with it)."""
        texts = items["text"].to_list()
        ids = items["item_id"].to_list()
        embed, name, emb = dense_side(encoder_path, retriever, max_length=max_length, texts=texts, ids=ids,
                                      progress=progress, served=served)
        # evaluation measures the model, not an index; served, the index is the server's (exact up to
        # 50k products, then IVF tuned to 0.95 recall: serve.state), so optimize times what serves
        index, _ = build_index(emb, probes=embed(list(probes)) if probes else None) if served \
            else build_index(emb, kind="flat")
        return cls(ids, texts, BM25Index(texts), index, embed, name, emb)

    def pair_scores(self, pairs: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """BM25's and the dense retriever's scores of each (query, item_id) row of ``pairs``:
        what each retriever thinks of the products of a judged pool."""
        if self.vectors is None:
            raise ModelError("pair_scores: these retrievers hold no catalogue embeddings")
        pos = {iid: i for i, iid in enumerate(self.ids)}
        missing = [i for i in pairs["item_id"].unique().to_list() if i not in pos]
        if missing:
            raise ModelError(f"pair_scores: {len(missing)} judged item(s) not in the catalogue, "
                             f"e.g. {missing[:3]}")
        rows = np.asarray([pos[i] for i in pairs["item_id"].to_list()], dtype=np.int64)
        queries = pairs["query"].to_list()
        uniq = list(dict.fromkeys(queries))
        qe = self.embed(uniq)
        at = {q: j for j, q in enumerate(uniq)}
        dense = (qe[[at[q] for q in queries]] * self.vectors[rows]).sum(1)
        return np.asarray(self.bm25.score_pairs(queries, rows), dtype=np.float64), dense

    def candidates(self, queries: Sequence[str], depth: int = RETRIEVE_DEPTH) -> Candidates:
        depth = min(depth, len(self.ids))
        lex, _ = self.bm25.search(list(queries), depth)
        _, dense = index_search(self.index, self.embed(list(queries)), depth)
        return Candidates(np.asarray(lex, dtype=np.int64), np.asarray(dense, dtype=np.int64))


def embedding_cache() -> Path:
    """Where catalogue embeddings under an untuned encoder are kept: ``$SHELFOPS_CACHE``, else
    ``$SHELFOPS_HOME/cache`` (``~/.shelfops/cache``)."""
    if os.environ.get("SHELFOPS_CACHE"):
        return Path(os.environ["SHELFOPS_CACHE"]) / "embeddings"
    return Path(os.environ.get("SHELFOPS_HOME") or Path.home() / ".shelfops") / "cache" / "embeddings"


def _encoder_hash(encoder_path: str, max_length: int):
    """The encoder's identity: its files (names, sizes, modification times), its path and the
    length texts are cut to (a running sha256)."""
    h = hashlib.sha256(f"{max_length}\n".encode())
    for f in sorted(Path(encoder_path).glob("*")) if Path(encoder_path).is_dir() else []:
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(str(encoder_path).encode())
    return h


def _legacy(encoder_path: str, texts: Sequence[str], max_length: int) -> np.ndarray | None:
    """The whole-catalogue array an earlier shelfops stored for exactly these texts (one
    ``.npy`` per encoder, length and text list, before the store kept each text once), if any."""
    h = _encoder_hash(encoder_path, max_length)
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    path = embedding_cache() / f"{h.hexdigest()[:32]}.npy"
    try:
        emb = np.load(path, allow_pickle=False) if path.exists() else None
    except (OSError, ValueError):
        return None
    return emb if emb is not None and emb.ndim == 2 and len(emb) == len(texts) else None


def _text_keys(texts: Sequence[str]) -> pl.DataFrame:
    """Each text's 128-bit content key, as two unsigned 64-bit columns ``k0``, ``k1``."""
    raw = b"".join(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    k = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2) if texts else np.zeros((0, 2), np.uint64)
    return pl.DataFrame({"k0": k[:, 0], "k1": k[:, 1]})


def _read_segments(store: Path) -> tuple[pl.DataFrame, np.ndarray | None]:
    """Every readable segment of a store: keys (k0, k1, row) and the vectors, rows aligned. A
    damaged or half-written segment is skipped (its texts are embedded again), never trusted."""
    keys, vecs = [], []
    for seg in sorted(store.glob("seg-*.npz")):
        try:
            with np.load(seg, allow_pickle=False) as z:
                k, e = z["keys"], z["emb"]
            if k.ndim != 2 or k.shape[1] != 2 or e.ndim != 2 or len(k) != len(e):
                raise ValueError("shape")
        except (OSError, ValueError, KeyError):
            continue
        keys.append(k)
        vecs.append(e)
    if not keys:
        return pl.DataFrame(schema={"k0": pl.UInt64, "k1": pl.UInt64, "row": pl.Int64}), None
    k = np.concatenate(keys)
    return (pl.DataFrame({"k0": k[:, 0], "k1": k[:, 1], "row": np.arange(len(k))})
            .unique(["k0", "k1"], keep="first", maintain_order=True)), np.concatenate(vecs)


def cached_embeddings(encoder_path: str, texts: Sequence[str], max_length: int,
                      compute: Callable[[list[str]], np.ndarray], *, segment: int = 8192,
                      progress: str | None = None) -> np.ndarray:
    """The embeddings of ``texts`` (rows in their order), each distinct text embedded once per
    encoder files and length, ever: an untuned encoder never changes, so folds of a
    cross-validation, retrainings, server starts and a catalogue that grew embed only the texts
    no earlier call did (Home Depot's 54,666 titles: 4.5 min on 2 cores, once).

    The store is a folder per encoder and length under :func:`embedding_cache` of segments
    (``.npz`` of 128-bit text keys and float32 vectors, never a pickle), written one at a time
    as ``compute`` (texts -> vectors) finishes ``segment`` new texts: a run stopped midway keeps
    what it finished and the next one goes on from there. ``progress``: a label for a bar over
    the texts to embed."""
    if not texts:
        return compute([])
    if (old := _legacy(encoder_path, texts, max_length)) is not None:
        return old
    store = embedding_cache() / _encoder_hash(encoder_path, max_length).hexdigest()[:32]
    want = _text_keys(texts).with_row_index("i")
    have, vecs = _read_segments(store)
    joined = want.join(have, on=["k0", "k1"], how="left", maintain_order="left")
    missing = joined.filter(pl.col("row").is_null()).unique(["k0", "k1"], keep="first", maintain_order=True)
    if len(missing):
        store.mkdir(parents=True, exist_ok=True)
        todo = missing["i"].to_list()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=progress, dynamic_ncols=True, leave=False)
        new = []
        for lo in range(0, len(todo), segment):
            part = todo[lo:lo + segment]
            emb = np.ascontiguousarray(compute([texts[i] for i in part]), dtype=np.float32)
            keys = missing.slice(lo, len(part)).select("k0", "k1").to_numpy().astype(np.uint64)
            tmp = store / f".seg-{os.getpid()}-{lo}.tmp.npz"
            np.savez(tmp, keys=keys, emb=emb)
            tmp.replace(store / f"seg-{time.time_ns():020d}-{os.getpid()}.npz")  # atomic: never half a segment
            new.append(emb)
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()
        # what was just embedded joins what the store held, rows numbered after it (no second read)
        start = 0 if vecs is None else len(vecs)
        added = missing.select("k0", "k1").with_columns(pl.int_range(start, start + len(missing), dtype=pl.Int64)
                                                        .alias("row"))
        have, vecs = pl.concat([have, added]), np.concatenate(([] if vecs is None else [vecs]) + new)
        joined = want.join(have, on=["k0", "k1"], how="left", maintain_order="left")
    if vecs is None or joined["row"].null_count():
        raise ModelError(f"embedding store {store}: texts still missing after embedding them")
    return vecs[joined["row"].to_numpy()]


def untuned_embedder(encoder_path: str, max_length: int,
                     progress: str | None = None) -> Callable[[list[str]], np.ndarray]:
    """Texts -> normalised vectors under the untuned encoder, mean-pooled as it was pretrained to
    be used, through :func:`cached_embeddings` (the encoder is loaded only when a text is new)."""
    loaded: list = []

    def compute(texts: list[str]) -> np.ndarray:
        if not loaded:
            loaded.extend([TextEncoder(load_backbone(encoder_path), "mean"), load_tokenizer(encoder_path)])
        return embed_texts(loaded[0], loaded[1], texts, max_length=max_length)

    return lambda texts: cached_embeddings(encoder_path, texts, max_length, compute, progress=progress)


def dense_side(encoder_path: str, retriever: str | None, *, max_length: int, texts: Sequence[str],
               ids: Sequence[str] | None = None, progress: bool = True, served: bool = False) -> tuple[Callable[[list[str]], np.ndarray], str, np.ndarray]:
    """The dense retriever and the catalogue's embeddings under it: a trained bi-encoder folder
    (``shelfops train --task retrieval``; its saved catalogue embeddings are reused when their
    rows are ``ids``, this catalogue's products in order) or, by default, the untuned encoder, mean-pooled as it was pretrained
    to be used (its catalogue embeddings cached, :func:`cached_embeddings`)."""
    if retriever:
        model, tok, spec = text_models.load(Path(retriever))
        if spec.task != "retrieval":
            raise ModelError(f"train.search.catalogue.retriever: {retriever} is a {spec.task} model, "
                             "not a retrieval one")
        enc, length, name, path = model.encoder, spec.max_length, f"bi-encoder {retriever}", str(retriever)
    else:
        enc, tok, length, name, path = TextEncoder(load_backbone(encoder_path), "mean"), \
            load_tokenizer(encoder_path), max_length, "untuned encoder", encoder_path

    def embed(queries: list[str]) -> np.ndarray:
        return embed_texts(enc, tok, queries, max_length=length)

    # served: one query through ONNX Runtime, as the server does (train.query_encoder); training
    # and evaluation keep PyTorch for every query, however few, so their numbers never depend on it
    query = QueryEncoder(enc, tok, path, max_length=length, store=onnx_store(path)) if served else embed
    if retriever:
        emb = saved_embeddings(Path(retriever) / "index", ids) if ids is not None else None
        if emb is not None:
            return query, name, emb
        return query, name, embed_texts(enc, tok, list(texts), max_length=length,
                                        progress="catalogue: embedding" if progress else None)
    return query, name, cached_embeddings(encoder_path, texts, length, embed,
                                          progress="catalogue: embedding" if progress else None)


def onnx_store(encoder_path: str) -> Path:
    """Where the untuned encoder's ONNX export for single queries is kept (``query_encoder``):
    beside the embedding cache, one folder per encoder's files."""
    return embedding_cache().parent / "onnx" / _encoder_hash(encoder_path, 0).hexdigest()[:32]


def mined_negatives(train: pl.DataFrame, cat: Retrievers, *, per_query: int, depth: int, skip: int,
                    seed: int) -> pl.DataFrame:
    """``per_query`` negatives per training query (``hybrid.hard_negatives``) from the fused
    lists at the default weight (no weight is chosen yet): rows (query, item_id)."""
    if per_query <= 0:
        return pl.DataFrame(schema={"query": pl.String, "item_id": pl.String})
    queries = train["query"].unique(maintain_order=True).to_list()
    rows = cat.candidates(queries, depth).fused(DEFAULT_WEIGHT, depth)
    return hard_negatives(queries, rows, train, cat.ids, per_query=per_query, skip=skip, seed=seed)


def as_graded(train: pl.DataFrame, negatives: pl.DataFrame, cat: Retrievers, grade: float) -> pl.DataFrame:
    """``train`` plus the negatives as pairs graded ``grade`` (the pointwise way)."""
    text = pl.DataFrame({"item_id": cat.ids, "text": cat.texts})
    neg = negatives.join(text, on="item_id", how="left").with_columns(pl.lit(grade, dtype=pl.Float64).alias("grade"))
    return pl.concat([train.select("query", "item_id", "grade", "text"), neg.select("query", "item_id", "grade", "text")])


def as_triples(train: pl.DataFrame, negatives: pl.DataFrame, cat: Retrievers, *, relevant: float,
               seed: int) -> pl.DataFrame:
    """The negatives as (query, positive text, negative text) triples (the pairwise way)."""
    t = negative_triples(negatives, train, relevant=relevant, seed=seed)
    text = dict(zip(cat.ids, cat.texts))
    return pl.DataFrame({"query": t["query"], "positive": [text[i] for i in t["positive"]],
                         "negative": [text[i] for i in t["negative"]]})


class PairScores:
    """Re-ranker scores of (query, catalogue row) pairs, each computed once.

    ``score(queries, texts) -> scores`` is the re-ranker (a trained model's fp32 forward, or a
    shipped variant)."""

    def __init__(self, queries: Sequence[str], texts: Sequence[str],
                 score: Callable[[list[str], list[str]], np.ndarray]) -> None:
        self.queries, self.texts, self.score = list(queries), texts, score
        self.cache: dict[tuple[int, int], float] = {}

    def seed(self, pairs: pl.DataFrame, scores: np.ndarray, ids: Sequence[str]) -> int:
        """Take the scores the same re-ranker already gave some pairs (``pairs``: query, item_id,
        text; a test set's judged pools, scored for the metrics within them) instead of scoring
        them again; only pairs whose text is the catalogue row's own. Returns how many."""
        qi = {q: i for i, q in enumerate(self.queries)}
        row = {iid: r for r, iid in enumerate(ids)}
        n = 0
        for (q, iid, text), sc in zip(pairs.select("query", "item_id", "text").iter_rows(), scores, strict=True):
            r = row.get(iid)
            if q in qi and r is not None and self.texts[r] == text:
                self.cache[(qi[q], r)] = float(sc)
                n += 1
        return n

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Scores of a ``(len(queries), depth)`` array of catalogue rows (-1 = none: NaN)."""
        todo = sorted({(q, int(r)) for q in range(len(rows)) for r in rows[q]
                       if r >= 0 and (q, int(r)) not in self.cache})
        if todo:
            s = self.score([self.queries[q] for q, _ in todo], [self.texts[r] for _, r in todo])
            self.cache.update(zip(todo, (float(x) for x in s)))
        return np.array([[self.cache.get((q, int(r)), np.nan) if r >= 0 else np.nan for r in row]
                         for q, row in enumerate(rows)], dtype=np.float64)


@dataclass
class Judged:
    """What the metrics need to read a ranked list: the judgements and the grade scale."""

    table: pl.DataFrame  # query, item_id, grade
    lo: float
    hi: float
    threshold: float = 0.5
    ids: list[str] = field(default_factory=list)

    def per_query(self, queries: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
        return catalogue_eval(None, None, list(queries), self.table, self.ids, retrieved=rows,
                              lo=self.lo, hi=self.hi, threshold=self.threshold, ks=(10,))


def relevant_queries(judged: pl.DataFrame, lo: float, hi: float, threshold: float,
                     at_most: int | None = None) -> list[str]:
    """Queries with at least one product judged relevant (the others have no recall); with
    ``at_most``, that many of them, evenly spaced (the same ones every time)."""
    rel = judged.filter((pl.col("grade") - lo) / max(hi - lo, 1e-9) >= threshold)
    qs = rel["query"].unique(maintain_order=True).to_list()
    return qs if at_most is None else qs[:: max(1, len(qs) // at_most)][:at_most]


def choose_pipeline(cands: Candidates, scores: PairScores, judged: Judged, queries: Sequence[str], *,
                    weights: Sequence[float], depths: Sequence[int], blends: Sequence[float] = (0.0,)) -> Choice:
    """The fusion weight, re-rank depth and blend of the best validation NDCG@10 of the pipeline."""

    def metric(w: float, d: int, b: float) -> float:
        rows = rerank(cands.fused(w, max(d, 10)), scores, d, b)
        return float(np.nanmean(judged.per_query(queries, rows)["ndcg@10"]))

    # a shallower re-rank is kept when it is within a thousandth of the best: a model call per
    # product per search is the price of depth, and a thousandth is below what ~400 validation
    # queries can resolve
    return choose(metric, weights, depths, blends=blends, tolerance=1e-3)


def served_pool_scores(pools: pl.DataFrame, reranker: np.ndarray, lexical: np.ndarray, dense: np.ndarray,
                       *, weight: float, depth: int, blend: float) -> np.ndarray:
    """Each judged pair's score under the served pipeline restricted to its query's judged pool
    (:func:`hybrid.pool_order`): minus its position, so higher is earlier, as any pool scorer."""
    out = np.empty(len(pools), dtype=np.float64)
    groups = pools.with_row_index("_row").group_by("query", maintain_order=True).agg("_row")["_row"]
    for rows in groups.to_list():
        rows = np.asarray(rows, dtype=np.int64)
        order = pool_order(reranker[rows], lexical[rows], dense[rows], weight=weight, depth=depth, blend=blend)
        out[rows[order]] = -np.arange(len(rows), dtype=np.float64)
    return out


def system_rows(cands: Candidates, scores: PairScores, weight: float, depth: int, blend: float = 0.0,
                n: int = 10) -> dict[str, np.ndarray]:
    n = max(n, depth)
    fused = cands.fused(weight, n)
    return {"pipeline": rerank(fused, scores, depth, blend)[:, :10], "hybrid": fused[:, :10],
            "dense": cands.fused(1.0, 10), "bm25": cands.fused(0.0, 10)}


def evaluate_systems(rows: dict[str, np.ndarray], judged: Judged, queries: Sequence[str], *,
                     n_boot: int) -> tuple[dict[str, Any], pl.DataFrame]:
    """Each system's NDCG@10 and Recall@10 with 95% intervals, the pipeline's paired
    differences to each of the others, and the per-query values (for pooling folds)."""
    per = {name: judged.per_query(queries, r) for name, r in rows.items()}
    frame = pl.DataFrame({"query": list(queries),
                          **{f"{name}_{m}": per[name][m] for name in rows for m in METRICS}})
    return {**_summaries(per, n_boot), "queries": len(queries)}, frame


def _summaries(per: dict[str, dict[str, np.ndarray]], n_boot: int) -> dict[str, Any]:
    """Each system's intervals and the pipeline's paired differences to every other system."""
    return {"systems": {n: summarize(p, n_boot=n_boot) for n, p in per.items()},
            "comparisons": {m: {n: compare(per["pipeline"][m], per[n][m], n_boot=n_boot)
                                for n in per if n != "pipeline"} for m in METRICS}}


def pooled(frames: list[pl.DataFrame], *, n_boot: int = 1000) -> dict[str, Any]:
    """Cross-validation: pool the folds' per-query values (``catalogue_scores.parquet``); the
    folds' queries must be disjoint."""
    df = pl.concat(frames, how="vertical_relaxed")
    if df["query"].n_unique() != len(df):
        raise ValueError("pooled folds share a query: their test queries must be disjoint")
    names = [c.removesuffix("_ndcg@10") for c in df.columns if c.endswith("_ndcg@10")]
    per = {n: {m: df[f"{n}_{m}"].to_numpy() for m in METRICS} for n in names}
    return {"queries": len(df), "folds": len(frames), **_summaries(per, n_boot)}
