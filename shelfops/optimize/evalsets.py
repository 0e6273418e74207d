"""What each task's variants are measured on: the validation split and golden groups.

An ``EvalSet`` holds the inputs (one text, or a query + product pair), a ``per_query``
function of the outputs (the task's own validation metric per query, or per item for
classification; ``quality`` is its mean, and two variants' arrays pair up for a bootstrap
of the drop), and golden ``groups``: lists
of outputs whose ORDER must survive optimisation. For search and retrieval a group is one
golden query's candidates (its judged pool plus the catalogue's BM25 top hits, so top-10
overlap is meaningful even when pools are small); for classification a group is one item's
class scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from shelfops.errors import ConfigError
from shelfops.train.baselines import BM25Index
from shelfops.train.classify import load_items
from shelfops.train.pairs import load_pairs
from shelfops.train.search import pool_metrics


@dataclass
class EvalSet:
    task: str
    metric: str
    texts_a: list[str]
    texts_b: list[str] | None
    per_query: Callable[[np.ndarray], np.ndarray]
    groups: Callable[[np.ndarray], list[np.ndarray]]
    group_names: list[str]
    train_a: list[str] = field(default_factory=list)  # inputs for calibration / recovery
    train_b: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts_a)

    def quality(self, out: np.ndarray) -> float:
        return float(np.nanmean(self.per_query(out)))


def sample_queries(df: pl.DataFrame, n: int, seed: int) -> list[str]:
    qs = df["query"].unique(maintain_order=True).to_list()
    rng = np.random.default_rng(seed)
    return [qs[i] for i in sorted(rng.permutation(len(qs))[: min(n, len(qs))])]


def golden_candidates(queries: list[str], valid: pl.DataFrame, items: pl.DataFrame, depth: int
                ) -> list[list[str]]:
    """Each golden query's judged pool plus BM25's top catalogue hits, up to ``depth``."""

    texts = items["text"].to_list()
    bm_rows, _ = BM25Index(texts).search(queries, depth)
    pools = valid.group_by("query").agg(pl.col("text"))
    pool = dict(zip(pools["query"].to_list(), pools["text"].to_list()))
    out = []
    for q, rows in zip(queries, bm_rows):
        cand = list(dict.fromkeys(pool.get(q, []) + [texts[r] for r in rows if r >= 0]))
        out.append(cand[:depth])
    return out


def _validation_and_golden(data_dir: Path, spec, max_queries: int, golden: int, depth: int, seed: int):
    """(pairs, lowest grade, sampled validation pairs, golden queries, their candidates)."""

    data = load_pairs(Path(data_dir), augmented=False)
    lo = spec.extra.get("grade_min", data.grade_min)
    valid = data.valid.filter(pl.col("query").is_in(sample_queries(data.valid, max_queries, seed)))
    gq = sample_queries(valid, golden, seed + 1)
    return data, lo, valid, gq, golden_candidates(gq, valid, data.items, depth)


def search_evalset(data_dir: Path, spec, *, max_queries: int, golden: int, depth: int,
                   train_pairs: int, seed: int = 0) -> EvalSet:
    data, lo, valid, gq, cands = _validation_and_golden(data_dir, spec, max_queries, golden, depth, seed)
    n_valid = len(valid)
    a = valid["query"].to_list() + [q for q, c in zip(gq, cands) for _ in c]
    b = valid["text"].to_list() + [t for c in cands for t in c]
    bounds = np.cumsum([n_valid] + [len(c) for c in cands])

    def per_query(out: np.ndarray) -> np.ndarray:
        return pool_metrics(valid, out[:n_valid], lo=lo)["ndcg@10"]

    def groups(out: np.ndarray) -> list[np.ndarray]:
        return [out[bounds[i]:bounds[i + 1]] for i in range(len(cands))]

    tr = data.train.sample(min(train_pairs, len(data.train)), seed=seed)
    return EvalSet("search", "ndcg@10", a, b, per_query, groups, gq,
                   tr["query"].to_list(), tr["text"].to_list())


def retrieval_evalset(data_dir: Path, spec, *, max_queries: int, golden: int, depth: int,
                      train_pairs: int, seed: int = 0) -> EvalSet:
    """Single texts (queries and products); scores are cosines of their embeddings."""

    data, lo, valid, gq, cands = _validation_and_golden(data_dir, spec, max_queries, golden, depth, seed)
    texts = list(dict.fromkeys(valid["query"].to_list() + valid["text"].to_list() + gq
                               + [t for c in cands for t in c]))
    pos = {t: i for i, t in enumerate(texts)}
    vq = np.array([pos[q] for q in valid["query"].to_list()])
    vd = np.array([pos[t] for t in valid["text"].to_list()])

    def per_query(out: np.ndarray) -> np.ndarray:
        return pool_metrics(valid, (out[vq] * out[vd]).sum(1), lo=lo)["ndcg@10"]

    def groups(out: np.ndarray) -> list[np.ndarray]:
        return [out[[pos[t] for t in c]] @ out[pos[q]] for q, c in zip(gq, cands)]

    tr = data.train.sample(min(train_pairs, len(data.train)), seed=seed)
    train = list(dict.fromkeys(tr["query"].to_list() + tr["text"].to_list()))
    return EvalSet("retrieval", "ndcg@10", texts, None, per_query, groups, gq, train)


def classify_evalset(data_dir: Path, spec, *, max_items: int, golden: int, train_items: int,
                     seed: int = 0) -> EvalSet:
    sp = load_items(Path(data_dir), level=spec.extra.get("level"), min_class_size=1, seed=13)
    valid = sp["valid"] if len(sp["valid"]) else sp["test"]
    valid = valid.sample(min(max_items, len(valid)), seed=seed)
    lid = {lab: i for i, lab in enumerate(spec.labels)}
    y = np.array([lid.get(v, -1) for v in valid["label"].to_list()])
    g = min(golden, len(valid))

    def per_query(out: np.ndarray) -> np.ndarray:
        return (out.argmax(1) == y).astype(np.float64)

    def groups(out: np.ndarray) -> list[np.ndarray]:
        return [out[i] for i in range(g)]

    tr = sp["train"].sample(min(train_items, len(sp["train"])), seed=seed)
    return EvalSet("classify", "accuracy", valid["text"].to_list(), None, per_query, groups,
                   valid["item_id"].cast(pl.Utf8).to_list()[:g], tr["text"].to_list())


def evalset_for(spec, data_dir: Path, *, max_queries: int, golden: int, depth: int,
                train_inputs: int, seed: int = 0) -> EvalSet:
    if spec.task == "search":
        return search_evalset(data_dir, spec, max_queries=max_queries, golden=golden, depth=depth,
                              train_pairs=train_inputs, seed=seed)
    if spec.task == "retrieval":
        return retrieval_evalset(data_dir, spec, max_queries=max_queries, golden=golden,
                                 depth=depth, train_pairs=train_inputs, seed=seed)
    if spec.task == "classify":
        return classify_evalset(data_dir, spec, max_items=max_queries * 8, golden=golden,
                                train_items=train_inputs, seed=seed)
    raise ConfigError([f"optimize: task {spec.task!r} has no text variants to build"])
