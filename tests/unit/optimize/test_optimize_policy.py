"""The optimize stage's pure decisions: tuning, selection, Pareto frontier, layer choice."""

from __future__ import annotations

import numpy as np
import pytest

from shelfops.config.schema import OptimizeConfig
from shelfops.errors import ConfigError
from shelfops.eval.agreement import top_k_overlap
from shelfops.optimize.measure import flops_per_item, parity
from shelfops.optimize.policy import Candidate, Setting, pareto, select, tune
from shelfops.optimize.prune import choose_drop


def _pt(threads, batch, p50, p99, ips):
    return {"threads": threads, "batch": batch, "p50_ms": p50, "p99_ms": p99, "items_per_s": ips}


def test_tune_picks_highest_throughput_within_slo_and_caps_wait():
    pts = [_pt(1, 8, 10, 12, 800), _pt(1, 32, 30, 40, 1000), _pt(2, 32, 20, 25, 1600),
           _pt(2, 128, 70, 90, 1900)]
    s = tune(pts, slo_p99_ms=50)
    assert (s.threads, s.max_batch) == (2, 32)  # batch 128 is faster but misses the SLO
    assert s.max_wait_ms == pytest.approx(20)  # capped at one batch's p50, not 50 - 25
    s = tune(pts, slo_p99_ms=14)
    assert (s.max_batch, s.max_wait_ms) == (8, pytest.approx(2))  # 12 + 2 = 14
    assert tune(pts, slo_p99_ms=5) is None


_CFG = OptimizeConfig()  # the selection bars as a new user's config sets them
BARS = {"objective": _CFG.objective, "min_pass_rate": _CFG.min_parity_pass_rate,
        "min_churn_pass_rate": _CFG.churn_min_pass_rate}


def _c(name, q, ips, p99=10.0, pass_rate=1.0):
    return Candidate(name, q, pass_rate, pass_rate, pass_rate,
                     Setting(1, 32, 1.0, p99 / 2, p99, ips) if ips else None)


def test_select_never_picks_a_collapsed_variant_however_fast():
    cands = [_c("torch-fp32", 0.90, 100), _c("int8", 0.895, 300), _c("broken", 0.45, 5000),
             _c("drifted", 0.899, 4000, pass_rate=0.6), _c("slow", 0.91, 0)]
    sel = select(cands, reference="torch-fp32", slo_p99_ms=50, max_quality_drop=0.01, **BARS)
    assert sel.chosen == "int8"
    assert "50.00% relative drop" in sel.rejected["broken"] and "0.4500" in sel.rejected["broken"]
    assert "60.0% of golden groups" in sel.rejected["drifted"]
    assert "p99 <= 50 ms" in sel.rejected["slow"]
    assert "3.00x" in sel.reason
    assert sel.frontier == ["int8", "torch-fp32"]


def test_select_refuses_a_variant_whose_scores_depend_on_batch_padding():
    """A variant the gate's determinism check would refuse (its scores change when a batch is
    padded to max length, as dynamic int8 does) is not chosen, with its numbers."""
    from dataclasses import replace

    ok, padded = _c("onnx-int8", 0.899, 300), _c("onnx-int8-b", 0.899, 400)
    cands = [_c("torch-fp32", 0.90, 100), replace(ok, padding_max_diff=0.01, padding_atol=0.05),
             replace(padded, padding_max_diff=0.41, padding_atol=0.05)]
    sel = select(cands, reference="torch-fp32", slo_p99_ms=50, max_quality_drop=0.01, **BARS)
    assert sel.chosen == "onnx-int8"
    assert "batch padding" in sel.rejected["onnx-int8-b"] and "0.41" in sel.rejected["onnx-int8-b"]


