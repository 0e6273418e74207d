"""Labels and event splits on Ray Data (``data.engine: ray``), over the events
:mod:`shelfops.data.ray_ingest` wrote as Parquet parts: the same rows as the local engine's
:func:`shelfops.data.labels.derive_judgements`, :func:`shelfops.data.splits.time_split` and
:func:`shelfops.data.splits.leave_one_out`, computed where the parts are.

    labels   part -> events keyed by their occurrence (request, else session), bucketed
             bucket -> occurrence counts per (query, item), bucketed by the pair
             pair bucket -> counts summed, grades -> labels.parquet/part-<bucket>
    time     its bounds from one look at the time column; part -> its rows in train / valid /
             test (/ undated) -> splits/events_<split>.parquet/part-<part>, source order kept
    sequences  part -> interactions bucketed by user; bucket -> leave-one-out of its users
             -> splits/sequences_<split>.parquet/part-<bucket>

Each bucket holds whole occurrences, whole pairs, whole users, so what a bucket computes is
what the whole table would give for them; occurrence counts are integers, so their sums, and
the grades made from them, do not depend on how the events were cut.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from shelfops.config.schema import LabelConfig
from shelfops.data import splits as splitting
from shelfops.data.labels import grades_from_counts, merge_counts, occurrence_counts
from shelfops.data.ray_tasks import run_tasks, write_buckets
from shelfops.tables import EVENTS

_LABEL_COLUMNS = ["event_type", "item_id", "request_id", "session_id", "seq", "query"]
_LOO_COLUMNS = ["user_id", "item_id", "event_type", "seq", "timestamp"]


@dataclass(frozen=True)
class _Job:
    parts: list[str]  # the events' Parquet parts, in the source's order
    out: str  # the dataset folder
    scratch: str
    buckets: int


def job_for(out_dir: Path) -> _Job:
    parts = sorted(str(p) for p in (Path(out_dir) / "events.parquet").glob("*.parquet"))
    return _Job(parts, str(out_dir), str(Path(out_dir) / "_derive"), max(1, min(64, len(parts))))


def derive_labels(ray, out_dir: Path, lab: LabelConfig) -> int:
    """``labels.parquet`` (a folder of parts) from the events; the number of labelled pairs."""
    job = job_for(out_dir)
    Path(job.scratch).mkdir(parents=True, exist_ok=True)
    run_tasks(ray, job, _by_occurrence, range(len(job.parts)))
    run_tasks(ray, job, _count_bucket, range(job.buckets))
    folder = Path(out_dir) / "labels.parquet"
    folder.mkdir(exist_ok=True)
    n = run_tasks(ray, job, _grade_bucket, range(job.buckets), lab=lab.model_dump())
    shutil.rmtree(job.scratch)
    return sum(r["pairs"] for r in n)


def _buckets(df: pl.DataFrame, key: pl.Expr, job: _Job, name: str, piece: int) -> None:
    write_buckets(df, key.hash(seed=3), job.buckets, job.scratch, name, piece)


def _by_occurrence(job: _Job, p: int) -> dict:
    ev = pl.read_parquet(job.parts[p], columns=_LABEL_COLUMNS)
    key = pl.coalesce("request_id", "session_id")
    _buckets(ev.filter(key.is_not_null()), key, job, "ev", p)
    return {"part": p}


def _count_bucket(job: _Job, b: int) -> dict:
    files = sorted(Path(job.scratch).glob(f"ev-{b:03d}-*.parquet"))
    if files:
        counts = occurrence_counts(pl.scan_parquet(files)).collect()
        _buckets(counts, pl.struct("query", "item_id"), job, "cnt", b)
    return {"bucket": b}


def _grade_bucket(job: _Job, b: int, lab: dict) -> dict:
    files = sorted(Path(job.scratch).glob(f"cnt-{b:03d}-*.parquet"))
    if not files:
        return {"pairs": 0}
    graded = grades_from_counts(merge_counts(pl.scan_parquet(files)), purchase=lab["purchase"],
                                add_to_cart=lab["add_to_cart"], click=lab["click"], impression=lab["impression"],
                                min_impressions=lab["min_impressions"])
    graded.write_parquet(f"{job.out}/labels.parquet/part-{b:06d}.parquet")
    return {"pairs": len(graded)}


# ----------------------------------------------------------------------------- splits


def time_split(ray, out_dir: Path, *, cutoff, val_days: float, test_days: float) -> dict[str, pl.LazyFrame]:
    """``splits/events_<split>.parquet`` folders; lazy scans of them (for the summary)."""
    job = job_for(out_dir)
    val_start, test_start, nulls = splitting.time_bounds(pl.scan_parquet(job.parts), cutoff=cutoff,
                                                         val_days=val_days, test_days=test_days)
    names = ["train", "valid", "test", *(["undated"] if nulls else [])]
    for n in names:
        (Path(out_dir) / "splits" / f"events_{n}.parquet").mkdir(parents=True, exist_ok=True)
    run_tasks(ray, job, _time_part, range(len(job.parts)), bounds=(val_start, test_start), names=names)
    return {n: pl.scan_parquet(Path(out_dir) / "splits" / f"events_{n}.parquet") for n in names}


def _time_part(job: _Job, p: int, bounds: tuple[Any, Any], names: list[str]) -> dict:
    ev = pl.read_parquet(job.parts[p])
    val_start, test_start = bounds
    t = pl.col("timestamp")
    conds = {"train": t < val_start, "valid": (t >= val_start) & (t < test_start), "test": t >= test_start,
             "undated": t.is_null()}
    for n in names:
        ev.filter(conds[n]).write_parquet(f"{job.out}/splits/events_{n}.parquet/part-{p:06d}.parquet")
    return {"part": p}


def leave_one_out(ray, out_dir: Path) -> dict[str, pl.LazyFrame]:
    """``splits/sequences_<split>.parquet`` folders; lazy scans of them."""
    job = job_for(out_dir)
    Path(job.scratch).mkdir(parents=True, exist_ok=True)
    for n in ("train", "valid", "test"):
        (Path(out_dir) / "splits" / f"sequences_{n}.parquet").mkdir(parents=True, exist_ok=True)
    run_tasks(ray, job, _by_user, range(len(job.parts)))
    run_tasks(ray, job, _loo_bucket, range(job.buckets))
    shutil.rmtree(job.scratch)
    return {n: pl.scan_parquet(Path(out_dir) / "splits" / f"sequences_{n}.parquet")
            for n in ("train", "valid", "test")}


def _by_user(job: _Job, p: int) -> dict:
    ev = pl.read_parquet(job.parts[p], columns=_LOO_COLUMNS).filter(
        pl.col("event_type").is_in(list(splitting.LOO_EVENT_TYPES)) & pl.col("user_id").is_not_null()
        & pl.col("item_id").is_not_null())
    _buckets(ev, pl.col("user_id"), job, "loo", p)
    return {"part": p}


def _loo_bucket(job: _Job, b: int) -> dict:
    files = sorted(Path(job.scratch).glob(f"loo-{b:03d}-*.parquet"))
    empty = pl.DataFrame(schema={c: pl.from_arrow(EVENTS.empty_table()).schema[c] for c in _LOO_COLUMNS})
    ev = pl.scan_parquet(files) if files else empty.lazy()
    for n, df in splitting.leave_one_out(ev).items():
        df.write_parquet(f"{job.out}/splits/sequences_{n}.parquet/part-{b:06d}.parquet")
    return {"bucket": b}
