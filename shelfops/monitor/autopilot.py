"""The closed loop, with no person in it:

    observe served traffic -> drift + triggers -> data -> train -> optimize -> register
    -> gate against production -> shadow -> 5% -> 25% -> 50% -> promote (or roll back)

:func:`build_release` is one retraining, top to bottom, on the shop's latest export.
:class:`Autopilot` ticks: it pulls the server's traffic log, compares a reference window
(the first searches after the current production version went live) with the latest
window, asks :func:`shelfops.monitor.triggers.decide` whether to retrain, builds a
release when told to, and hands a release that passed its gate to the rollout
:class:`~shelfops.monitor.controller.Controller`, which it then ticks until the rollout
ends. Every step lands in ``journal`` with its numbers (the demo's report reads it), and
every alias move in the registry's history with its evidence.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shelfops.data import recipe as data_recipe
from shelfops.errors import ArtifactNotFound
from shelfops.gate.recipe import gate_settings_from
from shelfops.monitor.consistency import check_consistency
from shelfops.monitor.controller import Controller
from shelfops.monitor.drift import compare, plot, thresholds_from
from shelfops.monitor.rollout import policy_from
from shelfops.monitor.triggers import Signals, decide, trigger_policy_from
from shelfops.monitor.windows import window_from_traffic
from shelfops.optimize import recipe as opt_recipe
from shelfops.registry.release import release
from shelfops.train import recipe as train_recipe
from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer, resolve_encoder
from shelfops.train.search import embed_texts

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Release:
    label: str
    version: str
    folder: Path
    data: Path
    gate_passed: bool
    failed: list[str]
    quality: float | None
    seconds: float
    gate_report: Path
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: data, train, ...

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def build_release(export: Path, workdir: Path, cfg, reg, name: str, *, label: str, task: str = "search",
                  optimize: bool = True, train_overrides: dict | None = None, report_dir: Path | None = None,
                  say: Say = _quiet, progress: bool = False) -> Release:
    """Data stage on ``export`` (items / events / judgements parquet), train ``task``,
    optimize, register as a new version of ``name``, gate it against ``name@production``
    and point ``candidate`` at it. Folders go under ``workdir/<stage>/<label>``."""

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    lap = _stopwatch(timings)
    workdir = Path(workdir)
    data_dir = workdir / "data" / label
    say(f"{label}: data stage on the export {export}")
    data_recipe.run(cfg.data, data_dir, specs=data_recipe.export_specs(Path(export)), progress=progress)
    lap("data")
    train_cfg = cfg.train
    if train_overrides:
        train_cfg = train_cfg.model_copy(update={task: getattr(train_cfg, task).model_copy(
            update={"schedule": getattr(train_cfg, task).schedule.model_copy(update=train_overrides)})})
    say(f"{label}: training {task}")
    m = train_recipe.run(task, data_dir, workdir / "models" / label, train_cfg, progress=progress, say=say,
                         config_dump=cfg.model_dump(mode="json"))
    lap("train")
    folder = workdir / "models" / label
    quality = (m.metrics.get("model") or {}).get("ndcg@10")
    quality = quality.get("mean", quality.get("estimate")) if isinstance(quality, dict) else quality
    if optimize:
        say(f"{label}: optimizing")
        om = opt_recipe.run(folder, workdir / "optimized" / label, cfg.optimize, progress=progress, say=say,
                            config_dump=cfg.model_dump(mode="json"))
        folder = workdir / "optimized" / label
        if report_dir is not None and (folder / "pareto.png").exists():
            Path(report_dir).mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / "pareto.png", Path(report_dir) / f"pareto-{label}.png")
        say(f"{label}: optimize chose {om.metrics['chosen']}: {om.metrics['reason']}")
        lap("optimize")
    g = release(reg, folder, name, workdir / "gates", settings=gate_settings_from(cfg.gate),
                reason=f"release {label}", actor="autopilot", say=say)
    lap("gate")  # register + gate + candidate alias
    return Release(label, g.version, folder, data_dir, g.passed, g.failed, quality,
                   round(time.perf_counter() - t0, 1), g.report_dir / "gate.json", timings)


def _stopwatch(into: dict[str, float]) -> Callable[[str], None]:
    """``lap(name)`` records the seconds since the previous lap (or since creation) under ``name``."""
    last = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        into[name] = round(now - last[0], 1)
        last[0] = now
    return lap


def click_through(records: list[dict]) -> tuple[float | None, int]:
    """Clicks per shown result over a window of traffic records, and the number shown."""
    shown = sum(r.get("results", 0) for r in records if r.get("kind") == "search")
    clicks = sum(1 for r in records if r.get("kind") == "click")
    return (clicks / shown if shown else None), shown


class Autopilot:
    def __init__(self, cfg, reg, server, *, name: str, export: Callable[[], Path], workdir: Path,
                 report_dir: Path | None = None, say: Say = _quiet, clock: Callable[[], float] = time.time,
                 release_overrides: Callable[[int], dict | None] | None = None, progress: bool = False,
                 on_build: Callable[[bool], None] | None = None) -> None:
        self.cfg, self.reg, self.server, self.name = cfg, reg, server, name
        self.export, self.workdir, self.report_dir, self.say, self.clock = export, Path(workdir), report_dir, say, clock
        mc = cfg.monitor
        self.thresholds = thresholds_from(mc.drift)
        self._embedder = None
        self.triggers = trigger_policy_from(mc.triggers)
        self.controller = Controller(reg, server, name, task=mc.task, policy=policy_from(mc.rollout),
                                     clock=clock, actor="autopilot")
        self.since = 0.0
        # what the drift check needs, and no more (the loop runs for weeks): the reference
        # window (production's first ``window`` searches, with their clicks), the latest
        # ``window`` searches after it, and how many searches arrived since the last check
        self.reference: list[dict] = []
        self.recent: deque[dict] = deque()
        self.fresh = 0
        self._restart_reference(clock())
        self.production_since = clock()
        self.last_retrain_at: float | None = None
        self.releases = 0
        self.release_overrides = release_overrides
        self.progress = progress
        self.on_build = on_build  # called with True before a retraining and False after it
        self.journal: list[dict] = []
        self.last_drift: dict | None = None
        self.drift_checks = 0  # drift reports made so far
        self.last_consistency_at: float | None = None
        self.consistency_failed = False

    # ------------------------------------------------------------------ journal
    def note(self, step: str, message: str, **numbers: Any) -> dict:
        e = {"t": self.clock(), "step": step, "message": message, **numbers}
        self.journal.append(e)
        self.say(f"autopilot · {step}: {message}")
        return e

    # ------------------------------------------------------------------ observe
    def _restart_reference(self, t: float) -> None:
        self.ref_from = t  # the reference window starts with production's traffic from here
        self.reference, self._ref_searches, self._ref_full = [], 0, False
        self.recent.clear()
        self._recent_searches = 0
        self.fresh = 0

    def _take(self, r: dict) -> None:
        if r["t"] < self.ref_from or r.get("interleaved"):  # an interleaved list is not production's answer
            return
        is_search = r.get("kind") == "search"
        if not self._ref_full:
            if not (is_search and self._ref_searches == self.cfg.monitor.window):
                self.reference.append(r)
                self._ref_searches += is_search
                return
            self._ref_full = True  # the first search after the reference window
        self.recent.append(r)
        self.fresh += is_search
        self._recent_searches += is_search
        # keep the latest ``window`` searches (and the clicks after the oldest of them)
        while self.recent and (self._recent_searches > self.cfg.monitor.window
                               or self.recent[0].get("kind") != "search"):
            self._recent_searches -= self.recent.popleft().get("kind") == "search"

    def pull(self) -> int:
        new = self.server.traffic(self.since)
        for r in new:
            self._take(r)
        if new:
            self.since = new[-1]["t"]
        return len(new)

    def windows(self) -> tuple[list[dict], list[dict]] | None:
        """(reference, current): the first and the latest ``window`` searches since ``ref_from``
        (with the clicks among them). Windows tumble: None until there are two windows' worth,
        and then until a whole new window has arrived since the last check, so each check
        judges fresh traffic only."""
        if not self._ref_full or self.fresh < self.cfg.monitor.window:
            return None
        self.fresh = 0
        return list(self.reference), list(self.recent)

    def drift(self) -> dict | None:
        """The drift report of a fresh window against the reference, or None when none is due."""
        w = self.windows()
        if w is None:
            return None
        ref, cur = (window_from_traffic(x) for x in w)
        if self.cfg.monitor.drift.embeddings:
            ref.embeddings, cur.embeddings = self.embed(ref.queries), self.embed(cur.queries)
        rep = compare(ref, cur, self.thresholds)
        rep["ctr"] = {"reference": click_through(w[0]), "current": click_through(w[1])}
        if rep["drifted"] and self.report_dir is not None:
            k = sum(1 for e in self.journal if e["step"] == "drift")
            rep["chart"] = str(plot(rep, ref, cur, Path(self.report_dir) / f"drift-{k + 1}.png"))
            (Path(self.report_dir) / f"drift-{k + 1}.json").write_text(json.dumps(rep, indent=2, default=str))
        self.last_drift = rep
        self.drift_checks += 1
        return rep

    def embed(self, texts: list[str]):
        """Query embeddings under the pretrained encoder (the centroid-shift feature)."""

        if self._embedder is None:
            path = resolve_encoder(self.cfg.train.encoder)
            self._embedder = (TextEncoder(load_backbone(path), "mean").eval(), load_tokenizer(path))
        enc, tok = self._embedder
        return embed_texts(enc, tok, texts, max_length=32, progress=None)

    # ------------------------------------------------------------------ act
    def tick(self) -> dict | None:
        """One observe-decide-act step; returns the journal entry it wrote, if any."""
        self.pull()
        row = self.controller.row()
        if row is not None and row.status == "running":
            d = self.controller.tick()
            if d is None or d.action == "hold":
                return None
            row = self.controller.row()
            if d.action == "promote":
                self.production_since = self.clock()
                self._restart_reference(self.production_since)  # the new production's traffic
            step = d.action if d.action != "advance" else ("interleave" if d.stage == "interleave" else "canary")
            return self.note(step, d.reason, version=row.candidate, stage=str(d.stage), traffic=d.traffic,
                             evidence=_short(d.evidence))
        every = self.cfg.monitor.consistency_every_s
        if every is not None and (self.last_consistency_at is None or self.clock() - self.last_consistency_at >= every):
            self.check_consistency()
        rep = self.drift()
        (ctr_ref, shown_ref), (ctr_cur, shown_cur) = (rep["ctr"]["reference"], rep["ctr"]["current"]) if rep \
            else ((None, 0), (None, 0))
        dec = decide(Signals(now=self.clock(), production_since=self.production_since,
                             last_retrain_at=self.last_retrain_at, drift=rep,
                             ctr_reference=ctr_ref, ctr_current=ctr_cur, impressions_reference=shown_ref,
                             impressions_current=shown_cur, consistency_failed=self.consistency_failed),
                     self.triggers)
        if not dec.retrain:
            return None
        if rep and rep["drifted"]:
            self.note("drift", ", ".join(rep["drifted_features"]), report=_drift_numbers(rep),
                      chart=rep.get("chart"))
        self.note("trigger", "; ".join(dec.reasons), evidence=dec.evidence)
        return self.retrain(dec.reasons)

    def check_consistency(self) -> dict | None:
        """Re-score production's stored golden set (shelfops.monitor.consistency)."""

        self.last_consistency_at = self.clock()
        try:
            version = self.reg.show(self.name, "production").version
            folder = self.reg.load(self.name, version)
        except ArtifactNotFound:
            return None
        gate = self.reg.gate_report(self.name, version)
        if gate is None or not (gate / "golden.json").exists():
            return self.note("consistency", f"v{version} has no stored golden set to check against", version=version)
        res = check_consistency(folder, gate / "golden.json", min_pass_rate=self.cfg.gate.parity_min_pass_rate)
        self.consistency_failed = not res["passed"]
        n = res["numbers"]
        return self.note("consistency", f"v{version} {'answers' if res['passed'] else 'NO LONGER answers'} its "
                         f"golden set as gated: {n.get('pass_rate', 0):.1%} of {res['groups']} groups pass, "
                         f"max score difference {res['max_abs_diff']:.2g}", version=version, result=res)

    def retrain(self, reasons: list[str]) -> dict:
        self.releases += 1
        label = f"auto-{self.releases}"
        overrides = dict(self.release_overrides(self.releases) or {}) if self.release_overrides else {}
        optimize = overrides.pop("optimize", True)
        if self.on_build:
            self.on_build(True)
        try:
            rel = build_release(self.export(), self.workdir, self.cfg, self.reg, self.name, label=label,
                                train_overrides=overrides or None, optimize=optimize,
                                report_dir=self.report_dir, say=self.say, progress=self.progress)
        finally:
            if self.on_build:
                self.on_build(False)
        self.last_retrain_at = self.clock()
        self.consistency_failed = False
        if not rel.gate_passed:
            return self.note("gate", f"v{rel.version} stopped by the gate: failed {', '.join(rel.failed)}",
                             version=rel.version, passed=False, release=rel.to_dict())
        self.note("gate", f"v{rel.version} passed every gate check; rolling out", version=rel.version,
                  passed=True, release=rel.to_dict())
        return self.roll_out(rel.version, "autopilot retrained on: " + "; ".join(reasons))

    def roll_out(self, version: str, reason: str) -> dict:
        """Start the rollout of a registered version (it begins in shadow)."""
        self.controller.start(version, reason=reason)
        return self.note("shadow", f"v{version} mirrors production's traffic", version=version, stage="shadow",
                         traffic=0)

    def run(self, *, until: Callable[[], bool] | None = None, max_seconds: float | None = None) -> None:
        t0 = self.clock()
        while True:
            self.tick()
            if until is not None and until():
                return
            if max_seconds is not None and self.clock() - t0 > max_seconds:
                return
            time.sleep(self.cfg.monitor.every_s)


def _drift_numbers(rep: dict) -> dict:
    return {k: {"value": f["value"], "threshold": f["threshold"], "drifted": f["drifted"],
                **({"p_value": f["p_value"]} if "p_value" in f else {}),
                **({"top_shift": f["top_shift"][:1]} if f.get("top_shift") else {}),
                **({"new_tokens": f["new_tokens"]} if f.get("new_tokens") else {})}
            for k, f in rep["features"].items()}


def _short(ev: dict) -> dict:
    obs = ev.get("observed", ev)
    return {k: obs.get(k) for k in ("candidate", "production", "p99_ratio", "click-through_p", "conversion_p",
                                    "interleaving", "improvement", "dwell_s") if k in obs}
