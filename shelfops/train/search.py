"""Search relevance: a cross-encoder fine-tuned on graded (query, product) pairs.

Losses: ``pointwise`` (binary cross-entropy on the grade scaled to [0, 1]; the sigmoid
maps back to the grade scale for RMSE), ``pairwise`` (RankNet within a query) and
``listwise`` (softmax cross-entropy against the softmax of the grades, ListNet).
Evaluation: NDCG@k within each query's judged pool, MRR, RMSE; baselines in the same run:
BM25 and the untuned pretrained encoder (cosine of mean-pooled embeddings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from shelfops.config.schema import SearchTrainConfig
from shelfops.errors import DataError, ModelError
from shelfops.eval import metrics as eval_metrics
from shelfops.train.baselines import BM25Index
from shelfops.train.encoder import TextEncoder
from shelfops.train.loop import FitResult, Schedule, fit
from shelfops.train.pairs import PairSplits
from shelfops.train.text_batches import (
    LazyBatches,
    bucketed_batches,
    encode_pairs,
    encode_texts,
    epoch_order,
    run_by_length,
)
from shelfops.train.text_models import ModelSpec, freeze_lower, new_model


@dataclass
class SearchSettings:
    """``train.search`` (``SearchTrainConfig``, the one source of defaults): build it with
    :func:`search_settings_from`."""

    loss: str  # pointwise | pairwise | listwise
    batch_size: int
    freeze_layers: int  # embeddings + this many lowest layers stay frozen
    max_length: int
    head: str  # similarity | linear (text_models.CrossEncoder)
    eval_queries: int  # validation queries used for early stopping
    triples_per_batch: int  # (query, judged relevant, mined negative) triples added to each batch
    negative_weight: float = 1.0  # the pairwise hard-negative term's weight in the loss
    ks: tuple[int, ...] = (5, 10)  # not a setting: the cut-offs every search metric reports


def search_settings_from(c: SearchTrainConfig) -> SearchSettings:
    """The model-training settings of ``train.search`` (its schedule: ``schedule_from``; the
    rest of its catalogue section drives the recipe's mining and validation)."""
    return SearchSettings(loss=c.loss, batch_size=c.batch_size, freeze_layers=c.freeze_layers,
                          max_length=c.max_length, head=c.head, eval_queries=c.eval_queries,
                          triples_per_batch=c.catalogue.triples_per_batch,
                          negative_weight=c.catalogue.negative_weight)


def _group_batches(df: pl.DataFrame, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Whole query groups per batch (for pairwise / listwise losses)."""
    groups = df.with_row_index("_i").group_by("query", maintain_order=True).agg(pl.col("_i"))
    order = epoch_order(len(groups), seed, epoch)
    lists = groups["_i"].to_list()
    out, cur = [], []
    for g in order:
        idx = lists[g]
        if cur and len(cur) + len(idx) > batch_size:
            out.append(np.array(cur))
            cur = []
        cur.extend(idx[:batch_size])
    if cur:
        out.append(np.array(cur))
    return out


def make_batches(df: pl.DataFrame, tok, s: SearchSettings, seed: int, lo: float, hi: float,
                 triples: pl.DataFrame | None = None):
    """An epoch's batches of graded pairs; with ``triples`` (query, positive, negative texts),
    each pointwise batch also carries ``s.triples_per_batch`` of them, drawn in a seeded order
    that runs through them all before repeating, for the pairwise hard-negative term of the loss."""
    q, t, g = df["query"].to_list(), df["text"].to_list(), df["grade"].to_numpy()
    target = (g - lo) / max(hi - lo, 1e-9)
    qids = df["query"].rank("dense").cast(pl.Int64).to_numpy()
    lengths = np.array([len(a) + len(b) for a, b in zip(q, t)])
    tq, tp, tn = (triples[c].to_list() for c in ("query", "positive", "negative")) if triples is not None \
        else ([], [], [])

    def make(ix) -> dict[str, torch.Tensor]:
        ix, tix = ix if isinstance(ix, tuple) else (ix, np.array([], dtype=np.int64))
        qs, ts = [q[i] for i in ix], [t[i] for i in ix]
        # one forward pass: the graded pairs, then each triple's positive, then its negative
        qs += [tq[i] for i in tix] * 2
        ts += [tp[i] for i in tix] + [tn[i] for i in tix]
        enc = encode_pairs(tok, qs, ts, s.max_length)
        enc["target"] = torch.tensor(target[ix], dtype=torch.float32)
        enc["qid"] = torch.tensor(qids[ix], dtype=torch.long)
        enc["triples"] = torch.tensor(len(tix))
        return enc

    def batches(epoch: int) -> LazyBatches:
        if s.loss == "pointwise":
            idxs = bucketed_batches(lengths, s.batch_size, seed, epoch)
        else:
            idxs = _group_batches(df, s.batch_size, seed, epoch)
        if tq and s.loss == "pointwise" and s.triples_per_batch > 0:
            n = s.triples_per_batch
            order = np.concatenate([epoch_order(len(tq), seed + 1, epoch * 1000 + r)
                                    for r in range(-(-len(idxs) * n // len(tq)))])
            idxs = [(ix, order[i * n:(i + 1) * n]) for i, ix in enumerate(idxs)]
        return LazyBatches(idxs, make)

    return batches


def loss_fn(kind: str, negative_weight: float = 1.0):
    bce = nn.BCEWithLogitsLoss()

    def pointwise(model, b):
        s = model(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))
        n, k = len(b["target"]), int(b.get("triples", 0))
        loss = bce(s[:n], b["target"])
        if k:  # hard negatives: a judged relevant product above a retrieved one nobody judged (RankNet)
            loss = loss + negative_weight * nn.functional.softplus(s[n + k:] - s[n:n + k]).mean()
        return loss

    def grouped(model, b):
        s = model(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))
        losses = []
        for q in torch.unique(b["qid"]):
            m = b["qid"] == q
            if m.sum() < 2:
                continue
            sq, tq = s[m], b["target"][m]
            if kind == "pairwise":
                diff = sq[:, None] - sq[None, :]
                better = (tq[:, None] > tq[None, :]).float()
                if better.sum() == 0:
                    continue
                losses.append((nn.functional.softplus(-diff) * better).sum() / better.sum())
            else:
                losses.append(-(torch.softmax(tq * 5, 0) * torch.log_softmax(sq, 0)).sum())
        return torch.stack(losses).mean() if losses else s.sum() * 0.0

    return pointwise if kind == "pointwise" else grouped


@torch.no_grad()
def start_from_similarity(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Set a similarity-head cross-encoder's scale and bias to the best logistic read of the
    pretrained segment cosine on ``batch`` (its linear read starts at zero), so the first
    score is already calibrated to the grade scale and training does not spend its first
    steps, or distort the encoder, fitting an offset."""
    model.eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    hidden = model.encoder.hidden(**inputs)
    cos = model.segment_cosine(hidden, inputs["attention_mask"], inputs.get("token_type_ids"))
    target = batch["target"].float()
    a = torch.zeros(2, requires_grad=True)
    opt = torch.optim.LBFGS([a], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        with torch.enable_grad():
            loss = nn.functional.binary_cross_entropy_with_logits(a[0] * cos + a[1], target)
            loss.backward()
        return loss

    opt.step(closure)
    scale, bias = (float(v) for v in a.detach())
    model.similarity.fill_(scale)
    model.head[1].bias.fill_(bias)
    model.train()
    return {"scale": scale, "bias": bias}


@torch.no_grad()
def score_pairs(
    model: nn.Module,
    tok,
    queries: list[str],
    texts: list[str],
    *,
    max_length: int = 64,
    batch_size: int = 64,
    progress: str | None = None,
) -> np.ndarray:
    """Cross-encoder logits for (query, text) pairs, batched by similar length."""
    model.eval()
    return run_by_length(
        [a + b for a, b in zip(queries, texts)], batch_size,
        lambda ix: encode_pairs(tok, [queries[j] for j in ix], [texts[j] for j in ix], max_length),
        lambda enc: model(**enc), next(model.parameters()).device, progress=progress)


@torch.no_grad()
def embed_texts(
    encoder: TextEncoder,
    tok,
    texts: list[str],
    *,
    max_length: int = 64,
    batch_size: int = 128,
    normalize: bool = True,
    progress: str | None = None,
) -> np.ndarray:
    encoder.eval()

    def fn(enc: dict[str, torch.Tensor]) -> torch.Tensor:
        e = encoder(**enc)
        return nn.functional.normalize(e, dim=-1) if normalize else e

    return run_by_length(
        texts, batch_size, lambda ix: encode_texts(tok, [texts[j] for j in ix], max_length), fn,
        next(encoder.parameters()).device, empty_shape=(0, encoder.dim), progress=progress)


def pool_metrics(df: pl.DataFrame, scores: np.ndarray, *, lo: float, ks=(5, 10),
                 ties: str = "pessimistic") -> dict[str, np.ndarray]:
    """Per-query NDCG@k / MRR within each query's judged pool; gain = grade - min grade.

    Values are aligned with the sorted distinct queries, so two scorers' arrays on the same
    table pair up query by query."""
    qids = df["query"].rank("dense").cast(pl.Int64).to_numpy()
    gains = df["grade"].to_numpy() - lo
    return eval_metrics.grouped_ranking_metrics(qids, scores, gains, ks=ks, ties=ties)


def evaluate_scores(df: pl.DataFrame, scores: np.ndarray, *, lo: float, hi: float | None = None,
                    ks=(5, 10), n_boot: int = 1000, calibrated: bool = False,
                    ties: str = "pessimistic") -> dict[str, Any]:
    """Pool metrics with bootstrap intervals. ``ties="average"`` for baselines with many equal
    scores (BM25): their expected value over random tie orders (the label-ordered optimistic
    bound would rank a tied pool perfectly); a calibrated (pointwise) model also gets RMSE in
    the grade scale."""
    per_query = pool_metrics(df, scores, lo=lo, ks=ks, ties=ties)
    out = {"per_query": per_query, "summary": eval_metrics.summarize(per_query, n_boot=n_boot)}
    if calibrated and hi is not None:
        pred = lo + (hi - lo) / (1 + np.exp(-scores))
        out["summary"]["rmse"] = {"mean": eval_metrics.rmse(df["grade"].to_numpy(), pred), "n": len(df)}
    return out


def pooled_folds(frames: list[pl.DataFrame], *, lo: float, hi: float | None = None,
                 baselines: tuple[str, ...] = ("bm25", "zero_shot"), n_boot: int = 1000,
                 ties: dict[str, str] | None = None) -> dict[str, Any]:
    """Cross-validation: pool the test folds' per-query NDCG of ``model`` and each baseline.

    Each frame is one fold's ``test_scores.parquet`` (query, item_id, grade and a score
    column per scorer). The folds' test queries must be disjoint (group k-fold), so every
    query counts once; the pooled intervals are then over every judged query instead of one
    fold's. BM25 is tie-averaged as in the single-fold run; ``hi`` adds the model's RMSE."""
    ties = {"bm25": "average", **(ties or {})}
    if not frames:
        raise DataError("no folds to pool", argument="frames")
    seen: dict[str, int] = {}
    for k, f in enumerate(frames):
        missing = [c for c in ("query", "grade", "model", *baselines) if c not in f.columns]
        if missing:
            raise DataError(f"fold {k}: test scores lack column(s) {missing}", argument="frames")
        for q in f["query"].unique(maintain_order=True).to_list():
            if q in seen:
                raise DataError(f"query {q!r} is in the test split of folds {seen[q]} and {k}: "
                                "pooled folds must hold disjoint queries", argument="frames")
            seen[q] = k
    df = pl.concat(frames, how="diagonal_relaxed")
    evals = {name: evaluate_scores(df, df[name].to_numpy(), lo=lo, hi=hi, n_boot=n_boot,
                                   calibrated=name == "model", ties=ties.get(name, "pessimistic"))
             for name in ("model", *baselines)}
    comparisons = {b: eval_metrics.compare(evals["model"]["per_query"]["ndcg@10"],
                                           evals[b]["per_query"]["ndcg@10"], n_boot=n_boot)
                   for b in baselines}
    # per-query values are in sorted query order (pool_metrics): each one's fold, to split them
    fold_of = np.array([seen[q] for q in df["query"].unique().sort().to_list()])
    folds = []
    for k, f in enumerate(frames):
        row = {"fold": k, "queries": f["query"].n_unique(), "pairs": len(f)}
        for name, ev in evals.items():
            row[name] = float(np.nanmean(ev["per_query"]["ndcg@10"][fold_of == k]))
        folds.append(row)
    return {"model": evals["model"]["summary"],
            "baselines": {b: evals[b]["summary"] for b in baselines},
            "comparisons_ndcg@10": comparisons, "folds": folds,
            "queries": len(seen), "pairs": len(df)}


def bm25_pool_scores(df: pl.DataFrame, items: pl.DataFrame) -> np.ndarray:
    docs = items["text"].to_list()
    pos = {iid: i for i, iid in enumerate(items["item_id"].to_list())}
    index = BM25Index(docs)
    return np.asarray(
        index.score_pairs(df["query"].to_list(), [pos[i] for i in df["item_id"].to_list()]),
        dtype=np.float32,
    )


def zero_shot_pool_scores(df: pl.DataFrame, embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Cosine similarity under the untuned pretrained encoder (its intended use): ``embed`` maps
    texts to its normalised, mean-pooled vectors (``catalogue.untuned_embedder``: each text
    embedded once ever, so a retraining on the same judgements pays nothing for this baseline)."""
    qs = df["query"].unique(maintain_order=True).to_list()
    ts = df["text"].unique(maintain_order=True).to_list()
    qe, te = embed(qs), embed(ts)
    qi = {q: i for i, q in enumerate(qs)}
    ti = {t: i for i, t in enumerate(ts)}
    a = qe[[qi[q] for q in df["query"].to_list()]]
    b = te[[ti[t] for t in df["text"].to_list()]]
    return (a * b).sum(1)


def train_search(
    data: PairSplits,
    *,
    encoder_path: str,
    workdir: Path,
    schedule: Schedule,
    settings: SearchSettings,
    progress: bool = True,
    extra_eval: Callable[[nn.Module, Any], dict[str, float]] | None = None,
    metric: str | None = None,
    triples: pl.DataFrame | None = None,
) -> tuple[nn.Module, Any, ModelSpec, FitResult]:
    """Fine-tune a cross-encoder on ``data.train`` (and, pairwise, on ``triples``: query,
    positive and negative product texts, see ``make_batches``). Validation scores the judged pools of
    ``settings.eval_queries`` validation queries; ``extra_eval(model, tok)`` adds metrics (the
    whole-catalogue pipeline's), and ``metric`` names the one that keeps the best checkpoint
    (default: NDCG@10 within the pools)."""
    spec = ModelSpec(
        task="search",
        encoder=encoder_path,
        max_length=settings.max_length,
        extra={"loss": settings.loss, "grade_min": data.grade_min, "grade_max": data.grade_max,
               "head": settings.head},
    )
    model, tok = new_model(spec, encoder_path)
    freeze_lower(model, settings.freeze_layers)
    batches = make_batches(data.train, tok, settings, schedule.seed, data.grade_min, data.grade_max, triples)
    if settings.head == "similarity":
        # 512 training pairs, tokenised and scaled as the training batches are
        sample = data.train.with_row_index("_i").sample(min(512, len(data.train)), seed=schedule.seed)
        start = batches(0).make(sample["_i"].to_numpy())
        types = start.get("token_type_ids")
        if types is None or int(types.max()) < 1:
            raise ModelError(f"the tokenizer of {encoder_path} does not mark the second segment "
                             "(token_type_ids); use train.search.head=linear")
        spec.extra["start"] = start_from_similarity(model, start)
    valid = data.valid
    vq = valid["query"].unique(maintain_order=True)
    if len(vq) > settings.eval_queries:
        keep = vq.sample(settings.eval_queries, seed=schedule.seed)
        valid = valid.filter(pl.col("query").is_in(keep.implode()))

    def evaluate(m: nn.Module) -> dict[str, float]:
        s = score_pairs(
            m,
            tok,
            valid["query"].to_list(),
            valid["text"].to_list(),
            max_length=settings.max_length,
        )
        pq = pool_metrics(valid, s, lo=data.grade_min, ks=settings.ks)
        out = {k: float(np.nanmean(v)) for k, v in pq.items()}
        return {**out, **(extra_eval(m, tok) if extra_eval else {})}

    result = fit(
        model,
        batches=batches,
        loss_fn=loss_fn(settings.loss, settings.negative_weight),
        evaluate=evaluate,
        metric=metric or f"ndcg@{max(settings.ks)}",
        schedule=schedule,
        workdir=workdir,
        progress=progress,
        desc="search",
    )
    return model, tok, spec, result
