"""The behaviour report: what shoppers do, computed lazily from a dataset folder.

Every section is a pure function over polars LazyFrames (``events``, ``items``) that
collects only aggregates, so the report stays memory-bounded for tens of millions of
events. A section the data cannot support says why instead of failing
(``{"available": False, "reason": "not available: no search events"}``): Amazon reviews
have only purchases and no clock, Diginetica only views, and so on.

Sections (keys of the dict :func:`build_report` returns; every value is plain JSON):

=================  ========================================================================
overview           row counts, time span, which optional information is missing
funnel             events per type; impression -> click -> add_to_cart -> purchase, per
                   event (count of a step / count of the step before) and per session
                   (share of sessions with at least one event of the step's type)
queries            top queries (searches, impressions, clicks, CTR), low-CTR queries,
                   zero-result queries (a search whose request_id has no impression)
categories         per top-level category: impressions, views, clicks, carts, purchases,
                   conversion = purchases / (views + clicks)
segments           RFM scores and named segments (:mod:`shelfops.data.customers`)
segment_category   share of each segment's interactions that falls in each category
audience           the marketing audience (:func:`shelfops.data.customers.audience`);
                   its rows go to ``audience_<category-slug>.csv``
=================  ========================================================================

Rendering (charts, HTML) is :mod:`shelfops.data.report.html`; shared readers and
helpers are :mod:`shelfops.data.report.frames`. Queries are compared after trimming,
lower-casing and collapsing white space. Sessions are ``session_id`` (``user_id`` where a
session id is missing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from shelfops.data.customers import (
    AUDIENCE_FORMULA,
    AUDIENCE_WEIGHTS,
    RFM_METHOD,
    SEGMENTS,
    audience,
    audience_section,
    quintile_scores,
    rfm_scores,
    segment_category,
    segments,
)
from shelfops.data.report.frames import (
    category_table,
    collect,
    empty_frame,
    jsonable,
    na,
    query_expr,
    ratio,
    scan_table,
    to_rows,
)
from shelfops.data.report.html import make_charts, render_html
from shelfops.tables import EVENT_TYPES, EVENTS, ITEMS

__all__ = [
    "AUDIENCE_FORMULA", "AUDIENCE_WEIGHTS", "FUNNEL_STEPS", "RFM_METHOD", "SEGMENTS",
    "audience", "build_report", "build_report_with_audience", "categories", "funnel",
    "overview", "queries", "quintile_scores", "report_dataset", "rfm_scores", "scan_table",
    "segment_category", "segments", "write_report",
]

log = logging.getLogger(__name__)

FUNNEL_STEPS: tuple[str, ...] = ("impression", "click", "add_to_cart", "purchase")
OUTCOMES: tuple[str, ...] = ("impression", "click", "add_to_cart", "purchase")
MAX_CATEGORIES = 50  # rows of the category table kept in the report


def overview(events: pl.LazyFrame, items: pl.LazyFrame) -> dict[str, Any]:
    ev, it = collect(
        events.select(
            pl.len().alias("events"),
            pl.col("user_id").drop_nulls().n_unique().alias("users"),
            pl.col("session_id").drop_nulls().n_unique().alias("sessions"),
            pl.col("user_id").null_count().alias("anonymous_events"),
            pl.col("timestamp").null_count().alias("events_without_timestamp"),
            pl.col("timestamp").min().alias("first_timestamp"),
            pl.col("timestamp").max().alias("last_timestamp"),
            *[(pl.col("event_type") == t).sum().alias(t) for t in EVENT_TYPES],
        ),
        items.select(
            pl.len().alias("items"),
            pl.col("price").is_not_null().sum().alias("items_with_price"),
            pl.col("category").is_not_null().sum().alias("items_with_category"),
        ),
    )
    out: dict[str, Any] = {"available": True, **ev.row(0, named=True), **it.row(0, named=True)}
    span = None
    if out["first_timestamp"] is not None:
        span = (out["last_timestamp"] - out["first_timestamp"]).total_seconds() / 86400
    out["days"] = span
    missing = []
    checks = [
        (out["events"] == 0, "events"),
        (out["items"] == 0, "items"),
        (out["events"] > 0 and out["users"] == 0, "user ids"),
        (out["events"] > 0 and out["first_timestamp"] is None, "timestamps"),
        (out["items"] > 0 and out["items_with_price"] == 0, "prices"),
        (out["items"] > 0 and out["items_with_category"] == 0, "categories"),
    ]
    missing += [name for bad, name in checks if bad]
    missing += [f"{t} events" for t in ("search", "impression", "click", "purchase") if out[t] == 0]
    out["missing"] = missing
    return out


def funnel(events: pl.LazyFrame) -> dict[str, Any]:
    session = pl.coalesce("session_id", "user_id").alias("session")
    counts_df, sess_df = collect(
        events.group_by("event_type").agg(pl.len().alias("n")),
        events.select(session, "event_type").filter(pl.col("session").is_not_null())
        .group_by("session")
        .agg([(pl.col("event_type") == t).any().alias(t) for t in EVENT_TYPES])
        .select(pl.len().alias("sessions"), *[pl.col(t).sum() for t in EVENT_TYPES]),
    )
    counts = {t: 0 for t in EVENT_TYPES}
    counts.update({r["event_type"]: int(r["n"]) for r in counts_df.iter_rows(named=True)})
    total = sum(counts.values())
    if total == 0:
        return na("no events", counts=counts)
    sess = sess_df.row(0, named=True) if sess_df.height else {"sessions": 0}
    n_sessions = int(sess["sessions"] or 0)
    steps, prev, prev_s = [], None, None
    for i, step in enumerate(FUNNEL_STEPS):
        n, s = counts[step], int(sess.get(step) or 0)
        steps.append({
            "step": step, "events": n,
            "rate_from_previous": None if i == 0 else ratio(n, prev),
            "rate_from_first": ratio(n, counts[FUNNEL_STEPS[0]]),
            "sessions": s, "session_share": ratio(s, n_sessions),
            "session_rate_from_previous": None if i == 0 else ratio(s, prev_s),
        })
        prev, prev_s = n, s
    notes = []
    if counts["impression"] == 0:
        notes.append("no impression events: rates from the impression step are not available")
    if counts["view"]:
        notes.append(f"{counts['view']} product views are outside the funnel steps (see counts)")
    return {
        "available": True, "counts": counts, "total_events": total, "steps": steps,
        "sessions": n_sessions,
        "sessions_with": {t: int(sess.get(t) or 0) for t in EVENT_TYPES},
        "notes": notes,
    }


def query_table(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per normalised query: searches, impressions, clicks, carts, purchases, CTR,
    zero-result searches (linked searches whose request_id has no impression)."""
    searches = (events.filter(pl.col("event_type") == "search")
                .select(query_expr().alias("query"), "request_id")
                .filter(pl.col("query").is_not_null()))
    outcome = (events.filter(pl.col("event_type").is_in(OUTCOMES)
                             & pl.col("request_id").is_not_null())
               .group_by("request_id")
               .agg([(pl.col("event_type") == t).sum().alias(t) for t in OUTCOMES]))
    linked = (searches.filter(pl.col("request_id").is_not_null())
              .group_by("request_id").agg(pl.col("query").first(), pl.len().alias("searches"))
              .join(outcome, on="request_id", how="left")
              .with_columns([pl.col(t).fill_null(0) for t in OUTCOMES]))
    per_linked = linked.group_by("query").agg(
        pl.col("searches").sum(), pl.len().alias("requests"),
        *[pl.col(t).sum() for t in OUTCOMES],
        (pl.col("impression") == 0).sum().alias("zero_result"),
    )
    unlinked = (searches.filter(pl.col("request_id").is_null())
                .group_by("query").agg(pl.len().alias("unlinked")))
    num = ["searches", "requests", *OUTCOMES, "zero_result", "unlinked"]
    return (per_linked.join(unlinked, on="query", how="full", coalesce=True)
            .with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in num])
            .with_columns(pl.col("searches") + pl.col("unlinked"))
            .rename({"impression": "impressions", "click": "clicks", "purchase": "purchases"})
            .with_columns(
                pl.when(pl.col("impressions") > 0)
                .then(pl.col("clicks") / pl.col("impressions")).otherwise(None).alias("ctr")))


