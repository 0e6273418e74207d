"""What an ingest keeps between its passes and writes as it goes: the per-file counts (``Ledger``),
Parquet files written on a writer thread (``Writer``), the quarantine, the staged rows of pass
one (``Stage``, Arrow IPC read back memory-mapped) and the whole-table checks' spills by bucket
(``Spill``: row hashes for duplicates, session spans for bots), with the decisions made from them.
Used by both engines' ingest (``shelfops.data.ingest``, ``shelfops.data.ray_ingest``)."""

from __future__ import annotations

import mmap
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shelfops.tables import QUARANTINE, parquet_options

_Q_SCHEMA = pl.Schema(pl.from_arrow(QUARANTINE.empty_table()).schema)


@dataclass
class Ledger:
    """Per (table, file) counts; the source of the manifest's reconciliation."""

    rows_in: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    kept: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    rejected: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))

    def summary(self) -> dict:
        out: dict = {}
        for (table, file), n in sorted(self.rows_in.items()):
            t = out.setdefault(table, {"rows_in": 0, "kept": 0, "quarantined": 0,
                                       "by_reason": {}, "files": {}})
            q = {r: c for (tb, f, r), c in self.rejected.items() if tb == table and f == file}
            nq = sum(q.values())
            k = self.kept[(table, file)]
            t["files"][file] = {"rows_in": n, "kept": k, "quarantined": nq, "by_reason": q,
                                "reconciled": n == k + nq}
            t["rows_in"] += n
            t["kept"] += k
            t["quarantined"] += nq
            for r, c in q.items():
                t["by_reason"][r] = t["by_reason"].get(r, 0) + c
        for t in out.values():
            t["reconciled"] = t["rows_in"] == t["kept"] + t["quarantined"]
        return out


class Writer:
    """A Parquet file written on a writer thread while the calling thread computes the next batch
    (pyarrow releases the GIL as it encodes: the writes were 3.5 s of a 10M-event ingest, on the
    thread that did everything else); two batches queued at most, so memory stays that of a few
    batches. ``prepare`` (on the writer thread) turns what :meth:`write` is given into the Arrow
    table to write, or None for nothing."""

    def __init__(self, path: Path, schema: pa.Schema,
                 prepare: Callable[[Any], pa.Table | None] | None = None) -> None:
        self.schema = schema
        self.prepare = prepare or _as_arrow
        self.writer = pq.ParquetWriter(path, schema, **parquet_options(schema))
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ingest-write")
        self.pending: deque[Future] = deque()

    def _write(self, item: Any) -> None:
        tbl = self.prepare(item)
        if tbl is not None and tbl.num_rows:
            self.writer.write_table(tbl.cast(self.schema))

    def write(self, item: Any) -> None:
        while len(self.pending) >= 2:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, item))

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown()
            self.writer.close()


def _as_arrow(df: pl.DataFrame | pa.Table) -> pa.Table:
    return df.to_arrow() if isinstance(df, pl.DataFrame) else df


class Quarantine:
    """The rejected rows' file. What :meth:`add` is given (rows, or a function that makes them,
    so that pass two's rejects are built off its thread: 1M bot-session rows as JSON were a
    second of it) is made, counted and written on a writer thread, in the order given; the
    counts reach the ledger at :meth:`close`."""

    def __init__(self, path: Path, ledger: Ledger) -> None:
        self.path = path
        self.ledger = ledger
        self.writer: Writer | None = None
        self.counts: dict[tuple[str, str, str], int] = defaultdict(int)

    def _prepare(self, rows: pl.DataFrame | Callable[[], pl.DataFrame]) -> pa.Table | None:
        df = rows() if callable(rows) else rows
        if df.is_empty():
            return None
        df = df.select(_Q_SCHEMA.names()).cast(dict(_Q_SCHEMA))
        for table, file, reason, c in df.group_by(["table", "file", "reason"]).len().iter_rows():
            self.counts[(table, file, reason)] += c
        return df.to_arrow()

    def add(self, rows: pl.DataFrame | Callable[[], pl.DataFrame]) -> None:
        if isinstance(rows, pl.DataFrame) and rows.is_empty():
            return
        if self.writer is None:
            self.writer = Writer(self.path, QUARANTINE, self._prepare)
        self.writer.write(rows)

    def close(self) -> None:
        if self.writer is None:
            pq.write_table(QUARANTINE.empty_table(), self.path, **parquet_options(QUARANTINE))
            return
        self.writer.close()
        for k, c in self.counts.items():
            self.ledger.rejected[k] += c
        self.counts.clear()


