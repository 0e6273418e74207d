"""`shelfops train` and `shelfops evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from shelfops.cli.common import load, reported_errors, say, split_overrides


def train(
    task: Annotated[str, typer.Option("--task", "-t", help="search | retrieval | recommend | classify")],
    data: Annotated[Path, typer.Option("--data", "-d", help="a dataset folder from `data ingest`")],
    out: Annotated[Path, typer.Option("--out", "-o", help="model folder to write")],
    config: Annotated[Optional[Path], typer.Option("--config", "-c")] = None,
    reranker: Annotated[Optional[Path], typer.Option(
        help="retrieval: a trained search model to measure the retrieve + re-rank pipeline")] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. "
                                                             "train.search.schedule.max_steps=100")] = None,
    progress: bool = True,
) -> None:
    """② Fine-tune the pretrained encoder for a task; test metrics and baselines in one run."""
    with reported_errors():
        from shelfops.train import recipe

        _, ov = split_overrides(overrides)
        cfg = load(config, ov)
        ce = None
        if reranker is not None:  # as it ships: an optimized folder keeps its variant and tuning
            import os

            from shelfops.optimize.shipped import load_shipped

            ce = load_shipped(reranker, threads=os.cpu_count() or 1)
        m = recipe.run(task, data, out, cfg.train, progress=progress, say=say,
                       config_dump=cfg.model_dump(mode="json"), reranker=ce)
        verdict = {"yes": "beats every baseline (non-overlapping 95% intervals)",
                   "paired": "beats every baseline by the paired difference (95% interval above "
                             "0) but the intervals overlap",
                   "no": "does NOT beat every baseline"}[recipe.verdict(m.metrics)]
        say(f"[green]wrote[/] {out}: the model {verdict}, in {m.extra.get('seconds')} s")


def evaluate(
    model: Annotated[Path, typer.Argument(help="a model folder from `shelfops train`")],
    data: Annotated[Path, typer.Option("--data", "-d", help="a dataset folder")],
    config: Annotated[Optional[Path], typer.Option("--config", "-c")] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides")] = None,
    progress: bool = True,
) -> None:
    """Evaluate a trained model on a dataset's test split; recorded in its manifest.

    A search model is also evaluated over the dataset's whole catalogue as /v1/search runs it
    (retrieve, fuse, re-rank); train.search.catalogue.retriever=DIR puts a trained bi-encoder
    on the dense side."""
    with reported_errors():
        import json

        from shelfops.train import recipe

        _, ov = split_overrides(overrides)
        cfg = load(config, ov)
        result = recipe.evaluate(model, data, cfg.train, progress=progress, say=say)
        say(json.dumps(result["summary"], indent=2))
