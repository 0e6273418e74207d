"""Query augmentation: variants, pseudo-queries, and never touching evaluation splits."""

from __future__ import annotations

import polars as pl
import pytest

from shelfops.data.augment import (
    KEYBOARD_NEIGHBOURS,
    augment_queries,
    augment_train_split,
    pseudo_queries,
)
from shelfops.data.splits import group_kfold
from shelfops.errors import ConfigError, SchemaError

QUERIES = [
    "cordless drill", "red running shoes", "kitchen faucet with sprayer", "toilet",
    "led ceiling light", "garden hose reel", "paint brush set", "deck screws",
]


def norm(q: str) -> str:
    return " ".join(q.lower().split())


def pairs() -> pl.DataFrame:
    """Two judged items per query; item ids name their query so provenance is checkable."""
    rows = [
        (q, f"{q}#{k}", float(k + 1)) for q in QUERIES for k in range(2)
    ]
    return pl.DataFrame(rows, schema={"query": pl.String, "item_id": pl.String,
                                      "grade": pl.Float64}, orient="row")


def new_rows(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("augmented"))


def one_edit(a: str, b: str) -> bool:
    """True when b is a with one swap of neighbours, deletion, insertion or substitution."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return b[diff[0]] in KEYBOARD_NEIGHBOURS.get(a[diff[0]], "")
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] \
            and a[diff[1]] == b[diff[0]]
    if len(b) == len(a) - 1:
        return any(a[:i] + a[i + 1:] == b for i in range(len(a)))
    if len(b) == len(a) + 1:  # a doubled character
        return any(b[:i] + b[i + 1:] == a and b[i] == b[i - 1] for i in range(1, len(b)))
    return False


def source_query(item_id: str) -> str:
    return item_id.split("#")[0]


def test_originals_are_kept_first_and_variants_copy_their_query_rows():
    df = pairs()
    out = augment_queries(df, variants_per_query=2, typo_rate=0.5, case_rate=0.5,
                          drop_rate=0.5, seed=11)
    assert out.head(df.height).drop("augmented", "augment_kind").equals(df)
    assert not out.head(df.height)["augmented"].any()
    assert out.head(df.height)["augment_kind"].is_null().all()
    extra = new_rows(out)
    assert extra.height > 0 and extra["augment_kind"].is_not_null().all()
    for row in extra.iter_rows(named=True):
        assert row["query"] != source_query(row["item_id"])
        assert set(row["augment_kind"].split("+")) <= {"drop", "typo", "case"}
    # a variant carries every judged item of its query with its grade
    per_variant = extra.group_by("query").agg(pl.col("item_id").sort(), pl.col("grade").sort())
    for q, items, grades in per_variant.iter_rows():
        sources = {source_query(i) for i in items}
        assert len(sources) == 1
        src = sources.pop()
        assert grades == [1.0, 2.0] and items == [f"{src}#{k}" for k in range(2)]


def test_typo_variants_are_one_keyboard_slip():
    out = new_rows(augment_queries(pairs(), variants_per_query=3, typo_rate=1.0, case_rate=0.0,
                                   drop_rate=0.0, seed=5))
    assert out.height > 0 and set(out["augment_kind"]) == {"typo"}
    for q, item in out.select("query", "item_id").unique().iter_rows():
        assert one_edit(source_query(item), q), (source_query(item), q)


def test_case_variants_only_change_case():
    out = new_rows(augment_queries(pairs(), typo_rate=0.0, case_rate=1.0, drop_rate=0.0))
    assert out["augment_kind"].unique().to_list() == ["case"]
    for q, item in out.select("query", "item_id").iter_rows():
        src = source_query(item)
        assert q in (src.upper(), src.title())


def test_word_drop_removes_exactly_one_word_of_multi_word_queries():
    out = new_rows(augment_queries(pairs(), variants_per_query=3, typo_rate=0.0, case_rate=0.0,
                                   drop_rate=1.0))
    sources = {source_query(i) for i in out["item_id"]}
    assert "toilet" not in sources  # a one-word query has nothing to drop
    for q, item in out.select("query", "item_id").iter_rows():
        src = source_query(item).split()
        assert len(q.split()) == len(src) - 1
        assert any(src[:i] + src[i + 1:] == q.split() for i in range(len(src)))


def test_deterministic_per_seed_and_independent_of_other_rows():
    df = pairs()
    kw = {"variants_per_query": 2, "typo_rate": 0.5, "case_rate": 0.5, "drop_rate": 0.5}
    a = augment_queries(df, seed=11, **kw)
    assert a.equals(augment_queries(df, seed=11, **kw))
    assert not new_rows(a).equals(new_rows(augment_queries(df, seed=12, **kw)))
    # the variants of one query do not depend on row order or on the other queries
    sub = df.filter(pl.col("query") == "red running shoes").reverse()
    only = new_rows(augment_queries(sub, seed=11, **kw))
    full = new_rows(a).filter(pl.col("item_id").str.starts_with("red running shoes#"))
    key = ["query", "item_id"]
    assert only.sort(key).equals(full.sort(key))


def test_zero_rates_or_variants_add_nothing_and_already_augmented_rows_are_not_augmented():
    df = pairs()
    assert augment_queries(df, typo_rate=0, case_rate=0, drop_rate=0).height == df.height
    assert augment_queries(df, variants_per_query=0).height == df.height
    once = augment_queries(df, typo_rate=1.0, case_rate=0.0, drop_rate=0.0)
    twice = augment_queries(once, typo_rate=1.0, case_rate=0.0, drop_rate=0.0)
    assert twice.height == once.height + (once.height - df.height)
    assert twice.filter(pl.col("augmented")).height == 2 * (once.height - df.height)


def test_variants_never_equal_excluded_or_other_original_queries():
    df = pl.DataFrame({"query": ["red shoes", "shoes", "blue jeans"], "item_id": ["a", "b", "c"],
                       "grade": [3.0, 2.0, 1.0]})
    kw = {"variants_per_query": 4, "typo_rate": 0.0, "case_rate": 0.0, "drop_rate": 1.0}
    out = new_rows(augment_queries(df, **kw))
    # "red shoes" -> "shoes" would relabel the real query "shoes": dropped; "red" survives
    assert set(out["query"]) == {"red", "blue", "jeans"}
    out = new_rows(augment_queries(df, exclude=["  RED ", "Jeans"], **kw))
    assert set(out["query"]) == {"blue"}


def test_a_variant_drawn_from_two_queries_is_dropped():
    df = pl.DataFrame({"query": ["red shoes", "blue shoes"], "item_id": ["a", "b"],
                       "grade": [3.0, 1.0]})
    out = new_rows(augment_queries(df, variants_per_query=4, typo_rate=0.0, case_rate=0.0,
                                   drop_rate=1.0))
    # both give "shoes", which would mix their judgements under one query
    assert set(out.select("query", "item_id").rows()) == {("red", "a"), ("blue", "b")}


def test_bad_arguments():
    with pytest.raises(ConfigError, match="typo_rate"):
        augment_queries(pairs(), typo_rate=1.5)
    with pytest.raises(SchemaError, match="query"):
        augment_queries(pairs().drop("query"))


# --------------------------------------------------------------------------- pseudo-queries


def items() -> pl.DataFrame:
    return pl.DataFrame({
        "item_id": ["1", "2", "3", "4"],
        "title": ["DEWALT 20V MAX Cordless Drill/Driver Kit with 2 Batteries",
                  "Glacier Bay 1.28 GPF Elongated Toilet", "12 in.", None],
        "brand": ["DEWALT", "Glacier Bay", None, "Acme"],
        "category": ["Tools > Power Tools > Drills", "Bath > Toilets > Two-Piece Toilets",
                     None, "Misc"],
    })


def test_pseudo_queries_are_short_informative_and_judged_for_their_item():
    it = items()
    out = pseudo_queries(it, per_item=5, seed=11)
    assert out.columns == ["query", "item_id", "grade", "augmented", "augment_kind"]
    assert set(out["item_id"]) == {"1", "2"}  # "12 in." and a missing title give nothing
    assert (out["grade"] == 3.0).all() and out["augmented"].all()
    assert set(out["augment_kind"]) == {"pseudo"}
    vocab = {
        "1": {"dewalt", "20v", "max", "cordless", "drill", "driver", "kit", "batteries", "drills"},
        "2": {"glacier", "bay", "gpf", "elongated", "toilet", "toilets"},
    }
    for q, item in out.select("query", "item_id").iter_rows():
        words = q.split()
        assert 2 <= len(words) <= 4, q
        assert set(words) <= vocab[item], q
        assert q == q.lower() and len(set(words)) == len(words)
        assert not {"with", "2", "1.28"} & set(words)
    assert out.select("query", "item_id").is_duplicated().sum() == 0
    assert out.equals(pseudo_queries(it.reverse(), per_item=5, seed=11).sort(
        "item_id", maintain_order=True))
    assert not out.equals(pseudo_queries(it, per_item=5, seed=12))
    assert pseudo_queries(it, per_item=0).height == 0


def test_pseudo_queries_sometimes_use_brand_or_category():
    many = pl.DataFrame({
        "item_id": [str(k) for k in range(40)],
        "title": ["Ozark Trail 4-Person Instant Dome Camping Shelter"] * 40,
        "brand": ["Ozark Trail"] * 40,
        "category": ["Outdoors > Camping > Tents"] * 40,
    })
    qs = pseudo_queries(many, per_item=1)["query"].to_list()
    assert any(q.startswith("ozark trail ") for q in qs)
    assert any(q.endswith(" tents") for q in qs)
    assert any("ozark" not in q and "tents" not in q for q in qs)
    # the brand only ever comes whole
    assert not any(("ozark" in q) != ("trail" in q) for q in qs)


# --------------------------------------------------------------------------- splits


def test_only_train_is_augmented_and_no_generated_query_is_an_evaluation_query():
    train = pl.DataFrame({
        "query": ["red running shoes", "red running shoes", "cordless drill"],
        "item_id": ["s1", "s2", "d1"], "grade": [3.0, 1.0, 2.0],
    })
    valid = pl.DataFrame({"query": ["red shoes", "Running Shoes"], "item_id": ["s1", "s2"],
                          "grade": [2.0, 2.0]})
    # one test query is exactly a pseudo-query the items give
    taken = pseudo_queries(items(), per_item=5)["query"][0]
    test = pl.DataFrame({"query": ["RED RUNNING", "drill", taken.upper()],
                         "item_id": ["s1", "d1", "1"], "grade": [1.0, 3.0, 3.0]})
    splits = {"train": train, "valid": valid, "test": test}
    before = {k: v.clone() for k, v in splits.items()}
    kw = {"variants_per_query": 6, "typo_rate": 0.0, "case_rate": 0.0, "drop_rate": 1.0, "seed": 11}

    # without the guard, word-drop recreates evaluation queries
    unguarded = {norm(q) for q in new_rows(augment_queries(train, **kw))["query"]}
    eval_queries = {norm(q) for q in pl.concat([valid, test])["query"]}
    assert unguarded & eval_queries

    out = augment_train_split(splits, items(), pseudo_queries_per_item=5, **kw)
    assert out["valid"] is valid and out["test"] is test
    assert out["valid"].equals(before["valid"]) and out["test"].equals(before["test"])
    assert set(out) == set(splits)
    assert out["train"].height > train.height
    assert out["train"].filter(~pl.col("augmented")).drop("augmented", "augment_kind").equals(
        before["train"])
    generated = {norm(q) for q in new_rows(out["train"])["query"]}
    assert generated and not generated & eval_queries
    # pseudo-queries are there, minus the one that equals a test query
    pseudo = new_rows(out["train"]).filter(pl.col("augment_kind") == "pseudo")
    assert pseudo.height > 0
    assert taken not in set(pseudo["query"])
    assert splits["train"].equals(before["train"])  # the input dict was not modified


def test_augmenting_a_group_kfold_split_keeps_folds_disjoint():
    rows = [(f"{w} {v}", f"i{k}", 1.0 + k % 3)
            for k, (w, v) in enumerate((w, v) for w in ["red", "blue", "green", "black", "white",
                                                         "steel", "oak", "pine"]
                                       for v in ["shoes", "drill", "paint", "door", "lamp"])]
    df = pl.DataFrame(rows, schema=["query", "item_id", "grade"], orient="row")
    df = pl.concat([df, df.with_columns(pl.col("query").str.split(" ").list.first())])
    splits = group_kfold(df, folds=4)
    out = augment_train_split(splits, None, variants_per_query=3, typo_rate=0.5,
                              case_rate=0.5, drop_rate=0.9)
    train_q = {norm(q) for q in out["train"]["query"]}
    for name in ("valid", "test"):
        assert not train_q & {norm(q) for q in out[name]["query"]}


def test_augment_train_split_needs_a_train_query_column():
    with pytest.raises(SchemaError, match="train"):
        augment_train_split({"valid": pairs()}, None)
    with pytest.raises(SchemaError, match="query"):
        augment_train_split({"train": pl.DataFrame({"user_id": ["u"]})}, None)
