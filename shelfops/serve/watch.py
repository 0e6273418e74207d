"""What should serve now, read from the registry: ``<prefix>-<task>@production`` per task, and
any other version of it a rollout names."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from shelfops.errors import ArtifactNotFound, BadRequest
from shelfops.tasks import TASKS


def follow_registry(reg, prefix: str, alias: str = "production"
                    ) -> Callable[[], dict[str, tuple[Path, str]]]:
    """A poll function for ServeSettings.watch: task -> (verified local folder, version)."""

    def wanted() -> dict[str, tuple[Path, str]]:
        out = {}
        for task in TASKS:
            name = f"{prefix}-{task}"
            version = reg.aliases(name).get(alias)
            if version is None:
                continue
            try:
                out[task] = (reg.load(name, version), version)
            except ArtifactNotFound:
                continue
        return out

    return wanted


def registry_versions(reg, prefix: str) -> Callable[[str, str, str | None], Path]:
    """A loader for ServeSettings.fetch_version: (task, version, model name or None) -> verified
    local folder of ``<prefix>-<task>`` at that version, from the registry this server follows.
    A rollout's controller may run where the server's files are not (another container, pod or
    machine): it names the version, the server fetches it. A model name other than the one
    this server follows is refused, so one server never serves another model's version."""

    def fetch(task: str, version: str, model: str | None = None) -> Path:
        name = f"{prefix}-{task}"
        if model is not None and model != name:
            raise BadRequest(f"this server follows {name} for {task}, not {model}", field="model")
        return reg.load(name, version)

    return fetch


def registry_view(reg, prefix: str | None = None, history: int = 50) -> Callable[[], dict]:
    """A poll function for ServeSettings.registry_view: versions, aliases, gates, alias history."""

    def view() -> dict:
        names = [n for n in reg.models() if prefix is None or n.startswith(f"{prefix}-")]
        models = {}
        for name in names:
            versions = sorted(reg.versions(name), key=lambda v: -int(v.version))
            models[name] = {"aliases": reg.aliases(name), "versions": [
                {"version": v.version, "aliases": v.aliases, "gate": v.gate, "created_at": v.created_at,
                 "failed": json.loads(v.tags.get("shelfops.gate_failed") or "[]")}
                for v in versions[:20]]}
        moves = [m for n in names for m in reg.history(n)]
        moves.sort(key=lambda m: m.id, reverse=True)
        return {"models": models, "history": [
            {"at": m.at, "model": m.model, "alias": m.alias, "from_version": m.from_version,
             "to_version": m.to_version, "actor": m.actor, "action": m.action, "reason": m.reason}
            for m in moves[:history]]}

    return view
