"""Always-valid sequential tests: under no effect, looked at after every block, they decide
wrongly in at most alpha of the runs (peeking at a z-test does not); a real effect is found."""

from __future__ import annotations

import numpy as np
import pytest

from shelfops.eval.sequential import difference, one_sided_p, preference


def test_interleaving_test_under_no_preference_stays_under_alpha_while_peeking():
    rng = np.random.default_rng(0)
    alpha, runs, looks, block = 0.05, 400, 150, 20
    wrong = 0
    for _ in range(runs):
        w = np.cumsum(rng.binomial(block, 0.5, looks))
        n = np.arange(1, looks + 1) * block
        wrong += any(preference(int(x), int(m - x), alpha=alpha).decided for x, m in zip(w, n))
    assert wrong / runs <= alpha  # 3,000 decided searches each, looked at 150 times


def test_click_through_test_under_no_difference_stays_under_alpha_while_the_z_test_does_not():
    rng = np.random.default_rng(1)
    alpha, runs, looks, block, rate = 0.05, 300, 100, 400, 0.1
    seq = peek = 0
    for _ in range(runs):
        c = np.cumsum(rng.binomial(block, rate, looks))
        p = np.cumsum(rng.binomial(block, rate, looks))
        n = np.arange(1, looks + 1) * block
        seq += any(difference(int(a), int(m), int(b), int(m), alpha=alpha).decided for a, b, m in zip(c, p, n))
        peek += any(min(one_sided_p(int(a), int(m), int(b), int(m)), one_sided_p(int(b), int(m), int(a), int(m)))
                    < alpha / 2 for a, b, m in zip(c, p, n))
    assert seq / runs <= alpha
    assert peek / runs > 2 * alpha  # the reason for this module: 100 looks at a 5% test


@pytest.mark.parametrize("share,direction", [(0.6, "better"), (0.4, "worse")])
def test_a_real_preference_is_found_in_its_direction(share, direction):
    rng = np.random.default_rng(2)
    w = int(rng.binomial(2000, share))
    v = preference(w, 2000 - w, alpha=0.01)
    assert v.decided == direction and v.p_value < 0.01 and v.n == 2000


def test_a_large_harm_is_caught_early_and_an_empty_arm_decides_nothing():
    v = difference(10, 2000, 100, 5000, alpha=0.01)  # 0.5% vs 2% conversion
    assert v.decided == "worse" and v.estimate < 0
    assert difference(0, 0, 10, 100).decided is None
    assert preference(0, 0).decided is None and preference(0, 0).p_value == 1.0
