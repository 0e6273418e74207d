"""Judgements derived from behaviour: strongest action wins, linkage, aggregation."""

from __future__ import annotations

import polars as pl
import pytest

from shelfops.data.labels import JUDGEMENT_COLUMNS, derive_judgements
from shelfops.errors import ConfigError, SchemaError
from shelfops.tables import EVENTS, JUDGEMENTS

EVENT_SCHEMA = pl.Schema(pl.from_arrow(EVENTS.empty_table()).schema)


def events(rows: list[dict]) -> pl.DataFrame:
    """Canonical EVENTS frame; ``seq`` is the row order unless given."""
    full = [
        {c: None for c in EVENT_SCHEMA.names()} | {"seq": i} | r for i, r in enumerate(rows)
    ]
    return pl.DataFrame(full, schema=EVENT_SCHEMA)


def served(request: str, query: str, session: str, shown: list[str]) -> list[dict]:
    """A search event plus the impressions of one served result page."""
    rows = [{"event_type": "search", "query": query, "request_id": request, "session_id": session}]
    rows += [
        {"event_type": "impression", "item_id": it, "position": p, "request_id": request,
             "session_id": session}
        for p, it in enumerate(shown, start=1)
    ]
    return rows


def act(kind: str, item: str, request: str | None, session: str, query: str | None = None):
    return {"event_type": kind, "item_id": item, "request_id": request, "session_id": session,
                "query": query}


def by_item(df: pl.DataFrame) -> dict[str, dict]:
    return {r["item_id"]: r for r in df.iter_rows(named=True)}


def test_strongest_action_wins_within_a_request_and_counts_actions():
    ev = events(
        served("r1", "drill", "s1", ["a", "b", "c", "d"])
        + [act("click", "a", "r1", "s1"), act("add_to_cart", "a", "r1", "s1"),
           act("purchase", "a", "r1", "s1"), act("click", "a", "r1", "s1"),
           act("click", "b", "r1", "s1"), act("add_to_cart", "c", "r1", "s1")]
    )
    out = by_item(derive_judgements(ev))
    assert out["a"]["grade"] == 3.0
    assert out["b"]["grade"] == 1.0
    assert out["c"]["grade"] == 2.0
    assert out["d"]["grade"] == 0.0  # shown, never clicked
    # one occurrence each: repeated clicks in one request count once
    assert [out["a"][k] for k in ("n_impressions", "n_clicks", "n_carts", "n_purchases")] == [
        1, 1, 1, 1]
    assert out["c"]["n_clicks"] == 0 and out["c"]["n_carts"] == 1
    assert {r["query"] for r in out.values()} == {"drill"}


def test_request_id_links_actions_without_query_text_to_the_search():
    # clicks carry no query; only the search event of their request does
    ev = events(served("r1", "Cordless  DRILL", "s1", ["a"]) + [act("purchase", "a", "r1", "s1")])
    out = derive_judgements(ev)
    assert out.select("query", "item_id", "grade").rows() == [("cordless drill", "a", 3.0)]


def test_grade_is_the_mean_over_occurrences_of_separate_requests():
    ev = events(
        served("r1", "drill", "s1", ["a"]) + [act("purchase", "a", "r1", "s1")]
        + served("r2", "drill", "s1", ["a"])  # same session, same query, new page: shown only
        + served("r3", "DRILL", "s2", ["a"]) + [act("click", "a", "r3", "s2")]
    )
    row = by_item(derive_judgements(ev))["a"]
    assert row["grade"] == pytest.approx((3.0 + 0.0 + 1.0) / 3)
    assert (row["n_impressions"], row["n_clicks"], row["n_purchases"]) == (3, 1, 1)


def test_without_request_id_falls_back_to_session_and_query():
    ev = events([
        # session s1: impression then a cart on the same query text (spacing/case differ)
        act("impression", "a", None, "s1", "Red Shoes"),
        act("add_to_cart", "a", None, "s1", "red  shoes"),
        # session s2 saw the item for the same query but did nothing
        act("impression", "a", None, "s2", "red shoes"),
        # session s1, another query: a separate occurrence
        act("click", "a", None, "s1", "shoes"),
    ])
    out = derive_judgements(ev)
    got = {(r["query"], r["item_id"]): (r["grade"], r["n_impressions"])
           for r in out.iter_rows(named=True)}
    assert got == {("red shoes", "a"): (1.0, 2), ("shoes", "a"): (1.0, 1)}


def test_unlinkable_events_and_search_events_give_no_judgement():
    ev = events([
        {"event_type": "search", "query": "drill", "session_id": "s1"},  # no item
        act("purchase", "a", None, "s1"),  # no query, no request
        {"event_type": "click", "item_id": "b", "query": "saw"},  # neither request nor session
        act("click", "c", "r9", "s1"),  # request with no query anywhere
    ])
    out = derive_judgements(ev)
    assert out.height == 0
    assert out.columns == list(JUDGEMENT_COLUMNS)


