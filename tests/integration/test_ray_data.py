"""The data stage on Ray Data (``data.engine: ray``) across a real two-node Ray cluster gives
what the local engine gives, on the same dirty input: every table row for row (events and
judgements in the same order, with the same ``seq``), the same quarantine, the same
reconciliation counts, the same labels and splits (computed on the cluster, written as parts). The input is what a shop exports: a
catalogue CSV with a repeated id, a bad price and a malformed line; events as a folder of
Parquet parts of several row groups each (read in units across the cluster) plus a JSON-lines
file with broken JSON; judgements whose rows describe products; unknown items, impossible
times, exact copies of earlier rows (within a part, across parts), a bot's session spread over
parts, anonymous sessions."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from raycluster import two_nodes

from shelfops.config.schema import CleaningConfig, DataConfig, SourceConfig, SyntheticConfig
from shelfops.data import recipe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ray = pytest.importorskip("ray")
KEY = "q" * 32


def _export(root: Path) -> list[SourceConfig]:
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    items = ["item_id,title,category,price"] + [
        f"i{k},Product {k} {['kettle', 'mug', 'lamp', 'drill'][k % 4]},Home > {['Kitchen', 'Tools'][k % 2]},"
        f"{1 + k % 50}.5" for k in range(400)]
    items += ["i5,Product five again,Home > Kitchen,3.0", "i400,Bad price,Home > Tools,-4", "i401,too,many,fields,here"]
    (root / "items.csv").write_text("\n".join(items) + "\n")

    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    rows = []
    for k in range(7000):
        user = f"u{rng.integers(0, 300)}" if rng.random() > 0.1 else None
        sess = f"s{rng.integers(0, 900)}" if user else f"anon{k}"
        kind = rng.choice(["view", "click", "add_to_cart", "purchase", "impression", "search"], p=[.4, .15, .05, .03, .3, .07])
        item = None if kind == "search" else f"i{rng.integers(0, 410)}"  # i400..i409: not in the catalogue
        q = f"{['red', 'blue', 'cheap'][k % 3]} {['kettle', 'mug', 'lamp'][k % 3]}" if kind in ("search", "impression") else None
        ts = (t0 + timedelta(minutes=int(rng.integers(0, 60 * 24 * 20)))).isoformat()
        rows.append({"user": user, "sess": sess, "item": item, "type": kind, "q": q, "ts": ts, "pos": 1 + k % 10})
    rows[100]["type"] = "teleport"
    rows[2600]["ts"] = "1970-01-02T00:00:00+00:00"
    rows[5000]["ts"] = "not a time"
    for k in range(3000, 3120):  # a bot: 120 events in two minutes, across two parts
        rows[k] = {**rows[k], "sess": "bot", "user": "u1", "ts": (t0 + timedelta(seconds=k - 3000)).isoformat()}
    for src, dst in ((10, 11), (50, 2450), (700, 6900), (2500, 4999)):  # exact copies, later in the source
        rows[dst] = dict(rows[src])
    parts = root / "events"
    parts.mkdir()
    for p, lo in enumerate(range(0, 7000, 2400)):
        pl.DataFrame(rows[lo:lo + 2400]).write_parquet(parts / f"part-{p}.parquet", row_group_size=500)
    extra = [json.dumps({**r, "pos": None}) for r in rows[:300:3]]
    (root / "more-events.jsonl").write_text("\n".join(extra[:50] + ["{broken"] + extra[50:]) + "\n")

    judged = ["query,product,grade"] + [
        f"{['red', 'blue', 'cheap'][k % 3]} {['kettle', 'mug', 'lamp'][k % 3]},Product {k} "
        f"{['kettle', 'mug', 'lamp', 'drill'][k % 4]},{1 + k % 3}" for k in range(0, 400, 2)]
    judged += ["red kettle,Brand new kettle,3", "blue mug,,2", "red kettle,too,many,fields"]
    (root / "judgements.csv").write_text("\n".join(judged) + "\n")
    ev_cols = {"user_id": "user", "session_id": "sess", "item_id": "item", "event_type": "type",
               "query": "q", "timestamp": "ts", "position": "pos"}
    return [
        SourceConfig(format="csv", paths=[str(root / "items.csv")], table="items"),
        SourceConfig(format="parquet", paths=[str(parts)], table="events", columns=ev_cols),
        SourceConfig(format="jsonl", paths=[str(root / "more-events.jsonl")], table="events", columns=ev_cols),
        SourceConfig(format="csv", paths=[str(root / "judgements.csv")], table="judgements",
                     columns={"query": "query", "item_id": "product", "grade": "grade"},
                     item_columns={"item_id": "product", "title": "product"}),
    ]


def _tables(folder: Path) -> dict[str, pl.DataFrame]:
    names = ["items", "events", "judgements", "quarantine", "labels"]
    out = {n: pl.read_parquet(folder / f"{n}.parquet") for n in names if (folder / f"{n}.parquet").exists()}
    out.update({f"splits/{p.name}": pl.read_parquet(p) for p in sorted((folder / "splits").glob("*.parquet"))})
    return out


def test_both_engines_give_the_same_tables(tmp_path, monkeypatch):
    sources = _export(tmp_path / "export")
    cfg = DataConfig(sources=sources, synthetic=SyntheticConfig(), cleaning=CleaningConfig(
        batch_rows=1000, bot_max_events_per_minute=30, bot_min_events=50),
        privacy={"key": KEY}, splits={"method": "auto", "val_days": 3, "test_days": 3})
    # one clock for both runs: "now + slack" is written into the detail of a future timestamp's
    # rejection, and the two runs may straddle a minute
    rules = recipe.rules_from(cfg)
    monkeypatch.setattr(recipe, "rules_from", lambda _cfg, _fmt=None: rules)
    took, manifests = {}, {}
    for engine in ("local", "ray"):
        t = time.perf_counter()
        if engine == "ray":
            with two_nodes() as (address, dashboard):
                manifests[engine] = recipe.run(cfg.model_copy(update={"engine": "ray"}), tmp_path / engine,
                                               progress=False)
                tasks = _task_nodes(dashboard)
        else:
            manifests[engine] = recipe.run(cfg, tmp_path / engine, progress=False)
        took[engine] = time.perf_counter() - t

    local, dist = _tables(tmp_path / "local"), _tables(tmp_path / "ray")
    assert sorted(local) == sorted(dist) and "splits/events_train.parquet" in local
    for name, a in local.items():
        b = dist[name]
        assert a.schema == b.schema, name
        assert a.sort(a.columns).equals(b.sort(b.columns)), (
            f"{name}: the engines' rows differ; only local:\n{_only(a, b)}\nonly ray:\n{_only(b, a)}")
    for name in ("events", "judgements"):  # written in the source's order, numbered alike
        assert local[name].equals(dist[name]), name
    assert (tmp_path / "ray" / "events.parquet").is_dir() and len(list((tmp_path / "ray" / "events.parquet").iterdir())) >= 8

    counts = manifests["local"].counts
    assert counts == manifests["ray"].counts
    assert manifests["local"].extra["splits"] == manifests["ray"].extra["splits"]
    for name in ("labels.parquet", "splits/events_train.parquet", "splits/sequences_train.parquet"):
        assert len(list((tmp_path / "ray" / name).glob("part-*.parquet"))) > 1, name  # written by the cluster
    reasons = {r for t in ("items", "events", "judgements") for r in counts[t]["by_reason"]}
    assert {"duplicate", "unknown_item", "bot_session", "malformed_row", "bad_type", "bad_value",
            "impossible_timestamp"} <= reasons, reasons
    assert all(f["reconciled"] for t in ("items", "events", "judgements") for f in counts[t]["files"].values())
    assert 100 < counts["events"]["by_reason"]["bot_session"] <= 120  # the bot rows no earlier check took
    assert counts["items"]["derived_from_other_tables"] > 0
    # the tasks of the four steps ran on both nodes
    assert len(tasks) == 2, tasks
    print(f"\nRAY-DATA 7,100 events + 403 items + 203 judgements: local engine {took['local']:.1f} s, "
          f"two-node Ray Data {took['ray']:.1f} s (cluster start included); tasks per node {tasks}")


def _only(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c, t in a.schema.items() if not isinstance(t, (pl.List, pl.Array))]
    with pl.Config(tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=250):
        return a.join(b, on=keys, how="anti", nulls_equal=True).head(8)


def _task_nodes(dashboard: str) -> dict[str, int]:
    from ray.util.state import list_tasks

    done = list_tasks(address=dashboard, filters=[("state", "=", "FINISHED")], limit=10_000, detail=True)
    nodes: dict[str, int] = {}
    for t in done:
        if t.name.startswith("MapBatches(_each)"):  # shelfops.data.ray_ingest's tasks
            nodes[t.node_id[:8]] = nodes.get(t.node_id[:8], 0) + 1
    return nodes
