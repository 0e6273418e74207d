"""Always-valid sequential tests: a comparison that may be looked at after every request and
stopped the moment it is convincing, with its false-alarm rate still at most ``alpha``.

A fixed-sample test (a z-test read once, at a sample size chosen in advance) loses its meaning
when a controller reads it again and again and acts on the first small p-value: that is
peeking, and its real error rate grows with every look. Both tests here are mixture
sequential probability ratio tests (mSPRT; Robbins 1970, Johari, Pekelis & Walsh, "Always valid
inference", 2017): the likelihood ratio of "some effect, drawn from a mixing prior centred on
no effect" against "no effect" is a non-negative martingale under no effect, so by Ville's
inequality the chance it EVER reaches ``1 / alpha`` is at most ``alpha``, however often it is
read. ``p_value = min(1, 1 / ratio)`` at the current look.

* :func:`preference`: interleaving's wins against losses (ties say nothing): under no effect
  each decided search is a fair coin; the mixing prior is Beta(a, a) on the win share, its
  spread set by the minimum detectable effect. The ratio is exact (Beta-binomial).
* :func:`difference`: two arms' click-through (hits / trials per arm): the normal mixture of
  Johari et al. on the difference of rates, its prior's spread the minimum detectable relative
  lift times the pooled rate.

The mixing prior's spread is the effect the test is tuned to find fastest. A single spread
tuned to a small effect is slow to see a large one early (its ratio needs many samples before
the data can outweigh the prior), so each test averages the ratios of three spreads, the
minimum detectable effect times 1, 4 and 16 (an average of martingales is one): a large harm
is caught within a few hundred impressions, a small gain in the thousands, and the threshold
is unchanged. A maximum sample, after which a
comparison stops as "no difference", belongs to the caller (``monitor.rollout``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Direction = Literal["better", "worse"]


@dataclass(frozen=True)
class Verdict:
    decided: Direction | None  # None: not (yet) convincing
    ratio: float  # the mixture likelihood ratio (>= 1 / alpha decides)
    p_value: float  # always-valid at this look: min(1, 1 / ratio)
    estimate: float  # preference: the candidate's share of decided searches; difference: rate_c - rate_p
    n: int  # decided searches (preference) or trials in both arms (difference)

    def to_dict(self) -> dict:
        return {"decided": self.decided, "ratio": self.ratio, "p_value": self.p_value,
                "estimate": self.estimate, "n": self.n}


SPREADS = (1.0, 4.0, 16.0)  # the mixing prior's spreads, as multiples of the minimum detectable effect


def _mean_log(logs: list[float]) -> float:
    """log(mean(exp(logs))), without overflow."""
    m = max(logs)
    return m + math.log(sum(math.exp(x - m) for x in logs) / len(logs))


def _verdict(log_ratio: float, alpha: float, estimate: float, sign: float, n: int) -> Verdict:
    ratio = math.exp(min(log_ratio, 700.0))
    decided: Direction | None = None
    if log_ratio >= math.log(1.0 / alpha) and sign != 0:
        decided = "better" if sign > 0 else "worse"
    return Verdict(decided, ratio, min(1.0, 1.0 / ratio) if ratio > 0 else 1.0, estimate, n)


def beta_prior(mde: float) -> float:
    """The Beta(a, a) prior whose standard deviation is ``mde`` (a win share of 0.5 + mde is
    the effect it finds fastest): sd = 0.5 / sqrt(2a + 1)."""
    if not 0 < mde < 0.5:
        raise ValueError(f"mde must be in (0, 0.5), got {mde}")
    return max(((0.5 / mde) ** 2 - 1.0) / 2.0, 1e-3)


def preference(wins: int, losses: int, *, alpha: float = 0.05, mde: float = 0.05) -> Verdict:
    """Is the candidate preferred (interleaving wins) more or less often than production?"""
    n = wins + losses
    logs = []
    for spread in SPREADS:
        a = beta_prior(min(mde * spread, 0.45))
        logs.append(math.lgamma(wins + a) + math.lgamma(losses + a) - math.lgamma(n + 2 * a)
                    - (2 * math.lgamma(a) - math.lgamma(2 * a)) + n * math.log(2.0))
    log_ratio = _mean_log(logs)
    return _verdict(log_ratio, alpha, wins / n if n else 0.5, wins - losses, n)


def difference(cand_hits: int, cand_n: int, prod_hits: int, prod_n: int, *, alpha: float = 0.05,
               mde_relative: float = 0.05) -> Verdict:
    """Is the candidate's rate (hits / trials) higher or lower than production's?"""
    n = cand_n + prod_n
    if cand_n == 0 or prod_n == 0:
        return Verdict(None, 1.0, 1.0, 0.0, n)
    rc, rp = cand_hits / cand_n, prod_hits / prod_n
    pooled = (cand_hits + prod_hits) / n
    var = pooled * (1 - pooled) * (1 / cand_n + 1 / prod_n)  # of rc - rp, under no effect
    if var <= 0:
        return Verdict(None, 1.0, 1.0, rc - rp, n)
    d = rc - rp
    logs = []
    for spread in SPREADS:
        tau2 = (spread * mde_relative * max(pooled, 1e-9)) ** 2
        logs.append(0.5 * math.log(var / (var + tau2)) + d * d * tau2 / (2 * var * (var + tau2)))
    log_ratio = _mean_log(logs)
    return _verdict(log_ratio, alpha, d, d, n)


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
