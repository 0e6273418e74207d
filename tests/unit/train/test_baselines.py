"""Baselines: BM25 (values by hand, search == pairs), PopRec, classification baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shelfops.errors import ConfigError, DataError
from shelfops.eval.metrics import full_rank_metrics
from shelfops.train.baselines import (
    BM25Index,
    TfidfCentroidClassifier,
    bm25_scores,
    majority_class,
    popularity_scorer,
    popularity_scores,
    tokenize,
)

CATALOGUE = [
    "DEWALT 20V cordless drill with battery",
    "Garden hose 50 ft heavy duty",
    "Ceramic floor tile, 12 in. x 12 in.",
    "Cordless leaf blower",
    "Drill bit set for masonry",
]


def test_tokenize_lowercases_splits_and_keeps_short_tokens() -> None:
    assert tokenize("Hex-Bolt 1/2 in. Ø_x") == ["hex", "bolt", "1", "2", "in", "ø", "x"]
    assert tokenize("the drill for the wall", stopwords=True) == ["drill", "wall"]
    assert tokenize("the drill") == ["the", "drill"]


def test_bm25_value_by_hand() -> None:
    index = BM25Index(["a b", "b c c", "d"])  # N = 3, avgdl = (2 + 3 + 1) / 3 = 2
    k1, b, avgdl = 1.5, 0.75, 2.0

    def idf(df: int) -> float:
        return math.log(1 + (3 - df + 0.5) / (df + 0.5))

    def tfc(tf: int, dl: int) -> float:
        return tf / (tf + k1 * (1 - b + b * dl / avgdl))

    expected = [idf(2) * tfc(1, 2), idf(2) * tfc(1, 3) + idf(1) * tfc(2, 3), 0.0]
    np.testing.assert_allclose(index.query_scores("B c"), expected, rtol=1e-5)


def test_bm25_ranks_exact_term_above_unrelated() -> None:
    index = BM25Index(CATALOGUE)
    docs, scores = index.search(["cordless drill"], k=3)
    assert docs[0, 0] == 0  # has both terms
    assert set(docs[0, 1:]) == {3, 4}  # one term each
    assert scores[0, 0] > scores[0, 1] >= scores[0, 2] > 0
    pair = index.score_pairs(["cordless drill", "cordless drill"], [0, 1])
    assert pair[0] > 0 and pair[1] == 0.0


def test_score_pairs_agrees_with_search() -> None:
    index = BM25Index(CATALOGUE)
    queries = ["drill", "floor tile 12 in", "hose", "cordless", "unknownword"]
    docs, scores = index.search(queries, k=len(CATALOGUE))
    flat_q = [q for q in queries for _ in range(len(CATALOGUE))]
    got = index.score_pairs(flat_q, docs.reshape(-1))
    np.testing.assert_allclose(got, scores.reshape(-1))
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    # a query with no known term scores 0 everywhere; ties come in ascending doc index
    np.testing.assert_array_equal(docs[-1], np.arange(len(CATALOGUE)))
    assert not scores[-1].any()


def test_search_tie_break_and_k_clipping() -> None:
    index = BM25Index(["red lamp", "blue chair", "red lamp", "red lamp"])
    docs, scores = index.search(["red lamp"], k=2)
    np.testing.assert_array_equal(docs[0], [0, 2])
    assert scores[0, 0] == scores[0, 1] > 0
    docs, _ = index.search(["lamp"], k=100)
    assert docs.shape == (1, 4)


def test_bm25_scores_pairs_and_matrix_agree() -> None:
    queries = ["drill", "garden hose"]
    matrix = bm25_scores(queries, CATALOGUE)
    assert matrix.shape == (2, len(CATALOGUE)) and matrix.dtype == np.float32
    pairs = [(1, 1), (0, 4), (0, 2)]
    np.testing.assert_allclose(
        bm25_scores(queries, CATALOGUE, pairs), [matrix[q, d] for q, d in pairs]
    )


def test_bm25_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="docs"):
        BM25Index([])
    with pytest.raises(DataError, match="single token"):
        BM25Index(["", "--"])
    with pytest.raises(DataError, match="docs\\[1\\]"):
        BM25Index(["ok", None])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="method"):
        BM25Index(["a"], method="bm99")
    index = BM25Index(CATALOGUE)
    with pytest.raises(DataError, match="doc_indices"):
        index.score_pairs(["drill"], [len(CATALOGUE)])
    with pytest.raises(DataError, match="doc_indices"):
        index.score_pairs(["drill", "hose"], [0])


# --------------------------------------------------------------------------- PopRec


def test_popularity_scores_and_full_rank() -> None:
    pop = popularity_scores(np.array([1, 1, 1, 2, 2, 3, 1]), 5)
    np.testing.assert_array_equal(pop, [0, 4, 2, 1, 0])
    scorer = popularity_scorer(pop)
    assert scorer(np.arange(3)).shape == (3, 5)
    # user 0: target 3, item 1 seen -> only item 2 beats it; user 1: target 1 is the top
    m = full_rank_metrics(scorer, [3, 1], [np.array([1]), np.array([2])], ks=(1, 2))
    np.testing.assert_array_equal(m["hr@1"], [0.0, 1.0])
    np.testing.assert_array_equal(m["hr@2"], [1.0, 1.0])
    with pytest.raises(DataError, match="outside"):
        popularity_scores([5], 5)


# --------------------------------------------------------------------------- classification


def test_majority_class() -> None:
    np.testing.assert_array_equal(majority_class(["b", "a", "b", "a", "c"], 3), ["a"] * 3)
    np.testing.assert_array_equal(majority_class([2, 2, 1], 2), [2, 2])


def test_tfidf_centroid_classifier() -> None:
    titles = [
        "cordless drill 20v",
        "hammer drill kit",
        "impact driver drill",
        "garden hose 50 ft",
        "hose reel cart",
        "ceramic floor tile",
    ]
    labels = ["tools", "tools", "tools", "garden", "garden", "flooring"]
    clf = TfidfCentroidClassifier(titles, labels)
    got = clf.predict(["brushless drill", "expandable hose", "porcelain tile", "zzz qqq"])
    np.testing.assert_array_equal(got, ["tools", "garden", "flooring", "tools"])
    # idf(t) = ln((1 + N) / (1 + df)) + 1 with N = 6 titles
    assert clf.idf[clf.vocab["drill"]] == pytest.approx(math.log(7 / 4) + 1)
    assert clf.idf[clf.vocab["reel"]] == pytest.approx(math.log(7 / 2) + 1)
    s = clf.scores(["drill"])
    assert s.shape == (1, 3) and s.max() <= 1.0 + 1e-9
    with pytest.raises(DataError, match="labels"):
        TfidfCentroidClassifier(titles, labels[:-1])
