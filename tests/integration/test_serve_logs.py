"""The server's access log and the dashboard's read token, over real loopback HTTP (uvicorn)
with no trained model (a stand-in recommender answers /v1/recommend): one record per request
on ``shelfops.access`` with the id the response carries; no token in any log line; and the
dashboard open without tokens, behind the read (or admin) token otherwise, in a browser too."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import httpx
import pytest

from shelfops import logs
from shelfops.config.schema import ServeConfig
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.host import Slot
from shelfops.serve.server import start_in_thread

ADMIN, READ = "adm-0a1b2c3d4e", "read-9f8e7d6c5b"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


class Recommender:
    """A stand-in model slot's batcher: k made-up items for any history."""

    async def submit(self, item):
        _, k = item
        return [(f"item-{i}", 1.0 - i / 10) for i in range(k)]

    async def close(self) -> None:
        pass


def serve(tmp_path: Path, **settings):
    reports = tmp_path / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "drift.png").write_bytes(PNG)
    app = create_app(ServeSettings(models={}, report_dir=reports, **settings))
    app.state.shelfops.host.slots["recommend"] = Slot("recommend", "7", tmp_path, Recommender(), None)
    app.add_api_route("/v1/boom", boom)  # an unexpected error: the 500 is logged with its id too
    return start_in_thread(app)


async def boom():
    raise RuntimeError("a bug")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = serve(tmp_path_factory.mktemp("logs"), admin_token=ADMIN, read_token=READ,
                    serve=ServeConfig(access_log=True))
    yield running
    running.stop()


def access(caplog) -> dict[str, logging.LogRecord]:
    return {r.request_id: r for r in caplog.records if r.name == logs.ACCESS}


def test_each_request_is_one_access_record_with_the_id_and_version_it_answered_with(server, caplog):
    caplog.set_level(logging.INFO, logger=logs.ACCESS)
    c = httpx.Client(base_url=server.url, timeout=30)
    given = c.post("/v1/recommend", json={"session": "s1", "k": 3}, headers={"x-request-id": "trace-42.a"})
    made = c.post("/v1/recommend", json={"session": "s1", "k": 2})
    odd = c.get("/healthz", headers={"x-request-id": b"not a sane id; <script>" + b"x" * 200 + b"\xe9"})
    refused = c.get("/v1/dashboard", params={"token": "wrong", "k": "1"})
    failed = c.get("/v1/boom", headers={"x-request-id": "boom-1"})
    assert given.status_code == made.status_code == odd.status_code == 200 and refused.status_code == 401
    assert failed.status_code == 500 and failed.json()["code"] == "internal"
    # the caller's id is used and echoed, and a search/recommend names it to feedback events
    assert given.headers["x-request-id"] == given.json()["request_id"] == "trace-42.a"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert made.json()["request_id"] == made.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])  # an id that is not sane is replaced
    got = access(caplog)
    for r in (given, made, odd, refused, failed):
        rec = got[r.headers["x-request-id"]]
        assert rec.levelno == logging.INFO and rec.status == r.status_code and rec.method == r.request.method
        assert rec.path == r.request.url.path and rec.client == "127.0.0.1"
        assert isinstance(rec.duration_ms, float) and rec.duration_ms >= 0
        assert rec.version == r.headers.get("x-shelfops-version")
    assert got["trace-42.a"].version == "7" and got["trace-42.a"].path == "/v1/recommend"
    assert got[refused.headers["x-request-id"]].path == "/v1/dashboard"  # never the query string
    assert got["trace-42.a"].getMessage() == "POST /v1/recommend 200"


def test_no_access_record_unless_asked(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=logs.ACCESS)
    quiet = serve(tmp_path)
    try:
        assert httpx.get(quiet.url + "/healthz").headers["x-request-id"]
    finally:
        quiet.stop()
    assert not access(caplog)


def test_no_token_reaches_any_log_line(server, restore_logging, capsys):
    logs.setup("debug", json=True)  # everything: ours, uvicorn's, httpx's (which logs URLs)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.get("/v1/traffic", headers={"Authorization": f"Bearer {ADMIN}"}).raise_for_status()
        c.get("/v1/dashboard", headers={"Authorization": f"Bearer {READ}"}).raise_for_status()
        assert c.get("/dashboard", params={"token": READ}).status_code == 303
        c.get("/dashboard").raise_for_status()  # with the cookie
    with httpx.Client(base_url=server.url, timeout=30) as c:  # no cookie
        assert c.get("/v1/dashboard", params={"token": ADMIN},
                     headers={"Authorization": f"Bearer wrong-{ADMIN}"}).status_code == 401
        c.post("/v1/recommend", json={"session": "s2", "k": 2},
               headers={"Authorization": f"Bearer {ADMIN}"}).raise_for_status()
    err = capsys.readouterr().err
    records = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert sum(r["logger"] == logs.ACCESS for r in records) == 6
    assert any("token=***" in r["msg"] for r in records if r["logger"] == "httpx")  # redacted, not absent
    assert ADMIN not in err and READ not in err


