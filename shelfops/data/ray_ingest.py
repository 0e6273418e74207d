"""The ingest on Ray Data (``data.engine: ray``): :mod:`shelfops.data.ingest`'s checks, outputs
and reconciliation, with the events and judgements read, checked and written across a cluster.

    1. check   one task a unit (a whole text file, a Parquet file's row groups): read, row checks;
               its kept rows to a scratch part, its rejects to a quarantine part, and for the
               whole-table checks its sessions' spans and its rows' hashes, bucketed by key
    2. reduce  one task a bucket: sessions merged -> bot sessions; hashes in source order ->
               rows that repeat an earlier row (what comes back to the driver is only these few)
    3. count   one task a unit, four columns read: good rows after unknown items, bots, copies
    4. write   one task a unit: its good rows numbered (``seq``, from the counts of the units
               before it) into ``<table>.parquet/part-<unit>.parquet``, its rejects quarantined

No step moves whole rows between workers: the keyed checks go through a shuffle of small
per-unit summaries on shared storage (MapReduce's own pattern), so the work grows with the
input and the driver holds only the catalogue, the bots and the duplicates' places. The
catalogue (items sources, and items described by other tables' rows) is finished on the driver
by the local engine's code: it is small next to the events, and every task needs its ids.

Each table is written as a folder of Parquet parts in the source's order, which polars,
pyarrow, DuckDB and Spark read as one table: its rows, their order and ``seq`` are the local
engine's. ``out`` and the inputs must be paths every node reaches (shared storage).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from shelfops.data.ingest import (
    Limits,
    bot_rule,
    check_batch_rows,
    finish_items,
    flagged_rejects,
    reconcile,
    stage_items,
    stub_items,
    whole_table_flags,
)
from shelfops.data.ray_tasks import run_tasks, session, write_buckets
from shelfops.data.scratch import Ledger, Quarantine, later_copies, merge_sessions
from shelfops.data.sources import Rejects, SourceSpec, Unit, read_unit, source_units
from shelfops.data.validate import Pseudonymiser, Rules
from shelfops.errors import ConfigError
from shelfops.tables import QUARANTINE, TABLES, parquet_options

_ORDER_BITS = 40  # a row's place in the source: unit << 40 | row (a file of up to 10^12 rows)


@dataclass(frozen=True)
class _Job:
    """What a worker needs to read and check units: plain data, shipped to every task."""

    specs: list[SourceSpec]
    units: list[tuple[int, Unit]]  # (index of its spec, unit), in the source's order
    files: list[str]  # file id -> path, as the local engine numbers them
    rules: Rules
    key: bytes
    limits: Limits
    scratch: str
    quarantine: str
    out: str
    buckets: int  # step 2's tasks: session spans and row hashes are split into this many by key

    def table(self, u: int) -> str:
        return self.specs[self.units[u][0]].table


def ingest_ray(specs: list[SourceSpec], out_dir: Path, *, rules: Rules, key: bytes, limits: Limits,
               progress: bool = True) -> dict:
    """:func:`shelfops.data.ingest.ingest` on Ray Data: the same tables and counts, written as
    folders of Parquet parts, on the cluster at ``RAY_ADDRESS`` (:func:`shelfops.data.ray_tasks.session`)."""
    with session(progress) as ray:
        return _ingest(ray, specs, Path(out_dir), rules=rules, key=key, limits=limits, progress=progress)


def _ingest(ray, specs: list[SourceSpec], out_dir: Path, *, rules: Rules, key: bytes, limits: Limits,
            progress: bool) -> dict:
    if any(s.format == "amazon" for s in specs):
        raise ConfigError(["data.engine: ray reads csv, tsv, jsonl and parquet sources (the Amazon "
                           "sequence format is one file read from the start: engine local)"])
    scratch, qdir = out_dir / "_stage", out_dir / "quarantine.parquet"
    scratch.mkdir(parents=True, exist_ok=True)
    qdir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger()
    quarantine = Quarantine(qdir / "part-items.parquet", ledger)

    catalogue = [s for s in specs if s.table == "items"]
    rest = [s for s in specs if s.table != "items"]
    files: list[str] = []
    stages, derived = stage_items(catalogue, scratch, files, rules, Pseudonymiser(key), limits, ledger,
                                  quarantine, progress)
    units = [(i, u) for i, s in enumerate(rest) for u in source_units(s, limits.batch_rows)]
    for _, u in units:
        if u.path not in files:
            files.append(u.path)
    job = _Job(rest, units, files, rules, key, limits, str(scratch), str(qdir), str(out_dir),
               buckets=max(1, min(64, len(units))))

    for r in run_tasks(ray, job, _check_unit, range(len(units))):
        table, path = job.table(r["unit"]), units[r["unit"]][1].path
        ledger.rows_in[(table, path)] += r["rows_in"]
        for reason, n in json.loads(r["rejected"]).items():
            ledger.rejected[(table, path, reason)] += n
    _derived_items(job, derived)
    derived.close()
    title_mapped = any("title" in s.item_columns for s in specs)
    items, known = finish_items(stages["items"], derived, title_mapped, files, ledger, quarantine, out_dir,
                                limits)
    quarantine.close()

    reduced = run_tasks(ray, job, _reduce_bucket, range(job.buckets))
    flags = _Flags(known if limits.require_known_items else None,
                   {r["session_id"] for r in reduced if r["session_id"] is not None},
                   np.sort(np.array([r["order"] for r in reduced if r["order"] >= 0], np.int64))
                   if limits.drop_duplicates else None)
    written = _write_tables(ray, job, flags, ledger)
    if items is None and written["events"]:  # no catalogue at all: stub items from events
        items = stub_items(out_dir)
    shutil.rmtree(scratch)
    return reconcile(ledger, items, len(flags.bots), limits)


def _write_tables(ray, job: _Job, flags: _Flags, ledger: Ledger) -> dict[str, int]:
    """Steps 3 and 4: every unit's good rows counted, then numbered after the units before it
    and written; the ledger takes what was kept and quarantined. Rows written per table."""
    ref = ray.put(flags)
    units = range(len(job.units))
    good = {r["unit"]: r["good"] for r in run_tasks(ray, job, _count_unit, units, flags=ref)}
    offsets, at = {}, {"events": 0, "judgements": 0}
    for u in units:
        offsets[u] = at[job.table(u)]
        at[job.table(u)] += good[u]
    for r in run_tasks(ray, job, _write_unit, units, flags=ref, offsets=offsets):
        table, path = job.table(r["unit"]), job.units[r["unit"]][1].path
        ledger.kept[(table, path)] += r["good"]
        for reason, n in json.loads(r["rejected"]).items():
            ledger.rejected[(table, path, reason)] += n
    for table in ("events", "judgements"):  # a table whose every row was rejected: empty, as locally
        if any(job.table(u) == table for u in units) and not at[table]:
            folder = Path(job.out) / f"{table}.parquet"
            folder.mkdir(exist_ok=True)
            pq.write_table(TABLES[table].empty_table(), folder / "part-000000.parquet")
    return at


@dataclass(frozen=True)
class _Flags:
    """What the whole-table checks found, shipped to every task of steps 3 and 4."""

    known: pl.Series | None  # the catalogue's ids (None: not checked)
    bots: set[str]
    dups: np.ndarray | None  # sorted places (``_order``) of rows that repeat an earlier one


# ----------------------------------------------------------------------------- 1. check


def _check_unit(job: _Job, u: int) -> dict:
    """Read and check unit ``u``: kept rows to ``kept-<u>``, rejects to the quarantine, the items
    its rows describe, its sessions' spans and its rows' hashes bucketed for step 2."""
    s, unit = job.units[u]
    spec = job.specs[s]
    ids = Pseudonymiser(job.key)
    file_id = job.files.index(unit.path)
    rows_in, rejected, items, kept, spans = 0, [], [], [], []
    for batch in read_unit(spec, unit, job.limits.batch_rows):
        rows_in += len(batch.df)
        if isinstance(batch, Rejects):
            rejected.append(batch.df)
            continue
        done = check_batch_rows(batch, file_id, job.rules, ids, job.limits.drop_duplicates)
        if done.rejects is not None:
            rejected.append(done.rejects)
        if done.items is not None:
            items.append(done.items)
        if done.sessions is not None:
            spans.append(done.sessions)
        k = pl.from_arrow(done.kept)
        kept.append(k.with_columns(
            (pl.lit(u, pl.Int64) * (1 << _ORDER_BITS) + pl.col("_row")).alias("_order"),
            pl.Series("_hash", done.hashes if done.hashes is not None else np.zeros(len(k), np.uint64),
                      pl.UInt64)))
    by_reason: dict[str, int] = {}
    if rejected:
        q = pl.concat([r.select(QUARANTINE.names) for r in rejected], how="vertical_relaxed")
        pq.write_table(q.to_arrow().cast(QUARANTINE), f"{job.quarantine}/part-1-{u:06d}.parquet")
        by_reason = dict(q.group_by("reason").len().iter_rows())
    if spans:
        write_buckets(merge_sessions(spans), pl.col("session_id").hash(seed=1), job.buckets, job.scratch, "spans", u)
    if items:
        pl.concat(items, how="vertical_relaxed").write_parquet(f"{job.scratch}/items-{u:06d}.parquet")
    df = pl.concat(kept, how="vertical_relaxed") if kept else None
    if df is not None and not df.is_empty():
        df.write_parquet(f"{job.scratch}/kept-{u:06d}.parquet", compression="lz4")
        if job.limits.drop_duplicates:
            write_buckets(df.select("_hash", "_order"), pl.col("_hash"), job.buckets, job.scratch,
                          f"hashes-{spec.table}", u)
    return {"unit": u, "rows_in": rows_in, "rejected": json.dumps(by_reason)}


def _derived_items(job: _Job, derived) -> None:
    """The items the units' rows describe, into ``derived`` in the source's order (as the local
    engine stages them)."""
    for u in range(len(job.units)):
        it = Path(job.scratch) / f"items-{u:06d}.parquet"
        if it.exists():
            derived.add(pl.read_parquet(it))


# ----------------------------------------------------------------------------- 2. reduce


def _reduce_bucket(job: _Job, b: int) -> list[dict]:
    """Bucket ``b``'s sessions merged into bot sessions, its hashes (per table, in the source's
    order) into the places of rows that repeat an earlier one."""
    out: list[dict] = []
    scratch = Path(job.scratch)
    spans = sorted(scratch.glob(f"spans-{b:03d}-*.parquet"))
    if spans:
        s = merge_sessions([pl.read_parquet(spans)])
        out += [{"session_id": x, "order": -1} for x in s.filter(bot_rule(job.limits))["session_id"].to_list()]
    for table in ("events", "judgements"):
        parts = sorted(scratch.glob(f"hashes-{table}-{b:03d}-*.parquet"))
        if parts:
            h = pl.read_parquet(parts)
            out += [{"session_id": None, "order": int(o)} for o in later_copies(h["_hash"], h["_order"])]
    return out


# ----------------------------------------------------------------------------- 3. count, 4. write


def _flagged(job: _Job, u: int, flags: _Flags, columns: list[str] | None = None) -> pl.DataFrame:
    table = job.table(u)
    df = pl.read_parquet(f"{job.scratch}/kept-{u:06d}.parquet", columns=columns)
    return whole_table_flags(
        df, table, job.limits, flags.known.implode() if flags.known is not None else None,
        pl.Series(sorted(flags.bots), dtype=pl.String).implode() if flags.bots and table == "events" else None,
        pl.Series(np.isin(df["_order"].to_numpy(), flags.dups)) if flags.dups is not None else None)


def _needs(table: str) -> list[str]:
    return ["item_id", "_order", *(["session_id"] if table == "events" else [])]


def _count_unit(job: _Job, u: int, flags: _Flags) -> dict:
    """Unit ``u``'s good rows after the whole-table checks, from the few columns they read."""
    if not Path(f"{job.scratch}/kept-{u:06d}.parquet").exists():
        return {"unit": u, "good": 0}
    df = _flagged(job, u, flags, _needs(job.table(u)))
    return {"unit": u, "good": int(df["_reason"].is_null().sum())}


