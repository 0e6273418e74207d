"""What operators and their tools read: liveness, readiness (models, dense index, dependencies),
Prometheus metrics, the dashboard (behind the read token when one is configured:
``serve.deps.reader``), the rollout's live numbers and the traffic log the drift monitor reads."""

from __future__ import annotations

import asyncio
import time
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

from shelfops.errors import Unauthorized
from shelfops.serve.dashboard import report_file, state_document
from shelfops.serve.deps import (
    READ_COOKIE,
    READ_REFUSAL,
    Served,
    admin,
    opened_by,
    read_cookie,
    read_tokens,
    reader,
)
from shelfops.serve.routing import rollouts_now
from shelfops.serve.schemas import ERRORS, DashboardOut, HealthOut, ReadyOut, RolloutNow, TrafficOut
from shelfops.serve.state import dense_status, dependencies

router = APIRouter()


@router.get("/healthz", response_model=HealthOut)
async def healthz(state: Served):
    return {"ok": True, "uptime_s": round(time.time() - state.started, 1)}


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def readyz(state: Served):
    if not state.ready:
        return JSONResponse({"ready": False}, status_code=503)
    return {"ready": True, "models": {t: {"version": s.version, **{k: v for k, v in s.meta.items()
                                                                   if k != "labels"}}
                                      for t, s in state.host.slots.items()}, "swaps": state.host.swaps,
            "dense": dense_status(state.catalogue), "dependencies": dependencies(state)}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: Served):
    return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/traffic", dependencies=[Depends(admin)], response_model=TrafficOut, responses=ERRORS)
async def traffic(state: Served, since: float = 0.0, limit: int = Query(10_000, ge=1, le=100_000)):
    """Searches and clicks after ``since`` (unix seconds), oldest first: the drift monitor's input."""
    out = [r for r in state.traffic if r["t"] > since]
    return {"records": out[-limit:], "now": time.time()}


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page(request: Request, state: Served, token: str | None = None,
                         authorization: Annotated[str | None, Header()] = None):
    """The page. Behind a token, its link carries the token once, ``/dashboard?token=...``: the
    answer sets the read cookie and sends the browser on to ``/dashboard`` without it (out of
    the address bar and the history); the page's fetches and images then carry the cookie."""
    if token is not None and read_tokens(state.settings):
        match = opened_by(state.settings, token)
        if match is None:
            raise Unauthorized(READ_REFUSAL)
        response = RedirectResponse("dashboard", status_code=303)  # relative: behind a path prefix too
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        response.set_cookie(READ_COOKIE, read_cookie(match), path="/", httponly=True, samesite="lax",
                            secure=request.url.scheme == "https" or forwarded == "https")
        return response
    reader(request, state, authorization)
    return HTMLResponse(files("shelfops.serve").joinpath("dashboard.html").read_text())


@router.get("/v1/dashboard", dependencies=[Depends(reader)], response_model=DashboardOut, responses=ERRORS)
async def dashboard_data(state: Served):
    """Everything the dashboard shows, in one document (no queries, no user ids; behind the read
    token when one is configured)."""
    fetched, reg = state.registry_cache
    view = state.settings.registry_view
    if view is not None and time.time() - fetched > 5.0:
        try:
            reg = await asyncio.get_running_loop().run_in_executor(None, view)
        except Exception as e:  # the registry is down: show the serving side anyway
            reg = {"error": str(e)}
        state.registry_cache = (time.time(), reg)
    return state_document(state, reg, await rollouts_now(state))


@router.get("/dashboard/files/{name}", dependencies=[Depends(reader)], include_in_schema=False)
async def dashboard_file(name: str, state: Served):
    path = report_file(state.settings.report_dir, name)
    if path is None:
        return JSONResponse({"code": "not_found", "message": f"no report file {name!r}"}, status_code=404)
    return FileResponse(path)


@router.get("/v1/rollout", response_model=dict[str, RolloutNow])
async def rollout_status(state: Served):
    return await rollouts_now(state)
