"""The behaviour report on a small hand-made shop whose numbers are known by hand."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shelfops.data.report.dataset import (
    audience,
    build_report,
    build_report_with_audience,
    quintile_scores,
    report_dataset,
    rfm_scores,
    scan_table,
    write_report,
)
from shelfops.data.report.html import make_charts, render_html
from shelfops.errors import DataError
from shelfops.tables import EVENTS, ITEMS

T_END = datetime(2026, 1, 11, tzinfo=timezone.utc)  # the dataset's last timestamp
T_SEARCH = datetime(2026, 1, 6, 10, tzinfo=timezone.utc)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)

ITEM_ROWS = [  # item_id, category, price
    ("i1", "Bath > Faucets", 100.0),
    ("i2", "Bath > Showers", 50.0),
    ("i3", "Kitchen > Sinks", 200.0),
    ("i4", "Kitchen > Knives", 20.0),
    ("i5", "Garden", 10.0),
    ("i6", None, None),
]


def _shop_events() -> list[dict]:
    rows: list[dict] = []

    def ev(user, session, etype, item=None, query=None, ts=None, position=None, rid=None):
        rows.append({"user_id": user, "session_id": session, "item_id": item,
                     "event_type": etype, "query": query, "timestamp": ts, "seq": len(rows),
                     "position": position, "request_id": rid})

    def search(user, session, rid, query, shown, clicked=(), carted=()):
        ev(user, session, "search", query=query, ts=T_SEARCH, rid=rid)
        for pos, item in enumerate(shown, start=1):
            ev(user, session, "impression", item, ts=T_SEARCH, position=pos, rid=rid)
        for item in clicked:
            ev(user, session, "click", item, ts=T_SEARCH, rid=rid)
        for item in carted:
            ev(user, session, "add_to_cart", item, ts=T_SEARCH, rid=rid)

    search("u1", "s1", "r1", "Faucet", ["i1", "i2", "i3"], clicked=["i1"], carted=["i1"])
    search("u2", "s2", "r2", "faucet ", ["i1", "i2", "i3"], clicked=["i1", "i2"])
    search("u3", "s3", "r3", "hose", ["i5", "i4", "i2", "i1"], clicked=["i5"])
    search("u4", "s4", "r4", "Hose", ["i5", "i4", "i2", "i1"])
    search("u5", "s5", "r5", "sink", ["i3", "i4", "i1"])
    search("u6", "s6", "r6", "unicorn  lamp", [])  # no results
    ev(None, "s_anon", "search", query="knife", ts=T_SEARCH)  # no request_id: unlinked
    ev("u6", "s6", "view", "i3", ts=T_SEARCH + HOUR)
    ev("u6", "s6", "view", "i4", ts=T_SEARCH + HOUR)
    ev(None, "s_anon", "view", "i1", ts=T_SEARCH + HOUR)
    # purchases (each preceded by a cart one minute earlier): user, item, n, days before the end
    for user, item, n, days in [("u1", "i5", 5, 0), ("u2", "i3", 1, 1), ("u3", "i3", 3, 2),
                                ("u4", "i4", 4, 3), ("u5", "i2", 2, 4)]:
        for k in range(n):
            ts = T_END - days * DAY - k * HOUR
            ev(user, "p" + user, "add_to_cart", item, ts=ts - MINUTE)
            ev(user, "p" + user, "purchase", item, ts=ts)
    return rows


def _write(folder: Path, items: list[dict], events: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(items, schema=ITEMS), folder / "items.parquet")
    pq.write_table(pa.Table.from_pylist(events, schema=EVENTS), folder / "events.parquet")
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    items = [{"item_id": i, "title": f"item {i}", "category": c, "price": p}
             for i, c, p in ITEM_ROWS]
    return _write(tmp_path_factory.mktemp("shop"), items, _shop_events())


@pytest.fixture(scope="module")
def report(shop) -> dict:
    return build_report(shop, top_queries=10, low_ctr_threshold=0.2, min_query_impressions=5)


def _frames(folder: Path) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    return (scan_table(folder / "events.parquet", EVENTS),
            scan_table(folder / "items.parquet", ITEMS))


def test_no_section_failed(report):
    for key in ("overview", "funnel", "queries", "categories", "segments", "segment_category",
                "audience"):
        assert report[key]["available"], (key, report[key])
        assert "error" not in report[key]


def test_funnel_event_and_session_numbers(report):
    f = report["funnel"]
    assert f["counts"] == {"impression": 17, "view": 3, "click": 4, "add_to_cart": 16,
                           "purchase": 15, "search": 7}
    assert f["total_events"] == 62
    steps = {s["step"]: s for s in f["steps"]}
    assert [s["step"] for s in f["steps"]] == ["impression", "click", "add_to_cart", "purchase"]
    assert steps["impression"]["rate_from_previous"] is None
    assert steps["click"]["rate_from_previous"] == pytest.approx(4 / 17)
    assert steps["add_to_cart"]["rate_from_previous"] == pytest.approx(16 / 4)
    assert steps["purchase"]["rate_from_previous"] == pytest.approx(15 / 16)
    assert steps["purchase"]["rate_from_first"] == pytest.approx(15 / 17)
    # 12 sessions: s1..s6, s_anon, pu1..pu5
    assert f["sessions"] == 12
    assert [s["sessions"] for s in f["steps"]] == [5, 3, 6, 5]
    assert steps["impression"]["session_share"] == pytest.approx(5 / 12)
    assert steps["purchase"]["session_share"] == pytest.approx(5 / 12)
    assert steps["add_to_cart"]["session_rate_from_previous"] == pytest.approx(6 / 3)
    assert f["sessions_with"]["search"] == 7


def test_queries_top_low_ctr_and_no_result(report):
    q = report["queries"]
    assert q["searches"] == 7
    top = {r["query"]: r for r in q["top"]}
    assert [r["query"] for r in q["top"]] == ["faucet", "hose", "knife", "sink", "unicorn lamp"]
    assert (top["faucet"]["searches"], top["faucet"]["impressions"], top["faucet"]["clicks"]) \
        == (2, 6, 3)
    assert top["faucet"]["ctr"] == pytest.approx(0.5)
    assert top["faucet"]["add_to_cart"] == 1
    assert top["hose"]["ctr"] == pytest.approx(1 / 8)
    assert top["knife"]["impressions"] == 0 and top["knife"]["ctr"] is None
    # low CTR: hose (8 impressions, CTR 12.5%); sink has CTR 0 but only 3 impressions
    assert [r["query"] for r in q["low_ctr"]] == ["hose"]
    assert q["low_ctr_queries"] == 1
    z = q["no_result"]
    assert z["available"]
    assert [r["query"] for r in z["queries"]] == ["unicorn lamp"]
    assert z["searches"] == 1 and z["linked_searches"] == 6  # knife has no request_id
    assert z["share"] == pytest.approx(1 / 6)
    assert any("request_id" in n for n in q["notes"])


def test_low_ctr_respects_min_impressions(shop):
    r = build_report(shop, low_ctr_threshold=0.2, min_query_impressions=3)
    assert [x["query"] for x in r["queries"]["low_ctr"]] == ["hose", "sink"]


def test_categories(report):
    c = report["categories"]
    rows = {r["category"]: r for r in c["rows"]}
    assert [r["category"] for r in c["rows"]] == ["Kitchen", "Garden", "Bath"]
    assert rows["Kitchen"]["purchases"] == 8 and rows["Garden"]["purchases"] == 5
    assert rows["Bath"]["purchases"] == 2
    assert rows["Kitchen"]["views"] == 2 and rows["Kitchen"]["clicks"] == 0
    assert rows["Kitchen"]["conversion"] == pytest.approx(8 / 2)
    assert rows["Garden"]["conversion"] == pytest.approx(5 / 1)  # one click on i5
    assert rows["Bath"]["clicks"] == 3 and rows["Bath"]["views"] == 1
    assert rows["Bath"]["impressions"] == 9 and rows["Bath"]["ctr"] == pytest.approx(3 / 9)
    assert rows["Kitchen"]["revenue"] == pytest.approx(200 + 3 * 200 + 4 * 20)
    assert rows["Kitchen"]["purchase_share"] == pytest.approx(8 / 15)


def test_rfm_scores_and_segments(shop, report):
    events, items = _frames(shop)
    s = {r["user_id"]: r for r in rfm_scores(events, items).to_dicts()}
    assert set(s) == {"u1", "u2", "u3", "u4", "u5"}
    assert s["u1"]["recency_days"] == pytest.approx(0)
    assert s["u5"]["recency_days"] == pytest.approx(4)
    assert [s[u]["frequency"] for u in ("u1", "u2", "u3", "u4", "u5")] == [5, 1, 3, 4, 2]
    assert s["u3"]["monetary"] == pytest.approx(600)
    assert [(s[u]["r"], s[u]["f"]) for u in ("u1", "u2", "u3", "u4", "u5")] == [
        (5, 5), (4, 1), (3, 3), (2, 4), (1, 2)]
    # M: 50, 200, 600, 80, 100 -> 1, 4, 5, 2, 3
    assert [s[u]["m"] for u in ("u1", "u2", "u3", "u4", "u5")] == [1, 4, 5, 2, 3]
    assert {u: s[u]["segment"] for u in s} == {
        "u1": "champions", "u2": "new", "u3": "loyal", "u4": "at_risk", "u5": "lost"}
    seg = report["segments"]
    assert seg["purchasers"] == 5 and seg["browsers"] == 1 and seg["users"] == 6
    counts = {r["segment"]: r["users"] for r in seg["rows"]}
    assert counts == {"champions": 1, "loyal": 1, "potential": 0, "new": 1, "at_risk": 1,
                      "hibernating": 0, "lost": 1}


def test_quintile_ties():
    # most buyers buy once: a tie at the bottom is score 1 for F ...
    assert list(quintile_scores(np.array([1, 1, 1, 1, 5.0]))) == [1, 1, 1, 1, 5]
    # ... and a tie on the last day is score 5 for R
    assert list(quintile_scores(np.array([0, 0, 0, 0, 10.0]), lower_is_better=True)) == [
        5, 5, 5, 5, 1]
    assert list(quintile_scores(np.array([np.nan, 2.0]))) == [0, 1]  # 0 = unknown


def test_segment_category_matrix(report):
    m = report["segment_category"]
    assert m["categories"][:3] == ["Kitchen", "Garden", "Bath"]
    share = {s: dict(zip(m["categories"], row, strict=True))
             for s, row in zip(m["segments"], m["share"], strict=True)}
    # u6 (no purchase) viewed one sink and one knife: all Kitchen
    assert share["browsers"]["Kitchen"] == pytest.approx(1.0)
    # u1: click + cart on i1 (Bath), 5 carts + 5 purchases of i5 (Garden)
    assert share["champions"]["Garden"] == pytest.approx(10 / 12)
    assert share["champions"]["Bath"] == pytest.approx(2 / 12)


def test_audience_ranking(shop):
    events, items = _frames(shop)
    kitchen = audience(events, items, "kitchen", 10)
    # u4: 4 carts + 4 purchases 3 days ago > u3: 3+3 two days ago > u2: 1+1 > u6: 2 views
    assert kitchen["user_id"].to_list() == ["u4", "u3", "u2", "u6"]
    row = kitchen.row(0, named=True)
    assert (row["add_to_cart"], row["purchases"], row["views"]) == (4, 4, 0)
    decay = 0.5 ** (3 / 14)  # 4 purchases at 3 days (+0..3 hours), carts a minute earlier
    assert row["propensity"] == pytest.approx(16 * decay, rel=0.02)
    bath = audience(events, items, "Bath", 2)
    assert bath["user_id"].to_list() == ["u5", "u1"]  # size is honoured; anonymous view left out
    with pytest.raises(DataError, match="no items in top-level category"):
        audience(events, items, "Toys", 5)


def test_default_audience_is_category_with_most_purchases(report):
    a = report["audience"]
    assert a["category"] == "Kitchen" and a["chosen_by"] == "most purchases"
    assert a["file"] == "audience_kitchen.csv"
    assert [r["user_id"] for r in a["preview"]] == ["u4", "u3", "u2", "u6"]


def test_configured_audience_category_unknown_degrades(shop):
    r = build_report(shop, audience_category="Toys")
    assert not r["audience"]["available"] and "Toys" in r["audience"]["reason"]
    assert "Kitchen" in r["audience"]["categories"]


def test_write_report_html_charts_json_and_csv(shop, tmp_path):
    report, aud = build_report_with_audience(
        shop, low_ctr_threshold=0.2, min_query_impressions=5, audience_category="garden",
        audience_size=3)
    files = write_report(report, tmp_path / "out", audience=aud)
    for name in ("report.json", "report.html", "funnel.png", "top_queries.png", "no_result.png",
                 "low_ctr.png", "categories.png", "segments.png", "segment_category.png",
                 "audience_garden.csv"):
        assert files[name].is_file(), name
    assert json.loads(files["report.json"].read_text()) == report
    assert json.loads(json.dumps(report)) == report
    page = files["report.html"].read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 7
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert files["funnel.png"].read_bytes()[:4] == b"\x89PNG"
    assert "unicorn lamp" in page and "<script" not in page
    csv = pl.read_csv(files["audience_garden.csv"])
    assert csv.columns[:2] == ["user_id", "propensity"]
    assert csv["user_id"].to_list()[0] == "u1"


def test_html_escapes_text():
    rep = {"title": "<b>x</b>", "overview": {"available": False, "reason": "not available: <i>"}}
    page = render_html(rep, {})
    assert "<b>x</b>" not in page and "&lt;i&gt;" in page
    assert "not available: section missing" in page  # absent sections say so


def test_degraded_views_only_no_clock_no_prices(tmp_path):
    items = [{"item_id": f"i{k}", "title": "t", "category": None, "price": None} for k in range(3)]
    events = [{"user_id": None if k % 3 == 0 else f"u{k % 4}", "session_id": f"s{k % 5}",
                   "item_id": f"i{k % 3}", "event_type": "view", "seq": k} for k in range(30)]
    folder = _write(tmp_path / "views", items, events)
    r = build_report(folder)
    assert r["overview"]["available"] and r["funnel"]["available"]
    assert r["funnel"]["counts"]["view"] == 30
    assert r["funnel"]["steps"][1]["rate_from_previous"] is None  # no impressions
    assert set(r["overview"]["missing"]) >= {"timestamps", "prices", "categories",
                                            "search events", "purchase events"}
    assert r["queries"]["reason"] == "not available: no search events"
    assert not r["categories"]["available"] and not r["segments"]["available"]
    assert not r["audience"]["available"]
    assert all("error" not in v for v in r.values() if isinstance(v, dict))
    files = report_dataset(folder, tmp_path / "out")
    assert "funnel.png" in files and "report.html" in files
    assert "not available: no search events" in files["report.html"].read_text()


def test_degraded_purchases_only_no_timestamps(tmp_path):
    """Amazon-like: purchases only, no clock; RFM uses F and M with neutral R."""
    items = [{"item_id": "a", "category": "Books > SciFi", "price": 10.0},
             {"item_id": "b", "category": "Music", "price": None}]
    events = [{"user_id": u, "session_id": u, "item_id": i, "event_type": "purchase", "seq": k}
              for k, (u, i) in enumerate([("x", "a"), ("x", "a"), ("y", "b"), ("z", "a")])]
    folder = _write(tmp_path / "amazon", items, events)
    r = build_report(folder)
    seg = r["segments"]
    assert seg["available"] and any("recency not available" in n for n in seg["notes"])
    assert any("unpriced" in n for n in seg["notes"])
    assert r["audience"]["category"] == "Books"
    events_lf, items_lf = _frames(folder)
    s = {x["user_id"]: x for x in rfm_scores(events_lf, items_lf).to_dicts()}
    assert s["x"]["r"] is None and s["x"]["segment"] == "loyal"
    assert s["y"]["monetary"] is None


def test_missing_files_and_empty_events(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = build_report(empty)
    assert r["notes"] == ["events.parquet is missing", "items.parquet is missing"]
    assert r["funnel"]["reason"] == "not available: no events"
    files = write_report(r, tmp_path / "out")
    assert "report.html" in files and make_charts(r) == {}
    folder = _write(tmp_path / "no_events", [{"item_id": "a", "category": "X", "price": 1.0}], [])
    r2 = build_report(folder)
    assert not r2["funnel"]["available"] and not r2["audience"]["available"]
    assert all("error" not in v for v in r2.values() if isinstance(v, dict))
