"""The ingest engine: sources -> validated, pseudonymised canonical tables + quarantine.

Two streaming passes, memory bounded by a few batches whatever the input's size (what the
whole-table checks need, row hashes and session spans, is spilled to scratch by bucket and
decided a bucket at a time):

1. every source is read in batches; row-level checks (types, required fields, values,
   timestamps, text cleaning, PII masking, pseudonymisation) run per batch on worker threads,
   and their results are recorded in the source's order: passing rows are staged (Arrow IPC)
   with a 64-bit hash each, failing rows go to the quarantine with file, row, column, reason;
2. the staged tables are streamed again for the checks that need the whole table: unknown
   items, duplicates (rows whose hash an earlier row had) and bot-like sessions; the final
   Parquet is encoded on a writer thread.

Every table reconciles per file: rows in = rows kept + rows quarantined.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shelfops.data.scratch import (
    Hashes,
    Ledger,
    Quarantine,
    Sessions,
    Stage,
    Writer,
    hash_parts,
    span_parts,
)
from shelfops.data.sources import RawBatch, Rejects, SourceSpec, iter_source
from shelfops.data.validate import Pseudonymiser, Rules, check_batch, raw_json
from shelfops.errors import DataError
from shelfops.tables import TABLES, Reason, parquet_options

CHECK_THREADS = 2


@dataclass
class Limits:
    """Whole-table checks: ``data.cleaning`` (``CleaningConfig``, the one source of defaults),
    built by ``shelfops.data.recipe.limits_from``."""

    batch_rows: int
    drop_duplicates: bool
    require_known_items: bool
    bot_max_events_per_minute: float
    bot_min_events: int
    max_reject_ratio: float


def _reject_rows(table: str, file: str, rows: pl.Series, checked: pl.DataFrame,
                 raw: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({
        "table": table, "file": file, "row": rows, "column": checked["_column"],
        "reason": checked["_reason"], "detail": checked["_detail"], "raw": raw,
    }).with_columns(pl.lit(table).alias("table"), pl.lit(file).alias("file"))


def _canonical(table: str) -> list[str]:
    return [n for n in TABLES[table].names if n != "seq"]


def ingest(
    specs: list[SourceSpec], out_dir: Path, *, rules: Rules, key: bytes, limits: Limits,
    progress: bool = True,
) -> dict:
    """Run both passes; write items/events/judgements/quarantine Parquet into ``out_dir``.

    Returns the counts for the manifest. Raises :class:`RejectRatioExceeded` (after writing
    everything, so the quarantine can be inspected) when a file's reject ratio is too high.
    """
    out_dir = Path(out_dir)
    stage_dir = out_dir / "_stage"
    stage_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger()
    quarantine = Quarantine(out_dir / "quarantine.parquet", ledger)
    ids = Pseudonymiser(key)
    stages = {t: Stage(stage_dir / f"{t}.arrow") for t in TABLES}
    derived = Stage(stage_dir / "derived_items.arrow")
    files: list[str] = []
    sessions = Sessions(stage_dir)
    hashes = {t: Hashes(stage_dir, t) for t in ("events", "judgements")}

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), disable=not progress, transient=False,
    ) as bar:
        task = bar.add_task("ingest: read + check", total=None)
        title_mapped = _read(specs, files, rules, ids, limits, ledger, quarantine, stages, derived, sessions,
                             hashes, lambda k: bar.advance(task, k))
        for s in (*stages.values(), derived):
            s.close()

        # the whole-table decisions are independent of each other and of the catalogue's
        # finishing: bot sessions and each table's duplicates found at once, beside it
        with ThreadPoolExecutor(2, thread_name_prefix="ingest-whole") as pool:
            bots_f = pool.submit(sessions.bots, bot_rule(limits))
            dups_f = {t: pool.submit(h.duplicates) for t, h in hashes.items()} if limits.drop_duplicates else {}
            items, known = finish_items(stages["items"], derived, title_mapped, files, ledger,
                                        quarantine, out_dir, limits)
            bots = bots_f.result()
            dups = {t: f.result() for t, f in dups_f.items()}
        task2 = bar.add_task("ingest: duplicates, unknown items, bots", total=sum(
            stages[t].rows for t in ("events", "judgements")))
        counts_extra = {}
        for table in ("events", "judgements"):
            n = _pass_two(table, stages[table], files, ledger, quarantine, out_dir, limits,
                          known if limits.require_known_items else None,
                          bots if table == "events" else set(),
                          dups.get(table),
                          lambda k: bar.advance(task2, k))
            counts_extra[table] = n
        if items is None and stages["events"].rows:  # no catalogue at all: stub items from events
            items = stub_items(out_dir)
    quarantine.close()
    for p in stage_dir.iterdir():
        p.unlink()
    stage_dir.rmdir()
    return reconcile(ledger, items, len(bots), limits)


def _read(specs: list[SourceSpec], files: list[str], rules: Rules, ids: Pseudonymiser, limits: Limits,
          ledger: Ledger, quarantine: Quarantine, stages: dict, derived: Stage, sessions: Sessions | None,
          hashes: dict[str, Hashes], advance) -> bool:
    """Pass one over ``specs`` (the catalogue first), in the source's order; True when a
    source maps a title (items described by rows without one are not known items)."""
    title_mapped = False
    for spec in sorted(specs, key=lambda s: 0 if s.table == "items" or s.format == "amazon" else 1):
        title_mapped |= "title" in spec.item_columns
        for batch, checked in _checked_ahead(iter_source(spec, limits.batch_rows), files, rules, ids,
                                              limits.drop_duplicates):
            if isinstance(batch, Rejects):
                for tb, f, c in batch.df.group_by(["table", "file"]).len().iter_rows():
                    ledger.rows_in[(tb, f)] += c
                quarantine.add(batch.df)
                continue
            _pass_one(batch, checked, ledger, quarantine, stages, derived, sessions, hashes)
            advance(len(batch.df))
    return title_mapped


def stage_items(specs: list[SourceSpec], stage_dir: Path, files: list[str], rules: Rules, ids: Pseudonymiser,
                limits: Limits, ledger: Ledger, quarantine: Quarantine, progress: bool) -> tuple[dict, Stage]:
    """Pass one over the catalogue's own sources (items tables) alone, as :func:`ingest` does
    it: their staged rows (closed) and the stage that takes items described by other rows (open)."""
    stages = {"items": Stage(stage_dir / "items.arrow")}
    derived = Stage(stage_dir / "derived_items.arrow")
    with Progress(TextColumn("[bold]{task.description}"), TextColumn("{task.completed:,} rows"),
                  disable=not progress, transient=False) as bar:
        task = bar.add_task("ingest: catalogue")
        _read(specs, files, rules, ids, limits, ledger, quarantine, stages, derived, None, {},
              lambda k: bar.advance(task, k))
    stages["items"].close()
    return stages, derived


def stub_items(out_dir: Path) -> dict:
    """No catalogue at all: items are the ids the events name, every other column null."""
    ev_items = pl.scan_parquet(out_dir / "events.parquet").select("item_id").drop_nulls().unique()
    stub = ev_items.collect().sort("item_id")
    full = stub.with_columns([pl.lit(None, dtype=pl.from_arrow(TABLES["items"].empty_table()).schema[c]).alias(c)
                              for c in TABLES["items"].names if c != "item_id"])
    pq.write_table(full.select(TABLES["items"].names).to_arrow().cast(TABLES["items"]), out_dir / "items.parquet",
                   **parquet_options(TABLES["items"]))
    return {"stub_items_from_events": len(stub)}


def reconcile(ledger: Ledger, items: dict | None, bots: int, limits: Limits) -> dict:
    """The manifest's counts: every table and file reconciled (rows in = kept + quarantined),
    the catalogue's own counts, bot sessions, the files whose reject ratio is too high."""
    summary = ledger.summary()
    for table, t in summary.items():
        if not t["reconciled"]:
            raise DataError(f"internal: {table} does not reconcile: {t}")
    if isinstance(items, dict):
        summary.setdefault("items", {"rows_in": 0, "kept": 0, "quarantined": 0, "by_reason": {},
                                     "files": {}, "reconciled": True}).update(items)
    summary["_bots"] = {"sessions": bots}
    too_bad = [
        f"{table} {file}: {v['quarantined']:,} of {v['rows_in']:,} rows quarantined "
        f"({v['quarantined'] / v['rows_in']:.1%} > {limits.max_reject_ratio:.1%})"
        for table, t in summary.items() if not table.startswith("_")
        for file, v in t.get("files", {}).items()
        if v["rows_in"] and v["quarantined"] / v["rows_in"] > limits.max_reject_ratio
    ]
    summary["_reject_ratio_exceeded"] = too_bad
    return summary


