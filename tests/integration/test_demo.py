"""`shelfops demo` end to end (data -> train four tasks -> optimize) on a small shop with a
tiny encoder: the same code path as `make demo`, at toy cost."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shelfops.artifacts import read_manifest, verify_outputs
from shelfops.cli.main import app
from shelfops.registry.registry import Registry

SMALL = ["data.synthetic.users=300", "data.synthetic.items=300", "data.synthetic.days=8",
         "data.synthetic.drift_day=5", "data.synthetic.judged_queries=120",
         "train.threads=1", "train.bootstrap=100",
         "train.search.schedule.max_steps=10", "train.retrieval.schedule.max_steps=10",
         "train.classify.schedule.max_steps=10", "train.recommend.schedule.epochs=2",
         "train.recommend.init_from_text=false", "train.search.freeze_layers=1", "train.retrieval.freeze_layers=1",
         "train.classify.freeze_layers=1",
         "optimize.seconds_per_point=0.05", "optimize.batch_sizes=[1,8]", "optimize.threads=[1]",
         "optimize.golden=10", "optimize.max_queries=20", "optimize.prune.drop_layers=1",
         "optimize.prune.recovery_steps=5", "optimize.variants=[torch-fp32,torch-int8,onnx-int8]",
         "gate.golden=10", "gate.depth=10", "gate.max_queries=20", "gate.title_probes=5", "gate.n_boot=100"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # data, four tasks trained, three optimized and gated, in one test
def test_demo_trains_optimizes_gates_and_registers_every_model(tmp_path, tiny_encoder, monkeypatch):
    monkeypatch.setenv("SHELFOPS_HOME", str(tmp_path / "home"))
    w = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--stages", "--workdir", str(w), f"train.encoder={tiny_encoder}", *SMALL])
    assert res.exit_code == 0, res.output
    for task in ("search", "retrieval", "recommend", "classify"):
        m = verify_outputs(w / "models" / task)
        assert m.extra["task"] == task and "model" in m.metrics
    for task in ("search", "retrieval", "classify"):
        m = verify_outputs(w / "optimized" / task)
        assert m.metrics["chosen"], m.metrics["reason"]
        serving = json.loads((w / "optimized" / task / "serving.json").read_text())
        assert serving["variant"] == m.metrics["chosen"]
        assert m.inputs[0].path == str((w / "models" / task / "manifest.json").resolve())
    assert "③ optimize" in res.output and read_manifest(w / "data").stage == "data"

    # each freshly trained and optimized model is a good first version: it passes every gate
    # check, the verdict is stored with its registry version, and it ships to production
    reg = Registry()
    for task in ("search", "retrieval", "classify"):
        name = f"synthetic-shop-{task}"
        v = reg.show(name, "candidate")
        gate = json.loads((w / "gates" / name / f"v{v.version}" / "gate.json").read_text())
        assert gate["passed"] and gate["failed"] == [], (name, gate["failed"])
        assert {"determinism", "serving_smoke"} <= {r["name"] for r in gate["results"]}  # the checks ran
        assert v.stage == "optimize" and v.gate == "passed"
        assert reg.aliases(name)["production"] == v.version
        last = reg.history(name)[-1]
        assert (last.alias, last.to_version, last.actor, last.action) == ("production", v.version, "demo", "promote")
        assert last.reason == "first version; every gate check passed"
    hist = CliRunner().invoke(app, ["registry", "history"])
    assert hist.exit_code == 0 and "synthetic-shop-search@candidate" in hist.output
    assert "checks=" in hist.output and "why: new optimized version" in hist.output