def queries(events: pl.LazyFrame, *, top: int = 20, low_ctr_threshold: float = 0.05,
            min_query_impressions: int = 20) -> dict[str, Any]:
    stats = events.select(
        (pl.col("event_type") == "search").sum().alias("searches"),
        ((pl.col("event_type") == "search") & query_expr().is_null()).sum().alias("no_text"),
        ((pl.col("event_type") == "impression") & pl.col("request_id").is_not_null()).sum()
        .alias("linked_impressions"),
    )
    table = query_table(events)
    cols = ["query", "searches", "impressions", "clicks", "ctr", "add_to_cart", "purchases",
            "zero_result"]
    top_q = table.sort(["searches", "query"], descending=[True, False]).head(top).select(cols)
    low = (table.filter((pl.col("impressions") >= min_query_impressions)
                        & (pl.col("ctr") < low_ctr_threshold))
           .sort(["impressions", "query"], descending=[True, False]).head(top).select(cols))
    zero = (table.filter(pl.col("zero_result") > 0)
            .with_columns((pl.col("zero_result") / pl.col("requests")).alias("zero_result_share"))
            .sort(["zero_result", "query"], descending=[True, False]).head(top)
            .select("query", "searches", "zero_result", "zero_result_share"))
    totals = table.select(
        pl.len().alias("distinct_queries"), pl.col("requests").sum(),
        pl.col("unlinked").sum(), pl.col("impressions").sum(), pl.col("clicks").sum(),
        pl.col("zero_result").sum(),
        ((pl.col("impressions") >= min_query_impressions) & (pl.col("ctr") < low_ctr_threshold))
        .sum().alias("low_ctr_queries"),
    )
    st, top_df, low_df, zero_df, tot = collect(stats, top_q, low, zero, totals)
    st, tot = st.row(0, named=True), tot.row(0, named=True)
    if not st["searches"]:
        return na("no search events")
    notes = []
    if st["no_text"]:
        notes.append(f"{st['no_text']} search events have no query text and are left out")
    if tot["unlinked"]:
        notes.append(f"{tot['unlinked']} searches have no request_id: their results and clicks "
                     "cannot be linked")
    out: dict[str, Any] = {
        "available": True, "searches": st["searches"],
        "distinct_queries": tot["distinct_queries"] or 0,
        "impressions": tot["impressions"] or 0, "clicks": tot["clicks"] or 0,
        "ctr": ratio(tot["clicks"], tot["impressions"]),
        "top": to_rows(top_df),
        "low_ctr_threshold": low_ctr_threshold, "min_query_impressions": min_query_impressions,
        "low_ctr_queries": tot["low_ctr_queries"] or 0, "low_ctr": to_rows(low_df),
    }
    if st["linked_impressions"]:
        linked = tot["requests"] or 0
        out["no_result"] = {
            "available": True, "searches": tot["zero_result"] or 0, "linked_searches": linked,
            "share": ratio(tot["zero_result"], linked), "queries": to_rows(zero_df),
        }
    else:
        out["no_result"] = na("no impressions linked to a request_id, so empty results "
                               "cannot be told from unlogged ones")
    out["notes"] = notes
    return out