def _file_id(files: list[str], file: str) -> int:
    if file not in files:
        files.append(file)
    return files.index(file)


@dataclass
class _Checked:
    """One batch's order-free work of pass one: its rejected rows as the quarantine takes them
    (None when every row passed), the passing rows as staged (Arrow, with their file's id),
    their sessions' sizes and spans (events), their 64-bit row hashes (for duplicates: events
    and judgements) and the item rows the batch describes."""

    rejects: pl.DataFrame | None
    kept: pa.Table
    sessions: pl.DataFrame | None
    hashes: np.ndarray | None
    items: pl.DataFrame | None
    # sessions and hashes as the whole-table checks keep them (bucketed), where pass one made them
    span_parts: list[tuple[int, pa.Table]] | None = None
    hash_parts: list[tuple[int, pa.Table]] | None = None


def _check_and_bucket(batch: RawBatch, file_id: int, rules: Rules, ids: Pseudonymiser, dedupe: bool) -> _Checked:
    """:func:`check_batch_rows` and the bucketing of its sessions and hashes, on a worker thread
    (the recording thread only appends what it is given)."""
    done = check_batch_rows(batch, file_id, rules, ids, dedupe)
    if done.sessions is not None:
        done.span_parts = span_parts(done.sessions)
    if done.hashes is not None:
        done.hash_parts = hash_parts(done.hashes)
    return done


