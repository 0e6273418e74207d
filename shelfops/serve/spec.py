"""What a server needs to build its app, as plain picklable data, mapped from the config once.

``shelfops serve`` (one uvicorn process) and every Ray Serve replica build their
``ServeSettings`` through :meth:`ReplicaSpec.settings`, and both take the config's
``serve:`` section through :meth:`ReplicaSpec.from_config`, so a setting added there reaches
every backend. Live objects (registry, Redis, watchers) are opened where the app runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shelfops.artifacts import read_manifest
from shelfops.config.schema import LimitsConfig, RegistryConfig
from shelfops.registry.registry import registry_from
from shelfops.serve.app import ServeSettings
from shelfops.serve.watch import follow_registry, registry_view


@dataclass
class ReplicaSpec:
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # task -> (folder, version)
    registry_prefix: str | None = None  # follow <prefix>-<task>@production in the registry
    registry: dict = field(default_factory=dict)  # RegistryConfig as a dict
    data_dir: str | None = None
    admin_token: str | None = None
    read_token: str | None = None  # the dashboard's (serve.deps.reader)
    watch_seconds: float = 5.0
    # the config's serve: section (ServeConfig)
    state_url: str | None = None
    session_length: int = 50
    rerank_depth: int | None = None  # None: the search model's chosen depth
    shadow_fraction: float = 1.0
    retriever: Literal["hybrid", "dense", "lexical"] = "hybrid"
    fusion_weight: float | None = None  # None: the search model's chosen weight
    access_log: bool = False
    limits: dict = field(default_factory=dict)  # LimitsConfig as a dict

    @classmethod
    def from_config(cls, cfg, *, models: dict[str, tuple[Path | str, str]] | None = None,
                    registry_prefix: str | None = None, data_dir: Path | str | None = None,
                    admin_token: str | None = None, read_token: str | None = None,
                    watch_seconds: float = 5.0) -> ReplicaSpec:
        """``cfg``: a ShelfopsConfig; its ``serve`` section is copied field by field (an unset
        ``state_url`` from ``$SHELFOPS_STATE_URL``: a Redis password belongs in a secret; an
        unset ``read_token`` from ``$SHELFOPS_READ_TOKEN``, a secret too)."""
        serve = cfg.serve.model_dump()
        serve["state_url"] = serve["state_url"] or os.environ.get("SHELFOPS_STATE_URL") or None
        return cls(models={t: (str(f), v) for t, (f, v) in (models or {}).items()},
                   registry_prefix=registry_prefix, registry=cfg.registry.model_dump(),
                   data_dir=str(data_dir) if data_dir else None, admin_token=admin_token,
                   read_token=read_token or os.environ.get("SHELFOPS_READ_TOKEN") or None,
                   watch_seconds=watch_seconds, **serve)

    def settings(self, *, batching: Literal["asyncio", "ray"] = "asyncio"):
        """The app's ServeSettings; with ``registry_prefix`` the registry's production versions
        are added to (and win over) ``models`` and are followed for hot swaps."""

        models = {t: (Path(f), v) for t, (f, v) in self.models.items()}
        watch = view = None
        if self.registry_prefix:
            reg = registry_from(RegistryConfig(**self.registry))
            watch, view = follow_registry(reg, self.registry_prefix), registry_view(reg, self.registry_prefix)
            models.update(watch())
        data = Path(self.data_dir) if self.data_dir else catalogue_of(models)
        return ServeSettings(models=models, data_dir=data,
                             admin_token=self.admin_token, read_token=self.read_token,
                             access_log=self.access_log, state_url=self.state_url,
                             session_length=self.session_length, rerank_depth=self.rerank_depth,
                             watch=watch, watch_seconds=self.watch_seconds, registry_view=view,
                             batching=batching, shadow_fraction=self.shadow_fraction,
                             retriever=self.retriever, fusion_weight=self.fusion_weight,
                             limits=LimitsConfig(**self.limits))


def catalogue_of(models: dict[str, tuple[Path, str]]) -> Path | None:
    """The dataset (with its catalogue) the retrieval, search or classify model was trained on,
    as its manifest records it: the default when no data folder is given."""
    for task in ("retrieval", "search", "classify"):
        if task in models:
            data = read_manifest(models[task][0]).extra.get("data")
            return Path(data) if data else None
    return None
