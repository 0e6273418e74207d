"""Where the story's time goes: one row per step, from its own stopwatch and the autopilot's journal.

The story times its own phases (generating the shop, building v1, traffic before the drift,
...). While the autopilot runs, the story does not know what happens, so that stretch is
split by the journal's timestamps: the wait until a drift check fires, each release's stages
(data, train, optimize, register, gate: ``Release.timings``), each rollout step, each
consistency check. Pure functions: the rows are computed from numbers, nothing is measured here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable


class Phases:
    """The story's stopwatch: ``phase(name)`` closes the stretch since the previous call."""

    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self.last = clock()
        self.rows: list[dict] = []

    def phase(self, step: str, kind: str = "build") -> None:
        now = self.clock()
        self.rows.append({"step": step, "seconds": now - self.last, "kind": kind})
        self.last = now

    def release(self, label: str, release: dict) -> None:
        """A release built in the story's own thread: its stages, the rest as 'other'."""
        now = self.clock()
        self.rows.extend(release_rows(label, release, now - self.last))
        self.last = now

    def journal(self, entries: list[dict], tail: str) -> None:
        """The stretch the autopilot ran, split by its journal; what follows its last entry is ``tail``."""
        now = self.clock()
        self.rows.extend(journal_rows(entries, self.last, now, tail))
        self.last = now


def release_rows(label: str, release: dict, seconds: float) -> list[dict]:
    rows = [{"step": f"{label} · {stage}", "seconds": s, "kind": "build"}
            for stage, s in (release.get("timings") or {}).items()]
    rest = seconds - sum(r["seconds"] for r in rows)
    if rest > 0.05 or not rows:
        rows.append({"step": f"{label} · other", "seconds": max(rest, 0.0), "kind": "build"})
    return rows


def _rollout_label(stage) -> str:
    return f"rollout: {stage}" + ("" if stage in ("shadow", "interleave") else "%") + " step"


def journal_rows(entries: Iterable[dict], start: float, end: float, tail: str) -> list[dict]:
    """The rows of ``[start, end]`` split at each journal entry, labelled by what ended the stretch."""
    rows: list[dict] = []
    last, stage = start, None
    for e in entries:
        t = min(max(e["t"], last), end)
        dt, step = t - last, e["step"]
        if step in ("drift", "trigger"):
            rows.append({"step": "wait: drifted traffic until a drift check fires", "seconds": dt, "kind": "traffic"})
        elif step == "gate" and e.get("release"):
            rows.extend(release_rows(f"v{e['version']}", e["release"], dt))
        elif step == "shadow":
            rows.append({"step": "rollout: start", "seconds": dt, "kind": "build"})
            stage = "shadow"
        elif step in ("canary", "interleave", "promote", "rollback"):
            rows.append({"step": _rollout_label(stage if stage is not None else e.get("stage")), "seconds": dt,
                         "kind": "traffic"})
            stage = e.get("stage")
        elif step == "consistency":
            rows.append({"step": "consistency check", "seconds": dt, "kind": "build"})
        else:
            rows.append({"step": step, "seconds": dt, "kind": "build"})
        last = t
    rows.append({"step": tail, "seconds": end - last, "kind": "traffic"})
    return merge(rows)


def merge(rows: list[dict]) -> list[dict]:
    """Adjacent rows of the same step become one."""
    out: list[dict] = []
    for r in rows:
        if out and out[-1]["step"] == r["step"]:
            out[-1] = {**out[-1], "seconds": out[-1]["seconds"] + r["seconds"]}
        else:
            out.append(dict(r))
    return out


def finish(rows: list[dict]) -> list[dict]:
    """Rounded seconds and each row's share of the total; rows under 0.05 s are dropped."""
    total = sum(r["seconds"] for r in rows) or 1.0
    return [{**r, "seconds": round(r["seconds"], 1), "share": round(r["seconds"] / total, 4)}
            for r in rows if r["seconds"] >= 0.05]


def by_stage(rows: list[dict]) -> dict[str, float]:
    """Seconds per kind of work over every release (data, train, optimize, register, gate), every
    rollout step together, and the rest of the traffic together: the summary line under the table."""
    out: dict[str, float] = {}
    for r in rows:
        step = r["step"]
        key = step.split(" · ", 1)[1] if " · " in step else ("rollout" if step.startswith("rollout") else
                                                             "traffic" if r["kind"] == "traffic" else step)
        out[key] = round(out.get(key, 0.0) + r["seconds"], 1)
    return out