def check_batch_rows(batch: RawBatch, file_id: int, rules: Rules, ids: Pseudonymiser, dedupe: bool) -> _Checked:
    table = batch.table
    checked, source = check_batch(table, batch.df, rules, ids)
    good = checked["_reason"].is_null()
    bad = ~good
    rejects = _reject_rows(table, batch.file, batch.rows.filter(bad), checked.filter(bad),
                           raw_json(source.filter(bad), mask_pii=rules.mask_pii)) if bad.any() else None
    dedupe_key = (batch.df["_dedupe_key"].cast(pl.Int64) if "_dedupe_key" in batch.df.columns
                  else pl.repeat(None, len(batch.df), dtype=pl.Int64, eager=True))
    kept = checked.filter(good).select(_canonical(table)).with_columns(
        batch.rows.filter(good).alias("_row"), dedupe_key.filter(good).alias("_dedupe_key"))
    sessions = hashes = items = None
    if table == "events" and not kept.is_empty():
        sessions = kept.filter(pl.col("session_id").is_not_null()).group_by("session_id").agg(
            pl.len().alias("n"), pl.col("timestamp").min().alias("t0"), pl.col("timestamp").max().alias("t1"))
    if dedupe and table in ("events", "judgements"):
        hashes = row_hashes(kept.select(*_canonical(table), "_dedupe_key"))
    if batch.items is not None:
        it, _ = check_batch("items", batch.items.filter(good), rules, None)
        items = it.filter(pl.col("_reason").is_null()).select(_canonical("items"))
    # the source's dedupe key counts only in the row hash: not staged
    staged = kept.drop("_dedupe_key").with_columns(pl.lit(file_id, pl.Int32).alias("_file")).to_arrow()
    return _Checked(rejects, staged, sessions, hashes, items)


def row_hashes(df: pl.DataFrame) -> np.ndarray:
    """Each row's 64-bit hash over all its columns (equal rows, equal hashes): polars' row
    hasher, a third of the time of hashing the rows as one struct column."""
    return df.hash_rows(seed=0).to_numpy()


