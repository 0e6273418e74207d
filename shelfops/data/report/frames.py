"""Shared pieces of the behaviour report: reading the tables, polars expressions, JSON.

Tables are scanned lazily (``pl.scan_parquet``) with exactly the canonical columns, so a
file written by an older loader (a column absent) reads as nulls instead of failing, and
only aggregates are ever collected (with the streaming engine).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from shelfops.tables import CATEGORY_SEP

DAY_MS = 86_400_000
INTERACTIONS: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
UNCATEGORISED = "(uncategorised)"


def _polars_schema(schema: pa.Schema) -> dict[str, pl.DataType]:
    return dict(pl.from_arrow(schema.empty_table()).schema)


def scan_table(path: Path, schema: pa.Schema) -> pl.LazyFrame | None:
    """Lazy scan with exactly ``schema``'s columns (absent ones as nulls); None if no file."""
    if not Path(path).is_file():
        return None
    lf = pl.scan_parquet(path)
    have = set(lf.collect_schema().names())
    return lf.select([
        pl.col(c).cast(t) if c in have else pl.lit(None, dtype=t).alias(c)
        for c, t in _polars_schema(schema).items()
    ])


def empty_frame(schema: pa.Schema) -> pl.LazyFrame:
    return pl.from_arrow(schema.empty_table()).lazy()


def collect(*frames: pl.LazyFrame) -> list[pl.DataFrame]:
    return pl.collect_all(list(frames), engine="streaming")


def na(reason: str, **extra: Any) -> dict[str, Any]:
    return {"available": False, "reason": f"not available: {reason}", **extra}


def ratio(a: float | None, b: float | None) -> float | None:
    return float(a) / float(b) if a is not None and b else None


def query_expr() -> pl.Expr:
    q = pl.col("query").str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ")
    return pl.when(q == "").then(None).otherwise(q)


def top_category_expr() -> pl.Expr:
    top = pl.col("category").str.split(CATEGORY_SEP).list.first().str.strip_chars()
    return pl.when(top.is_null() | (top == "")).then(pl.lit(UNCATEGORISED)).otherwise(top)


def item_categories(items: pl.LazyFrame) -> pl.LazyFrame:
    return (items.select("item_id", top_category_expr().alias("top"))
            .unique(subset="item_id", keep="any"))


def epoch_ms() -> pl.Expr:
    return pl.col("timestamp").dt.epoch("ms")


def last_ms(events: pl.LazyFrame) -> int | None:
    return events.select(epoch_ms().max()).collect().item()


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "category"


def to_rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return df.to_dicts()


def jsonable(obj: Any) -> Any:
    """Plain JSON values: NaN/inf -> None, datetimes -> ISO text, numpy scalars -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def category_table(events: pl.LazyFrame, items: pl.LazyFrame) -> pl.LazyFrame:
    """Per top-level category: impressions, views, clicks, carts, purchases, users, revenue."""
    prices = items.select("item_id", "price").unique(subset="item_id", keep="any")
    ev = (events.filter(pl.col("event_type").is_in(("impression",) + INTERACTIONS)
                        & pl.col("item_id").is_not_null())
          .select("item_id", "event_type", "user_id")
          .join(item_categories(items), on="item_id", how="left")
          .join(prices, on="item_id", how="left")
          .with_columns(pl.col("top").fill_null(UNCATEGORISED)))
    buy = pl.col("event_type") == "purchase"
    return (ev.group_by("top").agg(
        (pl.col("event_type") == "impression").sum().alias("impressions"),
        (pl.col("event_type") == "view").sum().alias("views"),
        (pl.col("event_type") == "click").sum().alias("clicks"),
        (pl.col("event_type") == "add_to_cart").sum().alias("add_to_cart"),
        buy.sum().alias("purchases"),
        pl.col("user_id").drop_nulls().n_unique().alias("users"),
        pl.when(buy).then(pl.col("price")).otherwise(None).sum().alias("revenue"),
        (buy & pl.col("price").is_not_null()).sum().alias("priced_purchases"),
    ).rename({"top": "category"}))
