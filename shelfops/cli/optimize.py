"""`shelfops optimize`: build, measure and choose a faster variant of a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from shelfops.cli.common import load, reported_errors, say, split_overrides


def optimize(
    model: Annotated[Path, typer.Argument(help="a model folder from `shelfops train`")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="folder to write "
                                                "(default: MODEL-optimized)")] = None,
    slo_p99_ms: Annotated[Optional[float], typer.Option(help="latency SLO, p99 per request (ms)")] = None,
    max_quality_drop: Annotated[Optional[float], typer.Option(
        help="largest relative quality loss accepted, e.g. 0.01 = 1%")] = None,
    objective: Annotated[Optional[str], typer.Option(help="throughput | latency | quality")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="dataset folder "
                                                 "(default: the one the model was trained on)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c")] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. "
                                                             "optimize.prune.enabled=false")] = None,
    progress: bool = True,
) -> None:
    """③ Build faster variants, measure quality, parity and latency, choose one by policy."""
    with reported_errors():
        from shelfops.optimize import recipe

        _, ov = split_overrides(overrides)
        for key, val in (("slo_p99_ms", slo_p99_ms), ("max_quality_drop", max_quality_drop),
                         ("objective", objective)):
            if val is not None:
                ov.append(f"optimize.{key}={val}")
        cfg = load(config, ov)
        out = out or model.with_name(model.name + "-optimized")
        m = recipe.run(model, out, cfg.optimize, data_dir=data, progress=progress, say=say,
                       config_dump=cfg.model_dump(mode="json"))
        say(f"[green]wrote[/] {out}: chosen [bold]{m.metrics['chosen']}[/]; table in "
            f"{out / 'variants.md'}, chart in {out / 'pareto.png'}")