def _checked_ahead(batches: Iterator[RawBatch | Rejects], files: list[str], rules: Rules, ids: Pseudonymiser,
                   dedupe: bool, ahead: int = 3) -> Iterator[tuple[RawBatch | Rejects, _Checked | None]]:
    """``(batch, its checks)`` in the source's order, the checks of the next batches running on
    ``CHECK_THREADS`` worker threads while this thread records the last batch's results (polars
    and pyarrow release the GIL: the stage used 1.1 of 2 cores when one thread did it all). The
    order of everything recorded (file ids, quarantine, stages, duplicates) is the source's."""
    pending: deque[tuple[RawBatch | Rejects, Future | None]] = deque()
    with ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="ingest-check") as pool:
        for batch in batches:
            checking = (None if isinstance(batch, Rejects) else
                        pool.submit(_check_and_bucket, batch, _file_id(files, batch.file), rules, ids, dedupe))
            pending.append((batch, checking))
            if len(pending) > ahead:
                b, f = pending.popleft()
                yield b, None if f is None else f.result()
        while pending:
            b, f = pending.popleft()
            yield b, None if f is None else f.result()


def _pass_one(batch: RawBatch, done: _Checked, ledger: Ledger, quarantine: Quarantine, stages: dict,
              derived: Stage, sessions: Sessions | None, hashes: dict[str, Hashes]) -> None:
    """Record one checked batch, in the source's order: its rejects, its passing rows staged,
    its sessions and row hashes kept for the whole-table checks, the items it describes."""
    table = batch.table
    ledger.rows_in[(table, batch.file)] += len(batch.df)
    if done.rejects is not None:
        quarantine.add(done.rejects)
    stages[table].add(done.kept)
    if done.span_parts is not None and sessions is not None:
        sessions.add_parts(done.span_parts)
    if done.hash_parts is not None:
        hashes[table].add_batch(done.hash_parts, done.kept.num_rows)
    if done.items is not None:
        derived.add(done.items)


def bot_rule(limits: Limits) -> pl.Expr:
    """A session (``n`` events from ``t0`` to ``t1``) is a bot's."""
    minutes = ((pl.col("t1") - pl.col("t0")).dt.total_milliseconds() / 60_000).clip(lower_bound=1.0)
    return ((pl.col("n") >= limits.bot_min_events) & pl.col("t0").is_not_null()
            & (pl.col("n") / minutes > limits.bot_max_events_per_minute))


def finish_items(stage: Stage, derived: Stage, title_mapped: bool, files: list[str],
                  ledger: Ledger, quarantine: Quarantine, out_dir: Path, limits: Limits):
    """Catalogue items deduplicated by id (later copies quarantined), plus items described
    by other tables' rows. Returns (counts or None when there is no item info, known ids)."""
    cols = TABLES["items"].names
    frames = []
    if stage.writer is not None:
        cat = stage.read()
        dup = cat["item_id"].is_duplicated() & ~cat["item_id"].is_first_distinct()
        if limits.drop_duplicates and dup.any():
            d = cat.filter(dup)
            quarantine.add(pl.DataFrame({
                "table": "items", "file": [files[i] for i in d["_file"]], "row": d["_row"],
                "column": "item_id", "reason": Reason.duplicate.value,
                "detail": "item_id " + d["item_id"] + " already seen earlier in the catalogue",
                "raw": d.select(pl.struct(cols).struct.json_encode().alias("raw"))["raw"],
            }))
            cat = cat.filter(~dup)
        for fid, n in cat.group_by("_file").len().iter_rows():
            ledger.kept[("items", files[fid])] += n
        frames.append(cat.select(cols).with_columns(pl.lit(0).alias("_src")))
    n_derived = 0
    if derived.writer is not None:
        d = derived.read()
        d = d.group_by("item_id", maintain_order=True).agg(
            [pl.col(c).drop_nulls().first() for c in cols if c != "item_id"]
        )
        if frames:
            d = d.filter(~pl.col("item_id").is_in(frames[0]["item_id"].implode()))
        n_derived = len(d)
        frames.append(d.select(cols).with_columns(pl.lit(1).alias("_src")))
    if not frames:
        return None, None
    items = pl.concat(frames, how="vertical_relaxed")
    known_rows = items.filter((pl.col("_src") == 0) | pl.col("title").is_not_null()) if title_mapped else items
    known = known_rows["item_id"]
    pq.write_table(items.select(cols).to_arrow().cast(TABLES["items"]), out_dir / "items.parquet",
                   **parquet_options(TABLES["items"]))
    return {"derived_from_other_tables": n_derived, "total_items": len(items)}, known


