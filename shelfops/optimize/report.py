"""The optimize report for people: a variant table (Markdown) and the Pareto chart (PNG)."""

from __future__ import annotations

from pathlib import Path

from shelfops.optimize.policy import Selection


def _best(r: dict) -> dict:
    return max(r["points"], key=lambda p: p["items_per_s"])


def _threads(point: dict) -> str:
    """Threads per call, and the calls running at once when more than one: ``1x2w``."""
    w = point.get("workers", 1)
    return f"{point['threads']}" + (f"x{w}w" if w > 1 else "")


def variant_table(rows: list[dict], sel: Selection) -> str:
    head = ("| variant | kind | quality | drop [95% CI] | parity pass | churn-ok | top-10 overlap | tau "
            "| best items/s (batch, threads[x workers]) | tuned: threads[x workers], batch, wait ms, p99 ms, items/s "
            "| speed-up vs fp32 | compute eff. | file MB | verdict |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        b, s, p = _best(r), r["setting"], r["parity"]
        tuned = (f"{_threads(s)}, "
                 f"{s['max_batch']}, {s['max_wait_ms']:.1f}, {s['p99_ms']:.1f}, "
                 f"{s['items_per_s']:.0f}" if s else "misses SLO")
        verdict = ("**chosen**" if r["name"] == sel.chosen else
                   f"rejected: {sel.rejected[r['name']]}" if r["name"] in sel.rejected else "ok")
        d = r.get("quality_drop")
        drop = f"{d['mean']:+.2%} [{d['low']:+.2%}, {d['high']:+.2%}]" if d else "-"
        lines.append(f"| {r['name']} | {'approx.' if r.get('approximate') else 'exact'} | "
                     f"{r['quality']:.4f} | {drop} | {p['pass_rate']:.1%} | "
                     f"{p.get('churn_pass_rate', float('nan')):.1%} | "
                     f"{p['top10_overlap_mean']:.3f} | {p['kendall_tau_mean']:.3f} | "
                     f"{b['items_per_s']:.0f} ({b['batch']}, {_threads(b)}) | {tuned} | "
                     f"{r['speedup_vs_fp32_same_batch']:.2f}x | {r['compute_efficiency']:.1%} | "
                     f"{r['file_mb']:.1f} | {verdict} |")
    return head + "\n".join(lines) + "\n"


def plot_pareto(rows: list[dict], sel: Selection, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        s = r["setting"]
        x = s["items_per_s"] if s else _best(r)["items_per_s"]
        colour = ("tab:green" if r["name"] == sel.chosen else "tab:red" if r["name"] in sel.rejected
                  else "tab:blue")
        ax.scatter(x, r["quality"], c=colour, s=60, marker="o" if s else "x")
        ax.annotate(r["name"], (x, r["quality"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = [r for n in sel.frontier for r in rows if r["name"] == n and r["setting"]]
    if len(front) > 1:
        front.sort(key=lambda r: r["setting"]["items_per_s"])
        ax.plot([r["setting"]["items_per_s"] for r in front], [r["quality"] for r in front],
                "--", c="grey", lw=1, label="Pareto frontier")
        ax.legend(loc="lower left")
    ax.set_xlabel(f"throughput at tuned setting (items/s, p99 <= {sel.slo_p99_ms:g} ms)")
    ax.set_ylabel("validation quality")
    ax.set_title(f"optimize: chosen {sel.chosen} (green); rejected in red")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
