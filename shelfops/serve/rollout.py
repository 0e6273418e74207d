"""The rollout decision: a pure function from what was observed to what to do next.

    shadow -> 5% -> 25% -> 50% -> 100% (promote)

At each step the candidate must stay for ``min_dwell_s`` and collect ``min_requests``
(and, in canary steps, ``min_impressions`` per arm, so the click-through test has had its
chance) before it may advance; the server counts each step's window afresh. It is rolled
back at once, whatever the step, when its error rate, its p99 latency against production's
(once both arms have ``min_latency_samples`` requests: the p99 of 20 requests is their
slowest one, a cold start say), or (in shadow) its output divergence from production
break a limit, or when its click-through or conversion is significantly lower than
production's (one-sided two-proportion z-test at ``alpha``, once both arms have enough
impressions). Every decision carries its reason and the numbers behind it, for the audit
history. The reconciler that applies decisions lives elsewhere; this module does no I/O.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

STAGES: tuple[str | int, ...] = ("shadow", 5, 25, 50, 100)
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


@dataclass(frozen=True)
class Policy:
    min_dwell_s: float = 300.0
    min_requests: int = 500
    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5  # candidate p99 / production p99
    min_latency_samples: int = 100  # per arm: a p99 of fewer requests is about their maximum
    min_shadow_overlap: float = 0.5
    alpha: float = 0.01
    min_impressions: int = 500  # per arm, before the click-through test may decide


@dataclass
class Decision:
    action: Action
    stage: str | int  # the stage after the decision
    traffic: int  # candidate's share of live traffic (%) after the decision; shadow = 0
    reason: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def one_sided_p(cand_hits: int, cand_n: int, prod_hits: int, prod_n: int) -> float:
    """P-value that the candidate's rate is lower than production's (two-proportion z-test)."""
    if cand_n == 0 or prod_n == 0:
        return 1.0
    p1, p2 = cand_hits / cand_n, prod_hits / prod_n
    pool = (cand_hits + prod_hits) / (cand_n + prod_n)
    se = math.sqrt(pool * (1 - pool) * (1 / cand_n + 1 / prod_n))
    if se == 0:
        return 1.0
    z = (p1 - p2) / se
    return 0.5 * math.erfc(-z / math.sqrt(2))  # P(Z <= z)


def traffic_of(stage: str | int) -> int:
    return 0 if stage == "shadow" else int(stage)


def decide(stage: str | int, dwell_s: float, cand: Observed, prod: Observed, policy: Policy = Policy()
           ) -> Decision:
    if stage not in STAGES:
        raise ValueError(f"unknown rollout stage {stage!r}; stages are {STAGES}")
    ev: dict = {"stage": stage, "dwell_s": round(dwell_s, 1), "candidate": asdict(cand),
                "production": asdict(prod), "policy": asdict(policy)}

    def rollback(why: str, **more) -> Decision:
        return Decision("rollback", stage, 0, why, {**ev, **more})

    err = cand.errors / cand.requests if cand.requests else 0.0
    ev["candidate_error_rate"] = err
    if cand.requests and err > policy.max_error_rate:
        return rollback(f"error rate {err:.2%} > {policy.max_error_rate:.2%}")
    if prod.p99_ms > 0 and min(cand.requests, prod.requests) >= policy.min_latency_samples:
        ratio = cand.p99_ms / prod.p99_ms
        ev["p99_ratio"] = ratio
        if ratio > policy.max_p99_ratio:
            return rollback(f"p99 {cand.p99_ms:.0f} ms is {ratio:.2f}x production's {prod.p99_ms:.0f} ms "
                            f"(limit {policy.max_p99_ratio:.2f}x)")
    if stage == "shadow" and cand.overlap is not None and cand.requests >= min(50, policy.min_requests) \
            and cand.overlap < policy.min_shadow_overlap:
        return rollback(f"shadow answers diverge from production: top-k overlap {cand.overlap:.2f} < "
                        f"{policy.min_shadow_overlap:.2f}")
    if stage != "shadow" and min(cand.impressions, prod.impressions) >= policy.min_impressions:
        for name, c_hits, p_hits in (("click-through", cand.clicks, prod.clicks),
                                     ("conversion", cand.conversions, prod.conversions)):
            p = one_sided_p(c_hits, cand.impressions, p_hits, prod.impressions)
            ev[f"{name}_p"] = p
            if p < policy.alpha:
                return rollback(f"{name} {c_hits / cand.impressions:.2%} vs production "
                                f"{p_hits / prod.impressions:.2%} is significantly lower (p={p:.2g} < "
                                f"{policy.alpha:g})", **{f"{name}_p": p})
    short_of_impressions = stage != "shadow" and min(cand.impressions, prod.impressions) < policy.min_impressions
    if dwell_s < policy.min_dwell_s or cand.requests < policy.min_requests or short_of_impressions:
        return Decision("hold", stage, traffic_of(stage),
                        f"collecting: {dwell_s:.0f}/{policy.min_dwell_s:.0f} s, "
                        f"{cand.requests}/{policy.min_requests} requests"
                        + (f", {min(cand.impressions, prod.impressions)}/{policy.min_impressions} impressions "
                           "per arm" if stage != "shadow" else ""), ev)
    nxt = STAGES[STAGES.index(stage) + 1]
    if nxt == 100:
        return Decision("promote", nxt, 100, f"healthy at every step; promoting after {stage}%", ev)
    return Decision("advance", nxt, traffic_of(nxt), f"healthy at {stage}"
                    + ("" if stage == "shadow" else "%") + f"; advancing to {nxt}%", ev)
