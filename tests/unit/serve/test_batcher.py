"""The micro-batcher: coalescing, the wait bound, errors, and draining on close."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from shelfops.errors import Unavailable
from shelfops.serve.batcher import MicroBatcher


def _model(calls: list[list[int]], delay: float = 0.0):
    def fn(items):
        calls.append(list(items))
        time.sleep(delay)
        return [x * 10 for x in items]
    return fn


def test_concurrent_requests_share_model_calls_up_to_max_batch():
    calls: list[list[int]] = []
    seen: list[tuple[int, float]] = []

    async def main():
        b = MicroBatcher(_model(calls, 0.01), max_batch=8, max_wait_ms=20,
                         on_batch=lambda n, s: seen.append((n, s))).start()
        outs = await asyncio.gather(*(b.submit_many([i, i + 100]) for i in range(20)))
        await b.close()
        return b, outs

    b, outs = asyncio.run(main())
    assert outs == [[i * 10, (i + 100) * 10] for i in range(20)]  # each request gets its own answers
    assert all(len(c) <= 8 for c in calls) and sum(map(len, calls)) == 40
    assert len(calls) < 40 and max(map(len, calls)) == 8  # coalesced
    assert (b.batches, b.items) == (len(calls), 40) and [n for n, _ in seen] == [len(c) for c in calls]


def test_a_lone_input_waits_at_most_max_wait():
    async def main():
        b = MicroBatcher(_model([]), max_batch=64, max_wait_ms=30).start()
        t0 = time.perf_counter()
        out = await b.submit(4)
        took = time.perf_counter() - t0
        await b.close()
        return out, took

    out, took = asyncio.run(main())
    assert out == 40 and took < 1.0


def test_a_failing_call_fails_its_batch_only():
    state = {"fail": True}

    def fn(items):
        if state.pop("fail", False):
            raise ValueError("model exploded")
        return [x + 1 for x in items]

    async def main():
        b = MicroBatcher(fn, max_batch=4, max_wait_ms=1).start()
        with pytest.raises(ValueError, match="exploded"):
            await b.submit_many([1, 2])
        ok = await b.submit_many([5])
        await b.close()
        return ok

    assert asyncio.run(main()) == [6]


def test_wrong_number_of_outputs_is_an_error_not_a_misattribution():
    async def main():
        b = MicroBatcher(lambda items: [0], max_batch=4, max_wait_ms=5).start()
        try:
            await b.submit_many([1, 2, 3])
        finally:
            await b.close()

    with pytest.raises(RuntimeError, match="1 outputs for"):
        asyncio.run(main())


def test_close_drains_everything_queued_then_refuses():
    calls: list[list[int]] = []
    gate = threading.Event()

    def slow(items):
        gate.wait(5)
        return _model(calls)(items)

    async def main():
        b = MicroBatcher(slow, max_batch=2, max_wait_ms=0).start()
        pending = [asyncio.ensure_future(b.submit(i)) for i in range(7)]
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(b.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # the worker is still busy with queued inputs
        gate.set()
        await closing
        with pytest.raises(Unavailable, match="shutting down"):
            await b.submit(99)
        return [p.result() for p in pending]

    assert asyncio.run(main()) == [i * 10 for i in range(7)]
    assert sum(map(len, calls)) == 7


def test_several_workers_run_calls_side_by_side_and_all_drain():
    """workers=2: two model calls overlap in time (each single-threaded call leaves a core to
    the other); every input is answered once, and close() stops both workers."""
    running, peak, lock = [0], [0], threading.Lock()

    def fn(items):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return [x * 2 for x in items]

    async def main():
        b = MicroBatcher(fn, max_batch=2, max_wait_ms=0, workers=2).start()
        outs = await asyncio.gather(*(b.submit(i) for i in range(12)))
        await b.close()
        with pytest.raises(Unavailable, match="shutting down"):
            await b.submit(1)
        return b, outs

    b, outs = asyncio.run(main())
    assert outs == [i * 2 for i in range(12)] and b.items == 12
    assert peak[0] == 2


@pytest.mark.parametrize("fair", [False, True])
def test_fair_share_spreads_one_requests_inputs_over_every_worker(fair):
    calls: list[tuple[str, list[int]]] = []

    def fn(items):
        calls.append((threading.current_thread().name, list(items)))
        time.sleep(0.002 * len(items))  # each input scored alone, one after another
        return [x * 10 for x in items]

    async def main():
        b = MicroBatcher(fn, max_batch=64, max_wait_ms=0, workers=2, fair_share=fair).start()
        out = await b.submit_many(list(range(20)))
        await b.close()
        return out

    assert asyncio.run(main()) == [x * 10 for x in range(20)]
    per_worker = {}
    for name, items in calls:
        per_worker[name] = per_worker.get(name, 0) + len(items)
    if fair:  # both workers score about half of the request's inputs
        assert len(per_worker) == 2 and max(per_worker.values()) <= 12, per_worker
    else:  # the first free worker takes everything queued
        assert max(per_worker.values()) >= 15, per_worker
