"""The story's timing rows: the autopilot's stretch split by its journal, releases by stage."""

from shelfops.demo.timing import Phases, by_stage, finish, journal_rows


def _journal():
    rel = {"timings": {"data": 2.0, "train": 20.0, "optimize": 5.0, "register": 1.0, "gate": 6.0}}
    return [
        {"t": 110.0, "step": "drift"}, {"t": 110.0, "step": "trigger"},
        {"t": 145.0, "step": "gate", "version": "2", "release": rel},
        {"t": 145.5, "step": "shadow", "stage": "shadow"},
        {"t": 155.5, "step": "canary", "stage": 5},
        {"t": 185.5, "step": "canary", "stage": 25},
        {"t": 195.5, "step": "canary", "stage": 50},
        {"t": 200.5, "step": "promote", "stage": 100},
    ]


def test_journal_split_into_waits_release_stages_and_rollout_steps():
    rows = journal_rows(_journal(), 100.0, 210.0, tail="after")
    got = {r["step"]: round(r["seconds"], 2) for r in rows}
    assert got["wait: drifted traffic until a drift check fires"] == 10.0  # drift and trigger merged
    assert got["v2 · train"] == 20.0 and got["v2 · gate"] == 6.0
    assert got["v2 · other"] == 1.0  # 35 s between trigger and gate entry, 34 s of them timed stages
    assert got["rollout: shadow step"] == 10.0 and got["rollout: 5% step"] == 30.0
    assert got["rollout: 25% step"] == 10.0 and got["rollout: 50% step"] == 5.0
    assert got["after"] == 9.5
    assert abs(sum(r["seconds"] for r in rows) - 110.0) < 1e-9  # nothing lost, nothing counted twice


def test_phases_and_summary_by_stage():
    now = [0.0]
    ph = Phases(clock=lambda: now[0])
    now[0] = 4.0
    ph.phase("shop")
    now[0] = 50.0
    ph.release("v1", {"timings": {"data": 3.0, "train": 30.0, "gate": 10.0}})
    now[0] = 60.0
    ph.phase("traffic before the drift", kind="traffic")
    now[0] = 210.0
    ph.journal(_journal(), tail="after")
    rows = finish(ph.rows)
    assert abs(sum(r["share"] for r in rows) - 1.0) < 1e-3
    st = by_stage(rows)
    assert st["train"] == 50.0 and st["gate"] == 16.0 and st["data"] == 5.0
    assert st["rollout"] == 55.5  # start 0.5, shadow 10, 5% 30, 25% 10, 50% 5
    assert st["traffic"] == 10.0 + 50.0 + 9.5  # before the drift, waiting for the check (60-110), the tail
    assert abs(sum(st.values()) - 210.0) < 0.5