def _marked(places: np.ndarray, at: int, n: int) -> np.ndarray:
    """Rows ``at .. at + n`` as booleans: True where the row's place is in sorted ``places``."""
    out = np.zeros(n, dtype=bool)
    lo, hi = np.searchsorted(places, [at, at + n])
    out[places[lo:hi] - at] = True
    return out


def whole_table_flags(df: pl.DataFrame, table: str, limits: Limits, known: pl.Series | None,
                      bots: pl.Series | None, dup: pl.Series | None) -> pl.DataFrame:
    """``df`` with ``_reason``, ``_column`` and ``_detail`` of the checks that need the whole
    table (null where the row passes), the first that fails winning: an item not in the catalogue
    (``known``, imploded), a bot's session (``bots``, imploded), an exact copy of an earlier row
    (``dup``, per row)."""
    reason = pl.lit(None, pl.String)
    column = pl.lit(None, pl.String)
    detail = pl.lit(None, pl.String)
    conds = []
    if known is not None:
        conds.append((pl.col("item_id").is_not_null() & ~pl.col("item_id").is_in(known),
                      Reason.unknown_item.value, "item_id",
                      pl.lit("item_id ") + pl.col("item_id")
                      + pl.lit(" is not in the catalogue (and the row does not describe it)")))
    if table == "events" and bots is not None:
        conds.append((pl.col("session_id").is_in(bots), Reason.bot_session.value, "session_id",
                      pl.lit(f"session above {limits.bot_max_events_per_minute:g} events/minute "
                             f"with >= {limits.bot_min_events} events")))
    if dup is not None:
        df = df.with_columns(dup.alias("_dup"))
        conds.append((pl.col("_dup"), Reason.duplicate.value, None,
                      pl.lit(f"exact duplicate of an earlier {table} row")))
    for cond, why, col, msg in reversed(conds):
        reason = pl.when(cond).then(pl.lit(why)).otherwise(reason)
        column = pl.when(cond).then(pl.lit(col, pl.String)).otherwise(column)
        detail = pl.when(cond).then(msg).otherwise(detail)
    return df.with_columns(reason.alias("_reason"), column.alias("_column"), detail.alias("_detail"))


def flagged_rejects(bad: pl.DataFrame, table: str, file: pl.Expr) -> pl.DataFrame:
    """Rows :func:`whole_table_flags` failed, as the quarantine takes them (``file``: their file)."""
    return bad.select(
        pl.lit(table).alias("table"), file.alias("file"), pl.col("_row").alias("row"),
        pl.col("_column").alias("column"), pl.col("_reason").alias("reason"), pl.col("_detail").alias("detail"),
        pl.struct(_canonical(table)).struct.json_encode().alias("raw"),
    )


