"""Evaluation metrics: values worked by hand, tie rules, vectorised == brute force, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shelfops.errors import ConfigError, DataError
from shelfops.eval.metrics import (
    accuracy,
    bootstrap_ci,
    compare,
    full_rank_metrics,
    grouped_ranking_metrics,
    hit_rate_at_k,
    macro_f1,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
    sample_negatives,
    sampled_rank_metrics,
    summarize,
)

L3 = math.log2(3)  # discount denominator of position 1 (rank 2)

# --------------------------------------------------------------------------- one query


def test_ndcg_three_item_pool_by_hand() -> None:
    scores, gains = [0.9, 0.5, 0.1], [0.0, 2.0, 1.0]
    # ranked gains 0, 2, 1; ideal 2, 1, 0
    assert ndcg_at_k(scores, gains, 3) == pytest.approx((2 / L3 + 1 / 2) / (2 + 1 / L3))
    assert ndcg_at_k(scores, gains, 2) == pytest.approx((2 / L3) / (2 + 1 / L3))
    assert ndcg_at_k(scores, gains, 1) == 0.0
    # exponential gain 2**g - 1: ranked 0, 3, 1; ideal 3, 1, 0
    got = ndcg_at_k(scores, gains, 3, gain="exponential")
    assert got == pytest.approx((3 / L3 + 1 / 2) / (3 + 1 / L3))


def test_ndcg_perfect_and_empty_ideal() -> None:
    assert ndcg_at_k([3, 2, 1], [2, 1, 0], 10) == pytest.approx(1.0)
    assert math.isnan(ndcg_at_k([3, 2, 1], [0, 0, 0], 10))


def test_ties_pessimistic_and_optimistic() -> None:
    scores, gains = [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]
    # pessimistic: the tied irrelevant item goes first, the relevant one to position 1
    assert ndcg_at_k(scores, gains, 1) == 0.0
    assert ndcg_at_k(scores, gains, 3) == pytest.approx(1 / L3)
    assert ndcg_at_k(scores, gains, 3, ties="optimistic") == pytest.approx(1.0)
    # the input order never decides a tie
    assert ndcg_at_k(scores[::-1][1:] + [0.0], [0.0, 1.0, 0.0], 3) == pytest.approx(1 / L3)


def test_mrr_recall_precision_by_hand() -> None:
    assert mrr([0.3, 0.9, 0.5, 0.1], [1, 0, 0, 1]) == pytest.approx(1 / 3)
    scores, labels = [4, 3, 2, 1], [1, 1, 0, 1]
    assert recall_at_k(scores, labels, 2) == pytest.approx(2 / 3)
    assert precision_at_k(scores, labels, 2) == 1.0
    assert precision_at_k(scores, labels, 5) == pytest.approx(3 / 5)  # divides by k
    assert math.isnan(mrr([1, 2], [0, 0]))
    # rel_threshold: only labels above it count (Home Depot gain 1.5 = relevance 2.5)
    assert mrr([3, 2, 1], [0.5, 1.5, 2.0], rel_threshold=1.0) == pytest.approx(1 / 2)


def test_hit_rate_with_ties() -> None:
    scores, labels = [0.5, 0.5, 0.5, 0.2], [0, 0, 1, 0]
    assert hit_rate_at_k(scores, labels, 1) == 0.0
    assert hit_rate_at_k(scores, labels, 2) == 0.0
    assert hit_rate_at_k(scores, labels, 3) == 1.0
    assert hit_rate_at_k(scores, labels, 1, ties="optimistic") == 1.0


# --------------------------------------------------------------------------- grouped


def _reference(q, s, y, k, ties):
    """Per query, brute force, in np.unique(q) order."""
    out = {"ndcg": [], "mrr": [], "recall": []}
    for qid in np.unique(q):
        m = q == qid
        ss, yy = s[m], y[m]
        tie = yy if ties == "pessimistic" else -yy
        order = sorted(range(len(ss)), key=lambda i: (-ss[i], tie[i]))
        ranked = yy[order]
        disc = 1 / np.log2(np.arange(len(ranked)) + 2)
        dcg = (ranked * disc)[:k].sum()
        idcg = (np.sort(yy)[::-1] * disc)[:k].sum()
        out["ndcg"].append(dcg / idcg if idcg > 0 else np.nan)
        rel = ranked > 0
        out["mrr"].append(1 / (np.argmax(rel) + 1) if rel.any() else np.nan)
        out["recall"].append(rel[:k].sum() / rel.sum() if rel.any() else np.nan)
    return {key: np.array(v) for key, v in out.items()}


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_grouped_matches_brute_force(ties: str) -> None:
    rng = np.random.default_rng(7)
    n = 600
    q = rng.integers(0, 80, n)
    s = rng.integers(0, 4, n).astype(float)  # many ties
    y = rng.integers(0, 3, n).astype(float)
    got = grouped_ranking_metrics(q, s, y, ks=(3,), ties=ties)
    ref = _reference(q, s, y, 3, ties)
    np.testing.assert_allclose(got["ndcg@3"], ref["ndcg"], equal_nan=True)
    np.testing.assert_allclose(got["mrr"], ref["mrr"], equal_nan=True)
    np.testing.assert_allclose(got["recall@3"], ref["recall"], equal_nan=True)


def test_grouped_aligns_with_sorted_query_ids_and_counts_nan() -> None:
    q = np.array(["b", "a", "b", "a", "c", "c"])
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.5, 0.4])
    y = np.array([0.0, 2.0, 1.0, 0.0, 0.0, 0.0])  # query c has nothing relevant
    got = grouped_ranking_metrics(q, s, y, ks=(1, 10))
    np.testing.assert_allclose(got["ndcg@1"], [1.0, 1.0, np.nan], equal_nan=True)
    assert set(got) == {
        "mrr",
        *(f"{m}@{k}" for m in ("ndcg", "recall", "hit", "precision") for k in (1, 10)),
    }
    summary = summarize(got, n_boot=50)
    assert summary["ndcg@1"]["n"] == 2 and summary["ndcg@1"]["n_nan"] == 1
    assert summary["ndcg@1"]["mean"] == 1.0


def test_grouped_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="same length"):
        grouped_ranking_metrics([0, 0], [1.0], [1.0, 0.0])
    with pytest.raises(DataError, match="non-negative"):
        grouped_ranking_metrics([0, 0], [1.0, 0.0], [-1.0, 0.0])
    with pytest.raises(DataError, match="scores contains NaN"):
        grouped_ranking_metrics([0, 0], [np.nan, 0.0], [1.0, 0.0])
    with pytest.raises(ConfigError, match="ks must be"):
        grouped_ranking_metrics([0], [1.0], [1.0], ks=(0,))
    with pytest.raises(ConfigError, match="gain must be"):
        grouped_ranking_metrics([0], [1.0], [1.0], gain="log")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- full ranking


def test_full_rank_masks_history_and_padding_by_hand() -> None:
    scores = np.array([[9.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    before = scores.copy()
    # no mask: items 0, 1, 2 beat the target 3 -> rank 3
    m = full_rank_metrics(scores, [3], ks=(3, 4))
    assert m["hr@3"][0] == 0.0 and m["hr@4"][0] == 1.0
    assert m["ndcg@4"][0] == pytest.approx(1 / math.log2(5))
    # padding column 0 and history item 1 masked -> only item 2 beats it -> rank 1
    m = full_rank_metrics(scores, [3], [np.array([1])], ks=(1, 2), exclude_padding=True)
    assert m["hr@1"][0] == 0.0 and m["hr@2"][0] == 1.0
    assert m["ndcg@2"][0] == pytest.approx(1 / L3) and m["mrr"][0] == pytest.approx(0.5)
    # the target itself is never masked, even when it is in the history
    m = full_rank_metrics(scores, [3], [np.array([1, 3, 3])], ks=(2,), exclude_padding=True)
    assert m["hr@2"][0] == 1.0
    np.testing.assert_array_equal(scores, before)  # the caller's matrix is untouched


def test_full_rank_ties() -> None:
    scores = np.zeros((1, 5))
    pess = full_rank_metrics(scores, [2], [np.array([4])], ks=(1,))
    opt = full_rank_metrics(scores, [2], [np.array([4])], ks=(1,), ties="optimistic")
    assert pess["mrr"][0] == pytest.approx(1 / 4)  # 3 unmasked items tie with it
    assert opt["mrr"][0] == 1.0


def test_full_rank_matches_brute_force_across_inputs() -> None:
    rng = np.random.default_rng(3)
    users, items = 37, 50
    scores = rng.integers(0, 20, (users, items)).astype(np.float32)
    targets = rng.integers(1, items, users)
    hist = [rng.integers(1, items, rng.integers(0, 8)) for _ in range(users)]
    ref = np.empty(users)
    for u in range(users):
        ok = np.ones(items, bool)
        ok[hist[u]] = False
        ok[0] = False
        ok[targets[u]] = True
        s = scores[u][ok]
        ref[u] = (s >= scores[u, targets[u]]).sum() - 1
    expected = np.where(ref < 10, 1 / np.log2(ref + 2), 0.0)
    for given, chunk in [
        (scores, 1000),
        (scores, 4),
        (torch.from_numpy(scores), 5),
        (torch.from_numpy(scores).bfloat16(), 5),  # stays a tensor: the torch code path
        (lambda rows: scores[rows], 6),
    ]:
        got = full_rank_metrics(
            given, targets, hist, ks=(10,), exclude_padding=True, chunk_size=chunk
        )
        np.testing.assert_allclose(got["ndcg@10"], expected)
        np.testing.assert_allclose(got["mrr"], 1 / (ref + 1))


def test_full_rank_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="users"):
        full_rank_metrics(np.zeros((2, 4)), [1, 2, 3])
    with pytest.raises(DataError, match="targets"):
        full_rank_metrics(np.zeros((1, 4)), [4])
    with pytest.raises(DataError, match="padding"):
        full_rank_metrics(np.zeros((1, 4)), [0], exclude_padding=True)
    with pytest.raises(DataError, match="NaN"):
        full_rank_metrics(np.full((1, 4), np.nan), [1])
    with pytest.raises(DataError, match="exclude"):
        full_rank_metrics(np.zeros((1, 4)), [1], [np.array([7])])


# --------------------------------------------------------------------------- sampled


def test_sample_negatives_exclude_history_and_are_deterministic() -> None:
    hist = [np.array([1, 2, 3]), np.array([5]), np.arange(1, 15)]
    a = sample_negatives(20, hist, n=5, seed=11, exclude_padding=True)
    assert a.shape == (3, 5) and a.dtype == np.int64
    for row, h in zip(a, hist):
        assert len(set(row)) == 5
        assert not set(row) & set(h.tolist())
        assert 0 not in row and row.max() < 20
    np.testing.assert_array_equal(a, sample_negatives(20, hist, n=5, seed=11, exclude_padding=True))
    assert not np.array_equal(a, sample_negatives(20, hist, n=5, seed=12, exclude_padding=True))
    # user 3 has exactly 5 untouched items left (15..19): all of them
    assert sorted(a[2]) == [15, 16, 17, 18, 19]
    with pytest.raises(DataError, match="untouched"):
        sample_negatives(20, hist, n=6, exclude_padding=True)


def test_sampled_rank_by_hand() -> None:
    scores = np.array([[0.0, 0.5, 0.9, 0.7, 0.1, 0.5]])
    negatives = np.array([[2, 3, 4, 5]])  # 0.9 and 0.7 beat 0.5; 0.5 ties
    pess = sampled_rank_metrics(scores, [1], negatives, ks=(2, 3))
    assert pess["hr@3"][0] == 0.0 and pess["mrr"][0] == pytest.approx(1 / 4)
    opt = sampled_rank_metrics(scores, [1], negatives, ks=(2, 3), ties="optimistic")
    assert opt["hr@3"][0] == 1.0 and opt["ndcg@3"][0] == pytest.approx(0.5)
    by_fn = sampled_rank_metrics(lambda rows, cand: scores[0][cand], [1], negatives, ks=(2, 3))
    assert by_fn["mrr"][0] == pess["mrr"][0]
    with pytest.raises(DataError, match="own target"):
        sampled_rank_metrics(scores, [2], negatives)


# --------------------------------------------------------------------------- pointwise


def test_pointwise_by_hand() -> None:
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert accuracy(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    # class 0: 2*1/(2*1+0+1); class 1: 2*1/(2*1+2+0); class 2: 0
    assert macro_f1([0, 0, 1, 2], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # a class only predicted still counts (F1 = 0)
    assert macro_f1([0, 0], [0, 3]) == pytest.approx((2 / 3 + 0) / 2)
    with pytest.raises(DataError, match="same length"):
        rmse([1.0], [1.0, 2.0])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_mean_and_shrinks() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_ci(np.sort(rng.random(50)), n_boot=400, seed=1)
    large = bootstrap_ci(np.sort(rng.random(5000)), n_boot=400, seed=1)
    for r in (small, large):
        assert r["ci_low"] < r["estimate"] < r["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 5
    # uniform(0, 1): sd = 1/sqrt(12); a 95% interval of the mean is ~ 2 * 1.96 * sd / sqrt(n)
    normal_width = 2 * 1.96 / math.sqrt(12 * 5000)
    assert large["ci_high"] - large["ci_low"] == pytest.approx(normal_width, rel=0.2)
    values = rng.random(100)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)


def test_bootstrap_ci_of_a_paired_statistic() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(300)
    pred = y + rng.normal(0, 0.3, 300)
    r = bootstrap_ci(y, pred, statistic=rmse, n_boot=200)
    assert r["estimate"] == pytest.approx(rmse(y, pred))
    assert r["ci_low"] < r["estimate"] < r["ci_high"] and r["n"] == 300
    with pytest.raises(DataError, match="NaN"):
        bootstrap_ci([1.0, np.nan])


def test_compare_identical_and_separated() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(400)
    same = compare(a, a.copy(), n_boot=300)
    assert same["overlap"] and not same["a_better"] and not same["diff_excludes_zero"]
    assert same["diff"]["ci_low"] == same["diff"]["ci_high"] == 0.0
    good = np.clip(0.8 + rng.normal(0, 0.1, 400), 0, 1)
    bad = np.clip(0.2 + rng.normal(0, 0.1, 400), 0, 1)
    sep = compare(good, bad, n_boot=300)
    assert not sep["overlap"] and sep["a_better"] and sep["diff_excludes_zero"]
    assert sep["diff"]["ci_low"] > 0.5
    assert not compare(bad, good, n_boot=300)["a_better"]
    with_nan = compare(np.append(good, np.nan), np.append(bad, 0.5), n_boot=50)
    assert with_nan["n"] == 400 and with_nan["n_dropped"] == 1


def test_bootstrap_parameters_checked() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        summarize({"m": np.ones(3)}, alpha=1.5)
    with pytest.raises(ConfigError, match="n_boot"):
        compare(np.ones(3), np.ones(3), n_boot=0)


def test_tie_averaged_metrics_equal_the_mean_over_every_tie_order():
    """ties="average" is exact: on small random pools it equals the brute-force mean over all
    orders of the tied items, and it lies between the pessimistic and optimistic bounds."""
    import itertools

    from shelfops.eval.metrics import grouped_ranking_metrics as grm

    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 7))
        s, y = rng.integers(0, 3, n).astype(float), rng.integers(0, 3, n).astype(float)
        q = np.zeros(n, int)
        avg = grm(q, s, y, ks=(1, 3), ties="average")
        lo, hi = grm(q, s, y, ks=(1, 3)), grm(q, s, y, ks=(1, 3), ties="optimistic")
        orders = [grm(q, s + np.array(p) * 1e-6, y, ks=(1, 3)) for p in itertools.permutations(range(n))]
        for key, v in avg.items():
            if np.isnan(v[0]):
                assert all(np.isnan(o[key][0]) for o in orders)
                continue
            assert v[0] == pytest.approx(np.mean([o[key][0] for o in orders]), abs=1e-9), key
            assert lo[key][0] - 1e-12 <= v[0] <= hi[key][0] + 1e-12


def test_tie_averaged_ndcg_of_a_constant_scorer_is_the_random_expectation():
    from shelfops.eval.metrics import grouped_ranking_metrics as grm

    y = np.array([2.0, 0.0, 0.0, 0.0])  # one relevant item in four, all tied
    out = grm(np.zeros(4, int), np.zeros(4), y, ks=(1,), ties="average")
    assert out["ndcg@1"][0] == pytest.approx(0.25) and out["hit@1"][0] == pytest.approx(0.25)
    assert out["mrr"][0] == pytest.approx(np.mean([1, 1 / 2, 1 / 3, 1 / 4]))


def test_verdict_separates_non_overlapping_from_paired_wins() -> None:
    from shelfops.train.recipe import beats, beats_paired, verdict

    rng = np.random.default_rng(5)
    base = rng.random(300)  # per-query values spread far wider than the model's gain
    clear = {"b": compare(base + 0.5, base, n_boot=300)}
    small = {"b": compare(base + 0.02 + rng.normal(0, 0.005, 300), base, n_boot=300)}
    worse = {"b": compare(base - 0.02, base, n_boot=300)}
    assert beats(clear) and beats_paired(clear)
    assert not beats(small) and beats_paired(small)  # intervals overlap, the paired one does not
    assert not beats(worse) and not beats_paired(worse)
    # every baseline must be beaten, and no comparison is no claim
    assert not beats_paired({**small, "c": worse["b"]}) and not beats_paired({})
    for comps, want in ((clear, "yes"), (small, "paired"), (worse, "no")):
        got = verdict({"beats_baselines": beats(comps), "beats_baselines_paired": beats_paired(comps)})
        assert got == want