def _write_unit(job: _Job, u: int, flags: _Flags, offsets: dict[int, int]) -> dict:
    """Unit ``u``'s good rows, numbered from ``offsets[u]``, to its part; its rejects quarantined."""
    table = job.table(u)
    if not Path(f"{job.scratch}/kept-{u:06d}.parquet").exists():
        return {"unit": u, "good": 0, "rejected": "{}"}
    df = _flagged(job, u, flags)
    bad = df.filter(pl.col("_reason").is_not_null())
    if not bad.is_empty():
        q = flagged_rejects(bad, table, pl.lit(job.units[u][1].path))
        pq.write_table(q.to_arrow().cast(QUARANTINE), f"{job.quarantine}/part-2-{u:06d}.parquet")
    good = df.filter(pl.col("_reason").is_null())
    good = good.with_columns(pl.int_range(offsets[u], offsets[u] + len(good), dtype=pl.Int64).alias("seq"))
    folder = Path(job.out) / f"{table}.parquet"
    folder.mkdir(exist_ok=True)
    if not good.is_empty():
        pq.write_table(good.select(TABLES[table].names).to_arrow().cast(TABLES[table]),
                       folder / f"part-{u:06d}.parquet", **parquet_options(TABLES[table]))
    return {"unit": u, "good": len(good),
            "rejected": json.dumps(dict(bad.group_by("_reason").len().iter_rows()))}
