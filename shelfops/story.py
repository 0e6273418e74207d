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
import os
import secrets
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from shelfops import redact
from shelfops.data import recipe as data_recipe
from shelfops.data.snapshot import export_as_of
from shelfops.data.synthetic_truth import ShopTruth
from shelfops.errors import ConfigError
from shelfops.monitor.autopilot import Autopilot, build_release
from shelfops.registry.registry import registry_from
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.controller import HttpServer
from shelfops.serve.rollout import one_sided_p
from shelfops.serve.server import start_in_thread
from shelfops.serve.watch import follow_registry, registry_view
from shelfops.sim.replay import Replay
from shelfops.story_report import write_report
from shelfops.story_timing import Phases, by_stage, finish

#: the broken v3: a fine-tune whose learning rate is far too high diverges in a few steps
#: (shipped as trained, without the optimize stage: the gate must catch it either way)
BROKEN = {"lr": 0.05, "max_steps": 20, "eval_every": None, "warmup_ratio": 0.0, "optimize": False}


def story(workdir: Path, cfg, console: Console, *, searches_per_window: int | None = None,
          max_rollout_s: float = 1500.0, progress: bool = True, rate: float = 12.0,
          build_rate: float = 0.0, max_quiet_windows: int = 8) -> dict:
    phases = Phases()
    t_start = time.perf_counter()
    workdir = Path(workdir)
    reports = workdir / "report"
    reports.mkdir(parents=True, exist_ok=True)
    syn = cfg.data.synthetic
    if syn is None or syn.drift_day is None or syn.drift_day >= syn.days:
        raise ConfigError(["data.synthetic.drift_day: the story needs a drift day inside the shop's days"])
    name = f"{cfg.name}-{cfg.monitor.task}"
    out: dict = {"steps": []}

    def step(title: str, **numbers) -> None:
        out["steps"].append({"title": title, "seconds": round(time.perf_counter() - t_start, 1), **numbers})

    # ---------------------------------------------------------------- ① the shop and v1
    console.print(Rule("① data: the synthetic shop, and its export from before the drift"))
    raw = workdir / "shop"
    summary = data_recipe.generate(syn, raw, progress=False)
    before = workdir / "exports" / "before-drift"
    snap = export_as_of(raw, before, syn.start + timedelta(days=syn.drift_day))
    catalogue = workdir / "catalogue"
    data_recipe.run(cfg.data, catalogue, specs=data_recipe.synthetic_specs(raw), progress=False)
    d = summary["drift"] or {}
    console.print(f"shop: {summary['items']:,} products, {summary['users']:,} shoppers, {summary['events']:,} "
                  f"events over {summary['days']} days; on day {syn.drift_day} [bold]{d.get('trending_category')}"
                  f"[/] starts trending ({d.get('new_items')} new products)")
    console.print(f"export before the drift: {snap['items']:,} products ({snap['items_not_yet_launched']} not yet "
                  f"launched), {snap['events']:,} events")
    phases.phase("shop: generate, export before the drift, catalogue")
    step("shop generated", shop={k: summary[k] for k in ("items", "users", "events", "days")}, drift=d,
         snapshot=snap)

    console.print(Rule("② train + ③ optimize + ④ gate + ⑤ register: v1 on the shop before the drift"))
    if not (cfg.registry.home or cfg.registry.tracking_uri or os.environ.get("SHELFOPS_HOME")):
        # the story's own registry, fresh each run, so a re-run tells the same story
        shutil.rmtree(workdir / "registry", ignore_errors=True)
        cfg = cfg.model_copy(update={"registry": cfg.registry.model_copy(
            update={"home": str((workdir / "registry").resolve())})})
    reg = registry_from(cfg.registry)
    console.print(f"registry: {redact.url(reg.tracking_uri)}")
    v1 = build_release(before, workdir, cfg, reg, name, label="v1", report_dir=reports, say=console.print,
                       progress=progress)
    if not v1.gate_passed:
        console.print(f"[red]v1 failed its gate ({', '.join(v1.failed)}); the story needs a first version to "
                      "serve: promoting it with a written reason[/]")
    reg.promote(name, v1.version, "production", actor="demo", force=not v1.gate_passed,
                reason="first version of the story" + ("" if v1.gate_passed else " (gate failed: forced)"))
    console.print(f"v{v1.version}: NDCG@10 {v1.quality:.4f}, gate {'passed' if v1.gate_passed else 'failed'}, "
                  f"{v1.seconds:.0f} s; now {name}@production")
    phases.release("v1", v1.to_dict())
    step("v1 released", release=v1.to_dict())

    # ---------------------------------------------------------------- ⑥ serve
    console.print(Rule("⑥ serve v1 over HTTP, following the registry; shoppers replayed from the hidden truth"))
    token = secrets.token_hex(16)
    prefix = cfg.name
    settings = ServeSettings(models={cfg.monitor.task: (v1.folder, v1.version)}, data_dir=catalogue,
                             admin_token=token, rerank_depth=cfg.serve.rerank_depth,
                             watch=follow_registry(reg, prefix),
                             shadow_fraction=cfg.serve.shadow_fraction, retriever=cfg.serve.retriever,
                             fusion_weight=cfg.serve.fusion_weight, watch_seconds=2.0, registry_view=registry_view(reg, prefix), report_dir=reports)
    server = start_in_thread(create_app(settings))
    console.print(f"serving on {server.url} (dashboard: {server.url}/dashboard)")
    phases.phase("serve: start v1")
    truth = ShopTruth.load(raw)
    export = {"path": before}  # the shop's latest nightly export, as the autopilot finds it
    # the drifted shoppers; one machine runs serving and training here (in production they
    # are apart), so they pause (build_rate 0) while the autopilot builds a release: its
    # training and its latency measurements get the cores a build machine would give them
    drifted = Replay(truth, server.url, day=syn.drift_day + 3, seed=12)
    pilot = Autopilot(cfg, reg, HttpServer(server.url, token), name=name, export=lambda: export["path"],
                      workdir=workdir, report_dir=reports, say=console.print,
                      release_overrides=lambda n: BROKEN if n >= 2 else None, progress=progress,
                      on_build=lambda building: setattr(drifted, "rate", build_rate if building else rate))
    n_win = searches_per_window or cfg.monitor.window
    try:
        day_before = max(0, syn.drift_day - 1)
        t0 = time.perf_counter()
        calm = Replay(truth, server.url, day=day_before, seed=11).run(2 * n_win, concurrency=4)
        pilot.tick()
        rep = pilot.last_drift or {}
        console.print(f"day {day_before}: {calm.searches} searches, click-through {calm.ctr():.2%}, "
                      f"{calm.searches / (time.perf_counter() - t0):.1f} searches/s; drift check: "
                      f"{'DRIFT' if rep.get('drifted') else 'no drift'} "
                      f"({', '.join(rep.get('drifted_features', [])) or 'every feature within its threshold'})")
        phases.phase("traffic before the drift, first drift check", kind="traffic")
        step("traffic before the drift", tally=calm.to_dict(), drift=_brief(rep))

        # ------------------------------------------------------------ ⑦ drift, autopilot
        console.print(Rule(f"⑦ the drift arrives: day {syn.drift_day + 3}'s shoppers; the autopilot takes over"))
        export["path"] = raw  # tonight's export has the new products and the new behaviour
        stop = threading.Event()
        player = threading.Thread(target=drifted.run, kwargs={"stop": stop, "concurrency": 4, "rate": rate},
                                  daemon=True)
        player.start()
        t_drift = time.perf_counter()

        def settled(since: int):
            def done() -> bool:  # the rollout ended, or the gate refused the release
                row = pilot.controller.row()
                refused = any(e["step"] == "gate" and "stopped" in e["message"] for e in pilot.journal[since:])
                return refused or (row is not None and row.status != "running" and len(pilot.journal) > since)
            return done

        checks0 = pilot.drift_checks

        def settled_or_no_drift() -> bool:  # do not wait for ever on a drift that does not show
            idle = pilot.drift_checks - checks0 >= max_quiet_windows and not any(
                e["step"] == "trigger" for e in pilot.journal)
            return settled(0)() or idle

        j0 = len(pilot.journal)
        pilot.run(until=settled_or_no_drift, max_seconds=max_rollout_s)
        phases.journal(pilot.journal[j0:], tail="after the rollout ended")
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
            # built), so both versions have served enough drifted searches to compare them: with
            # v1's ~1,000 before and during the canary, 1,000 on v2 give the one-sided test at 0.05
            # about 80% power for a +12% lift (500 and 600: about 60%)
            target, t_w, j1 = 10 * n_win, time.perf_counter(), len(pilot.journal)
            drifted.rate = None
            while (drifted.tally.by_version.get(row.candidate, {}).get("searches", 0) < target
                   and time.perf_counter() - t_w < 180):
                pilot.tick()
                time.sleep(cfg.monitor.every_s)
            drifted.rate = rate
            phases.journal(pilot.journal[j1:], tail=f"v{row.candidate} serves the drifted traffic (CTR sample)")
            console.print(f"v{row.candidate} in production: "
                          f"{drifted.tally.by_version.get(row.candidate, {}).get('searches', 0)} drifted searches "
                          f"served so far ({time.perf_counter() - t_w:.0f} s)")
        step("autopilot after the drift", journal=pilot.journal[:], rollout=row.__dict__ if row else None,
             tally=drifted.tally.to_dict())

        # ------------------------------------------------------------ v3: broken
        console.print(Rule("a deliberately broken v3 (learning rate far too high): the gate, or the canary"))
        mark = len(pilot.journal)
        v3 = pilot.retrain(["story: a broken release, to show what stops it"])
        if v3["step"] == "shadow":  # it passed the gate: the canary has to catch it
            pilot.run(until=settled(mark + 1), max_seconds=max_rollout_s)
        v3_version = v3["version"]
        v3_row = pilot.controller.row()
        phases.journal(pilot.journal[mark:], tail="after the broken release")
        step("broken v3", journal=pilot.journal[mark:])
        stop.set()
        player.join()
        serving = json_get(server.url + "/readyz")["models"][cfg.monitor.task]["version"]
        step("end", tally=drifted.tally.to_dict(), serving=serving)
    finally:
        server.stop()

    # ---------------------------------------------------------------- the summary
    by_v = drifted.tally.to_dict()["by_version"]
    ctr = {v: t["ctr"] for v, t in by_v.items()}
    out.update({"name": name, "v1": v1.to_dict(), "drift": _brief(trigger_drift or {}),
                "journal": pilot.journal, "rollout": row.__dict__ if row else None,
                "drifted_traffic_by_version": by_v, "serving_at_end": serving,
                "seconds": round(time.perf_counter() - t_start, 1)})
    v2 = row.candidate if row and row.candidate != v3_version else None
    out["v3"] = {"version": v3_version, "rollout": v3_row.__dict__ if v3_row and v3_row.candidate == v3_version
                 else None}
    lift = None
    if v2 and by_v.get(v2, {}).get("impressions") and by_v.get(v1.version, {}).get("impressions"):
        a, b = by_v[v1.version], by_v[v2]
        lift = {"v1_ctr": ctr[v1.version], "v2_ctr": ctr[v2], "relative": ctr[v2] / ctr[v1.version] - 1,
                # one-sided two-proportion z-test: is v1's click-through lower than v2's?
                "p_value": one_sided_p(a["clicks"], a["impressions"], b["clicks"], b["impressions"])}
    out["ctr_lift"] = lift
    out["checks"] = {
        "drift_detected": any(e["step"] == "drift" for e in pilot.journal),
        "v2_promoted": bool(row and row.status == "promoted"),
        "v2_ctr_significantly_above_v1": bool(lift and lift["relative"] > 0 and lift["p_value"] < 0.05),
        "v3_stopped": any(e.get("version") == v3_version and (e["step"] == "rollback" or (
            e["step"] == "gate" and "stopped" in e["message"])) for e in pilot.journal),
        "v3_not_serving": serving != v3_version,
    }

    _table(console, out, v1.version, v2, ctr)
    phases.phase("summary")
    out["timings"] = finish(phases.rows)  # the report shows them; it is timed and added after
    html = write_report(out, workdir, reports)
    phases.phase("report")
    out["timings"] = finish(phases.rows)
    out["timings_by_stage"] = by_stage(out["timings"])
    _timing_table(console, out["timings"], out["timings_by_stage"])
    (workdir / "story.json").write_text(json.dumps(out, indent=2, default=str))
    console.print(f"report: {html}  ·  every alias move: [bold]shelfops registry history {name}[/]")
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
        console.print(f"v2 vs v1 on the drifted traffic: {lf['v2_ctr']:.2%} vs {lf['v1_ctr']:.2%} "
                      f"({lf['relative']:+.0%}, one-sided p = {lf['p_value']:.2g})")
    for k, ok in out["checks"].items():
        console.print(f"{'[green]yes[/]' if ok else '[red]NO[/]'}  {k.replace('_', ' ')}")
