"""`shelfops serve`: the HTTP API over model folders or the registry's production aliases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shelfops import logs, redact
from shelfops.cli.common import LogJson, LogLevel, load, log_choice, reported_errors, say, split_overrides


def serve(
    ctx: typer.Context,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="TASK=FOLDER (repeatable)")] = None,
    registry_prefix: Annotated[str | None, typer.Option(help="serve <prefix>-<task>@production from the "
                                                        "registry and follow its alias moves")] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="dataset with the catalogue "
                                              "(default: the retrieval or search model's)")] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    watch_seconds: float = 5.0,
    backend: Annotated[str, typer.Option(help="uvicorn: one process; ray: a Ray Serve deployment with "
                                         "autoscaled replicas (pip install 'shelfops[scale]')")] = "uvicorn",
    min_replicas: Annotated[int, typer.Option(help="ray backend: fewest replicas")] = 1,
    max_replicas: Annotated[int, typer.Option(help="ray backend: most replicas")] = 2,
    log_level: LogLevel = None,
    log_json: LogJson = None,
    access_log: Annotated[bool | None, typer.Option(
        "--access-log/--no-access-log", help="log every request on shelfops.access: request_id, method, "
        "path, status, duration_ms, client, version (default: serve.access_log)")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides")] = None,
) -> None:
    """⑥ Serve search / recommend / classify over HTTP (admin token: $SHELFOPS_ADMIN_TOKEN; the
    dashboard's read token: $SHELFOPS_READ_TOKEN, else the admin token, else it is open)."""
    with reported_errors():
        level, as_json = log_choice(ctx, log_level, log_json)
        logs.setup(level, json=as_json)  # before anything logs (a level it does not know: exit 2)
        import uvicorn

        from shelfops.artifacts import read_manifest
        from shelfops.errors import ConfigError
        from shelfops.serve.app import create_app
        from shelfops.serve.spec import ReplicaSpec, serve_settings
        from shelfops.tasks import TASKS

        _, ov = split_overrides(overrides)
        if access_log is not None:
            ov.append(f"serve.access_log={str(access_log).lower()}")
        cfg = load(config, ov)
        if backend not in ("uvicorn", "ray"):
            raise ConfigError([f"--backend {backend!r}: expected uvicorn or ray"])
        models: dict[str, tuple[Path, str]] = {}
        for spec in model or []:
            task, _, folder = spec.partition("=")
            if task not in TASKS or not folder:
                raise ConfigError([f"--model {spec!r}: expected TASK=FOLDER with TASK in {list(TASKS)}"])
            models[task] = (Path(folder), read_manifest(folder).created_at or "local")
        serving = dict(models)
        if registry_prefix:
            from shelfops.registry.registry import registry_from
            from shelfops.serve.watch import follow_registry

            serving.update(follow_registry(registry_from(cfg.registry), registry_prefix)())
        if not serving:
            raise ConfigError(["serve: nothing to serve; pass --model TASK=FOLDER or --registry-prefix"])
        rs = ReplicaSpec.from_config(cfg, models=models, registry_prefix=registry_prefix, data_dir=data,
                                     admin_token=os.environ.get("SHELFOPS_ADMIN_TOKEN"),
                                     watch_seconds=watch_seconds)
        if backend == "ray":
            # the replicas are processes of their own: they set their logging up from the environment
            # (shelfops.logs.from_env), which the local Ray they are started in inherits from here
            os.environ["SHELFOPS_LOG_LEVEL"], os.environ["SHELFOPS_LOG_JSON"] = level, "1" if as_json else "0"
            _serve_ray(rs, serving, host, port, min_replicas, max_replicas)
            return
        say(f"serving {', '.join(f'{t} v{v}' for t, (_, v) in serving.items())} on http://{host}:{port} "
            f"(docs: /docs; sessions: "
            f"{redact.url(state) if (state := rs.serve_config.state_url) else 'in this process'})")
        # logging stays ours (log_config=None), and so does the access log (uvicorn's is off)
        uvicorn.run(create_app(serve_settings(rs)), host=host, port=port, log_config=None, log_level=None,
                    access_log=False)


def _serve_ray(spec, serving, host, port, min_replicas, max_replicas) -> None:
    import time

    from shelfops.serve import ray_backend

    if spec.serve_config.state_url is None and max_replicas > 1:
        say("[yellow]serve.state_url is not set: each replica keeps its own sessions; set "
            "serve.state_url=redis://... so replicas share them[/]")
    url = ray_backend.start(spec, host=host, port=port, min_replicas=min_replicas, max_replicas=max_replicas)
    say(f"Ray Serve: {', '.join(f'{t} v{v}' for t, (_, v) in serving.items())} on {url} "
        f"({min_replicas}-{max_replicas} replicas; sessions: "
        f"{redact.url(state) if (state := spec.serve_config.state_url) else 'per replica'}); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ray_backend.stop()
