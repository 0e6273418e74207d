"""`shelfops rollout ...`: drive a candidate through shadow -> canary -> production."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from shelfops.cli.common import console, load, reported_errors, say, split_overrides
from shelfops.tasks import ROLLOUT_TASKS

app = typer.Typer(help="⑥ rollout: shadow -> 5% -> 25% -> 50% -> 100%, rolled back on live signals.",
                  no_args_is_help=True)
Server = Annotated[str, typer.Option("--server", help="the shelfops server's base URL")]
Config = Annotated[Path | None, typer.Option("--config", "-c")]
Overrides = Annotated[list[str] | None, typer.Argument(help="key=value overrides")]


Task = Annotated[str | None, typer.Option("--task", help="search, recommend or classify "
                                          "(default: the last part of NAME, e.g. shop-recommend)")]


def _controller(name: str, server: str, config, overrides, task: str | None = None, **policy):
    """The controller with the config's policy (monitor.rollout), options given here winning."""
    from shelfops.monitor.controller import Controller, HttpServer
    from shelfops.monitor.rollout import policy_from
    from shelfops.registry.registry import registry_from

    token = os.environ.get("SHELFOPS_ADMIN_TOKEN")
    if not token:
        from shelfops.errors import ConfigError

        raise ConfigError(["rollout: set SHELFOPS_ADMIN_TOKEN (the server's admin token)"])
    _, ov = split_overrides(overrides)
    # the options given here are overrides of monitor.rollout, checked as the config is
    cfg = load(config, [*ov, *(f"monitor.rollout.{k}={v}" for k, v in policy.items() if v is not None)])
    reg = registry_from(cfg.registry)
    suffix = name.rsplit("-", 1)[-1]
    task = task or (suffix if suffix in ROLLOUT_TASKS else "search")
    return Controller(reg, HttpServer(server, token), name, task=task, policy=policy_from(cfg.monitor.rollout))


@app.command()
def start(name: str, version: str, server: Server = "http://127.0.0.1:8000", task: Task = None,
          config: Config = None, overrides: Overrides = None) -> None:
    """Load VERSION of NAME beside production as a shadow (recorded as the `shadow` alias)."""
    with reported_errors():
        row = _controller(name, server, config, overrides, task).start(version)
        say(f"rollout of {name} v{row.candidate} started in shadow")


@app.command()
def run(name: str, server: Server = "http://127.0.0.1:8000", every: float = 5.0, task: Task = None,
        min_dwell_s: Annotated[float | None, typer.Option(help="default: monitor.rollout")] = None,
        min_requests: Annotated[int | None, typer.Option(help="default: monitor.rollout")] = None,
        min_impressions: Annotated[int | None, typer.Option(help="default: monitor.rollout")] = None,
        config: Config = None, overrides: Overrides = None) -> None:
    """Reconcile until the rollout is promoted or rolled back (safe to kill and restart)."""
    with reported_errors():
        ctl = _controller(name, server, config, overrides, task, min_dwell_s=min_dwell_s,
                          min_requests=min_requests, min_impressions=min_impressions)
        while True:
            d = ctl.tick()
            row = ctl.row()
            if d is not None and d.action != "hold":
                console.print(f"{d.action}: {d.reason}")
            if row is None or row.status != "running":
                say(f"rollout finished: {row.status if row else 'none'}: {row.reason if row else ''}")
                return
            time.sleep(every)
