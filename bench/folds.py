"""What the cross-validated Home Depot benchmarks share (bench/hd_search_cv.py,
bench/hd_catalogue_search.py): ingest and train one GroupKFold fold with the CLI, as a user
would, and find the folds that finished."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

#: the best single-fold Home Depot recipe of session 6: real judgements only, lr 7e-5
HD_RECIPE = ["train.search.augmented=false", "train.search.schedule.lr=7e-5", "train.threads=2"]


def shelfops(*argv: str, log: Path | None = None) -> None:
    """Run the CLI of this venv; its output goes to ``log`` (appended) when given."""
    exe = Path(sys.executable).parent / "shelfops"
    if log is None:
        subprocess.run([str(exe), *argv], check=True)
        return
    with log.open("a") as f:
        subprocess.run([str(exe), *argv], check=True, stdout=f, stderr=subprocess.STDOUT)


def run_fold(workdir: Path, k: int, *, config: Path, folds: int, train: list[str], done: str,
             log: Path | None = None, reuse_data: bool = False, model_name: str = "model") -> float | None:
    """Ingest fold ``k`` (test fold k, validation fold k+1, the rest train) into
    ``workdir/data-k`` and train search into ``workdir/<model_name>-k`` with the ``train``
    arguments (an experiment names its own models, sharing the data); a fold whose model folder
    holds ``done`` is not trained again (None). Seconds taken."""
    data, model = workdir / f"data-{k}", workdir / f"{model_name}-{k}"
    if (model / done).exists():
        print(f"fold {k}: {model} is complete, not trained again")
        return None
    t = time.perf_counter()
    if log is not None:
        print(f"fold {k}: ingest and train (log: {log})", flush=True)
    ingest(workdir, k, config=config, folds=folds, log=log, again=not reuse_data)
    shelfops("train", "--task", "search", "--data", str(data), "--out", str(model), "--no-progress", *train,
             log=log)
    return round(time.perf_counter() - t, 1)


def ingest(workdir: Path, k: int, *, config: Path, folds: int, log: Path | None = None,
           again: bool = False) -> Path:
    """Ingest fold ``k`` into ``workdir/data-k`` unless it is there already (or ``again``)."""
    data = workdir / f"data-{k}"
    if again or not (data / "manifest.json").exists():
        shelfops("data", "ingest", "-c", str(config), "--out", str(data), "--no-progress",
                 f"data.splits.folds={folds}", f"data.splits.test_fold={k}",
                 f"data.splits.val_fold={(k + 1) % folds}", log=log)
    return data


def finished(workdir: Path, folds: int, done: str) -> list[int]:
    """The folds whose model folder holds ``done``; exits when there is none."""
    out = [k for k in range(folds) if (workdir / f"model-{k}" / done).exists()]
    if not out:
        sys.exit("no fold finished")
    return out
