"""Gate checks: pure functions over measured numbers; each test can fail if the rule breaks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shelfops.errors import ConfigError, DataError
from shelfops.eval.agreement import rank_biased_overlap
from shelfops.gate.checks import (
    GateResult,
    behavioural,
    case_whitespace_invariance,
    determinism,
    exact_title_top_k,
    parity_with_reference,
    quality_non_regression,
    ranking_consistency,
    summarize,
    typo,
    typo_robustness,
)


def _json_roundtrip(result: GateResult) -> dict:
    """to_dict must be strict JSON (no numpy types, no NaN) and survive a round trip unchanged."""
    d = result.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    return d


# --------------------------------------------------------------------------- GateResult / summarize


def test_gate_result_converts_numpy_values_to_plain_json():
    r = GateResult(
        "x", np.bool_(True), {"a": np.float32(1.5), "b": np.arange(3), "c": (np.int64(2),), "d": np.nan},
        {"t": np.float64(0.1)}, ["ok"],
    )
    d = _json_roundtrip(r)
    assert d["passed"] is True
    assert d["numbers"] == {"a": 1.5, "b": [0, 1, 2], "c": [2], "d": None}
    assert type(d["numbers"]["b"][0]) is int and type(d["thresholds"]["t"]) is float


def test_summarize_lists_every_failure_not_just_the_first():
    results = [
        GateResult("a", True, {}, {}, []),
        GateResult("b", False, {}, {}, ["b broke"]),
        GateResult("c", True, {}, {}, []),
        GateResult("d", False, {}, {}, ["d broke"]),
    ]
    s = summarize(results)
    assert s["passed"] is False
    assert s["failed"] == ["b", "d"]
    assert [r["name"] for r in s["results"]] == ["a", "b", "c", "d"]
    assert s["results"][3]["details"] == ["d broke"]
    json.dumps(s, allow_nan=False)
    assert summarize(results[::2])["passed"] is True
    assert summarize(results[::2])["failed"] == []
    assert summarize([])["passed"] is False


# --------------------------------------------------------------------------- quality


@pytest.fixture
def production_ndcg() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.3, 0.8, 300)


def test_better_candidate_passes_non_regression(production_ndcg):
    cand = production_ndcg + 0.03 + np.random.default_rng(1).normal(0, 0.05, len(production_ndcg))
    r = quality_non_regression(cand, production_ndcg, n_boot=300)
    assert r.passed
    n = _json_roundtrip(r)["numbers"]
    assert n["n"] == 300 and n["metric"] == "ndcg@10"
    assert n["diff"] == pytest.approx(float(np.mean(cand - production_ndcg)))
    assert n["ci_low"] > 0 and n["ci_low"] <= n["diff"] <= n["ci_high"]
    assert n["candidate_mean"] == pytest.approx(float(cand.mean()))
    assert n["production_mean"] == pytest.approx(float(production_ndcg.mean()))


def test_clearly_worse_candidate_fails_with_numbers_in_details(production_ndcg):
    cand = production_ndcg - 0.1 + np.random.default_rng(1).normal(0, 0.02, len(production_ndcg))
    r = quality_non_regression(cand, production_ndcg, n_boot=300, metric="mrr")
    assert not r.passed
    assert r.numbers["diff"] == pytest.approx(-0.1, abs=0.01)
    assert r.thresholds["margin"] == 0.005
    broken = r.details[-1]
    assert "ci_low" in broken and "< -margin -0.005" in broken and "mrr" in broken
    assert f"{r.numbers['ci_low']:.4g}" in broken


def test_non_regression_margin_is_the_boundary(production_ndcg):
    # a constant diff has a degenerate interval: exactly the diff
    assert quality_non_regression(production_ndcg - 0.004, production_ndcg, n_boot=50).passed
    assert not quality_non_regression(production_ndcg - 0.006, production_ndcg, n_boot=50).passed
    assert quality_non_regression(production_ndcg - 0.006, production_ndcg, n_boot=50, margin=0.01).passed


def test_non_regression_uses_the_interval_not_the_mean(production_ndcg):
    # mean diff exactly 0, but +-0.2 per query: too noisy to rule out a loss of 0.005
    swing = np.where(np.arange(len(production_ndcg)) % 2 == 0, 0.2, -0.2)
    r = quality_non_regression(production_ndcg + swing, production_ndcg, n_boot=300)
    assert r.numbers["diff"] == pytest.approx(0.0, abs=1e-12)
    assert r.numbers["ci_low"] < -0.005 < r.numbers["ci_high"]
    assert not r.passed


def test_non_regression_drops_nan_queries(production_ndcg):
    cand = production_ndcg.copy()
    cand[:10] = np.nan
    r = quality_non_regression(cand, production_ndcg, n_boot=50)
    assert r.numbers["n"] == 290 and r.numbers["n_dropped"] == 10 and r.passed


# --------------------------------------------------------------------------- parity


@pytest.fixture
def golden_groups() -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.normal(size=30) for _ in range(40)]


def test_identical_groups_pass_parity_at_100_percent(golden_groups):
    r = parity_with_reference(golden_groups, [g.copy() for g in golden_groups], max_abs_diff=1e-6)
    assert r.passed
    n = _json_roundtrip(r)["numbers"]
    assert n["pass_rate"] == 1.0 and n["groups"] == 40
    assert n["overlap_min"] == 1.0 and n["tau_min"] == pytest.approx(1.0)
    assert n["max_abs_diff"] == 0.0


def test_scrambled_groups_fail_parity(golden_groups):
    rng = np.random.default_rng(3)
    r = parity_with_reference(golden_groups, [rng.permutation(g) for g in golden_groups])
    assert not r.passed
    assert r.numbers["pass_rate"] < 0.5
    assert r.numbers["tau_mean"] < 0.5
    assert any("pass_rate" in d and "< min_pass_rate 0.999" in d for d in r.details)


def test_one_scrambled_group_breaks_the_default_pass_rate(golden_groups):
    groups = [g.copy() for g in golden_groups]
    groups[7] = groups[7][::-1].copy()
    r = parity_with_reference(golden_groups, groups)
    assert not r.passed
    assert r.numbers["pass_rate"] == pytest.approx(39 / 40)
    assert r.numbers["failing_groups"] == [7]
    assert parity_with_reference(golden_groups, groups, min_pass_rate=0.95).passed


def test_parity_max_abs_diff_is_checked_even_when_the_order_is_identical(golden_groups):
    shifted = [g + 1e-3 for g in golden_groups]
    assert parity_with_reference(golden_groups, shifted).passed  # order only
    r = parity_with_reference(golden_groups, shifted, max_abs_diff=1e-4)
    assert not r.passed
    assert r.numbers["pass_rate"] == 1.0
    assert r.numbers["max_abs_diff"] == pytest.approx(1e-3)
    assert any("max_abs_diff" in d and "> allowed 0.0001" in d for d in r.details)


def test_parity_tau_for_constant_groups():
    const = [np.ones(5)]
    assert parity_with_reference(const, [np.full(5, 2.0)], k=5).numbers["tau_min"] == 1.0
    # a variant that collapses every score to one value lost the ranking: tau 0, fails
    r = parity_with_reference([np.arange(5.0)], [np.zeros(5)], k=2)
    assert r.numbers["tau_min"] == 0.0 and not r.passed


def test_parity_rejects_misaligned_or_empty_input(golden_groups):
    with pytest.raises(DataError, match="groups but groups has"):
        parity_with_reference(golden_groups, golden_groups[:-1])
    with pytest.raises(DataError, match="scores but groups"):
        parity_with_reference([np.ones(3)], [np.ones(4)])
    with pytest.raises(DataError, match="is empty"):
        parity_with_reference([], [])
    with pytest.raises(DataError, match="NaN or infinite"):
        parity_with_reference([np.ones(3)], [np.array([1.0, np.nan, 1.0])])


# --------------------------------------------------------------------------- determinism


def test_determinism_passes_when_outputs_agree_within_atol():
    first = np.random.default_rng(4).normal(size=(64, 8))
    r = determinism(first, first.copy(), {1: first + 1e-6, 32: first.copy()}, first - 5e-5)
    assert r.passed
    n = _json_roundtrip(r)["numbers"]
    assert n["repeat_max_abs_diff"] == 0.0
    assert n["batch_max_abs_diff"]["1"] == pytest.approx(1e-6)
    assert n["padding_max_abs_diff"] == pytest.approx(5e-5)


def test_determinism_catches_a_batch_size_dependent_output():
    first = np.random.default_rng(4).normal(size=100)
    bs32 = first.copy()
    bs32[40:] += 3e-3  # the rows after the first batch of 32 change
    r = determinism(first, first.copy(), {1: first.copy(), 8: first + 1e-6, 32: bs32}, first.copy())
    assert not r.passed
    assert r.numbers["batch_max_abs_diff"]["32"] == pytest.approx(3e-3)
    assert r.numbers["batch_max_abs_diff"]["8"] == pytest.approx(1e-6)
    assert r.numbers["max_abs_diff"] == pytest.approx(3e-3)
    broken = [d for d in r.details if "> atol" in d]
    assert len(broken) == 1 and broken[0].startswith("batch size 32")


def test_determinism_catches_repeat_and_padding_and_lists_both():
    first = np.zeros(10)
    r = determinism(first, first + 1e-3, {4: first.copy()}, first + 1e-2)
    assert not r.passed
    broken = [d for d in r.details if "> atol" in d]
    assert [d.split(":")[0] for d in broken] == ["repeat", "padding"]


def test_determinism_of_an_unbatched_variant_skips_padding_but_still_checks_repeats():
    first = np.zeros(10)
    r = determinism(first, first.copy(), {1: first.copy()}, None)
    assert r.passed and r.numbers["padding_max_abs_diff"] is None
    assert "padding not applicable" in r.details[0]
    assert not determinism(first, first + 1e-3, {1: first.copy()}, None).passed


def test_determinism_nan_mismatch_fails_and_stays_json():
    first = np.array([1.0, np.nan, 2.0])
    assert determinism(first, first.copy(), {}, first.copy()).passed  # NaN in the same place
    second = np.array([1.0, 0.0, 2.0])
    r = determinism(first, second, {}, first.copy())
    assert not r.passed
    assert _json_roundtrip(r)["numbers"]["repeat_max_abs_diff"] is None
    with pytest.raises(DataError, match="has shape"):
        determinism(first, first[:2], {}, first)


# --------------------------------------------------------------------------- RBO


def _rbo_ext_direct(a: list, b: list, p: float) -> float:
    """Webber et al. 2010 eq. 32, written out with set intersections (no incremental counting)."""
    s_list, l_list = (a, b) if len(a) <= len(b) else (b, a)
    s, l_ = len(s_list), len(l_list)

    def x(d: int) -> int:
        return len(set(s_list[:d]) & set(l_list[:d]))

    sum1 = sum(x(d) / d * p**d for d in range(1, l_ + 1))
    sum2 = sum(x(s) * (d - s) / (s * d) * p**d for d in range(s + 1, l_ + 1))
    return (1 - p) / p * (sum1 + sum2) + ((x(l_) - x(s)) / l_ + x(s) / s) * p**l_


def test_rbo_known_values():
    assert rank_biased_overlap(list(range(20)), list(range(20))) == pytest.approx(1.0)
    assert rank_biased_overlap([1, 2, 3], [4, 5, 6, 7]) == 0.0
    # hand-computed, p = 0.5: A_1 = 1, A_2 = 1/2, A_3 = 1 -> (.5 + .125 + .125) + .125 * 1
    assert rank_biased_overlap([1, 2, 3], [1, 3, 2], p=0.5) == pytest.approx(0.875)
    # A_1 = 0, A_2 = 1/2 -> .5 * .25 + .25 * (0 + 1/2)
    assert rank_biased_overlap(["a", "b"], ["c", "a"], p=0.5) == pytest.approx(0.25)
    # uneven: S = [1, 2], L = [3, 1, 2]; X_1..3 = 0, 1, 2 -> 0.2291667 + 0.125 * (1/3 + 1/2) = 1/3
    assert rank_biased_overlap([1, 2], [3, 1, 2], p=0.5) == pytest.approx(1 / 3)
    # the shorter list is a prefix of the longer: extrapolation assumes it continues to agree
    assert rank_biased_overlap([1, 2], [1, 2, 3], p=0.5) == pytest.approx(1.0)


def test_rbo_is_top_weighted_and_symmetric():
    base = list(range(10))
    swap_top = [1, 0, *range(2, 10)]
    swap_bottom = [*range(8), 9, 8]
    assert rank_biased_overlap(base, swap_top) < rank_biased_overlap(base, swap_bottom) < 1.0
    assert rank_biased_overlap(base, swap_top) == pytest.approx(rank_biased_overlap(swap_top, base))


def test_rbo_matches_the_formula_on_random_lists():
    rng = np.random.default_rng(5)
    for _ in range(30):
        a = rng.choice(30, size=int(rng.integers(1, 15)), replace=False).tolist()
        b = rng.choice(30, size=int(rng.integers(1, 15)), replace=False).tolist()
        p = float(rng.uniform(0.5, 0.95))
        assert rank_biased_overlap(a, b, p) == pytest.approx(_rbo_ext_direct(a, b, p), abs=1e-12)


def test_rbo_edge_cases_and_bad_input():
    assert rank_biased_overlap([], []) == 1.0
    assert rank_biased_overlap([], [1]) == 0.0
    with pytest.raises(DataError, match="repeats an id"):
        rank_biased_overlap([1, 1, 2], [1, 2])
    for p in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"p must be in \(0, 1\)"):
            rank_biased_overlap([1], [1], p=p)


# --------------------------------------------------------------------------- ranking consistency


def _golden(n_queries: int = 50, n_items: int = 40, moved: tuple[int, ...] = (3, 11, 20, 34, 47)):
    rng = np.random.default_rng(6)
    names = [f"q{i:02d}" for i in range(n_queries)]
    production = [rng.normal(size=n_items) for _ in range(n_queries)]
    candidate = []
    for i, prod in enumerate(production):
        if i in moved:
            candidate.append(rng.permutation(prod))
        else:
            cand = 2.0 * prod + 1.0  # same order, different scale
            low = np.argsort(prod)[:2]  # and two items swapped at the very bottom
            cand[low] = cand[low[::-1]]
            candidate.append(cand)
    return names, production, candidate, [names[i] for i in moved]


def test_ranking_consistency_finds_the_reshuffled_queries():
    names, production, candidate, moved = _golden()
    r = ranking_consistency(names, production, candidate, worst=5)
    d = _json_roundtrip(r)
    n = d["numbers"]
    assert n["queries"] == 50
    assert n["pass_rate"] == 0.9
    assert r.passed  # exactly at min_pass_rate
    assert sorted(n["failing"]) == sorted(moved)
    assert sorted(q["name"] for q in n["most_changed"]) == sorted(moved)
    rbos = [q["rbo"] for q in n["most_changed"]]
    assert rbos == sorted(rbos)
    assert len(n["per_query"]) == 50
    by_name = {q["name"]: q for q in n["per_query"]}
    assert set(by_name["q00"]) == {"name", "overlap", "rbo", "tau", "passed"}
    assert by_name["q00"]["overlap"] == 1.0 and by_name["q00"]["rbo"] > 0.99 and by_name["q00"]["passed"]
    assert all(not by_name[m]["passed"] for m in moved)
    assert any(moved[0] in line for line in r.details)


def test_ranking_consistency_fails_below_min_pass_rate_and_names_the_queries():
    names, production, candidate, moved = _golden()
    r = ranking_consistency(names, production, candidate, min_pass_rate=0.95)
    assert not r.passed
    broken = r.details[-1]
    assert "pass_rate 0.9 < min_pass_rate 0.95" in broken
    assert all(m in broken for m in moved)
    assert len(r.numbers["most_changed"]) == 10  # default worst


def test_ranking_consistency_each_threshold_can_fail_a_query():
    prod = [np.arange(20.0)[::-1].copy()]  # item 0 best
    cand = prod[0].copy()
    cand[[15, 19]] = cand[[19, 15]]  # a swap outside the top 10: overlap 1, rbo high, tau < 1
    tau_only = ranking_consistency(["q"], prod, [cand], min_tau=0.99)
    q = tau_only.numbers["per_query"][0]
    assert q["overlap"] == 1.0 and q["rbo"] > 0.9 and q["tau"] < 0.99 and not q["passed"]
    assert ranking_consistency(["q"], prod, [cand], min_rbo=0.999).numbers["per_query"][0]["passed"] is False
    assert ranking_consistency(["q"], prod, [cand]).passed


def test_ranking_consistency_rejects_misaligned_input():
    names, production, candidate, _ = _golden()
    with pytest.raises(DataError, match="entries but production has"):
        ranking_consistency(names[:-1], production, candidate)
    with pytest.raises(DataError, match="groups but candidate has"):
        ranking_consistency(names, production, candidate[:-1])


# --------------------------------------------------------------------------- behavioural


@pytest.fixture
def probes() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=30) for _ in range(20)]


def _swap_top_with_tail(scores: np.ndarray, n_swaps: int) -> np.ndarray:
    """Swap the scores of the top n items with items ranked 20..: top-10 overlap = 1 - n/10."""
    order = np.argsort(-scores, kind="stable")
    out = scores.copy()
    for j in range(n_swaps):
        a, b = order[j], order[20 + j]
        out[a], out[b] = out[b], out[a]
    return out


def test_case_whitespace_invariance_pass_and_fail(probes):
    assert case_whitespace_invariance(probes, [p * 0.9 + 0.01 for p in probes]).passed
    moved = [_swap_top_with_tail(p, 3) if i < 2 else p.copy() for i, p in enumerate(probes)]
    r = case_whitespace_invariance(probes, moved)  # 18/20 = 0.9 < 0.95
    assert not r.passed
    assert r.numbers["pass_rate"] == 0.9 and r.numbers["failing_probes"] == [0, 1]
    assert r.numbers["overlap_min"] == pytest.approx(0.7)
    assert "pass_rate 0.9 < min_pass_rate 0.95" in r.details[-1]


def test_typo_robustness_is_looser_than_case_invariance(probes):
    moved = [_swap_top_with_tail(p, 3) for p in probes]  # every probe keeps 7/10
    assert typo_robustness(probes, moved).passed
    assert not case_whitespace_invariance(probes, moved).passed
    worse = [_swap_top_with_tail(p, 5) if i < 5 else p.copy() for i, p in enumerate(probes)]
    r = typo_robustness(probes, worse)  # 15/20 = 0.75 < 0.8
    assert not r.passed and r.numbers["pass_rate"] == 0.75 and r.numbers["overlap_min"] == 0.5


def test_exact_title_top_k():
    assert exact_title_top_k([0] * 9 + [12]).passed  # 0.9 >= 0.9
    r = exact_title_top_k([0, 1, 2, 0, 0, 3, 0, 0, 10, 50])  # rank 10 is the 11th place
    assert not r.passed
    assert r.numbers["pass_rate"] == 0.8 and r.numbers["failing_probes"] == [8, 9]
    assert r.numbers["max_rank"] == 50
    assert "pass_rate 0.8 < min_pass_rate 0.9" in r.details[-1]
    assert exact_title_top_k([0, 1, 2, 0, 0, 3, 0, 0, 10, 50], k=11, min_pass_rate=0.9).passed
    with pytest.raises(DataError, match="integers >= 0"):
        exact_title_top_k([0, -1])
    with pytest.raises(DataError, match="non-empty list"):
        exact_title_top_k([])


def test_behavioural_combines_named_checks():
    checks = {"negation": [True] * 20, "units": [True] * 18 + [False] * 2}
    r = behavioural(checks)
    assert not r.passed and r.numbers["failing_checks"] == ["units"]
    assert r.numbers["checks"]["units"] == {"probes": 20, "pass_rate": 0.9}
    assert behavioural(checks, min_pass_rate=0.9).passed
    assert not behavioural({"empty": []}).passed


# --------------------------------------------------------------------------- typo()


def _one_adjacent_swap(before: str, after: str) -> int:
    """The position i such that ``after`` is ``before`` with i and i+1 swapped (asserts it)."""
    assert len(before) == len(after)
    diff = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
    assert len(diff) == 2 and diff[1] == diff[0] + 1, (before, after)
    i = diff[0]
    assert after[i] == before[i + 1] and after[i + 1] == before[i]
    return i


def test_typo_makes_exactly_one_adjacent_swap_inside_a_long_word():
    text = "cordless drill 18v kit"
    positions = set()
    for seed in range(100):
        out = typo(text, np.random.default_rng(seed))
        i = _one_adjacent_swap(text, out)
        # only "cordless" (0..7) and "drill" (9..13) have >= 4 letters
        assert 0 <= i < 7 or 9 <= i < 13
        positions.add(i)
    assert len(positions) > 5  # the rng actually chooses


def test_typo_is_deterministic_for_a_seeded_rng():
    text = "stainless steel kitchen sink"
    outs = [typo(text, np.random.default_rng(42)) for _ in range(3)]
    assert outs[0] == outs[1] == outs[2] != text
    rng = np.random.default_rng(42)
    first_run = [typo(text, rng) for _ in range(5)]
    rng = np.random.default_rng(42)
    assert [typo(text, rng) for _ in range(5)] == first_run


def test_typo_leaves_text_without_a_long_word_unchanged():
    rng = np.random.default_rng(0)
    assert typo("a big red 2x4", rng) == "a big red 2x4"
    assert typo("aaaa bbb", rng) == "aaaa bbb"  # swapping equal letters is no typo
    assert typo("", rng) == ""
    assert _one_adjacent_swap("aaab", typo("aaab", rng)) == 2


def test_queries_needed_is_the_non_inferiority_sample_size():
    from scipy.stats import norm

    from shelfops.gate.checks import queries_needed

    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 0.06, 400)
    z = norm.ppf(0.975) + norm.ppf(0.9)
    want = (z * d.std(ddof=1) / 0.02) ** 2
    assert queries_needed(d, margin=0.02, power=0.9) == int(np.ceil(want))
    assert 80 < want < 110  # ~95 queries to show a loss under 0.02 NDCG at this spread
    assert queries_needed(d, margin=0.01, power=0.9) > 3.9 * queries_needed(d, margin=0.02, power=0.9)
    assert queries_needed(2 * d, margin=0.02) > queries_needed(d, margin=0.02)  # noisier: more queries
    assert queries_needed(d, margin=0.0) > 10**9 and queries_needed([0.1], margin=0.02) > 10**9
    with pytest.raises(ConfigError, match="power"):
        queries_needed(d, margin=0.02, power=1.0)