def compact_offsets(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its large (64-bit offset) text and binary columns as 32-bit ones: what
    polars hands over is large, what the canonical tables store is not, and a staged copy in the
    smaller layout is 8 bytes a row less per text column (the 10M-event stage 1.36 -> 1.12 GB,
    each byte written to scratch in pass one and read back in pass two)."""
    small = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}
    return pa.schema([f.with_type(small.get(f.type, f.type)) for f in schema], metadata=schema.metadata)


class Stage:
    """Append-only staging of one table's passing rows, read back once by the second pass: an
    Arrow IPC file (written as the batches are, read back batch by batch), which
    costs a fraction of a Parquet write and read for scratch space that never leaves the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self._sink: pa.OSFile | None = None
        self._schema: pa.Schema | None = None  # the first batch's: later ones are cast to it
        self.rows = 0
        self.max_column_bytes = (1 << 31) - 1  # what a 32-bit offset column holds (a test lowers it)

    def add(self, df: pl.DataFrame | pa.Table) -> None:
        if len(df) == 0:
            return
        tbl = df.to_arrow() if isinstance(df, pl.DataFrame) else df
        if self.writer is None:
            self._sink, self._schema = pa.OSFile(str(self.path), "wb"), compact_offsets(tbl.schema)
            self.writer = pa.ipc.new_file(self._sink, self._schema)
        self._write(tbl)
        self.rows += len(tbl)

    def _write(self, tbl: pa.Table) -> None:
        """``tbl`` in the stage's schema; a batch with more text in one column than 32-bit offsets
        address (2 GiB: long descriptions, say) is written in halves."""
        big = max((c.nbytes for c in tbl.columns if c.type in (pa.large_string(), pa.large_binary())), default=0)
        if big > self.max_column_bytes and tbl.num_rows > 1:
            half = tbl.num_rows // 2
            self._write(tbl.slice(0, half))
            self._write(tbl.slice(half))
            return
        self.writer.write_table(tbl.cast(self._schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self._sink.close()

    def read(self) -> pl.DataFrame:
        """The whole stage at once (the catalogue: small next to the events)."""
        with pa.OSFile(str(self.path)) as src:
            return pl.from_arrow(pa.ipc.open_file(src).read_all())

    def batches(self, n: int) -> Iterator[pa.Table]:
        """Batches of about ``n`` rows (Arrow tables, as staged), in the order they were staged.

        The file is memory-mapped, its batches used where they lie (reading it into fresh
        buffers was ~0.5-1 CPU-s of pass two at 10M events, most of it the kernel handing out
        and zeroing pages); the pages of batches already handed on are dropped from the process
        as it goes (a mapped file's pages count in its resident memory, which must stay flat
        whatever the input's size; one touched again is read back from the page cache)."""
        if self.writer is None:
            return
        with open(self.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        whole = pa.py_buffer(mm)
        reader = pa.ipc.open_file(whole)
        pending: list[pa.RecordBatch] = []
        rows = 0
        for i in range(reader.num_record_batches):
            rb = reader.get_batch(i)
            pending.append(rb)
            rows += rb.num_rows
            if rows >= n or i == reader.num_record_batches - 1:
                first = min((b.address for c in pending[0].columns for b in c.buffers() if b is not None),
                            default=whole.address) - whole.address
                # two batches before this one may still be queued for writing: keep their pages
                done = max(0, first - 3 * sum(b.nbytes for b in pending)) // mmap.PAGESIZE * mmap.PAGESIZE
                if done:
                    mm.madvise(mmap.MADV_DONTNEED, 0, done)
                yield pa.Table.from_batches(pending)
                pending, rows = [], 0


class Spill:
    """Rows of a whole-table check kept by bucket (their 64-bit key ``% BUCKETS``) as the batches
    come, then read back one bucket at a time: rows of equal key share a bucket, in arrival
    order within it, so a check that groups by that key needs the memory of one bucket whatever
    the table's size (at 100M events, all row hashes and session spans held at once made a 4.8 GB
    peak). Buckets are held in memory up to ``budget`` bytes in all, then appended to their
    scratch files together: a few large appends instead of 32 small ones a batch (spilling every
    batch was 2 s of a 15 s ingest at 10M), and memory flat whatever the size (256 MB held made a
    100M-event ingest peak at 2.65 GB, 64 MB at 1.43 GB)."""

    BUCKETS = 32
    BUDGET = 64 << 20

    def __init__(self, folder: Path, name: str, budget: int = BUDGET) -> None:
        self.folder, self.name, self.budget = folder, name, budget
        self.sinks: dict[int, tuple[pa.OSFile, pa.ipc.RecordBatchFileWriter, pa.Schema]] = {}
        self.held: dict[int, list[pa.Table]] = defaultdict(list)
        self.held_bytes = 0

    def _path(self, k: int) -> Path:
        return self.folder / f"spill-{self.name}-{k:02d}.arrow"

    def add(self, df: pl.DataFrame, key: np.ndarray) -> None:
        self.add_parts(bucketed(df, key, self.BUCKETS))

    def add_parts(self, parts: list[tuple[int, pa.Table]]) -> None:
        """Append :func:`bucketed` parts (of one batch, in arrival order)."""
        for k, part in parts:
            self.held[k].append(part)
            self.held_bytes += part.nbytes
        if self.held_bytes > self.budget:
            self._flush()

    def _flush(self) -> None:
        for k, parts in self.held.items():
            if k not in self.sinks:
                sink = pa.OSFile(str(self._path(k)), "wb")
                self.sinks[k] = (sink, pa.ipc.new_file(sink, parts[0].schema), parts[0].schema)
            self.sinks[k][1].write_table(pa.concat_tables(parts).cast(self.sinks[k][2]))
        self.held, self.held_bytes = defaultdict(list), 0

    def buckets(self) -> Iterator[pl.DataFrame]:
        """Each bucket's rows in arrival order; its file is gone once read."""
        for k in sorted(set(self.sinks) | set(self.held)):
            parts = []
            if k in self.sinks:
                sink, writer, schema = self.sinks.pop(k)
                writer.close()
                sink.close()
                with pa.OSFile(str(self._path(k))) as src:
                    parts.append(pa.ipc.open_file(src).read_all())
                self._path(k).unlink()
            parts += self.held.pop(k, [])
            yield pl.from_arrow(pa.concat_tables([p.cast(parts[0].schema) for p in parts]))
        self.held_bytes = 0


def bucketed(df: pl.DataFrame, key: np.ndarray, buckets: int = Spill.BUCKETS) -> list[tuple[int, pa.Table]]:
    """``df``'s rows split by ``key % buckets``: (bucket, its rows in their order), non-empty
    buckets only (one stable sort of the bucket numbers and one take)."""
    b = (key % buckets).astype(np.min_scalar_type(buckets - 1))  # few bits: numpy's stable sort is a radix sort
    order = np.argsort(b, kind="stable")
    cuts = np.searchsorted(b[order], np.arange(buckets + 1))
    tbl = df.to_arrow().take(order)
    return [(k, tbl.slice(cuts[k], cuts[k + 1] - cuts[k])) for k in range(buckets) if cuts[k + 1] > cuts[k]]


class Hashes(Spill):
    """One table's 64-bit row hashes with each row's place in the staging order."""

    def __init__(self, folder: Path, table: str) -> None:
        super().__init__(folder, f"hashes-{table}")
        self.n = 0

    def add(self, h: np.ndarray) -> None:  # type: ignore[override]
        self.add_batch(hash_parts(h), len(h))

    def add_batch(self, parts: list[tuple[int, pa.Table]], n: int) -> None:
        """The next ``n`` staged rows' :func:`hash_parts` (places counted from 0 in the batch)."""
        base, self.n = self.n, self.n + n
        self.add_parts([(k, t.set_column(t.schema.get_field_index("pos"), "pos", pc.add(t["pos"], base)))
                        for k, t in parts])

    def duplicates(self) -> np.ndarray:
        """The sorted staging places of rows whose hash an earlier row had."""
        found = [later_copies(t["h"], t["pos"]) for t in self.buckets()]
        return np.sort(np.concatenate([np.zeros(0, np.int64), *found]))


def hash_parts(h: np.ndarray) -> list[tuple[int, pa.Table]]:
    """One batch's row hashes with their places in it, bucketed by hash."""
    return bucketed(pl.DataFrame({"h": h, "pos": np.arange(len(h), dtype=np.int64)}), h)


class Sessions(Spill):
    """The events' session spans (id, events, first and last time), a few rows a batch."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "sessions")

    def add(self, spans: pl.DataFrame) -> None:  # type: ignore[override]
        self.add_parts(span_parts(spans))

    def bots(self, rule: pl.Expr) -> set[str]:
        """Sessions with at least ``bot_min_events`` events at a rate above the limit."""
        return {s for part in self.buckets()
                for s in merge_sessions([part]).filter(rule)["session_id"].to_list()}


def span_parts(spans: pl.DataFrame) -> list[tuple[int, pa.Table]]:
    """One batch's session spans bucketed by session."""
    return bucketed(spans, spans["session_id"].hash(seed=1).to_numpy())


def later_copies(hashes: pl.Series, places: pl.Series) -> np.ndarray:
    """The places of rows whose hash a row of an earlier place had (rows given in any order)."""
    df = pl.DataFrame({"h": hashes, "p": places})
    if not df["p"].is_sorted():  # a spill's bucket is already in arrival order: no sort
        df = df.sort("p")
    return df.filter(~pl.col("h").is_first_distinct())["p"].to_numpy()


def merge_sessions(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Session spans (``session_id, n, t0, t1``) of several parts summed per session."""
    return pl.concat(parts).group_by("session_id").agg(
        pl.col("n").sum(), pl.col("t0").min(), pl.col("t1").max()
    )
