"""Ray Serve on a two-node Ray cluster on this machine: searches/s with one replica and with
two, one CPU (one thread) each, the second replica on the second node (issue 19).

Starts `ray start --head` and a worker node (one CPU each; token authentication off, loopback
only), deploys shelfops onto the cluster with 1 replica, sends searches at concurrency 8, then
redeploys with 2 and sends them again. Ray gives an actor asking for 0.8 CPU one OpenMP/torch
thread, and two such replicas cannot share a one-CPU node.

    .venv/bin/python bench/ray_cluster.py --model runs/scale/search --data runs/scale/shop

(bench/search_scale.py's docstring says how to make that model and data.) Writes
bench/results/ray_cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from shelfops.serve import ray_backend
from shelfops.serve.server import free_port

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def ray_cli(*args: str) -> None:
    subprocess.run([RAY, *args], check=True, capture_output=True, timeout=180, env=ENV)


async def load(url: str, n: int, concurrency: int) -> tuple[float, list[float], set[str]]:
    sem, took, who = asyncio.Semaphore(concurrency), [], set()
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        async def one(i: int) -> None:
            async with sem:
                t = time.perf_counter()
                r = await c.post("/v1/search", json={"query": f"wireless headphones {i % 50}", "k": 10})
                r.raise_for_status()
                took.append(1000 * (time.perf_counter() - t))
                who.add(r.headers["x-shelfops-replica"])
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t0), took, who


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--searches", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", type=Path, default=Path("bench/results/ray_cluster.json"))
    args = ap.parse_args()
    import ray

    port = free_port()
    ray_cli("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
            "--include-dashboard=false", "--disable-usage-stats")
    rows = {}
    try:
        ray_cli("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                "--disable-usage-stats")
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        spec = ray_backend.ReplicaSpec(models={"search": (str(args.model.resolve()), "1")},
                                       data_dir=str(args.data.resolve()), serve={"rerank_depth": 10})
        http = free_port()
        for replicas in (1, 2):
            url = ray_backend.start(spec, port=http, min_replicas=replicas, max_replicas=replicas, replica_cpus=0.8)
            with httpx.Client(base_url=url, timeout=60) as c:
                deadline = time.time() + 300
                while True:
                    try:
                        if c.get("/readyz").json().get("ready") and len(
                                {c.get("/healthz").headers["x-shelfops-replica"] for _ in range(20)}) == replicas:
                            break
                    except (httpx.HTTPError, ValueError):
                        pass
                    if time.time() > deadline:
                        raise SystemExit(f"{replicas} replicas not ready in 300 s")
                    time.sleep(1)
            asyncio.run(load(url, 20, args.concurrency))  # warm up
            per_s, took, who = asyncio.run(load(url, args.searches, args.concurrency))
            rows[replicas] = {"searches_per_s": round(per_s, 1), "p50_ms": round(float(np.percentile(took, 50)), 1),
                              "p99_ms": round(float(np.percentile(took, 99)), 1), "replicas_answering": len(who)}
            print(f"{replicas} replica(s): {rows[replicas]}", flush=True)
    finally:
        ray_backend.stop()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=180, env=ENV)
    ratio = rows[2]["searches_per_s"] / rows[1]["searches_per_s"]
    print(f"2 replicas / 1: {ratio:.2f}x searches/s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "model": str(args.model),
                                     "concurrency": args.concurrency, "rows": rows,
                                     "ratio_2_vs_1": round(ratio, 2)}, indent=2))


if __name__ == "__main__":
    main()
