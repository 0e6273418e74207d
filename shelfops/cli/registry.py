"""`shelfops registry ...`: versions, aliases and their audited history."""

from __future__ import annotations

import getpass
import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from shelfops.artifacts import leftovers, verify_outputs
from shelfops.cli.common import console, load, reported_errors, say, split_overrides
from shelfops.errors import ShelfopsError

app = typer.Typer(help="⑤ registry: immutable MLflow versions with lineage; audited alias moves.",
                  no_args_is_help=True)

Config = Annotated[Path | None, typer.Option("--config", "-c")]
Overrides = Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. "
                                                        "registry.tracking_uri=http://mlflow:5000")]


def _registry(config: Path | None, overrides: list[str] | None):
    from shelfops.registry.registry import registry_from

    _, ov = split_overrides(overrides)
    return registry_from(load(config, ov).registry)


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


@app.command()
def register(folder: Annotated[Path, typer.Argument(help="a trained or optimized model folder")],
             name: Annotated[str, typer.Option("--name", "-n", help="registered model name")],
             config: Config = None, overrides: Overrides = None) -> None:
    """Register a model folder as a new immutable version (checksums verified first)."""
    with reported_errors():
        v = _registry(config, overrides).register(folder, name)
        say(f"[green]registered[/] {name} v{v.version} ({v.stage}, {v.task}) from {folder}")


@app.command("ls")
def ls(name: Annotated[str | None, typer.Argument(help="a model name; omit to list models")] = None,
       config: Config = None, overrides: Overrides = None) -> None:
    """List registered models, or one model's versions with their aliases and gate verdicts."""
    with reported_errors():
        from rich.table import Table

        reg = _registry(config, overrides)
        if name is None:
            t = Table("model", "versions", "aliases")
            for n in reg.models():
                t.add_row(n, str(len(reg.versions(n))), ", ".join(f"{a}=v{v}" for a, v in
                                                            sorted(reg.aliases(n).items())))
            console.print(t)
            return
        t = Table("version", "stage", "task", "variant", "gate", "aliases", "created")
        for v in reg.versions(name):
            t.add_row(v.version, v.stage, v.task, v.tags.get("shelfops.variant", "-"), v.gate,
                      ", ".join(v.aliases), v.created_at)
        console.print(t)


@app.command()
def show(name: str, ref: Annotated[str, typer.Argument(help="version number or alias")],
         config: Config = None, overrides: Overrides = None) -> None:
    """One version: lineage, checksums, gate verdict, aliases."""
    with reported_errors():
        v = _registry(config, overrides).show(name, ref)
        tags = dict(v.tags)
        lineage = json.loads(tags.pop("shelfops.lineage", "[]"))
        console.print_json(json.dumps({"name": v.name, "version": v.version, "stage": v.stage,
                                       "task": v.task, "aliases": v.aliases, "gate": v.gate,
                                       "source": v.source, "run_id": v.run_id, "lineage": lineage,
                                       "tags": tags}))


@app.command()
def promote(name: str, version: str,
            alias: Annotated[str, typer.Argument(help="candidate | shadow | canary | production | previous")],
            reason: Annotated[str, typer.Option("--reason", "-r", help="why (recorded in the history)")] = "",
            force: Annotated[bool, typer.Option(help="skip the gate requirement (needs --reason)")] = False,
            config: Config = None, overrides: Overrides = None) -> None:
    """Point an alias at a version (canary / production need a passing gate report)."""
    with reported_errors():
        m = _registry(config, overrides).promote(name, version, alias, reason=reason, actor=actor(),
                                                 force=force)
        say(f"[green]{m.action}[/] {name}@{alias}: v{m.from_version or '-'} -> v{m.to_version} ({m.at})")


@app.command()
def verify(name: Annotated[str | None, typer.Argument(help="a model name; omit to check every model")] = None,
           folder: Annotated[list[Path] | None, typer.Option("--folder", help="a stage folder to check too "
                                                             "(checksums, half-written leftovers)")] = None,
           repair: Annotated[bool, typer.Option(help="re-point MLflow's aliases where the operational store "
                                                "says; delete leftovers of killed writers")] = False,
           config: Config = None, overrides: Overrides = None) -> None:
    """Check that aliases, their history and MLflow agree, and that stage folders are whole."""
    with reported_errors():
        reg = _registry(config, overrides)
        fixed = reg.repair(name) if repair else []
        for p in fixed:
            say(f"[yellow]repaired[/] {p.message}")
        found = [f"{p.model} ({p.kind}): {p.message}" for p in reg.check(name)]
        for f in folder or []:
            try:
                verify_outputs(f)
            except ShelfopsError as e:
                found.append(f"{f}: {e.message}")
            for junk in leftovers(f):
                if repair:
                    shutil.rmtree(junk, ignore_errors=True)
                    say(f"[yellow]removed[/] {junk} (left by a killed writer)")
                else:
                    found.append(f"{junk}: left by a killed writer (--repair removes it)")
        for f in found:
            say(f"[red]problem[/] {f}")
        if found:
            raise typer.Exit(1)
        say(f"[green]consistent[/]: {name or 'every model'}" + (f" and {len(folder)} folder(s)" if folder else ""))


@app.command()
def rollback(name: str,
             reason: Annotated[str, typer.Option("--reason", "-r")] = "manual rollback",
             config: Config = None, overrides: Overrides = None) -> None:
    """Point production back at the previous version (an alias move, audited)."""
    with reported_errors():
        m = _registry(config, overrides).rollback(name, reason=reason, actor=actor())
        say(f"[yellow]rollback[/] {name}@production: v{m.from_version} -> v{m.to_version} ({m.at})")


@app.command()
def history(name: Annotated[str | None, typer.Argument()] = None,
            as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
            config: Config = None, overrides: Overrides = None) -> None:
    """Every alias move: from, to, when, by whom, why, with its evidence."""
    with reported_errors():
        moves = _registry(config, overrides).history(name)
        if as_json:
            for m in moves:
                console.print_json(json.dumps(m.__dict__))
            return
        if not moves:
            say("no alias moves recorded yet")
        for m in moves:
            ev = "; ".join(f"{k}={str(v)[:16] if k.endswith('sha256') else v}" for k, v in m.evidence.items()
                           if v not in (None, "", "[]"))
            console.print(f"[bold]#{m.id}[/] {m.at}  {m.model}@[bold]{m.alias}[/]  "
                          f"v{m.from_version or '-'} -> v{m.to_version or '-'}  [cyan]{m.action}[/] by {m.actor}"
                          f"\n    why: {m.reason}\n    evidence: {ev or '-'}", soft_wrap=True)
