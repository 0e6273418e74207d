"""The one release sequence every path uses (the demo's stages, the autopilot, `shelfops gate
--register`): register a model folder as a new version, find what serves in production, gate
the version against it, store the report with the version, and point ``candidate`` at it with
the gate's evidence. Promotion to production is the caller's decision (a policy, a rollout, a
person). Gate reports live in one layout: ``<gates>/<model name>/v<version>/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shelfops.errors import ArtifactNotFound
from shelfops.gate.recipe import GateSettings, run_gate


@dataclass(frozen=True)
class Gated:
    name: str
    version: str
    production: str | None  # the version it was gated against (None: the first version)
    passed: bool
    failed: list[str]
    report_dir: Path
    evidence: dict  # what the alias moves record: the report's path and each check's verdict


def report_dir(gates: Path, name: str, version: str) -> Path:
    return Path(gates) / name / f"v{version}"


def production_of(reg, name: str) -> tuple[str | None, Path | None]:
    """(version, verified local folder) of ``name@production``, or (None, None) when unset."""
    try:
        return reg.show(name, "production").version, reg.load(name, "production")
    except ArtifactNotFound:
        return None, None


def gate_version(reg, name: str, version: str, folder: Path, out: Path, *, production: Path | None,
                 production_version: str | None, settings: GateSettings, data_dir: Path | None = None,
                 say=print) -> Gated:
    """Gate ``name`` v``version`` (its files in ``folder``) against the ``production`` folder
    (None: nothing to compare, a first version), write the report to ``out`` and store it with
    the version."""
    say(f"gating {name} v{version} against " + (f"v{production_version}" if production_version else
                                                 str(production) if production else "nothing (first version)"))
    rep = run_gate(folder, out, production=production, data_dir=data_dir, settings=settings, say=say)
    reg.attach_gate(name, version, out)
    evidence = {"gate_report": str(out / "gate.json"), "checks": {r["name"]: r["passed"] for r in rep["results"]}}
    return Gated(name, version, production_version, bool(rep["passed"]), list(rep["failed"]), out, evidence)


def release(reg, folder: Path, name: str, gates: Path, *, settings: GateSettings, reason: str, actor: str,
            say=print) -> Gated:
    """Register ``folder`` as a new version of ``name``, gate it against production, store the
    report, and point ``candidate`` at it (with the gate's evidence)."""
    v = reg.register(folder, name)
    prod_version, production = production_of(reg, name)
    g = gate_version(reg, name, v.version, Path(folder), report_dir(gates, name, v.version), production=production,
                     production_version=prod_version, settings=settings, say=say)
    reg.promote(name, v.version, "candidate", reason=reason, actor=actor, evidence=g.evidence)
    return g
