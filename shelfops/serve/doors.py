"""The server's doors: what every request passes before a route sees it, and the one error
envelope every refusal uses.

A request body is read here, whole, up to ``max_body_bytes`` (the 413 names the limit whether
the body came with a Content-Length or chunked), within ``body_seconds`` (a body that trickles
in slower gets a 408), and parsed strictly: UTF-8 only, no lone UTF-16 surrogate, no ``NaN`` or
``Infinity`` (not JSON, RFC 8259), no duplicate key (which value would count?), no number of
more than 100 digits, bounded nesting. Each refusal is a 4xx whose message says what and where;
the body is then handed on unchanged. A JSON route sent another content type gets a 415. With
``rate_per_second`` set, each client (its address, or the first X-Forwarded-For hop when the
server sits behind a proxy that sets it) has a token bucket of ``rate_burst`` requests; an
empty bucket is a 429 with Retry-After.

FastAPI's own refusals (422 validation, 404, 405) and any unexpected exception (500, logged
with a reference, nothing of the input echoed) use the same envelope as ShelfopsError:
``{"code": ..., "message": ...}`` plus ``errors`` (field, message) for validation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shelfops.config.schema import LimitsConfig
from shelfops.errors import ShelfopsError

log = logging.getLogger("shelfops.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_DIGITS = 100  # an id or a count never needs more; Python refuses > 4,300 with a ValueError
MAX_DEPTH = 32  # our deepest body (events batch) nests 3 deep
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Refused(ValueError):
    """A body the strict parser will not accept; the message says why and where."""


def envelope(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The one error body: a stable code, a sentence, and details; every string made safe to
    encode (a client's lone surrogate must not turn a 4xx into a 500)."""
    return _safe({"code": code, "message": message, **extra})


