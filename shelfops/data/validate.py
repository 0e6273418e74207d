"""Row-level validation and cleaning of one batch, vectorised with polars.

``check_batch`` types every canonical column, cleans text, masks PII, pseudonymises ids
and decides, per row, the first reason (if any) to reject it. Checks that need the whole
table (duplicates, unknown items, bot sessions) live in ``shelfops.data.ingest``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from shelfops.data.privacy import keyed_column_hasher, mask_pii_expr
from shelfops.data.text import clean_text_expr
from shelfops.tables import EVENT_TYPES, REQUIRED, TABLES, Reason

TEXT_COLUMNS = {"title", "description", "query", "category", "brand"}
ID_COLUMNS = {"user_id", "session_id"}
# text whose typing costs more than finding its distinct values: cleaning, PII masking, the event
# names' aliases (a query's cleaning on 200k rows: 174 ms, on its 4k distinct values: 15 ms); other
# ids are only stripped, faster on every row (item_id 8 ms) than through their distinct values (12)
_PER_DISTINCT = TEXT_COLUMNS | {"event_type"}
EVENT_ALIASES = {
    "impressions": "impression", "impression": "impression", "show": "impression",
    "view": "view", "views": "view", "pageview": "view", "detail": "view",
    "click": "click", "clicks": "click",
    "cart": "add_to_cart", "addtocart": "add_to_cart", "add_to_cart": "add_to_cart",
    "add-to-cart": "add_to_cart", "add to cart": "add_to_cart", "basket": "add_to_cart",
    "purchase": "purchase", "buy": "purchase", "transaction": "purchase", "order": "purchase",
    "search": "search", "query": "search",
}
_KIND = {"Float64": "a number", "Int32": "an integer", "Int64": "an integer",
         "Datetime": "a timestamp"}
_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d",
)


@dataclass
class Rules:
    """Plain cleaning settings: ``data.cleaning`` and ``data.privacy`` (``CleaningConfig``,
    ``PrivacyConfig``: the one source of defaults), built by ``shelfops.data.recipe.rules_from``."""

    strip_html: bool
    mask_pii: bool
    earliest: datetime
    latest: datetime  # now + cleaning.future_slack_hours
    timestamp_format: str | None  # the sources' own (SourceConfig.timestamp_format)


class Pseudonymiser:
    """User and session ids replaced by their keyed hash (:mod:`shelfops.data.privacy`)."""

    def __init__(self, key: bytes) -> None:
        self._hash = keyed_column_hasher(key)

    def column(self, s: pl.Series) -> pl.Series:
        """Each distinct id hashed once, mapped back to the rows. (A cache across batches
        kept in a dict made it slower: 63% of a 10M-event log's per-batch distinct ids are new,
        sessions nearly all, and the dict's lookups and inserts cost more than native hashing.)"""
        return per_distinct(s.cast(pl.String), self._hash)


def per_distinct(col: pl.Series, done: Callable[[pl.Series], pl.Series], *,
                 codes: pa.DictionaryArray | None = None) -> pl.Series:
    """``done`` (distinct values -> their results, in order) computed once per distinct non-null
    value of ``col`` and mapped back to its rows (nulls stay null). The distinct values and each
    row's place among them come from one hashing pass (:func:`distinct_codes`, or ``codes`` when
    the caller has them); the results go back to the rows by position (a ``replace_strict``
    hashed every row again: a fifth of pseudonymising a batch)."""
    codes = distinct_codes(col) if codes is None else codes
    if len(codes.dictionary) == 0:
        return col
    out = done(pl.Series(col.name, codes.dictionary, dtype=col.dtype))
    # gathered in polars (its strings are views: 16 bytes a row), not taken in Arrow and converted
    # back (3-4x the time); a null index gathers a null
    return out.gather(pl.from_arrow(codes.indices)).rename(col.name)


def distinct_codes(col: pl.Series) -> pa.DictionaryArray:
    """``col``'s distinct non-null values and each row's index into them (null for null)."""
    return pc.dictionary_encode(col.rechunk().to_arrow())


def parse_timestamp(expr: pl.Expr, fmt: str | None = None) -> pl.Expr:
    """Strings (ISO 8601 variants, epoch seconds or ms) -> UTC datetime[ms]; null if unparseable."""
    c = expr.cast(pl.String).str.strip_chars()
    if fmt:
        out = c.str.to_datetime(fmt, strict=False, time_unit="ms")
        return out.dt.convert_time_zone("UTC") if "%z" in fmt else out.dt.replace_time_zone("UTC")
    num = c.cast(pl.Float64, strict=False)
    parts = [
        pl.when(num.abs() > 1e11).then(num).otherwise(num * 1000)
        .cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    ]
    c = c.str.replace(r"Z$", "+00:00")
    for f in _TS_FORMATS:
        e = c.str.to_datetime(f, strict=False, time_unit="ms")
        parts.append(e.dt.convert_time_zone("UTC") if "%z" in f else e.dt.replace_time_zone("UTC"))
    return pl.coalesce(parts)


def _typed(df: pl.DataFrame, name: str, dtype: pl.DataType, rules: Rules) -> pl.Expr:
    if name not in df.columns:
        return pl.lit(None, dtype=dtype).alias(name)
    col = pl.col(name)
    src = df.schema[name]
    if isinstance(dtype, pl.Datetime):
        if isinstance(src, pl.Datetime):
            out = col.dt.cast_time_unit("ms")
            out = out.dt.convert_time_zone("UTC") if src.time_zone else out.dt.replace_time_zone("UTC")
            return out.alias(name)
        return parse_timestamp(col, rules.timestamp_format).alias(name)
    if dtype == pl.String:
        if name in TEXT_COLUMNS:
            out = clean_text_expr(col, strip_html=rules.strip_html)
            if name == "query" and rules.mask_pii:
                out = mask_pii_expr(out)
            return out.alias(name)
        out = col.cast(pl.String).str.strip_chars()
        if name == "event_type":
            out = out.str.to_lowercase().replace(EVENT_ALIASES)
        # blank -> null; ``replace`` evaluates ``out`` once (a when/then/otherwise on it twice:
        # 2x the time of typing an id column)
        return out.replace("", None).alias(name)
    if src == pl.String:
        return col.str.strip_chars().cast(dtype, strict=False).alias(name)
    return col.cast(dtype, strict=False).alias(name)


class TextMemo:
    """Typed text by its raw value, kept across batches (and runs) of one process: typing text is
    a pure function of the value, the column and the rules that clean it, and a shop's text
    repeats across batches, not only within one (10M events: 10,799 distinct queries, ~200k
    distinct-per-batch cleanings without this). Bounded: emptied when it holds ``limit`` values.
    Checking threads share it; a value computed twice by a race is the same value."""

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self.values: dict[tuple, dict[str, str | None]] = defaultdict(dict)
        self.size = 0

    def typed(self, key: tuple, distinct: pl.Series, compute: Callable[[pl.Series], pl.Series]) -> pl.Series:
        """``compute`` (distinct raw values -> typed, in order) of the values not seen before;
        ``key``: what besides the value decides the result, the target type first."""
        memo, missing = self.values[key], object()
        raw = distinct.to_list()
        got = [memo.get(v, missing) for v in raw]
        todo = [v for v, g in zip(raw, got) if g is missing]
        if todo:
            new = compute(pl.Series(distinct.name, todo, dtype=pl.String)).to_list()
            if self.size + len(todo) > self.limit:
                self.values.clear()
                self.size = 0
                memo = self.values[key]
            memo.update(zip(todo, new))
            self.size += len(todo)
            fresh = dict(zip(todo, new))
            got = [fresh[v] if g is missing else g for v, g in zip(raw, got)]
        return pl.Series(distinct.name, got, dtype=key[0])


TEXT_MEMO = TextMemo()


def _by_distinct(df: pl.DataFrame, name: str, expr: pl.Expr, memo_key: tuple | None = None) -> pl.Expr | pl.Series:
    """``expr`` (of text column ``name``) evaluated on each distinct value once and mapped back
    to the rows, where fewer than half the rows are distinct; else ``expr`` itself. A shop's
    text repeats (queries, event type names, ids): the query's HTML/unicode/PII cleaning alone
    was two thirds of validating a batch of events (4,156 distinct among 53,593 queries in 200k
    events), and is now done 4,156 times; with ``memo_key`` (what besides the value decides the
    result: :meth:`TextMemo.typed`), values typed in earlier batches are taken from :data:`TEXT_MEMO`."""
    if name not in df.columns or df.schema[name] != pl.String:
        return expr
    col = df[name]
    codes = distinct_codes(col)
    if len(codes.dictionary) * 2 > len(col):
        return expr

    def compute(d: pl.Series) -> pl.Series:
        return d.to_frame().select(expr).to_series()

    if memo_key is None:
        return per_distinct(col, compute, codes=codes)
    return per_distinct(col, lambda d: TEXT_MEMO.typed(memo_key, d, compute), codes=codes)


def _converted(df: pl.DataFrame, schema: pl.Schema) -> list[tuple[str, pl.DataType]]:
    """The typed (non-text) columns that conversion can fail on: those present whose source
    type is not already the target one (a typed Parquet column is read as it is, so its
    values need no reading check, nor their text for a message)."""
    out = []
    for name, dtype in schema.items():
        if name == "seq" or name not in df.columns or dtype == pl.String:
            continue
        src = df.schema[name]
        if src == dtype or (isinstance(dtype, pl.Datetime) and isinstance(src, pl.Datetime)):
            continue
        out.append((name, dtype))
    return out


def _present(df: pl.DataFrame, name: str) -> pl.Expr:
    """The raw value is there (non-null, non-blank)."""
    if name not in df.columns:
        return pl.lit(False)
    c = pl.col(name)
    if df.schema[name] == pl.String:
        return c.is_not_null() & (c.str.strip_chars().str.len_chars() > 0)
    return c.is_not_null()


def check_batch(
    table: str, df: pl.DataFrame, rules: Rules, ids: Pseudonymiser | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (typed canonical frame with ``_reason``/``_column``/``_detail``, the input
    frame with ids pseudonymised).

    Rows with a null ``_reason`` passed; ``raw_json`` of the input rows that did not
    becomes the quarantine's ``raw`` column.
    """
    schema = pl.Schema(pl.from_arrow(TABLES[table].empty_table()).schema)
    hashed = {c for c in ID_COLUMNS if c in df.columns} if ids is not None else set()
    if hashed:
        df = df.with_columns([ids.column(df[c]).alias(c) for c in hashed])
    # a pseudonymised id is 16 hex characters or null: already what typing would make of it
    typed = df.select([pl.col(n) if n in hashed else
                       _by_distinct(df, n, _typed(df, n, t, rules), (t, n, rules.strip_html, rules.mask_pii))
                       if n in _PER_DISTINCT else
                       _typed(df, n, t, rules) for n, t in schema.items() if n != "seq"])
    checks: list[tuple[pl.Expr, str, str, pl.Expr]] = []  # (failed, reason, column, detail)

    # a preset transform may already have found the bad column
    if "_error_column" in df.columns:
        checks.append((pl.col("_error_column").is_not_null(), Reason.bad_type.value, "", pl.lit("")))

    converted = dict(_converted(df, schema))
    required = list(REQUIRED[table])
    if table == "events":
        required += ["item_id"]  # except for searches, below
    for name in required:
        missing = pl.col(name).is_null()
        if name in converted:  # unreadable is bad_type, not missing
            missing = missing & ~pl.col(f"__present_{name}")
        if table == "events" and name == "item_id":
            missing = missing & (pl.col("event_type") != "search")
        checks.append((missing, Reason.missing_required.value, name, pl.lit(f"{name} is required")))
    for name, dtype in converted.items():
        failed = pl.col(name).is_null() & pl.col(f"__present_{name}")
        checks.append((failed, Reason.bad_type.value, name,
                       pl.lit(f"{name}: cannot read ") + pl.col(f"__raw_{name}").cast(pl.String)
                       + pl.lit(f" as {_KIND.get(type(dtype).__name__, str(dtype))}")))
    if table == "events":
        checks.append((
            pl.col("event_type").is_not_null() & ~pl.col("event_type").is_in(EVENT_TYPES),
            Reason.bad_value.value, "event_type",
            pl.lit("event_type ") + pl.col("event_type") + pl.lit(f" is not one of {list(EVENT_TYPES)}"),
        ))
        checks.append((
            (pl.col("event_type") == "search") & pl.col("query").is_null(),
            Reason.missing_required.value, "query", pl.lit("a search event needs a query"),
        ))
        checks.append((pl.col("position") < 1, Reason.bad_value.value, "position",
                       pl.lit("position must be >= 1")))
        ts = pl.col("timestamp")
        checks.append((
            (ts < rules.earliest) | (ts > rules.latest), Reason.impossible_timestamp.value,
            "timestamp",
            pl.lit("timestamp ") + ts.cast(pl.String)
            + pl.lit(f" outside [{rules.earliest:%Y-%m-%d}, {rules.latest:%Y-%m-%d %H:%M}]"),
        ))
    if table == "judgements":
        checks.append((~pl.col("grade").is_finite(), Reason.bad_value.value, "grade",
                       pl.lit("grade must be a finite number")))
    if table == "items":
        checks.append((pl.col("price") < 0, Reason.bad_value.value, "price",
                       pl.lit("price must be >= 0")))

    helpers = {}
    for name in converted:
        helpers[f"__present_{name}"] = _present(df, name)
        helpers[f"__raw_{name}"] = pl.col(name).cast(pl.String)
    work = pl.concat(
        [typed, df.select([e.alias(k) for k, e in helpers.items()]),
         df.select([c for c in ("_error_column", "_error_detail") if c in df.columns])],
        how="horizontal",
    )
    reason, column, detail = pl.lit(None, pl.String), pl.lit(None, pl.String), pl.lit(None, pl.String)
    for failed, why, col, msg in reversed(checks):  # first check listed wins
        hit = failed.fill_null(False)
        if col == "":  # from the transform
            reason = pl.when(hit).then(pl.lit(why)).otherwise(reason)
            column = pl.when(hit).then(pl.col("_error_column")).otherwise(column)
            detail = pl.when(hit).then(pl.col("_error_detail")).otherwise(detail)
        else:
            reason = pl.when(hit).then(pl.lit(why)).otherwise(reason)
            column = pl.when(hit).then(pl.lit(col)).otherwise(column)
            detail = pl.when(hit).then(msg).otherwise(detail)
    out = work.with_columns(reason.alias("_reason"), column.alias("_column"), detail.alias("_detail"))
    out = out.select([n for n in schema.names() if n != "seq"] + ["_reason", "_column", "_detail"])
    return out, df


def raw_json(df: pl.DataFrame, *, mask_pii: bool = True) -> pl.Series:
    """The input rows as JSON (ids already pseudonymised by ``check_batch``), for the
    quarantine; only ever called on the rejected rows."""
    cols = [c for c in df.columns if not c.startswith("_error")]
    enc = pl.struct(cols).struct.json_encode()
    return df.select((mask_pii_expr(enc) if mask_pii else enc).alias("raw"))["raw"]
