"""What should serve now, read from the registry: ``<prefix>-<task>@production`` per task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shelfops.errors import ArtifactNotFound
from shelfops.serve.host import TASKS


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
