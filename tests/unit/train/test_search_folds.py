"""Pooling the test folds of a cross-validated search run (search.pooled_folds)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from shelfops.errors import DataError
from shelfops.train.search import pool_metrics, pooled_folds


def _fold(seed: int, prefix: str, queries: int = 30) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(queries):
        for i in range(int(rng.integers(2, 7))):
            g = float(rng.integers(1, 4))
            rows.append({"query": f"{prefix}{q}", "item_id": f"i{i}", "grade": g,
                         "model": g + rng.normal(0, 1.0), "bm25": float(rng.integers(0, 2)),
                         "zero_shot": g + rng.normal(0, 3.0)})
    return pl.DataFrame(rows)


def test_pooled_mean_is_the_query_weighted_mean_of_the_folds():
    a, b = _fold(1, "a", 30), _fold(2, "b", 50)
    out = pooled_folds([a, b], lo=1.0, n_boot=200)
    per_fold = [pool_metrics(f, f["model"].to_numpy(), lo=1.0)["ndcg@10"] for f in (a, b)]
    values = np.concatenate(per_fold)
    assert out["model"]["ndcg@10"]["mean"] == pytest.approx(np.nanmean(values))
    assert out["model"]["ndcg@10"]["n"] == int((~np.isnan(values)).sum())
    assert out["queries"] == 80 and out["pairs"] == len(a) + len(b)
    assert [f["queries"] for f in out["folds"]] == [30, 50]
    assert out["folds"][0]["model"] == pytest.approx(np.nanmean(per_fold[0]))
    # BM25 ties are averaged over random orders, as in the single-fold run
    tied = pool_metrics(b, b["bm25"].to_numpy(), lo=1.0, ties="average")["ndcg@10"]
    assert out["folds"][1]["bm25"] == pytest.approx(np.nanmean(tied))
    c = out["comparisons_ndcg@10"]["zero_shot"]
    assert c["diff"]["mean"] == pytest.approx(
        out["model"]["ndcg@10"]["mean"] - out["baselines"]["zero_shot"]["ndcg@10"]["mean"], abs=1e-9)
    # a model this much closer to the grades beats a noisy one once enough queries pool
    assert c["diff"]["mean"] > 0


def test_rmse_reads_model_scores_as_logits_on_the_grade_scale():
    f = _fold(3, "q").with_columns(pl.lit(0.0).alias("model"))  # sigmoid(0) -> midpoint 2
    out = pooled_folds([f], lo=1.0, hi=3.0, n_boot=50)
    expect = float(np.sqrt(((f["grade"].to_numpy() - 2.0) ** 2).mean()))
    assert out["model"]["rmse"]["mean"] == pytest.approx(expect)
    assert "rmse" not in pooled_folds([f], lo=1.0, n_boot=50)["model"]


def test_folds_must_hold_disjoint_queries_and_every_score():
    a = _fold(1, "a")
    with pytest.raises(DataError, match="'a0' is in the test split of folds 0 and 1"):
        pooled_folds([a, a], lo=1.0, n_boot=50)
    with pytest.raises(DataError, match=r"fold 1: test scores lack column\(s\) \['zero_shot'\]"):
        pooled_folds([a, _fold(2, "b").drop("zero_shot")], lo=1.0, n_boot=50)
    with pytest.raises(DataError, match="no folds"):
        pooled_folds([], lo=1.0)