def _safe(x: Any) -> Any:
    if isinstance(x, str):
        return x.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(x, dict):
        return {_safe(str(k)): _safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


# -- strict JSON ------------------------------------------------------------------------------

def _constant(name: str) -> Any:
    raise Refused(f"{name} is not a JSON number; send a finite number or null")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Refused(f"the key {k!r} appears twice in one object")
        out[k] = v
    return out


def _int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_DIGITS:
        raise Refused(f"a number of {len(s)} digits; at most {MAX_DIGITS} are accepted")
    return int(s)


def _float(s: str) -> float:
    f = float(s)
    if not math.isfinite(f):
        raise Refused(f"the number {s[:40]} is out of range for a 64-bit float")
    return f


def _walk(x: Any, where: str, depth: int) -> None:
    """Lone surrogates (JSON escapes \\ud800-\\udfff unpaired) and nesting deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise Refused(f"the body nests deeper than {MAX_DEPTH} levels at {where or 'the top'}")
    if isinstance(x, str):
        try:
            x.encode("utf-8")
        except UnicodeEncodeError as e:
            raise Refused(f"{where or 'the body'} holds a lone UTF-16 surrogate at character {e.start}; "
                          "text must be valid Unicode") from None
    elif isinstance(x, dict):
        for k, v in x.items():
            _walk(k, f"a key in {where or 'the body'}", depth + 1)
            _walk(v, f"{where}.{k}" if where else k, depth + 1)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _walk(v, f"{where}[{i}]", depth + 1)


def json_problem(body: bytes) -> str | None:
    """Why ``body`` is not acceptable JSON, or None when it is (an empty body is left to the
    route, whose validation names the missing field)."""
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"the body is not UTF-8: byte {e.start} is 0x{body[e.start]:02x}"
    try:
        obj = json.loads(text, parse_constant=_constant, object_pairs_hook=_pairs, parse_int=_int,
                         parse_float=_float)
        _walk(obj, "", 0)
    except Refused as e:
        return str(e)
    except json.JSONDecodeError as e:
        return f"the body is not JSON: {e.msg} at line {e.lineno}, column {e.colno}"
    except RecursionError:
        return f"the body nests deeper than {MAX_DEPTH} levels"
    return None


# -- rate limit -------------------------------------------------------------------------------

@dataclass
class Bucket:
    tokens: float
    at: float


def take(bucket: Bucket, now: float, rate: float, burst: int) -> float:
    """Refill ``bucket`` at ``rate`` tokens/s up to ``burst`` and take one token: 0.0 when
    allowed, else the seconds until a token is back (the Retry-After). Pure but for ``bucket``."""
    bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
    bucket.at = now
    if bucket.tokens >= 1.0:
        bucket.tokens -= 1.0
        return 0.0
    return (1.0 - bucket.tokens) / rate


@dataclass
class RateLimiter:
    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, Bucket] = field(default_factory=dict)
    max_clients: int = 100_000  # the oldest buckets are forgotten beyond this (a full bucket again)

    def wait(self, client: str) -> float:
        now = self.clock()
        b = self.buckets.get(client)
        if b is None:
            if len(self.buckets) >= self.max_clients:
                for stale in sorted(self.buckets, key=lambda c: self.buckets[c].at)[: self.max_clients // 10]:
                    del self.buckets[stale]
            b = self.buckets[client] = Bucket(float(self.burst), now)
        return take(b, now, self.rate, self.burst)


def client_of(scope: Scope, trust_forwarded: bool) -> str:
    if trust_forwarded:
        for k, v in scope.get("headers", []):
            if k == b"x-forwarded-for":
                return v.split(b",")[0].strip().decode("latin-1")
    c = scope.get("client")
    return c[0] if c else "unknown"


# -- the middleware ---------------------------------------------------------------------------

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes are never rate limited


class Doors:
    """ASGI middleware in front of the whole app (outside FastAPI's own)."""

    def __init__(self, app: Callable, limits: LimitsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.limits = app, limits
        self.limiter = (RateLimiter(limits.rate_per_second, limits.rate_burst, clock)
                        if limits.rate_per_second else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lim, path = self.limits, scope.get("path", "")
        if self.limiter is not None and path not in EXEMPT:
            wait = self.limiter.wait(client_of(scope, lim.trust_forwarded))
            if wait > 0:
                await _refuse(send, 429, "rate_limited",
                              f"more than {lim.rate_per_second:g} requests/s (burst {lim.rate_burst}) "
                              f"from this client; retry in {wait:.1f} s",
                              headers=[(b"retry-after", str(max(1, math.ceil(wait))).encode())])
                return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        size = headers.get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > lim.max_body_bytes):
            if not size.isdigit():
                await _refuse(send, 400, "invalid_body", "the Content-Length header is not a number")
            else:
                await _too_large(send, f"{int(size)} bytes", lim.max_body_bytes)
            return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype and ctype != b"application/json" and not ctype.endswith(b"+json"):
            await _refuse(send, 415, "unsupported_media_type",
                          f"the body is {ctype.decode('latin-1')!r}; send application/json")
            return
        try:
            body = await asyncio.wait_for(_read(receive, lim.max_body_bytes), lim.body_seconds)
        except TimeoutError:
            await _refuse(send, 408, "body_timeout", f"the body did not arrive within {lim.body_seconds:g} s",
                          headers=[(b"connection", b"close")])
            return
        except _Disconnected:
            return
        if body is None:
            await _too_large(send, "chunked and over the limit", lim.max_body_bytes)
            return
        problem = json_problem(body)
        if problem:
            await _refuse(send, 400, "invalid_json", problem)
            return
        await self.app(scope, _replay(body, receive), send)


class _Disconnected(Exception):
    pass


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes (the rest is not read)."""
    chunks, n = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Disconnected
        chunk = msg.get("body", b"")
        n += len(chunk)
        if n > limit:
            return None
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then whatever the client does next (a disconnect)

    return again


async def _too_large(send: Send, what: str, limit: int) -> None:
    await _refuse(send, 413, "body_too_large", f"the request body is {what}; the limit is {limit} bytes",
                  limit=limit)


def refusal(code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None,
            **extra: Any) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A refusal's raw headers and body, in the envelope (for senders below FastAPI)."""
    body = json.dumps(envelope(code, message, **extra)).encode()
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *(headers or [])], body


async def _refuse(send: Send, status: int, code: str, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> None:
    raw_headers, body = refusal(code, message, headers, **extra)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


# -- FastAPI's own refusals, in the same envelope ---------------------------------------------

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def install(app: FastAPI, limits: LimitsConfig) -> None:
    """Put the doors in front of ``app``, and every refusal (ours, FastAPI's, unexpected ones)
    into the one envelope."""

    @app.exception_handler(ShelfopsError)
    async def ours(request: Request, e: ShelfopsError) -> JSONResponse:
        # a 401 says which scheme would be accepted (RFC 9110): a bearer token
        headers = {"www-authenticate": "Bearer"} if e.http_status == 401 else None
        return JSONResponse(envelope(**e.to_dict()), status_code=e.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", ""),
                   "type": err.get("type", "")} for err in e.errors()]
        message = "; ".join(f"{x['field']}: {x['message']}" for x in errors[:5]) or "invalid request"
        return JSONResponse(envelope("invalid_request", message, errors=errors), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(e.status_code, "http_error")
        return JSONResponse(envelope(code, str(e.detail)), status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        rid = getattr(request.state, "request_id", None)  # (serve.app's middleware)
        log.exception("internal error %s on %s %s", ref, request.method, request.url.path,
                      extra={"request_id": rid})
        return JSONResponse(envelope("internal", f"internal error (reference {ref}); the server log has it"),
                            status_code=500, headers={"x-request-id": rid} if rid else None)

    app.add_middleware(Doors, limits=limits)
