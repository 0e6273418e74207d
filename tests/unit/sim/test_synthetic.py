"""The synthetic shop: schemas, determinism, linkage, learnable behaviour, drift, truth."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from shelfops.errors import ConfigError
from shelfops.plain import tokens
from shelfops.sim.shop.catalogue import STOPWORDS, Vocab, build_vocab, parse_query
from shelfops.sim.shop.generate import ShopTruth, generate_shop
from shelfops.sim.shop.text import short_noun
from shelfops.sim.shop.vocab import LEAVES, ZERO_RESULT_QUERIES
from shelfops.tables import CATEGORY_SEP, EVENT_TYPES, EVENTS, ITEMS, JUDGEMENTS

DRIFT_DAY = 5


def _make(out: Path, **kw) -> dict:
    args = {"users": 400, "items": 400, "days": 9, "sessions_per_user_per_day": 0.6, "seed": 3,
            "start": datetime(2026, 1, 1), "drift_day": DRIFT_DAY, "drift_strength": 0.6,
            "judged_queries": 40, "target_events": None, "drift_new_items": 0.03, "progress": False}
    args.update(kw)
    return generate_shop(out, **args)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shop")
    return out, _make(out)


@pytest.fixture(scope="module")
def events(shop) -> pl.DataFrame:
    return pl.read_parquet(shop[0] / "events.parquet")


@pytest.fixture(scope="module")
def truth(shop) -> ShopTruth:
    return ShopTruth.load(shop[0])


def test_tables_have_exactly_the_canonical_schemas(shop):
    out, _ = shop
    for name, schema in (("items", ITEMS), ("events", EVENTS), ("judgements", JUDGEMENTS)):
        got = pq.read_table(out / f"{name}.parquet").schema.remove_metadata()
        assert got.equals(schema), (name, got)


def test_items_look_like_a_catalogue(shop):
    items = pl.read_parquet(shop[0] / "items.parquet")
    assert items.height == 400 and items["item_id"].is_unique().all()
    assert all(re.fullmatch(r"i\d{5}", i) for i in items["item_id"])
    assert all(len(c.split(CATEGORY_SEP)) == 3 for c in items["category"])
    assert items["category"].n_unique() >= 15 and items["brand"].n_unique() >= 20
    assert items["title"].n_unique() > 0.95 * items.height
    assert all(isinstance(json.loads(a), dict) and json.loads(a) for a in items["attributes"])
    assert all(d.count(".") >= 2 for d in items["description"])
    assert (items["price"] > 0).all()


def test_events_are_ordered_and_well_formed(events, shop):
    assert events.height == shop[1]["events"] > 5_000
    assert (events["seq"].to_numpy() == np.arange(events.height)).all()
    assert events["timestamp"].is_sorted()
    assert set(events["event_type"].unique()) == set(EVENT_TYPES)
    with_pos = events.filter(pl.col("position").is_not_null())
    assert set(with_pos["event_type"].unique()) == {"impression", "click"}
    assert with_pos["position"].min() >= 1 and with_pos["position"].max() <= 10
    assert events.filter(pl.col("event_type") == "impression")["position"].null_count() == 0
    assert events.filter(pl.col("event_type") == "search")["item_id"].null_count() == \
        shop[1]["events_by_type"]["search"]
    users = events["user_id"].drop_nulls()
    assert users.str.contains(r"^u\d{6}$").all()
    assert events["session_id"].str.contains(r"^s\d{7,}$").all()


def test_same_seed_same_tables_other_seed_other_tables(tmp_path):
    small = {"users": 120, "items": 120, "days": 3, "judged_queries": 10}
    a, b, c = (tmp_path / x for x in "abc")
    _make(a, **small)
    _make(b, **small)
    _make(c, **small, seed=4)
    for name in ("items", "events", "judgements"):
        ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
        assert ta.equals(tb), name
        assert not ta.equals(pq.read_table(c / f"{name}.parquet")), name
    for f in ("items.npz", "users.npz", "queries.npz"):
        with np.load(a / "truth" / f) as za, np.load(b / "truth" / f) as zb:
            assert all(np.array_equal(za[k], zb[k]) for k in za.files)


def test_every_result_event_links_to_its_search(events, shop):
    searches = events.filter(pl.col("event_type") == "search")
    assert searches["request_id"].null_count() == 0 and searches["request_id"].is_unique().all()
    assert searches["query"].null_count() == 0
    results = events.filter(pl.col("event_type").is_in(["impression", "click"]))
    assert results["request_id"].null_count() == 0
    linked = events.filter(pl.col("request_id").is_not_null() & (pl.col("event_type") != "search"))
    joined = linked.join(searches.select("request_id", pl.col("query").alias("sq"),
                                         pl.col("session_id").alias("ss")), on="request_id")
    assert joined.height == linked.height
    assert (joined["query"] == joined["sq"]).all() and (joined["session_id"] == joined["ss"]).all()
    imps = events.filter(pl.col("event_type") == "impression").select("request_id", "item_id",
                                                                       "position")
    clicks = events.filter(pl.col("event_type") == "click").select("request_id", "item_id",
                                                                    "position")
    assert clicks.join(imps, on=["request_id", "item_id", "position"], how="anti").height == 0
    no_results = searches.join(imps, on="request_id", how="anti").height
    assert no_results == shop[1]["zero_result_searches"] > 0
    assert no_results < 0.1 * searches.height


def test_clicks_follow_the_hidden_relevance(events, truth):
    imps = events.filter(pl.col("event_type") == "impression").select("request_id", "item_id",
                                                                       "query", "position")
    clicks = events.filter(pl.col("event_type") == "click").select(
        "request_id", "item_id", pl.lit(1).alias("clicked"))
    shown = imps.join(clicks, on=["request_id", "item_id"], how="left").with_columns(
        pl.col("clicked").fill_null(0))
    rel = np.concatenate([truth.relevance(g["query"][0], g["item_id"].to_list())
                          for g in shown.partition_by("query", maintain_order=True)])
    clicked = np.concatenate([g["clicked"].to_numpy()
                              for g in shown.partition_by("query", maintain_order=True)])
    assert np.corrcoef(rel, clicked)[0, 1] > 0.15
    assert clicked[rel >= 2.5].mean() > 3 * clicked[rel < 1].mean()
    ctr = shown.group_by("position").agg(pl.col("clicked").mean()).sort("position")["clicked"]
    assert ctr[0] > ctr[9]  # position bias


def test_drift_shifts_the_query_mix(events, truth, shop):
    summary = shop[1]["drift"]
    leaf = truth.drift.leaf
    assert summary["trending_category"] == truth.vocab.leaf_paths[leaf]
    searches = events.filter(pl.col("event_type") == "search")
    day = (searches["timestamp"] - searches["timestamp"].min().replace(hour=0, minute=0, second=0,
           microsecond=0)).dt.total_days().to_numpy()
    trending = np.array([truth.parse(q).leaf == leaf for q in searches["query"]])
    before, after = trending[day < DRIFT_DAY].mean(), trending[day >= DRIFT_DAY + 2].mean()
    assert before < 0.05 and after > before + 0.3
    assert summary["search_share_after"] > summary["search_share_before"] + 0.2
    new_items = {f"i{i:05d}" for i in np.flatnonzero(truth.cat.launch_day > 0)}
    assert len(new_items) == summary["new_items"] > 0
    early = events.filter(pl.col("timestamp") < searches["timestamp"].min().replace(
        hour=0, minute=0, second=0, microsecond=0) + pl.duration(days=DRIFT_DAY))
    assert not new_items & set(early["item_id"].drop_nulls().to_list())


def test_judgements_are_graded_by_the_truth(shop, truth):
    j = pl.read_parquet(shop[0] / "judgements.parquet")
    assert j["query"].n_unique() == 40 == shop[1]["judged_queries"]
    assert set(j["grade"].unique().to_list()) == {0.0, 1.0, 2.0, 3.0}
    sizes = j.group_by("query").len()["len"]
    assert sizes.min() >= 8 and sizes.max() <= 20
    for g in j.partition_by("query"):
        rel = truth.relevance(g["query"][0], g["item_id"].to_list())
        assert ((rel >= 0) & (rel <= 3)).all()
        assert np.array_equal(np.rint(rel), g["grade"].to_numpy())


def test_truth_round_trips_without_pickles(shop, truth):
    for f in ("items.npz", "users.npz", "queries.npz"):
        with np.load(shop[0] / "truth" / f, allow_pickle=False) as z:
            assert z.files
    assert len(truth.cat) == 400 and len(truth.users) == 400
    items = ["i00001", "i00002", "i00003"]
    assert truth.affinity("u000001", items).shape == (3,)
    assert truth.affinity(None, items).shape == (3,)  # unknown shoppers are average ones
    q = truth.bank.text[0]
    p = truth.click_probability("u000001", q, ["i00001"] * 10, list(range(1, 11)), day=1)
    assert ((p > 0) & (p < 1)).all() and (np.diff(p) < 0).all()
    rng = np.random.default_rng(0)
    leaf = truth.drift.leaf
    early = [truth.parse(truth.sample_query(rng, 0)).leaf == leaf for _ in range(300)]
    late = [truth.parse(truth.sample_query(rng, DRIFT_DAY + 3)).leaf == leaf for _ in range(300)]
    assert np.mean(late) > np.mean(early) + 0.3
    assert re.fullmatch(r"u\d{6}", truth.sample_user(rng, 1))
    with pytest.raises(ValueError, match="unknown item id"):
        truth.relevance("saucepan", ["i99999"])


def test_bots_are_in_the_logs(events, shop):
    per = events.group_by("session_id").agg(
        pl.len().alias("n"),
        (pl.col("timestamp").max() - pl.col("timestamp").min()).dt.total_seconds().alias("s"))
    bots = per.filter(pl.col("n") >= 100)
    assert bots.height == shop[1]["sessions"]["bot"] > 0
    assert (bots["n"] / (bots["s"] / 60 + 1e-9) > 30).all()


def test_target_events_stops_early(tmp_path):
    s = _make(tmp_path, users=300, items=200, days=20, target_events=3_000, judged_queries=5)
    assert s["stopped_at_target"] and s["days"] < 20
    assert 3_000 <= s["events"] < 20_000
    assert pq.read_metadata(tmp_path / "events.parquet").num_rows == s["events"]


def test_queries_parse_back_to_their_meaning(truth):
    vocab = build_vocab()
    for i in range(truth.n_zero_start):
        assert parse_query(truth.bank.text[i], vocab) == truth.bank.query(i)
    for q in ZERO_RESULT_QUERIES:
        assert parse_query(q, vocab).empty
    assert parse_query("Red CAST-IRON skillets", vocab).noun == vocab.nouns.index("skillet")
    # shoppers' own words, plurals and misspellings mean the catalogue's concepts
    gray, sofa = vocab.values.index("gray"), vocab.nouns.index("sofa")
    assert parse_query("grey couches", vocab) == parse_query("gray sofa", vocab)
    assert parse_query("grey couches", vocab) == parse_query("Gray Settee", vocab)
    assert parse_query("charcoal couch", vocab).values == (gray,)
    assert parse_query("trainers", vocab).noun == vocab.nouns.index("running shoe")
    assert parse_query("charging brick", vocab).noun == vocab.nouns.index("wall charger")
    assert parse_query("tee", vocab).noun == vocab.nouns.index("t-shirt")
    assert parse_query("stainless skillet", vocab).values == (vocab.values.index("stainless steel"),)
    typo, word = next((t, w) for t, w in vocab.typos.items() if w == "sofa" or w == "couch")
    assert parse_query(f"navy {typo}", vocab).noun == sofa, (typo, word)
    assert not set(vocab.typos) & {t for key in vocab.terms for t in key.split(" ")}
    again = Vocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again.terms == vocab.terms and again.typos == vocab.typos


def test_shoppers_use_their_own_words(truth, shop):
    """A good share of what shoppers type is not in the relevant products' text."""
    items = pl.read_parquet(shop[0] / "items.parquet")
    text = [set(tokens(f"{a} {b}")) for a, b in zip(items["title"], items["description"])]
    absent = []
    weights = []
    for qi in range(truth.n_zero_start):
        q = truth.bank.query(qi)
        cand = np.flatnonzero(truth.cat.leaf == q.leaf)
        ids = [f"i{i:05d}" for i in cand]
        rel = truth.relevance(truth.bank.text[qi], ids)
        best = cand[rel >= rel.max() - 1e-9]
        words = [w for w in tokens(truth.bank.text[qi]) if w not in STOPWORDS]
        absent += [np.mean([w not in text[i] for i in best]) for w in words]
        weights += [truth.bank.weight[qi]] * len(words)
    share = np.average(absent, weights=weights)
    assert 0.3 < share < 0.6, share
    words = {w for t in truth.bank.text for w in tokens(t)}
    assert {"gray", "grey", "sofa", "couch", "yoga", "exercise"} <= words
    assert words & set(truth.vocab.typos)  # some misspelt


