"""Stage ③ optimize, top to bottom:

    trained model folder (integrity checked) -> evaluation set (validation split + golden groups)
    -> for each variant: build -> outputs -> quality (and its drop, bootstrapped) + parity with
       fp32 (strict for exact variants, a churn bound for approximate ones) -> latency per threads
       x batch size -> tuned serving settings
    -> pruned variants (layers ranked by measured importance, dropped, distilled, exported)
    -> selection policy (quality budget, parity, SLO, objective) -> report JSON + Pareto PNG
    -> output folder: the source model, the chosen variant's file, serving.json, manifest
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shelfops.artifacts import Manifest, input_ref, read_manifest, stage_output, verify_outputs
from shelfops.config.schema import OptimizeConfig
from shelfops.errors import ConfigError
from shelfops.optimize import measure as measuring
from shelfops.optimize import variants as variant_kinds
from shelfops.optimize.depth import candidate_depths, choose_depth, measure_depths
from shelfops.optimize.evalsets import evalset_for
from shelfops.optimize.measure import encode, run_all
from shelfops.optimize.policy import Candidate, Setting, select, tune
from shelfops.optimize.prune import choose_drop, distill, drop_layers, layer_importance
from shelfops.optimize.report import plot_pareto, variant_table
from shelfops.optimize.shipped import load_shipped
from shelfops.optimize.variants import is_approximate, torch_variant
from shelfops.train import catalogue, text_models
from shelfops.train.index import choose_kind, past_queries
from shelfops.train.pairs import load_pairs
from shelfops.train.precision import bf16_auto

Say = Callable[[str], None]
REFERENCE = "torch-fp32"
MODEL_FILES = ("model.json", "model.safetensors", "encoder")
# the train stage's scores of every test pair under this fp32 model (train.recipe.write_test_scores):
# they travel with it, so the gate can hold a variant to its fp32 model without scoring it again
EVIDENCE_FILES = ("test_scores.parquet",)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _variants(model, tok, spec, ev, cfg: OptimizeConfig, vdir: Path, say: Say, progress: bool
              ) -> Iterator[tuple[Any, str]]:
    """Build variants one at a time (each is measured, then dropped, before the next)."""

    for name in ("torch-fp32", "torch-bf16", "torch-int8"):
        if name == "torch-bf16" and name in cfg.variants:
            if not bf16_auto("cpu"):  # the one rule training's bf16 "auto" follows too
                say("optimize: skipping torch-bf16: this CPU has no native bf16 (no avx512_bf16 or amx_bf16 "
                    "flag): torch would emulate it, many times slower than fp32")
                continue
        if name in cfg.variants or name == REFERENCE:
            yield variant_kinds.torch_variant(name, model, spec.task), ""
    calib = [encode(tok, ev.train_a[i:i + 32], ev.train_b[i:i + 32] if ev.train_b else None,
                    spec.max_length) for i in range(0, min(len(ev.train_a), 32 * cfg.calibration_batches), 32)]
    onnx = tuple(n for n in cfg.variants if n.startswith("onnx"))
    if onnx:
        t = time.perf_counter()
        for v in variant_kinds.onnx_variants(model, spec.task, tok, vdir, onnx, calibration=calib):
            yield v, f"exported in {time.perf_counter() - t:.1f} s"
    for folder in map(Path, cfg.extra_models):
        other, _, ospec = text_models.load(folder)
        if ospec.task != spec.task:
            raise ConfigError([f"optimize.extra_models: {folder} is a {ospec.task} model, not {spec.task}"])
        dst = vdir / f"external-{folder.name}"
        dst.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            src = folder / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
        v = variant_kinds.torch_variant("torch-fp32", other, spec.task)
        v.name, v.note, v.files = f"external-{folder.name}", f"model folder {folder}", [dst / "model.safetensors"]
        yield v, ""
    if cfg.prune.enabled:
        counts = cfg.prune.drop_layers
        imp: list[float] | None = None
        for n_drop in sorted(set([counts] if isinstance(counts, int) else counts)):
            student, info, imp = _prune(model, tok, spec, ev, cfg, vdir, say, progress, n_drop, imp)
            prefix = f"pruned{variant_kinds.n_layers(student)}-"
            for v in variant_kinds.onnx_variants(student, spec.task, tok, vdir, ("onnx-fp32", "onnx-int8"),
                                                 prefix=prefix):
                v.note = f"{info}; {v.note}"
                yield v, ""
            del student


def _prune(model, tok, spec, ev, cfg: OptimizeConfig, vdir: Path, say: Say, progress: bool, n_drop: int,
           imp: list[float] | None = None):
    """One pruned student (``n_drop`` layers fewer), distilled; layer importance is measured
    once and passed back in for the next count."""

    n_imp = min(len(ev), cfg.prune.importance_queries * 8)
    sub_a, sub_b = ev.texts_a[:n_imp], ev.texts_b[:n_imp] if ev.texts_b else None
    # importance on the same quality function, restricted to a prefix of the validation inputs
    full_len = len(ev)

    def quality(m) -> float:
        out = run_all(torch_variant("torch-fp32", m, spec.task), tok, sub_a, sub_b,
                      max_length=spec.max_length)
        padded = np.zeros((full_len,) + out.shape[1:], dtype=out.dtype)
        padded[:n_imp] = out
        return ev.quality(padded)

    t = time.perf_counter()
    imp = imp if imp is not None else layer_importance(model, quality)
    drop = choose_drop(imp, n_drop)
    say(f"optimize: layer importance {[round(x, 4) for x in imp]} -> dropping layers {drop}")
    student = drop_layers(model, drop)
    bs = cfg.prune.batch_size
    rng = np.random.default_rng(0)

    def batch(i: int):
        ix = rng.integers(0, len(ev.train_a), bs)
        return encode(tok, [ev.train_a[j] for j in ix],
                      [ev.train_b[j] for j in ix] if ev.train_b else None, spec.max_length)

    losses = distill(student, model, spec.task, batch, steps=cfg.prune.recovery_steps,
                     lr=cfg.prune.lr, progress=progress) if cfg.prune.recovery_steps else []
    folder = vdir / f"pruned{len(student.encoder.backbone.encoder.layer)}"
    text_models.save(student, spec, str(vdir.parent / "encoder"), folder)
    student.encoder.backbone.config.to_json_file(str(folder / "encoder" / "config.json"))
    info = (f"dropped layers {drop} (importance {[round(x, 4) for x in imp]}), "
            f"{len(losses)} distillation steps (loss {np.mean(losses[:10]) if losses else 0:.4f} -> "
            f"{np.mean(losses[-10:]) if losses else 0:.4f}) in {time.perf_counter() - t:.0f} s")
    return student, info, imp


#: what of the train stage's choice of pipeline (the model manifest's ``extra.pipeline``) goes to
#: serving.json: how to fuse, and which dense side the fusion weight was chosen with
SERVED_PIPELINE = ("fusion_weight", "rerank_blend", "dense_encoder", "dense_max_length", "dense_retriever")


def trained_pipeline(mm: Manifest) -> dict[str, Any]:
    """The pipeline the train stage chose (``extra.pipeline``); for a model trained before it named
    its bi-encoder there, the bi-encoder its config gave (``train.search.catalogue.retriever``)."""
    pipeline = dict(mm.extra.get("pipeline") or {})
    given = (((mm.config or {}).get("train") or {}).get("search") or {}).get("catalogue", {}).get("retriever")
    if pipeline and given and "dense_encoder" not in pipeline:
        pipeline.setdefault("dense_retriever", str(given))
    return pipeline


def served_retriever(serving: dict, items, data_dir: Path | None = None) -> tuple[Callable | None, str]:
    """The retriever the server will run for this search model: the hybrid of BM25 and the dense
    side it was validated with (the untuned encoder, or the trained bi-encoder served beside it),
    at its fusion weight (train.catalogue), or BM25; its index tuned for ``data_dir``'s past
    queries, as the server's is."""
    weight, encoder, bi = serving.get("fusion_weight"), serving.get("dense_encoder"), serving.get("dense_retriever")
    if weight is None or weight <= 0 or not (encoder or bi):
        return None, "BM25"
    if bi and not (Path(bi) / "model.json").exists():
        return None, f"BM25 (the bi-encoder it was validated with, {bi}, is not here)"
    probes = past_queries(data_dir) if data_dir is not None and choose_kind(len(items)) != "flat" else []
    cat = catalogue.Retrievers.open(items, encoder or "", bi, max_length=int(serving.get("dense_max_length") or 64),
                                    progress=False, served=True, probes=probes)
    return (lambda qs, n: cat.candidates(qs, n).fused(weight, n)), \
        f"hybrid (BM25 + {cat.dense_name}, weight {weight:g})"