def categories(events: pl.LazyFrame, items: pl.LazyFrame) -> dict[str, Any]:
    n_cat = items.select(pl.col("category").is_not_null().sum()).collect().item()
    if not n_cat:
        return na("items have no categories")
    (df,) = collect(category_table(events, items))
    if df.height == 0:
        return na("no item events")
    total_p = int(df["purchases"].sum())
    df = df.with_columns(
        (pl.col("purchases") / (pl.col("views") + pl.col("clicks"))).alias("conversion"),
        (pl.col("clicks") / pl.col("impressions")).alias("ctr"),
        (pl.col("add_to_cart") / (pl.col("views") + pl.col("clicks"))).alias("cart_rate"),
        (pl.col("purchases") / total_p if total_p else pl.lit(None, pl.Float64))
        .alias("purchase_share"),
    ).with_columns([pl.col(c).fill_nan(None) for c in ("conversion", "ctr", "cart_rate")])
    df = df.with_columns([  # x/0 gives inf, which means "not measured"
        pl.when(pl.col(c).is_infinite()).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("conversion", "ctr", "cart_rate")
    ])
    if not int(df["priced_purchases"].sum()):
        df = df.with_columns(pl.lit(None, pl.Float64).alias("revenue"))
    df = df.drop("priced_purchases").sort(
        ["purchases", "views", "clicks", "category"], descending=[True, True, True, False])
    notes = [("conversion = purchases / (views + clicks); cart_rate = add_to_cart / "
             "(views + clicks); ctr = clicks / impressions")]
    if df.height > MAX_CATEGORIES:
        notes.append(f"{df.height} categories; the first {MAX_CATEGORIES} by purchases are listed")
    return {"available": True, "count": df.height, "purchases": total_p,
            "rows": to_rows(df.head(MAX_CATEGORIES)), "notes": notes}