def test_view_counts_as_a_click():
    ev = events(served("r1", "saw", "s1", ["a"]) + [act("view", "a", "r1", "s1")])
    row = by_item(derive_judgements(ev))["a"]
    assert (row["grade"], row["n_clicks"]) == (1.0, 1)


def test_custom_grades_and_min_impressions():
    ev = events(
        served("r1", "saw", "s1", ["a", "b"]) + [act("purchase", "a", "r1", "s1")]
        + served("r2", "saw", "s2", ["a"]) + [act("click", "a", "r2", "s2")]
    )
    out = by_item(derive_judgements(ev, purchase=10.0, click=4.0, impression=-1.0))
    assert out["a"]["grade"] == 7.0 and out["b"]["grade"] == -1.0
    kept = derive_judgements(ev, min_impressions=2)
    assert kept["item_id"].to_list() == ["a"]


def test_columns_dtypes_and_order_match_the_judgements_table():
    ev = events(served("r1", "b query", "s1", ["z", "y"]) + served("r2", "a query", "s1", ["x"]))
    out = derive_judgements(ev)
    assert out.columns[:3] == JUDGEMENTS.names
    judgement_schema = pl.from_arrow(JUDGEMENTS.empty_table()).schema
    assert {c: out.schema[c] for c in JUDGEMENTS.names} == dict(judgement_schema)
    assert all(out.schema[c] == pl.Int64 for c in JUDGEMENT_COLUMNS[3:])
    assert out.select("query", "item_id").rows() == [
        ("a query", "x"), ("b query", "y"), ("b query", "z")]


def test_output_does_not_depend_on_row_order_or_laziness():
    ev = events(
        served("r1", "drill", "s1", ["a", "b", "c"]) + [act("click", "b", "r1", "s1")]
        + served("r2", "saw", "s2", ["a", "d"]) + [act("purchase", "d", "r2", "s2")]
        + [act("impression", "e", None, "s3", "saw"), act("click", "e", None, "s3", "SAW")]
    )
    expected = derive_judgements(ev)
    for seed in range(3):
        shuffled = ev.sample(fraction=1.0, shuffle=True, seed=seed)
        assert derive_judgements(shuffled).equals(expected)
    assert derive_judgements(ev.lazy()).equals(expected)


def test_missing_column_is_named():
    ev = events(served("r1", "drill", "s1", ["a"])).drop("query")
    with pytest.raises(SchemaError, match="query"):
        derive_judgements(ev)


def test_unknown_event_type_is_rejected():
    ev = events([act("wishlist", "a", "r1", "s1", "drill")])
    with pytest.raises(SchemaError, match="event_type"):
        derive_judgements(ev)


def test_bad_arguments_are_config_errors():
    ev = events(served("r1", "drill", "s1", ["a"]))
    with pytest.raises(ConfigError, match="min_impressions"):
        derive_judgements(ev, min_impressions=0)
    with pytest.raises(ConfigError, match="purchase"):
        derive_judgements(ev, purchase=float("nan"))


def test_counts_of_events_split_by_occurrence_give_the_same_grades():
    """What the ray engine relies on: events cut by their occurrence's key (request, else
    session) and counted apart sum to the counts of all of them, grades equal to the last bit,
    whatever the grade values."""
    import random

    from shelfops.data.labels import grades_from_counts, merge_counts, occurrence_counts

    rng = random.Random(5)
    rows = []
    for r in range(300):
        session = f"s{rng.randrange(60)}"
        request = f"r{r}" if rng.random() < 0.7 else None
        query = rng.choice(["red kettle", "Red  Kettle", "blue mug", "lamp"])
        shown = rng.sample([f"i{k}" for k in range(12)], 4)
        rows += served(request, query, session, shown) if request else []
        for it in shown:
            kind = rng.choice(["impression", "click", "view", "add_to_cart", "purchase"])
            rows.append(act(kind, it, request, session, None if request else query))
    ev = events(rows)
    grades = {"purchase": 3.3, "add_to_cart": 2.1, "click": 0.7, "impression": 0.1}  # not exact in binary
    whole = derive_judgements(ev, **grades, min_impressions=2)
    key = pl.coalesce("request_id", "session_id")
    parts = [occurrence_counts(ev.filter(key.hash(seed=3) % 4 == b)).collect() for b in range(4)]
    apart = grades_from_counts(merge_counts(pl.concat(parts)), **grades, min_impressions=2)
    assert len(whole) > 20 and whole.equals(apart)
