"""The story's HTML report: what happened, step by step, with its numbers and plots."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path


def _img(png: Path, alt: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f'{html.escape(alt)}</figcaption></figure>'


def plot_ctr(by_version: dict, png: Path, labels: dict[str, str]) -> Path:
    """Click-through per version on the drifted traffic, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vs = [v for v in by_version if by_version[v]["impressions"]]
    ctr = [by_version[v]["clicks"] / by_version[v]["impressions"] for v in vs]
    err = [1.96 * math.sqrt(c * (1 - c) / by_version[v]["impressions"]) for c, v in zip(ctr, vs)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([labels.get(v, f"v{v}") for v in vs], [100 * c for c in ctr], yerr=[100 * e for e in err],
           color=["tab:gray" if labels.get(v, "").startswith("v1") else "tab:blue" for v in vs], capsize=6)
    ax.set_ylabel("click-through (%)")
    ax.set_title("drifted traffic: clicks / results shown (95% CI)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def plot_rollout(journal: list[dict], t0: float, png: Path) -> Path:
    """The candidate's share of live traffic over the rollout, with the decisions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(e["t"] - t0, e.get("traffic", 0), e["step"]) for e in journal
           if e["step"] in ("shadow", "interleave", "canary", "promote", "rollback")]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if pts:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.step(xs, ys, where="post", color="tab:blue")
        for x, y, s in pts:
            ax.annotate(s, (x, y), textcoords="offset points", xytext=(3, 4), fontsize=8)
    ax.set_xlabel("seconds since the autopilot started")
    ax.set_ylabel("candidate's traffic (%)")
    ax.set_ylim(-5, 110)
    ax.set_title("rollout: " + " -> ".join(dict.fromkeys(
        "interleave" if s == "interleave" else f"{y}%" if s in ("canary", "promote") else s for _, y, s in pts)))
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def write_report(out: dict, workdir: Path, reports: Path) -> Path:
    v1 = out["v1"]["version"]
    v2 = (out.get("rollout") or {}).get("candidate")
    labels = {v1: f"v{v1} (before the drift)"}
    if v2:
        labels[v2] = f"v{v2} (retrained)"
    figs = []
    if out["drifted_traffic_by_version"]:
        figs.append(_img(plot_ctr(out["drifted_traffic_by_version"], reports / "ctr-by-version.png", labels),
                         "online click-through by version on the drifted traffic"))
    t0 = out["journal"][0]["t"] if out["journal"] else 0.0
    figs.append(_img(plot_rollout(out["journal"], t0, reports / "rollout.png"), "rollout timeline"))
    for png in sorted(reports.glob("drift-*.png")):
        figs.append(_img(png, f"drift report {png.stem}"))
    for png in sorted(reports.glob("pareto-*.png")):
        figs.append(_img(png, f"optimize: Pareto front of {png.stem.removeprefix('pareto-')}"))
    checks = "".join(f"<li class='{'ok' if ok else 'bad'}'>{'✔' if ok else '✘'} {html.escape(k.replace('_', ' '))}</li>"
                     for k, ok in out["checks"].items())
    steps = "".join(f"<tr><td>{s['seconds']:.0f} s</td><td>{html.escape(s['title'])}</td></tr>" for s in out["steps"])
    journal = "".join(f"<tr><td>{e['t'] - t0:.0f} s</td><td>{html.escape(e['step'])}</td>"
                      f"<td>{html.escape(e['message'])}</td></tr>" for e in out["journal"])
    ctr_rows = "".join(
        f"<tr><td>{html.escape(labels.get(v, 'v' + v))}</td><td>{s['searches']}</td><td>{s['impressions']}</td>"
        f"<td>{s['clicks']}</td><td>{(s['ctr'] or 0):.2%}</td></tr>"
        for v, s in out["drifted_traffic_by_version"].items())
    timing = "".join(f"<tr><td>{html.escape(r['step'])}</td><td>{r['seconds']:.1f} s</td><td>{r['share']:.1%}</td>"
                     f"<td>{html.escape(r['kind'])}</td></tr>" for r in out.get("timings", []))
    lf = out.get("ctr_lift")
    lift = (f"v2 vs v1: {lf['v2_ctr']:.2%} vs {lf['v1_ctr']:.2%} click-through ({lf['relative']:+.0%}; one-sided "
            f"two-proportion z-test p = {lf['p_value']:.2g}); by the hidden truth, {lf['truth']['v2']:.3f} vs "
            f"{lf['truth']['v1']:.3f} expected clicks per search ({lf['truth']['relative']:+.0%}, p = "
            f"{lf['truth']['p_value']:.2g})") if lf else ""
    tp = out.get("truth_paired")
    if tp:
        lift += (f"; on the same {tp['searches']} drifted searches asked of both, {tp['v2']:.3f} vs {tp['v1']:.3f} "
                 f"({tp['relative']:+.0%}, paired p = {tp['p_value']:.2g})")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>shelfops story</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
.ok{{color:#12803a}}.bad{{color:#c0262d}}figure{{display:inline-block;margin:8px}}img{{max-width:1100px}}</style>
</head><body><h1>shelfops: the whole story on the synthetic shop</h1>
<p>{out['seconds']:.0f} s end to end · model <b>{html.escape(out['name'])}</b> · serving v{html.escape(str(out['serving_at_end']))} at the end</p>
<ul>{checks}</ul>
<h2>Online click-through on the drifted traffic</h2>
<table><tr><th>version</th><th>searches</th><th>impressions</th><th>clicks</th><th>CTR</th></tr>{ctr_rows}</table>
<p>{lift}</p>
<h2>What the autopilot did</h2><table><tr><th>at</th><th>step</th><th>what</th></tr>{journal}</table>
<h2>Plots</h2>{''.join(figs)}
<h2>Steps</h2><table><tr><th>at</th><th>step</th></tr>{steps}</table>
<h2>Where the time went</h2><table><tr><th>step</th><th>seconds</th><th>share</th><th>bound by</th></tr>{timing}</table>
</body></html>"""
    path = workdir / "report.html"
    path.write_text(page)
    return path
