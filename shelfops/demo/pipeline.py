"""The stages in order: the demo story on the built-in synthetic shop.

    ① data -> ② train -> ③ optimize -> ④ gate -> ⑤ registry -> ⑥ serve -> ⑦ monitor

Each step prints what it did with its numbers; every stage writes its own artifact
folder (manifest.json last) under the work folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from shelfops import redact
from shelfops.config.load import PRESETS, load_config
from shelfops.data import recipe as data_recipe
from shelfops.demo.story import story as run_story
from shelfops.gate.recipe import gate_settings_from
from shelfops.optimize import recipe as opt_recipe
from shelfops.registry.registry import registry_from
from shelfops.registry.release import release
from shelfops.sim import shop
from shelfops.tasks import TASKS
from shelfops.train import recipe as train_recipe

DEFAULT_CONFIG = PRESETS / "synthetic.yaml"  # package data: found by an installed shelfops too


def _setup(workdir: Path, config: Path | None, overrides: list[str] | None, console: Console):
    """The config (the built-in shop's by default), the work folder, and a pseudonymisation key."""

    cfg = load_config(config or DEFAULT_CONFIG, overrides or [])
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not (cfg.data.privacy.key or os.environ.get(cfg.data.privacy.key_env)):
        key_file = workdir / ".pseudonym-key"
        if not key_file.exists():
            import secrets

            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
            console.print(f"[yellow]demo:[/] generated a pseudonymisation key in {key_file} "
                          f"(set {cfg.data.privacy.key_env} to use your own)")
        os.environ[cfg.data.privacy.key_env] = key_file.read_text().strip()
    return cfg, workdir


def story(workdir: Path, *, config: Path | None = None, overrides: list[str] | None = None,
          console: Console | None = None) -> dict:
    """The whole story (shelfops.demo.story): v1, serve, drift, autopilot, v2 promoted, v3 stopped."""

    console = console or Console()
    cfg, workdir = _setup(workdir, config, overrides, console)
    return run_story(workdir, cfg, console)


def demo(workdir: Path, *, config: Path | None = None, overrides: list[str] | None = None,
         console: Console | None = None, train: bool = True) -> dict:
    """The stages one after another: data, four tasks trained, optimized, gated, registered."""

    console = console or Console()
    cfg, workdir = _setup(workdir, config, overrides, console)
    results: dict = {}
    console.print(Rule("① data: synthetic shop -> clean, labelled, split tables"))
    t0 = time.perf_counter()
    specs, summary = shop.export(cfg.data.synthetic, workdir / "shop-source")
    m = data_recipe.run(cfg.data, workdir / "data", specs=specs, source_summary=summary,
                        say=console.print, config_dump=cfg.model_dump(mode="json"))
    results["data"] = {"dir": str(workdir / "data"), "seconds": round(time.perf_counter() - t0, 1),
                       "counts": m.counts}
    console.print(data_recipe.funnel_line(m.metrics))
    console.print(f"[green]data stage done[/] in {results['data']['seconds']} s -> "
                  f"{workdir / 'data'} (report: {workdir / 'data' / 'report' / 'report.html'})")

    if train:
        console.print(Rule("② train: four tasks fine-tuned from the pretrained encoder, vs baselines"))
        results["train"] = train_all(workdir / "data", workdir / "models", cfg, console)
        console.print(Rule("③ optimize: faster variants, measured, chosen under the latency SLO"))
        results["optimize"] = optimize_all(workdir / "models", workdir / "optimized", cfg, console)
        console.print(Rule("④ gate + ⑤ registry: check against production, register, promote"))
        results["release"] = release_all(workdir / "optimized", workdir / "gates", cfg, console)
    return results


def release_all(optimized: Path, gates: Path, cfg, console: Console) -> dict:
    """Register each optimized model, gate it against production, promote it if it passed.

    The gate report travels with the MLflow version; ``candidate`` always moves to the new
    version, ``production`` only when every check passed (the previous production becomes
    ``previous``). ``shelfops registry history`` then shows each move with its evidence."""
    from rich.table import Table

    reg = registry_from(cfg.registry)
    out: dict = {}
    table = Table(title=f"④ gate + ⑤ registry ({redact.url(reg.tracking_uri)})")
    for col in ("model", "version", "against", "gate", "failed checks", "production now", "seconds"):
        table.add_column(col)
    for task in ("search", "retrieval", "classify"):
        t0 = time.perf_counter()
        name = f"{cfg.name}-{task}"
        g = release(reg, optimized / task, name, gates, settings=gate_settings_from(cfg.gate),
                    reason="new optimized version from the demo", actor="demo", say=console.print)
        if g.passed:
            why = (f"gate passed against production v{g.production}" if g.production
                   else "first version; every gate check passed")
            reg.promote(name, g.version, "production", reason=why, actor="demo", evidence=g.evidence)
        now = reg.aliases(name).get("production", "-")
        secs = round(time.perf_counter() - t0, 1)
        out[task] = {"name": name, "version": g.version, "gate_passed": g.passed,
                     "failed": g.failed, "production": now, "seconds": secs}
        table.add_row(name, g.version, f"v{g.production}" if g.production else "-",
                      "[green]passed[/]" if g.passed else "[red]failed[/]",
                      ", ".join(g.failed) or "-", f"v{now}", str(secs))
    console.print(table)
    console.print("see every alias move with its evidence: [bold]shelfops registry history[/]")
    return out


def optimize_all(models_dir: Path, out_dir: Path, cfg, console: Console) -> dict:
    """Optimize every text model the demo trained; one table row per model."""
    from rich.table import Table

    out: dict = {}
    table = Table(title=f"③ optimize (validation quality; SLO p99 <= {cfg.optimize.slo_p99_ms:g} ms, "
                        f"quality drop <= {cfg.optimize.max_quality_drop:.0%})")
    for col in ("model", "chosen", "quality (fp32 -> chosen)", "items/s (fp32 best -> chosen)",
                "rejected", "seconds"):
        table.add_column(col)
    for task in ("search", "retrieval", "classify"):
        t0 = time.perf_counter()
        m = opt_recipe.run(models_dir / task, out_dir / task, cfg.optimize, say=console.print,
                           config_dump=cfg.model_dump(mode="json"))
        v = m.metrics["variants"]
        ref, ch = v["torch-fp32"], v.get(m.metrics["chosen"] or "", {})
        ref_ips = (ref.get("setting") or {}).get("items_per_s")
        ch_ips = (ch.get("setting") or {}).get("items_per_s")
        secs = round(time.perf_counter() - t0, 1)
        out[task] = {"dir": str(out_dir / task), "chosen": m.metrics["chosen"],
                     "reason": m.metrics["reason"], "rejected": m.metrics["rejected"], "seconds": secs}
        table.add_row(task, str(m.metrics["chosen"]),
                      f"{ref['quality']:.4f} -> {ch.get('quality', float('nan')):.4f}",
                      f"{ref_ips or 0:,.0f} -> {ch_ips or 0:,.0f}", str(len(m.metrics["rejected"])),
                      str(secs))
    console.print(table)
    return out


HEADLINE = {"search": "ndcg@10", "retrieval": "recall@10", "recommend": "ndcg@10",
            "classify": "accuracy"}


def _value(summary: dict | None, key: str) -> float | None:
    if not summary or key not in summary:
        return None
    v = summary[key]
    return v.get("mean", v.get("estimate")) if isinstance(v, dict) else v


def train_all(data_dir: Path, models_dir: Path, cfg, console: Console) -> dict:
    """Train every task on the demo shop; print one line per task with its baselines."""
    from rich.table import Table

    out: dict = {}
    table = Table(title="② train on the synthetic shop (test split, 95% bootstrap CIs)",
                  caption="beats all: yes = non-overlapping intervals against every baseline; "
                          "paired = the paired difference's interval is above 0 for every one")
    for col in ("task", "metric", "model", "best baseline", "beats all", "seconds"):
        table.add_column(col)
    for task in TASKS:
        t0 = time.perf_counter()
        m = train_recipe.run(task, data_dir, models_dir / task, cfg.train, say=console.print,
                             config_dump=cfg.model_dump(mode="json"))
        key = HEADLINE[task]
        model = _value(m.metrics.get("model"), key)
        base = {n: _value(s, key) for n, s in (m.metrics.get("baselines") or {}).items()}
        base = {n: v for n, v in base.items() if v is not None}
        best = max(base.items(), key=lambda kv: kv[1]) if base else ("-", None)
        secs = round(time.perf_counter() - t0, 1)
        out[task] = {"dir": str(models_dir / task), "metric": key, "model": model,
                     "baselines": base, "beats_baselines": m.metrics.get("beats_baselines"),
                     "beats_baselines_paired": m.metrics.get("beats_baselines_paired"),
                     "seconds": secs}
        table.add_row(task, key, f"{model:.4f}" if model is not None else "-",
                      f"{best[0]} {best[1]:.4f}" if best[1] is not None else "-",
                      train_recipe.verdict(m.metrics), str(secs))
    console.print(table)
    return out
