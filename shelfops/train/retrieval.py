"""Retrieval: a bi-encoder fine-tuned with in-batch negatives, plus a FAISS index.

Positives are (query, product) pairs graded in the upper half of the grade scale; every
other product in the batch is a negative (InfoNCE on scaled cosine similarity, both
directions). Evaluation over the whole catalogue: Recall@k and NDCG@k of the retrieved
list against the judged grades (unjudged = gain 0); baselines BM25 and the untuned
encoder in the same run; and the retrieve-then-re-rank pipeline with a cross-encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from shelfops.config.schema import RetrievalTrainConfig
from shelfops.eval.metrics import dcg
from shelfops.train.index import build_index, search
from shelfops.train.loop import FitResult, Schedule, fit
from shelfops.train.pairs import PairSplits
from shelfops.train.search import embed_texts
from shelfops.train.text_batches import LazyBatches, encode_texts, epoch_order
from shelfops.train.text_models import ModelSpec, freeze_lower, new_model


@dataclass
class RetrievalSettings:
    """``train.retrieval`` (``RetrievalTrainConfig``, the one source of defaults): build it
    with :func:`retrieval_settings_from`."""

    batch_size: int
    freeze_layers: int  # embeddings + this many lowest layers stay frozen
    max_length: int
    positive_threshold: float  # share of the grade scale a positive must reach
    eval_queries: int
    ks: tuple[int, ...] = (10, 50)  # not a setting: the cut-offs every retrieval metric reports


def retrieval_settings_from(c: RetrievalTrainConfig) -> RetrievalSettings:
    """The model-training settings of ``train.retrieval`` (its schedule: ``schedule_from``;
    ``rerank_depth`` drives the recipe's retrieve + re-rank measurement)."""
    return RetrievalSettings(batch_size=c.batch_size, freeze_layers=c.freeze_layers, max_length=c.max_length,
                             positive_threshold=c.positive_threshold, eval_queries=c.eval_queries)


def positives(df: pl.DataFrame, lo: float, hi: float, threshold: float) -> pl.DataFrame:
    return df.filter((pl.col("grade") - lo) / max(hi - lo, 1e-9) >= threshold)


def make_batches(pos: pl.DataFrame, tok, s: RetrievalSettings, seed: int):
    q, t = pos["query"].to_list(), pos["text"].to_list()

    def make(ix: np.ndarray) -> dict[str, Any]:
        # a product twice in one batch would be its own false negative: keep the first
        seen, keep = set(), []
        for i in ix:
            if t[i] not in seen:
                seen.add(t[i])
                keep.append(i)
        return {
            "q": encode_texts(tok, [q[i] for i in keep], s.max_length),
            "d": encode_texts(tok, [t[i] for i in keep], s.max_length),
        }

    def batches(epoch: int) -> LazyBatches:
        order = epoch_order(len(pos), seed, epoch)
        return LazyBatches(
            [order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size)], make
        )

    return batches


def info_nce(model, b) -> torch.Tensor:
    logits = model(b["q"], b["d"])
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (
        nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)
    )


def catalogue_eval(
    query_emb: np.ndarray,
    item_emb: np.ndarray | None,
    queries: list[str],
    judged: pl.DataFrame,
    item_ids: list[str],
    *,
    lo: float,
    hi: float,
    threshold: float,
    ks=(10, 50),
    retrieved: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-query Recall@k (relevant = judged at or above ``threshold``) and NDCG@10 of the
    retrieved list, over the whole catalogue."""
    kmax = max(ks)
    if retrieved is None:
        index, _ = build_index(item_emb, kind="flat")
        _, retrieved = search(index, query_emb, kmax)
    pos = {iid: i for i, iid in enumerate(item_ids)}
    grades: dict[str, dict[int, float]] = {}
    for qq, iid, g in judged.select("query", "item_id", "grade").iter_rows():
        grades.setdefault(qq, {})[pos[iid]] = g - lo
    out: dict[str, list[float]] = {f"recall@{k}": [] for k in ks}
    out["ndcg@10"] = []
    for row, qq in enumerate(queries):
        g = grades.get(qq, {})
        rel = {i for i, v in g.items() if v / max(hi - lo, 1e-9) >= threshold}
        got = list(retrieved[row])
        for k in ks:
            out[f"recall@{k}"].append(len(rel & set(got[:k])) / len(rel) if rel else np.nan)
        gains = np.array([g.get(i, 0.0) for i in got[:10]])
        ideal = np.sort(np.array(list(g.values())))[::-1][:10]
        out["ndcg@10"].append(dcg(gains) / dcg(ideal) if ideal.sum() > 0 else np.nan)
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def train_retrieval(
    data: PairSplits,
    *,
    encoder_path: str,
    workdir: Path,
    schedule: Schedule,
    settings: RetrievalSettings,
    progress: bool = True,
) -> tuple[nn.Module, Any, ModelSpec, FitResult]:
    spec = ModelSpec(
        task="retrieval",
        encoder=encoder_path,
        max_length=settings.max_length,
        extra={
            "scale": 20.0,
            "positive_threshold": settings.positive_threshold,
            "grade_min": data.grade_min,
            "grade_max": data.grade_max,
        },
    )
    model, tok = new_model(spec, encoder_path)
    freeze_lower(model, settings.freeze_layers)
    pos = positives(data.train, data.grade_min, data.grade_max, settings.positive_threshold)
    items = data.items
    valid = data.valid
    vq = positives(valid, data.grade_min, data.grade_max, settings.positive_threshold)[
        "query"
    ].unique(maintain_order=True)
    if len(vq) > settings.eval_queries:
        vq = vq.sample(settings.eval_queries, seed=schedule.seed)
    vq_list = vq.to_list()
    # validation retrieves from the products judged in the validation split plus a sample of
    # the catalogue (cheap enough to run at every evaluation)
    pool_ids = set(valid["item_id"].to_list())
    rest = items.filter(~pl.col("item_id").is_in(list(pool_ids)))
    extra = rest.sample(min(len(rest), 5_000), seed=schedule.seed)
    pool = pl.concat([items.filter(pl.col("item_id").is_in(list(pool_ids))), extra])

    def evaluate(m: nn.Module) -> dict[str, float]:
        enc = m.encoder
        qe = embed_texts(enc, tok, vq_list, max_length=settings.max_length)
        de = embed_texts(enc, tok, pool["text"].to_list(), max_length=settings.max_length)
        per = catalogue_eval(
            qe,
            de,
            vq_list,
            valid,
            pool["item_id"].to_list(),
            lo=data.grade_min,
            hi=data.grade_max,
            threshold=settings.positive_threshold,
            ks=(10,),
        )
        return {k: float(np.nanmean(v)) for k, v in per.items()}

    result = fit(
        model,
        batches=make_batches(pos, tok, settings, schedule.seed),
        loss_fn=info_nce,
        evaluate=evaluate,
        metric="recall@10",
        schedule=schedule,
        workdir=workdir,
        progress=progress,
        desc="retrieval",
    )
    return model, tok, spec, result
