"""The HTTP API (FastAPI), assembled: the server's state (``serve.state``) opened and closed
with the app, the doors every request passes (``serve.doors``), request metrics, and three
groups of routes:

- ``serve.routes.shop``: /v1/search, /v1/rerank, /v1/recommend, /v1/classify, /v1/events[/batch]
- ``serve.routes.ops``: /healthz, /readyz, /metrics, /dashboard, /v1/dashboard, /v1/rollout, /v1/traffic
- ``serve.routes.admin``: /admin/rollout[/end], /admin/reload (bearer token)

Every response carries its request id (``x-request-id``: the caller's when it sent a sane one,
else a new one; a search's ``request_id`` is the same id), the model version that produced it
(``x-shelfops-version``), so feedback events are attributed to a version (online click-through
per version), and the replica that answered (``x-shelfops-replica``). With
``serve.access_log`` (config) each request is one record on the logger ``shelfops.access``
(``shelfops.logs`` formats it): request_id, method, path (never the query: it may hold a
token), status, duration_ms, client and version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from shelfops.logs import ACCESS
from shelfops.serve import doors
from shelfops.serve.deps import REQUEST_ID, request_id
from shelfops.serve.routes import admin, ops, shop
from shelfops.serve.settings import ServeSettings
from shelfops.serve.state import REPLICA, SERVED_PATHS, ServedCatalogue, State, follow, swap

access = logging.getLogger(ACCESS)

__all__ = ["ServeSettings", "create_app", "wait_ready"]


def create_app(settings: ServeSettings) -> FastAPI:
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if hasattr(state.shared, "ping"):
            await state.shared.ping()  # a shared store that does not answer fails the start, named
        if settings.data_dir is not None:
            state.catalogue = ServedCatalogue(settings.data_dir)
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
    doors.install(app, settings.serve.limits)  # before the metrics below, so that they count its refusals
    access_log, trust_forwarded = settings.serve.access_log, settings.serve.limits.trust_forwarded

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        t0 = time.perf_counter()
        rid = request_id(request)  # before the routes: a search answers with this id
        try:
            response = await call_next(request)
        except Exception:  # unexpected: serve.doors' outermost handler answers the 500
            if access_log:
                log_access(request, rid, 500, time.perf_counter() - t0, None, trust_forwarded)
            raise
        secs = time.perf_counter() - t0
        version = response.headers.get("x-shelfops-version", "")
        state.metrics.request(request.url.path, response.status_code, secs, version)
        if request.url.path in SERVED_PATHS:
            state.live.append((time.time(), secs))
        response.headers["x-shelfops-replica"] = REPLICA  # which process answered (several behind a proxy)
        response.headers[REQUEST_ID] = rid
        if access_log:
            log_access(request, rid, response.status_code, secs, version, trust_forwarded)
        return response

    for module in (shop, ops, admin):
        app.include_router(module.router)
    return app


def log_access(request: Request, rid: str, status: int, secs: float, version: str | None,
               trust_forwarded: bool) -> None:
    """One request's record on ``shelfops.access``; its path without the query string."""
    method, path = request.method, request.url.path
    access.info("%s %s %d", method, path, status,
                extra={"request_id": rid, "method": method, "path": path, "status": status,
                       "duration_ms": round(secs * 1e3, 2),
                       "client": doors.client_of(request.scope, trust_forwarded), "version": version or None})


async def wait_ready(app: FastAPI, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not app.state.shelfops.ready:
        if time.time() - t0 > timeout:
            raise TimeoutError("server not ready")
        await asyncio.sleep(0.05)
