"""Rollouts simulated by the thousand: candidates of known true quality, decided by the real
rollout policy (``monitor.rollout.decide``), so each method's error rates and cost are measured,
not argued.

The shoppers are the synthetic shop's (its hidden truth): a search is a shopper and a query
drawn as the replay draws them, its candidates the ``m`` items most relevant to the query, and
each item's attractiveness to that shopper (relevance, taste, trend) what they click on when
they look at it (``ShopTruth.click_probability``: examination by position x attractiveness).

A ranker here is the truth seen through noise: it orders a search's candidates by the logit of
their attractiveness plus ``sigma`` x N(0, 1) noise, drawn afresh for each search. Production
has a fixed ``sigma``; a candidate's is calibrated so that its expected clicks per search are
``1 + lift`` times production's over the same searches (``calibrate``), which is the "true
lift" of the experiments. Searches are played in blocks (``look_every`` per run) and the
policy looks after each block, as the controller does after each tick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shelfops.eval.interleave import credit, credited, team_draft
from shelfops.monitor.rollout import Observed, Policy, decide
from shelfops.sim.shop.truth import ShopTruth, affinity_of, relevance_of


@dataclass(frozen=True)
class Searches:
    """The shop's population of searches: per search, its candidates' click appeal."""

    attract: np.ndarray  # (n, m) P(click | examined) of each candidate
    exam: np.ndarray  # (k,) P(examined) at positions 1..k

    @property
    def signal(self) -> np.ndarray:
        a = np.clip(self.attract, 1e-6, 1 - 1e-6)
        return np.log(a / (1 - a))


def searches(truth: ShopTruth, n: int, *, day: int, m: int = 30, k: int = 10, seed: int = 0) -> Searches:
    """``n`` searches as the shop's shoppers make them on ``day``, each with the ``m`` candidates
    most relevant to its query (what a retriever brings; unknown to the rankers: they see appeal)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(truth.cat))
    trend = truth.trend(idx, day)
    out = np.zeros((n, m))
    parsed: dict[str, object] = {}
    for s in range(n):
        user = truth.sample_user(rng, day)
        u = truth.user_index(user)
        pref = truth.users.leaf_pref[[u]] if u >= 0 else truth.pop_leaf[None, :]
        query = truth.bank.text[int(truth.pick_queries(rng, truth.pick_leaves(rng, pref, day))[0])]
        q = parsed.setdefault(query, truth.parse(query))
        grade = relevance_of(q, truth.vocab, truth.cat, idx, truth.params)
        top = np.argsort(-(grade + 1e-3 * rng.random(len(idx))), kind="stable")[:m]
        aff = affinity_of(truth.users, truth.cat, np.full(m, u), top)
        out[s] = truth.attractiveness(grade[top], aff, trend[top])
    return Searches(out, truth.examination(np.arange(1, k + 1)))


def ranked(pop: Searches, which: np.ndarray, sigma: np.ndarray | float, rng: np.random.Generator,
           noise: np.ndarray | None = None) -> np.ndarray:
    """Each search's top k candidates (indices), as a ranker with noise ``sigma`` orders them
    (``noise``: its standard normal draws, when the caller correlates two rankers)."""
    k = len(pop.exam)
    sig = pop.signal[which]
    noise = rng.standard_normal(sig.shape) if noise is None else noise
    noisy = sig + np.asarray(sigma, float)[..., None] * noise
    top = np.argpartition(-noisy, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(noisy, top, -1), axis=-1, kind="stable")
    return np.take_along_axis(top, order, -1)


def expected_clicks(pop: Searches, sigma: float, *, reps: int = 4, seed: int = 1) -> float:
    """Mean expected clicks per search of a ranker with noise ``sigma`` over the population."""
    rng = np.random.default_rng(seed)
    which = np.tile(np.arange(len(pop.attract)), reps)
    top = ranked(pop, which, np.full(len(which), sigma), rng)
    return float((np.take_along_axis(pop.attract[which], top, -1) * pop.exam).sum(-1).mean())


def calibrate(pop: Searches, production_sigma: float, lift: float) -> float:
    """The candidate noise whose expected clicks are ``1 + lift`` times production's."""
    base = expected_clicks(pop, production_sigma)
    goal = base * (1 + lift)
    if goal > expected_clicks(pop, 0.0):
        raise ValueError(f"a lift of {lift:+.0%} is beyond a perfect ranker over these searches")
    lo, hi = 0.0, production_sigma
    while expected_clicks(pop, hi) > goal:
        lo, hi = hi, hi * 2
    for _ in range(40):  # expected clicks fall as the noise grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_clicks(pop, mid) > goal else (lo, mid)
    return (lo + hi) / 2


@dataclass
class Runs:
    """The outcome of ``n`` simulated rollouts of one candidate under one policy."""

    action: list[str] = field(default_factory=list)  # promote | rollback | undecided
    searches: list[int] = field(default_factory=list)  # shop searches until the decision
    reason: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        s = np.asarray(self.searches)
        n = len(s)
        share = {a: sum(x == a for x in self.action) / n for a in ("promote", "rollback", "undecided")}
        return {"runs": n, "promoted": share["promote"], "rolled_back": share["rollback"],
                "undecided": share["undecided"], "searches_mean": float(s.mean()),
                "searches_median": float(np.median(s)), "searches_p90": float(np.percentile(s, 90))}


