"""The story's paired comparison of v2's lists with v1's on the same probed searches."""

from __future__ import annotations

import math

import numpy as np

from shelfops.demo.story import paired_lift


def _probe(version: str, values) -> list[dict]:
    return [{"version": version, "expected": float(v)} for v in values]


def test_a_small_lift_on_the_same_searches_is_found_where_the_searches_differ_widely():
    """Searches differ far more from each other than the versions do on one search: paired, a
    5% lift over 400 searches is clear, as an unpaired test of the same numbers could not be."""
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 0.5, 400)  # what each search is worth: widely spread
    v1 = base * rng.normal(1.0, 0.05, 400)
    v2 = base * rng.normal(1.05, 0.05, 400)
    got = paired_lift(_probe("1", v1), _probe("2", v2), "1", "2")
    assert got["searches"] == 400 and got["left_out"] == 0
    assert math.isclose(got["relative"], v2.mean() / v1.mean() - 1)
    assert got["relative"] > 0.02 and got["p_value"] < 1e-6
    unpaired_z = (v2.mean() - v1.mean()) / math.sqrt(v1.var(ddof=1) / 400 + v2.var(ddof=1) / 400)
    assert unpaired_z < 1.96  # the unpaired comparison would not have seen it


def test_no_lift_is_not_significant_and_searches_answered_by_another_version_are_left_out():
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 0.5, 300)
    before = _probe("1", base * rng.normal(1.0, 0.05, 300))
    after = _probe("2", base * rng.normal(1.0, 0.05, 300))
    after[:20] = _probe("interleaved", np.ones(20) * 100)  # not v2's list alone: not a pair
    got = paired_lift(before, after, "1", "2")
    assert got["searches"] == 280 and got["left_out"] == 20
    assert got["p_value"] > 0.05
    worse = paired_lift(before, _probe("2", [b["expected"] * 0.9 for b in before]), "1", "2")
    assert worse["relative"] < 0 and worse["p_value"] > 0.99
    assert paired_lift(before[:1], after[:1], "1", "2") is None