def test_a_padding_dependent_variant_is_tuned_unbatched_and_may_then_ship():
    """Dynamic int8 quantises activations per batch, so its scores move with the padding of the
    batch it shares; scored one input at a time it is never padded. Tuning keeps it to batch 1,
    and a batch-1 setting is not refused for padding."""
    from dataclasses import replace

    pts = [_pt(2, 1, 3, 6, 280), _pt(2, 8, 20, 30, 400)]
    assert tune(pts, slo_p99_ms=50).max_batch == 8
    one = tune(pts, slo_p99_ms=50, max_batch=1)
    assert (one.max_batch, one.items_per_s) == (1, 280)
    assert tune([_pt(2, 8, 20, 30, 400)], slo_p99_ms=50, max_batch=1) is None
    int8 = replace(_c("onnx-int8", 0.899, 0), setting=Setting(2, 1, 3.0, 3.0, 6.0, 280),
                   padding_max_diff=0.4, padding_atol=0.05, approximate=True)
    sel = select([_c("torch-fp32", 0.90, 100), int8], reference="torch-fp32", slo_p99_ms=50,
                 max_quality_drop=0.01, **BARS)
    assert sel.chosen == "onnx-int8"
    none = select([_c("torch-fp32", 0.90, 100), replace(int8, setting=None)], reference="torch-fp32",
                  slo_p99_ms=50, max_quality_drop=0.01, **BARS)
    assert "no unbatched setting" in none.rejected["onnx-int8"]


def test_tune_can_pick_several_single_threaded_workers_over_one_wide_call():
    pts = [_pt(2, 1, 1.0, 1.5, 1000), {**_pt(1, 1, 1.6, 2.5, 1300), "workers": 2}, _pt(1, 1, 1.5, 2.9, 650)]
    s = tune(pts, slo_p99_ms=50)
    assert (s.threads, s.workers, s.items_per_s) == (1, 2, 1300)
    assert tune(pts[:1], slo_p99_ms=50).workers == 1  # points without workers measured one call at a time
    close = [_pt(2, 1, 1.0, 1.3, 1325), {**_pt(1, 1, 1.6, 3.6, 1242), "workers": 2}]
    assert tune(close, slo_p99_ms=50).threads == 2  # no preference: the fastest alone
    pick = tune(close, slo_p99_ms=50, prefer_workers_within=0.1)  # 6% slower alone, robust when served
    assert (pick.threads, pick.workers) == (1, 2)
    assert tune(close, slo_p99_ms=50, prefer_workers_within=0.05).threads == 2  # beyond the margin


def test_padding_invariance_is_measured_on_the_variant():
    """A variant that attends to padding shows it; masking it hides it. Measured with the
    optimize stage's own encoding path, with a character tokenizer standing in."""
    import torch

    from shelfops.optimize.measure import padding_max_diff

    class Tok:  # characters as tokens, as a Hugging Face tokenizer would return them
        def __call__(self, a, b=None, truncation=True, max_length=16, padding=True, return_tensors="pt"):
            texts = [x + (y or "") for x, y in zip(a, b or [None] * len(a))]
            width = max_length if padding == "max_length" else max(len(t[:max_length]) for t in texts)
            ids = [[ord(c) % 50 + 1 for c in t[:max_length]] for t in texts]
            return {"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                    "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])}

    def masked(enc):  # a mean over real tokens only
        m = enc["attention_mask"].float()
        return ((enc["input_ids"].float() * m).sum(1) / m.sum(1)).numpy()

    def unmasked(enc):  # a mean over every position, padding included
        return enc["input_ids"].float().mean(1).numpy()

    texts = ["red shoe", "a much longer query here", "tent"]
    assert padding_max_diff(masked, Tok(), texts, None, max_length=32) == 0.0
    assert padding_max_diff(unmasked, Tok(), texts, None, max_length=32) > 1.0


