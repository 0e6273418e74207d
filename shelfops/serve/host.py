"""Loaded models, one slot per task, swapped without dropping a request.

A slot is a loaded model (as it ships: the optimized variant with its tuned threads,
batch size and wait) plus its micro-batcher. ``swap`` loads and warms the new slot beside
the old one, then replaces the pointer in one step; requests that already hold the old
slot finish on it, and the old slot is closed (drained) once the last of them is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shelfops.artifacts import verify_outputs
from shelfops.errors import Unavailable
from shelfops.optimize.shipped import load_shipped
from shelfops.serve.batcher import MicroBatcher
from shelfops.train.recommend import Recommender

# inputs handed to the model worker at once for a variant that scores one input per call
UNBATCHED_DISPATCH = 64


@dataclass
class Slot:
    task: str
    version: str
    folder: Path
    batcher: MicroBatcher
    model: Any
    meta: dict = field(default_factory=dict)
    users: int = 0
    known_rows: frozenset[int] | None = None  # search: catalogue rows its data snapshot holds (None: all)
    retired: asyncio.Event = field(default_factory=asyncio.Event)

    def acquire(self) -> Slot:
        self.users += 1
        return self

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.retired.is_set():
            asyncio.get_running_loop().create_task(retire(self))


async def retire(slot: Slot) -> None:
    """Drain a slot that no longer takes traffic, then give its memory back to the system."""
    await slot.batcher.close()
    slot.model = None
    await asyncio.get_running_loop().run_in_executor(None, release_memory)


def release_memory() -> None:
    """Return freed model memory to the operating system. A swapped-out model's buffers are
    freed, but glibc keeps the pages in its arenas: over half an hour with a hot swap every 3
    minutes the server's RSS grew 20% (bench/soak.py) until ``malloc_trim`` asked for them back."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not Linux with glibc: nothing to trim
        pass


def _text_fn(shipped, task: str) -> Callable[[list[Any]], list[Any]]:
    if task == "search":
        def fn(items):
            return list(shipped.run([q for q, _ in items], [t for _, t in items]).astype(float))
    elif task == "retrieval":
        def fn(items):
            return list(shipped.run(list(items)))
    else:
        def fn(items):
            logits = shipped.run(list(items))
            z = np.exp(logits - logits.max(1, keepdims=True))
            return list(z / z.sum(1, keepdims=True))
    return fn


def _rec_fn(rec) -> Callable[[list[Any]], list[Any]]:
    def fn(items):
        k = max(k for _, k in items)
        got = rec.recommend_batch([h for h, _ in items], k=k)
        return [g[:kk] for g, (_, kk) in zip(got, items)]
    return fn


def load_slot(task: str, folder: Path, version: str, *, on_batch=None, batch_override: dict | None = None,
              batcher: type = MicroBatcher) -> Slot:
    """Load (checksums verified) and wrap a model folder in a ``batcher`` (ours, or another with
    its interface, e.g. Ray Serve's in a replica); call ``warm`` before serving it."""
    folder = Path(folder)
    if task == "recommend":
        verify_outputs(folder)
        rec = Recommender.load(folder)
        b = batcher(_rec_fn(rec), max_batch=64, max_wait_ms=2, name=f"recommend-v{version}",
                    on_batch=on_batch)
        return Slot(task, version, folder, b, rec, {"items": len(rec.items)})

    shipped = load_shipped(folder, fast_query=True)
    serving = {**shipped.serving, **(batch_override or {})}
    max_batch, wait = int(serving.get("max_batch", 32)), float(serving.get("max_wait_ms", 2.0))
    unbatched = max_batch == 1
    if unbatched:  # tuned to one input per model call (its scores depend on batch companions):
        # hand each worker its share of whatever is queued at once, and let it score each input alone
        max_batch, wait = UNBATCHED_DISPATCH, 0.0
    extra = {"fair_share": True} if unbatched and issubclass(batcher, MicroBatcher) else {}
    b = batcher(_text_fn(shipped, task), max_batch=max_batch, max_wait_ms=wait, name=f"{task}-v{version}",
                on_batch=on_batch, workers=int(serving.get("workers", 1)), **extra)
    meta = {"variant": shipped.name, "max_batch": b.max_batch, "max_wait_ms": b.max_wait * 1e3,
            "threads": shipped.variant.threads, "workers": b.workers,
            "rerank_depth": serving.get("rerank_depth")}
    if task == "classify":
        meta["labels"] = shipped.spec.labels
    made = json.loads((folder / "manifest.json").read_text()).get("extra", {}) \
        if (folder / "manifest.json").exists() else {}
    meta["data"] = made.get("data")
    # the hybrid retriever the model was validated with: an optimized folder's serving.json
    # carries it, a trained folder's manifest has it
    pipeline = made.get("pipeline") or {}
    for k in ("fusion_weight", "rerank_blend", "dense_encoder", "dense_max_length"):
        meta[k] = serving.get(k, pipeline.get(k))
    return Slot(task, version, folder, b, shipped, meta)


class ModelHost:
    def __init__(self, batcher: type = MicroBatcher) -> None:
        self.batcher = batcher  # the class each slot's micro-batcher is made from
        self.slots: dict[str, Slot] = {}
        self.swaps = 0
        self._lock = asyncio.Lock()

    def get(self, key: str) -> Slot:
        slot = self.slots.get(key)
        if slot is None:
            raise Unavailable(f"no {key} model is loaded")
        return slot.acquire()

    async def swap(self, task: str, folder: Path, version: str, *, warm: Callable[[Slot], Any] | None = None,
                   on_batch=None, key: str | None = None) -> Slot:
        """Load + warm beside the old slot, switch atomically, drain the old one. ``key`` names
        the slot (default: the task; ``search:candidate`` for a canary or shadow model)."""
        key = key or task
        async with self._lock:  # one swap at a time per host
            loop = asyncio.get_running_loop()
            new = await loop.run_in_executor(None, lambda: load_slot(task, folder, version, on_batch=on_batch,
                                                                          batcher=self.batcher))
            new.batcher.start()
            if warm is not None:
                await warm(new)
            old = self.slots.get(key)
            self.slots[key] = new  # the switch: one assignment on the event loop
            self.swaps += 1
            if old is not None:
                old.retired.set()
                if old.users == 0:
                    await retire(old)
            return new

    async def remove(self, key: str) -> None:
        """Stop routing to a slot and drain it (e.g. a rolled-back candidate)."""
        old = self.slots.pop(key, None)
        if old is not None:
            old.retired.set()
            if old.users == 0:
                await retire(old)

    async def close(self) -> None:
        for s in self.slots.values():
            await s.batcher.close()
