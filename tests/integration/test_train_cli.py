"""`shelfops train` / `shelfops evaluate` end to end on a small synthetic shop, with a
tiny encoder so the real code paths run in seconds."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from shelfops.artifacts import read_manifest, verify_outputs
from shelfops.cli.main import app
from shelfops.train.search import pooled_folds

FAST = ["train.threads=1", "train.bootstrap=100"]


def _train(task, data, out, enc, *extra):
    res = CliRunner().invoke(app, ["train", "--task", task, "--data", str(data), "--out", str(out),
                                   "--no-progress", f"train.encoder={enc}", *FAST, *extra])
    assert res.exit_code == 0, res.output
    return read_manifest(out)


@pytest.mark.slow
def test_train_and_evaluate_search_retrieval_classify(small_shop, tiny_encoder, tmp_path):
    m = _train("search", small_shop, tmp_path / "search", tiny_encoder,
               "train.search.schedule.max_steps=20", "train.search.schedule.eval_every=10")
    verify_outputs(tmp_path / "search")
    assert m.stage == "train" and m.extra["task"] == "search"
    for name in ("model", "baselines", "comparisons_ndcg@10"):
        assert name in m.metrics
    assert set(m.metrics["baselines"]) == {"bm25", "zero_shot", "random"}
    ndcg = m.metrics["model"]["ndcg@10"]
    assert 0 <= ndcg["ci_low"] <= ndcg["mean"] <= ndcg["ci_high"] <= 1
    assert m.inputs[0].path.endswith("manifest.json")  # lineage: the dataset it came from
    assert len(m.extra["fit"]["history"]) == 2
    # every test pair's scores are kept; pooling the one fold reproduces the run's numbers
    scores = pl.read_parquet(tmp_path / "search" / "test_scores.parquet")
    assert len(scores) == m.counts["test_pairs"]
    assert {"query", "item_id", "grade", "model", "bm25", "zero_shot"} <= set(scores.columns)
    pooled = pooled_folds([scores], lo=m.extra["grade_range"][0], n_boot=100)
    assert pooled["model"]["ndcg@10"]["mean"] == pytest.approx(ndcg["mean"], abs=1e-6)
    for b in ("bm25", "zero_shot"):
        assert pooled["baselines"][b]["ndcg@10"]["mean"] == pytest.approx(
            m.metrics["baselines"][b]["ndcg@10"]["mean"], abs=1e-6)

    # the whole catalogue: hard negatives mined from the hybrid retriever, the best checkpoint kept
    # by the served pipeline's validation NDCG, the four systems tested, the choice handed to serve
    assert 0 < m.counts["hard_negatives"] < m.counts["train_pairs"]
    assert m.extra["fit"]["history"] and all("catalogue_ndcg@10" in h for h in m.extra["fit"]["history"])
    assert m.extra["fit"]["best_metric"] == max(h["catalogue_ndcg@10"] for h in m.extra["fit"]["history"])
    cat = m.metrics["catalogue"]
    assert set(cat["systems"]) == {"pipeline", "hybrid", "dense", "bm25"} and cat["items"] == 300
    assert m.extra["pipeline"]["rerank_depth"] in (10, 20, 30, 50)
    assert m.extra["pipeline"]["fusion_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert cat["choice"]["fusion_weight"] == m.extra["pipeline"]["fusion_weight"]
    per = pl.read_parquet(tmp_path / "search" / "catalogue_scores.parquet")
    assert len(per) == cat["queries"] > 0
    for name in ("pipeline", "bm25"):
        assert float(per[f"{name}_ndcg@10"].mean()) == pytest.approx(cat["systems"][name]["ndcg@10"]["mean"])
    # the judged pools as the pipeline serves them, kept per pair and pooled like the model's scores
    served = m.metrics["served_in_pools"]
    assert set(served["comparisons_ndcg@10"]) == {"bm25", "zero_shot"}
    assert served["vs_model_alone"]["a"]["mean"] == pytest.approx(served["metrics"]["ndcg@10"]["mean"])
    assert served["vs_model_alone"]["b"]["mean"] == pytest.approx(ndcg["mean"])
    positions = scores.group_by("query").agg(pl.col("served").sort(descending=True), pl.len())
    assert all(list(p) == [-float(i) for i in range(n)] for p, n in positions.select("served", "len").iter_rows())
    as_model = pooled_folds([scores.with_columns(pl.col("served").alias("model"))],
                            lo=m.extra["grade_range"][0], n_boot=100)
    assert as_model["model"]["ndcg@10"]["mean"] == pytest.approx(served["metrics"]["ndcg@10"]["mean"], abs=1e-6)

    r = _train("retrieval", small_shop, tmp_path / "retrieval", tiny_encoder,
               "train.retrieval.schedule.max_steps=10", "train.retrieval.schedule.eval_every=5",
               "--reranker", str(tmp_path / "search"))
    assert r.metrics["index"]["kind"] == "flat"
    assert "recall@10" in r.metrics["model"] and "pipeline" in r.metrics
    assert r.extra["pipeline"]["fusion_weight"] == r.metrics["hybrid"]["fusion_weight"]
    assert "recall@10" in r.metrics["hybrid"]["summary"]
    assert (tmp_path / "retrieval" / "index" / "index.faiss").exists()

    c = _train("classify", small_shop, tmp_path / "classify", tiny_encoder,
               "train.classify.schedule.max_steps=10")
    acc = c.metrics["model"]["accuracy"]
    assert acc["n"] > 0 and acc["ci_low"] <= acc["estimate"] <= acc["ci_high"]
    # the paired comparison with each baseline is over the same test predictions
    for b in ("majority", "tfidf_centroid"):
        assert c.metrics["comparisons_accuracy"][b]["a"]["mean"] == pytest.approx(acc["estimate"])
    assert {"majority", "tfidf_centroid"} == set(c.metrics["baselines"])

    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "search"), "--data", str(small_shop),
                                   "--no-progress", *FAST])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "search" / "evaluations" / f"{small_shop.name}.json").read_text())
    assert ev["summary"]["ndcg@10"]["mean"] == pytest.approx(ndcg["mean"], abs=1e-6)
    # the same dataset, the same choice on validation: the same whole-catalogue numbers
    assert ev["catalogue"]["choice"] == cat["choice"]
    assert ev["catalogue"]["systems"]["pipeline"]["ndcg@10"]["mean"] == pytest.approx(
        cat["systems"]["pipeline"]["ndcg@10"]["mean"], abs=1e-6)
    assert str(small_shop.resolve()) in read_manifest(tmp_path / "search").metrics["evaluations"]


def test_train_rejects_unknown_task_and_non_dataset(tmp_path):
    res = CliRunner().invoke(app, ["train", "--task", "dance", "--data", str(tmp_path),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "dance" in res.output
    res = CliRunner().invoke(app, ["train", "--task", "search", "--data", str(tmp_path),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "manifest" in res.output