# ------------------------------------------------------------------ the report


def _safe(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as e:  # a report section never takes the report down
        log.exception("behaviour report section %s failed", name)
        return na(f"section failed ({type(e).__name__}: {e})", error=type(e).__name__)


def build_report_with_audience(
    dataset_dir: Path, *, top_queries: int = 20, low_ctr_threshold: float = 0.05,
    min_query_impressions: int = 20, audience_category: str | None = None,
    audience_size: int = 100,
) -> tuple[dict[str, Any], pl.DataFrame | None]:
    """:func:`build_report` plus the audience rows (None when there is no audience)."""
    d = Path(dataset_dir)
    notes = []
    events = scan_table(d / "events.parquet", EVENTS)
    items = scan_table(d / "items.parquet", ITEMS)
    if events is None:
        notes.append("events.parquet is missing")
        events = empty_frame(EVENTS)
    if items is None:
        notes.append("items.parquet is missing")
        items = empty_frame(ITEMS)
    report: dict[str, Any] = {
        "title": "Behaviour report", "dataset": str(d),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": {"top_queries": top_queries, "low_ctr_threshold": low_ctr_threshold,
                       "min_query_impressions": min_query_impressions,
                       "audience_category": audience_category, "audience_size": audience_size},
        "notes": notes,
    }
    report["overview"] = _safe("overview", lambda: overview(events, items))
    report["funnel"] = _safe("funnel", lambda: funnel(events))
    report["queries"] = _safe("queries", lambda: queries(
        events, top=top_queries, low_ctr_threshold=low_ctr_threshold,
        min_query_impressions=min_query_impressions))
    report["categories"] = _safe("categories", lambda: categories(events, items))
    scores: list[pl.DataFrame] = []

    def _segments() -> dict[str, Any]:
        scores.append(rfm_scores(events, items))
        return segments(events, items, scores[0])

    report["segments"] = _safe("segments", _segments)
    report["segment_category"] = _safe(
        "segment_category",
        lambda: segment_category(events, items, scores[0]) if scores
        else na("no user segments"))
    aud: list[pl.DataFrame | None] = [None]

    def _audience() -> dict[str, Any]:
        section, aud[0] = audience_section(events, items, audience_category, audience_size)
        return section

    report["audience"] = _safe("audience", _audience)
    return jsonable(report), aud[0]


def build_report(
    dataset_dir: Path, *, top_queries: int = 20, low_ctr_threshold: float = 0.05,
    min_query_impressions: int = 20, audience_category: str | None = None,
    audience_size: int = 100,
) -> dict[str, Any]:
    """The behaviour report of a dataset folder (``items.parquet``, ``events.parquet``)."""
    report, _ = build_report_with_audience(
        dataset_dir, top_queries=top_queries, low_ctr_threshold=low_ctr_threshold,
        min_query_impressions=min_query_impressions, audience_category=audience_category,
        audience_size=audience_size)
    return report


def write_report(report: dict[str, Any], out_dir: Path, *,
                 audience: pl.DataFrame | None = None) -> dict[str, Path]:
    """Write report.json, report.html (charts embedded), one PNG per chart and, when given,
    the audience CSV. Returns file name -> path."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    charts = make_charts(report)
    for name, png in charts.items():
        p = out / f"{name}.png"
        p.write_bytes(png)
        written[p.name] = p
    p = out / "report.json"
    p.write_text(json.dumps(jsonable(report), indent=2))
    written[p.name] = p
    p = out / "report.html"
    p.write_text(render_html(report, charts), encoding="utf-8")
    written[p.name] = p
    if audience is not None:
        section = report.get("audience") or {}
        p = out / (section.get("file") or "audience.csv")
        audience.write_csv(p)
        written[p.name] = p
    return written


def report_dataset(dataset_dir: Path, out_dir: Path, **options: Any) -> dict[str, Path]:
    """Build and write the report (and the audience CSV) in one call; options as build_report."""
    report, aud = build_report_with_audience(dataset_dir, **options)
    return write_report(report, out_dir, audience=aud)
