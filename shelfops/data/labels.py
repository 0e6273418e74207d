"""Graded relevance derived from behaviour: the strongest action wins.

An *occurrence* is one showing of an item for a query:

* events of one served result page share a ``request_id`` (the search event, the
  impressions with their position, and the clicks, carts and purchases that followed);
  the query of the occurrence is the request's query (the first non-empty query among the
  request's events in ``seq`` order, normally the search event's), so clicks that do not
  repeat the query text are still linked;
* events without a ``request_id`` are linked by ``(session_id, query)``: everything a
  session did on one (normalised) query is one occurrence.

Within an occurrence the strongest action sets its grade:
purchase > add_to_cart > click (a product ``view`` counts as a click) > shown without a
click (impression). The grade of a ``(query, item_id)`` pair is the mean grade of its
occurrences; ``n_impressions`` counts its occurrences (an item that was clicked was shown,
even when no impression event was logged), ``n_clicks``/``n_carts``/``n_purchases`` count
the occurrences in which that action happened at least once.

Events that cannot be tied to a query (no query on the event nor on its request) or to an
occurrence (neither ``request_id`` nor ``session_id``) carry no judgement and are skipped;
``search`` events only provide the query. Queries are grouped and returned normalised
(lowercase, single spaces), see :func:`shelfops.data.text.normalise_query`.
"""

from __future__ import annotations

import math

import polars as pl

from shelfops.data.text import normalise_query
from shelfops.errors import ConfigError, SchemaError
from shelfops.tables import EVENT_TYPES

JUDGEMENT_COLUMNS: tuple[str, ...] = (
    "query", "item_id", "grade", "n_impressions", "n_clicks", "n_carts", "n_purchases",
)

# action strength: higher wins within an occurrence
_STRENGTH: dict[str, int] = {
    "impression": 0, "view": 1, "click": 1, "add_to_cart": 2, "purchase": 3,
}
_REQUIRED = ("event_type", "item_id", "query")
_OPTIONAL: dict[str, pl.DataType] = {
    "request_id": pl.String(), "session_id": pl.String(), "seq": pl.Int64(),
}

_EMPTY_SCHEMA = pl.Schema({
    "query": pl.String(), "item_id": pl.String(), "grade": pl.Float64(),
    "n_impressions": pl.Int64(), "n_clicks": pl.Int64(), "n_carts": pl.Int64(),
    "n_purchases": pl.Int64(),
})


def _check_grades(purchase: float, add_to_cart: float, click: float, impression: float,
                  min_impressions: int) -> None:
    problems = [
        f"grade for {name} must be a finite number, got {value!r}"
        for name, value in (("purchase", purchase), ("add_to_cart", add_to_cart),
                            ("click", click), ("impression", impression))
        if not isinstance(value, (int, float)) or not math.isfinite(value)
    ]
    if not isinstance(min_impressions, int) or min_impressions < 1:
        problems.append(f"min_impressions must be an integer >= 1, got {min_impressions!r}")
    if problems:
        raise ConfigError(problems, source="derive_judgements")


def derive_judgements(
    events: pl.LazyFrame | pl.DataFrame,
    *,
    purchase: float = 3.0,
    add_to_cart: float = 2.0,
    click: float = 1.0,
    impression: float = 0.0,
    min_impressions: int = 1,
) -> pl.DataFrame:
    """Graded relevance per (normalised query, item_id) from an EVENTS table.

    Returns ``query, item_id, grade`` (the JUDGEMENTS columns) followed by
    ``n_impressions, n_clicks, n_carts, n_purchases``; pairs with fewer than
    ``min_impressions`` occurrences are dropped. Sorted by ``query, item_id``.

    Raises :class:`SchemaError` when a required column (``event_type``, ``item_id``,
    ``query``) is missing or ``event_type`` holds an unknown value, and
    :class:`ConfigError` for a non-finite grade or ``min_impressions < 1``.
    """
    _check_grades(purchase, add_to_cart, click, impression, min_impressions)
    return grades_from_counts(occurrence_counts(events), purchase=purchase, add_to_cart=add_to_cart,
                              click=click, impression=impression, min_impressions=min_impressions)