def _rerank_depth(w, data_dir: Path, cfg: OptimizeConfig, say: Say, quality_depth: int | None) -> dict:
    """Search: the re-rank depth one search can afford within ``cfg.search_p99_ms`` with the
    chosen variant as it ships (optimize.depth), written into serving.json for the server.
    Depths beyond the one the train stage chose for quality on validation (``quality_depth``)
    are not tried: they would cost latency for no measured gain."""
    depths = candidate_depths(cfg.rerank_depths, quality_depth)
    data = load_pairs(data_dir, augmented=False)
    shipped = load_shipped(w.dir, verify=False)
    lo, hi = shipped.spec.extra.get("grade_min", data.grade_min), shipped.spec.extra.get("grade_max", data.grade_max)
    retrieve, retriever = served_retriever(shipped.serving, data.items, data_dir)
    points, base = measure_depths(shipped, data.items, data.valid, lo=lo, hi=hi, depths=tuple(depths),
                                  queries=cfg.max_queries, seconds=cfg.seconds_per_point, retrieve=retrieve)
    depth, why = choose_depth(points, cfg.search_p99_ms)
    for p in points:
        say(f"optimize: search at re-rank depth {p.depth:>3}: p50 {p.p50_ms:6.1f} ms  p99 {p.p99_ms:6.1f} ms "
            f"(retrieval {p.retrieval_p50_ms:.1f} ms)  NDCG@10 {p.ndcg10:.4f}  Recall@10 {p.recall10:.4f}")
    say(f"optimize: {why} ({retriever} without re-rank {base['retriever_ndcg10']:.4f}, BM25 alone "
        f"{base['bm25_ndcg10']:.4f}; {base['queries']} validation queries over {base['catalogue']:,} products)")
    serving = json.loads(w.path("serving.json").read_text())
    w.write_json("serving.json", {**serving, "rerank_depth": depth, "search_p99_ms_budget": cfg.search_p99_ms})
    return {"chosen": depth, "reason": why, "budget_p99_ms": cfg.search_p99_ms, "retriever": retriever,
            "points": [p.to_dict() for p in points], **base}


