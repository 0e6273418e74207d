"""Home Depot search, cross-validated: every judged query is a test query exactly once.

The data README's protocol is a query-grouped split (GroupKFold on the search term). One
run tests on one fold (~2,350 queries); this script runs all of them: for fold k it
ingests with ``data.splits.test_fold=k`` and ``val_fold=k+1`` (the rest train), trains
the cross-encoder with the CLI exactly as a user would, and then pools the folds'
``test_scores.parquet`` (model, BM25 and zero-shot scores of every test pair) into one
set of per-query NDCG@10 values with 95% bootstrap intervals (``search.pooled_folds``).

    .venv/bin/python bench/hd_search_cv.py                       # 5 folds, one epoch each
    .venv/bin/python bench/hd_search_cv.py --steps 500           # 5 folds x 500 steps
    .venv/bin/python bench/hd_search_cv.py train.search.loss=listwise --workdir runs/hd-cv-list

The default cap of 1500 steps is not reached: one epoch of a fold's ~44,100 training pairs
(batch 32) ends first, at 1,380-1,397 steps. A fold whose model folder is complete is not
trained again, so an interrupted run picks up where it stopped. Folds go to
runs/hd-cv-STEPS and the result to bench/results/hd_search_cv_STEPS.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import folds  # bench/folds.py: what the cross-validated benchmarks share

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/train_beauty.py
RECIPE = folds.HD_RECIPE  # steps: --steps
DONE = "test_scores.parquet"  # a fold's model folder holds it once the fold is complete


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="extra key=value train overrides (after the recipe)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "homedepot.yaml")
    p.add_argument("--workdir", type=Path, default=None, help="default runs/hd-cv-STEPS")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--steps", type=int, default=1500, help="training steps per fold (one epoch caps it)")
    p.add_argument("--eval-every", type=int, default=250, help="steps between validations")
    p.add_argument("--only", type=int, nargs="*", default=None, help="train only these folds")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None,
                   help="default bench/results/hd_search_cv_STEPS.json")
    a = p.parse_args()
    a.workdir = a.workdir or ROOT / "runs" / f"hd-cv-{a.steps}"
    a.out = a.out or ROOT / "bench" / "results" / f"hd_search_cv_{a.steps}.json"
    return a


def recipe(a: argparse.Namespace) -> list[str]:
    return [*RECIPE, f"train.search.schedule.max_steps={a.steps}",
            f"train.search.schedule.eval_every={a.eval_every}", *a.overrides]


def run_fold(a: argparse.Namespace, k: int) -> float | None:
    return folds.run_fold(a.workdir, k, config=a.config, folds=a.folds, train=recipe(a), done=DONE)


def plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = ["model", "bm25", "zero_shot"]
    colours = {"model": "tab:blue", "bm25": "tab:orange", "zero_shot": "tab:green"}
    fig = Figure(figsize=(8, 4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    folds = result["folds"]
    for j, name in enumerate(names):
        ax1.bar([f["fold"] + (j - 1) * 0.27 for f in folds], [f[name] for f in folds], 0.27,
                label=name, color=colours[name])
    ax1.set_xlabel("test fold")
    ax1.set_ylabel("NDCG@10 within judged pools")
    ax1.set_title("each fold")
    ax1.legend(loc="upper left", ncol=3, fontsize="small")
    pooled = {"model": result["model"], **result["baselines"]}
    for j, name in enumerate(names):
        s = pooled[name]["ndcg@10"]
        ax2.errorbar([j], [s["mean"]], yerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                     fmt="o", color=colours[name], capsize=6)
    ax2.set_xticks(range(3), ["model", "bm25", "zs"])
    ax2.set_title(f"pooled, {result['queries']:,} queries\n95% bootstrap")
    lo = min(min(f[n] for n in names) for f in folds)
    hi = max(max(f[n] for n in names) for f in folds)
    ax1.set_ylim(lo - 0.005, hi + 0.004)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    a = args()
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from shelfops.artifacts import read_manifest
    from shelfops.train.recipe import beats, beats_paired
    from shelfops.train.search import pooled_folds

    a.workdir.mkdir(parents=True, exist_ok=True)
    seconds = {k: run_fold(a, k) for k in (range(a.folds) if a.only is None else a.only)}
    done = folds.finished(a.workdir, a.folds, DONE)
    frames = [pl.read_parquet(a.workdir / f"model-{k}" / DONE) for k in done]
    manifests = [read_manifest(a.workdir / f"model-{k}") for k in done]
    lo, hi = manifests[0].extra["grade_range"]
    result = pooled_folds(frames, lo=lo, hi=hi, n_boot=a.bootstrap)
    for row, k, m in zip(result["folds"], done, manifests):
        row["fold"] = k
        row["train_seconds"] = m.extra.get("seconds")
        row["best_valid"] = m.extra.get("fit", {}).get("best_metric")
    c = result["comparisons_ndcg@10"]
    result["beats_baselines"] = beats(c)
    result["beats_baselines_paired"] = beats_paired(c)
    result["recipe"] = recipe(a)
    result["folds_pooled"] = done
    result["wall_seconds_this_run"] = seconds
    result["machine"] = f"{platform.node()} {os.cpu_count()} cpu, python {platform.python_version()}"

    t = Table(title=f"Home Depot search, {len(done)} folds pooled: {result['queries']:,} queries, "
                    f"{result['pairs']:,} pairs")
    for col in ("scorer", "NDCG@10", "95% CI", "RMSE", "paired diff (model - it)"):
        t.add_column(col)
    rows = [("model", result["model"])] + list(result["baselines"].items())
    for name, s in rows:
        n = s["ndcg@10"]
        d = c.get(name, {}).get("diff")
        t.add_row(name, f"{n['mean']:.4f}", f"[{n['ci_low']:.4f}, {n['ci_high']:.4f}]",
                  f"{s['rmse']['mean']:.4f}" if "rmse" in s else "-",
                  f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" if d else "-")
    console = Console()
    console.print(t)
    for row in result["folds"]:
        console.print(f"fold {row['fold']}: {row['queries']} queries  model {row['model']:.4f}  "
                      f"bm25 {row['bm25']:.4f}  zero-shot {row['zero_shot']:.4f}  "
                      f"(valid {row['best_valid']}, {row['train_seconds']} s)")
    console.print(f"beats both baselines with non-overlapping intervals: {result['beats_baselines']}; "
                  f"by the paired difference: {result['beats_baselines_paired']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, default=float))
    plot(result, a.out.with_suffix(".png"))
    console.print(f"wrote {a.out} and {a.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
