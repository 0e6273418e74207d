"""What a server needs to build its app, as plain picklable data, mapped from the config once.

``shelfops serve`` (one uvicorn process) and every Ray Serve replica build their
``ServeSettings`` through :func:`serve_settings`, and both take the config's ``serve:``
section whole through :meth:`ReplicaSpec.from_config`, so a setting added there reaches
every backend. The spec is data only: live objects (registry, Redis, watchers) are opened
where the app runs, by :func:`serve_settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from shelfops.artifacts import read_manifest
from shelfops.config.schema import RegistryConfig, ServeConfig
from shelfops.registry.registry import registry_from
from shelfops.serve.batcher import MicroBatcher
from shelfops.serve.settings import ServeSettings
from shelfops.serve.watch import follow_registry, registry_versions, registry_view


@dataclass
class ReplicaSpec:
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # task -> (folder, version)
    registry_prefix: str | None = None  # follow <prefix>-<task>@production in the registry
    registry: dict = field(default_factory=dict)  # RegistryConfig as a dict
    data_dir: str | None = None
    admin_token: str | None = None
    read_token: str | None = None  # the dashboard's (serve.deps.reader)
    watch_seconds: float = 5.0
    # the config's serve: section (ServeConfig dumped; {} = its defaults, which are the only ones)
    serve: dict = field(default_factory=dict)

    @property
    def serve_config(self) -> ServeConfig:
        return ServeConfig(**self.serve)

    @classmethod
    def from_config(cls, cfg, *, models: dict[str, tuple[Path | str, str]] | None = None,
                    registry_prefix: str | None = None, data_dir: Path | str | None = None,
                    admin_token: str | None = None, read_token: str | None = None,
                    watch_seconds: float = 5.0) -> ReplicaSpec:
        """``cfg``: a ShelfopsConfig; its ``serve`` section is taken whole (an unset
        ``state_url`` from ``$SHELFOPS_STATE_URL``: a Redis password belongs in a secret; an
        unset ``read_token`` from ``$SHELFOPS_READ_TOKEN``, a secret too)."""
        serve = cfg.serve.model_dump()
        serve["state_url"] = serve["state_url"] or os.environ.get("SHELFOPS_STATE_URL") or None
        return cls(models={t: (str(f), v) for t, (f, v) in (models or {}).items()},
                   registry_prefix=registry_prefix, registry=cfg.registry.model_dump(),
                   data_dir=str(data_dir) if data_dir else None, admin_token=admin_token,
                   read_token=read_token or os.environ.get("SHELFOPS_READ_TOKEN") or None,
                   watch_seconds=watch_seconds, serve=serve)


def serve_settings(spec: ReplicaSpec, *, batcher: type = MicroBatcher) -> ServeSettings:
    """The app's ServeSettings, built where the app runs (a uvicorn process, a Ray replica): with
    ``registry_prefix`` the registry is opened here, its production versions are added to (and
    win over) ``models`` and are followed for hot swaps. ``batcher``: the class model calls are
    batched by (Ray's ``ServeBatcher`` in a replica)."""
    models = {t: (Path(f), v) for t, (f, v) in spec.models.items()}
    watch = view = fetch = None
    if spec.registry_prefix:
        reg = registry_from(RegistryConfig(**spec.registry))
        watch, view = follow_registry(reg, spec.registry_prefix), registry_view(reg, spec.registry_prefix)
        fetch = registry_versions(reg, spec.registry_prefix)
        models.update(watch())
    data = Path(spec.data_dir) if spec.data_dir else catalogue_of(models)
    return ServeSettings(models=models, data_dir=data, admin_token=spec.admin_token,
                         read_token=spec.read_token,
                         serve=spec.serve_config, watch=watch, watch_seconds=spec.watch_seconds,
                         fetch_version=fetch, registry_view=view, batcher=batcher)


def catalogue_of(models: dict[str, tuple[Path, str]]) -> Path | None:
    """The dataset (with its catalogue) the retrieval, search or classify model was trained on,
    as its manifest records it: the default when no data folder is given."""
    for task in ("retrieval", "search", "classify"):
        if task in models:
            data = read_manifest(models[task][0]).extra.get("data")
            return Path(data) if data else None
    return None
