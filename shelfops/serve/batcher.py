"""Micro-batching: concurrent requests' inputs coalesced into one model call.

A request submits one or more inputs and awaits their outputs. One worker per model takes
the first waiting input, then keeps collecting until the batch holds ``max_batch`` inputs
or ``max_wait_ms`` has passed since that first input, and runs the model once, in a
single worker thread (the model call releases the GIL; the event loop keeps accepting).
``max_batch`` and ``max_wait_ms`` come from the optimize stage's tuning of the variant.

``close()`` stops accepting new inputs, finishes everything already queued and then stops,
so a model being swapped out drains instead of dropping requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.fn, self.max_batch, self.max_wait = fn, max(1, int(max_batch)), max(0.0, max_wait_ms) / 1e3
        self.name, self.on_batch = name, on_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._task: asyncio.Task | None = None
        self._closed = False
        self.batches = 0
        self.items = 0

    def start(self) -> MicroBatcher:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        if self._closed:
            raise Unavailable(f"{self.name} is shutting down")
        loop = asyncio.get_running_loop()
        futs = []
        now = time.perf_counter()
        for it in items:
            f = loop.create_future()
            futs.append(f)
            self._queue.put_nowait(_Pending(it, f, now))
        return list(await asyncio.gather(*futs))

    async def submit(self, item: Any) -> Any:
        return (await self.submit_many([item]))[0]

    async def _collect(self) -> list[_Pending] | None:
        first = await self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = first.enqueued + self.max_wait
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if nxt is None:  # close() sentinel: finish this batch, then stop
                self._queue.put_nowait(None)
                break
            batch.append(nxt)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if batch is None:
                return
            t0 = time.perf_counter()
            try:
                outs = await loop.run_in_executor(self._pool, self.fn, [p.item for p in batch])
                if len(outs) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(outs)} outputs for {len(batch)} inputs")
                for p, o in zip(batch, outs):
                    if not p.future.done():
                        p.future.set_result(o)
            except Exception as e:  # the model failed: every waiting request gets the error
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
            self.batches += 1
            self.items += len(batch)
            if self.on_batch:
                self.on_batch(len(batch), time.perf_counter() - t0)

    async def close(self) -> None:
        """Stop accepting, drain what is queued, stop the worker."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        self._pool.shutdown(wait=True)
