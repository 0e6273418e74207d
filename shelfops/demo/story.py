"""The whole story on the built-in synthetic shop, with no person in the loop after the start:

    ① the shop's export from before its drift -> data -> train v1 -> optimize -> gate -> register
    ⑥ serve v1 over HTTP; the shop's shoppers (hidden truth) search and click
    ⑦ the drift arrives (a category trends, new products launch in it); the autopilot sees it
       in the traffic, retrains v2 on the new export, gates it, shadows it, canaries it at
       5 / 25 / 50 % and promotes it; shoppers click more on v2's answers
    then a deliberately broken v3 (a diverged fine-tune) is stopped by the gate

Each step prints its numbers; ``report.html`` and ``story.json`` gather them with the plots.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from shelfops import redact
from shelfops.data import recipe as data_recipe
from shelfops.data.snapshot import export_as_of
from shelfops.demo.report import write_report
from shelfops.demo.timing import Phases, by_stage, finish
from shelfops.errors import ConfigError
from shelfops.eval.sequential import one_sided_p
from shelfops.monitor.autopilot import Autopilot, build_release
from shelfops.monitor.controller import HttpServer
from shelfops.registry.registry import registry_from
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.server import start_in_thread
from shelfops.serve.watch import follow_registry, registry_view
from shelfops.sim import shop
from shelfops.sim.replay import Replay
from shelfops.sim.shop.truth import ShopTruth

#: the broken v3: a fine-tune whose learning rate is far too high diverges in a few steps
#: (shipped as trained, without the optimize stage: the gate must catch it either way)
BROKEN = {"lr": 0.05, "max_steps": 20, "eval_every": None, "warmup_ratio": 0.0, "optimize": False}
#: drifted searches asked of production as the autopilot starts each of its first two builds
#: (v1 when the drift set off v2's; v2, promoted, when v3's starts): the same searches, so the
#: two lists are compared pair by pair. At the spread of the pairs' differences in a demo run
#: (sd ~0.31 expected clicks, means ~1.1), 400 pairs find a 5% lift at p < 0.05 with ~97% power
#: (300 with 90%); unpaired, v1's ~400 live searches missed a 5% lift once (p = 0.069)
PANEL = 400


@dataclass
class Scene:
    """What the acts share: where the story writes, its config, console, registry, clocks."""

    workdir: Path
    cfg: Any
    console: Console
    progress: bool
    phases: Phases = field(default_factory=Phases)
    t_start: float = field(default_factory=time.perf_counter)
    out: dict = field(default_factory=lambda: {"steps": []})

    @property
    def reports(self) -> Path:
        return self.workdir / "report"

    @property
    def name(self) -> str:
        return f"{self.cfg.name}-{self.cfg.monitor.task}"

    def step(self, title: str, **numbers) -> None:
        self.out["steps"].append({"title": title, "seconds": round(time.perf_counter() - self.t_start, 1),
                                  **numbers})


@dataclass
class Shop:
    raw: Path  # the whole shop, with its hidden truth
    before: Path  # its export from before the drift
    catalogue: Path  # every product, as the server shows them


@dataclass
class Outcome:
    """How the drift act ended."""

    rollout: Any  # the controller's last row (RolloutRow) or None
    trigger_drift: dict | None  # the drift check that set the retraining off


def story(workdir: Path, cfg, console: Console, *, searches_per_window: int | None = None,
          max_rollout_s: float = 1500.0, progress: bool = True, rate: float = 12.0,
          build_rate: float = 0.0, max_quiet_windows: int = 8) -> dict:
    syn = cfg.data.synthetic
    if syn is None or syn.drift_day is None or syn.drift_day >= syn.days:
        raise ConfigError(["data.synthetic.drift_day: the story needs a drift day inside the shop's days"])
    sc = Scene(Path(workdir), cfg, console, progress)
    sc.reports.mkdir(parents=True, exist_ok=True)
    shop = act_shop(sc)
    reg = story_registry(sc)
    cfg = sc.cfg  # with the story's own registry, when none was configured
    v1 = act_v1(sc, reg, shop)
    server, token = act_serve(sc, reg, shop, v1)
    truth = ShopTruth.load(shop.raw)
    export = {"path": shop.before}  # the shop's latest nightly export, as the autopilot finds it
    # the drifted shoppers; one machine runs serving and training here (in production they
    # are apart), so they pause (build_rate 0) while the autopilot builds a release: its
    # training and its latency measurements get the cores a build machine would give them
    drifted = Replay(truth, server.url, day=syn.drift_day + 3, seed=12)
    panel, probes = drifted.panel(PANEL, seed=99), []

    def on_build(building: bool) -> None:
        drifted.rate = build_rate if building else rate
        if building and len(probes) < 2:  # production alone serves, the shoppers are paused
            t = time.perf_counter()
            probes.append({"answers": drifted.probe(panel), "seconds": round(time.perf_counter() - t, 1)})

    pilot = Autopilot(cfg, reg, HttpServer(server.url, token), name=sc.name, export=lambda: export["path"],
                      workdir=sc.workdir, report_dir=sc.reports, say=console.print,
                      release_overrides=lambda n: BROKEN if n >= 2 else None, progress=progress,
                      on_build=on_build)
    n_win = searches_per_window or cfg.monitor.window
    try:
        act_calm(sc, server.url, truth, pilot, n_win)
        export["path"] = shop.raw  # tonight's export has the new products and the new behaviour
        stop = threading.Event()
        player = threading.Thread(target=drifted.run, kwargs={"stop": stop, "concurrency": 4, "rate": rate},
                                  daemon=True)
        player.start()
        drift = act_drift(sc, pilot, drifted, n_win, rate, max_rollout_s, max_quiet_windows)
        v3_version, v3_row = act_broken(sc, pilot, max_rollout_s)
        if drift.rollout is not None and drift.rollout.status == "promoted":
            act_stale(sc, pilot, v1.version, drift.rollout.candidate, max_rollout_s)
        stop.set()
        player.join()
        serving = json_get(server.url + "/readyz")["models"][cfg.monitor.task]["version"]
        sc.step("end", tally=drifted.tally.to_dict(), serving=serving)
    finally:
        server.stop()
    return summary(sc, v1, pilot, drifted, drift, v3_version, v3_row, serving, probes)


def act_shop(sc: Scene) -> Shop:
    """① The synthetic shop, its export from before the drift, and the whole catalogue."""
    syn = sc.cfg.data.synthetic
    sc.console.print(Rule("① data: the synthetic shop, and its export from before the drift"))
    raw = sc.workdir / "shop"
    specs, summary_ = shop.export(syn, raw, progress=False)
    before = sc.workdir / "exports" / "before-drift"
    snap = export_as_of(raw, before, syn.start + timedelta(days=syn.drift_day))
    catalogue = sc.workdir / "catalogue"
    data_recipe.run(sc.cfg.data, catalogue, specs=specs, progress=False)
    d = summary_["drift"] or {}
    sc.console.print(f"shop: {summary_['items']:,} products, {summary_['users']:,} shoppers, "
                     f"{summary_['events']:,} events over {summary_['days']} days; on day {syn.drift_day} "
                     f"[bold]{d.get('trending_category')}[/] starts trending ({d.get('new_items')} new products)")
    sc.console.print(f"export before the drift: {snap['items']:,} products ({snap['items_not_yet_launched']} "
                     f"not yet launched), {snap['events']:,} events")
    sc.phases.phase("shop: generate, export before the drift, catalogue")
    sc.step("shop generated", shop={k: summary_[k] for k in ("items", "users", "events", "days")}, drift=d,
            snapshot=snap)
    return Shop(raw, before, catalogue)


def story_registry(sc: Scene):
    """The configured registry, or the story's own, fresh each run so a re-run tells the same story."""
    cfg = sc.cfg
    if not (cfg.registry.home or cfg.registry.tracking_uri or os.environ.get("SHELFOPS_HOME")):
        shutil.rmtree(sc.workdir / "registry", ignore_errors=True)
        home = (sc.workdir / "registry").resolve()
        # its own MLflow store too: a $MLFLOW_TRACKING_URI in the shell is not the story's registry
        sc.cfg = cfg.model_copy(update={"registry": cfg.registry.model_copy(
            update={"home": str(home), "tracking_uri": f"sqlite:///{home / 'mlflow.db'}"})})
    return registry_from(sc.cfg.registry)


