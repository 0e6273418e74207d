"""One Ray Data task per id: how the ray engine's steps run their work on a cluster.

Each step of :mod:`shelfops.data.ray_ingest` and :mod:`shelfops.data.ray_derive` is a function
``fn(job, id, **kw)`` over the pieces of its input (a unit of a source, a bucket of a keyed
shuffle, a part of a table); it reads and writes Parquet on storage every node reaches and
returns a small JSON-able summary. Ray Data schedules the tasks (one CPU each), retries them,
and shows their progress; only the summaries come back to the driver.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from shelfops.data.scratch import bucketed


@contextmanager
def session(progress: bool = True) -> Iterator[Any]:
    """The ``ray`` module, joined to the cluster at ``RAY_ADDRESS`` (else a Ray started in this
    process); left as it was found (a session this opened is shut down at the end)."""
    import ray

    opened = not ray.is_initialized()
    if opened:
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    try:
        yield ray
    finally:
        if opened:
            ray.shutdown()


def run_tasks(ray, job: Any, fn: Callable[..., Any], ids: Iterable[int], **kw) -> list[dict]:
    """``fn(job, id, **kw)`` for each id, one task each; the dicts the calls returned (a call
    that returns a list counts as its items). ``kw`` values may be object refs (``ray.put``):
    each task reads them from the object store."""
    ids = list(ids)
    if not ids:
        return []
    ds = ray.data.from_items([{"id": i} for i in ids], override_num_blocks=len(ids))
    out = ds.map_batches(_each, batch_size=1, batch_format="pyarrow", num_cpus=1,
                         fn_kwargs={"fn": fn, "job": job, "kw": kw})
    got: list[dict] = []
    for r in out.take_all():
        res = json.loads(r["out"])
        got.extend(res if isinstance(res, list) else [res])
    return got


def _each(batch: pa.Table, fn, job, kw: dict) -> pa.Table:
    import ray

    kw = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in kw.items()}
    return pa.table({"out": [json.dumps(fn(job, i, **kw), default=str) for i in batch.column("id").to_pylist()]})


def write_buckets(df: pl.DataFrame, key: pl.Expr, buckets: int, scratch: str, name: str, piece: int) -> None:
    """``df``'s rows split by ``key`` (an unsigned 64-bit hash) ``% buckets``, one scratch file a
    bucket (``<name>-<bucket>-<piece>.parquet``): a keyed shuffle through shared storage, whose
    bucket ``b`` a later task reads whole with ``<name>-<b>-*.parquet``."""
    for b, part in bucketed(df, df.select(key).to_series().to_numpy(), buckets):
        pq.write_table(part, f"{scratch}/{name}-{b:03d}-{piece:06d}.parquet", compression="lz4")
