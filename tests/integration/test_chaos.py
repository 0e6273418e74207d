"""Chaos under load: the parts around the model fail while shoppers search, click and ask for
recommendations, and the server keeps its promises. Real processes on loopback (a Redis and a
PostgreSQL of the test's own), each fault bounded in time. Each test prints its figure
(``CHAOS ...``), which bench/RESULTS.md records."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from chaos import Load, RedisServer

from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.server import start_in_thread

pytestmark = pytest.mark.slow
TOKEN = "chaos-token"


def test_redis_stopped_for_five_seconds_then_back(models, small_shop):
    """Searches keep answering, recommendations fall back to the request alone and say so,
    events are refused with a 503 naming Redis (never a 500, never a hang), /readyz names the
    failing store; once Redis is back, events and sessions resume."""
    redis = RedisServer().start()
    settings = ServeSettings(models={t: (models / t, "1") for t in ("search", "retrieval", "recommend")},
                             data_dir=small_shop, admin_token=TOKEN, rerank_depth=10, state_url=redis.url)
    running = start_in_thread(create_app(settings))
    load = Load(running.url)
    marks: dict[str, float] = {}

    async def faults() -> None:
        t0 = time.monotonic()
        await asyncio.sleep(2.0)
        marks["down"] = time.monotonic() - t0
        await asyncio.to_thread(redis.kill)
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=running.url) as c:
            marks["readyz_down"] = (await c.get("/readyz")).json()["dependencies"]["state"]
        await asyncio.sleep(4.0)
        marks["up"] = time.monotonic() - t0
        await asyncio.to_thread(redis.start)
        await asyncio.sleep(4.0)
        async with httpx.AsyncClient(base_url=running.url) as c:
            marks["readyz_up"] = (await c.get("/readyz")).json()["dependencies"]["state"]
        load.stop.set()

    async def main() -> None:
        await asyncio.gather(load.run(), faults())

    try:
        asyncio.run(main())
    finally:
        running.stop()
        redis.kill()

    a = load.answers
    down, up = marks["down"], marks["up"]
    assert not [x for x in a if x.status == 0], "a request got no answer within the client's timeout"
    assert not [x for x in a if x.status >= 500 and x.status != 503], [x for x in a if x.status >= 500][:3]
    assert max(x.seconds for x in a) < 3.0  # Redis calls are bounded (0.5 s); nothing hangs
    searches = [x for x in a if x.route == "/v1/search"]
    assert all(x.status == 200 for x in searches), "a search failed while Redis was down"
    outage = load.between(down + 0.5, up)
    refused = [x for x in outage if x.status == 503]
    assert refused and all(x.route == "/v1/events" and x.body["code"] == "dependency_unavailable"
                           and "Redis" in x.body["message"] for x in refused)
    recs = [x for x in outage if x.route == "/v1/recommend"]
    assert recs and all(x.status == 200 and "degraded" in x.body for x in recs)
    assert marks["readyz_down"]["ok"] is False and "Redis" in marks["readyz_down"]["name"]
    assert marks["readyz_up"]["ok"] is True
    # after the restart: events accepted again, and sessions grow again
    ok_events = [x.t for x in load.between(up, 1e9, "/v1/events") if x.status == 200]
    assert ok_events, "no event was accepted after Redis came back"
    recover = min(ok_events) - up
    assert recover < 3.0
    late = load.between(up + recover + 1.0, 1e9, "/v1/recommend")
    assert late and max(x.body.get("history_length", 0) for x in late) > 0 and not any("degraded" in x.body
                                                                                        for x in late)
    in_outage = load.between(down, up)
    print(f"\nCHAOS redis down {up - down:.1f} s under load: {len(in_outage)} requests, "
          f"{sum(x.route == '/v1/search' for x in in_outage)} searches all answered, "
          f"{len(refused)} events refused with 503, 0 errors 5xx other than 503, "
          f"slowest answer {max(x.seconds for x in a):.2f} s; events accepted again {recover:.2f} s after restart")
