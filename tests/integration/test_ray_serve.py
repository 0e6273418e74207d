"""`shelfops serve --backend ray`: the app as a Ray Serve deployment on a local Ray, with
sessions and the request log in Redis and the registry's operational store (alias history)
in PostgreSQL, all real. Requests go over HTTP to Ray's proxy; model calls are batched by
@serve.batch; an alias move in the registry hot-swaps what the replica serves."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
REDIS = "redis://127.0.0.1:6379/0"


def _wait(cond, timeout=120.0, what="condition"):
    t0 = time.time()
    while True:
        try:
            if cond():
                return
        except httpx.HTTPError:
            pass
        assert time.time() - t0 < timeout, f"{what} not met in {timeout:.0f} s"
        time.sleep(0.5)


def test_ray_serve_backend_serves_batches_shares_sessions_and_follows_the_registry(
        models, small_shop, tmp_path, pg_url):
    from shelfops.registry.registry import Registry
    from shelfops.serve import ray_backend
    from shelfops.serve.server import free_port

    reg = Registry(home=tmp_path / "home", ops_url=pg_url)
    for task in ("search", "retrieval", "recommend"):
        reg.register(models / task, f"shop-{task}")
        reg.promote(f"shop-{task}", "1", "production", reason="first", force=True, actor="test")
    reg.register(models / "search-b", "shop-search")
    spec = ray_backend.ReplicaSpec(registry_prefix="shop", registry={"home": str(tmp_path / "home"),
                                                                      "ops_url": pg_url},
                                   data_dir=str(small_shop), state_url=REDIS, rerank_depth=20, watch_seconds=0.5)
    port = free_port()
    url = ray_backend.start(spec, port=port, num_cpus=2, min_replicas=1, max_replicas=1)
    try:
        c = httpx.Client(base_url=url, timeout=60)
        _wait(lambda: c.get("/readyz").json()["ready"], what="replica ready")
        ready = c.get("/readyz").json()
        assert set(ready["models"]) == {"search", "retrieval", "recommend"}

        # concurrent searches: answered, and coalesced by @serve.batch into batches > 1
        async def burst(n):
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                return await asyncio.gather(*(ac.post("/v1/search", json={"query": f"red shoes {i}", "k": 5})
                                              for i in range(n)))
        got = asyncio.run(burst(24))
        assert all(r.status_code == 200 for r in got), [r.text for r in got if r.status_code != 200][:2]
        assert {r.json()["versions"]["search"] for r in got} == {"1"}
        metrics = c.get("/metrics").text
        sizes = [line for line in metrics.splitlines()
                 if line.startswith('shelfops_batch_size_count{task="search"')]
        counts = [line for line in metrics.splitlines()
                  if line.startswith('shelfops_batch_size_sum{task="search"')]
        assert sizes and counts
        n_batches, n_items = float(sizes[0].split()[-1]), float(counts[0].split()[-1])
        assert n_items > n_batches  # more re-ranked pairs than model calls: batched

        # the session lives in Redis: events and recommend agree through it
        session = f"ray-{uuid.uuid4().hex}"
        first = got[0].json()
        for it in first["items"][:2]:
            r = c.post("/v1/events", json={"type": "click", "item_id": it["item_id"],
                                           "request_id": first["request_id"], "session": session})
            assert r.status_code == 200, r.text
        import redis

        assert redis.Redis.from_url(REDIS).llen(f"shelfops:session:{session}") == 2
        assert c.post("/v1/recommend", json={"session": session, "k": 3}).json()["history_length"] == 2

        # an alias move in the registry (its history in PostgreSQL) is followed by the replica
        reg.promote("shop-search", "2", "production", reason="second", force=True, actor="test")
        _wait(lambda: c.post("/v1/search", json={"query": "shoes", "k": 3}).json()["versions"]["search"] == "2",
              what="hot swap to v2")
        moves = [(m.alias, m.from_version, m.to_version) for m in reg.history("shop-search")]
        assert ("production", "1", "2") in moves and ("previous", None, "1") in moves, moves
    finally:
        ray_backend.stop()
