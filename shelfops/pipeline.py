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

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml"


def demo(workdir: Path, *, config: Path | None = None, overrides: list[str] | None = None,
         console: Console | None = None) -> dict:
    from shelfops.config.load import load_config
    from shelfops.data import recipe as data_recipe

    console = console or Console()
    cfg_path = config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    cfg = load_config(cfg_path, overrides or []) if cfg_path else load_config(
        data={"data": {"synthetic": {}}}, overrides=overrides or [])
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

    results: dict = {}
    console.print(Rule("① data: synthetic shop -> clean, labelled, split tables"))
    t0 = time.perf_counter()
    m = data_recipe.run(cfg.data, workdir / "data", raw_dir=workdir / "shop-source",
                        say=console.print, config_dump=cfg.model_dump(mode="json"))
    results["data"] = {"dir": str(workdir / "data"), "seconds": round(time.perf_counter() - t0, 1),
                       "counts": m.counts}
    console.print(data_recipe.funnel_line(m.metrics))
    console.print(f"[green]data stage done[/] in {results['data']['seconds']} s -> "
                  f"{workdir / 'data'} (report: {workdir / 'data' / 'report' / 'report.html'})")
    return results