class Members:
    """A fixed set of strings (the catalogue's ids, bots' sessions) that every batch of pass two
    asks about. Asking Arrow's ``is_in`` builds a hash table of the whole set each time: with a
    100M-event log's 500k catalogue ids, 500 batches spent ~200 ms each building it (pass two
    4.5x slower than linear). Where the set is larger than a batch, each batch's distinct values
    are looked up in a Python set built once instead, and only the few that matter (the misses
    or the hits) go to ``is_in``."""

    def __init__(self, values: pl.Series) -> None:
        self.array = values.to_arrow()
        self.values = set(values.to_list())
        self._typed: dict[pa.DataType, pa.Array] = {}  # the set in each column type asked (cast once)

    def rows(self, col: pa.ChunkedArray, *, inside: bool) -> np.ndarray:
        """Per row of ``col``: its value is (``inside``) or is not in the set; nulls False."""
        if len(self.values) <= len(col):
            if col.type not in self._typed:
                self._typed[col.type] = self.array.cast(col.type)
            found = pc.is_in(col, value_set=self._typed[col.type])
        else:
            distinct = [v for v in pc.unique(col).to_pylist() if v is not None]
            found = pc.is_in(col, value_set=pa.array([v for v in distinct if v in self.values], col.type))
        return (found if inside else pc.and_(pc.is_valid(col), pc.invert(found))).to_numpy(zero_copy_only=False)

    def among(self, values: pl.Series) -> pl.Series:
        """Those of ``values`` (few) in the set, imploded, as :func:`whole_table_flags` takes it."""
        return pl.Series([v for v in values.unique().to_list() if v in self.values], dtype=pl.String).implode()


def flagged_rows(tbl: pa.Table, known: Members | None, bots: Members | None,
                 dup: np.ndarray | None) -> np.ndarray:
    """The rows of ``tbl`` that :func:`whole_table_flags` would flag (booleans), found in Arrow
    without converting the table: most rows pass, and only those flagged need their reasons."""
    out = np.zeros(tbl.num_rows, dtype=bool) if dup is None else dup.copy()
    if known is not None:
        out |= known.rows(tbl["item_id"], inside=False)
    if bots is not None and bots.values:
        out |= bots.rows(tbl["session_id"], inside=True)
    return out


def _pass_two(table: str, stage: Stage, files: list[str], ledger: Ledger,
              quarantine: Quarantine, out_dir: Path, limits: Limits, known: pl.Series | None,
              bots: set[str], dups: np.ndarray | None, advance) -> int:
    """Second pass over ``table``'s stage: unknown items, bots' sessions and the rows at the
    places ``dups`` (sorted) quarantined, the rest numbered and written. The staged rows stay
    Arrow from the stage to the writer (flags found by :func:`flagged_rows`; only the flagged
    rows go through polars for their reasons): converting every batch to polars and back was a
    fifth of the pass."""
    if stage.writer is None:
        if any(t == table for t, _ in ledger.rows_in):
            pq.write_table(TABLES[table].empty_table(), out_dir / f"{table}.parquet")
        return 0
    writer = Writer(out_dir / f"{table}.parquet", TABLES[table])
    at = 0  # rows of the stage read so far: where this batch's places start
    known_m = Members(known) if known is not None else None
    bot_m = Members(pl.Series(sorted(bots), dtype=pl.String)) if bots else None
    names = pa.array(files, pa.string())
    seq = 0
    for tbl in stage.batches(limits.batch_rows):
        n = tbl.num_rows
        dup = _marked(dups, at, n) if dups is not None else None
        flagged = flagged_rows(tbl, known_m, bot_m, dup)
        if flagged.any():
            rows, dup_rows = tbl.filter(flagged), (dup[flagged] if dup is not None else None)

            def rejects(rows: pa.Table = rows, dup_rows: np.ndarray | None = dup_rows) -> pl.DataFrame:
                df = pl.from_arrow(rows)
                bad = whole_table_flags(df, table, limits, known_m and known_m.among(df["item_id"]),
                                        bot_m and bot_m.among(df["session_id"]),
                                        None if dup_rows is None else pl.Series(dup_rows))
                bad = bad.with_columns(pl.Series("_path", pc.take(names, bad["_file"].to_arrow())))
                return flagged_rejects(bad, table, pl.col("_path"))

            quarantine.add(rejects)  # made on the quarantine's writer thread
            tbl = tbl.filter(~flagged)
        for c in pc.value_counts(tbl["_file"]).to_pylist():
            ledger.kept[(table, files[c["values"]])] += c["counts"]
        tbl = tbl.append_column("seq", pa.array(np.arange(seq, seq + tbl.num_rows, dtype=np.int64)))
        seq += tbl.num_rows
        at += n
        writer.write(tbl.select(TABLES[table].names))
        advance(n)
    writer.close()
    return seq