def test_approximate_variants_are_held_to_quality_and_a_churn_bound_not_strict_parity():
    """An int8 or pruned variant reorders near-ties even when its quality holds; it is judged
    on the quality budget (its bootstrap upper bound) and the churn bound, while an exact
    variant (fp32 ONNX) that reorders anything is refused: there it means a broken export."""
    from dataclasses import replace

    ref = _c("torch-fp32", 0.90, 100)
    pruned = replace(_c("pruned4-onnx-int8", 0.899, 400, pass_rate=0.4), approximate=True,
                     churn_pass_rate=0.8, quality_drop_high=0.004)
    reshuffled = replace(_c("onnx-int8", 0.899, 500, pass_rate=0.1), approximate=True,
                         churn_pass_rate=0.2, quality_drop_high=0.005)
    unsure = replace(_c("torch-int8", 0.899, 450, pass_rate=0.9), approximate=True,
                     churn_pass_rate=0.9, quality_drop_high=0.02)  # point drop 0.1%, bound 2%
    export_bug = _c("onnx-fp32", 0.90, 600, pass_rate=0.8)  # exact, yet 20% of groups moved
    sel = select([ref, pruned, reshuffled, unsure, export_bug], reference="torch-fp32",
                 slo_p99_ms=50, max_quality_drop=0.01, objective="throughput", min_pass_rate=0.999,
                 min_churn_pass_rate=0.3)
    assert sel.chosen == "pruned4-onnx-int8"
    assert "approximate: 80% of golden groups within the churn bound" in sel.reason
    assert "reshuffled" in sel.rejected["onnx-int8"] and "20.0%" in sel.rejected["onnx-int8"]
    assert "95% upper bound +2.00%" in sel.rejected["torch-int8"]
    assert "drifted from the reference: 80.0%" in sel.rejected["onnx-fp32"]


def test_quality_drop_interval_is_paired_and_relative():
    from shelfops.optimize.measure import quality_drop

    rng = np.random.default_rng(1)
    ref = rng.uniform(0.5, 1.0, 400)
    same = quality_drop(ref, ref.copy())
    assert same == {"mean": 0.0, "low": 0.0, "high": 0.0}
    worse = ref - 0.02 * ref.mean() + rng.normal(0, 0.002, 400)  # 2% lower, small paired noise
    d = quality_drop(ref, worse)
    assert d["low"] < d["mean"] < d["high"]
    assert d["mean"] == pytest.approx(0.02, abs=0.002) and d["high"] - d["low"] < 0.002


def test_parity_counts_groups_within_the_churn_bound():
    rng = np.random.default_rng(3)
    ref = [np.linspace(1, 0, 30) for _ in range(10)]
    swapped = []
    for r in ref:  # items 3 apart swapped: strict parity fails, churn bound holds
        g = r.copy()
        for i in range(0, 28, 4):
            g[i], g[i + 3] = g[i + 3], g[i]
        swapped.append(g)
    rand = [rng.permutation(r) for r in ref]
    flat = np.concatenate(ref)
    near = parity(ref, swapped, flat, np.concatenate(swapped), min_overlap=0.9, min_tau=0.9)
    assert near["pass_rate"] == 0.0 and near["churn_pass_rate"] == 1.0
    assert parity(ref, rand, flat, np.concatenate(rand))["churn_pass_rate"] <= 0.1


def test_select_objectives_and_no_feasible_variant():
    cands = [_c("torch-fp32", 0.90, 100, p99=40), _c("a", 0.899, 300, p99=30), _c("b", 0.905, 200, p99=5)]
    assert select(cands, reference="torch-fp32", slo_p99_ms=50, max_quality_drop=0.01, **BARS).chosen == "a"
    assert select(cands, reference="torch-fp32", slo_p99_ms=50, max_quality_drop=0.01,
                  **{**BARS, "objective": "latency"}).chosen == "b"
    assert select(cands, reference="torch-fp32", slo_p99_ms=50, max_quality_drop=0.01,
                  **{**BARS, "objective": "quality"}).chosen == "b"
    none = select([_c("torch-fp32", 0.9, 0)], reference="torch-fp32", slo_p99_ms=1, max_quality_drop=0.01, **BARS)
    assert none.chosen is None and "no variant" in none.reason


def test_pareto_drops_dominated_points():
    cands = [_c("a", 0.9, 100), _c("b", 0.8, 50), _c("c", 0.85, 300), _c("d", 0.95, 10)]
    assert pareto(cands) == ["c", "a", "d"]


