"""The rollout decision: a pure function from what was observed to what to do next.

    shadow -> 5% -> 25% -> 50% -> 100% (promote)            the default stages
    shadow -> interleave -> 100% (promote)                   e.g. ``stages: [shadow, interleave, 100]``

At each step the candidate must stay for ``min_dwell_s`` and collect ``min_requests``
(and, in canary steps, ``min_impressions`` per arm) before it may advance; the server counts
each step's window afresh. It is rolled back at once, whatever the step, when its error rate,
its p99 latency against production's (once both arms have ``min_latency_samples`` requests:
the p99 of 20 requests is their slowest one, a cold start say), or (in shadow) its output
divergence from production break a limit, or when its click-through or conversion is lower
than production's.

Comparisons of shoppers' behaviour are read after every request, so they use always-valid
sequential tests (``eval.sequential``): their false-alarm rate stays at ``alpha`` however
often the controller looks (``ctr_test: fixed`` keeps the older two-proportion z-test, read
once per look, for comparison; it is peeking). Two steps decide on evidence of improvement,
not only on the absence of harm:

* ``interleave``: a share of searches (sticky per shopper) shows production's and the
  candidate's rankings team-drafted into one list (``eval.interleave``); clicks credit the
  ranker that contributed the item (by default only clicks on items the other ranker would not
  have shown: ``interleave_credit``). The candidate advances when it is preferred significantly
  more often, is rolled back when significantly less often, and is rolled back as "no
  detectable improvement" after ``max_searches`` interleaved searches.
* with ``require_improvement``, the last canary step promotes only when the candidate's
  click-through is significantly higher (same maximum sample).

Every decision carries its reason and the numbers behind it, for the audit history. The
reconciler that applies decisions lives elsewhere; this module does no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from shelfops.config.schema import RolloutConfig
from shelfops.eval.sequential import Verdict, difference, one_sided_p, preference

Stage = str | int
Action = Literal["hold", "advance", "promote", "rollback"]


@dataclass(frozen=True)
class Observed:
    """One arm's numbers over the current step's window."""

    requests: int = 0
    errors: int = 0
    p99_ms: float = 0.0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    overlap: float | None = None  # shadow: mean top-k overlap with production's answers
    interleaved: int = 0  # interleave: searches shown as one team-drafted list
    wins: int = 0  # ... whose clicks favoured the candidate's picks
    losses: int = 0  # ... whose clicks favoured production's


@dataclass(frozen=True)
class Policy:
    """The config's ``monitor.rollout`` (``RolloutConfig``, the one source of defaults and of what
    each setting means): build it with :func:`policy_from`."""

    min_dwell_s: float
    min_requests: int
    max_error_rate: float
    max_p99_ratio: float  # candidate p99 / production p99
    min_latency_samples: int  # per arm: a p99 of fewer requests is about their maximum
    min_shadow_overlap: float
    alpha: float
    min_impressions: int  # per arm, before a canary step may advance
    stages: tuple[Stage, ...]
    ctr_test: Literal["sequential", "fixed"]
    # the relative click-through change the canary's sequential test is tuned to find fastest
    mde_relative: float
    require_improvement: bool  # the last canary step promotes only on a significant gain
    interleave_percent: int  # shoppers (sticky) whose searches are interleaved in that step
    # which clicks credit a ranker: on items only one ranker shows ("unique"), on any ("all", classic
    # team-draft), or by which ranker ranked the clicked item higher ("rank"); eval.interleave.
    # unique: on the demo's real v1 -> v2 it needs 168 searches where all needs 4,488 (bench/RESULTS.md);
    # a candidate that only reorders the same top k is seen by all and rank, not by unique
    interleave_credit: Literal["unique", "all", "rank"]
    # the candidate's share of decided interleaved searches above one half it is tuned to find fastest
    interleave_mde: float
    max_searches: int  # a comparison that must show a gain stops here as "no difference"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))  # a config's list, say
        bad = [s for s in self.stages if s not in ("shadow", "interleave") and not (
            isinstance(s, int) and 0 < s <= 100)]
        if bad or not self.stages or self.stages[-1] != 100:
            raise ValueError(f"rollout stages must be shadow, interleave or percentages ending with 100; "
                             f"got {list(self.stages)}")


def policy_from(c: RolloutConfig) -> Policy:
    """The rollout policy of a config's ``monitor.rollout`` section, field for field."""
    return Policy(**c.model_dump())


@dataclass
class Decision:
    action: Action
    stage: Stage  # the stage after the decision
    traffic: int  # candidate's share of live traffic (%) after the decision; shadow = 0
    reason: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def traffic_of(stage: Stage) -> int:
    """The candidate's share of live traffic at ``stage`` (shadow and interleave: none of its own)."""
    return stage if isinstance(stage, int) else 0


def mode_of(stage: Stage) -> str:
    """How the server runs ``stage``: shadow, interleave or canary."""
    return stage if isinstance(stage, str) else "canary"


