"""The rollout decision function: advance, hold, promote and every rollback reason."""

from __future__ import annotations

import dataclasses

import pytest

from shelfops.config.schema import RolloutConfig
from shelfops.eval.sequential import one_sided_p
from shelfops.monitor.rollout import Observed, decide, policy_from


def _policy(**kw):
    """The config's rollout policy (its defaults but for ``kw``)."""
    return policy_from(RolloutConfig(**kw))


P = _policy(min_dwell_s=60, min_requests=100, min_impressions=1000)
PROD = Observed(requests=1000, errors=0, p99_ms=40, impressions=5000, clicks=500, conversions=100)


def healthy(**kw):
    base = dict(requests=200, errors=0, p99_ms=42, impressions=2000, clicks=205, conversions=41, overlap=0.9)
    return Observed(**{**base, **kw})


def test_a_healthy_candidate_walks_every_step_to_promotion():
    stage, seen = "shadow", []
    for _ in range(4):
        d = decide(stage, 61, healthy(), PROD, P)
        seen.append((d.action, d.stage, d.traffic))
        stage = d.stage
    assert seen == [("advance", 5, 5), ("advance", 25, 25), ("advance", 50, 50), ("promote", 100, 100)]


def test_holds_until_dwell_and_sample_size():
    assert decide(5, 30, healthy(), PROD, P).action == "hold"
    d = decide(5, 120, healthy(requests=50), PROD, P)
    assert d.action == "hold" and "50/100 requests" in d.reason and d.traffic == 5


@pytest.mark.parametrize("cand,stage,words", [
    (healthy(errors=10), 25, "error rate 5.00%"),
    (healthy(p99_ms=90), 5, "2.25x production"),
    (healthy(overlap=0.2), "shadow", "diverge"),
    (healthy(clicks=120), 25, "click-through 6.00% vs production 10.00%"),
    (healthy(conversions=10), 50, "conversion"),
])
def test_rolls_back_with_the_reason_and_numbers(cand, stage, words):
    d = decide(stage, 5, cand, PROD, P)  # at any dwell time
    assert d.action == "rollback" and d.traffic == 0 and words in d.reason
    assert d.evidence["candidate"]["requests"] == cand.requests


def test_click_through_needs_enough_impressions_and_significance():
    few = healthy(impressions=300, clicks=20)  # 6.7% but too few impressions to decide
    d = decide(25, 120, few, PROD, P)
    assert d.action == "hold" and "300/1000 impressions" in d.reason  # nor to advance
    noise = healthy(impressions=2000, clicks=190)  # 9.5% vs 10%: not significant
    assert decide(25, 120, noise, PROD, P).action == "advance"
    assert one_sided_p(100, 2000, 200, 2000) < 1e-6 < one_sided_p(200, 2000, 100, 2000)
    with pytest.raises(ValueError, match="unknown rollout stage"):
        decide(10, 0, healthy(), PROD, P)


def test_a_p99_of_a_handful_of_requests_does_not_roll_back():
    """20 shadow requests right after the candidate loaded: their p99 is their slowest one.
    The latency limit waits for min_latency_samples per arm, then applies."""
    slow = healthy(requests=20, p99_ms=1041)
    d = decide("shadow", 8, slow, PROD, P)
    assert d.action == "hold" and "p99_ratio" not in d.evidence
    assert decide("shadow", 8, healthy(requests=100, p99_ms=1041), PROD, P).action == "rollback"


def test_the_rollout_cli_takes_the_configs_policy_and_the_models_task(tmp_path, monkeypatch):
    """`shelfops rollout run` without options uses monitor.rollout from the config; options
    given win; the task is the model name's suffix unless --task says otherwise."""
    from shelfops.cli.rollout import _controller

    monkeypatch.setenv("SHELFOPS_ADMIN_TOKEN", "t")
    ov = [f"registry.home={tmp_path}", "monitor.rollout.min_requests=77", "monitor.rollout.min_latency_samples=30"]
    ctl = _controller("shop-recommend", "http://127.0.0.1:9", None, ov, None, min_dwell_s=12.0,
                      min_requests=None, min_impressions=None)
    assert ctl.task == "recommend"
    assert (ctl.policy.min_requests, ctl.policy.min_latency_samples, ctl.policy.min_dwell_s) == (77, 30, 12.0)
    assert _controller("shop-classify", "http://127.0.0.1:9", None, ov).policy.min_impressions == 0
    assert _controller("my-model", "http://127.0.0.1:9", None, ov, "classify").task == "classify"
    assert _controller("my-model", "http://127.0.0.1:9", None, ov).task == "search"


IL = _policy(min_dwell_s=60, min_requests=100, stages=("shadow", "interleave", 100), alpha=0.05,
             max_searches=5000)


def test_interleaving_step_advances_on_a_significant_preference_and_says_how_many_searches():
    stage = decide("shadow", 61, healthy(), PROD, IL)
    assert (stage.action, stage.stage, stage.traffic) == ("advance", "interleave", 0)
    won = healthy(interleaved=600, wins=260, losses=170)
    d = decide("interleave", 61, won, PROD, IL)
    assert d.action == "promote" and d.stage == 100 and "after 600 searches" in d.reason
    assert d.evidence["interleaving"]["decided"] == "better"
    assert decide("interleave", 30, won, PROD, IL).action == "hold"  # not before its dwell


def test_interleaving_step_rolls_back_a_worse_candidate_and_one_with_no_detectable_gain():
    d = decide("interleave", 5, healthy(interleaved=600, wins=170, losses=260), PROD, IL)
    assert d.action == "rollback" and "significantly worse" in d.reason
    tie = decide("interleave", 500, healthy(interleaved=5000, wins=1500, losses=1490), PROD, IL)
    assert tie.action == "rollback" and "no detectable improvement within 5000" in tie.reason
    assert decide("interleave", 500, healthy(interleaved=4000, wins=1200, losses=1190), PROD, IL).action == "hold"


def test_require_improvement_promotes_only_on_a_significant_gain():
    p = _policy(min_dwell_s=0, min_requests=100, min_impressions=1000, stages=(50, 100), require_improvement=True,
                alpha=0.05, max_searches=20_000)
    same = healthy(requests=1000, impressions=5000, clicks=500, conversions=100)
    assert decide(50, 1, same, PROD, p).action == "hold"
    better = healthy(requests=1000, impressions=5000, clicks=650, conversions=100)
    assert decide(50, 1, better, PROD, p).action == "promote"
    spent = Observed(requests=10_000, impressions=100_000, clicks=10_000)
    d = decide(50, 1, spent, Observed(requests=10_000, impressions=100_000, clicks=10_000), p)
    assert d.action == "rollback" and "no detectable improvement" in d.reason


def test_stages_are_checked():
    with pytest.raises(ValueError, match="ending with 100"):
        dataclasses.replace(P, stages=("shadow", 50))
    with pytest.raises(ValueError, match="ending with 100"):
        dataclasses.replace(P, stages=("shadow", "canary", 100))
    with pytest.raises(ValueError, match="end with 100"):  # and the config says so first
        _policy(stages=("shadow", 50))
    with pytest.raises(ValueError, match="unknown rollout stage"):
        decide("interleave", 0, healthy(), PROD, P)  # not one of the default stages
