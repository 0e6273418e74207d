"""The autopilot's loop logic with a fake transport (a seam we own) and a real registry:
tumbling drift windows, a trigger that retrains once, a cool-down after a refused release."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shelfops.config.schema import ShelfopsConfig
from shelfops.monitor import autopilot as ap
from shelfops.registry.registry import Registry


class FakeServer:
    """Serves a list of traffic records; rollout endpoints are not reached in this test."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.t = 0.0

    def add(self, n: int, categories: list[str], rng) -> None:
        for _ in range(n):
            self.t += 1.0
            c = str(rng.choice(categories))
            self.records.append({"t": self.t, "kind": "search", "query": f"{c.lower()} thing", "top_category": c,
                                 "top_score": 1.0, "results": 10})
            if rng.random() < 0.3:
                self.t += 0.1
                self.records.append({"t": self.t, "kind": "click", "item": f"{c}-1", "category": c})

    def traffic(self, since: float) -> list[dict]:
        return [r for r in self.records if r["t"] > since]

    def status(self) -> dict:
        return {}


def test_drift_in_a_fresh_window_triggers_one_retraining(tmp_path: Path, monkeypatch):
    cfg = ShelfopsConfig.model_validate({"monitor": {"window": 100, "consistency_every_s": None,
                                                     "triggers": {"cooldown_s": 1000}}})
    server, rng = FakeServer(), np.random.default_rng(0)
    built: list[str] = []

    def fake_release(export, workdir, cfg, reg, name, *, label, **kw):
        built.append(label)
        return ap.Release(label, str(len(built) + 1), tmp_path, tmp_path, False, ["quality_non_regression"],
                          0.5, 1.0, tmp_path / "gate.json")

    monkeypatch.setattr(ap, "build_release", fake_release)
    now = [0.0]
    pilot = ap.Autopilot(cfg, Registry(home=tmp_path / "reg"), server, name="shop-search",
                         export=lambda: tmp_path, workdir=tmp_path, clock=lambda: now[0])
    calm = ["Kitchen", "Garden", "Bath"]
    server.add(200, calm, rng)
    assert pilot.tick() is None and pilot.last_drift is not None and not pilot.last_drift["drifted"]
    server.add(50, ["Electronics"], rng)  # not yet a whole fresh window: nothing is judged
    pilot.last_drift = None
    assert pilot.tick() is None and pilot.last_drift is None
    server.add(50, ["Electronics"], rng)
    entry = pilot.tick()
    assert built == ["auto-1"]
    assert [e["step"] for e in pilot.journal] == ["drift", "trigger", "gate"]
    assert "category_popularity" in pilot.journal[0]["message"] or "query_category_mix" in pilot.journal[0]["message"]
    assert entry["step"] == "gate" and "stopped by the gate" in entry["message"]
    # the windows' queries were embedded with the pretrained encoder: the centroid moved too
    shift = pilot.journal[0]["report"]["embedding_centroid_shift"]
    assert shift["drifted"] and shift["value"] > shift["threshold"]
    # the refused release starts a cool-down: more drifted traffic does not retrain at once
    now[0] = 10.0
    server.add(100, ["Electronics"], rng)
    assert pilot.tick() is None and built == ["auto-1"]
    now[0] = 2000.0
    server.add(100, ["Electronics"], rng)
    pilot.tick()
    assert built == ["auto-1", "auto-2"]


def test_the_loop_keeps_only_the_two_windows_it_judges(tmp_path: Path):
    """Weeks of traffic must not pile up in memory: the autopilot holds the reference window
    and the latest window, and each holds exactly the searches it should."""
    cfg = ShelfopsConfig.model_validate({"monitor": {"window": 50, "consistency_every_s": None,
                                                     "drift": {"embeddings": False}}})
    server, rng = FakeServer(), np.random.default_rng(1)
    pilot = ap.Autopilot(cfg, Registry(home=tmp_path / "reg"), server, name="shop-search",
                         export=lambda: tmp_path, workdir=tmp_path, clock=lambda: 0.0)
    server.add(50, ["Kitchen"], rng)
    server.add(2000, ["Kitchen", "Garden"], rng)
    pilot.pull()
    held = pilot.reference + list(pilot.recent)
    assert len(held) < 150  # 2,050 searches and ~600 clicks arrived
    ref, cur = pilot.windows()
    assert sum(r["kind"] == "search" for r in ref) == 50 and sum(r["kind"] == "search" for r in cur) == 50
    assert {r["top_category"] for r in ref if r["kind"] == "search"} == {"Kitchen"}
    searches = [r for r in server.records if r["kind"] == "search"]
    assert cur[0] is searches[-50]  # the current window is the latest 50 searches and their clicks
    assert pilot.windows() is None  # judged: nothing fresh until another whole window arrives
