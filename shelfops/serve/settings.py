"""What a server is given: the models to serve, its data, its tokens, the config's ``serve:``
section whole, and the hooks that follow the registry. Plain data; :mod:`shelfops.serve.spec`
builds it from the config for every backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shelfops.config.schema import ServeConfig
from shelfops.serve.batcher import MicroBatcher


@dataclass
class ServeSettings:
    models: dict[str, tuple[Path, str]]  # task -> (folder, version)
    data_dir: Path | None = None
    admin_token: str | None = None
    # opens the dashboard (serve.deps.reader); the admin token does too; neither set: it is open
    read_token: str | None = None
    # the config's serve: section (retriever, fusion weight, re-rank depth, sessions and their
    # store, shadow share, access log, limits): its defaults are the only ones
    serve: ServeConfig = field(default_factory=ServeConfig)
    request_log: int = 100_000  # served requests kept for feedback when sessions live in this process
    # the class model calls are batched by: shelfops.serve.batcher.MicroBatcher, or one with its
    # interface (shelfops.serve.ray_backend.ServeBatcher: @serve.batch, in a Ray Serve replica)
    batcher: type = MicroBatcher
    traffic_log: int = 50_000  # searches and clicks kept for the drift monitor (GET /v1/traffic)
    # polled every watch_seconds: task -> (folder, version) that should serve now (e.g. the
    # registry's production alias); a different version is hot-swapped in
    watch: Callable[[], dict[str, tuple[Path, str]]] | None = None
    watch_seconds: float = 5.0
    # (task, version, model name or None) -> local folder of that version, from the registry the
    # server follows (shelfops.serve.watch.registry_versions): how a rollout's candidate is loaded
    # when the controller's folder is not on this server's filesystem
    fetch_version: Callable[[str, str, str | None], Path] | None = None
    # the dashboard: registry versions, aliases, gates and history (shelfops.serve.watch.registry_view),
    # and a folder of charts other stages wrote (optimize's pareto.png, drift reports)
    registry_view: Callable[[], dict] | None = None
    report_dir: Path | None = None
    extra: dict = field(default_factory=dict)
