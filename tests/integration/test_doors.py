"""Every door of the HTTP API, over raw loopback sockets (h11), against hostile bytes: malformed
bodies are a 4xx in the one error envelope, never a 5xx and never a dropped connection; bodies
over the limit are a 413 whether sent with a Content-Length or chunked; a slow body is a 408; a
flood is a 429 with Retry-After when the rate limit is on."""

from __future__ import annotations

import json
import socket
import time

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shelfops.config.schema import LimitsConfig, ServeConfig
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.doors import Bucket, json_problem, take
from shelfops.serve.server import start_in_thread

TOKEN = "door-token"
HOSTILE = {
    "nan": b'{"query": "x", "k": NaN}',
    "infinity": b'{"query": "x", "k": -Infinity}',
    "huge float": b'{"query": "x", "k": 1e400}',
    "huge int": b'{"query": "x", "k": 1' + b"0" * 3000 + b"}",
    "lone surrogate": b'{"query": "\\ud800"}',
    "surrogate key": b'{"\\udfff": 1}',
    "not utf-8": b'{"query": "\xff\xfe caf\xe9"}',
    "utf-16": '{"query": "x"}'.encode("utf-16"),
    "duplicate keys": b'{"query": "a", "query": "b"}',
    "truncated": b'{"query": "x',
    "deep": b"[" * 1500 + b"]" * 1500,
    "array": b"[1, 2, 3]",
    "string": b'"query"',
    "null": b"null",
    "empty": b"",
    "nul bytes": b'{"query": "\x00\x00"}',
    "control chars": b'{"query": "a\x01b"}',
    "wrong types": b'{"query": {"$ne": 1}, "k": "5", "events": "x", "task": 7, "type": []}',
}


@pytest.fixture(scope="module")
def door():
    limits = LimitsConfig(max_body_bytes=4096, body_seconds=1.0)
    running = start_in_thread(create_app(ServeSettings(models={}, admin_token=TOKEN,
                                                       serve=ServeConfig(limits=limits))))
    host, port = running.url.removeprefix("http://").split(":")
    yield running, (host, int(port))
    running.stop()


def routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the API documents (its OpenAPI document)."""
    return [(m.upper(), path.replace("{name}", "x")) for path, ops in app.openapi()["paths"].items() for m in ops]


class Conn:
    """One keep-alive HTTP/1.1 connection over a raw socket, framed by h11."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=15)
        self.h = h11.Connection(h11.CLIENT)

    def send(self, method: str, path: str, body: bytes | None = None, *, ctype: bytes = b"application/json",
             chunked: bool = False, headers: list | None = None) -> None:
        hs = [(b"host", b"test"), (b"authorization", f"Bearer {TOKEN}".encode()), *(headers or [])]
        if body is not None:
            hs += [(b"content-type", ctype),
                   (b"transfer-encoding", b"chunked") if chunked else (b"content-length", str(len(body)).encode())]
        out = self.h.send(h11.Request(method=method, target=path, headers=hs))
        if body is not None:
            if chunked:
                for i in range(0, len(body), 1000):
                    out += self.h.send(h11.Data(data=body[i:i + 1000]))
            else:
                out += self.h.send(h11.Data(data=body))
        out += self.h.send(h11.EndOfMessage())
        self.sock.sendall(out)

    def response(self) -> tuple[int, dict, bytes]:
        status, headers, body = None, {}, b""
        while True:
            ev = self.h.next_event()
            if ev is h11.NEED_DATA:
                data = self.sock.recv(65536)
                assert data, "the server dropped the connection"
                self.h.receive_data(data)
            elif isinstance(ev, h11.Response):
                status, headers = ev.status_code, {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                if self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
                    self.h.start_next_cycle()
                return status, headers, body

    def request(self, *a, **kw) -> tuple[int, dict, bytes]:
        self.send(*a, **kw)
        return self.response()

    def close(self) -> None:
        self.sock.close()


def assert_refusal(status: int, body: bytes, what: str) -> dict:
    assert 400 <= status < 500, (what, status, body[:300])
    doc = json.loads(body)
    assert set(doc) >= {"code", "message"} and doc["message"], (what, doc)
    return doc


def test_every_route_answers_hostile_bodies_with_a_4xx_and_keeps_the_connection(door):
    running, addr = door
    posts = [p for m, p in routes(running.server.config.app) if m == "POST"]
    assert {"/v1/search", "/v1/events", "/v1/events/batch", "/admin/reload"} <= set(posts)
    seen = {}
    for path in posts:
        c = Conn(addr)
        for what, body in HOSTILE.items():
            for chunked in (False, True):
                status, _, text = c.request("POST", path, body, chunked=chunked)
                doc = assert_refusal(status, text, f"{path} {what} chunked={chunked}")
                seen[what] = doc["code"]
            # the same connection still serves the next request
            assert c.request("GET", "/healthz")[0] == 200, f"{path} after {what}"
        for ctype in (b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x"):
            status, _, text = c.request("POST", path, b'{"query": "x"}', ctype=ctype)
            assert status == 415 and assert_refusal(status, text, ctype)["code"] == "unsupported_media_type"
        c.close()
    # each refusal says what was wrong, in words that name it
    assert seen["nan"] == seen["lone surrogate"] == seen["not utf-8"] == seen["duplicate keys"] == "invalid_json"
    assert seen["wrong types"] == "invalid_request"


def test_refusals_name_what_and_where(door):
    _, addr = door
    c = Conn(addr)
    expect = {"nan": "NaN", "lone surrogate": "query", "not utf-8": "byte 11 is 0xff", "duplicate keys": "'query'",
              "huge int": "3001 digits", "huge float": "1e400", "truncated": "line 1", "deep": "nests deeper"}
    for what, needle in expect.items():
        status, _, body = c.request("POST", "/v1/search", HOSTILE[what])
        assert status == 400 and needle in json.loads(body)["message"], (what, body)
    status, _, body = c.request("POST", "/v1/search", b'{"query": "x", "k": 0}')
    doc = json.loads(body)
    assert status == 422 and doc["code"] == "invalid_request" and doc["errors"][0]["field"] == "body.k"
    status, _, body = c.request("GET", "/no/such/route")
    assert status == 404 and json.loads(body)["code"] == "not_found"
    status, headers, body = c.request("DELETE", "/v1/search")
    assert status == 405 and json.loads(body)["code"] == "method_not_allowed" and "allow" in headers
    c.close()


def test_bodies_over_the_limit_are_413_with_or_without_a_length(door):
    running, addr = door
    big = b'{"query": "' + b"x" * 10_000 + b'"}'
    c = Conn(addr)
    for chunked in (False, True):
        status, _, body = c.request("POST", "/v1/search", big, chunked=chunked)
        doc = assert_refusal(status, body, f"chunked={chunked}")
        assert status == 413 and doc["code"] == "body_too_large" and doc["limit"] == 4096
    c.close()
    # httpx's streaming body (chunked) gets the same answer as its sized one
    r = httpx.post(running.url + "/v1/search", content=iter([big[:5000], big[5000:]]),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "4096" in r.json()["message"]


def test_a_body_slower_than_the_limit_gets_408(door):
    _, addr = door
    s = socket.create_connection(addr, timeout=15)
    s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: 40\r\n\r\n{\"query\":")
    t0 = time.monotonic()
    reply = b""
    while chunk := s.recv(65536):  # the server closes the connection after a 408
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.1 408") and b"body_timeout" in reply and b"connection: close" in reply
    assert 0.9 < time.monotonic() - t0 < 10


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.one_of(st.binary(max_size=300),
                      st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                                   lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch,
                                                                                         max_size=4),
                                   max_leaves=12).map(lambda o: json.dumps(o).encode())),
       path=st.sampled_from(["/v1/search", "/v1/recommend", "/v1/classify", "/v1/events", "/v1/events/batch",
                             "/v1/rerank", "/admin/reload", "/admin/rollout"]))
def test_random_bytes_never_get_a_5xx(door, body, path):
    _, addr = door
    c = Conn(addr)
    status, _, text = c.request("POST", path, body)
    assert status < 500, (path, body[:100], text[:200])
    assert c.request("GET", "/healthz")[0] == 200
    c.close()


def test_floods_get_429_with_retry_after_when_the_limit_is_on():
    limits = LimitsConfig(rate_per_second=2.0, rate_burst=5)
    running = start_in_thread(create_app(ServeSettings(models={}, serve=ServeConfig(limits=limits))))
    try:
        with httpx.Client(base_url=running.url, timeout=10) as c:
            codes = [c.post("/v1/classify", json={"title": "x"}).status_code for _ in range(12)]
            assert codes[:5] == [503] * 5  # the burst passes (and finds no model)
            assert codes.count(429) >= 6
            r = c.post("/v1/classify", json={"title": "x"})
            assert r.status_code == 429 and r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
            assert c.get("/healthz").status_code == 200  # probes are never limited
            assert 'status="429"' in c.get("/metrics").text  # refusals are counted
    finally:
        running.stop()


def test_token_bucket_refills_at_its_rate():
    b = Bucket(tokens=2.0, at=0.0)
    assert [take(b, 0.0, rate=1.0, burst=2) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert take(b, 0.5, rate=1.0, burst=2) == pytest.approx(0.5)  # half a token back: wait the other half
    assert take(b, 1.0, rate=1.0, burst=2) == 0.0
    assert take(b, 100.0, rate=1.0, burst=2) == 0.0 and b.tokens == pytest.approx(1.0)  # capped at the burst


@pytest.mark.parametrize("body,fine", [(b'{"a": [1, 2.5, "\\ud83d\\ude00"]}', True), (b"", True),
                                        (b'{"a": NaN}', False), (b'{"a": 1, "a": 2}', False),
                                        (b'"\\udc00"', False), (b"\xc3\x28", False)])
def test_strict_json(body, fine):
    assert (json_problem(body) is None) == fine