def simulate(pop: Searches, policy: Policy, production_sigma: float, candidate_sigma: float, *,
             runs: int = 200, look_every: int = 100, cap: int = 400_000, seed: int = 0, agreement: float = 0.0,
             on_look: Callable[[int], None] | None = None) -> Runs:
    """``runs`` rollouts from the policy's first stage past shadow to its decision (or ``cap``
    searches: undecided). All runs advance together, one block of searches per look. In
    interleaving the two rankers' noise has correlation ``agreement`` (see :func:`overlap`)."""
    rng = np.random.default_rng(seed)
    stages = [s for s in policy.stages if s != "shadow"]
    at = np.zeros(runs, int)  # stage index per run
    cand = [_Arm() for _ in range(runs)]
    prod = [_Arm() for _ in range(runs)]
    total = np.zeros(runs, int)
    out = Runs(["undecided"] * runs, [cap] * runs, [""] * runs)
    live = np.ones(runs, bool)
    while live.any():
        ids = np.flatnonzero(live)
        which = rng.integers(0, len(pop.attract), (len(ids), look_every))
        if stages[0] == "interleave" and all(stages[at[i]] == "interleave" for i in ids):
            _interleaved(pop, which, production_sigma, candidate_sigma, rng, [cand[i] for i in ids], agreement,
                         policy.interleave_credit)
        else:
            share = np.asarray([stages[at[i]] for i in ids], float) / 100
            _split(pop, which, share, production_sigma, candidate_sigma, rng,
                   [cand[i] for i in ids], [prod[i] for i in ids])
        total[ids] += look_every
        for i in ids:
            d = decide(stages[at[i]], 1e9, cand[i].observed(), prod[i].observed(), policy)
            if d.action in ("promote", "rollback"):
                live[i] = False
                out.action[i], out.searches[i], out.reason[i] = d.action, int(total[i]), d.reason
            elif d.action == "advance":
                at[i] = stages.index(d.stage)
                cand[i], prod[i] = _Arm(), _Arm()
            elif total[i] >= cap:
                live[i] = False
        if on_look is not None:
            on_look(len(ids))
    return out


@dataclass
class _Arm:
    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    interleaved: int = 0
    wins: int = 0
    losses: int = 0

    def observed(self) -> Observed:
        return Observed(requests=self.requests, p99_ms=10.0, impressions=self.impressions, clicks=self.clicks,
                        interleaved=self.interleaved, wins=self.wins, losses=self.losses)


def _clicks(pop: Searches, which: np.ndarray, shown: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = np.take_along_axis(pop.attract[which], np.maximum(shown, 0), -1) * pop.exam * (shown >= 0)
    return rng.random(p.shape) < p


def _split(pop, which, share, ps, cs, rng, cand: list[_Arm], prod: list[_Arm]) -> None:
    """A/B: each search goes to the candidate with the run's canary share."""
    to_cand = rng.random(which.shape) < share[:, None]
    top = ranked(pop, which, np.where(to_cand, cs, ps), rng)
    clicks = _clicks(pop, which, top, rng).sum(-1)
    k = top.shape[-1]
    for r in range(len(cand)):
        nc = int(to_cand[r].sum())
        cand[r].requests += nc
        cand[r].impressions += nc * k
        cand[r].clicks += int(clicks[r][to_cand[r]].sum())
        prod[r].requests += which.shape[1] - nc
        prod[r].impressions += (which.shape[1] - nc) * k
        prod[r].clicks += int(clicks[r][~to_cand[r]].sum())


def _interleaved(pop, which, ps, cs, rng, cand: list[_Arm], agreement: float, credit_mode: str) -> None:
    """Interleaving: every search shows both rankers' team-drafted list; their noise is
    correlated by ``agreement`` (a retrained model makes many of its predecessor's mistakes)."""
    n, b = which.shape
    flat = which.reshape(-1)
    shape = (len(flat), pop.attract.shape[1])
    e_p, e_own = rng.standard_normal(shape), rng.standard_normal(shape)
    e_c = agreement * e_p + np.sqrt(1 - agreement ** 2) * e_own
    a = ranked(pop, flat, np.full(len(flat), ps), rng, e_p)
    c = ranked(pop, flat, np.full(len(flat), cs), rng, e_c)
    d = team_draft(a, c, a.shape[1], rng)
    won, lost = credit(credited(d, a, c, a.shape[1], credit_mode), _clicks(pop, flat, d.items, rng))
    won, lost = won.reshape(n, b), lost.reshape(n, b)
    for r in range(n):
        cand[r].requests += b
        cand[r].interleaved += b
        cand[r].wins += int((won[r] > lost[r]).sum())
        cand[r].losses += int((lost[r] > won[r]).sum())


def overlap(pop: Searches, production_sigma: float, candidate_sigma: float, agreement: float,
            n: int = 20_000, seed: int = 3) -> float:
    """Mean top-k overlap of the two rankers on the same searches: what a shadow step measures
    between production and a candidate, so ``agreement`` can be read off a real rollout."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(pop.attract), n)
    shape = (n, pop.attract.shape[1])
    e_p = rng.standard_normal(shape)
    e_c = agreement * e_p + np.sqrt(1 - agreement ** 2) * rng.standard_normal(shape)
    a = ranked(pop, which, np.full(n, production_sigma), rng, e_p)
    c = ranked(pop, which, np.full(n, candidate_sigma), rng, e_c)
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, c)]))


def clicks_of(pop: Searches, sigma: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Clicks of ``n`` searches served by one ranker with noise ``sigma``."""
    which = rng.integers(0, len(pop.attract), n)
    return _clicks(pop, which, ranked(pop, which, np.full(n, sigma), rng), rng).sum(-1)


def clicks_per_search(pop: Searches, sigma: float, n: int = 200_000, seed: int = 2) -> tuple[float, float]:
    """Mean and variance of clicks per search of one ranker (for the fixed-horizon A/B size)."""
    c = clicks_of(pop, sigma, n, np.random.default_rng(seed))
    return float(c.mean()), float(c.var())