def test_parity_catches_a_reshuffled_ranking():
    rng = np.random.default_rng(0)
    ref = [rng.normal(size=30) for _ in range(20)]
    same = [r + 1e-4 * rng.normal(size=30) for r in ref]
    scrambled = [rng.permutation(r) for r in ref]
    flat = np.concatenate(ref)
    good = parity(ref, same, flat, np.concatenate(same))
    bad = parity(ref, scrambled, flat, np.concatenate(scrambled))
    assert good["pass_rate"] == 1.0 and good["kendall_tau_mean"] > 0.99
    assert bad["pass_rate"] < 0.2 and bad["top10_overlap_mean"] < 0.6
    assert top_k_overlap(np.arange(20.0), np.arange(20.0)[::-1], k=10) == 0.0


def test_choose_drop_and_flops():
    assert choose_drop([0.05, -0.01, 0.02, 0.0], 2) == [1, 3]
    with pytest.raises(ConfigError, match="drop_layers"):
        choose_drop([0.1, 0.2], 2)

    class Cfg:
        hidden_size, intermediate_size, num_hidden_layers = 384, 1536, 6

    # MiniLM-L6 at 32 tokens: ~0.70 GFLOP per pair (PERF-NOTES)
    assert flops_per_item(Cfg, 32) / 1e9 == pytest.approx(0.70, abs=0.03)
    assert flops_per_item(Cfg, 32, layers=3) == pytest.approx(flops_per_item(Cfg, 32) / 2)


def test_choose_depth_takes_the_deepest_re_rank_within_the_search_budget():
    from shelfops.optimize.depth import DepthPoint, choose_depth

    pts = [DepthPoint(10, 15, 22, 0.2, 0.47, 0.50, 40), DepthPoint(20, 30, 44, 0.2, 0.49, 0.52, 40),
           DepthPoint(30, 45, 61, 0.3, 0.51, 0.54, 40)]
    depth, why = choose_depth(pts, 50.0)
    assert depth == 20 and "44.0 ms" in why and "within 50 ms" in why
    assert choose_depth(pts, 100.0)[0] == 30
    depth, why = choose_depth(pts, 5.0)  # nothing fits: the shallowest, and the reason says so
    assert depth == 10 and "no depth meets" in why
    with pytest.raises(ValueError, match="no measured depths"):
        choose_depth([], 50.0)


def test_depths_deeper_than_the_quality_choice_are_not_timed():
    from shelfops.optimize.depth import candidate_depths

    assert candidate_depths([10, 20, 30, 50, 100], 30) == [10, 20, 30]
    assert candidate_depths([50, 10, 20], None) == [10, 20, 50]  # no choice recorded: all of them
    assert candidate_depths([20, 30], 10) == [20]  # all deeper than the choice: the shallowest


def test_the_pipeline_handed_to_the_server_names_the_bi_encoder_of_older_models_too():
    """A search model trained before train named its bi-encoder in ``extra.pipeline`` still has it in
    its config; one validated with the untuned encoder, or with no catalogue step, gets none."""
    from shelfops.artifacts import Manifest
    from shelfops.optimize.recipe import trained_pipeline

    cfg = {"train": {"search": {"catalogue": {"retriever": "/models/bi"}}}}
    old = Manifest(stage="train", config=cfg, extra={"pipeline": {"fusion_weight": 0.5, "dense": "bi-encoder /models/bi"}})
    assert trained_pipeline(old) == {"fusion_weight": 0.5, "dense": "bi-encoder /models/bi", "dense_retriever": "/models/bi"}
    new = Manifest(stage="train", config=cfg, extra={"pipeline": {"fusion_weight": 0.5, "dense_retriever": "/elsewhere/bi"}})
    assert trained_pipeline(new)["dense_retriever"] == "/elsewhere/bi"  # what train recorded wins
    untuned = Manifest(stage="train", config={"train": {"search": {"catalogue": {"retriever": None}}}},
                       extra={"pipeline": {"fusion_weight": 0.5, "dense_encoder": "minilm"}})
    assert "dense_retriever" not in trained_pipeline(untuned)
    assert trained_pipeline(Manifest(stage="train", config=cfg)) == {}  # no catalogue step, nothing to fuse
