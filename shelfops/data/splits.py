"""Train / validation / test splits that cannot leak.

* :func:`leave_one_out`: the S3-Rec protocol for sequential recommendation: per user the
  last interaction is test, the one before it validation, everything earlier training.
* :func:`time_split`: by timestamp, ``train < val_start <= valid < test_start <= test``.
* :func:`group_kfold`: for search judgements, every row of a (normalised) query lands in
  the same fold, chosen by a keyed hash of the query and the seed, so the assignment is
  the same across runs, processes and files.
* :func:`split_summary`: counts for the dataset manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from shelfops.data.text import normalise_query
from shelfops.errors import ConfigError, DataError, SchemaError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
LOO_EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")


def _require(names: Sequence[str], columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise SchemaError(
            f"{what} needs column(s) {', '.join(missing)}", columns=missing, column=missing[0]
        )


# --------------------------------------------------------------------------- leave-one-out


def leave_one_out(
    events: pl.LazyFrame | pl.DataFrame,
    *,
    event_types: Sequence[str] = LOO_EVENT_TYPES,
    max_len: int = 50,
) -> dict[str, pl.DataFrame]:
    """S3-Rec leave-one-out over each user's interaction sequence.

    Interactions are events of ``event_types`` with a ``user_id`` and an ``item_id``. A
    user's order is ``(timestamp, seq)`` when every one of the user's interactions has a
    timestamp, and ``seq`` (source order) alone otherwise. Consecutive duplicate items are
    kept as they are in the source (as S3-Rec does).

    Returns

    * ``train``: ``user_id, item_id, seq, position`` (``position`` = 0-based rank in the
      user's training sequence), sorted by ``user_id, position``; for a user with ``n >= 3``
      interactions it holds the first ``n - 2``.
    * ``valid``: one row per user with ``n >= 3``: ``user_id``, ``item_id`` (the target:
      the second-to-last interaction), ``seq`` (the target's), ``history`` (the items before
      the target, oldest first, the last ``max_len`` of them).
    * ``test``: the same for the last interaction; its history ends with the valid target.

    Users with fewer than 3 interactions cannot give both targets: all their interactions
    stay in ``train`` and they appear in neither ``valid`` nor ``test``.
    """
    if not isinstance(max_len, int) or max_len < 1:
        raise ConfigError([f"max_len must be an integer >= 1, got {max_len!r}"], "leave_one_out")
    lf = events.lazy()
    names = lf.collect_schema().names()
    _require(names, ("user_id", "item_id", "event_type", "seq"), "leave_one_out")
    ts = (
        pl.col("timestamp") if "timestamp" in names else pl.lit(None, pl.Datetime("ms", "UTC"))
    )
    ordered = (
        lf.filter(
            pl.col("event_type").is_in(list(event_types))
            & pl.col("user_id").is_not_null()
            & pl.col("item_id").is_not_null()
        )
        .select(
            pl.col("user_id").cast(pl.String),
            pl.col("item_id").cast(pl.String),
            pl.col("seq").cast(pl.Int64),
            ts.alias("_ts"),
        )
        .with_columns(
            pl.when(pl.col("_ts").is_not_null().all().over("user_id"))
            .then(pl.col("_ts"))
            .otherwise(None)
            .alias("_ts")
        )
        .sort("user_id", "_ts", "seq", nulls_last=False)
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("item_id").alias("items"), pl.col("seq").alias("seqs"))
        .with_columns(pl.col("items").list.len().alias("_n"))
        .collect()
    )
    n_train = pl.when(pl.col("_n") >= 3).then(pl.col("_n") - 2).otherwise(pl.col("_n"))
    train = (
        ordered.select(
            "user_id",
            pl.col("items").list.head(n_train).alias("item_id"),
            pl.col("seqs").list.head(n_train).alias("seq"),
        )
        .explode("item_id", "seq")
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("user_id").alias("position"))
    )
    full = ordered.filter(pl.col("_n") >= 3)

    def target(offset: int) -> pl.DataFrame:  # offset 2: valid, 1: test
        before = pl.col("_n") - offset
        return full.select(
            "user_id",
            pl.col("items").list.get(-offset).alias("item_id"),
            pl.col("seqs").list.get(-offset).alias("seq"),
            pl.col("items").list.head(before).list.tail(max_len).alias("history"),
        )

    return {"train": train, "valid": target(2), "test": target(1)}


# --------------------------------------------------------------------------- time


def _as_column_time(value: datetime, dtype: pl.DataType) -> datetime:
    """``value`` in the column's zone: naive values are taken to be in that zone (UTC)."""
    tz = getattr(dtype, "time_zone", None)
    if tz is not None:
        return value.replace(tzinfo=ZoneInfo(tz)) if value.tzinfo is None else value
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def time_split(
    df: pl.LazyFrame | pl.DataFrame,
    *,
    time_col: str = "timestamp",
    cutoff: datetime | None = None,
    val_days: float = 1.0,
    test_days: float = 2.0,
) -> dict[str, pl.DataFrame]:
    """Split by time: ``train < val_start <= valid < test_start <= test``.

    ``test_start`` is ``cutoff``, by default the latest timestamp minus ``test_days``;
    ``val_start`` is ``test_start - val_days``. Row order is kept within each split. A
    naive ``cutoff`` is read in the column's zone (UTC for canonical events).

    Rows whose ``time_col`` is null cannot be placed without risking leakage: they are in
    none of the three splits and come back under an extra ``"undated"`` key (present only
    when there are such rows), so the parts always add up to the input.

    Raises :class:`SchemaError` when ``time_col`` is missing or not a datetime/date, and
    :class:`DataError` when no row has a time (use :func:`leave_one_out` then).
    """
    lf = df.lazy()
    val_start, test_start, nulls = time_bounds(lf, time_col=time_col, cutoff=cutoff, val_days=val_days,
                                               test_days=test_days)
    t = pl.col(time_col)
    parts = [
        lf.filter(t < val_start),
        lf.filter((t >= val_start) & (t < test_start)),
        lf.filter(t >= test_start),
    ]
    if nulls:
        parts.append(lf.filter(t.is_null()))
    return dict(zip(("train", "valid", "test", "undated"), pl.collect_all(parts)))


def time_bounds(lf: pl.LazyFrame, *, time_col: str = "timestamp", cutoff: datetime | None = None,
                val_days: float = 1.0, test_days: float = 2.0) -> tuple[Any, Any, int]:
    """(start of valid, start of test, rows without a time) of :func:`time_split`, from one look
    at the time column (its latest value and its nulls); raises as :func:`time_split` does."""
    problems = []
    if not val_days >= 0:
        problems.append(f"val_days must be >= 0, got {val_days!r}")
    if cutoff is None and not test_days > 0:
        problems.append(f"test_days must be > 0, got {test_days!r}")
    if problems:
        raise ConfigError(problems, "time_split")
    schema = lf.collect_schema()
    _require(schema.names(), (time_col,), "time_split")
    dtype = schema[time_col]
    if not isinstance(dtype, (pl.Datetime, pl.Date)):
        raise SchemaError(
            f"column {time_col} must be a datetime or date to split by time, not {dtype}",
            column=time_col,
        )
    stats = lf.select(
        pl.col(time_col).null_count().alias("nulls"), pl.col(time_col).max().alias("max"),
    ).collect()
    nulls, latest = stats["nulls"][0], stats["max"][0]
    if latest is None:
        raise DataError(
            f"column {time_col} has no value: nothing to split by time", column=time_col
        )
    if cutoff is None:
        test_start = latest - timedelta(days=test_days)
    else:
        test_start = _as_column_time(cutoff, dtype)
    val_start = test_start - timedelta(days=val_days)
    return val_start, test_start, nulls


# --------------------------------------------------------------------------- group k-fold


def group_fold(value: str, *, folds: int, seed: int) -> int:
    """The fold of one (already normalised) group value: a keyed BLAKE2b hash mod ``folds``.

    Stable across runs, processes, machines and library versions (unlike ``hash()`` or
    polars' row hash).
    """
    key = str(seed).encode()
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big") % folds


def group_kfold(
    df: pl.LazyFrame | pl.DataFrame,
    *,
    group_col: str = "query",
    folds: int = 5,
    test_fold: int = 0,
    val_fold: int = 1,
    seed: int = 13,
) -> dict[str, pl.DataFrame]:
    """Query-grouped folds: fold ``test_fold`` is test, ``val_fold`` validation, the rest train.

    A row's fold is :func:`group_fold` of its normalised group value (lowercase, single
    spaces), so a query and its case/spacing variants always land together, in every run
    and every file. Folds are balanced only in expectation: with few groups one may be
    empty (see :func:`split_summary`). Row order is kept within each split.

    Raises :class:`SchemaError` when ``group_col`` is missing and :class:`DataError` when
    it holds nulls.
    """
    problems = []
    if not isinstance(folds, int) or folds < 2:
        problems.append(f"folds must be an integer >= 2, got {folds!r}")
    else:
        for name, f in (("test_fold", test_fold), ("val_fold", val_fold)):
            if not isinstance(f, int) or not 0 <= f < folds:
                problems.append(f"{name} must be in [0, {folds}), got {f!r}")
        if test_fold == val_fold:
            problems.append(f"test_fold and val_fold must differ, both are {test_fold}")
    if problems:
        raise ConfigError(problems, "group_kfold")
    lf = df.lazy()
    _require(lf.collect_schema().names(), (group_col,), "group_kfold")
    key = normalise_query(pl.col(group_col).cast(pl.String)).alias("_group")
    groups = lf.select(key).unique().collect()
    if groups["_group"].null_count():
        raise DataError(
            f"column {group_col} has null values: every row needs a group to be split",
            column=group_col,
        )
    fold_of = groups.with_columns(
        pl.Series(
            "_fold",
            [group_fold(g, folds=folds, seed=seed) for g in groups["_group"]],
            dtype=pl.Int64,
        )
    )
    tagged = lf.with_columns(key).join(fold_of.lazy(), on="_group", how="left",
                                       maintain_order="left")
    fold = pl.col("_fold")
    train, valid, test = pl.collect_all([
        tagged.filter((fold != test_fold) & (fold != val_fold)).drop("_group", "_fold"),
        tagged.filter(fold == val_fold).drop("_group", "_fold"),
        tagged.filter(fold == test_fold).drop("_group", "_fold"),
    ])
    return {"train": train, "valid": valid, "test": test}


# --------------------------------------------------------------------------- summary


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def split_summary(splits: Mapping[str, pl.DataFrame | pl.LazyFrame]) -> dict[str, dict[str, Any]]:
    """JSON-ready counts per split for the manifest (of frames, or of lazy scans of written ones).

    Every split gets ``rows``; ``users``, ``queries`` (normalised), ``items`` and
    ``sessions`` when the columns exist; ``first_timestamp``/``last_timestamp`` (ISO 8601)
    when a ``timestamp`` column exists; ``history_mean_len`` for leave-one-out targets.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, frame in splits.items():
        cols = frame.collect_schema().names()
        exprs: list[pl.Expr] = [pl.len().alias("rows")]
        for col, label in (("user_id", "users"), ("item_id", "items"), ("session_id", "sessions")):
            if col in cols:
                exprs.append(pl.col(col).drop_nulls().n_unique().alias(label))
        if "query" in cols:
            exprs.append(
                normalise_query(pl.col("query").cast(pl.String)).drop_nulls().n_unique()
                .alias("queries")
            )
        if "timestamp" in cols:
            exprs += [pl.col("timestamp").min().alias("first_timestamp"),
                      pl.col("timestamp").max().alias("last_timestamp")]
        if "history" in cols:
            exprs.append(pl.col("history").list.len().mean().alias("history_mean_len"))
        row = frame.lazy().select(exprs).collect(engine="streaming").row(0, named=True)
        out[name] = {k: _iso(v) for k, v in row.items()}
    return out
