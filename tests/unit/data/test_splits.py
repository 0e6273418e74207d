"""Splits: leave-one-out, time and query-grouped folds, proven free of leakage."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from shelfops.data.splits import (
    group_kfold,
    leave_one_out,
    split_summary,
    time_split,
)
from shelfops.errors import ConfigError, DataError, SchemaError
from shelfops.tables import EVENTS

EVENT_SCHEMA = pl.Schema(pl.from_arrow(EVENTS.empty_table()).schema)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def events(rows: list[dict]) -> pl.DataFrame:
    full = [{c: None for c in EVENT_SCHEMA.names()} | {"seq": i} | r for i, r in enumerate(rows)]
    return pl.DataFrame(full, schema=EVENT_SCHEMA)


def norm(q: str) -> str:
    return " ".join(q.lower().split())


# --------------------------------------------------------------------------- leave-one-out


def random_sequences(n_users: int = 60, seed: int = 0) -> tuple[pl.DataFrame, dict]:
    """Events whose source order (seq) disagrees with time; returns the true order too."""
    rnd = random.Random(seed)
    rows, truth = [], {}
    for u in range(n_users):
        n = rnd.randint(1, 9)
        items = [f"i{rnd.randint(0, 6)}" for _ in range(n)]  # repeats, incl. consecutive
        times = sorted(rnd.sample(range(10_000), n))
        truth[f"u{u}"] = items
        for it, t in zip(items, times):
            rows.append({"user_id": f"u{u}", "session_id": f"s{u}", "item_id": it,
                             "event_type": rnd.choice(["view", "click", "purchase"]),
                             "timestamp": T0 + timedelta(minutes=t)})
        # noise that is not an interaction
        rows.append({"user_id": f"u{u}", "session_id": f"s{u}", "item_id": "imp",
                         "event_type": "impression", "timestamp": T0})
    rnd.shuffle(rows)  # source order is now unrelated to time
    return events(rows), truth


def test_loo_targets_are_last_and_second_to_last_and_train_is_strictly_before():
    ev, truth = random_sequences()
    out = leave_one_out(ev)
    valid = {r["user_id"]: r for r in out["valid"].iter_rows(named=True)}
    test = {r["user_id"]: r for r in out["test"].iter_rows(named=True)}
    train = out["train"].group_by("user_id").agg(pl.col("item_id").sort_by("position"))
    train = dict(train.iter_rows())
    assert "imp" not in out["train"]["item_id"].to_list()
    for user, items in truth.items():
        if len(items) < 3:  # train-only
            assert user not in valid and user not in test
            assert train[user] == items
            continue
        assert test[user]["item_id"] == items[-1]
        assert valid[user]["item_id"] == items[-2]
        # train holds exactly the interactions strictly before the valid target, in order
        assert train[user] == items[:-2]
        assert valid[user]["history"] == items[:-2]
        assert test[user]["history"] == items[:-1]
    # the targets of a user are never a later position of their own training sequence
    t = out["train"]
    for name in ("valid", "test"):
        tgt = out[name].select("user_id", pl.col("seq").alias("target_seq"))
        leaked = t.join(tgt, on="user_id").filter(pl.col("seq") == pl.col("target_seq"))
        assert leaked.height == 0


def test_loo_orders_by_seq_when_timestamps_are_missing_and_keeps_duplicates():
    ev = events([
        {"user_id": "u1", "item_id": i, "event_type": "purchase"} for i in ["a", "b", "b", "c", "d"]
    ] + [{"user_id": "u2", "item_id": "x", "event_type": "purchase", "timestamp": T0}])
    out = leave_one_out(ev)
    assert out["train"].filter(pl.col("user_id") == "u1")["item_id"].to_list() == ["a", "b", "b"]
    assert out["valid"].rows() == [("u1", "c", 3, ["a", "b", "b"])]
    assert out["test"].rows() == [("u1", "d", 4, ["a", "b", "b", "c"])]
    assert out["train"].filter(pl.col("user_id") == "u2")["item_id"].to_list() == ["x"]


def test_loo_truncates_history_to_the_latest_max_len_items():
    ev = events([{"user_id": "u", "item_id": f"i{k}", "event_type": "view"} for k in range(10)])
    out = leave_one_out(ev, max_len=3)
    assert out["valid"]["history"][0].to_list() == ["i5", "i6", "i7"]
    assert out["test"]["history"][0].to_list() == ["i6", "i7", "i8"]
    assert out["train"].height == 8  # training keeps the whole prefix


def test_loo_is_deterministic_and_independent_of_row_order():
    ev, _ = random_sequences(seed=3)
    a = leave_one_out(ev)
    b = leave_one_out(ev.sample(fraction=1.0, shuffle=True, seed=1).lazy())
    for name in ("train", "valid", "test"):
        assert a[name].sort("user_id", maintain_order=True).equals(
            b[name].sort("user_id", maintain_order=True))


def test_loo_event_types_filter_and_errors():
    ev = events([{"user_id": "u", "item_id": f"i{k}", "event_type": t}
                 for k, t in enumerate(["view", "purchase", "view", "purchase", "purchase"])])
    out = leave_one_out(ev, event_types=("purchase",))
    assert out["test"]["item_id"].to_list() == ["i4"]
    assert out["valid"]["item_id"].to_list() == ["i3"]
    assert out["train"]["item_id"].to_list() == ["i1"]
    with pytest.raises(SchemaError, match="user_id"):
        leave_one_out(ev.drop("user_id"))
    with pytest.raises(ConfigError, match="max_len"):
        leave_one_out(ev, max_len=0)


# --------------------------------------------------------------------------- time


def timed(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rnd = random.Random(seed)
    return events([
        {"user_id": f"u{rnd.randint(0, 20)}", "item_id": f"i{k}", "event_type": "view",
             "timestamp": T0 + timedelta(seconds=rnd.randint(0, 10 * 86_400))}
        for k in range(n)
    ])


def test_time_split_orders_every_train_before_every_valid_before_every_test():
    ev = timed()
    out = time_split(ev, val_days=2, test_days=3)
    tr, va, te = (out[k]["timestamp"] for k in ("train", "valid", "test"))
    assert min(len(tr), len(va), len(te)) > 0
    assert tr.max() < va.min() and va.max() < te.min()
    assert len(tr) + len(va) + len(te) == ev.height
    # default cutoff: the latest timestamp minus test_days
    latest = ev["timestamp"].max()
    assert te.min() >= latest - timedelta(days=3) > va.max()
    assert va.min() >= latest - timedelta(days=5) > tr.max()
    assert sorted(pl.concat(out.values())["seq"].to_list()) == ev["seq"].to_list()


def test_time_split_boundaries_belong_to_the_later_split():
    cut = T0 + timedelta(days=5)
    ev = events([
        {"item_id": item, "event_type": "view", "timestamp": cut - delta}
        for item, delta in [
            ("before_val", timedelta(days=1, milliseconds=1)), ("val_start", timedelta(days=1)),
            ("before_test", timedelta(milliseconds=1)), ("test_start", timedelta(0)),
        ]
    ])
    out = time_split(ev, cutoff=cut.replace(tzinfo=None), val_days=1)  # naive = UTC
    assert out["train"]["item_id"].to_list() == ["before_val"]
    assert out["valid"]["item_id"].to_list() == ["val_start", "before_test"]
    assert out["test"]["item_id"].to_list() == ["test_start"]


def test_time_split_sets_undated_rows_apart_and_refuses_missing_timestamps():
    ev = timed(50)
    assert set(time_split(ev)) == {"train", "valid", "test"}
    holed = ev.with_columns(
        pl.when(pl.col("seq").is_in([3, 7])).then(None).otherwise(pl.col("timestamp"))
        .alias("timestamp")
    )
    out = time_split(holed)
    assert out["undated"]["seq"].to_list() == [3, 7]
    for name in ("train", "valid", "test"):
        assert out[name]["timestamp"].null_count() == 0
    assert sum(v.height for v in out.values()) == ev.height
    with pytest.raises(DataError, match="timestamp"):
        time_split(ev.with_columns(pl.lit(None, pl.Datetime("ms", "UTC")).alias("timestamp")))
    with pytest.raises(SchemaError, match="timestamp"):
        time_split(ev.drop("timestamp"))
    with pytest.raises(SchemaError, match="item_id"):
        time_split(ev, time_col="item_id")


# --------------------------------------------------------------------------- group k-fold


def judged(n_queries: int = 200, seed: int = 0) -> pl.DataFrame:
    """Many rows per query, with the same query spelt in different case and spacing."""
    rnd = random.Random(seed)
    rows = []
    for q in range(n_queries):
        base = f"query {q} {'drill' if q % 2 else 'saw'}"
        for j in range(rnd.randint(2, 8)):
            spelling = rnd.choice([base, base.upper(), base.replace(" ", "  "), " " + base.title()])
            rows.append({"query": spelling, "item_id": f"i{rnd.randint(0, 50)}",
                             "grade": float(rnd.randint(1, 3))})
    rnd.shuffle(rows)
    return pl.DataFrame(rows)


def test_group_kfold_never_puts_a_query_in_two_splits():
    df = judged()
    out = group_kfold(df, folds=5, test_fold=0, val_fold=1)
    sets = {k: {norm(q) for q in v["query"]} for k, v in out.items()}
    assert all(sets.values())
    assert not sets["train"] & sets["valid"]
    assert not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]
    assert sum(v.height for v in out.values()) == df.height
    assert pl.concat(out.values()).sort(pl.all()).equals(df.sort(pl.all()))
    assert all(v.columns == df.columns for v in out.values())
    # about 1/5 of the queries each for valid and test
    n = len({norm(q) for q in df["query"]})
    assert 0.1 * n < len(sets["test"]) < 0.3 * n and 0.1 * n < len(sets["valid"]) < 0.3 * n


def test_group_kfold_assignment_is_stable_across_files_and_processes():
    df = judged(seed=1)
    out = group_kfold(df, seed=13)
    test_queries = sorted({norm(q) for q in out["test"]["query"]})
    # another file holding some of the same queries, in another order: same folds
    other = df.sample(fraction=0.5, seed=2).with_columns(pl.col("query").str.to_uppercase())
    other_out = group_kfold(other, seed=13)
    assert {norm(q) for q in other_out["test"]["query"]} <= set(test_queries)
    assert {norm(q) for q in other_out["train"]["query"]}.isdisjoint(test_queries)
    # a fresh interpreter with another hash seed computes the same folds
    code = (
        "import json,sys; from shelfops.data.splits import group_fold;"
        "qs=json.load(sys.stdin); print(json.dumps([group_fold(q, folds=5, seed=13) for q in qs]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    res = subprocess.run([sys.executable, "-c", code], input=json.dumps(test_queries),
                         capture_output=True, text=True, env=env, check=True)
    assert json.loads(res.stdout) == [0] * len(test_queries)
    # and the seed matters
    assert {norm(q) for q in group_kfold(df, seed=14)["test"]["query"]} != set(test_queries)


def test_group_kfold_arguments_and_nulls():
    df = judged(10)
    with pytest.raises(ConfigError, match="differ"):
        group_kfold(df, test_fold=1, val_fold=1)
    with pytest.raises(ConfigError, match="test_fold"):
        group_kfold(df, folds=3, test_fold=3)
    with pytest.raises(SchemaError, match="search_term"):
        group_kfold(df, group_col="search_term")
    with pytest.raises(DataError, match="query"):
        group_kfold(df.with_columns(pl.lit(None, pl.String).alias("query")))


# --------------------------------------------------------------------------- summary


def test_split_summary_counts_are_json_ready():
    out = time_split(timed(), val_days=2, test_days=3)
    summary = split_summary(out)
    json.dumps(summary)
    assert summary["train"]["rows"] == out["train"].height
    assert summary["test"]["users"] == out["test"]["user_id"].n_unique()
    assert summary["valid"]["first_timestamp"] == out["valid"]["timestamp"].min().isoformat()
    loo = split_summary(leave_one_out(timed()))
    assert loo["test"]["rows"] == loo["test"]["users"] and "history_mean_len" in loo["test"]
    q = split_summary(group_kfold(judged(30)))
    assert sum(v["queries"] for v in q.values()) == 30
