"""The HTTP API (FastAPI), assembled: the server's state (``serve.state``) opened and closed
with the app, the doors every request passes (``serve.doors``), request metrics, and three
groups of routes:

- ``serve.shop_api``: /v1/search, /v1/rerank, /v1/recommend, /v1/classify, /v1/events[/batch]
- ``serve.ops_api``: /healthz, /readyz, /metrics, /dashboard, /v1/dashboard, /v1/rollout, /v1/traffic
- ``serve.admin_api``: /admin/rollout[/end], /admin/reload (bearer token)

Every response carries the request id and the model versions that produced it, so feedback
events are attributed to a version (online click-through per version), and the replica that
answered (``x-shelfops-replica``).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from shelfops.serve import admin_api, doors, ops_api, shop_api
from shelfops.serve.state import REPLICA, SERVED_PATHS, Catalogue, ServeSettings, State, follow, swap

__all__ = ["ServeSettings", "create_app", "wait_ready"]


def create_app(settings: ServeSettings) -> FastAPI:
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if hasattr(state.shared, "ping"):
            await state.shared.ping()  # a shared store that does not answer fails the start, named
        if settings.data_dir is not None:
            state.catalogue = Catalogue(settings.data_dir)
        for task in ("retrieval", "search", "classify", "recommend"):  # retrieval first: it builds the index
            if task in settings.models:
                folder, version = settings.models[task]
                await swap(state, task, folder, version)
        state.ready = True
        watcher = asyncio.create_task(follow(state)) if settings.watch else None
        yield
        if watcher:
            watcher.cancel()
        await state.host.close()
        await state.shared.close()

    app = FastAPI(title="shelfops", version="1", lifespan=lifespan,
                  description="Search, recommendation and classification served from the registry.")
    app.state.shelfops = state
    doors.install(app, settings.limits)  # before the metrics below, so that they count its refusals

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        secs = time.perf_counter() - t0
        state.metrics.request(request.url.path, response.status_code, secs,
                              response.headers.get("x-shelfops-version", ""))
        if request.url.path in SERVED_PATHS:
            state.live.append((time.time(), secs))
        response.headers["x-shelfops-replica"] = REPLICA  # which process answered (several behind a proxy)
        return response

    for module in (shop_api, ops_api, admin_api):
        app.include_router(module.router)
    return app


async def wait_ready(app: FastAPI, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not app.state.shelfops.ready:
        if time.time() - t0 > timeout:
            raise TimeoutError("server not ready")
        await asyncio.sleep(0.05)
