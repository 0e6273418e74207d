"""Customers: RFM segments and marketing audiences, from a dataset's events and items.

RFM (:func:`rfm_scores`): purchasers only. R = days from the user's last purchase to the
dataset's last timestamp, F = number of purchase events, M = sum of the purchased items'
prices. Each becomes a score 1-5 against the purchasers' quintiles, and the R x F grid
names the segment (``RFM_METHOD`` spells it out; it is also written into the report).
Users with events but no purchase are ``browsers``.

Audience (:func:`audience`): the users most likely to buy in one top-level category,
scored by their recency-weighted interactions with it (``AUDIENCE_FORMULA``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from shelfops.data.report.frames import (
    DAY_MS,
    INTERACTIONS,
    UNCATEGORISED,
    category_table,
    collect,
    epoch_ms,
    item_categories,
    last_ms,
    na,
    ratio,
    slug,
    to_rows,
)
from shelfops.errors import DataError

SEGMENTS: tuple[str, ...] = (
    "champions", "loyal", "potential", "new", "at_risk", "hibernating", "lost",
)
BROWSERS = "browsers"  # users with events but no purchase
OTHER = "(other)"
MATRIX_CATEGORIES = 10  # columns of the segment x category matrix before "(other)"
AUDIENCE_PREVIEW = 10  # audience rows shown in the report (all of them go to the CSV)
MAX_LISTED = 50

AUDIENCE_WEIGHTS: dict[str, float] = {
    "add_to_cart": 3.0, "click": 2.0, "view": 1.0, "purchase": 1.0,
}
AUDIENCE_HALF_LIFE_DAYS = 14.0
AUDIENCE_FORMULA = (
    "propensity(user) = sum over the user's events on items of the category of "
    "weight(event_type) * 0.5 ** (age_days / half_life_days); weights: add_to_cart 3, click 2, "
    "view 1, purchase 1 (past buyers stay in), impression and search 0; age_days = days "
    "from the event to the dataset's last timestamp (factor 1 when the event has no "
    "timestamp). Users with propensity 0 and anonymous events (no user_id) cannot be "
    "targeted and are left out; ties are ordered by user_id."
)
RFM_METHOD = (
    "Purchasers only. R = days from the user's last purchase to the dataset's last "
    "timestamp, F = number of purchase events, M = sum of the purchased items' prices. "
    "Scores 1-5 compare a value with the 20/40/60/80% quantiles of all purchasers (5 = "
    "best); ties go down for F and M (a one-time buyer among many is 1) and up for R (a "
    "purchase on the last day is 5). Segments follow the R x F grid: champions R>=4 F>=4; "
    "loyal R>=3 F>=3; new R>=4 F=1; potential other R>=3; at_risk R<=2 F>=3; hibernating "
    "R=2; lost R=1. Without timestamps R is neutral (3)."
)
_CUTS = (0.2, 0.4, 0.6, 0.8)


def quintile_scores(values: np.ndarray, *, lower_is_better: bool = False) -> np.ndarray:
    """Scores 1-5 against the 20/40/60/80% quantiles (linear); 0 where the value is NaN.

    Higher is better: 1 + number of cuts strictly below the value (ties go down).
    Lower is better: 1 + number of cuts at or above the value (ties go up).
    """
    v = np.asarray(values, dtype=float)
    out = np.zeros(len(v), dtype=np.int64)
    ok = ~np.isnan(v)
    if ok.any():
        cuts = np.quantile(v[ok], _CUTS)
        col = v[ok][:, None]
        out[ok] = 1 + ((col <= cuts) if lower_is_better else (col > cuts)).sum(axis=1)
    return out


def _segment_expr(r: pl.Expr, f: pl.Expr) -> pl.Expr:
    return (pl.when((r >= 4) & (f >= 4)).then(pl.lit("champions"))
            .when((r >= 3) & (f >= 3)).then(pl.lit("loyal"))
            .when((r >= 4) & (f == 1)).then(pl.lit("new"))
            .when(r >= 3).then(pl.lit("potential"))
            .when(f >= 3).then(pl.lit("at_risk"))
            .when(r == 2).then(pl.lit("hibernating"))
            .otherwise(pl.lit("lost")))


def rfm_scores(events: pl.LazyFrame, items: pl.LazyFrame) -> pl.DataFrame:
    """One row per purchaser: user_id, recency_days, frequency, monetary, r, f, m, segment.

    See ``RFM_METHOD``. ``recency_days``/``r`` are null without timestamps, ``monetary``/``m``
    null without prices; the segment then uses R = 3.
    """
    prices = items.select("item_id", "price").unique(subset="item_id", keep="any")
    end = last_ms(events)
    buyers = events.filter((pl.col("event_type") == "purchase") & pl.col("user_id").is_not_null())
    per_user = (buyers
                .select("user_id", "item_id", epoch_ms().alias("ts"))
                .join(prices, on="item_id", how="left")
                .group_by("user_id").agg(
                    pl.col("ts").max().alias("last_ms"), pl.len().alias("frequency"),
                    pl.col("price").sum().alias("monetary"),
                    pl.col("price").is_not_null().sum().alias("priced"))
                .sort("user_id").collect(engine="streaming"))
    if per_user.height == 0:
        return pl.DataFrame(schema={
            "user_id": pl.String, "recency_days": pl.Float64, "frequency": pl.Int64,
            "monetary": pl.Float64, "r": pl.Int64, "f": pl.Int64, "m": pl.Int64,
            "segment": pl.String})
    if end is None:
        rec = pl.lit(None, pl.Float64)
    else:
        rec = (pl.lit(end, pl.Int64) - pl.col("last_ms")).cast(pl.Float64) / DAY_MS
    df = per_user.with_columns(
        rec.alias("recency_days"),
        pl.col("frequency").cast(pl.Int64),
        pl.when(pl.col("priced") > 0).then(pl.col("monetary")).otherwise(None)
        .cast(pl.Float64).alias("monetary"),  # null when none of the user's items has a price
    )

    def nan(col: str) -> np.ndarray:
        return df[col].cast(pl.Float64).fill_null(float("nan")).to_numpy()

    r = quintile_scores(nan("recency_days"), lower_is_better=True)
    f = quintile_scores(nan("frequency"))
    m = quintile_scores(nan("monetary"))
    df = df.with_columns(
        pl.Series("r", r).replace(0, None), pl.Series("f", f).replace(0, None),
        pl.Series("m", m).replace(0, None))
    df = df.with_columns(_segment_expr(pl.col("r").fill_null(3), pl.col("f")).alias("segment"))
    return df.select("user_id", "recency_days", "frequency", "monetary", "r", "f", "m", "segment")


def segments(events: pl.LazyFrame, items: pl.LazyFrame,
             scores: pl.DataFrame | None = None) -> dict[str, Any]:
    scores = rfm_scores(events, items) if scores is None else scores
    users = events.select(pl.col("user_id").drop_nulls().n_unique()).collect().item() or 0
    if users == 0:
        return na("no user ids")
    if scores.height == 0:
        return na("no purchases by known users", browsers=users)
    notes = []
    if scores["recency_days"].null_count() == scores.height:
        notes.append("recency not available (no timestamps): R is neutral (3) in the segments")
    elif scores["recency_days"].null_count():
        notes.append(f"{scores['recency_days'].null_count()} purchasers have no timestamped "
                     "purchase: R is neutral (3) for them")
    if scores["monetary"].null_count() == scores.height:
        notes.append("monetary not available (no prices)")
    elif scores["monetary"].null_count():
        notes.append(f"{scores['monetary'].null_count()} purchasers bought only unpriced items")
    summary = scores.group_by("segment").agg(
        pl.len().alias("users"), pl.col("recency_days").mean(), pl.col("frequency").mean(),
        pl.col("monetary").mean(), pl.col("r").mean(), pl.col("f").mean(), pl.col("m").mean())
    by_name = {r["segment"]: r for r in summary.iter_rows(named=True)}
    rows = []
    for name in SEGMENTS:
        r = by_name.get(name, {"users": 0})
        rows.append({
            "segment": name, "users": int(r["users"]),
            "share": ratio(r["users"], scores.height),
            **{k: r.get(k) for k in ("recency_days", "frequency", "monetary", "r", "f", "m")},
        })
    return {
        "available": True, "purchasers": scores.height, "browsers": users - scores.height,
        "users": users, "method": RFM_METHOD, "rows": rows, "notes": notes,
    }


def segment_category(events: pl.LazyFrame, items: pl.LazyFrame,
                     scores: pl.DataFrame) -> dict[str, Any]:
    """Share of each segment's interactions (views, clicks, carts, purchases) per category."""
    n_cat = items.select(pl.col("category").is_not_null().sum()).collect().item()
    if not n_cat:
        return na("items have no categories")
    seg = scores.select("user_id", "segment").lazy()
    (df,) = collect(
        events.filter(pl.col("event_type").is_in(INTERACTIONS) & pl.col("user_id").is_not_null()
                      & pl.col("item_id").is_not_null())
        .select("user_id", "item_id")
        .join(item_categories(items), on="item_id", how="left")
        .join(seg, on="user_id", how="left")
        .select(pl.col("segment").fill_null(BROWSERS), pl.col("top").fill_null(UNCATEGORISED))
        .group_by("segment", "top").agg(pl.len().alias("n")))
    if df.height == 0:
        return na("no interactions by known users")
    totals = df.group_by("top").agg(pl.col("n").sum()).sort(["n", "top"], descending=[True, False])
    cats = totals["top"].to_list()
    keep = cats[:MATRIX_CATEGORIES]
    if len(cats) > MATRIX_CATEGORIES:
        keep = cats[:MATRIX_CATEGORIES - 1] + [OTHER]
    df = df.with_columns(pl.when(pl.col("top").is_in(keep)).then(pl.col("top"))
                         .otherwise(pl.lit(OTHER)).alias("top"))
    cell = {(r["segment"], r["top"]): 0 for r in df.iter_rows(named=True)}
    for r in df.iter_rows(named=True):
        cell[(r["segment"], r["top"])] += int(r["n"])
    present = {s for s, _ in cell}
    segs = [s for s in (*SEGMENTS, BROWSERS) if s in present]
    counts = [[cell.get((s, c), 0) for c in keep] for s in segs]
    share = [[ratio(n, sum(row)) for n in row] for row in counts]
    return {"available": True, "segments": segs, "categories": keep, "interactions": counts,
            "share": share,
            "notes": [("share of the segment's views, clicks, carts and purchases per category; "
                      f"{BROWSERS} = users without a purchase")]}


