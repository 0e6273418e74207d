"""Every route of the app, in process (FastAPI's TestClient: no socket, no uvicorn), with the
tiny trained models of all four tasks: the fast suite's cover of the HTTP API. A route added to
the app without a call here fails :func:`test_every_route_is_called`; the slow suite
(tests/integration/test_serve.py) drives the same API over real loopback HTTP, under load."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from shelfops.config.schema import ServeConfig
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.routes import admin, ops, shop

TOKEN = "in-process-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CALLED: set[tuple[str, str]] = set()  # (method, route path) this module's calls reached


@pytest.fixture(scope="module")
def client(models, small_shop, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    (reports / "pareto.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a chart another stage wrote
    settings = ServeSettings(models={t: (models / t, "1") for t in ("search", "retrieval", "classify", "recommend")},
                             data_dir=small_shop, admin_token=TOKEN, report_dir=reports,
                             serve=ServeConfig(rerank_depth=10))
    with TestClient(create_app(settings)) as c:  # the lifespan loads and warms the models
        yield c


def call(c: TestClient, method: str, route: str, url: str | None = None, **kw):
    CALLED.add((method, route))
    return c.request(method, url or route, **kw)


def test_health_readiness_and_metrics(client):
    assert call(client, "GET", "/healthz").json()["ok"] is True
    ready = call(client, "GET", "/readyz").json()
    assert ready["ready"] is True and set(ready["models"]) == {"search", "retrieval", "classify", "recommend"}
    assert "shelfops_requests_total" in call(client, "GET", "/metrics").text


def test_shopper_routes_answer_with_the_versions_that_served(client):
    s = call(client, "POST", "/v1/search", json={"query": "red running shoes", "k": 5, "session": "p1"})
    assert s.status_code == 200, s.text
    found = s.json()
    assert len(found["items"]) == 5 and found["versions"] == {"search": "1", "retrieval": "1"}
    assert "rerank;dur=" in s.headers["server-timing"]
    ids = [it["item_id"] for it in found["items"]]
    r = call(client, "POST", "/v1/rerank", json={"query": "red running shoes", "items": ids[::-1]}).json()
    assert sorted(it["item_id"] for it in r["items"]) == sorted(ids)
    scores = [it["score"] for it in r["items"]]
    assert scores == sorted(scores, reverse=True)
    ev = call(client, "POST", "/v1/events", json={"type": "click", "item_id": ids[0],
                                                  "request_id": found["request_id"], "session": "p1"})
    assert ev.status_code == 200 and ev.json()["session_length"] == 1
    batch = call(client, "POST", "/v1/events/batch", json={"events": [
        {"type": "view", "item_id": ids[1], "session": "p1"}, {"type": "add_to_cart", "item_id": ids[1],
                                                                "session": "p1"}]})
    assert batch.status_code == 200, batch.text
    rec = call(client, "POST", "/v1/recommend", json={"session": "p1", "k": 5}).json()
    assert rec["history_length"] == 3 and len(rec["items"]) == 5 and "degraded" not in rec
    cls = call(client, "POST", "/v1/classify", json={"title": "Red Running Shoes, size 9"}).json()
    assert cls["category"] and 0 <= cls["probability"] <= 1 and cls["versions"] == {"classify": "1"}


def test_operator_routes_need_their_token(client):
    assert call(client, "GET", "/v1/traffic").status_code == 401
    traffic = call(client, "GET", "/v1/traffic", headers=ADMIN).json()
    assert any(t["kind"] == "search" for t in traffic["records"])
    assert call(client, "GET", "/v1/dashboard").status_code == 401
    assert call(client, "GET", "/v1/dashboard", headers=ADMIN).json()["ready"] is True
    page = call(client, "GET", "/dashboard", params={"token": TOKEN})
    assert page.status_code == 200 and "<html" in page.text.lower()
    png = call(client, "GET", "/dashboard/files/{name}", "/dashboard/files/pareto.png", headers=ADMIN)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert call(client, "GET", "/dashboard/files/{name}", "/dashboard/files/missing.png",
                headers=ADMIN).status_code == 404


def test_admin_rollout_then_rollback_and_reload(client, models):
    assert call(client, "POST", "/admin/rollout", json={"task": "search", "mode": "shadow"}).status_code == 401
    start = call(client, "POST", "/admin/rollout", headers=ADMIN, json={
        "task": "search", "mode": "canary", "percent": 50, "folder": str(models / "search-b"), "version": "2"})
    assert start.status_code == 200, start.text
    assert start.json()["candidate"] == "2"
    assert call(client, "GET", "/v1/rollout").json()["search"]["candidate"] == "2"
    end = call(client, "POST", "/admin/rollout/end", headers=ADMIN, json={"task": "search", "promote": False})
    assert end.json() == {"task": "search", "promoted": False, "production": "1"}
    again = call(client, "POST", "/admin/reload", headers=ADMIN,
                 json={"task": "classify", "folder": str(models / "classify"), "version": "7"})
    assert again.status_code == 200, again.text
    assert call(client, "GET", "/readyz").json()["models"]["classify"]["version"] == "7"


def test_every_route_is_called():
    """Runs last in this module (pytest keeps file order): each route of the three route
    modules was reached by a test above."""
    routes = {(m, r.path) for mod in (shop, ops, admin) for r in mod.router.routes
              if isinstance(r, APIRoute) for m in r.methods if m != "HEAD"}
    assert routes - CALLED == set(), "routes no fast test calls"
