"""`make demo` on a fresh clone, timed: the first ten minutes a newcomer spends with shelfops.

Clones the repository's committed HEAD into a new folder (nothing of this checkout's .venv or
runs/ comes along), then runs, timed separately, `make .venv/.installed-core` (the install
`make demo` does first) and `make demo` (the story). Records the commit, the date, the CPU
and its vector extensions (the same demo takes about 3x longer on an AVX2-only CPU than on one
with AVX-512 VNNI), the wall seconds with and without the install, the story's per-step
table and its checks, to bench/results/demo_time.json, and rewrites the demo-time table in
bench/RESULTS.md between its markers.

    .venv/bin/python bench/demo_time.py                  # clone HEAD into /tmp, time, record
    .venv/bin/python bench/demo_time.py --keep DIR       # clone into DIR and keep it
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "demo_time.json"
MARK = ("<!-- demo_time:start -->", "<!-- demo_time:end -->")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
BUDGET_S = {"avx512": 12 * 60, "avx2": 20 * 60}  # issue 23: install included


def cpu() -> dict:
    """Model name, core count and which of the vector extensions that matter here the CPU has."""
    info = {"model": platform.processor() or "unknown", "cores": os.cpu_count()}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        info["model"] = fields.get("Model name", info["model"]).strip()
        flags = set(fields.get("Flags", "").split())
    except (OSError, subprocess.CalledProcessError):
        flags = set()
    info["flags"] = {f: f in flags for f in FLAGS}
    info["kind"] = "avx512" if info["flags"]["avx512f"] else "avx2" if info["flags"]["avx2"] else "other"
    return info


def timed(cmd: list[str], cwd: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        res = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    secs = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {res.returncode}); see {log}")
    return secs


def markdown(rec: dict) -> str:
    c = rec["cpu"]
    flags = ", ".join(f for f, on in c["flags"].items() if on) or "none of " + ", ".join(FLAGS)
    lines = [f"{rec['date']}, commit `{rec['commit'][:10]}`, {c['model']}, {c['cores']} cores ({flags}).",
             "",
             f"**{rec['wall_s'] / 60:.1f} min** from a fresh clone, install included "
             f"(install {rec['install_s']:.0f} s, story {rec['demo_s']:.0f} s); budget for this CPU kind "
             f"({c['kind']}): {rec['budget_s'] / 60:.0f} min -> **{'met' if rec['within_budget'] else 'MISSED'}**. "
             "Story checks: " + ", ".join(f"{k.replace('_', ' ')} {'yes' if v else 'NO'}"
                                          for k, v in rec["checks"].items()) + ".",
             "",
             "| step | seconds | share | bound by |", "|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['seconds']:.1f} | {r['share']:.1%} | {r['kind']} |" for r in rec["timings"]]
    lines += ["", "By stage (seconds over the whole story): "
              + ", ".join(f"{k} {v:.0f}" for k, v in rec["timings_by_stage"].items()) + "."]
    return "\n".join(lines)


def update_results_md(text: str) -> None:
    md = ROOT / "bench" / "RESULTS.md"
    body = md.read_text()
    if MARK[0] in body and MARK[1] in body:
        body = re.sub(re.escape(MARK[0]) + r".*?" + re.escape(MARK[1]),
                      lambda _: f"{MARK[0]}\n{text}\n{MARK[1]}", body, flags=re.S)
        md.write_text(body)
        print(f"updated the demo-time table in {md}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="clone into this folder and keep it (default: a temp folder)")
    ap.add_argument("--no-update", action="store_true", help="do not rewrite bench/RESULTS.md")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        print("note: uncommitted changes are not part of the clone; it runs the commit", commit[:10])
    base = args.keep or Path(tempfile.mkdtemp(prefix="shelfops-demo-time-"))
    clone = base / "fresh"
    shutil.rmtree(clone, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    log = base / "demo.log"
    log.write_text("")
    print(f"fresh clone of {commit[:10]} in {clone}; log: {log}")
    install_s = timed(["make", ".venv/.installed-core"], clone, log)
    print(f"install: {install_s:.0f} s")
    demo_s = timed(["make", "demo"], clone, log)
    story = json.loads((clone / "runs" / "demo" / "story.json").read_text())
    c = cpu()
    wall = install_s + demo_s
    rec = {"commit": commit, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "cpu": c, "python": sys.version.split()[0], "install_s": round(install_s, 1),
           "demo_s": round(demo_s, 1), "wall_s": round(wall, 1), "story_s": story["seconds"],
           "budget_s": BUDGET_S.get(c["kind"], BUDGET_S["avx2"]),
           "checks": story["checks"], "timings": story["timings"],
           "timings_by_stage": story.get("timings_by_stage", {}),
           "ctr_lift": story.get("ctr_lift"), "truth_paired": story.get("truth_paired")}
    rec["within_budget"] = wall <= rec["budget_s"] and all(story["checks"].values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rec, indent=2))
    text = markdown(rec)
    print(text)
    print(f"wrote {RESULTS}")
    if not args.no_update:
        update_results_md(text)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