def act_v1(sc: Scene, reg, shop: Shop):
    """② train + ③ optimize + ④ gate + ⑤ register v1 on the export from before the drift."""
    sc.console.print(Rule("② train + ③ optimize + ④ gate + ⑤ register: v1 on the shop before the drift"))
    sc.console.print(f"registry: {redact.url(reg.tracking_uri)}")
    v1 = build_release(shop.before, sc.workdir, sc.cfg, reg, sc.name, label="v1", report_dir=sc.reports,
                       say=sc.console.print, progress=sc.progress)
    if not v1.gate_passed:
        sc.console.print(f"[red]v1 failed its gate ({', '.join(v1.failed)}); the story needs a first version "
                         "to serve: promoting it with a written reason[/]")
    reg.promote(sc.name, v1.version, "production", actor="demo", force=not v1.gate_passed,
                reason="first version of the story" + ("" if v1.gate_passed else " (gate failed: forced)"))
    sc.console.print(f"v{v1.version}: NDCG@10 {v1.quality:.4f}, gate {'passed' if v1.gate_passed else 'failed'}, "
                     f"{v1.seconds:.0f} s; now {sc.name}@production")
    sc.phases.release("v1", v1.to_dict())
    sc.step("v1 released", release=v1.to_dict())
    return v1


