"""`shelfops gate`: every consistency check before a model ships, all failures together."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shelfops.cli.common import load, reported_errors, say, split_overrides


def gate(
    candidate: Annotated[str, typer.Argument(help="a model folder, or a version number of --name")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="registered model: production comes "
                                             "from its alias, and the report is stored with the version")] = None,
    against: Annotated[str, typer.Option(help="alias of --name, or a model folder")] = "production",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="report folder")] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="dataset (default: the candidate's)")] = None,
    register: Annotated[bool, typer.Option(help="register the candidate folder under --name first")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides")] = None,
) -> None:
    """④ Gate a candidate against production: quality, parity, determinism, ranking consistency,
    behaviour, serving smoke. Exit code 0 only if every check passes."""
    with reported_errors():
        from shelfops.errors import ArtifactNotFound, ConfigError, GateError
        from shelfops.gate.recipe import gate_settings_from, run_gate
        from shelfops.registry.registry import registry_from
        from shelfops.registry.release import gate_version, report_dir

        _, ov = split_overrides(overrides)
        cfg = load(config, ov)
        reg = registry_from(cfg.registry) if name else None
        version = None
        if reg is not None and candidate.isdigit():
            version = candidate
            folder = reg.load(name, version)
        else:
            folder = Path(candidate)
            if not (folder / "manifest.json").exists():
                raise ConfigError([f"gate: {candidate} is neither a model folder nor a version of --name"])
            if reg is not None and register:
                version = reg.register(folder, name).version
                say(f"registered {name} v{version}")
            elif reg is not None:
                version = reg.find_version(name, folder)
        production = prod_version = None
        if Path(against).exists():
            production = Path(against)
        elif reg is not None:
            try:
                prod_version, production = reg.show(name, against).version, reg.load(name, against)
            except ArtifactNotFound:
                say(f"gate: {name}@{against} is not set: first version, nothing to compare against")
        settings = gate_settings_from(cfg.gate)
        if reg is not None and version is not None:  # the release sequence's step: stored with the version
            g = gate_version(reg, name, version, folder, out or report_dir(reg.home / "gates", name, version),
                             production=production, production_version=prod_version, settings=settings,
                             data_dir=data, say=say)
            rep, out = {"passed": g.passed, "failed": g.failed}, g.report_dir
            say(f"gate report stored with {name} v{version}")
        else:
            out = out or folder.with_name(folder.name + "-gate")
            rep = run_gate(folder, out, production=production, data_dir=data, say=say, settings=settings)
        say(f"{'[green]PASSED[/]' if rep['passed'] else '[red]FAILED[/]'}: report {out / 'gate.html'}")
        if not rep["passed"]:
            raise GateError(f"{len(rep['failed'])} check(s) failed: {', '.join(rep['failed'])}",
                            failed=rep["failed"])
