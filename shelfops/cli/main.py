"""The `shelfops` command: thin; parse, call the library, print, exit code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

# Measured on shared 2-vCPU VMs: OpenMP's default busy-wait made 2-thread training steps
# 2.5-3x slower whenever another process ran; passive waiting does not. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from shelfops import __version__, logs
from shelfops.cli import autopilot as autopilot_cli
from shelfops.cli import data as data_cli
from shelfops.cli import gate as gate_cli
from shelfops.cli import optimize as optimize_cli
from shelfops.cli import registry as registry_cli
from shelfops.cli import rollout as rollout_cli
from shelfops.cli import serve as serve_cli
from shelfops.cli import train as train_cli
from shelfops.cli.common import LogJson, LogLevel, console, reported_errors, say, split_overrides

STAGES = "① data → ② train → ③ optimize → ④ gate → ⑤ registry → ⑥ serve → ⑦ monitor"

app = typer.Typer(
    help=f"shelfops: pretrained transformers behind e-commerce search and recommendation.\n\n"
    f"Stages, in order: {STAGES}",
    no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
)
app.add_typer(data_cli.app, name="data")
app.add_typer(registry_cli.app, name="registry")
app.add_typer(rollout_cli.app, name="rollout")
app.command("train")(train_cli.train)
app.command("evaluate")(train_cli.evaluate)
app.command("optimize")(optimize_cli.optimize)
app.command("gate")(gate_cli.gate)
app.command("serve")(serve_cli.serve)
app.command("autopilot")(autopilot_cli.autopilot)


def _version(value: bool) -> None:
    if value:
        print(f"shelfops {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
    log_level: LogLevel = None,
    log_json: LogJson = None,
) -> None:
    """shelfops: pretrained transformers behind e-commerce search and recommendation."""
    if log_level is not None or log_json is not None:  # else logging is left as Python has it
        with reported_errors():
            logs.setup(log_level or "warning", json=bool(log_json))


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="a shelfops YAML config, or a preset shipped with "
                                                "shelfops by name: synthetic, homedepot, amazon-beauty, diginetica")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides")] = None,
) -> None:
    """Check a config file; report every problem at once."""
    with reported_errors():
        from shelfops.config.load import load_config

        _, ov = split_overrides(overrides)
        cfg = load_config(config, ov)
        n = len(cfg.data.sources)
        what = f"{n} source(s)" if n else "the synthetic shop"
        say(f"[green]ok[/] {config}: valid ({what})")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes")] = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides")] = None,
    stages: Annotated[bool, typer.Option("--stages", help="instead of the story: data, then the four "
                                         "tasks trained, optimized, gated and registered")] = False,
    train: Annotated[bool, typer.Option("--train/--no-train",
                                        help="with --stages: fine-tune the four tasks and optimize them "
                                        "(--no-train: the data stage only)")] = True,
) -> None:
    """Tell the whole story on the built-in synthetic shop: v1, serve, drift, autopilot
    retrains v2, shadow, canary, promote; a broken v3 is stopped. Writes report.html."""
    with reported_errors():
        from shelfops.demo import pipeline

        _, ov = split_overrides(overrides)
        if stages:
            pipeline.demo(workdir, config=config, overrides=ov, console=console, train=train)
        else:
            pipeline.story(workdir, config=config, overrides=ov, console=console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
