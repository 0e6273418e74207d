"""The queries a served index is tuned for: shoppers' past searches (drawn as often as they
were typed), else the judged queries, else none."""

from __future__ import annotations

import polars as pl

from shelfops.train.index import past_queries


def test_past_searches_first_then_judged_queries_then_none(tmp_path):
    assert past_queries(tmp_path) == []
    pl.DataFrame({"query": ["drill", "saw", "drill"], "grade": [3.0, 2.0, 1.0]}).write_parquet(
        tmp_path / "judgements.parquet")
    assert sorted(past_queries(tmp_path)) == ["drill", "saw"]
    pl.DataFrame({"event_type": ["search"] * 90 + ["search"] * 10 + ["click"] * 50,
                  "query": ["red shoes"] * 90 + [f"rare {i}" for i in range(10)] + ["not a search"] * 50,
                  }).write_parquet(tmp_path / "events.parquet")
    got = past_queries(tmp_path, n=5)
    assert len(got) == len(set(got)) <= 5 and "not a search" not in got and "drill" not in got
    assert got[0] == "red shoes"  # typed 9 times in 10: drawn first
