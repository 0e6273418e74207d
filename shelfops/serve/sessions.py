"""Where the server keeps what several replicas must share: shoppers' live session state
(the items they viewed, clicked, carted, bought: what ``/v1/recommend`` reads) and the log of
served requests (so a feedback event counts for the version that served it, whichever
replica receives the event).

``MemoryState`` is the one-process default. ``RedisState`` puts both in Redis
(``serve.state_url: redis://host:6379/0``), so replicas behind a load balancer, or Ray Serve
replicas, see one shopper's session and one request log: a session is a capped list
(``RPUSH`` + ``LTRIM``) and a served request a JSON string, both with a time to live.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from typing import Protocol

from shelfops.errors import ConfigError


class SharedState(Protocol):
    async def append(self, key: str, item: str) -> int: ...  # session length after the append
    async def history(self, key: str) -> list[str]: ...  # oldest first
    async def length(self, key: str) -> int: ...
    async def remember(self, rid: str, info: dict) -> None: ...
    async def served(self, rids: list[str]) -> list[dict | None]: ...
    async def close(self) -> None: ...


class MemoryState:
    """Sessions and request log in this process; the oldest are dropped past the bounds."""

    def __init__(self, *, session_length: int = 50, max_sessions: int = 1_000_000,
                 request_log: int = 100_000) -> None:
        self.session_length, self.max_sessions, self.request_log = session_length, max_sessions, request_log
        self.sessions: OrderedDict[str, deque] = OrderedDict()
        self.requests: OrderedDict[str, dict] = OrderedDict()

    async def append(self, key: str, item: str) -> int:
        q = self.sessions.get(key)
        if q is None:
            q = self.sessions[key] = deque(maxlen=self.session_length)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(key)
        q.append(item)
        return len(q)

    async def history(self, key: str) -> list[str]:
        return list(self.sessions.get(key, ()))

    async def length(self, key: str) -> int:
        return len(self.sessions.get(key, ()))

    async def remember(self, rid: str, info: dict) -> None:
        self.requests[rid] = info
        while len(self.requests) > self.request_log:
            self.requests.popitem(last=False)

    async def served(self, rids: list[str]) -> list[dict | None]:
        return [self.requests.get(r) for r in rids]

    async def close(self) -> None:
        return None


class RedisState:
    """Sessions and request log in Redis, shared by every replica pointed at the same URL."""

    def __init__(self, url: str, *, session_length: int = 50, session_ttl_s: int = 7 * 86400,
                 request_ttl_s: int = 86400, prefix: str = "shelfops") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.r = aioredis.from_url(url, decode_responses=True)
        self.session_length, self.session_ttl_s, self.request_ttl_s = session_length, session_ttl_s, request_ttl_s
        self.prefix = prefix

    async def ping(self) -> None:
        import redis

        try:
            await self.r.ping()
        except redis.RedisError as e:
            raise ConfigError([f"serve.state_url: Redis at {self.url} does not answer ({e})"]) from e

    async def append(self, key: str, item: str) -> int:
        k = f"{self.prefix}:session:{key}"
        async with self.r.pipeline(transaction=True) as p:
            p.rpush(k, item)
            p.ltrim(k, -self.session_length, -1)
            p.expire(k, self.session_ttl_s)
            p.llen(k)
            *_, n = await p.execute()
        return int(n)

    async def history(self, key: str) -> list[str]:
        return await self.r.lrange(f"{self.prefix}:session:{key}", 0, -1)

    async def length(self, key: str) -> int:
        return int(await self.r.llen(f"{self.prefix}:session:{key}"))

    async def remember(self, rid: str, info: dict) -> None:
        await self.r.set(f"{self.prefix}:request:{rid}", json.dumps(info), ex=self.request_ttl_s)

    async def served(self, rids: list[str]) -> list[dict | None]:
        if not rids:
            return []
        got = await self.r.mget([f"{self.prefix}:request:{r}" for r in rids])
        return [json.loads(g) if g is not None else None for g in got]

    async def close(self) -> None:
        await self.r.aclose()


def shared_state(url: str | None, *, session_length: int = 50, request_log: int = 100_000,
                 session_ttl_s: int = 7 * 86400, request_ttl_s: int = 86400) -> SharedState:
    """``None`` or ``memory://``: this process; ``redis://`` / ``rediss://``: Redis."""
    if not url or url.startswith("memory:"):
        return MemoryState(session_length=session_length, request_log=request_log)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisState(url, session_length=session_length, session_ttl_s=session_ttl_s,
                          request_ttl_s=request_ttl_s)
    raise ConfigError([f"serve.state_url: {url!r} is neither memory:// nor a redis:// URL"])