def act_serve(sc: Scene, reg, shop: Shop, v1):
    """⑥ v1 served over HTTP, following the registry's production alias."""
    cfg = sc.cfg
    sc.console.print(Rule("⑥ serve v1 over HTTP, following the registry; shoppers replayed from the hidden truth"))
    token = secrets.token_hex(16)
    # the config's serve: section, whole, as `shelfops serve` takes it (serve.spec.ReplicaSpec)
    settings = ServeSettings(models={cfg.monitor.task: (v1.folder, v1.version)}, data_dir=shop.catalogue,
                             admin_token=token, serve=cfg.serve, watch=follow_registry(reg, cfg.name),
                             watch_seconds=2.0, registry_view=registry_view(reg, cfg.name),
                             report_dir=sc.reports)
    server = start_in_thread(create_app(settings))
    sc.console.print(f"serving on {server.url} (dashboard: {server.url}/dashboard)")
    sc.phases.phase("serve: start v1")
    return server, token


def act_calm(sc: Scene, url: str, truth, pilot, n_win: int) -> None:
    """The day before the drift: shoppers as usual, and a drift check that finds nothing."""
    day_before = max(0, sc.cfg.data.synthetic.drift_day - 1)
    t0 = time.perf_counter()
    calm = Replay(truth, url, day=day_before, seed=11).run(2 * n_win, concurrency=4)
    pilot.tick()
    rep = pilot.last_drift or {}
    sc.console.print(f"day {day_before}: {calm.searches} searches, click-through {calm.ctr():.2%}, "
                     f"{calm.searches / (time.perf_counter() - t0):.1f} searches/s; drift check: "
                     f"{'DRIFT' if rep.get('drifted') else 'no drift'} "
                     f"({', '.join(rep.get('drifted_features', [])) or 'every feature within its threshold'})")
    sc.phases.phase("traffic before the drift, first drift check", kind="traffic")
    sc.step("traffic before the drift", tally=calm.to_dict(), drift=_brief(rep))


def refused(entries: list[dict]) -> bool:
    """Whether the gate stopped a release among these journal entries."""
    return any(e["step"] == "gate" and e.get("passed") is False for e in entries)


def settled(pilot, since: int):
    """The rollout begun after journal entry ``since`` ended, or the gate refused its release."""
    def done() -> bool:
        row = pilot.controller.row()
        return refused(pilot.journal[since:]) or (row is not None and row.status != "running"
                                                  and len(pilot.journal) > since)
    return done


