"""A request as plain data, carried from a front process to a model replica and answered there
by the app itself, in process (no second HTTP server): what ``serve.ray_backend``'s gateway
sends over a Ray deployment handle.

Why a gateway at all: when a replica dies, the requests in flight on it are lost. Behind Ray's
own HTTP proxy they come back as Ray's plain-text 500; behind the gateway each one is either
sent again to a live replica (when sending it twice cannot count anything twice: reads and
the model routes) or answered with a 503 in the shelfops error envelope with ``Retry-After``
(a feedback event: the replica may have stored it before it died).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shelfops.serve.doors import refusal

# Sending these again cannot count anything twice: reads, and the routes that only ask a
# model (a retried search logs one more served request, which no click will ever name).
REPLAYABLE_POSTS = frozenset({"/v1/search", "/v1/recommend", "/v1/classify", "/v1/rerank"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    client: tuple[str, int] | None = None


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


def replayable(call: Call) -> bool:
    """May ``call`` be sent to another replica after the first died with it in flight?"""
    return call.method in READS or (call.method == "POST" and call.path in REPLAYABLE_POSTS)


def unavailable(message: str, retry_after_s: int = 1) -> Reply:
    """The 503 a client gets for a request lost with its replica: the envelope, Retry-After."""
    headers, body = refusal("replica_lost", message, [(b"retry-after", str(retry_after_s).encode())])
    return Reply(503, headers, body)


def scope_of(call: Call) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
            "method": call.method, "path": call.path, "raw_path": call.path.encode(),
            "query_string": call.query, "root_path": "", "headers": list(call.headers),
            "client": call.client, "server": ("shelfops", 0)}


async def answer(app: Callable, call: Call) -> Reply:
    """Run ``call`` through the ASGI ``app`` in this process and collect its whole answer."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": call.body, "more_body": False}
        await asyncio.Event().wait()  # as a connected client: it waits (collect stops at the answer)
        return {"type": "http.disconnect"}

    return await collect(app, scope_of(call), receive)


async def collect(app: Callable, scope: dict[str, Any], receive: Callable) -> Reply:
    """Run the ASGI ``app`` on ``scope`` and ``receive``; its whole answer as one Reply."""
    reply = Reply(500)
    parts: list[bytes] = []

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            reply.status, reply.headers = msg["status"], [(bytes(k), bytes(v)) for k, v in msg.get("headers", [])]
        elif msg["type"] == "http.response.body":
            parts.append(bytes(msg.get("body", b"")))

    await app(scope, receive, send)
    reply.body = b"".join(parts)
    return reply
