"""Stage ② train, top to bottom, one task at a time:

    dataset folder -> task data -> fine-tune (fit) -> test metrics with bootstrap CIs
    -> baselines measured in the same run on the same split -> paired comparisons
    -> model folder (safetensors + encoder files) + manifest.json (written last)

Training state lives beside the output (``.<out>.work``) until the run succeeds, so an
interrupted run resumes where it stopped when the same command is run again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shelfops.artifacts import Manifest, input_ref, read_manifest, stage_output
from shelfops.config.schema import TrainConfig
from shelfops.errors import ArtifactError, ConfigError
from shelfops.eval import metrics as eval_metrics
from shelfops.plain import jsonable
from shelfops.tasks import TASKS
from shelfops.train import catalogue, text_models
from shelfops.train.baselines import BM25Index, TfidfCentroidClassifier, majority_class
from shelfops.train.classify import classify_settings_from, load_items, predict_proba, train_classifier
from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer, resolve_encoder
from shelfops.train.hybrid import DEFAULT_WEIGHT as DEFAULT_FUSION_WEIGHT
from shelfops.train.hybrid import choose, fuse, rerank
from shelfops.train.index import build_index, save_embeddings, save_index
from shelfops.train.index import search as index_search
from shelfops.train.loop import schedule_from
from shelfops.train.pairs import load_pairs
from shelfops.train.recommend import evaluate_folder, recommend_args, train_recommend
from shelfops.train.recommend import save as save_recommender
from shelfops.train.retrieval import catalogue_eval, positives, retrieval_settings_from, train_retrieval
from shelfops.train.search import (
    bm25_pool_scores,
    embed_texts,
    evaluate_scores,
    pool_metrics,
    score_pairs,
    search_settings_from,
    train_search,
    zero_shot_pool_scores,
)

Say = Callable[[str], None]


class Reranker(Protocol):
    """A cross-encoder as it ships (``optimize.shipped.Shipped`` is one): what the retrieval
    recipe needs to measure the retrieve + re-rank pipeline."""

    folder: Path
    name: str

    def run(self, a: list[str], b: list[str] | None = None) -> np.ndarray: ...


PER_QUERY = ("per_query",)  # per-query arrays: kept beside a manifest, never in it


def beats(comparisons: dict[str, dict]) -> bool:
    """The model beats every baseline with non-overlapping 95% intervals."""
    return bool(comparisons) and all(c["a_better"] and not c["overlap"] for c in comparisons.values())


def beats_paired(comparisons: dict[str, dict]) -> bool:
    """The paired-bootstrap interval of the difference to every baseline (same queries, same
    resamples) lies above zero: the weaker claim, with more power on a small test split."""
    return bool(comparisons) and all(c["diff"]["ci_low"] > 0 for c in comparisons.values())


def verdict(metrics: dict[str, Any]) -> str:
    """'yes' (non-overlapping intervals), 'paired' (only the paired difference is above zero)
    or 'no', for tables."""
    if metrics.get("beats_baselines"):
        return "yes"
    return "paired" if metrics.get("beats_baselines_paired") else "no"


def run(task: str, data_dir: Path, out: Path, cfg: TrainConfig, *, progress: bool = True,
        say: Say = print, config_dump: dict[str, Any] | None = None,
        reranker: Reranker | None = None) -> Manifest:
    if task not in TASKS:
        raise ConfigError([f"task: {task!r} is not one of {list(TASKS)}"])
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data_dir, out = Path(data_dir), Path(out)
    dm = read_manifest(data_dir)
    encoder_path = resolve_encoder(cfg.encoder)
    work = out.parent / f".{out.name}.work"
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # under torchrun every rank trains; only rank 0 writes the model folder
        out = work / f"rank{rank}"
    t0 = time.perf_counter()
    try:
        with stage_output(out, "train", config=config_dump or {"train": cfg.model_dump(mode="json")},
                          inputs=[input_ref(data_dir / "manifest.json")]) as w:
            fn = {"search": _search, "retrieval": _retrieval, "recommend": _recommend,
                  "classify": _classify}[task]
            metrics, counts, extra = fn(data_dir, w.dir, work, cfg, encoder_path, progress, say,
                                        reranker=reranker)
            w.manifest.metrics = jsonable(metrics, drop=PER_QUERY)
            w.manifest.counts = counts
            w.manifest.extra = {"task": task, "encoder": encoder_path, "data": str(data_dir.resolve()),
                                "data_created_at": dm.created_at, "seconds": round(time.perf_counter() - t0, 1),
                                **jsonable(extra, drop=PER_QUERY)}
    except ArtifactError as e:
        if e.details.get("disk_full"):  # its checkpoints may be cut short, and they hold the space
            shutil.rmtree(work, ignore_errors=True)
        raise
    m = read_manifest(out)
    if rank == 0:
        shutil.rmtree(work, ignore_errors=True)
    return m


# --------------------------------------------------------------------------------- search


def search_test_metrics(model, tok, spec, data, *, n_boot: int, batch_size: int = 64,
                        progress: bool = True) -> tuple[dict, np.ndarray]:
    lo, hi = spec.extra["grade_min"], spec.extra["grade_max"]
    s = score_pairs(model, tok, data.test["query"].to_list(), data.test["text"].to_list(),
                    max_length=spec.max_length, batch_size=batch_size,
                    progress="search: test" if progress else None)
    ev = evaluate_scores(data.test, s, lo=lo, hi=hi, n_boot=n_boot,
                         calibrated=spec.extra.get("loss") == "pointwise")
    return ev, s


def write_test_scores(out: Path, test, scores: dict[str, np.ndarray]) -> Path:
    import polars as pl

    frame = test.select("query", "item_id", "grade").with_columns(
        [pl.Series(name, np.asarray(v, dtype=np.float32)) for name, v in scores.items()])
    path = out / "test_scores.parquet"
    frame.write_parquet(path)
    return path


def _search(data_dir, out, work, cfg: TrainConfig, encoder_path, progress, say, **_):
    c, cc = cfg.search, cfg.search.catalogue
    data = load_pairs(data_dir, train_on=tuple(c.train_on), augmented=c.augmented)
    lo, hi = data.grade_min, data.grade_max
    say(f"search: {len(data.train):,} training pairs ({data.sources['train']}), "
        f"{data.test['query'].n_unique():,} test queries ({data.sources['eval']})")
    cat, extra_eval, mined, triples = None, None, 0, None
    if cc.enabled:
        # both retrievers over the whole catalogue: they mine the re-ranker's hard negatives, and
        # the served pipeline (retrieve -> fuse -> re-rank) is validated and tested on it
        cat = catalogue.Retrievers.open(data.items, encoder_path, cc.retriever, max_length=c.max_length,
                                        progress=progress)
        neg = catalogue.mined_negatives(data.train, cat, per_query=cc.hard_negatives, depth=cc.negative_depth,
                                        skip=cc.negative_skip, seed=c.schedule.seed)
        mined = len(neg)
        if cc.negative_loss == "pointwise":
            data.train = catalogue.as_graded(data.train, neg, cat, grade=lo)
        else:
            triples = catalogue.as_triples(data.train, neg, cat, relevant=lo + cc.relevant_threshold * (hi - lo),
                                           seed=c.schedule.seed)
        say(f"search: {mined:,} hard negatives mined from the hybrid retriever ({cat.dense_name} + BM25), "
            f"{cc.hard_negatives} per training query below its first {cc.negative_skip}, trained "
            + ("graded at the bottom of the scale" if cc.negative_loss == "pointwise" else
               f"pairwise below a judged relevant product ({len(triples):,} triples)"))
        extra_eval = _catalogue_validation(cat, data, cc, c.max_length)
    if cc.negative_weight != 1.0 and (triples is None or c.loss != "pointwise"):
        say(f"search: train.search.catalogue.negative_weight {cc.negative_weight:g} has no effect: only loss "
            f"'pointwise' with catalogue.negative_loss 'pairwise' trains the hard-negative term it weighs")
    settings = search_settings_from(c)
    metric = "catalogue_ndcg@10" if cat is not None and cc.early_stop_on == "catalogue" else None
    model, tok, spec, fitres = train_search(data, encoder_path=encoder_path, workdir=work,
                                            schedule=schedule_from(c.schedule), settings=settings,
                                            progress=progress, extra_eval=extra_eval, metric=metric,
                                            triples=triples)
    text_models.save(model, spec, encoder_path, out)
    t = time.perf_counter()
    ev, model_scores = search_test_metrics(model, tok, spec, data, n_boot=cfg.bootstrap,
                                           progress=progress)
    infer_s = time.perf_counter() - t
    # BM25 ties a lot (0 for every pool item sharing no query term): its expected value over
    # random tie orders, with both bounds beside it (metrics.py, "Ties")
    bm_scores = bm25_pool_scores(data.test, data.items)
    bm25 = evaluate_scores(data.test, bm_scores, lo=lo, n_boot=cfg.bootstrap, ties="average")
    bm25_bounds = {t: float(np.nanmean(pool_metrics(data.test, bm_scores, lo=lo, ties=t)["ndcg@10"]))
                   for t in ("pessimistic", "optimistic")}
    zs_scores = zero_shot_pool_scores(data.test, catalogue.untuned_embedder(
        encoder_path, c.max_length, "zero-shot: embedding" if progress else None))
    zs = evaluate_scores(data.test, zs_scores, lo=lo, n_boot=cfg.bootstrap)
    rng = np.random.default_rng(0)
    rnd = evaluate_scores(data.test, rng.random(len(data.test)), lo=lo, n_boot=cfg.bootstrap)
    comparisons = {name: eval_metrics.compare(ev["per_query"]["ndcg@10"], b["per_query"]["ndcg@10"],
                                              n_boot=cfg.bootstrap)
                   for name, b in (("bm25", bm25), ("zero_shot", zs))}
    metrics = {"model": ev["summary"], "baselines": {"bm25": bm25["summary"],
                                                     "zero_shot": zs["summary"],
                                                     "random": rnd["summary"]},
               "comparisons_ndcg@10": comparisons, "beats_baselines": beats(comparisons),
               "beats_baselines_paired": beats_paired(comparisons),
               "bm25_ndcg@10_tie_bounds": bm25_bounds,
               "test_pairs_per_second": round(len(data.test) / infer_s, 1)}
    _say_table(say, "search (NDCG within judged pools)", metrics, ("ndcg@10", "ndcg@5", "mrr", "rmse"))
    say(f"  bm25 is tie-averaged; NDCG@10 with its ties broken worst-first {bm25_bounds['pessimistic']:.4f}, "
        f"best-first {bm25_bounds['optimistic']:.4f}")
    extra: dict[str, Any] = {"fit": fitres.to_dict(), "sources": data.sources, "grade_range": [lo, hi]}
    scores = {"model": model_scores, "bm25": bm_scores, "zero_shot": zs_scores}
    if cat is not None:
        metrics["catalogue"], extra["pipeline"] = _catalogue_test(cat, model, tok, data, cc, c.max_length,
                                                                  out, cfg.bootstrap, say, progress,
                                                                  judged_scores=model_scores)
        if cc.retriever is None:  # the server embeds its catalogue with the same untuned encoder
            extra["pipeline"].update(dense_encoder=encoder_path, dense_max_length=c.max_length)
        else:  # served beside it as the retrieval model; optimize times searches with it
            extra["pipeline"].update(dense_retriever=str(Path(cc.retriever).resolve()))
        scores["served"], metrics["served_in_pools"] = _served_in_pools(
            cat, data, model_scores, extra["pipeline"], {"bm25": bm25, "zero_shot": zs}, ev, cfg.bootstrap, say)
    # every test pair's score under the model, as served and under both baselines, for later
    # analysis and for pooling the folds of a cross-validation (search.pooled_folds)
    write_test_scores(out, data.test, scores)
    counts = {"train_pairs": len(data.train), "hard_negatives": mined, "test_pairs": len(data.test),
              "test_queries": data.test["query"].n_unique()}
    return metrics, counts, extra


def _served_in_pools(cat, data, model_scores: np.ndarray, pipeline: dict, baselines: dict[str, dict],
                     alone: dict, n_boot: int, say: Say) -> tuple[np.ndarray, dict[str, Any]]:
    """The judged pools ordered as the pipeline serves them (the re-ranker's order fused with the
    retrievers' at the chosen weight, depth and blend; catalogue.served_pool_scores), against the
    same baselines: how the re-ranker does as shipped, beside its own scores alone."""
    lexical, dense = cat.pair_scores(data.test)
    served = catalogue.served_pool_scores(data.test, model_scores, lexical, dense,
                                          weight=pipeline["fusion_weight"], depth=pipeline["rerank_depth"],
                                          blend=pipeline["rerank_blend"])
    ev = evaluate_scores(data.test, served, lo=data.grade_min, n_boot=n_boot)
    comparisons = {name: eval_metrics.compare(ev["per_query"]["ndcg@10"], b["per_query"]["ndcg@10"],
                                              n_boot=n_boot) for name, b in baselines.items()}
    s = ev["summary"]["ndcg@10"]
    say(f"  as served (re-ranker fused with the retrievers' order, blend {pipeline['rerank_blend']:g}): "
        f"NDCG@10 within judged pools {s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]; "
        + ", ".join(f"- {n} {c['diff']['mean']:+.4f} [{c['diff']['ci_low']:+.4f}, {c['diff']['ci_high']:+.4f}]"
                    for n, c in comparisons.items()))
    vs_alone = eval_metrics.compare(ev["per_query"]["ndcg@10"], alone["per_query"]["ndcg@10"], n_boot=n_boot)
    d = vs_alone["diff"]
    say(f"    as served - the re-ranker alone: {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
    return served, {"metrics": ev["summary"], "comparisons_ndcg@10": comparisons, "vs_model_alone": vs_alone,
                    "beats_baselines": beats(comparisons), "beats_baselines_paired": beats_paired(comparisons)}


def _pair_scorer(model, tok, max_length: int, progress: str | None = None):
    return lambda qs, ts: score_pairs(model, tok, qs, ts, max_length=max_length, progress=progress)


def _catalogue_validation(cat, data, cc, max_length: int):
    """Early stopping on what shoppers get: the pipeline's NDCG@10 over the whole catalogue for
    ``cc.eval_queries`` validation queries, at the default fusion weight and the middle depth
    (the weight and depth themselves are chosen once, after training)."""
    judged = catalogue.Judged(data.valid, data.grade_min, data.grade_max, cc.relevant_threshold, cat.ids)
    qs = catalogue.relevant_queries(data.valid, data.grade_min, data.grade_max, cc.relevant_threshold,
                                    cc.eval_queries)
    depth = sorted(cc.depths)[len(cc.depths) // 2]
    fused = cat.candidates(qs).fused(DEFAULT_FUSION_WEIGHT, depth)

    def evaluate(model, tok) -> dict[str, float]:
        scores = catalogue.PairScores(qs, cat.texts, _pair_scorer(model, tok, max_length))
        rows = rerank(fused, scores, depth)
        return {"catalogue_ndcg@10": float(np.nanmean(judged.per_query(qs, rows)["ndcg@10"]))}

    return evaluate


def _catalogue_test(cat, model, tok, data, cc, max_length: int, out: Path, n_boot: int, say: Say,
                    progress: bool, judged_scores: np.ndarray | None = None) -> tuple[dict, dict]:
    """Choose the fusion weight and re-rank depth on validation, then test the four systems
    (pipeline, hybrid, dense, BM25) over the whole catalogue; per-query values go to
    ``catalogue_scores.parquet`` for pooling folds (catalogue.pooled). ``judged_scores``: the
    model's scores of the test set's judged pairs, which retrieval brings again (a quarter of
    the demo's re-ranked test pairs) and which are not scored twice."""
    lo, hi, th = data.grade_min, data.grade_max, cc.relevant_threshold
    vq = catalogue.relevant_queries(data.valid, lo, hi, th, cc.eval_queries)
    vscores = catalogue.PairScores(vq, cat.texts, _pair_scorer(model, tok, max_length))
    choice = catalogue.choose_pipeline(cat.candidates(vq), vscores, catalogue.Judged(data.valid, lo, hi, th, cat.ids),
                                       vq, weights=cc.weights, depths=cc.depths, blends=cc.blends)
    tq = catalogue.relevant_queries(data.test, lo, hi, th)
    tscores = catalogue.PairScores(tq, cat.texts, _pair_scorer(model, tok, max_length,
                                                               "catalogue: re-rank" if progress else None))
    if judged_scores is not None:
        tscores.seed(data.test, judged_scores, cat.ids)
    rows = catalogue.system_rows(cat.candidates(tq), tscores, choice.weight, choice.depth, choice.blend)
    result, frame = catalogue.evaluate_systems(rows, catalogue.Judged(data.test, lo, hi, th, cat.ids), tq,
                                               n_boot=n_boot)
    frame.write_parquet(out / "catalogue_scores.parquet")
    pipeline = {"fusion_weight": choice.weight, "rerank_depth": choice.depth, "rerank_blend": choice.blend,
                "dense": cat.dense_name, "retriever": "hybrid"}
    result = {**result, "choice": choice.to_dict(), "items": len(cat.ids), **pipeline}
    say(f"search over the whole catalogue ({len(cat.ids):,} items, {len(tq):,} test queries; chosen on "
        f"validation: fusion weight {choice.weight:g} for {cat.dense_name}, re-rank depth {choice.depth}, "
        f"blend {choice.blend:g})")
    for name in catalogue.SYSTEMS:
        s = result["systems"][name]
        line = f"  {name:<9} NDCG@10 {_fmt(s, 'ndcg@10')}  Recall@10 {_fmt(s, 'recall@10')}"
        if name != "pipeline":
            d = result["comparisons"]["ndcg@10"][name]["diff"]
            line += f"  pipeline - it: {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
        say(line)
    return result, pipeline


# ------------------------------------------------------------------------------ retrieval


def _retrieval(data_dir, out, work, cfg: TrainConfig, encoder_path, progress, say, reranker=None, **_):
    c = cfg.retrieval
    data = load_pairs(data_dir)
    lo, hi = data.grade_min, data.grade_max
    settings = retrieval_settings_from(c)
    say(f"retrieval: {len(positives(data.train, lo, hi, c.positive_threshold)):,} positive pairs, "
        f"catalogue of {len(data.items):,} items")
    model, tok, spec, fitres = train_retrieval(data, encoder_path=encoder_path, workdir=work,
                                               schedule=schedule_from(c.schedule),
                                               settings=settings, progress=progress)
    text_models.save(model, spec, encoder_path, out)
    items = data.items
    texts, ids = items["text"].to_list(), items["item_id"].to_list()
    item_emb = embed_texts(model.encoder, tok, texts, max_length=c.max_length,
                           progress="retrieval: catalogue" if progress else None)
    vq = catalogue.relevant_queries(data.valid, lo, hi, c.positive_threshold, c.eval_queries)
    # the index that ships is tuned on real (validation) queries; evaluation searches exactly,
    # so its numbers measure the model and the index's own recall is recorded beside them
    served, info = build_index(item_emb, probes=embed_texts(model.encoder, tok, vq, max_length=c.max_length))
    save_index(served, info, out / "index")
    save_embeddings(out / "index", ids, item_emb)
    index, _ = build_index(item_emb, kind="flat")

    test_q = positives(data.test, lo, hi, c.positive_threshold)["query"].unique(maintain_order=True).to_list()
    kw = dict(lo=lo, hi=hi, threshold=c.positive_threshold, ks=(10, 50))
    qe = embed_texts(model.encoder, tok, test_q, max_length=c.max_length)
    _, got = index_search(index, qe, max(50, c.rerank_depth))
    model_pq = catalogue_eval(qe, None, test_q, data.test, ids, retrieved=got[:, :50], **kw)
    bm = BM25Index(texts)
    bm_ids, _ = bm.search(test_q, 50)
    bm_pq = catalogue_eval(None, None, test_q, data.test, ids, retrieved=bm_ids, **kw)
    zenc = TextEncoder(load_backbone(encoder_path), "mean")
    ztok = load_tokenizer(encoder_path)
    z_items = catalogue.cached_embeddings(encoder_path, texts, c.max_length, lambda ts: embed_texts(
        zenc, ztok, ts, max_length=c.max_length), progress="zero-shot: catalogue" if progress else None)
    zi, _ = build_index(z_items, kind="flat")
    _, z_ids = index_search(zi, embed_texts(zenc, ztok, test_q, max_length=c.max_length), 50)
    zs_pq = catalogue_eval(None, None, test_q, data.test, ids, retrieved=z_ids, **kw)
    n = cfg.bootstrap
    metrics: dict[str, Any] = {
        "model": eval_metrics.summarize(model_pq, n_boot=n),
        "baselines": {"bm25": eval_metrics.summarize(bm_pq, n_boot=n),
                      "zero_shot": eval_metrics.summarize(zs_pq, n_boot=n)},
        "comparisons_recall@10": {
            "bm25": eval_metrics.compare(model_pq["recall@10"], bm_pq["recall@10"], n_boot=n),
            "zero_shot": eval_metrics.compare(model_pq["recall@10"], zs_pq["recall@10"], n_boot=n)},
        "index": {"kind": info.kind, "n": info.n, "dim": info.dim, **info.params},
    }
    metrics["beats_baselines"] = beats(metrics["comparisons_recall@10"])
    metrics["beats_baselines_paired"] = beats_paired(metrics["comparisons_recall@10"])
    # the hybrid the server runs with this bi-encoder: its weight chosen on validation queries
    cat = catalogue.Retrievers(ids, texts, bm, index,
                               lambda qs: embed_texts(model.encoder, tok, qs, max_length=c.max_length),
                               "this bi-encoder")
    vjudged = catalogue.Judged(data.valid, lo, hi, c.positive_threshold, ids)
    vc = cat.candidates(vq)
    choice = choose(lambda w, _d, _b: float(np.nanmean(vjudged.per_query(vq, vc.fused(w, 10))["ndcg@10"])),
                    depths=(10,), tolerance=1e-3)
    hybrid = catalogue_eval(None, None, test_q, data.test, ids, **kw,
                            retrieved=fuse(bm_ids, got[:, :50], choice.weight, n=50))
    metrics["hybrid"] = {"fusion_weight": choice.weight, "validation": choice.to_dict()["grid"],
                         "summary": eval_metrics.summarize(hybrid, n_boot=n),
                         "comparisons_recall@10": {
                             "bm25": eval_metrics.compare(hybrid["recall@10"], bm_pq["recall@10"], n_boot=n),
                             "model": eval_metrics.compare(hybrid["recall@10"], model_pq["recall@10"], n_boot=n)}}
    if reranker is not None:
        fused = fuse(bm_ids, got, choice.weight, n=max(50, c.rerank_depth))
        metrics["pipeline"] = _rerank_pipeline(reranker, test_q, fused[:, :c.rerank_depth],
                                               items, data, n, **kw)
    _say_table(say, "retrieval (whole catalogue)", metrics, ("recall@10", "recall@50", "ndcg@10"))
    hs = metrics["hybrid"]["summary"]
    say(f"  hybrid (BM25 + this bi-encoder, weight {choice.weight:g} chosen on validation): "
        f"Recall@10 {_fmt(hs, 'recall@10')}  NDCG@10 {_fmt(hs, 'ndcg@10')}")
    counts = {"catalogue_items": len(items), "test_queries": len(test_q)}
    return metrics, counts, {"fit": fitres.to_dict(), "sources": data.sources,
                             "pipeline": {"fusion_weight": choice.weight, "retriever": "hybrid"}}


def _rerank_pipeline(ce: Reranker, queries, candidates, items, data, n_boot, **kw) -> dict:
    """Retrieve ``depth`` candidates with the hybrid, re-rank them with a cross-encoder as
    it ships (the caller opens it: a trained folder's fp32 model, or an optimized folder's
    chosen variant, ``optimize.shipped.load_shipped``)."""

    texts = items["text"].to_list()
    qs = [q for q in queries for _ in range(candidates.shape[1])]
    ts = [texts[i] for row in candidates for i in row]
    s = ce.run(qs, ts).reshape(candidates.shape)
    order = np.argsort(-s, axis=1, kind="stable")
    reranked = np.take_along_axis(candidates, order, axis=1)
    ids = items["item_id"].to_list()
    per = catalogue_eval(None, None, queries, data.test, ids, retrieved=reranked, **kw)
    return {"reranker": str(ce.folder), "variant": ce.name, "depth": int(candidates.shape[1]),
            "summary": eval_metrics.summarize(per, n_boot=n_boot)}


# ------------------------------------------------------------------------------- classify


def _classify(data_dir, out, work, cfg: TrainConfig, encoder_path, progress, say, **_):
    c = cfg.classify
    splits = load_items(data_dir, level=c.level, min_class_size=c.min_class_size, seed=13)
    say(f"classify: {len(splits['train']):,} train / {len(splits['test']):,} test items, "
        f"{splits['train']['label'].n_unique()} categories")
    settings = classify_settings_from(c)
    model, tok, spec, fitres = train_classifier(splits, encoder_path=encoder_path, workdir=work,
                                                schedule=schedule_from(c.schedule),
                                                settings=settings, progress=progress)
    text_models.save(model, spec, encoder_path, out)
    test = splits["test"]
    y = test["label"].to_list()
    p = predict_proba(model, tok, test["text"].to_list(), max_length=c.max_length)
    pred = [spec.labels[i] for i in p.argmax(1)]
    tfidf = TfidfCentroidClassifier(splits["train"]["text"].to_list(), splits["train"]["label"].to_list())
    base = {"majority": list(majority_class(splits["train"]["label"].to_list(), len(y))),
            "tfidf_centroid": list(tfidf.predict(test["text"].to_list()))}
    n = cfg.bootstrap

    def summary(pr: list) -> dict:
        correct = np.array([a == b for a, b in zip(pr, y)], dtype=float)
        return {"accuracy": eval_metrics.bootstrap_ci(correct, n_boot=n),
                "macro_f1": eval_metrics.macro_f1(y, pr)}

    metrics = {"model": summary(pred), "baselines": {k: summary(v) for k, v in base.items()}}
    correct = np.array([a == b for a, b in zip(pred, y)], dtype=float)
    metrics["comparisons_accuracy"] = {
        k: eval_metrics.compare(correct, np.array([a == b for a, b in zip(v, y)], dtype=float), n_boot=n)
        for k, v in base.items()}
    metrics["beats_baselines"] = beats(metrics["comparisons_accuracy"])
    metrics["beats_baselines_paired"] = beats_paired(metrics["comparisons_accuracy"])
    say(f"classify: accuracy {metrics['model']['accuracy']['estimate']:.4f} "
        f"(majority {metrics['baselines']['majority']['accuracy']['estimate']:.4f}, "
        f"tf-idf {metrics['baselines']['tfidf_centroid']['accuracy']['estimate']:.4f}); "
        f"macro-F1 {metrics['model']['macro_f1']:.4f}")
    counts = {"train_items": len(splits["train"]), "test_items": len(test), "classes": len(spec.labels)}
    return metrics, counts, {"fit": fitres.to_dict()}


# ------------------------------------------------------------------------------ recommend


def _recommend(data_dir, out, work, cfg: TrainConfig, encoder_path, progress, say, **_):
    c = cfg.recommend
    res = train_recommend(data_dir, **recommend_args(c), encoder_path=encoder_path, workdir=work,
                          progress=progress, bootstrap=cfg.bootstrap)
    save_recommender(res, out)
    metrics = res.metrics
    comps = metrics.get("comparisons") or {}
    if comps and "a_better" in comps:
        comps = {"poprec_train": comps}
    metrics["beats_baselines"] = beats(comps)
    metrics["beats_baselines_paired"] = beats_paired(comps)
    _say_table(say, "recommend (full ranking)", metrics, ("ndcg@10", "hr@10", "ndcg@20", "hr@20"))
    return metrics, getattr(res, "counts", {}), {"fit": getattr(res, "fit", {})}


# -------------------------------------------------------------------------------- output


def _fmt(s: dict | None, k: str) -> str:
    if not s or k not in s or s[k] is None:
        return "-"
    v = s[k]
    if isinstance(v, dict):
        m = v.get("mean", v.get("estimate"))
        if m is None or (isinstance(m, float) and np.isnan(m)):
            return "-"
        lo, hi = v.get("ci_low"), v.get("ci_high")
        return f"{m:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None and "ci_low" in v else "")
    return f"{v:.4f}"


def _say_table(say: Say, title: str, metrics: dict, keys: tuple[str, ...]) -> None:
    rows = [("model", metrics.get("model"))] + list((metrics.get("baselines") or {}).items())
    say(f"{title}:")
    say("  " + f"{'':<14}" + "".join(f"{k:>28}" for k in keys))
    for name, s in rows:
        say("  " + f"{name:<14}" + "".join(f"{_fmt(s, k):>28}" for k in keys))


def evaluate(model_dir: Path, data_dir: Path, cfg: TrainConfig, *, progress: bool = True,
             say: Say = print) -> dict[str, Any]:
    """Evaluate a trained model on another dataset's test split; the result is written to
    ``evaluations/`` and recorded in the model's manifest."""

    model_dir, data_dir = Path(model_dir), Path(data_dir)
    read_manifest(data_dir)
    spec_path = model_dir / "model.json"
    task = json.loads(spec_path.read_text())["task"] if spec_path.exists() else None
    name = data_dir.resolve().name
    if task == "search":
        model, tok, spec = text_models.load(model_dir)
        data = load_pairs(data_dir)
        ev, _ = search_test_metrics(model, tok, spec, data, n_boot=cfg.bootstrap, progress=progress)
        result = {"task": task, "summary": ev["summary"]}
        cc = cfg.search.catalogue
        if cc.enabled:  # the served pipeline over this dataset's catalogue (with any retriever given)
            cat = catalogue.Retrievers.open(data.items, spec.encoder, cc.retriever, max_length=spec.max_length,
                                            progress=progress)
            folder = model_dir / "evaluations" / name
            folder.mkdir(parents=True, exist_ok=True)
            result["catalogue"], _ = _catalogue_test(cat, model, tok, data, cc, spec.max_length, folder,
                                                     cfg.bootstrap, say, progress)
    elif task == "classify":
        model, tok, spec = text_models.load(model_dir)
        sp = load_items(data_dir, level=spec.extra.get("level"), min_class_size=1, seed=13)
        test = sp["test"]
        p = predict_proba(model, tok, test["text"].to_list(), max_length=spec.max_length)
        pred = [spec.labels[i] for i in p.argmax(1)]
        y = test["label"].to_list()
        result = {"task": task, "summary": {
            "accuracy": eval_metrics.bootstrap_ci(np.array([a == b for a, b in zip(pred, y)], float),
                                                  n_boot=cfg.bootstrap),
            "macro_f1": eval_metrics.macro_f1(y, pred)}}
    elif task == "recommend":
        result = {"task": task, "summary": evaluate_folder(model_dir, data_dir, bootstrap=cfg.bootstrap)}
    elif task == "retrieval":
        raise ConfigError(["evaluate: retrieval models are evaluated by `shelfops train --task "
                           "retrieval` (it needs the catalogue index built for that dataset)"])
    else:
        raise ConfigError([f"{model_dir}: not a trained model folder (model.json missing or unknown task)"])
    result = jsonable(result, drop=PER_QUERY)
    (model_dir / "evaluations").mkdir(exist_ok=True)
    (model_dir / "evaluations" / f"{name}.json").write_text(json.dumps(result, indent=2))
    _record_evaluation(model_dir, str(data_dir.resolve()), result)
    return result


def _record_evaluation(model_dir: Path, data: str, result: dict) -> None:
    """Add the evaluation to the manifest, atomically (temp file + rename)."""
    m = read_manifest(model_dir)
    m.metrics.setdefault("evaluations", {})[data] = result.get("summary")
    tmp = model_dir / "manifest.json.tmp"
    tmp.write_text(m.model_dump_json(indent=2))
    tmp.replace(model_dir / "manifest.json")
