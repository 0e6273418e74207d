"""`shelfops demo` tells the whole story (data, v1, serve, replayed shoppers, drift, the
autopilot retrains and rolls out v2, a broken v3 meets the gate) on a small shop with a
tiny encoder: the same code path as `make demo`, at toy cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shelfops.registry.registry import Registry

SMALL = ["data.synthetic.users=300", "data.synthetic.items=300", "data.synthetic.days=8",
         "data.synthetic.drift_strength=0.9",  # a small shop, a clear trend: its drift shows in 120 searches
         "data.synthetic.drift_day=5", "data.synthetic.judged_queries=120",
         "train.threads=1", "train.bootstrap=100", "train.search.schedule.max_steps=10",
         "train.search.freeze_layers=1",
         "optimize.seconds_per_point=0.05", "optimize.batch_sizes=[1,8]", "optimize.threads=[1]",
         "optimize.golden=10", "optimize.max_queries=20", "optimize.prune.enabled=false",
         "optimize.variants=[torch-fp32,onnx-fp32]",
         "gate.golden=10", "gate.depth=10", "gate.max_queries=20", "gate.title_probes=5", "gate.n_boot=100",
         "gate.quality_margin=0.05", "gate.churn_min_pass_rate=0",
         # the tiny model earns ~2-3% click-through: windows of 120 searches hold ~35 clicks,
         # so the small shop's drift is judged at alpha 0.01 (the statistics' own power is
         # tested in tests/unit/monitor/test_drift.py)
         "monitor.window=120", "monitor.drift.min_samples=60", "monitor.drift.alpha=0.01",
         "monitor.every_s=0.3", "monitor.triggers.cooldown_s=0",
         "monitor.rollout.min_dwell_s=0.5", "monitor.rollout.min_requests=10",
         "monitor.rollout.min_impressions=40", "monitor.rollout.min_shadow_overlap=0.0",
         "monitor.rollout.max_p99_ratio=20"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the story's process has 900 s of its own (below), which ends it first
def test_demo_tells_the_story(tmp_path, tiny_encoder):
    # its own process, as `make demo` runs it: the story starts a server, threads and
    # sessions of its own, apart from whatever the tests before it left in this one
    w = tmp_path / "story"
    env = {k: v for k, v in os.environ.items() if k != "SHELFOPS_HOME"}
    res = subprocess.run([sys.executable, "-m", "shelfops", "demo", "--workdir", str(w),
                          f"train.encoder={tiny_encoder}", *SMALL], capture_output=True, text=True,
                         timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads((w / "story.json").read_text())
    journal = out["journal"]
    steps = [e["step"] for e in journal]
    # the autopilot saw the drift in served traffic, retrained and gated the new version
    steps = [s for s in steps if s != "consistency"]
    assert out["checks"]["drift_detected"] and steps[:3] == ["drift", "trigger", "gate"], steps
    # the scheduled consistency check re-scored production's stored golden set
    assert any(e["step"] == "consistency" and " answers its golden set" in e["message"] for e in journal)
    drift = next(e for e in journal if e["step"] == "drift")
    assert any(f["drifted"] for f in drift["report"].values())
    reg = Registry(home=w / "registry")
    name = "synthetic-shop-search"
    # what the story exists to show: v2 rolled out and promoted, the broken v3 stopped and not serving
    checks = out["checks"]
    assert checks["v2_promoted"] and checks["v3_stopped"] and checks["v3_not_serving"], (checks, steps)
    v1, v2, v3 = out["v1"]["version"], out["rollout"]["candidate"], out["v3"]["version"]
    assert len({v1, v2, v3}) == 3, (v1, v2, v3)
    # every gate verdict in the journal is the verdict stored with that registry version: v2's
    # passed; v3's is stored whichever way it went (the canary stops it when the gate does not)
    gates = {e["version"]: e for e in journal if e["step"] == "gate"}
    assert v2 in gates and v3 in gates and gates[v2]["passed"] is True, sorted(gates)
    for version, e in gates.items():
        assert reg.show(name, version).gate == ("passed" if e["passed"] else "failed")
        assert ("stopped" in e["message"]) == (not e["passed"])
    if not gates[v3]["passed"]:  # stopped at the gate: it never went further
        assert [e["step"] for e in journal if e.get("version") == v3] == ["gate"]
    else:  # stopped by the live signals: rolled back
        assert any(e["step"] == "rollback" and e.get("version") == v3 for e in journal)
    # the retrained release was gated against production as production serves: judged products
    # launched after v1's snapshot are outside what v1 can show
    first = next(e for e in journal if e["step"] == "gate")
    assert first["version"] == v2
    gate = json.loads(Path(first["release"]["gate_report"]).read_text())
    assert gate["test_pairs_outside_production_catalogue"] > 0
    # v2 went gate -> shadow -> (canary or interleave steps) -> promote, each step an alias move
    # by the autopilot; every shadow and promote in the journal is one in the registry's history
    v2_steps = [e["step"] for e in journal if e.get("version") == v2]
    assert [s for s in v2_steps if s in ("gate", "shadow", "promote", "rollback")] == \
        ["gate", "shadow", "promote"], v2_steps
    moves = [(m.alias, m.to_version, m.actor) for m in reg.history(name)]
    assert ("shadow", v2, "autopilot") in moves and ("production", v2, "autopilot") in moves, moves
    for e in journal:
        if e["step"] == "shadow":
            assert ("shadow", e["version"], "autopilot") in moves
        if e["step"] == "promote":
            assert ("production", e["version"], "autopilot") in moves
    # the broken v3 never reached production, and the server follows the registry
    assert ("production", v3, "autopilot") not in moves
    production = reg.aliases(name)["production"]
    assert production == out["serving_at_end"] and production != v3
    report = (w / "report.html").read_text()
    assert len(report) > 20_000 and "the whole story" in report and "drift report" in report
    # where the time went: every step of the story timed, adding up to the story's own seconds
    rows = out["timings"]
    assert {"v1 · data", "v1 · train", "v1 · optimize", "v1 · gate"} <= {r["step"] for r in rows}
    assert any(r["step"].startswith("rollout: ") for r in rows)  # v2's rollout steps, timed
    assert abs(sum(r["seconds"] for r in rows) - out["seconds"]) < 0.05 * out["seconds"] + 2
    assert "Where the time went" in report
    # the same panel of drifted searches was asked of production as v2's build began (v1 alone
    # served) and as v3's began (v2 alone)
    assert [p["answered_by"] for p in out["probes"]] == [{v1: 400}, {v2: 400}], out["probes"]
    paired = out["truth_paired"]
    assert paired["searches"] + paired["left_out"] == 400 and paired["searches"] >= 300, paired
    assert checks["v2_better_for_shoppers"] == (paired["relative"] > 0 and paired["p_value"] < 0.05)
