"""Where the server keeps what several replicas must share: shoppers' live session state
(the items they viewed, clicked, carted, bought: what ``/v1/recommend`` reads) and the log of
served requests (so a feedback event counts for the version that served it, whichever
replica receives the event), and an interleaving experiment's credits and wins/losses (so a
click counts once for the ranker that contributed the item, whichever replica serves it).

``MemoryState`` is the one-process default. ``RedisState`` puts both in Redis
(``serve.state_url: redis://host:6379/0``), so replicas behind a load balancer, or Ray Serve
replicas, see one shopper's session and one request log: a session is a capped list
(``RPUSH`` + ``LTRIM``) and a served request a JSON string, both with a time to live.

Redis can restart while traffic flows. ``Guarded`` bounds every call (``timeout_s``) and turns
a failure into :class:`DependencyUnavailable` naming the store: searches keep answering (what
they served is remembered in this process until the store is back, so a later click still
counts), recommendations fall back to the request's own context and say so, events are refused
with a 503 the client can retry, and ``/readyz`` names the store and since when it is down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from typing import Protocol

from shelfops import redact
from shelfops.errors import ConfigError, DependencyUnavailable


class SharedState(Protocol):
    async def append(self, key: str, item: str) -> int: ...  # session length after the append
    async def history(self, key: str) -> list[str]: ...  # oldest first
    async def length(self, key: str) -> int: ...
    async def remember(self, rid: str, info: dict) -> bool: ...  # False: kept only in this process
    async def served(self, rids: list[str]) -> list[dict | None]: ...
    # interleaving: a click credited to ``team`` of request ``rid``; every team's clicks after it
    async def credit(self, rid: str, team: str) -> dict[str, int]: ...
    async def count(self, key: str, delta: dict[str, int]) -> None: ...  # add to named counters
    async def counts(self, key: str) -> dict[str, int]: ...
    async def forget(self, key: str) -> None: ...  # drop named counters
    async def close(self) -> None: ...
    def status(self) -> dict: ...  # {"name", "ok", ...} for /readyz


class MemoryState:
    """Sessions and request log in this process; the oldest are dropped past the bounds."""

    def __init__(self, *, session_length: int = 50, max_sessions: int = 1_000_000,
                 request_log: int = 100_000) -> None:
        self.session_length, self.max_sessions, self.request_log = session_length, max_sessions, request_log
        self.sessions: OrderedDict[str, deque] = OrderedDict()
        self.requests: OrderedDict[str, dict] = OrderedDict()
        self.credits: OrderedDict[str, dict[str, int]] = OrderedDict()
        self.counters: dict[str, dict[str, int]] = {}

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

    async def remember(self, rid: str, info: dict) -> bool:
        self.requests[rid] = info
        while len(self.requests) > self.request_log:
            self.requests.popitem(last=False)
        return True

    async def served(self, rids: list[str]) -> list[dict | None]:
        return [self.requests.get(r) for r in rids]

    async def credit(self, rid: str, team: str) -> dict[str, int]:
        c = self.credits.setdefault(rid, {})
        c[team] = c.get(team, 0) + 1
        while len(self.credits) > self.request_log:
            self.credits.popitem(last=False)
        return dict(c)

    async def count(self, key: str, delta: dict[str, int]) -> None:
        c = self.counters.setdefault(key, {})
        for k, v in delta.items():
            c[k] = c.get(k, 0) + v

    async def counts(self, key: str) -> dict[str, int]:
        return dict(self.counters.get(key, {}))

    async def forget(self, key: str) -> None:
        self.counters.pop(key, None)

    async def close(self) -> None:
        return None

    def status(self) -> dict:
        return {"name": "this process", "ok": True}


class RedisState:
    """Sessions and request log in Redis, shared by every replica pointed at the same URL."""

    def __init__(self, url: str, *, session_length: int = 50, session_ttl_s: int = 7 * 86400,
                 request_ttl_s: int = 86400, prefix: str = "shelfops", timeout_s: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self.url = url
        # bounded: a Redis that stopped answering costs a request at most this, never a hang
        self.r = aioredis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                                   socket_connect_timeout=timeout_s)
        self.session_length, self.session_ttl_s, self.request_ttl_s = session_length, session_ttl_s, request_ttl_s
        self.prefix = prefix

    async def ping(self) -> None:
        import redis

        try:
            await self.r.ping()
        except redis.RedisError as e:
            raise ConfigError([f"serve.state_url: Redis at {redact.url(self.url)} does not answer ({e})"]) from e

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

    async def credit(self, rid: str, team: str) -> dict[str, int]:
        k = f"{self.prefix}:credit:{rid}"
        async with self.r.pipeline(transaction=True) as p:  # the increment and the read are one step
            p.hincrby(k, team, 1)
            p.expire(k, self.request_ttl_s)
            p.hgetall(k)
            *_, got = await p.execute()
        return {t: int(n) for t, n in got.items()}

    async def count(self, key: str, delta: dict[str, int]) -> None:
        if delta:
            async with self.r.pipeline(transaction=True) as p:
                for f, n in delta.items():
                    p.hincrby(f"{self.prefix}:counts:{key}", f, n)
                await p.execute()

    async def counts(self, key: str) -> dict[str, int]:
        return {f: int(n) for f, n in (await self.r.hgetall(f"{self.prefix}:counts:{key}")).items()}

    async def forget(self, key: str) -> None:
        await self.r.delete(f"{self.prefix}:counts:{key}")

    async def close(self) -> None:
        await self.r.aclose()


class Guarded:
    """A shared store that can fail, made safe to serve from (see the module's docstring)."""

    def __init__(self, inner: RedisState, *, timeout_s: float = 0.5, fallback_requests: int = 10_000,
                 clock=time.monotonic) -> None:
        self.inner, self.timeout_s, self.clock = inner, timeout_s, clock
        self.name = f"Redis at {redact.url(inner.url)}"
        self.local = MemoryState(request_log=fallback_requests)  # what was served while it was down
        self.down_since: float | None = None
        self.error: str | None = None
        self.failures = 0

    async def _call(self, op: str, *args):
        try:
            out = await asyncio.wait_for(getattr(self.inner, op)(*args), self.timeout_s)
        except Exception as e:  # any failure of the store's client: the store is unavailable
            self.failures += 1
            self.error = f"{type(e).__name__}: {e}"[:300]
            if self.down_since is None:
                self.down_since = self.clock()
            raise DependencyUnavailable(f"{self.name} did not answer ({self.error}); retry shortly",
                                        dependency="state") from e
        self.down_since = self.error = None
        return out

    async def ping(self) -> None:
        await self.inner.ping()

    async def append(self, key: str, item: str) -> int:
        return await self._call("append", key, item)

    async def history(self, key: str) -> list[str]:
        return await self._call("history", key)

    async def length(self, key: str) -> int:
        return await self._call("length", key)

    async def remember(self, rid: str, info: dict) -> bool:
        """True when the shared store has it; False when only this process does (store down)."""
        try:
            await self._call("remember", rid, info)
            return True
        except DependencyUnavailable:
            await self.local.remember(rid, info)
            return False

    async def served(self, rids: list[str]) -> list[dict | None]:
        got = await self._call("served", rids)
        here = await self.local.served(rids)  # what was served while the store was down
        return [g if g is not None else h for g, h in zip(got, here)]

    async def credit(self, rid: str, team: str) -> dict[str, int]:
        return await self._call("credit", rid, team)

    async def count(self, key: str, delta: dict[str, int]) -> None:
        await self._call("count", key, delta)

    async def counts(self, key: str) -> dict[str, int]:
        return await self._call("counts", key)

    async def forget(self, key: str) -> None:
        await self._call("forget", key)

    async def close(self) -> None:
        await self.inner.close()

    def status(self) -> dict:
        if self.down_since is None:
            return {"name": self.name, "ok": True, "failures": self.failures}
        return {"name": self.name, "ok": False, "down_for_s": round(self.clock() - self.down_since, 1),
                "error": self.error, "failures": self.failures}


def shared_state(url: str | None, *, session_length: int = 50, request_log: int = 100_000,
                 session_ttl_s: int = 7 * 86400, request_ttl_s: int = 86400,
                 timeout_s: float = 0.5) -> SharedState:
    """``None`` or ``memory://``: this process; ``redis://`` / ``rediss://``: Redis, guarded."""
    if not url or url.startswith("memory:"):
        return MemoryState(session_length=session_length, request_log=request_log)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return Guarded(RedisState(url, session_length=session_length, session_ttl_s=session_ttl_s,
                                  request_ttl_s=request_ttl_s, timeout_s=timeout_s), timeout_s=timeout_s)
    raise ConfigError([f"serve.state_url: {url!r} is neither memory:// nor a redis:// URL"])
