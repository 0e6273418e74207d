"""`/v1/search` over a growing catalogue: 10k, 100k and 1M synthetic products, one search model,
one re-rank depth (issue 19: p99 should grow < 2x from 10k to 1M).

For each size: the synthetic shop's catalogue at that size (``catalogue_scale.shop_catalogue``,
the same products as bench/catalogue_scale.py) is written as a data folder; a copy of the
search model is released on it (its manifest names that folder, as a model trained on it
would), with 200 past searches of the shop (other queries than the timed ones) for the index
to be tuned on; the app serves it over real loopback HTTP (uvicorn in this process) with hybrid
retrieval (BM25 + the untuned encoder's index, built and tuned by size) and the re-rank depth
given; once ``/readyz`` says the dense side is ready, 300 of the shop's queries are sent one
at a time after 20 to warm up. Prints p50/p99 of the whole request and of each stage the
server reports (Server-Timing: retrieval, rerank).

A search model to serve (any; its weights do not change latency):

    .venv/bin/shelfops data ingest -c configs/synthetic.yaml --out runs/scale/shop
    .venv/bin/shelfops train --task search --data runs/scale/shop --out runs/scale/search \\
        train.search.schedule.max_steps=30
    .venv/bin/python bench/search_scale.py --model runs/scale/search

The catalogue's embeddings come from the embedding store, so run bench/catalogue_scale.py
first (or wait: the first start at 1M embeds the catalogue, ~10 min on 2 cores).
Writes bench/results/search_scale.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from catalogue_scale import shop_catalogue  # noqa: E402
from demo_time import cpu  # noqa: E402
from serve import parse_timing  # noqa: E402

from shelfops.config.schema import ServeConfig  # noqa: E402
from shelfops.serve.app import ServeSettings, create_app  # noqa: E402
from shelfops.serve.server import start_in_thread  # noqa: E402

PAST = 200  # past searches in the data folder: what the served index is tuned for


def released_on(model: Path, data: Path, out: Path) -> Path:
    """A copy of ``model`` whose manifest says it was built on ``data`` (so the server's release
    filter keeps the whole catalogue, as for a model trained on it)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model, out)
    m = json.loads((out / "manifest.json").read_text())
    m.setdefault("extra", {})["data"] = str(data)
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def pcts(xs: list[float]) -> list[float]:
    return [round(float(np.percentile(xs, 50)), 1), round(float(np.percentile(xs, 99)), 1)]


def one_size(n: int, model: Path, work: Path, depth: int, searches: int) -> dict:
    items, _, queries = shop_catalogue(n, PAST + searches + 20)
    past, queries = queries[:PAST], queries[PAST:]
    data = work / f"data-{n}"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(items.to_arrow(), data / "items.parquet")
    # the shop's past searches, which the served index is tuned for (others than those timed)
    pl.DataFrame({"event_type": ["search"] * PAST, "query": past}).write_parquet(data / "events.parquet")
    served = released_on(model, data, work / f"search-{n}")
    settings = ServeSettings(models={"search": (served, "1")}, data_dir=data,
                             serve=ServeConfig(rerank_depth=depth))
    t = time.perf_counter()
    running = start_in_thread(create_app(settings), timeout=3600)
    try:
        with httpx.Client(base_url=running.url, timeout=120) as c:
            while True:
                dense = c.get("/readyz").json().get("dense", "")
                if dense.endswith("ready") or "failed" in dense:
                    break
                time.sleep(1)
            ready = time.perf_counter() - t
            assert dense.endswith("ready"), dense
            total, stages = [], {}
            for i, q in enumerate(queries):
                s = time.perf_counter()
                r = c.post("/v1/search", json={"query": q, "k": 10})
                took = 1000 * (time.perf_counter() - s)
                assert r.status_code == 200, r.text
                if i < 20:
                    continue
                total.append(took)
                for k, v in parse_timing(r.headers.get("server-timing", "")).items():
                    stages.setdefault(k, []).append(v)
    finally:
        running.stop()
    row = {"items": n, "ready_seconds": round(ready, 1), "dense": dense, "rerank_depth": depth,
           "searches": len(total), "search_ms_p50_p99": pcts(total),
           "stages_ms_p50_p99": {k: pcts(v) for k, v in stages.items() if k not in ("depth",)}}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="a search model folder")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--depth", type=int, default=20, help="re-rank depth, the same at every size")
    ap.add_argument("--searches", type=int, default=300)
    ap.add_argument("--workdir", type=Path, default=Path("runs/scale"))
    ap.add_argument("--json", type=Path, default=Path("bench/results/search_scale.json"))
    args = ap.parse_args()
    rows = [one_size(n, args.model, args.workdir, args.depth, args.searches) for n in args.sizes]
    print("| items | ready s | search p50 / p99 ms | retrieval p50 / p99 ms | rerank p50 / p99 ms | "
          "response p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [" / ".join(map(str, r["stages_ms_p50_p99"].get(k, ["-", "-"])))
                 for k in ("retrieval", "rerank", "response")]
        print(f"| {r['items']:,} | {r['ready_seconds']} | {r['search_ms_p50_p99'][0]} / {r['search_ms_p50_p99'][1]} | "
              + " | ".join(cells) + " |")
    p99 = {r["items"]: r["search_ms_p50_p99"][1] for r in rows}
    growth = p99[max(p99)] / p99[min(p99)]
    print(f"p99 {max(p99):,} items / {min(p99):,} items: {growth:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu(), "model": str(args.model),
                                     "rows": rows, "p99_growth": round(growth, 2)}, indent=2))


if __name__ == "__main__":
    main()
