"""Micro-batching: concurrent requests' inputs coalesced into one model call.

A request submits one or more inputs and awaits their outputs. A worker thread (``workers``
of them for a variant tuned to run several single-threaded calls at once) takes the first
waiting input, then keeps collecting until the batch holds ``max_batch``
inputs or ``max_wait_ms`` has passed since that first input, and runs the model once (the
model call releases the GIL; the event loop keeps accepting). The worker forms its next
batch itself the moment it is free, from a thread-safe queue, so the event loop is not on
the path between two model calls: results go back to the loop once per batch.
``max_batch`` and ``max_wait_ms`` come from the optimize stage's tuning of the variant. With
``fair_share`` (a variant that scores one input per call) each worker has a queue of its own
and every request's inputs are dealt to them in turn, so one request's inputs are scored by
every worker side by side: 20 re-rank pairs on 2 workers are two shares of 10, where one
shared queue split them 1 + 1 + 10 + 5 + 3 as the workers happened to wake (the demo's int8
search model; the latency difference was within this VM's noise, the split is now even by
construction).

``close()`` stops accepting new inputs, finishes everything already queued and then stops,
so a model being swapped out drains instead of dropping requests.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shelfops.errors import Unavailable


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future
    enqueued: float


class MicroBatcher:
    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait_ms: float = 2.0, name: str = "model",
                 on_batch: Callable[[int, float], None] | None = None, workers: int = 1,
                 fair_share: bool = False) -> None:
        self.fn, self.max_batch, self.max_wait = fn, max(1, int(max_batch)), max(0.0, max_wait_ms) / 1e3
        self.name, self.on_batch, self.workers = name, on_batch, max(1, int(workers))
        self.fair_share = fair_share
        shared: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._queues = ([queue.SimpleQueue() for _ in range(self.workers)] if fair_share
                        else [shared] * self.workers)  # worker k reads self._queues[k]
        self._deal = 0  # fair share: the worker the next request's first input goes to
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = 0
        self._stopped: asyncio.Event | None = None
        self._closed = False
        self.batches = 0
        self.items = 0

    def start(self) -> MicroBatcher:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._running = self.workers
        for i in range(self.workers):
            threading.Thread(target=self._work, args=(i,), name=f"batch-{self.name}-{i}", daemon=True).start()
        return self

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        if self._closed:
            raise Unavailable(f"{self.name} is shutting down")
        loop = asyncio.get_running_loop()
        futs = []
        now = time.perf_counter()
        n = len(self._queues)
        for i, it in enumerate(items):
            f = loop.create_future()
            futs.append(f)
            self._queues[(self._deal + i) % n].put(_Pending(it, f, now))
        self._deal = (self._deal + len(items)) % n
        return list(await asyncio.gather(*futs))

    async def submit(self, item: Any) -> Any:
        return (await self.submit_many([item]))[0]

    # ------------------------------------------------------------------ worker thread
    def _collect(self, q: queue.SimpleQueue) -> list[_Pending] | None:
        first = q.get()
        if first is None:
            return None
        batch = [first]
        deadline = first.enqueued + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                nxt = q.get(timeout=left) if left > 0 else q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:  # close() sentinel: finish this batch, then stop
                q.put(None)
                break
            batch.append(nxt)
        return batch

    def _work(self, k: int) -> None:
        loop = self._loop
        q = self._queues[k]
        try:
            while (batch := self._collect(q)) is not None:
                t0 = time.perf_counter()
                try:
                    outs = self.fn([p.item for p in batch])
                    if len(outs) != len(batch):
                        raise RuntimeError(f"{self.name}: {len(outs)} outputs for {len(batch)} inputs")
                    err = None
                except Exception as e:  # the model failed: every waiting request gets the error
                    outs, err = None, e
                loop.call_soon_threadsafe(self._deliver, batch, outs, err, time.perf_counter() - t0)
        finally:
            q.put(None)  # the close() sentinel goes on to the next worker of a shared queue
            loop.call_soon_threadsafe(self._worker_stopped)

    def _worker_stopped(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._stopped.set()

    def _deliver(self, batch: list[_Pending], outs: Sequence[Any] | None, err: Exception | None,
                 seconds: float) -> None:
        for i, p in enumerate(batch):
            if p.future.done():
                continue
            if err is not None:
                p.future.set_exception(err)
            else:
                p.future.set_result(outs[i])
        self.batches += 1
        self.items += len(batch)
        if self.on_batch:
            self.on_batch(len(batch), seconds)

    async def close(self) -> None:
        """Stop accepting, drain what is queued, stop the worker."""
        if self._closed:
            return
        self._closed = True
        for q in {id(q): q for q in self._queues}.values():
            q.put(None)
        if self._stopped is not None:
            await self._stopped.wait()
