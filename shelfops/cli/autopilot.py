"""`shelfops autopilot`: the closed loop against a running server (no person in it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shelfops.cli.common import console, load, reported_errors, split_overrides


def autopilot(
    name: Annotated[str, typer.Argument(help="registry model name, e.g. synthetic-shop-search")],
    export: Annotated[Path, typer.Option(help="folder where the shop's latest export lies "
                                         "(items / events / judgements parquet)")],
    server: Annotated[str, typer.Option(help="the shelfops server's base URL")] = "http://127.0.0.1:8000",
    workdir: Annotated[Path, typer.Option(help="where retraining writes")] = Path("runs/autopilot"),
    max_seconds: Annotated[float | None, typer.Option(help="stop after this long (default: run forever)")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides")] = None,
) -> None:
    """⑦ Watch served traffic for drift; retrain, gate, shadow, canary, promote or roll back.

    Settings under `monitor:` in the config (window, drift thresholds, triggers, rollout
    policy); the server's admin token comes from $SHELFOPS_ADMIN_TOKEN."""
    with reported_errors():
        from shelfops.errors import ConfigError
        from shelfops.monitor.autopilot import Autopilot
        from shelfops.monitor.controller import HttpServer
        from shelfops.registry.registry import registry_from

        token = os.environ.get("SHELFOPS_ADMIN_TOKEN")
        if not token:
            raise ConfigError(["autopilot: set SHELFOPS_ADMIN_TOKEN (the server's admin token)"])
        _, ov = split_overrides(overrides)
        cfg = load(config, ov)
        pilot = Autopilot(cfg, registry_from(cfg.registry), HttpServer(server, token), name=name,
                          export=lambda: export, workdir=workdir, report_dir=workdir / "report",
                          say=console.print)
        console.print(f"autopilot on {name} via {server}: window {cfg.monitor.window} searches, "
                      f"tick every {cfg.monitor.every_s:g} s")
        pilot.run(max_seconds=max_seconds)
