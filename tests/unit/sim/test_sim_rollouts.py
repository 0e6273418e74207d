"""The rollout simulation: candidates of a known lift, decided by the real policy."""

from __future__ import annotations

from datetime import datetime

import pytest

from shelfops.config.schema import RolloutConfig
from shelfops.monitor.rollout import policy_from
from shelfops.sim import rollouts as sim
from shelfops.sim.shop.generate import shop_truth


@pytest.fixture(scope="module")
def pop():
    truth = shop_truth(users=300, items=400, days=14, sessions_per_user_per_day=0.5, seed=5,
                       start=datetime(2026, 1, 1), drift_day=7, drift_strength=0.5, drift_new_items=0.03)
    return sim.searches(truth, 400, day=9, seed=0)


def test_calibrated_candidates_have_the_lift_asked_for(pop):
    base = sim.expected_clicks(pop, 3.0)
    for lift in (-0.05, 0.1):
        sigma = sim.calibrate(pop, 3.0, lift)
        assert sim.expected_clicks(pop, sigma) / base - 1 == pytest.approx(lift, abs=0.003)
    with pytest.raises(ValueError, match="beyond a perfect ranker"):
        sim.calibrate(pop, 3.0, 5.0)


def test_interleaving_promotes_a_much_better_candidate_and_rolls_back_a_much_worse_one(pop):
    policy = policy_from(RolloutConfig(stages=("interleave", 100), min_dwell_s=0, alpha=0.05, max_searches=5000))
    better = sim.simulate(pop, policy, 3.0, sim.calibrate(pop, 3.0, 0.2), runs=10, agreement=0.9)
    worse = sim.simulate(pop, policy, 3.0, sim.calibrate(pop, 3.0, -0.15), runs=10, agreement=0.9)
    assert better.summary()["promoted"] == 1.0 and worse.summary()["rolled_back"] == 1.0
    assert max(better.searches) < 5000 and all("interleaved searches" in r for r in better.reason)


def test_todays_canary_walks_its_steps_and_promotes_an_equal_candidate(pop):
    """The old policy only looks for harm: an equal candidate goes through 5/25/50% to 100%."""
    policy = policy_from(RolloutConfig(stages=(5, 25, 50, 100), ctr_test="fixed", min_dwell_s=0, min_requests=50,
                                       min_impressions=100))
    runs = sim.simulate(pop, policy, 3.0, 3.0, runs=5, look_every=100)
    assert runs.action.count("promote") >= 4
    # each step waits for 50 candidate requests: ~1,000 searches at 5%, 200 at 25%, 100 at 50%
    assert all(n >= 700 for a, n in zip(runs.action, runs.searches) if a == "promote")