def test_synonyms_do_not_change_relevance(truth):
    ids = [f"i{i:05d}" for i in range(len(truth.cat))]
    pairs = [("gray sofa", "grey couch"), ("yoga mat", "exercise mats"),
             ("wireless earbuds", "bluetooth earphones"), ("black running shoe", "jet black trainers"),
             ("stainless steel skillet", "stainless frying pan"), ("t-shirt", "tees")]
    for canonical, own_words in pairs:
        a, b = truth.relevance(canonical, ids), truth.relevance(own_words, ids)
        assert a.max() >= 1.5 and np.array_equal(a, b), (canonical, own_words)


def test_a_word_alone_does_not_tell_the_category(shop, truth):
    """Head nouns recur across leaves ("mat" in Bath and Yoga), so titles share words
    with products of other categories; judged pools hold such lexical distractors."""
    items = pl.read_parquet(shop[0] / "items.parquet")
    leaf = items["category"].str.split(CATEGORY_SEP).list.last()
    leaves_of: dict[str, set[str]] = {}
    for title, lf in zip(items["title"], leaf):
        for w in set(tokens(title)):
            leaves_of.setdefault(w, set()).add(lf)
    for word in ("mat", "stand", "towel", "bag", "chair", "cushion", "pad", "bench"):
        assert len(leaves_of.get(word, ())) >= 2, (word, leaves_of.get(word))
    heads = {}
    for spec in LEAVES:
        for noun in spec.nouns:
            heads.setdefault(short_noun(noun), set()).add(spec.path[-1])
    assert {"Towels", "Yoga"} <= heads["mat"] and len(heads["stand"]) >= 4
    j = pl.read_parquet(shop[0] / "judgements.parquet")
    cats = dict(zip(items["item_id"], items["category"]))
    distractors = 0
    for g in j.partition_by("query"):
        q = truth.parse(g["query"][0])
        words = set(tokens(g["query"][0])) - STOPWORDS
        for iid, grade in zip(g["item_id"], g["grade"]):
            other = cats[iid] != truth.vocab.leaf_paths[q.leaf]
            title = set(tokens(items.filter(pl.col("item_id") == iid)["title"][0]))
            distractors += other and grade == 0 and bool(words & title)
    assert distractors > 0.5 * j["query"].n_unique()


def test_bad_arguments_are_reported_together(tmp_path):
    with pytest.raises(ConfigError, match="users must be >= 1") as err:
        _make(tmp_path, users=0, items=3, drift_strength=2.0)
    assert len(err.value.problems) == 3
