"""What the Ray backend's gateway costs: searches through `shelfops serve --backend ray` as this
tree runs it (Ray's proxy -> the gateway deployment -> a model replica, over a deployment handle)
and as a git ref before the gateway ran it (Ray's proxy -> the app as Ray's ingress), the same
models, the same registry and the same load, in one run.

    make demo   # a registry
    .venv/bin/python bench/ray_gateway.py --home runs/demo/registry --data runs/demo/data/v1 --before 78ad3b0

Each side: one replica with 1 CPU, 20 warm-up searches, then N searches one at a time and N at
concurrency 8; p50 and p99 of the client's wall time. Writes bench/results/ray_gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["red running shoes", "cordless drill", "wool blanket", "kitchen knife set", "led desk lamp",
           "garden hose 50 ft", "phone case", "coffee grinder", "yoga mat", "usb c cable"]


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--prefix", default="synthetic-shop")
    p.add_argument("--before", default="78ad3b0", help="a ref whose Ray backend has no gateway")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # the tree to time
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray_gateway.json")
    return p.parse_args()


def measure(a: argparse.Namespace) -> dict:
    """In a process of its own, with ``a.measure`` first on sys.path: start, load, stop."""
    sys.path.insert(0, str(a.measure))
    import httpx
    import numpy as np

    from shelfops.serve import ray_backend
    from shelfops.serve.server import free_port

    spec = ray_backend.ReplicaSpec(registry_prefix=a.prefix, registry={"home": str(a.home.resolve())},
                                   data_dir=str(a.data.resolve()), watch_seconds=3600)
    url = ray_backend.start(spec, port=free_port(), num_cpus=2, min_replicas=1, max_replicas=1,
                            log_to_driver=False)
    try:
        c = httpx.Client(base_url=url, timeout=60)
        t0 = time.time()
        while True:
            try:
                if c.get("/readyz").json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.time() - t0 < 300, "not ready"
            time.sleep(0.5)
        for i in range(20):
            c.post("/v1/search", json={"query": QUERIES[i % len(QUERIES)], "k": 10}).raise_for_status()

        async def load(conc: int) -> list[float]:
            out: list[float] = []
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                async def shopper(s: int) -> None:
                    for i in range(s, a.n, conc):
                        t = time.perf_counter()
                        r = await ac.post("/v1/search", json={"query": QUERIES[i % len(QUERIES)], "k": 10})
                        r.raise_for_status()
                        out.append(time.perf_counter() - t)
                await asyncio.gather(*(shopper(s) for s in range(conc)))
            return out

        row = {}
        for conc in (1, 8):
            t = time.perf_counter()
            lat = np.array(asyncio.run(load(conc))) * 1e3
            row[f"c{conc}"] = {"p50_ms": round(float(np.percentile(lat, 50)), 1),
                               "p99_ms": round(float(np.percentile(lat, 99)), 1),
                               "per_s": round(a.n / (time.perf_counter() - t), 1)}
        return row
    finally:
        ray_backend.stop()


def run_side(a: argparse.Namespace, tree: Path) -> dict:
    cmd = [sys.executable, __file__, "--home", str(a.home), "--data", str(a.data), "--prefix", a.prefix,
           "--n", str(a.n), "--measure", str(tree)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not line:
        sys.exit(f"{tree}: failed\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(line[-1][7:])


def main() -> None:
    a = args()
    if a.measure:
        print("RESULT " + json.dumps(measure(a)), flush=True)
        return
    before = Path(f"/tmp/shelfops-before-{a.before}")
    if not before.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), a.before], check=True)
    rows = {}
    try:
        for name, tree in (("ingress (before)", before), ("gateway (this tree)", ROOT)):
            print(f"timing {name} ...", flush=True)
            rows[name] = run_side(a, tree)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    print("| Ray backend | c=1 p50 | c=1 p99 | c=8 p50 | c=8 p99 | c=8 searches/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['c1']['p50_ms']} ms | {r['c1']['p99_ms']} ms | {r['c8']['p50_ms']} ms | "
              f"{r['c8']['p99_ms']} ms | {r['c8']['per_s']} |")
    g, b = rows["gateway (this tree)"], rows["ingress (before)"]
    print(f"gateway / ingress: c=1 p50 {g['c1']['p50_ms'] / b['c1']['p50_ms']:.2f}x, "
          f"c=8 throughput {g['c8']['per_s'] / b['c8']['per_s']:.2f}x")
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
                                 "avx512": "avx512f" in flags, "n": a.n, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