# ------------------------------------------------------------------ audience


def top_categories(items: pl.LazyFrame) -> list[str]:
    return sorted(item_categories(items).select(pl.col("top").unique()).collect()["top"].to_list())


def default_audience_category(events: pl.LazyFrame, items: pl.LazyFrame) -> tuple[str | None, str]:
    """The category with the most purchases (else the most interactions); ties by name."""
    (df,) = collect(category_table(events, items))
    df = df.filter(pl.col("category") != UNCATEGORISED)
    for col, why in (("purchases", "most purchases"), ("interactions", "most interactions")):
        d = df.with_columns((pl.col("views") + pl.col("clicks") + pl.col("add_to_cart")
                             + pl.col("purchases")).alias("interactions"))
        d = d.filter(pl.col(col) > 0).sort([col, "category"], descending=[True, False])
        if d.height:
            return d["category"][0], why
    return None, "no interactions with categorised items"


def audience(events: pl.LazyFrame | pl.DataFrame, items: pl.LazyFrame | pl.DataFrame,
             category: str, size: int, *, half_life_days: float = AUDIENCE_HALF_LIFE_DAYS,
             weights: Mapping[str, float] | None = None) -> pl.DataFrame:
    """The ``size`` users most likely to buy in top-level ``category`` (``AUDIENCE_FORMULA``).

    Columns: user_id (pseudonymised), propensity, views, clicks, add_to_cart, purchases,
    last_seen. The category is matched case-insensitively; an unknown one raises DataError.
    """
    events, items = events.lazy(), items.lazy()
    w = {k: float(v) for k, v in (AUDIENCE_WEIGHTS if weights is None else weights).items()}
    want = category.strip().lower()
    cat_items = item_categories(items).filter(pl.col("top").str.to_lowercase() == want)
    if cat_items.select(pl.len()).collect().item() == 0:
        raise DataError(f"no items in top-level category {category!r}",
                        category=category, available=top_categories(items))
    end = last_ms(events)
    weight = pl.col("event_type").replace_strict(w, default=0.0, return_dtype=pl.Float64)
    if end is None:
        decay = pl.lit(1.0)
    else:
        age = (pl.lit(end, pl.Int64) - epoch_ms()).cast(pl.Float64) / DAY_MS
        decay = pl.lit(0.5).pow(age / half_life_days).fill_null(1.0)
    active = [t for t, v in w.items() if v > 0]
    df = (events.filter(pl.col("user_id").is_not_null() & pl.col("event_type").is_in(active))
          .join(cat_items.select("item_id"), on="item_id", how="semi")
          .group_by("user_id").agg(
              (weight * decay).sum().alias("propensity"),
              *[(pl.col("event_type") == t).sum().alias(t if t != "view" else "views")
                for t in ("view", "click", "add_to_cart", "purchase")],
              pl.col("timestamp").max().alias("last_seen"))
          .rename({"click": "clicks", "purchase": "purchases"})
          .filter(pl.col("propensity") > 0)
          .sort(["propensity", "user_id"], descending=[True, False])
          .head(size)
          .collect(engine="streaming"))
    return df.with_columns(pl.col("propensity").round(6)).select(
        "user_id", "propensity", "views", "clicks", "add_to_cart", "purchases", "last_seen")


def audience_section(events: pl.LazyFrame, items: pl.LazyFrame, category: str | None,
                      size: int) -> tuple[dict[str, Any], pl.DataFrame | None]:
    if category is None:
        category, chosen_by = default_audience_category(events, items)
        if category is None:
            return na(chosen_by), None
    else:
        chosen_by = "configured"
        match = [c for c in top_categories(items) if c.lower() == category.strip().lower()]
        if not match:
            return na(f"no items in category {category!r}",
                       categories=top_categories(items)[:MAX_LISTED]), None
        category = match[0]
    df = audience(events, items, category, size)
    preview = df.head(AUDIENCE_PREVIEW).with_columns(
        pl.col("last_seen").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {
        "available": True, "category": category, "chosen_by": chosen_by,
        "file": f"audience_{slug(category)}.csv", "size": size, "users": df.height,
        "formula": AUDIENCE_FORMULA, "weights": dict(AUDIENCE_WEIGHTS),
        "half_life_days": AUDIENCE_HALF_LIFE_DAYS, "preview": to_rows(preview),
    }, df