def run(model_dir: Path, out: Path, cfg: OptimizeConfig, *, data_dir: Path | None = None,
        progress: bool = True, say: Say = print, config_dump: dict | None = None) -> Manifest:
    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "model.json").exists():
        raise ConfigError([f"{model_dir}: not a trained text model folder (no model.json); "
                           "recommendation models have no text variants to optimize"])
    mm = verify_outputs(model_dir)
    data_dir = Path(data_dir or mm.extra.get("data") or "")
    if not (data_dir / "manifest.json").exists():
        raise ConfigError([f"optimize: dataset {data_dir} not found; pass --data DIR"])
    read_manifest(data_dir)
    model, tok, spec = text_models.load(model_dir)
    if spec.task not in ("search", "retrieval", "classify"):
        raise ConfigError([f"optimize: task {spec.task!r} has no text variants to build"])
    threads = cfg.threads or list(range(1, (os.cpu_count() or 1) + 1))
    ev = evalset_for(spec, data_dir, max_queries=cfg.max_queries, golden=cfg.golden,
                     depth=cfg.candidate_depth, train_inputs=4000)
    say(f"optimize: {spec.task} model, {len(ev):,} evaluation inputs, {len(ev.group_names)} golden "
        f"groups, threads {threads}, batch sizes {cfg.batch_sizes}")
    roofline = {t: measuring.matmul_flops(t) for t in threads}
    config = model.encoder.backbone.config
    with stage_output(out, "optimize", config=config_dump or {"optimize": cfg.model_dump(mode="json")},
                      inputs=[input_ref(model_dir / "manifest.json")]) as w:
        for name in MODEL_FILES:  # the fp32 reference travels with its variants
            src = model_dir / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, w.dir / name)
        for name in EVIDENCE_FILES:
            if (model_dir / name).exists():
                shutil.copy2(model_dir / name, w.dir / name)
        vdir = w.dir / "variants"
        rows: list[dict] = []
        ref_out = None
        ref_points: dict[tuple[int, int], float] = {}
        for variant, build_note in _variants(model, tok, spec, ev, cfg, vdir, say, progress):
            rss0 = _rss_mb()
            t0 = time.perf_counter()
            pad = measuring.padding_max_diff(variant, tok, ev.texts_a, ev.texts_b, max_length=spec.max_length)
            atol = cfg.padding_atol_int8 if variant.precision == "int8" else cfg.padding_atol_fp32
            # one whose outputs move with padding will serve unbatched (policy.tune): measure it so
            outs = measuring.run_all(variant, tok, ev.texts_a, ev.texts_b, max_length=spec.max_length,
                                     batch_size=1 if pad > atol else 32,
                                     workers=max(1, max(threads) // max(1, variant.threads)))
            eval_s = time.perf_counter() - t0
            if ref_out is None:
                ref_out, ref_q = outs, ev.per_query(outs)
            par = measuring.parity(ev.groups(ref_out), ev.groups(outs), ref_out, outs,
                                   min_overlap=cfg.min_top10_overlap, min_tau=cfg.min_kendall_tau,
                                   churn_overlap=cfg.churn_min_top10_overlap, churn_tau=cfg.churn_min_kendall_tau)
            drop = measuring.quality_drop(ref_q, ev.per_query(outs))
            pts = measuring.latency(variant, tok, ev.texts_a, ev.texts_b, max_length=spec.max_length,
                                    batch_sizes=cfg.batch_sizes, threads=threads, seconds=cfg.seconds_per_point,
                                    cores=max(threads))
            if variant.name == REFERENCE:
                ref_points = {(p.threads, p.batch, p.workers): p.items_per_s for p in pts}
            points = [p.__dict__ for p in pts]
            setting = tune(points, cfg.slo_p99_ms, max_batch=1 if pad > atol else None,
                           prefer_workers_within=cfg.prefer_workers_within)
            best = max(pts, key=lambda p: p.items_per_s)
            at = ((setting.threads, setting.max_batch, setting.workers) if setting
                  else (best.threads, best.batch, best.workers))
            p_at = next(p for p in pts if (p.threads, p.batch, p.workers) == at)
            flops = measuring.flops_per_item(config, p_at.tokens_per_item, variant.layers)
            row = {"name": variant.name, "engine": variant.engine, "precision": variant.precision,
                   "layers": variant.layers, "note": "; ".join(x for x in (variant.note, build_note) if x),
                   "approximate": is_approximate(variant.name, variant.precision),
                   "quality": ev.quality(outs), "quality_drop": drop, "parity": par, "points": points,
                   "padding_max_diff": pad, "padding_atol": atol,
                   "setting": setting.__dict__ if setting else None,
                   "speedup_vs_fp32_same_batch": p_at.items_per_s / ref_points.get(at, np.nan),
                   "compute_efficiency": flops * p_at.items_per_s / roofline[min(at[0] * at[2], max(threads))],
                   "gflop_per_item": flops / 1e9,
                   "file_mb": variant.file_bytes / 2**20, "rss_delta_mb": _rss_mb() - rss0,
                   "eval_seconds": eval_s, "files": [str(f.relative_to(w.dir)) for f in variant.files]}
            rows.append(row)
            say(f"optimize: {variant.name:<22} {ev.metric} {row['quality']:.4f}  parity "
                f"{par['pass_rate']:.1%}  churn-ok {par['churn_pass_rate']:.1%}  top10 "
                f"{par['top10_overlap_mean']:.3f}  tau "
                f"{par['kendall_tau_mean']:.3f}  pad {pad:.2g}  best {best.items_per_s:,.0f}/s "
                f"(b{best.batch},t{best.threads}" + (f"x{best.workers}w)" if best.workers > 1 else ")")
                + (f"  tuned p99 {setting.p99_ms:.1f} ms" if setting else "  misses SLO"))
            del variant
        cands = [Candidate(r["name"], r["quality"], r["parity"]["pass_rate"],
                           r["parity"]["top10_overlap_mean"], r["parity"]["kendall_tau_mean"],
                           Setting(**r["setting"]) if r["setting"] else None,
                           padding_max_diff=r["padding_max_diff"],
                           padding_atol=r["padding_atol"],
                           approximate=r["approximate"], churn_pass_rate=r["parity"]["churn_pass_rate"],
                           quality_drop_high=r["quality_drop"]["high"])
                 for r in rows]
        sel = select(cands, reference=REFERENCE, slo_p99_ms=cfg.slo_p99_ms,
                     max_quality_drop=cfg.max_quality_drop, objective=cfg.objective,
                     min_pass_rate=cfg.min_parity_pass_rate, min_churn_pass_rate=cfg.churn_min_pass_rate)
        say(f"optimize: chosen {sel.chosen}: {sel.reason}")
        for n, why in sel.rejected.items():
            say(f"optimize: rejected {n}: {why}")
        chosen = next((r for r in rows if r["name"] == sel.chosen), None)
        keep = {f for r in rows for f in r["files"]} if cfg.keep_all else set(chosen["files"] if chosen else [])
        for r in rows:
            for f in r["files"]:
                if f not in keep:
                    (w.dir / f).unlink(missing_ok=True)
        if not cfg.keep_all:
            for d in [*vdir.glob("pruned*"), *vdir.glob("external-*")]:
                if d.is_dir() and not (chosen and chosen["name"].startswith(d.name + "-")):
                    shutil.rmtree(d)
        roof = {str(t): v for t, v in roofline.items()}
        report = {"task": spec.task, "metric": ev.metric, "reference": REFERENCE,
                  "selection": sel.to_dict(), "variants": rows, "matmul_flops_fp32": roof,
                  "evaluation": {"inputs": len(ev), "golden_groups": len(ev.group_names),
                                 "golden_names": ev.group_names[:50]}}
        w.write_json("optimize.json", report)
        plot_pareto(rows, sel, w.path("pareto.png"))
        (w.dir / "variants.md").write_text(variant_table(rows, sel))
        if chosen:
            # the hybrid retriever's fusion weight the train stage chose on validation travels
            # with the search model to the server
            pipeline = trained_pipeline(mm)
            w.write_json("serving.json", {"variant": chosen["name"], "engine": chosen["engine"],
                                          "precision": chosen["precision"], "files": chosen["files"],
                                          "max_length": spec.max_length, **chosen["setting"],
                                          **{k: pipeline[k] for k in SERVED_PIPELINE if k in pipeline}})
            if spec.task == "search" and cfg.rerank_depths:
                report["depth"] = _rerank_depth(w, data_dir, cfg, say, pipeline.get("rerank_depth"))
                w.write_json("optimize.json", report)
        w.manifest.metrics = {"chosen": sel.chosen, "reason": sel.reason, "metric": ev.metric,
                              "rerank_depth": (report.get("depth") or {}).get("chosen"),
                              "rejected": sel.rejected, "frontier": sel.frontier,
                              "variants": {r["name"]: {"quality": r["quality"],
                                                       "parity_pass_rate": r["parity"]["pass_rate"],
                                                       "setting": r["setting"],
                                                       "speedup_vs_fp32_same_batch": r["speedup_vs_fp32_same_batch"],
                                                       "compute_efficiency": r["compute_efficiency"]}
                                           for r in rows}}
        w.manifest.extra = {"task": spec.task, "source_model": str(model_dir.resolve()),
                            "data": str(data_dir.resolve()), "grade_range": mm.extra.get("grade_range")}
    return read_manifest(out)
