"""Optimize a trained cross-encoder and print the variant table (issue: optimize stage).

Runs ``shelfops.optimize.recipe.run`` on a trained model folder (default: the Home Depot
cross-encoder in runs/hd-search) and prints, from that one run: each variant's validation
NDCG@10, ranking parity with torch fp32, best and SLO-tuned throughput, speed-up over torch
fp32 eager, and compute efficiency (model FLOPs x items/s / the fp32 matmul FLOP/s of this
machine, measured in the same run); then the chosen variant against the acceptance bar
(>= 2.5x torch fp32 eager throughput, <= 1% relative NDCG@10 loss).

    .venv/bin/python bench/optimize.py --model runs/hd-search --out runs/hd-search-optimized
    .venv/bin/python bench/optimize.py --model runs/hd-search optimize.prune.enabled=false

Writes bench/results/optimize.json (the stage's report plus the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "runs" / "hd-search")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--slo-p99-ms", type=float, default=100.0)
    ap.add_argument("--max-quality-drop", type=float, default=0.01)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. optimize.seconds_per_point=2")
    a = ap.parse_args(argv)

    from shelfops.config.load import load_config
    from shelfops.optimize import recipe

    cfg = load_config(None, [f"optimize.slo_p99_ms={a.slo_p99_ms}",
                             f"optimize.max_quality_drop={a.max_quality_drop}", *a.overrides])
    out = a.out or a.model.with_name(a.model.name + "-optimized")
    t0 = time.perf_counter()
    recipe.run(a.model, out, cfg.optimize, progress=not a.no_progress, say=print)
    wall = time.perf_counter() - t0
    rep = json.loads((out / "optimize.json").read_text())
    rows = {r["name"]: r for r in rep["variants"]}
    ref = rows["torch-fp32"]
    ref_best = max(p["items_per_s"] for p in ref["points"])
    sel = rep["selection"]
    print()
    print((out / "variants.md").read_text())
    print("matmul fp32 FLOP/s by threads:", {t: f"{v / 1e9:.0f} G" for t, v in rep["matmul_flops_fp32"].items()})
    summary = {"wall_s": round(wall, 1), "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cpus", "chosen": sel["chosen"], "reason": sel["reason"]}
    if sel["chosen"]:
        c = rows[sel["chosen"]]
        ratio = c["setting"]["items_per_s"] / ref_best
        drop = (ref["quality"] - c["quality"]) / ref["quality"]
        summary.update({"throughput_vs_fp32_best": ratio, "relative_quality_drop": drop,
                        "compute_efficiency": c["compute_efficiency"],
                        "passes": bool(ratio >= 2.5 and drop <= 0.01)})
        print(f"chosen {sel['chosen']}: {c['setting']['items_per_s']:.0f} items/s (SLO-tuned) vs torch fp32 "
              f"eager best {ref_best:.0f} items/s = {ratio:.2f}x; NDCG@10 {c['quality']:.4f} vs "
              f"{ref['quality']:.4f} ({-drop:+.2%}); compute efficiency {c['compute_efficiency']:.1%} "
              f"(torch fp32: {ref['compute_efficiency']:.1%})")
        print("PASS" if summary["passes"] else "FAIL", "(bar: >= 2.5x, <= 1% relative NDCG@10 loss)")
    print(f"wall {wall / 60:.1f} min")
    res = ROOT / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "optimize.json").write_text(json.dumps({"summary": summary, "report": rep}, indent=2, default=str))
    return 0 if summary.get("passes") else 1


if __name__ == "__main__":
    sys.exit(main())
