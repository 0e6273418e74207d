"""The demo's own v1 and v2, compared the three ways a rollout can compare them: how many
searches each needs, measured with the shop's hidden truth (issue 22).

    make demo    # or: shelfops demo --workdir runs/demo
    .venv/bin/python bench/interleave_shop.py --workdir runs/demo

Both versions are served (each as production of its own server, over loopback HTTP) and asked
the same drifted searches (shoppers and queries of day drift_day + 3, as the demo replays them).
The truth gives every shown item's click probability, so the true lift is exact (expected clicks
per search, paired), and clicks are drawn --draws times per search to measure each statistic's
effect per search (mean / sd): an A/B test on clicks per search, team-draft interleaving
crediting every click (``all``), and crediting only clicks on items one ranker alone shows
(``unique``, the default). Searches needed = (2.8 / effect)^2 per statistic (a fixed-sample
test at 5% two-sided with 80% power; A/B counts both arms). Writes
bench/results/interleave_shop.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from shelfops.config.load import load_config
from shelfops.config.schema import ServeConfig
from shelfops.eval.interleave import CREDIT_RULES, credit, credited, team_draft
from shelfops.registry.registry import Registry
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.server import start_in_thread
from shelfops.sim.shop.truth import ShopTruth

ROOT = Path(__file__).resolve().parents[1]


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "demo")
    p.add_argument("--name", default="synthetic-shop-search")
    p.add_argument("--versions", nargs=2, default=["1", "2"], metavar=("PRODUCTION", "CANDIDATE"))
    p.add_argument("--searches", type=int, default=400)
    p.add_argument("--draws", type=int, default=20, help="click draws per search")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "interleave_shop.json")
    return p.parse_args()


def serve(reg: Registry, name: str, version: str, catalogue: Path, depth: int):
    s = start_in_thread(create_app(ServeSettings(models={"search": (reg.load(name, version), version)},
                                                 data_dir=catalogue, serve=ServeConfig(rerank_depth=depth))))
    c = httpx.Client(base_url=s.url, timeout=60)
    for _ in range(600):  # ready, and the dense side too (search is lexical alone until it is)
        r = c.get("/readyz")
        if r.status_code == 200 and not r.json()["dense"].startswith(("untuned encoder: embedding", "no catalogue")):
            break
        time.sleep(0.5)
    return s, c


def main() -> int:
    a = args()
    sys.path.insert(0, str(ROOT / "bench"))
    from demo_time import cpu

    cfg = load_config(ROOT / "configs" / "synthetic.yaml")
    day = (cfg.data.synthetic.drift_day or 0) + 3
    truth = ShopTruth.load(a.workdir / "shop")
    reg = Registry(home=a.workdir / "registry")
    servers = [serve(reg, a.name, v, a.workdir / "catalogue", cfg.serve.rerank_depth or 20) for v in a.versions]
    rng = np.random.default_rng(0)
    searches = []
    try:
        for _ in range(a.searches):
            user = truth.sample_user(rng, day)
            u = truth.user_index(user)
            pref = truth.users.leaf_pref[[u]] if u >= 0 else truth.pop_leaf[None, :]
            q = truth.bank.text[int(truth.pick_queries(rng, truth.pick_leaves(rng, pref, day))[0])]
            lists = [[it["item_id"] for it in c.post("/v1/search", json={"query": q, "k": 10}).json()["items"]]
                     for _, c in servers]
            searches.append((user, q, lists))
    finally:
        for s, _ in servers:
            s.stop()

    def p_click(user, q, ids):
        return truth.click_probability(user, q, ids, np.arange(1, len(ids) + 1), day) if ids else np.zeros(0)

    expected = np.array([[p_click(u, q, lst).sum() for lst in lists] for u, q, lists in searches])
    stat: dict[str, list[float]] = {**{m: [] for m in CREDIT_RULES}, "ab_production": [], "ab_candidate": []}
    for _ in range(a.draws):
        for user, q, (pa, pb) in searches:
            ids = list(dict.fromkeys(pa + pb))
            at = {x: i for i, x in enumerate(ids)}
            rank = [np.array([[at[x] for x in r]]) for r in (pa, pb)]
            d = team_draft(rank[0], rank[1], 10, rng)
            shown = [ids[i] for i in d.items[0] if i >= 0]
            clicked = rng.random(len(shown)) < p_click(user, q, shown)
            for mode in CREDIT_RULES:
                c, p = credit(credited(d, rank[0], rank[1], 10, mode)[:, :len(shown)], clicked[None, :])
                stat[mode].append(float(np.sign(int(c[0]) - int(p[0]))))
            for key, lst in (("ab_production", pa), ("ab_candidate", pb)):
                stat[key].append(float((rng.random(len(lst)) < p_click(user, q, lst)).sum()))
    out = {"machine": cpu(), "date": time.strftime("%Y-%m-%d"), "workdir": str(a.workdir), "day": day,
           "versions": a.versions, "searches": a.searches, "draws": a.draws,
           "expected_clicks_per_search": expected.mean(0).tolist(),
           "true_lift": float(expected[:, 1].mean() / expected[:, 0].mean() - 1),
           "paired_diff_ci95": [float(x) for x in (expected[:, 1] - expected[:, 0]).mean()
                                + np.array([-1.96, 1.96]) * (expected[:, 1] - expected[:, 0]).std() / np.sqrt(a.searches)],
           "identical_lists": float(np.mean([x == y for _, _, (x, y) in searches])),
           "methods": {}}
    for mode in CREDIT_RULES:
        x = np.asarray(stat[mode])
        eff = float(x.mean() / x.std())
        out["methods"][f"interleaving ({mode})"] = {"win_share": float((x > 0).sum() / max(1, (x != 0).sum())),
                                                    "decided_share": float((x != 0).mean()), "effect": eff,
                                                    "searches": (2.8 / eff) ** 2 if eff > 0 else None}
    ab0, ab1 = np.asarray(stat["ab_production"]), np.asarray(stat["ab_candidate"])
    diff = ab1.mean() - ab0.mean()
    out["methods"]["A/B (clicks per search)"] = {"effect": float(diff / np.sqrt((ab0.var() + ab1.var()) / 2)),
                                                 "searches": float(2 * 2.8 ** 2 * (ab0.var() + ab1.var()) / diff ** 2)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    print(f"true lift of v{a.versions[1]} over v{a.versions[0]}: {out['true_lift']:+.1%} expected clicks per search "
          f"({out['expected_clicks_per_search'][0]:.3f} -> {out['expected_clicks_per_search'][1]:.3f}; paired 95% "
          f"interval {out['paired_diff_ci95'][0]:+.3f}..{out['paired_diff_ci95'][1]:+.3f})")
    for name, m in out["methods"].items():
        extra = f", candidate wins {m['win_share']:.3f} of decided searches ({m['decided_share']:.0%} decided)" \
            if "win_share" in m else ""
        print(f"{name:28} effect per search {m['effect']:.4f} -> {m['searches']:.0f} searches{extra}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