# -- the dashboard's read token ---------------------------------------------------------------

DASHBOARD = ("/dashboard", "/v1/dashboard", "/dashboard/files/drift.png")


def test_with_tokens_the_dashboard_needs_one(server):
    for path in DASHBOARD:
        r = httpx.get(server.url + path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert r.json()["code"] == "unauthorized" and "/dashboard?token=" in r.json()["message"]
        for token in (READ, ADMIN):  # the admin token opens what the read token opens
            ok = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200, (path, ok.text[:200])
        assert httpx.get(server.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # the read token is no admin token
    assert httpx.get(server.url + "/v1/traffic", headers={"Authorization": f"Bearer {READ}"}).status_code == 401


def test_the_link_with_the_token_sets_a_cookie_that_opens_the_dashboard_only(server):
    c = httpx.Client(base_url=server.url, timeout=30)
    assert c.get("/dashboard", params={"token": "wrong"}).status_code == 401
    r = c.get("/dashboard", params={"token": READ})
    assert r.status_code == 303 and r.headers["location"] == "dashboard"  # the token leaves the address bar
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert READ not in r.headers["set-cookie"]  # a keyed hash of the token, not the token
    page = c.get("/dashboard")
    assert page.status_code == 200 and "shelfops dashboard" in page.text
    assert c.get("/v1/dashboard").json()["ready"] is True
    assert c.get("/dashboard/files/drift.png").content == PNG
    assert c.get("/v1/traffic").status_code == 401  # the cookie opens no admin route
    # the cookie made from the admin token works the same
    c2 = httpx.Client(base_url=server.url, timeout=30)
    assert c2.get("/dashboard", params={"token": ADMIN}).status_code == 303
    assert c2.get("/v1/dashboard").status_code == 200
    # a forged cookie does not
    forged = httpx.get(server.url + "/v1/dashboard", cookies={"shelfops_read": READ})
    assert forged.status_code == 401


@pytest.mark.parametrize("tokens", [{}, {"admin_token": ADMIN}], ids=["no tokens", "admin token only"])
def test_open_without_tokens_and_the_admin_token_is_the_read_token_without_one(tmp_path, tokens):
    running = serve(tmp_path, **tokens)
    try:
        for path in DASHBOARD:
            r = httpx.get(running.url + path)
            assert r.status_code == (401 if tokens else 200), path
            r = httpx.get(running.url + path, headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200, path
            assert httpx.get(running.url + path, headers={"Authorization": f"Bearer {READ}"}).status_code == (
                401 if tokens else 200)
        if not tokens:  # nothing to check a token against: the page as it is
            assert httpx.get(running.url + "/dashboard", params={"token": "x"}).status_code == 200
    finally:
        running.stop()


@pytest.mark.slow
def test_the_dashboard_works_in_a_browser_behind_the_read_token(server):
    """Debian's chromium, driven by Playwright: the token link, then the page's own fetches and
    its chart image with the cookie alone."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                    args=["--no-sandbox"])
        profile = browser.new_context()
        page = profile.new_page()
        assert page.goto(server.url + "/dashboard").status == 401
        page.goto(server.url + f"/dashboard?token={READ}")
        assert page.url == server.url + "/dashboard"  # no token in the address bar or the history
        expect(page.locator("#status")).to_contain_text("ready", timeout=15_000)
        img = page.locator("#chart-list img").first
        expect(img).to_have_attribute("src", "/dashboard/files/drift.png")
        page.wait_for_function("document.querySelector('#chart-list img').naturalWidth > 0", timeout=10_000)
        fresh = profile.new_page()  # another tab of the same browser profile: the cookie goes along
        fresh.goto(server.url + "/dashboard")
        expect(fresh.locator("#status")).to_contain_text("ready", timeout=15_000)
        other = browser.new_context().new_page()  # another browser profile: no cookie, no dashboard
        assert other.goto(server.url + "/dashboard").status == 401
        browser.close()
