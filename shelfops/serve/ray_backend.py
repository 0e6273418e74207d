"""`shelfops serve --backend ray`: the same FastAPI app, run as a Ray Serve deployment.

* Each replica builds the app itself (``serve.ingress`` with a builder, evaluated on the
  replica), loads the models from the registry or the folders given, and follows the
  registry's aliases as the one-process server does (hot swap, canary, shadow).
* Model calls are batched with ``@serve.batch``, sized by the optimize stage's tuning of the
  variant (its ``max_batch`` and ``max_wait_ms``): :class:`ServeBatcher`.
* Replicas autoscale on ongoing requests (``min_replicas`` .. ``max_replicas``).
* What replicas must share lives outside them: sessions and the served-request log in Redis
  (``serve.state_url``), alias history and rollout state in the operational store
  (``registry.ops_url``, PostgreSQL).

Everything a replica needs travels as plain data (:class:`ReplicaSpec`), never as live
objects: each replica opens its own registry and Redis connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shelfops.errors import Unavailable
from shelfops.serve.app import create_app
from shelfops.serve.spec import ReplicaSpec


class ServeBatcher:
    """The micro-batcher's interface (``shelfops.serve.batcher.MicroBatcher``) on ``@serve.batch``:
    concurrent ``submit`` calls are coalesced into one model call of at most ``max_batch``
    inputs, waiting at most ``max_wait_ms`` for the batch to fill. ``close`` drains."""

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait_ms: float = 2.0, name: str = "model",
                 on_batch: Callable[[int, float], None] | None = None, workers: int = 1) -> None:
        from ray import serve

        self.fn, self.name, self.on_batch = fn, name, on_batch
        self.max_batch, self.max_wait = max(1, int(max_batch)), max(0.0, max_wait_ms) / 1e3
        self.workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"batch-{name}")
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._closed = False
        self.batches = 0
        self.items = 0

        @serve.batch(max_batch_size=self.max_batch, batch_wait_timeout_s=self.max_wait,
                     max_concurrent_batches=self.workers)
        async def run(items: list[Any]) -> list[Any]:
            t0 = time.perf_counter()
            outs = await asyncio.get_running_loop().run_in_executor(self._pool, self.fn, list(items))
            if len(outs) != len(items):
                raise RuntimeError(f"{self.name}: {len(outs)} outputs for {len(items)} inputs")
            self.batches += 1
            self.items += len(items)
            if self.on_batch:
                self.on_batch(len(items), time.perf_counter() - t0)
            return list(outs)

        self._run = run

    def start(self) -> ServeBatcher:
        self._idle = asyncio.Event()
        self._idle.set()
        return self

    async def submit(self, item: Any) -> Any:
        if self._closed:
            raise Unavailable(f"{self.name} is shutting down")
        self._inflight += 1
        if self._idle is not None:
            self._idle.clear()
        try:
            return await self._run(item)
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._idle is not None:
                self._idle.set()

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self.submit(it) for it in items)))

    async def close(self) -> None:
        """Stop accepting, wait for what is in flight, stop the worker."""
        if self._closed:
            return
        self._closed = True
        if self._idle is not None:
            await self._idle.wait()
        self._pool.shutdown(wait=True)


def application(spec: ReplicaSpec, *, min_replicas: int = 1, max_replicas: int = 2,
                target_ongoing_requests: int = 16, num_cpus: float = 1.0):
    """The Ray Serve application: one autoscaled deployment whose replicas each run the app."""
    from ray import serve

    def build():
        return create_app(spec.settings(batching="ray"))

    deployment = serve.deployment(
        serve.ingress(build)(), name="shelfops",
        autoscaling_config={"min_replicas": min_replicas, "max_replicas": max_replicas,
                            "target_ongoing_requests": target_ongoing_requests,
                            "upscale_delay_s": 5, "downscale_delay_s": 60},
        max_ongoing_requests=4 * target_ongoing_requests,
        ray_actor_options={"num_cpus": num_cpus})
    return deployment.bind()


def start(spec: ReplicaSpec, *, host: str = "127.0.0.1", port: int = 8000, num_cpus: int | None = None,
          min_replicas: int = 1, max_replicas: int = 2, replica_cpus: float = 1.0,
          log_to_driver: bool = True) -> str:
    """Start (or join) local Ray, run the application on ``host:port``; returns its URL once
    every replica answers."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver,
                 configure_logging=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(spec, min_replicas=min_replicas, max_replicas=max_replicas, num_cpus=replica_cpus),
              name="shelfops", route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
