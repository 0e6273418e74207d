"""`shelfops optimize` end to end on a small synthetic shop with a tiny encoder: real
torch / ONNX Runtime variants, real measurements, the selection and its evidence."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from shelfops.artifacts import read_manifest, verify_outputs
from shelfops.cli.main import app
from shelfops.train import text_models
from shelfops.train.precision import bf16_auto

QUICK = ["optimize.seconds_per_point=0.1", "optimize.prune.drop_layers=1",
         "optimize.prune.recovery_steps=10", "optimize.golden=20", "optimize.max_queries=40",
         "optimize.batch_sizes=[1,16]", "optimize.threads=[1,2]"]


@pytest.fixture(scope="module")
def search_model(small_shop, tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("opt") / "search"
    res = CliRunner().invoke(app, ["train", "--task", "search", "--data", str(small_shop), "--out",
                                   str(out), "--no-progress", f"train.encoder={tiny_encoder}",
                                   "train.threads=1", "train.bootstrap=100",
                                   "train.search.schedule.max_steps=40",
                                   # the quality choice may go as deep as optimize measures
                                   "train.search.catalogue.depths=[100]"])
    assert res.exit_code == 0, res.output
    return out


def _scrambled_copy(model_dir, dst):
    """The same architecture with every weight tensor's values shuffled."""
    model, _, spec = text_models.load(model_dir)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            flat = p.view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=g)])
    text_models.save(model, spec, str(model_dir / "encoder"), dst)
    return dst


@pytest.mark.slow
def test_optimize_builds_measures_and_rejects_a_broken_variant(search_model, tmp_path):
    broken = _scrambled_copy(search_model, tmp_path / "scrambled")
    out = tmp_path / "optimized"
    res = CliRunner().invoke(app, ["optimize", str(search_model), "--out", str(out), "--slo-p99-ms",
                                   "200", "--max-quality-drop", "0.05", "--no-progress", *QUICK,
                                   f"optimize.extra_models=[{broken}]"])
    assert res.exit_code == 0, res.output
    m = verify_outputs(out)
    assert m.stage == "optimize" and m.inputs[0].path.endswith("manifest.json")
    rep = json.loads((out / "optimize.json").read_text())
    names = [v["name"] for v in rep["variants"]]
    for n in ("torch-fp32", "torch-int8", "onnx-fp32", "onnx-int8", "onnx-int8-static",
              "pruned1-onnx-fp32", "pruned1-onnx-int8", "external-scrambled"):
        assert n in names
    assert ("torch-bf16" in names) == bf16_auto("cpu")  # only built where bf16 is native
    ref = rep["variants"][0]
    assert ref["name"] == "torch-fp32" and ref["parity"]["pass_rate"] == 1.0
    onnx = next(v for v in rep["variants"] if v["name"] == "onnx-fp32")
    assert onnx["parity"]["max_abs_diff"] < 1e-3  # the export computes the same function

    sel = rep["selection"]
    assert sel["chosen"] and sel["chosen"] != "external-scrambled"
    why = sel["rejected"]["external-scrambled"]
    assert any(ch.isdigit() for ch in why) and ("drop" in why or "reshuffled" in why)
    scr = next(v for v in rep["variants"] if v["name"] == "external-scrambled")
    assert scr["parity"]["pass_rate"] < 0.95 or scr["quality"] < ref["quality"] * 0.95

    # one call on 1 or 2 threads, and two single-threaded calls side by side, were all measured
    assert {(p["threads"], p["workers"]) for p in ref["points"]} == {(1, 1), (1, 2), (2, 1)}
    serving = json.loads((out / "serving.json").read_text())
    assert serving["variant"] == sel["chosen"] and serving["threads"] * serving["workers"] <= 2
    assert serving["max_batch"] in (1, 16) and serving["p99_ms"] <= 200
    for f in serving["files"]:
        assert (out / f).exists()
    assert (out / "pareto.png").stat().st_size > 10_000 and (out / "variants.md").exists()
    assert not (out / "variants" / "external-scrambled").exists()  # only the chosen one is kept
    assert read_manifest(out).metrics["chosen"] == sel["chosen"]

    # a search model: the re-rank depth one search can afford within the budget, measured with
    # the chosen variant over the whole catalogue, and handed to the server in serving.json
    depth = rep["depth"]
    pts = {p["depth"]: p for p in depth["points"]}
    assert sorted(pts) == [10, 20, 30, 50, 100] and all(p["searches"] >= 40 for p in pts.values())
    assert pts[100]["p50_ms"] > pts[10]["p50_ms"]  # deeper costs more model calls
    # re-ranking only the first page keeps the retriever's page: the same products found, in
    # another order; the retriever is the hybrid the model was validated with, as the server runs it
    assert pts[10]["recall10"] == pytest.approx(depth["retriever_recall10"]) and depth["bm25_ndcg10"] > 0
    weight = read_manifest(search_model).extra["pipeline"]["fusion_weight"]
    assert depth["retriever"] == ("BM25" if weight == 0 else
                                  f"hybrid (BM25 + untuned encoder, weight {weight:g})")
    fits = [d for d, p in pts.items() if p["p99_ms"] <= depth["budget_p99_ms"]]
    assert depth["chosen"] == (max(fits) if fits else 10) == serving["rerank_depth"]
    assert read_manifest(out).metrics["rerank_depth"] == depth["chosen"]
    # the hybrid's fusion weight chosen at training travels to the server with the model
    assert serving["fusion_weight"] == read_manifest(search_model).extra["pipeline"]["fusion_weight"]