def act_drift(sc: Scene, pilot, drifted, n_win: int, rate: float, max_rollout_s: float,
              max_quiet_windows: int) -> Outcome:
    """⑦ The drifted shoppers; the autopilot finds the drift, retrains, gates and rolls v2 out;
    then v2 serves the drifted traffic long enough to compare its click-through with v1's."""
    syn, console = sc.cfg.data.synthetic, sc.console
    console.print(Rule(f"⑦ the drift arrives: day {syn.drift_day + 3}'s shoppers; the autopilot takes over"))
    t_drift = time.perf_counter()
    checks0 = pilot.drift_checks

    def settled_or_no_drift() -> bool:  # do not wait for ever on a drift that does not show
        idle = pilot.drift_checks - checks0 >= max_quiet_windows and not any(
            e["step"] == "trigger" for e in pilot.journal)
        return settled(pilot, 0)() or idle

    j0 = len(pilot.journal)
    pilot.run(until=settled_or_no_drift, max_seconds=max_rollout_s)
    sc.phases.journal(pilot.journal[j0:], tail="after the rollout ended")
    trigger_drift = pilot.last_drift  # the check that found the drift (later ones judge v2's traffic)
    if not any(e["step"] == "trigger" for e in pilot.journal):
        rep = pilot.last_drift or {}
        console.print(f"[red]no drift detected in {pilot.drift_checks - checks0} windows of day "
                      f"{syn.drift_day + 3}'s traffic[/] (last check: "
                      + ", ".join(f"{k} {f['value']:.3g}" for k, f in rep.get("features", {}).items()
                                  if isinstance(f.get("value"), (int, float))) + ")")
    row = pilot.controller.row()
    console.print(f"rollout of v{row.candidate if row else '?'}: {row.status if row else 'never started'} "
                  f"({row.reason if row else 'no release passed its gate'}) after "
                  f"{time.perf_counter() - t_drift:.0f} s")
    if row is not None and row.status == "promoted":
        pilot.check_consistency()  # the new production against the golden set it was gated on
        # the shoppers keep shopping on the new production (at full pace: nothing is being
        # built), so both versions have served enough drifted searches to compare what their
        # lists were worth (v1 serves ~400-600 of them before and beside the interleave step)
        target, t_w, j1 = 10 * n_win, time.perf_counter(), len(pilot.journal)
        drifted.rate = None
        while (drifted.tally.by_version.get(row.candidate, {}).get("searches", 0) < target
               and time.perf_counter() - t_w < 180):
            pilot.tick()
            time.sleep(sc.cfg.monitor.every_s)
        drifted.rate = rate
        sc.phases.journal(pilot.journal[j1:], tail=f"v{row.candidate} serves the drifted traffic (CTR sample)")
        console.print(f"v{row.candidate} in production: "
                      f"{drifted.tally.by_version.get(row.candidate, {}).get('searches', 0)} drifted searches "
                      f"served so far ({time.perf_counter() - t_w:.0f} s)")
    sc.step("autopilot after the drift", journal=pilot.journal[:], rollout=row.__dict__ if row else None,
            tally=drifted.tally.to_dict())
    return Outcome(row, trigger_drift)


def act_broken(sc: Scene, pilot, max_rollout_s: float):
    """A deliberately broken v3 (learning rate far too high): the gate, or the canary, stops it."""
    sc.console.print(Rule("a deliberately broken v3 (learning rate far too high): the gate, or the canary"))
    mark = len(pilot.journal)
    v3 = pilot.retrain(["story: a broken release, to show what stops it"])
    if v3["step"] == "shadow":  # it passed the gate: the canary has to catch it
        pilot.run(until=settled(pilot, mark + 1), max_seconds=max_rollout_s)
    sc.phases.journal(pilot.journal[mark:], tail="after the broken release")
    sc.step("broken v3", journal=pilot.journal[mark:])
    return v3["version"], pilot.controller.row()


def act_stale(sc: Scene, pilot, v1: str, v2: str, max_rollout_s: float) -> None:
    """v1 offered again against v2: it passed its own gate when it shipped, so only the
    shoppers can say it is worse now; the interleave step has to stop it."""
    sc.console.print(Rule(f"v{v1} again, against v{v2}: gated when it shipped, worse for today's shoppers"))
    mark = len(pilot.journal)
    pilot.roll_out(v1, f"story: v{v1} again against v{v2}, to show the live signal stop a worse candidate")
    pilot.run(until=settled(pilot, mark + 1), max_seconds=max_rollout_s)
    sc.phases.journal(pilot.journal[mark:], tail=f"after v{v1} was offered again")
    row = pilot.controller.row()
    sc.console.print(f"v{v1} again: {row.status if row else '?'} ({row.reason if row else ''})")
    sc.step("stale v1", journal=pilot.journal[mark:], rollout=row.__dict__ if row else None)
    sc.out["stale"] = {"version": v1, "against": v2, "rollout": row.__dict__ if row else None,
                       "journal": pilot.journal[mark:]}


