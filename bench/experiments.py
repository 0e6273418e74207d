"""How many searches a rollout needs to decide, and how often it decides wrongly: today's canary
against a sequential A/B test and interleaving with a sequential test, over hundreds of
simulated rollouts of candidates whose true lift is known (issue 22).

    .venv/bin/python bench/experiments.py                 # 200 rollouts per method and lift
    .venv/bin/python bench/experiments.py --runs 50       # a quick look

The shoppers and their clicks are the synthetic shop's hidden truth (configs/synthetic.yaml,
day drift_day + 3, as the demo's drifted shoppers); the rankers are that truth seen through
noise, the candidate's calibrated to a true lift in expected clicks per search
(shelfops.sim.rollouts). Each rollout is decided by the real policy function
(shelfops.monitor.rollout.decide), looked at after every block of searches:

* today: canary 5% -> 25% -> 50% -> promote, each step 500 candidate requests and 500
  impressions per arm, the per-look two-proportion z-test at alpha 0.01 (the default policy
  before this change); it promotes whatever it cannot prove harmful;
* sequential A/B: 50/50 split, always-valid test on click-through, promote only on a
  significant gain (``require_improvement``), stop as "no difference" after --ab-max searches;
* interleaving: every search team-drafted from both rankers, always-valid test on wins vs
  losses, stop as "no difference" after --interleave-max searches; clicks credit a ranker only
  on items the other would not show in its top 10 (the default, ``interleave_credit: unique``),
  on any item (``all``, classic team-draft), or for the ranker that ranked the clicked item higher
  (``rank``). This simulation's candidates differ from production only in how they order the
  same candidates; bench/interleave_shop.py measures the demo's real v1 and v2, whose difference
  is what each can surface.

Then a fixed-horizon A/B test (one look, two-sided z-test on clicks per search at --alpha) is
sized to reach interleaving's measured power at +5%, and checked by simulation: the searches
"today's A/B procedure" would need for the same decision. Writes bench/results/experiments.json
and experiments.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from shelfops.config.load import load_config
from shelfops.config.schema import RolloutConfig
from shelfops.monitor.rollout import Policy, policy_from
from shelfops.sim import rollouts as sim
from shelfops.sim.shop.generate import shop_truth

ROOT = Path(__file__).resolve().parents[1]
LIFTS = (-0.05, 0.0, 0.02, 0.05, 0.10, 0.25)


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200, help="simulated rollouts per method and lift")
    p.add_argument("--searches", type=int, default=3000, help="the population of distinct searches")
    p.add_argument("--production-sigma", type=float, default=3.0,
                   help="production's ranking noise (logit units): a perfect ranker is +38%% over it")
    p.add_argument("--agreement", type=float, default=0.9,
                   help="correlation of the two rankers' noise in interleaving (0.9: top-10 overlap ~0.8)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--ab-max", type=int, default=100_000)
    p.add_argument("--interleave-max", type=int, default=20_000)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "experiments.json")
    return p.parse_args()


def methods(a: argparse.Namespace) -> dict[str, tuple[Policy, int]]:
    """Each method's policy and how many searches pass between two looks."""
    def policy(**kw) -> Policy:  # the config's rollout policy, but for kw
        return policy_from(RolloutConfig(**kw))

    return {
        "today (canary 5/25/50%, z-test per look)": (policy(stages=(5, 25, 50, 100), ctr_test="fixed", min_dwell_s=0), 500),
        "sequential A/B (50/50)": (policy(stages=(50, 100), require_improvement=True, min_dwell_s=0, alpha=a.alpha,
                                          max_searches=a.ab_max), 500),
        "interleaving + sequential": (policy(stages=("interleave", 100), min_dwell_s=0, alpha=a.alpha,
                                             max_searches=a.interleave_max), 100),
        "interleaving (all clicks) + sequential": (policy(stages=("interleave", 100), min_dwell_s=0, alpha=a.alpha,
                                                          max_searches=a.interleave_max, interleave_credit="all"), 100),
        "interleaving (rank credit) + sequential": (policy(stages=("interleave", 100), min_dwell_s=0, alpha=a.alpha,
                                                           max_searches=a.interleave_max, interleave_credit="rank"), 100),
    }


