"""The ingest on Ray Data (``data.engine: ray``): :mod:`shelfops.data.ingest`'s checks, outputs
and reconciliation, with the events and judgements read and checked across a cluster.

    units (whole text files, Parquet files at row-group boundaries), one task each:
        read -> row checks -> kept rows (+ their row hash)  |  rejects -> quarantine parts
    kept -> sessions (group by session id)          -> bot sessions (to every task)
    kept -> row hashes (group by hash)              -> every copy after the first, in source order
    kept -> unknown item | bot | duplicate -> good rows, numbered per unit -> Parquet parts
                                            -> rejects -> quarantine parts

The catalogue (items sources, and items described by other tables' rows) is finished on the
driver by the local engine's own code: it is small next to the events, and every task needs
its ids. Each table is written as a folder of Parquet parts, one per unit in the source's
order (``events.parquet/part-000017.parquet``), which polars, pyarrow, DuckDB and Spark read
as one table: rows, their order and ``seq`` are the local engine's. ``out`` must be a path
every node of the cluster reaches (shared storage), as the inputs must.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from shelfops.data.ingest import (
    Ledger,
    Limits,
    Quarantine,
    bot_rule,
    check_batch_rows,
    finish_items,
    reconcile,
    stage_items,
    stub_items,
    whole_table_flags,
)
from shelfops.data.sources import Rejects, SourceSpec, Unit, read_unit, source_units
from shelfops.data.validate import Pseudonymiser, Rules
from shelfops.errors import ConfigError
from shelfops.tables import QUARANTINE, TABLES

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


def ingest_ray(specs: list[SourceSpec], out_dir: Path, *, rules: Rules, key: bytes, limits: Limits,
               progress: bool = True) -> dict:
    """:func:`shelfops.data.ingest.ingest` on Ray Data: the same tables and counts, written as
    folders of Parquet parts. Joins the cluster at ``RAY_ADDRESS`` (else starts a local one)."""
    import ray

    joined = not ray.is_initialized()
    if joined:
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    try:
        return _ingest(ray, specs, Path(out_dir), rules=rules, key=key, limits=limits, progress=progress)
    finally:
        if joined:
            ray.shutdown()


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
    job = _Job(rest, units, files, rules, key, limits, str(scratch), str(qdir))

    kept = {t: _pass_one(ray, job, t) for t in ("events", "judgements")}
    _record_units(job, ledger, derived)
    derived.close()
    title_mapped = any("title" in s.item_columns for s in specs)
    items, known = finish_items(stages["items"], derived, title_mapped, files, ledger, quarantine, out_dir,
                                limits)
    quarantine.close()

    bots: set[str] = set()
    for table in ("events", "judgements"):
        if kept[table] is None:
            continue
        if table == "events":
            bots = _bot_sessions(kept[table], limits)
        dups = _duplicate_rows(kept[table]) if limits.drop_duplicates else None
        _pass_two(ray, job, table, kept[table], known if limits.require_known_items else None,
                  bots if table == "events" else set(), dups, ledger, out_dir)
    if items is None and kept["events"] is not None:  # no catalogue at all: stub items from events
        items = stub_items(out_dir)
    for p in scratch.iterdir():
        p.unlink()
    scratch.rmdir()
    return reconcile(ledger, items, len(bots), limits)


# ----------------------------------------------------------------------------- pass one


def _pass_one(ray, job: _Job, table: str):
    """One task a unit of ``table``: read, check, write its rejects and the items its rows
    describe, return its kept rows. The kept rows, materialised in the object store (spilled to
    disk beyond it), or None when the table has no source."""
    mine = [i for i, (s, _) in enumerate(job.units) if job.specs[s].table == table]
    if not mine:
        return None
    ds = ray.data.from_items([{"unit": i} for i in mine], override_num_blocks=len(mine))
    return ds.map_batches(_check_units, batch_size=1, batch_format="pyarrow", fn_kwargs={"job": job},
                          num_cpus=1).materialize()


def _staged_schema(table: str) -> pa.Schema:
    canon = [f for f in TABLES[table] if f.name != "seq"]
    return pa.schema([*canon, pa.field("_row", pa.int64()), pa.field("_dedupe_key", pa.int64()),
                      pa.field("_file", pa.int32()), pa.field("_order", pa.int64()),
                      pa.field("_hash", pa.uint64())])


def _check_units(batch: pa.Table, job: _Job) -> pa.Table:
    parts = [t for u in batch.column("unit").to_pylist() for t in _check_unit(job, u)]
    if not parts:
        return _staged_schema(job.specs[job.units[batch.column("unit")[0].as_py()][0]].table).empty_table()
    return pa.concat_tables(parts)


def _check_unit(job: _Job, u: int) -> Iterator[pa.Table]:
    s, unit = job.units[u]
    spec = job.specs[s]
    schema = _staged_schema(spec.table)
    file_id = job.files.index(unit.path)
    ids = Pseudonymiser(job.key)
    rows_in, rejected, items = 0, [], []
    for batch in read_unit(spec, unit, job.limits.batch_rows):
        if isinstance(batch, Rejects):
            rows_in += len(batch.df)
            rejected.append(batch.df)
            continue
        rows_in += len(batch.df)
        done = check_batch_rows(batch, file_id, job.rules, ids, job.limits.drop_duplicates)
        if done.rejects is not None:
            rejected.append(done.rejects)
        if done.items is not None:
            items.append(done.items.with_columns(pl.lit(u).alias("_unit")))
        kept = pl.from_arrow(done.kept)
        hashes = done.hashes if done.hashes is not None else np.zeros(len(kept), np.uint64)
        yield kept.with_columns((pl.lit(u, pl.Int64) * (1 << _ORDER_BITS) + pl.col("_row")).alias("_order"),
                                pl.Series("_hash", hashes, pl.UInt64)).to_arrow().select(schema.names).cast(schema)
    if rejected:
        q = pl.concat([r.select(QUARANTINE.names) for r in rejected], how="vertical_relaxed")
        pq.write_table(q.to_arrow().cast(QUARANTINE), f"{job.quarantine}/part-1-{u:06d}.parquet")
    if items:
        pl.concat(items, how="vertical_relaxed").write_parquet(f"{job.scratch}/items-{u:06d}.parquet")
    Path(f"{job.scratch}/unit-{u:06d}.json").write_text(json.dumps({"rows_in": rows_in}))


def _record_units(job: _Job, ledger: Ledger, derived) -> None:
    """Fold what every unit's task wrote aside into the ledger (rows in, rows quarantined by
    reason) and the derived items (in the source's order, as the local engine stages them)."""
    for u, (s, unit) in enumerate(job.units):
        table = job.specs[s].table
        done = Path(job.scratch) / f"unit-{u:06d}.json"
        ledger.rows_in[(table, unit.path)] += json.loads(done.read_text())["rows_in"]
        rej = Path(job.quarantine) / f"part-1-{u:06d}.parquet"
        if rej.exists():
            for tb, f, reason, c in pl.read_parquet(rej).group_by(["table", "file", "reason"]).len().iter_rows():
                ledger.rejected[(tb, f, reason)] += c
        it = Path(job.scratch) / f"items-{u:06d}.parquet"
        if it.exists():
            derived.add(pl.read_parquet(it).drop("_unit"))


# ----------------------------------------------------------------------------- whole-table checks


def _bot_sessions(kept, limits: Limits) -> set[str]:
    """Sessions with at least ``bot_min_events`` events at a rate above the limit: sizes and
    spans summed per session in each block, then across the cluster; the few bots brought back."""
    from ray.data.aggregate import Max, Min, Sum

    per = (kept.select_columns(["session_id", "timestamp"]).map_batches(_session_spans, batch_format="pyarrow")
           .groupby("session_id").aggregate(Sum("n", alias_name="n"), Min("t0", alias_name="t0"),
                                            Max("t1", alias_name="t1")))
    return {r["session_id"] for r in per.map_batches(_bots_of, batch_format="pyarrow",
                                                     fn_kwargs={"limits": limits}).take_all()}


def _session_spans(b: pa.Table) -> pa.Table:
    df = pl.from_arrow(b).filter(pl.col("session_id").is_not_null())
    return df.group_by("session_id").agg(
        pl.len().cast(pl.Int64).alias("n"), pl.col("timestamp").min().dt.epoch("us").alias("t0"),
        pl.col("timestamp").max().dt.epoch("us").alias("t1")).to_arrow()


def _bots_of(b: pa.Table, limits: Limits) -> pa.Table:
    s = pl.from_arrow(b).with_columns(pl.from_epoch("t0", "us"), pl.from_epoch("t1", "us"))
    return s.filter(bot_rule(limits)).select("session_id").to_arrow()


def _duplicate_rows(kept) -> np.ndarray:
    """The places (``_order``) of rows that repeat an earlier row exactly: rows grouped by
    their hash across the cluster, every one after the first in the source's order."""

    dups = (kept.select_columns(["_hash", "_order"]).groupby("_hash")
            .map_groups(_later_copies, batch_format="pyarrow").take_all())
    return np.sort(np.fromiter((r["_order"] for r in dups), np.int64, len(dups)))


def _later_copies(g: pa.Table) -> pa.Table:
    return pa.table({"_order": np.sort(g.column("_order").to_numpy())[1:]})


# ----------------------------------------------------------------------------- pass two


def _pass_two(ray, job: _Job, table: str, kept, known: pl.Series | None, bots: set[str],
              dups: np.ndarray | None, ledger: Ledger, out_dir: Path) -> None:
    """Flag unknown items, bots and duplicates (the local engine's rules, in its order of
    precedence); rejects go to the quarantine, good rows are numbered (``seq``: their place among
    the table's good rows in the source's order) and written one part per unit."""
    ctx = {"table": table, "job": job, "known": ray.put(known), "bots": ray.put(bots), "dups": ray.put(dups)}
    flagged = kept.map_batches(_flag, batch_format="pyarrow", fn_kwargs=ctx).materialize()
    good: dict[int, int] = {}
    for r in flagged.map_batches(_good_per_unit, batch_format="pyarrow").take_all():
        good[r["_unit"]] = good.get(r["_unit"], 0) + r["n"]
    for r in flagged.map_batches(_rejected_per_file, batch_format="pyarrow").take_all():
        ledger.rejected[(table, job.files[r["_file"]], r["reason"])] += r["n"]
    start, offsets = 0, {}
    for u in sorted(good):
        offsets[u] = start
        start += good[u]
    folder = out_dir / f"{table}.parquet"
    folder.mkdir(exist_ok=True)
    written = flagged.groupby("_unit").map_groups(
        _write_unit, batch_format="pyarrow",
        fn_kwargs={"table": table, "folder": str(folder), "offsets": offsets, "job": job}).take_all()
    for r in written:
        ledger.kept[(table, job.files[r["_file"]])] += r["n"]
    if not good:  # every row rejected: an empty table, as the local engine writes it
        pq.write_table(TABLES[table].empty_table(), folder / "part-000000.parquet")


def _flag(b: pa.Table, table: str, job: _Job, known, bots, dups) -> pa.Table:
    import ray

    known, bots, dups = ray.get([known, bots, dups])  # put once by the driver, read by every task
    df = pl.from_arrow(b)
    out = whole_table_flags(
        df, table, job.limits, known.implode() if known is not None else None,
        pl.Series(sorted(bots), dtype=pl.String).implode() if bots else None,
        pl.Series(np.isin(df["_order"].to_numpy(), dups)) if dups is not None else None,
    ).with_columns((pl.col("_order") // (1 << _ORDER_BITS)).cast(pl.Int64).alias("_unit"))
    rejects = out.filter(pl.col("_reason").is_not_null())
    if not rejects.is_empty():
        cols = [n for n in TABLES[table].names if n != "seq"]
        q = rejects.select(
            pl.lit(table).alias("table"),
            pl.col("_file").replace_strict(list(range(len(job.files))), job.files, return_dtype=pl.String).alias("file"),
            pl.col("_row").alias("row"), pl.col("_column").alias("column"),
            pl.col("_reason").alias("reason"), pl.col("_detail").alias("detail"),
            pl.struct(cols).struct.json_encode().alias("raw"))
        first = int(rejects["_order"].min())
        pq.write_table(q.to_arrow().cast(QUARANTINE), f"{job.quarantine}/part-2-{table}-{first:016x}.parquet")
    return out.select(pl.all().exclude("_column", "_detail", "_hash", "_dup")).to_arrow()


def _good_per_unit(b: pa.Table) -> pa.Table:
    df = pl.from_arrow(b).filter(pl.col("_reason").is_null())
    return df.group_by("_unit").len("n").to_arrow()


def _rejected_per_file(b: pa.Table) -> pa.Table:
    df = pl.from_arrow(b).filter(pl.col("_reason").is_not_null())
    return df.group_by("_file", pl.col("_reason").alias("reason")).len("n").to_arrow()


def _write_unit(g: pa.Table, table: str, folder: str, offsets: dict[int, int], job: _Job) -> pa.Table:
    df = pl.from_arrow(g).filter(pl.col("_reason").is_null()).sort("_row")
    if df.is_empty():
        return pa.table({"_file": pa.array([], pa.int32()), "n": pa.array([], pa.int64())})
    u = int(df["_unit"][0])
    df = df.with_columns(pl.int_range(offsets[u], offsets[u] + len(df), dtype=pl.Int64).alias("seq"))
    pq.write_table(df.select(TABLES[table].names).to_arrow().cast(TABLES[table]), f"{folder}/part-{u:06d}.parquet")
    return df.group_by("_file").len("n").to_arrow()


def stats(out_dir: Path) -> dict[str, Any]:
    """Parts written per table (for the manifest)."""
    return {t: len(list((Path(out_dir) / f"{t}.parquet").glob("*.parquet")))
            for t in ("events", "judgements", "quarantine") if (Path(out_dir) / f"{t}.parquet").is_dir()}
