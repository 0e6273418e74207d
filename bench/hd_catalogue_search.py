"""Home Depot search over the whole catalogue, cross-validated: does the served pipeline beat BM25?

For fold k (GroupKFold on the search term, as bench/hd_search_cv.py) this ingests with
``data.splits.test_fold=k`` and ``val_fold=k+1`` and runs ``shelfops train --task search``
exactly as a user would. That run mines hard negatives from the hybrid retriever, trains the
cross-encoder, chooses the fusion weight and re-rank depth on validation, and writes each
test query's NDCG@10 and Recall@10 over the whole 54,666-item catalogue for the four systems
(``pipeline``, ``hybrid``, ``dense``, ``bm25``) to ``catalogue_scores.parquet``. This script
pools the folds (every judged query with a relevant product is a test query once) and
writes the result with 95% bootstrap intervals and paired differences.

    .venv/bin/python bench/hd_catalogue_search.py                 # 5 folds
    .venv/bin/python bench/hd_catalogue_search.py --only 0 1      # train these folds, pool what exists
    .venv/bin/python bench/hd_catalogue_search.py train.search.catalogue.hard_negatives=0
    .venv/bin/python bench/hd_catalogue_search.py --no-bi-encoder  # the untuned encoder as dense side
    .venv/bin/python bench/hd_catalogue_search.py --only 4 --kept runs/hd-cat/kept-x \
        --out runs/hd-cat/x.json train.search.catalogue.negative_weight=0.25   # an experiment, kept apart

Each fold first fine-tunes the bi-encoder (``shelfops train --task retrieval``, 200 steps) into
``retrieval-k`` and hands it to the search run (``train.search.catalogue.retriever``), so hard
negatives, the fusion weight and the re-rank depth are all chosen with the dense side that
serves. A finished fold's per-query values are copied to bench/results/hd_catalogue_folds/
(a few hundred KB): a fold costs about an hour on 2 cores, and the folds of different sessions
pool from there.

Protocol (bench/RESULTS.md, "Retrieval bi-encoder and retrieve + re-rank"): relevant = judged
in the upper half of the grade scale (>= 2 of 1-3); products nobody judged count as not
relevant. A fold whose model folder is complete is not trained again. Result:
bench/results/hd_catalogue_search.json and .png. Inside the judged pools, the folds that kept
their pairs' scores (``fold-k-pools.parquet``: the re-ranker alone and as served, BM25, the
untuned encoder) are pooled too (``pools`` in the result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

import folds  # bench/folds.py: what the cross-validated benchmarks share

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/train_beauty.py
# bench/hd_search_cv.py's recipe (real judgements only, lr 7e-5); bf16 autocast where the CPU
# has native bf16 (1.4x the steps/s of fp32 here, bench/RESULTS.md "Search training throughput"):
# schedule.bf16 auto, the config's default, decides that from the CPU's flags (shelfops.train.precision)
RECIPE = folds.HD_RECIPE
DONE = "catalogue_scores.parquet"  # a fold's model folder holds it once the fold is complete
KEPT = ROOT / "bench" / "results" / "hd_catalogue_folds"  # finished folds, committed
#: the bi-encoder recipe of fold 0 (bench/RESULTS.md): in-batch negatives, 200 steps, bf16 where native
BI_ENCODER = ["train.threads=2", "train.retrieval.schedule.max_steps=200",
              "train.retrieval.schedule.eval_every=100"]
SYSTEMS = ("pipeline", "hybrid", "dense", "bm25")


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="extra key=value train overrides (after the recipe)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "homedepot.yaml")
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "hd-cat")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--steps", type=int, default=1000, help="training steps per fold")
    p.add_argument("--eval-every", type=int, default=250, help="steps between validations")
    p.add_argument("--bf16", default="auto", choices=("on", "off", "auto"),
                   help="auto: on where the CPU computes bf16 natively (avx512_bf16, amx_bf16)")
    p.add_argument("--only", type=int, nargs="*", default=None, help="train only these folds")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--no-bi-encoder", dest="bi_encoder", action="store_false",
                   help="dense side = the untuned encoder instead of a bi-encoder fine-tuned per fold")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hd_catalogue_search.json")
    p.add_argument("--kept", type=Path, default=KEPT,
                   help="where finished folds are kept and pooled from (another folder for an experiment)")
    return p.parse_args()


def recipe(a: argparse.Namespace) -> list[str]:
    return [*RECIPE, f"train.search.schedule.max_steps={a.steps}",
            f"train.search.schedule.eval_every={a.eval_every}", f"train.search.schedule.bf16={a.bf16}",
            *a.overrides]


def run_fold(a: argparse.Namespace, k: int) -> float | None:
    if (a.kept / f"fold-{k}.parquet").exists():
        print(f"fold {k}: kept in {a.kept}, not trained again")
        return None
    log, train = a.workdir / f"fold-{k}.log", ["-c", str(a.config), *recipe(a)]
    if a.bi_encoder:
        bi = a.workdir / f"retrieval-{k}"
        folds.ingest(a.workdir, k, config=a.config, folds=a.folds, log=log)
        if not (bi / "manifest.json").exists():
            folds.shelfops("train", "--task", "retrieval", "-c", str(a.config), "--data", str(a.workdir / f"data-{k}"),
                           "--out", str(bi), "--no-progress", *BI_ENCODER, log=log)
        train.append(f"train.search.catalogue.retriever={bi}")
    # an experiment (--kept elsewhere) trains models of its own: a complete model-k of another
    # recipe must never be kept as its result, nor its models as the committed folds'
    name = "model" if a.kept.resolve() == KEPT.resolve() else f"model-{a.kept.name}"
    seconds = folds.run_fold(a.workdir, k, config=a.config, folds=a.folds, train=train, done=DONE, log=log,
                             reuse_data=True, model_name=name)
    keep(a.workdir / f"{name}-{k}", k, a.kept)
    return seconds


def keep(model: Path, k: int, kept: Path = KEPT) -> None:
    """Copy a finished fold's per-query values and its summary into the repo's results."""
    from shelfops.artifacts import read_manifest

    kept.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model / DONE, kept / f"fold-{k}.parquet")
    if (model / "test_scores.parquet").exists():  # the judged pools' scores, pooled by pools()
        shutil.copyfile(model / "test_scores.parquet", kept / f"fold-{k}-pools.parquet")
    m = read_manifest(model)
    served = m.metrics.get("served_in_pools")
    summary = {"choice": m.metrics["catalogue"]["choice"],
               "systems": {n: {x: v["mean"] for x, v in s.items() if isinstance(v, dict)}
                           for n, s in m.metrics["catalogue"]["systems"].items()},
               "pools": {"model": m.metrics["model"]["ndcg@10"]["mean"],
                         **{b: m.metrics["baselines"][b]["ndcg@10"]["mean"] for b in ("bm25", "zero_shot")},
                         **({"served": served["metrics"]["ndcg@10"]["mean"]} if served else {})},
               "grade_range": m.extra.get("grade_range"),
               "hard_negatives": m.counts.get("hard_negatives"), "train_seconds": m.extra.get("seconds"),
               "fit": m.extra.get("fit"), "pipeline": m.extra.get("pipeline")}
    (kept / f"fold-{k}.json").write_text(json.dumps(summary, indent=2, default=float))


def pools(kept: Path, done: list[int], n_boot: int) -> dict | None:
    """NDCG@10 within the judged pools, pooled over the folds whose pools' scores were kept with
    the served order (train's served_in_pools): the re-ranker alone (``model``) and as served,
    each paired against BM25 and the untuned encoder, and as served against alone. None while no
    fold has them."""
    import polars as pl

    from shelfops.train.search import pooled_folds

    frames, have = [], []
    for k in done:
        path = kept / f"fold-{k}-pools.parquet"
        if path.exists() and "served" in pl.read_parquet_schema(path):
            frames.append(pl.read_parquet(path))
            have.append(k)
    if not frames:
        return None
    summary = json.loads((kept / f"fold-{have[0]}.json").read_text())
    lo = float((summary.get("grade_range") or [1.0])[0])  # Home Depot's scale is 1-3
    alone = pooled_folds(frames, lo=lo, n_boot=n_boot)
    served = pooled_folds([f.with_columns(pl.col("served").alias("model"), pl.col("model").alias("alone"))
                           for f in frames], lo=lo, baselines=("bm25", "zero_shot", "alone"), n_boot=n_boot)
    return {"folds": have, "queries": alone["queries"], "model": alone["model"], "served": served["model"],
            "baselines": alone["baselines"], "comparisons_ndcg@10": {"model": alone["comparisons_ndcg@10"],
                                                                      "served": served["comparisons_ndcg@10"]}}


def plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colours = {"pipeline": "tab:blue", "hybrid": "tab:purple", "dense": "tab:green", "bm25": "tab:orange"}
    for ax, metric in zip(axes, ("ndcg@10", "recall@10")):
        for j, name in enumerate(SYSTEMS):
            s = result["systems"][name][metric]
            ax.errorbar([j], [s["mean"]], yerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                        fmt="o", color=colours[name], capsize=6)
        ax.set_xticks(range(len(SYSTEMS)), SYSTEMS)
        ax.set_title(f"{metric}, whole catalogue")
    fig.suptitle(f"Home Depot, {result['folds']} fold(s) pooled, {result['queries']:,} queries, 95% bootstrap")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    a = args()
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from shelfops.train.catalogue import pooled

    a.workdir.mkdir(parents=True, exist_ok=True)
    seconds = {k: run_fold(a, k) for k in (range(a.folds) if a.only is None else a.only)}
    done = [k for k in range(a.folds) if (a.kept / f"fold-{k}.parquet").exists()]
    if not done:
        raise SystemExit(f"no fold finished (none in {a.kept})")
    frames = [pl.read_parquet(a.kept / f"fold-{k}.parquet") for k in done]
    result = pooled(frames, n_boot=a.bootstrap)
    bm = result["systems"]["bm25"]
    result["ratio_to_bm25"] = {name: {m: s[m]["mean"] / bm[m]["mean"] for m in ("ndcg@10", "recall@10")}
                               for name, s in result["systems"].items()}
    result["per_fold"] = {k: json.loads((a.kept / f"fold-{k}.json").read_text()) for k in done}
    result["pools"] = pools(a.kept, done, a.bootstrap)
    result.update(recipe=recipe(a), folds_pooled=done, wall_seconds_this_run=seconds,
                  machine=f"{platform.node()} {os.cpu_count()} cpu, python {platform.python_version()}")

    t = Table(title=f"Home Depot, whole catalogue, {len(done)} fold(s) pooled: {result['queries']:,} queries")
    for col in ("system", "NDCG@10 [95% CI]", "x BM25", "Recall@10 [95% CI]", "x BM25",
                "pipeline - it, NDCG@10", "pipeline - it, Recall@10"):
        t.add_column(col)
    for name in SYSTEMS:
        s, r = result["systems"][name], result["ratio_to_bm25"][name]
        cells = [name]
        for m in ("ndcg@10", "recall@10"):
            cells += [f"{s[m]['mean']:.4f} [{s[m]['ci_low']:.4f}, {s[m]['ci_high']:.4f}]", f"{r[m]:.2f}x"]
        for m in ("ndcg@10", "recall@10"):
            d = result["comparisons"][m].get(name, {}).get("diff")
            cells.append(f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" if d else "-")
        t.add_row(*cells)
    console = Console(width=160)
    console.print(t)
    for k, f in result["per_fold"].items():
        console.print(f"fold {k}: fusion weight {f['choice']['fusion_weight']}, depth {f['choice']['rerank_depth']}; "
                      f"pools: model {f['pools']['model']:.4f} bm25 {f['pools']['bm25']:.4f} "
                      f"zero-shot {f['pools']['zero_shot']:.4f}"
                      + (f" as served {f['pools']['served']:.4f}" if "served" in f["pools"] else "")
                      + f"; {f['train_seconds']} s")
    if result["pools"]:
        p = result["pools"]
        console.print(f"judged pools, folds {p['folds']} pooled ({p['queries']:,} queries), NDCG@10:")
        for name in ("model", "served"):
            s = p[name]["ndcg@10"]
            console.print(f"  {name:<7} {s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]  " + "  ".join(
                f"- {b} {c['diff']['mean']:+.4f} [{c['diff']['ci_low']:+.4f}, {c['diff']['ci_high']:+.4f}]"
                f"{' (intervals apart)' if not c['overlap'] else ''}"
                for b, c in p["comparisons_ndcg@10"][name].items()))
        for b, s in p["baselines"].items():
            console.print(f"  {b:<9} {s['ndcg@10']['mean']:.4f} [{s['ndcg@10']['ci_low']:.4f}, {s['ndcg@10']['ci_high']:.4f}]")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, default=float))
    plot(result, a.out.with_suffix(".png"))
    console.print(f"wrote {a.out} and {a.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
