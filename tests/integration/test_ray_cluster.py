"""`shelfops serve --backend ray` across the nodes of a real Ray cluster: two nodes started on
this machine with `ray start` (a head and a worker, one CPU each, as PLATFORM-NOTES.md
describes), the application deployed onto the cluster from outside it, its two replicas placed
one on each node (each asks for more than half a node's CPU), sessions in the shared Redis, the
registry's alias history in the shared PostgreSQL. Under load every search is answered, by
replicas on both nodes, and a click on one node is seen by a recommendation from the other."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from raycluster import two_nodes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ray = pytest.importorskip("ray")
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def cluster():
    with two_nodes() as (_, dashboard):
        yield dashboard


def test_replicas_on_both_nodes_answer_under_load(cluster, models, small_shop, tmp_path, pg_url):
    from ray.util.state import list_actors

    from shelfops.registry.registry import Registry
    from shelfops.serve import ray_backend
    from shelfops.serve.server import free_port

    reg = Registry(home=tmp_path / "home", ops_url=pg_url)
    for task in ("search", "retrieval", "recommend"):
        reg.register(models / task, f"shop-{task}")
        reg.promote(f"shop-{task}", "1", "production", reason="first", force=True, actor="test")
    spec = ray_backend.ReplicaSpec(registry_prefix="shop", registry={"home": str(tmp_path / "home"),
                                                                      "ops_url": pg_url},
                                   data_dir=str(small_shop), serve={"state_url": REDIS, "rerank_depth": 10})
    # 0.8 CPU a replica: two cannot share a one-CPU node, so Ray places one on each
    url = ray_backend.start(spec, port=free_port(), min_replicas=2, max_replicas=2, replica_cpus=0.8)
    try:
        c = httpx.Client(base_url=url, timeout=60)
        deadline = time.time() + 300
        while True:
            try:
                if c.get("/readyz").json()["ready"] and len(
                        {c.get("/healthz").headers["x-shelfops-replica"] for _ in range(20)}) == 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "two replicas not ready in 300 s"
            time.sleep(1)
        replicas = [a for a in list_actors(address=cluster, filters=[("state", "=", "ALIVE")])
                    if a.class_name.endswith("shelfops:replica")]
        nodes = {a.node_id for a in replicas}
        assert len(replicas) == 2 and len(nodes) == 2, [(a.class_name, a.node_id) for a in replicas]

        async def load(n: int) -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                sem = asyncio.Semaphore(8)

                async def one(i: int) -> httpx.Response:
                    async with sem:
                        return await ac.post("/v1/search", json={"query": f"red shoes {i}", "k": 5})
                return await asyncio.gather(*(one(i) for i in range(n)))

        t = time.perf_counter()
        got = asyncio.run(load(200))
        took = time.perf_counter() - t
        assert [r.status_code for r in got] == [200] * 200, [r.text for r in got if r.status_code != 200][:2]
        served_by = {r.headers["x-shelfops-replica"] for r in got}
        assert len(served_by) == 2, served_by  # both nodes' replicas took searches

        # a click answered on one node, a recommendation from the same session: Redis is shared
        session = f"cluster-{uuid.uuid4().hex}"
        first = got[0].json()
        for it in first["items"][:2]:
            assert c.post("/v1/events", json={"type": "click", "item_id": it["item_id"],
                                              "request_id": first["request_id"], "session": session}).status_code == 200
        lengths = {c.post("/v1/recommend", json={"session": session, "k": 3}).json()["history_length"]
                   for _ in range(10)}
        assert lengths == {2}
        print(f"\nCLUSTER 2 Ray nodes, 2 replicas ({len(nodes)} nodes hold them): 200 searches at concurrency 8 "
              f"in {took:.1f} s ({200 / took:.1f}/s), served by {len(served_by)} replicas, 0 failed")
    finally:
        ray_backend.stop()
