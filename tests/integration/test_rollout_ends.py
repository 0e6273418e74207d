"""How a rollout ends in the registry, on one real MLflow registry (SQLite, made once for the
module): the controller promotes a candidate whose live signals are good at every step
(production moves, the server is told), and a rollback with no previous version is refused
and moves nothing. The server is a stand-in transport (the controller's own seam); the
live-HTTP rollouts are in test_serve.py and test_interleaving.py (slow)."""

from __future__ import annotations

import json

import pytest
from conftest import make_stage_folder
from typer.testing import CliRunner

from shelfops.cli.main import app as cli
from shelfops.config.schema import RolloutConfig
from shelfops.errors import PromotionRefused
from shelfops.monitor.controller import Controller
from shelfops.monitor.rollout import policy_from
from shelfops.registry.registry import Registry


@pytest.fixture(scope="module")
def reg(tmp_path_factory) -> Registry:
    return Registry(home=tmp_path_factory.mktemp("rollout-ends") / "home")


def _passing_gate(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gate.json").write_text(json.dumps({"passed": True, "failed": []}))
    (folder / "gate.html").write_text("<html>gate</html>")
    return folder


class StandInServer:
    """The controller's transport (status / set / end) in memory: the rollout as a server runs
    it, the live numbers the test gives, and every call the controller made."""

    def __init__(self, observed: dict) -> None:
        self.observed, self.rollout, self.production, self.calls = observed, None, "1", []

    def status(self) -> dict:
        return {} if self.rollout is None else {"search": {**self.rollout, "observed": self.observed}}

    def set(self, **body) -> dict:
        self.calls.append(("set", body))
        self.rollout = {"mode": body["mode"], "percent": body.get("percent", 0),
                        "candidate": body.get("version") or self.rollout["candidate"]}
        return {"task": body["task"], "mode": body["mode"], "percent": self.rollout["percent"],
                "candidate": self.rollout["candidate"]}

    def end(self, **body) -> dict:
        self.calls.append(("end", body))
        if body["promote"]:
            self.production = self.rollout["candidate"]
        self.rollout = None
        return {"task": body["task"], "promoted": body["promote"], "production": self.production}


def test_the_controller_promotes_a_candidate_whose_live_signals_are_good(reg, tmp_path):
    name = "good-search"
    for v in (1, 2):
        reg.register(make_stage_folder(tmp_path / f"m{v}", payload=bytes([v]) * 64), name)
        reg.attach_gate(name, str(v), _passing_gate(tmp_path / f"gate{v}"))
    reg.promote(name, "1", "production", reason="first")
    # the candidate's arm as healthy as production's: no errors, same latency, click-through
    # and conversion, enough requests and impressions at every step
    good = {"candidate": {"requests": 200, "errors": 0, "p99_ms": 42.0, "impressions": 2000, "clicks": 205,
                          "conversions": 41, "overlap": 0.9},
            "production": {"requests": 1000, "errors": 0, "p99_ms": 40.0, "impressions": 5000, "clicks": 500,
                           "conversions": 100}}
    server = StandInServer(good)
    clock = {"t": 0.0}
    policy = policy_from(RolloutConfig(min_dwell_s=60, min_requests=100, min_impressions=1000))
    ctl = Controller(reg, server, name, policy=policy, clock=lambda: clock["t"])
    ctl.start("2", reason="new candidate")
    assert reg.aliases(name)["shadow"] == "2"
    assert ctl.tick().action == "hold"  # not before its dwell
    decisions = []
    for _ in range(6):
        clock["t"] += 61
        d = ctl.tick()
        if d is None:
            break
        decisions.append((d.action, d.stage))
    assert decisions == [("advance", 5), ("advance", 25), ("advance", 50), ("promote", 100)]
    row = ctl.row()
    assert row.status == "promoted" and row.stage == 100 and row.reason.endswith("promoting")

    # the registry: production moved to the candidate (v1 is previous), by the controller, with why
    assert reg.aliases(name)["production"] == "2" and reg.aliases(name)["previous"] == "1"
    assert str(reg.client.get_model_version_by_alias(name, "production").version) == "2"  # MLflow's mirror
    last = [m for m in reg.history(name) if m.alias == "production"][-1]
    assert (last.from_version, last.to_version, last.actor, last.action) == ("1", "2", "controller", "promote")
    assert last.evidence["decision"] == "promote" and last.evidence["from_stage"] == 50
    assert last.evidence["gate"] == "passed"

    # the server was told every step, and last to promote the candidate
    assert [(c, b.get("mode"), b.get("percent")) for c, b in server.calls[:-1]] == [
        ("set", "shadow", None), ("set", "canary", 5), ("set", "canary", 25), ("set", "canary", 50)]
    assert server.calls[-1] == ("end", {"task": "search", "promote": True})
    assert server.production == "2" and server.rollout is None
    # a finished rollout: a later tick decides nothing and tells the server nothing
    calls = len(server.calls)
    assert ctl.tick() is None and len(server.calls) == calls


def test_rollback_with_no_previous_version_is_refused_and_moves_nothing(reg, tmp_path):
    name = "lonely-search"
    reg.register(make_stage_folder(tmp_path / "m1"), name)
    with pytest.raises(PromotionRefused, match=f"^{name}: no previous version to roll back to$"):
        reg.rollback(name, reason="nothing was ever in production")
    reg.promote(name, "1", "production", reason="first", force=True)
    moves = [(m.alias, m.to_version) for m in reg.history(name)]
    with pytest.raises(PromotionRefused, match=f"^{name}: no previous version to roll back to$"):
        reg.rollback(name, reason="p99 regression")
    assert reg.aliases(name) == {"production": "1"}
    assert [(m.alias, m.to_version) for m in reg.history(name)] == moves == [("production", "1")]
    assert str(reg.client.get_model_version_by_alias(name, "production").version) == "1"
    # the CLI says so with the refusal's exit code (5), not a crash
    res = CliRunner().invoke(cli, ["registry", "rollback", name, "-r", "try"], env={"SHELFOPS_HOME": str(reg.home)})
    assert res.exit_code == 5 and "no previous version to roll back to" in res.output, res.output
    assert reg.aliases(name) == {"production": "1"}