def fixed_ab(pop: sim.Searches, ps: float, cs: float, power: float, alpha: float, runs: int, seed: int = 9) -> dict:
    """The fixed-horizon A/B test that reaches ``power``: its size (normal approximation on
    clicks per search), and its power measured over ``runs`` simulated tests of that size."""
    m0, v0 = sim.clicks_per_search(pop, ps)
    m1, v1 = sim.clicks_per_search(pop, cs)
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    per_arm = int(np.ceil(z * z * (v0 + v1) / (m1 - m0) ** 2))
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(runs):
        a = sim.clicks_of(pop, ps, per_arm, rng)
        b = sim.clicks_of(pop, cs, per_arm, rng)
        t = (b.mean() - a.mean()) / np.sqrt(a.var() / per_arm + b.var() / per_arm)
        hits += t > norm.ppf(1 - alpha / 2)
    return {"per_arm": per_arm, "searches": 2 * per_arm, "target_power": power, "measured_power": hits / runs,
            "clicks_per_search": {"production": [m0, v0], "candidate": [m1, v1]}}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == name]
        x = [100 * r["lift"] for r in rs]
        ax1.plot(x, [r["searches_median"] for r in rs], marker="o", label=name)
        ax2.plot(x, [r["promoted"] for r in rs], marker="o", label=name)
    ax1.set(yscale="log", xlabel="true lift in expected clicks per search (%)", ylabel="searches to a decision (median)",
            title="searches to decide")
    ax2.set(xlabel="true lift (%)", ylabel="share of rollouts that promoted", title="promotions", ylim=(-0.02, 1.02))
    ax2.axhline(0.05, color="grey", lw=0.8, ls="--")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    a = args()
    from rich.progress import Progress

    sys.path.insert(0, str(ROOT / "bench"))
    from demo_time import cpu

    cfg = load_config(ROOT / "configs" / "synthetic.yaml")
    syn = cfg.data.synthetic
    truth = shop_truth(**syn.model_dump())
    day = (syn.drift_day or 0) + 3
    t0 = time.perf_counter()
    pop = sim.searches(truth, a.searches, day=day, seed=0)
    ps = a.production_sigma
    sigmas = {lift: sim.calibrate(pop, ps, lift) for lift in LIFTS}
    rows, plan = [], methods(a)
    with Progress() as bar:
        task = bar.add_task("simulated rollouts", total=len(plan) * len(LIFTS))
        for name, (policy, look) in plan.items():
            for lift in LIFTS:
                runs = sim.simulate(pop, policy, ps, sigmas[lift], runs=a.runs, look_every=look,
                                    agreement=a.agreement, seed=int(1000 * (lift + 1)))
                rows.append({"method": name, "lift": lift, "look_every": look, **runs.summary(),
                             "reasons": sorted(set(r.split(":")[-1].strip() for r in runs.reason))[:4]})
                bar.advance(task)
    inter = next(r for r in rows if r["method"] == "interleaving + sequential" and r["lift"] == 0.05)
    fixed = fixed_ab(pop, ps, sigmas[0.05], min(max(inter["promoted"], 0.5), 0.99), a.alpha, a.runs)
    today = next(r for r in rows if r["method"].startswith("today") and r["lift"] == 0.05)
    out = {
        "machine": cpu(), "date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t0, 1),
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "day": day,
                     "candidate_sigma": sigmas, "top10_overlap": sim.overlap(pop, ps, sigmas[0.05], a.agreement)},
        "rows": rows, "fixed_ab_at_interleaving_power": fixed,
        "ratios": {"fixed_ab_searches_over_interleaving_mean": fixed["searches"] / inter["searches_mean"],
                   "today_searches_over_interleaving_mean": today["searches_mean"] / inter["searches_mean"]},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, default=str))
    plot(rows, a.out.with_suffix(".png"))
    print(f"{'method':44} {'lift':>6} {'promoted':>9} {'rolled back':>11} {'undecided':>9} {'searches med':>12} "
          f"{'mean':>8}")
    for r in rows:
        print(f"{r['method']:44} {r['lift']:+6.0%} {r['promoted']:9.1%} {r['rolled_back']:11.1%} "
              f"{r['undecided']:9.1%} {r['searches_median']:12.0f} {r['searches_mean']:8.0f}")
    print(f"fixed-horizon A/B at interleaving's power at +5% ({fixed['target_power']:.0%}): {fixed['searches']} "
          f"searches (measured power {fixed['measured_power']:.1%}); interleaving's mean {inter['searches_mean']:.0f}: "
          f"{out['ratios']['fixed_ab_searches_over_interleaving_mean']:.1f}x fewer; today's canary "
          f"{today['searches_mean']:.0f}: {out['ratios']['today_searches_over_interleaving_mean']:.1f}x")
    print(f"top-10 overlap of production and the +5% candidate: {out['settings']['top10_overlap']:.2f}; "
          f"{out['seconds']:.0f} s; wrote {a.out} and {a.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