def upper_p(z: float) -> float:
    """P(Z >= z) for a standard normal Z: the one-sided p of a lift whose z-score is ``z``."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def truth_lift(a: dict, b: dict) -> dict:
    """v2's (``b``) expected clicks per search against v1's (``a``), by the hidden truth, with a
    one-sided Welch z-test (is v1's lower?)."""
    mean = [t["expected"] / t["searches"] for t in (a, b)]
    var = [max(t["expected_sq"] / t["searches"] - m * m, 0.0) / t["searches"] for t, m in zip((a, b), mean)]
    z = (mean[1] - mean[0]) / max(math.sqrt(sum(var)), 1e-12)
    return {"v1": mean[0], "v2": mean[1], "relative": mean[1] / mean[0] - 1 if mean[0] else None,
            "p_value": upper_p(z)}


def paired_lift(before: list[dict], after: list[dict], v1: str, v2: str) -> dict | None:
    """v2's lists against v1's on the same searches (a panel probed twice), by the hidden truth:
    each version's expected clicks per search, the relative lift and a one-sided paired z-test
    (is v2's no better?), over the searches v1 answered the first time and v2 the second."""
    pairs = [(a["expected"], b["expected"]) for a, b in zip(before, after)
             if a["version"] == v1 and b["version"] == v2]
    if len(pairs) < 2:
        return None
    n = len(pairs)
    m1, m2 = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    d = [b - a for a, b in pairs]
    sd = math.sqrt(sum((x - (m2 - m1)) ** 2 for x in d) / (n - 1))
    z = (m2 - m1) / (sd / math.sqrt(n)) if sd > 0 else (math.inf if m2 > m1 else 0.0)
    return {"searches": n, "v1": m1, "v2": m2, "relative": m2 / m1 - 1 if m1 else None,
            "p_value": upper_p(z), "left_out": len(before) - n}


def decided_by(journal: list[dict], version: str) -> dict | None:
    """How the interleave step decided ``version``: searches, wins, losses, p (from its journal)."""
    for e in journal:
        il = (e.get("evidence") or {}).get("interleaving")
        if e.get("version") == version and e["step"] in ("promote", "rollback", "canary") and il:
            cand = e["evidence"].get("candidate") or {}
            return {"searches": cand.get("interleaved"), "wins": cand.get("wins"), "losses": cand.get("losses"),
                    "p_value": il["p_value"], "decision": e["step"]}
    return None


def summary(sc: Scene, v1, pilot, drifted, drift: Outcome, v3_version: str, v3_row, serving: str,
            probes: list[dict]) -> dict:
    """The numbers the story ends on, its checks, the report and story.json."""
    out, row = sc.out, drift.rollout
    by_v = drifted.tally.to_dict()["by_version"]
    ctr = {v: t["ctr"] for v, t in by_v.items()}
    out.update({"name": sc.name, "v1": v1.to_dict(), "drift": _brief(drift.trigger_drift or {}),
                "journal": pilot.journal, "rollout": row.__dict__ if row else None,
                "drifted_traffic_by_version": by_v, "serving_at_end": serving,
                "seconds": round(time.perf_counter() - sc.t_start, 1)})
    v2 = row.candidate if row and row.candidate != v3_version else None
    out["v3"] = {"version": v3_version, "rollout": v3_row.__dict__ if v3_row and v3_row.candidate == v3_version
                 else None}
    lift = None
    if v2 and by_v.get(v2, {}).get("impressions") and by_v.get(v1.version, {}).get("impressions"):
        a, b = by_v[v1.version], by_v[v2]
        lift = {"v1_ctr": ctr[v1.version], "v2_ctr": ctr[v2], "relative": ctr[v2] / ctr[v1.version] - 1,
                # one-sided two-proportion z-test: is v1's click-through lower than v2's?
                "p_value": one_sided_p(a["clicks"], a["impressions"], b["clicks"], b["impressions"]),
                "truth": truth_lift(a, b)}
    paired = (paired_lift(probes[0]["answers"], probes[1]["answers"], v1.version, v2)
              if v2 and len(probes) == 2 else None)
    out["ctr_lift"], out["truth_paired"] = lift, paired
    out["probes"] = [{"seconds": p["seconds"], "answered_by": dict(Counter(a["version"] for a in p["answers"]))}
                     for p in probes]
    out["v2_decided_by_interleaving"] = decided_by(pilot.journal, v2) if v2 else None
    stale = out.get("stale") or {}
    v3_entries = [e for e in pilot.journal if e.get("version") == v3_version]
    out["checks"] = {
        "drift_detected": any(e["step"] == "drift" for e in pilot.journal),
        "v2_promoted": bool(row and row.status == "promoted"),
        # what v2's lists were worth to the drifted shoppers by the hidden truth (their expected
        # clicks), on the same searches asked of both: a shop sees only the clicks, whose noise
        # the interleave step already had to beat
        "v2_better_for_shoppers": bool(paired and paired["relative"] and paired["relative"] > 0
                                       and paired["p_value"] < 0.05),
        "v3_stopped": refused(v3_entries) or any(e["step"] == "rollback" for e in v3_entries),
        "v3_not_serving": serving != v3_version,
        # rolled back, and by the interleave step's evidence (the journal's, not the reason's words)
        "v1_again_rolled_back_by_shoppers": bool(
            stale.get("rollout") and stale["rollout"]["status"] == "rolled_back"
            and (decided_by(stale["journal"], stale["version"]) or {}).get("decision") == "rollback"),
    }
    _table(sc.console, out, v1.version, v2, ctr)
    sc.phases.phase("summary")
    out["timings"] = finish(sc.phases.rows)  # the report shows them; it is timed and added after
    html = write_report(out, sc.workdir, sc.reports)
    sc.phases.phase("report")
    out["timings"] = finish(sc.phases.rows)
    out["timings_by_stage"] = by_stage(out["timings"])
    _timing_table(sc.console, out["timings"], out["timings_by_stage"])
    (sc.workdir / "story.json").write_text(json.dumps(out, indent=2, default=str))
    sc.console.print(f"report: {html}  ·  every alias move: [bold]shelfops registry history {sc.name}[/]")
    return out


def _timing_table(console: Console, rows: list[dict], stages: dict[str, float]) -> None:
    t = Table(title=f"where the story's {sum(r['seconds'] for r in rows):.0f} s went")
    for col in ("step", "seconds", "share"):
        t.add_column(col, justify="left" if col == "step" else "right")
    for r in rows:
        t.add_row(r["step"], f"{r['seconds']:.1f}", f"{r['share']:.1%}",
                  style="dim" if r["kind"] == "traffic" else None)
    console.print(t)
    console.print("by stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()))


def json_get(url: str) -> dict:
    import httpx

    return httpx.get(url, timeout=30).raise_for_status().json()


def _brief(rep: dict) -> dict:
    return {"drifted": rep.get("drifted"), "features": rep.get("drifted_features"),
            "samples": rep.get("samples"), "chart": rep.get("chart"),
            "values": {k: {"value": f["value"], "threshold": f["threshold"], "drifted": f["drifted"]}
                       for k, f in (rep.get("features") or {}).items()}}


def _table(console: Console, out: dict, v1: str, v2: str | None, ctr: dict) -> None:
    t = Table(title=f"the story in {out['seconds']:.0f} s")
    t.add_column("step")
    t.add_column("what happened")
    for e in out["journal"]:
        t.add_row(e["step"], e["message"])
    console.print(t)
    c = Table(title="online click-through on the drifted traffic (shoppers' clicks / results shown)")
    for col in ("version", "searches", "impressions", "clicks", "CTR"):
        c.add_column(col)
    for v, s in out["drifted_traffic_by_version"].items():
        c.add_row(f"v{v}" + (" (before the drift)" if v == v1 else " (retrained)" if v == v2 else ""),
                  str(s["searches"]),
                  str(s["impressions"]), str(s["clicks"]), f"{s['ctr']:.2%}" if s["ctr"] is not None else "-")
    console.print(c)
    if out.get("ctr_lift"):
        lf = out["ctr_lift"]
        tr = lf["truth"]
        console.print(f"by the hidden truth, the lists each served to the drifted shoppers were worth {tr['v2']:.3f} "
                      f"clicks per search (v2), {tr['v1']:.3f} (v1) ({tr['relative']:+.0%}, one-sided p = "
                      f"{tr['p_value']:.2g})")
        console.print(f"v2 vs v1 on the drifted traffic: {lf['v2_ctr']:.2%} vs {lf['v1_ctr']:.2%} "
                      f"({lf['relative']:+.0%}, one-sided p = {lf['p_value']:.2g})")
    tp = out.get("truth_paired")
    if tp:
        console.print(f"on the same {tp['searches']} drifted searches asked of both, by the hidden truth: v2's lists "
                      f"{tp['v2']:.3f} expected clicks per search, v1's {tp['v1']:.3f} ({tp['relative']:+.0%}, "
                      f"paired one-sided p = {tp['p_value']:.2g}; asked as the builds of v2 and v3 began, in "
                      + " and ".join(f"{p['seconds']:.0f} s" for p in out["probes"]) + ", counted in those builds' rows of the timing table)")
    il = out.get("v2_decided_by_interleaving")
    if il:
        console.print(f"v2's interleave step decided ({il['decision']}) after {il['searches']} interleaved searches: "
                      f"shoppers preferred v2's picks in {il['wins']}, v1's in {il['losses']} "
                      f"(always-valid p = {il['p_value']:.2g})")
    for k, ok in out["checks"].items():
        console.print(f"{'[green]yes[/]' if ok else '[red]NO[/]'}  {k.replace('_', ' ')}")