def decide(stage: Stage, dwell_s: float, cand: Observed, prod: Observed, policy: Policy) -> Decision:
    if stage not in policy.stages or stage == 100:
        raise ValueError(f"unknown rollout stage {stage!r}; stages are {list(policy.stages)}")
    ev: dict = {"stage": stage, "dwell_s": round(dwell_s, 1), "candidate": asdict(cand),
                "production": asdict(prod), "policy": asdict(policy)}
    nxt = policy.stages[policy.stages.index(stage) + 1]

    def rollback(why: str) -> Decision:
        return Decision("rollback", stage, 0, why, ev)

    def hold(why: str) -> Decision:
        return Decision("hold", stage, traffic_of(stage), why, ev)

    def onward(why: str) -> Decision:
        if nxt == 100:
            return Decision("promote", 100, 100, f"{why}; promoting", ev)
        return Decision("advance", nxt, traffic_of(nxt), f"{why}; advancing to {_name(nxt)}", ev)

    broken = unhealthy(stage, cand, prod, policy, ev)
    if broken:
        return rollback(broken)
    if stage == "interleave":
        return _interleave(dwell_s, cand, policy, ev, rollback, hold, onward)
    if stage != "shadow":
        harm = harmed(cand, prod, policy, ev)
        if harm:
            return rollback(harm)
    short_of_impressions = stage != "shadow" and min(cand.impressions, prod.impressions) < policy.min_impressions
    if dwell_s < policy.min_dwell_s or cand.requests < policy.min_requests or short_of_impressions:
        return hold(f"collecting: {dwell_s:.0f}/{policy.min_dwell_s:.0f} s, "
                    f"{cand.requests}/{policy.min_requests} requests"
                    + (f", {min(cand.impressions, prod.impressions)}/{policy.min_impressions} impressions "
                       "per arm" if stage != "shadow" else ""))
    if policy.require_improvement and nxt == 100 and stage != "shadow":
        return _improved(cand, prod, policy, ev, rollback, hold, onward)
    return onward(f"healthy at {_name(stage)}" + (" and every step before" if nxt == 100 else ""))


def _name(stage: Stage) -> str:
    return f"{stage}%" if isinstance(stage, int) else stage


def unhealthy(stage: Stage, cand: Observed, prod: Observed, policy: Policy, ev: dict) -> str | None:
    """Why the candidate must go whatever its shoppers think: errors, latency, divergence."""
    err = cand.errors / cand.requests if cand.requests else 0.0
    ev["candidate_error_rate"] = err
    if cand.requests and err > policy.max_error_rate:
        return f"error rate {err:.2%} > {policy.max_error_rate:.2%}"
    if prod.p99_ms > 0 and min(cand.requests, prod.requests) >= policy.min_latency_samples:
        ratio = cand.p99_ms / prod.p99_ms
        ev["p99_ratio"] = ratio
        if ratio > policy.max_p99_ratio:
            return (f"p99 {cand.p99_ms:.0f} ms is {ratio:.2f}x production's {prod.p99_ms:.0f} ms "
                    f"(limit {policy.max_p99_ratio:.2f}x)")
    if stage == "shadow" and cand.overlap is not None and cand.requests >= min(50, policy.min_requests) \
            and cand.overlap < policy.min_shadow_overlap:
        return (f"shadow answers diverge from production: top-k overlap {cand.overlap:.2f} < "
                f"{policy.min_shadow_overlap:.2f}")
    return None


def harmed(cand: Observed, prod: Observed, policy: Policy, ev: dict) -> str | None:
    """Why the candidate's shoppers are worse off (click-through or conversion lower), if they are."""
    for name, c_hits, p_hits in (("click-through", cand.clicks, prod.clicks),
                                 ("conversion", cand.conversions, prod.conversions)):
        if policy.ctr_test == "fixed":  # the per-look z-test, once both arms have enough impressions
            if min(cand.impressions, prod.impressions) < policy.min_impressions:
                continue
            p = one_sided_p(c_hits, cand.impressions, p_hits, prod.impressions)
            worse = p < policy.alpha
        else:
            v = difference(c_hits, cand.impressions, p_hits, prod.impressions, alpha=policy.alpha,
                           mde_relative=policy.mde_relative)
            p, worse = v.p_value, v.decided == "worse"
        ev[f"{name}_p"] = p
        if worse:
            return (f"{name} {c_hits / cand.impressions:.2%} vs production {p_hits / prod.impressions:.2%} is "
                    f"significantly lower (p={p:.2g} < {policy.alpha:g}"
                    + (", always-valid" if policy.ctr_test == "sequential" else "") + ")")
    return None


def _interleave(dwell_s: float, cand: Observed, policy: Policy, ev: dict, rollback, hold, onward) -> Decision:
    v: Verdict = preference(cand.wins, cand.losses, alpha=policy.alpha, mde=policy.interleave_mde)
    ev["interleaving"] = v.to_dict()
    ties = cand.interleaved - cand.wins - cand.losses
    said = (f"candidate preferred in {cand.wins} and production in {cand.losses} of {cand.interleaved} "
            f"interleaved searches ({ties} ties; p={v.p_value:.2g}, always-valid)")
    if v.decided == "worse":
        return rollback(f"{said}: significantly worse")
    if v.decided == "better" and dwell_s >= policy.min_dwell_s:
        return onward(f"{said}: significantly better after {cand.interleaved} searches")
    if cand.interleaved >= policy.max_searches:
        return rollback(f"{said}: no detectable improvement within {policy.max_searches} searches")
    return hold(f"interleaving: {said}; dwell {dwell_s:.0f}/{policy.min_dwell_s:.0f} s")


def _improved(cand: Observed, prod: Observed, policy: Policy, ev: dict, rollback, hold, onward) -> Decision:
    v = difference(cand.clicks, cand.impressions, prod.clicks, prod.impressions, alpha=policy.alpha,
                   mde_relative=policy.mde_relative)
    ev["improvement"] = v.to_dict()
    searches = cand.requests + prod.requests
    said = (f"click-through {cand.clicks / max(1, cand.impressions):.2%} vs production "
            f"{prod.clicks / max(1, prod.impressions):.2%} over {searches} searches (p={v.p_value:.2g}, always-valid)")
    if v.decided == "better":
        return onward(f"{said}: significantly higher")
    if searches >= policy.max_searches:
        return rollback(f"{said}: no detectable improvement within {policy.max_searches} searches")
    return hold(f"waiting for a significant gain: {said}")