def occurrence_counts(events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Per (normalised query, item_id): how many occurrences reached each action strength
    (``n_strength_0`` shown .. ``n_strength_3`` bought) and in how many a click, a cart, a
    purchase happened. An occurrence lies within one request or one session, so the counts of
    events split by ``coalesce(request_id, session_id)`` add up to the counts of all of them."""
    lf = events.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise SchemaError(
            f"events lack column(s) {', '.join(missing)} needed to derive judgements",
            columns=missing,
        )
    lf = lf.with_columns(
        pl.lit(None, dtype).alias(c) for c, dtype in _OPTIONAL.items() if c not in names
    )
    if "seq" not in names:  # source order is row order
        lf = lf.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("seq"))

    unknown = (
        lf.select(pl.col("event_type").cast(pl.String))
        .filter(~pl.col("event_type").is_in(list(EVENT_TYPES)) | pl.col("event_type").is_null())
        .unique()
        .head(5)
        .collect()
    )
    if unknown.height:
        raise SchemaError(
            f"column event_type holds unknown value(s) {unknown['event_type'].to_list()}; "
            f"expected one of {list(EVENT_TYPES)}",
            column="event_type",
        )

    lf = lf.select(
        pl.col("event_type").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        pl.col("request_id").cast(pl.String),
        pl.col("session_id").cast(pl.String),
        pl.col("seq").cast(pl.Int64),
        normalise_query(pl.col("query").cast(pl.String)).alias("q"),
    ).with_columns(pl.when(pl.col("q") == "").then(None).otherwise(pl.col("q")).alias("q"))

    # the query of each served request: its first non-empty query in source order
    request_query = (
        lf.filter(pl.col("request_id").is_not_null() & pl.col("q").is_not_null())
        .group_by("request_id")
        .agg(pl.col("q").sort_by("seq").first().alias("request_q"))
    )
    linked = (
        lf.filter(pl.col("event_type").is_in(list(_STRENGTH)) & pl.col("item_id").is_not_null())
        .join(request_query, on="request_id", how="left")
        .with_columns(
            pl.coalesce("request_q", "q").alias("query"),
            pl.col("request_id").is_not_null().alias("_by_request"),
            pl.coalesce("request_id", "session_id").alias("_link"),
            pl.col("event_type").replace_strict(_STRENGTH, return_dtype=pl.Int8).alias("_strength"),
        )
        .filter(pl.col("query").is_not_null() & pl.col("_link").is_not_null())
    )
    occurrences = linked.group_by("query", "item_id", "_by_request", "_link").agg(
        pl.col("_strength").max().alias("_strength"),
        pl.col("event_type").is_in(["click", "view"]).any().alias("_clicked"),
        (pl.col("event_type") == "add_to_cart").any().alias("_carted"),
        (pl.col("event_type") == "purchase").any().alias("_purchased"),
    )
    return occurrences.group_by("query", "item_id").agg(
        *[(pl.col("_strength") == k).sum().cast(pl.Int64).alias(f"n_strength_{k}") for k in range(4)],
        pl.col("_clicked").sum().cast(pl.Int64).alias("n_clicks"),
        pl.col("_carted").sum().cast(pl.Int64).alias("n_carts"),
        pl.col("_purchased").sum().cast(pl.Int64).alias("n_purchases"),
    )


def grades_from_counts(counts: pl.LazyFrame | pl.DataFrame, *, purchase: float = 3.0, add_to_cart: float = 2.0,
                       click: float = 1.0, impression: float = 0.0, min_impressions: int = 1) -> pl.DataFrame:
    """Judgements from :func:`occurrence_counts` (summed over parts of the events, when they
    were counted apart): a pair's grade is the mean of its occurrences' grades, computed from
    how many occurrences reached each strength, so counts of any split of the events give the
    same grades to the last bit."""
    grade_of = (float(impression), float(click), float(add_to_cart), float(purchase))
    n = pl.sum_horizontal(*[pl.col(f"n_strength_{k}") for k in range(4)])
    total = pl.sum_horizontal(*[pl.col(f"n_strength_{k}") * grade_of[k] for k in range(4)])
    out = (
        counts.lazy()
        .with_columns((total / n).alias("grade"), n.cast(pl.Int64).alias("n_impressions"))
        .filter(pl.col("n_impressions") >= min_impressions)
        .sort("query", "item_id")
        .select(JUDGEMENT_COLUMNS)
        .collect()
    )
    return out.cast(dict(_EMPTY_SCHEMA))  # type: ignore[arg-type]


def merge_counts(parts: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Occurrence counts of several parts of the events (concatenated) summed per pair."""
    return parts.lazy().group_by("query", "item_id").agg(pl.all().sum())
