"""The Ray gateway's relay: a request carried as data and answered in process by the app, and
what the gateway does when the replica it sent a request to dies with it (sent again when it
may be, else a 503 in the envelope). The replica is faked at the deployment-handle seam; the
Ray exception is Ray's own. The SIGKILL of a real replica is in the slow Ray test."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI, Request
from starlette.requests import Request as StarletteRequest

from shelfops.serve import relay

ray_exceptions = pytest.importorskip("ray.exceptions")


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/search")
    async def search(request: Request) -> dict:
        return {"body": (await request.json()), "query": request.url.query, "client": request.client.host,
                "agent": request.headers.get("user-agent")}

    return app


def test_a_call_is_answered_in_process_with_its_body_query_headers_and_client():
    call = relay.Call("POST", "/v1/search", b"debug=1", ((b"content-type", b"application/json"),
                                                        (b"user-agent", b"probe/1")),
                      b'{"query": "red shoes"}', ("203.0.113.7", 5555))
    reply = asyncio.run(relay.answer(echo_app(), call))
    assert reply.status == 200
    assert json.loads(reply.body) == {"body": {"query": "red shoes"}, "query": "debug=1",
                                      "client": "203.0.113.7", "agent": "probe/1"}
    assert (b"content-type", b"application/json") in reply.headers


@pytest.mark.parametrize("method,path,again", [
    ("GET", "/readyz", True), ("POST", "/v1/search", True), ("POST", "/v1/recommend", True),
    ("POST", "/v1/classify", True), ("POST", "/v1/events", False), ("POST", "/v1/events/batch", False),
    ("POST", "/admin/rollout", False), ("POST", "/admin/reload", False)])
def test_only_what_cannot_count_twice_is_sent_again(method, path, again):
    assert relay.replayable(relay.Call(method, path)) is again


class FakeReplicas:
    """The deployment handle's seam: each ``handle.remote`` takes the next behaviour."""

    def __init__(self, *behaviours) -> None:
        self.behaviours, self.calls = list(behaviours), []
        self.handle = self

    def remote(self, call):
        self.calls.append(call)
        what = self.behaviours.pop(0)

        async def run():
            if what == "dies":
                raise ray_exceptions.ActorDiedError()
            if what == "hangs":
                await asyncio.sleep(30)
            return relay.Reply(200, [(b"content-type", b"application/json")], b'{"ok": true}')

        return run()


def gateway(*behaviours, **limits):
    from shelfops.serve.ray_backend import Gateway

    return Gateway(FakeReplicas(*behaviours), limits, retry_seconds=0.3)


def http(g, method: str, path: str, body: bytes = b"", headers=()) -> relay.Reply:
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "client": ("10.0.0.9", 1),
             "headers": [(b"content-type", b"application/json"), *headers]}
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def go():
        response = await g(StarletteRequest(scope, receive))
        return relay.Reply(response.status_code, response.raw_headers, response.body)

    return asyncio.run(go())


def test_a_search_lost_with_its_replica_is_answered_by_another_and_says_so():
    g = gateway("dies", "answers")
    reply = http(g, "POST", "/v1/search", b'{"query": "shoes"}')
    assert reply.status == 200 and (b"x-shelfops-replayed", b"1") in reply.headers
    assert [c.body for c in g.replica.calls] == [b'{"query": "shoes"}'] * 2
    assert g.replica.calls[0].client == ("10.0.0.9", 1)


def test_a_click_lost_with_its_replica_is_a_503_in_the_envelope_and_not_sent_twice():
    g = gateway("dies")
    reply = http(g, "POST", "/v1/events", b'{"type": "click", "item_id": "a"}')
    assert reply.status == 503 and (b"retry-after", b"1") in reply.headers
    doc = json.loads(reply.body)
    assert doc["code"] == "replica_lost" and "/v1/events" in doc["message"]
    assert len(g.replica.calls) == 1


@pytest.mark.parametrize("second", ["dies", "hangs"])
def test_a_second_loss_or_no_answer_in_time_is_a_503_never_a_hang(second):
    g = gateway("dies", second)
    reply = http(g, "POST", "/v1/search", b'{"query": "shoes"}')
    assert reply.status == 503 and json.loads(reply.body)["code"] == "replica_lost"
    assert (b"retry-after", b"5") in reply.headers


def test_the_doors_stand_in_front_of_the_gateway():
    big = b'{"query": "' + b"x" * 70_000 + b'"}'
    assert http(gateway(), "POST", "/v1/search", big).status == 413
    assert http(gateway(), "POST", "/v1/search", b'{"k": NaN}').status == 400
    g = gateway(*["answers"] * 5, rate_per_second=0.01, rate_burst=2)
    codes = [http(g, "POST", "/v1/search", b'{"query": "a"}').status for _ in range(4)]
    assert codes == [200, 200, 429, 429]  # one bucket per client at the gateway
