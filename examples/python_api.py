"""Every stage from Python, on a small built-in synthetic shop (a few minutes on 2 cores): the
same recipes the CLI's commands call, each returning the manifest it wrote.

    .venv/bin/python examples/python_api.py runs/api-example
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from shelfops.config.load import load_config
from shelfops.data import recipe as data
from shelfops.gate.recipe import gate_settings_from
from shelfops.optimize import recipe as optimize
from shelfops.registry.registry import registry_from
from shelfops.registry.release import release
from shelfops.serve.app import ServeSettings, create_app
from shelfops.sim import shop
from shelfops.train import recipe as train

work = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/api-example")
os.environ.setdefault("SHELFOPS_PSEUDONYM_KEY", secrets.token_hex(16))  # user ids are pseudonymised
cfg = load_config("synthetic", [  # the preset shipped with shelfops, made small
    "data.synthetic.users=300", "data.synthetic.items=300", "data.synthetic.days=8", "data.synthetic.drift_day=5",
    "data.synthetic.judged_queries=120", "train.search.schedule.max_steps=30", "train.bootstrap=200",
    f"registry.home={work / 'registry'}"])

# ① data: generate the shop, validate, clean, label, split, pseudonymise
specs, summary = shop.export(cfg.data.synthetic, work / "shop", progress=False)  # a shop's raw export
data.run(cfg.data, work / "data", specs=specs, source_summary=summary, progress=False)
# ② train: fine-tune the pretrained encoder as a search re-ranker; metrics vs BM25 and zero-shot
m = train.run("search", work / "data", work / "search", cfg.train, progress=False, say=lambda *_: None)
ndcg = {"model": m.metrics["model"]["ndcg@10"], "bm25": m.metrics["baselines"]["bm25"]["ndcg@10"]}
print("test NDCG@10 (mean, 95% interval):", {k: (round(v["mean"], 3), round(v["ci_low"], 3), round(v["ci_high"], 3))
                                            for k, v in ndcg.items()})
# ③ optimize: faster variants measured; the best within the latency SLO is chosen
o = optimize.run(work / "search", work / "search-optimized", cfg.optimize, data_dir=work / "data",
                 progress=False, say=lambda *_: None)
print("chosen variant:", o.metrics["chosen"])
# ④ gate + ⑤ registry: register, gate against production (none yet), promote if it passed
reg = registry_from(cfg.registry)
g = release(reg, work / "search-optimized", "api-shop-search", work / "gates",
            settings=gate_settings_from(cfg.gate), reason="first", actor="example", say=lambda *_: None)
if g.passed:
    reg.promote("api-shop-search", g.version, "production", reason="gate passed", actor="example", evidence=g.evidence)
print("gate:", "passed" if g.passed else f"failed {g.failed}", "· aliases:", reg.aliases("api-shop-search"))
# ⑥ serve: the HTTP app in process (shelfops serve runs the same app under uvicorn); a small
#   shop's few training steps may not pass the gate: then the candidate is served here to try it
alias = "production" if g.passed else "candidate"
app = create_app(ServeSettings(models={"search": (reg.load("api-shop-search", alias), g.version)},
                               data_dir=work / "data"))
with TestClient(app) as client:
    hits = client.post("/v1/search", json={"query": "red running shoes", "k": 3}).json()["items"]
    print(f"search ({alias} v{g.version}):", [(h["title"], round(h["score"], 3)) for h in hits])