def test_optimize_refuses_a_folder_without_a_model(tmp_path):
    res = CliRunner().invoke(app, ["optimize", str(tmp_path), "--no-progress"])
    assert res.exit_code != 0 and "model.json" in res.output


def test_unbatched_scoring_equals_one_call_per_input(search_model):
    """batch_size=1 tokenizes all inputs at once but still scores each alone, unpadded: the
    same numbers as encoding and running every input by itself."""
    import numpy as np

    from shelfops.optimize.measure import encode, run_all
    from shelfops.optimize.variants import torch_variant

    model, tok, spec = text_models.load(search_model)
    v = torch_variant("torch-fp32", model, spec.task)
    q = ["red running shoes", "a", "Garden hose 50 ft", "tent"] * 3
    t = ["Red shoe for running, size 9", "apple", "hose", "two-person dome tent with a very long title"] * 3
    got = run_all(v, tok, q, t, max_length=spec.max_length, batch_size=1)
    one = np.concatenate([v(encode(tok, [a], [b], spec.max_length)) for a, b in zip(q, t)])
    assert got.shape == one.shape and np.allclose(got, one, atol=1e-6)
    assert not np.allclose(got[:4], got[0])  # the inputs were not all scored the same


def test_searches_are_timed_with_the_bi_encoder_the_model_was_validated_with(models, small_shop, tiny_encoder,
                                                                              tmp_path):
    """A search model trained with `train.search.catalogue.retriever` is served beside that
    bi-encoder, so optimize times its searches (and measures quality by depth) with the same
    hybrid, not with BM25 alone; a bi-encoder that is gone is said, and BM25 is timed."""
    import numpy as np

    from shelfops.optimize.recipe import served_retriever
    from shelfops.train import catalogue
    from shelfops.train.pairs import load_pairs

    items, bi = load_pairs(small_shop, augmented=False).items, models / "retrieval"
    retrieve, name = served_retriever({"fusion_weight": 1.0, "dense_retriever": str(bi)}, items)
    assert name == f"hybrid (BM25 + bi-encoder {bi}, weight 1)"
    queries = ["red shirt", "garden planter", "hair oil"]
    own = catalogue.Retrievers.open(items, "", str(bi), max_length=32, progress=False)
    assert np.array_equal(retrieve(queries, 10), own.candidates(queries).fused(1.0, 10))  # its ranking
    untuned = catalogue.Retrievers.open(items, tiny_encoder, None, max_length=32, progress=False)
    assert not np.array_equal(retrieve(queries, 10), untuned.candidates(queries).fused(1.0, 10))
    gone, said = served_retriever({"fusion_weight": 0.5, "dense_retriever": str(tmp_path / "gone")}, items)
    assert gone is None and said.startswith("BM25") and "gone, is not here" in said


def test_a_search_model_trained_with_a_bi_encoder_is_optimized_with_it(models, small_shop, tiny_encoder, tmp_path):
    """train records the bi-encoder it chose the fusion weight with; optimize hands it on in serving.json
    and times the searches it chooses the depth by with that hybrid."""
    bi = models / "retrieval"
    res = CliRunner().invoke(app, ["train", "--task", "search", "--data", str(small_shop), "--out",
                                   str(tmp_path / "search"), "--no-progress", f"train.encoder={tiny_encoder}",
                                   "train.threads=1", "train.bootstrap=100", "train.search.schedule.max_steps=5",
                                   f"train.search.catalogue.retriever={bi}", "train.search.catalogue.weights=[0.5]"])
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "search").extra["pipeline"]["dense_retriever"] == str(bi.resolve())
    res = CliRunner().invoke(app, ["optimize", str(tmp_path / "search"), "--out", str(tmp_path / "opt"),
                                   "--no-progress", *QUICK, "optimize.variants=[torch-fp32]",
                                   "optimize.prune.enabled=false", "optimize.rerank_depths=[10,20]"])
    assert res.exit_code == 0, res.output
    serving = json.loads((tmp_path / "opt" / "serving.json").read_text())
    assert serving["dense_retriever"] == str(bi.resolve()) and serving["fusion_weight"] == 0.5
    depth = json.loads((tmp_path / "opt" / "optimize.json").read_text())["depth"]
    assert depth["retriever"] == f"hybrid (BM25 + bi-encoder {bi.resolve()}, weight 0.5)"
