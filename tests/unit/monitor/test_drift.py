"""Drift statistics: no drift on two samples of the same traffic, drift when the mix moves."""

from __future__ import annotations

import numpy as np
import pytest

from shelfops.config.schema import DriftConfig
from shelfops.monitor.drift import (
    Window,
    centroid_shift,
    centroid_shift_p,
    compare,
    ks,
    plot,
    psi,
    psi_categorical,
    thresholds_from,
    unseen_counts,
)

TH = thresholds_from(DriftConfig())  # the config's thresholds

CATS = ["Kitchen > Cookware", "Garden > Tools", "Bath > Towels", "Outdoor > Tents"]
WORDS = {c: c.split(" > ")[1].lower() for c in CATS}


def traffic(rng, n, mix, extra_word=None) -> Window:
    cats = rng.choice(CATS, size=n, p=mix)
    queries = []
    for c in cats:
        words = [WORDS[c]] + ["red", "large", "steel", "soft"][: int(rng.integers(0, 3))]
        if extra_word and c == "Outdoor > Tents":
            words.append(extra_word)
        queries.append(" ".join(words))
    return Window(queries=queries, query_categories=list(cats), top_scores=list(rng.normal(2, 1, n)),
                  clicked_categories=list(rng.choice(CATS, size=n // 3, p=mix)),
                  embeddings=np.eye(4)[[CATS.index(c) for c in cats]] + 0.1)


def test_same_traffic_does_not_drift():
    rng = np.random.default_rng(0)
    mix = [0.4, 0.3, 0.25, 0.05]
    rep = compare(traffic(rng, 2000, mix), traffic(rng, 2000, mix), TH)
    assert rep["enough_samples"] and not rep["drifted"], rep["drifted_features"]
    assert rep["features"]["query_category_mix"]["value"] < 0.02


def test_a_trending_category_with_new_words_drifts():
    rng = np.random.default_rng(1)
    ref = traffic(rng, 2000, [0.4, 0.3, 0.25, 0.05])
    cur = traffic(rng, 2000, [0.2, 0.15, 0.1, 0.55], extra_word="ultralight")
    rep = compare(ref, cur, TH)
    assert rep["drifted"]
    for f in ("query_category_mix", "unseen_token_rate", "category_popularity", "embedding_centroid_shift"):
        assert rep["features"][f]["drifted"], (f, rep["features"][f])
    assert "ultralight" in rep["features"]["unseen_token_rate"]["new_tokens"]
    assert rep["features"]["query_category_mix"]["top_shift"][0]["category"] == "Outdoor > Tents"


def test_small_windows_are_reported_but_not_judged():
    rng = np.random.default_rng(2)
    rep = compare(traffic(rng, 50, [0.25] * 4), traffic(rng, 50, [0.0, 0.0, 0.0, 1.0]),
                  thresholds_from(DriftConfig(min_samples=100)))
    assert not rep["drifted"] and not rep["enough_samples"]
    assert rep["features"]["query_category_mix"]["value"] > 1.0


def test_statistics_match_their_definitions():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 5000)
    assert psi(a, rng.normal(0, 1, 5000)) < 0.02
    assert psi(a, rng.normal(1, 1, 5000)) > 0.5
    stat, p = ks(a, a + 0.5)
    assert stat > 0.15 and p < 1e-10
    # PSI of two categorical mixes by hand: (0.5-0.8)ln(0.5/0.8) + (0.5-0.2)ln(0.5/0.2)
    want = (0.5 - 0.8) * np.log(0.5 / 0.8) + (0.5 - 0.2) * np.log(0.5 / 0.2)
    assert psi_categorical(["a"] * 8 + ["b"] * 2, ["a"] * 5 + ["b"] * 5) == pytest.approx(want)
    assert unseen_counts(["red tent", "blue tent"], {"red", "tent"}) == (1, 4)
    assert centroid_shift(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(1.0)


def test_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(4)
    ref, cur = traffic(rng, 300, [0.4, 0.3, 0.25, 0.05]), traffic(rng, 300, [0.1, 0.1, 0.1, 0.7])
    png = plot(compare(ref, cur, TH), ref, cur, tmp_path / "drift.png")
    assert png.stat().st_size > 10_000


def test_a_chance_move_of_a_small_windows_centroid_is_not_drift():
    """~100 queries a window move the mean embedding by chance past the cosine cut; the
    permutation test tells that from a real shift (a false alarm the demo raised once)."""
    rng = np.random.default_rng(3)
    same = [(rng.normal(0, 1, (100, 8)) + 0.4, rng.normal(0, 1, (100, 8)) + 0.4) for _ in range(20)]
    shifts = [centroid_shift(a, b) for a, b in same]
    assert max(shifts) > TH.centroid_shift  # the cut alone would raise an alarm
    ps = [centroid_shift_p(a, b) for a, b in same]
    assert min(ps) > TH.alpha
    moved = rng.normal(0, 1, (100, 8)) + 0.4
    moved[:, 0] += 1.5
    assert centroid_shift_p(same[0][0], moved) < TH.alpha


def _clustered_clicks(rng, n_searches: int, p: np.ndarray) -> tuple[list[str], list[str]]:
    """Clicks as shoppers make them: one to three clicks per search, all in the category it was about."""
    cats, searches = [], []
    for s in range(n_searches):
        c = str(rng.choice(len(p), p=p))
        k = int(rng.integers(1, 4))
        cats += [c] * k
        searches += [f"s{s}"] * k
    return cats, searches


def test_clustered_clicks_from_one_mix_rarely_drift_and_a_moved_mix_does():
    from shelfops.monitor.drift import chi2_p

    rng = np.random.default_rng(5)
    p = 1 / np.arange(1, 41)
    p /= p.sum()  # 40 categories, Zipf-like: most of them too rare for a chi-square table
    ps = []
    for _ in range(150):
        (a, ga), (b, gb) = _clustered_clicks(rng, 60, p), _clustered_clicks(rng, 60, p)
        ps.append(chi2_p(a, b, ga, gb, n_perm=999))
    # the same distribution: false alarms at about the nominal rate (the asymptotic chi-square
    # test, which counts every click as independent, fired on 97% of these pairs at 0.05)
    assert np.mean(np.array(ps) < 0.05) <= 0.10
    moved = np.roll(p, 3)  # the leading categories change places
    hits = [chi2_p(*_pair(rng, p, moved)) < 0.01 for _ in range(20)]
    assert np.mean(hits) >= 0.9


def _pair(rng, p, q):
    (a, ga), (b, gb) = _clustered_clicks(rng, 60, p), _clustered_clicks(rng, 60, q)
    return a, b, ga, gb


def test_click_windows_carry_the_search_each_click_came_from():
    from shelfops.monitor.windows import window_from_traffic

    w = window_from_traffic([{"kind": "search", "query": "duvet", "top_category": "Bed"},
                             {"kind": "click", "item": "i1", "category": "Bed", "search": "r1"},
                             {"kind": "click", "item": "i2", "category": None, "search": "r1"},
                             {"kind": "click", "item": "i3", "category": "Bath"}])
    assert w.click_searches[:2] == ["r1", "r1"] and w.click_searches[2] not in ("r1",)
    assert w.clicked_categories == ["Bed", "Bath"] and w.category_searches[0] == "r1"
    assert len(w.category_searches) == len(w.clicked_categories)
