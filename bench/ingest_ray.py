"""The data stage's ingest on a two-node Ray cluster (``data.engine: ray``) beside the local engine,
on the same synthetic export (bench/data_ingest.py's, cached in --workdir), issue 19.

Each engine runs in a fresh process: the local one with its threads on this machine's cores, the
Ray one as a driver joined (RAY_ADDRESS) to a cluster of two nodes started here with `ray start`
(a head and a worker, one CPU each: the same cores, split into two nodes, so the ratio is what the
distributed engine costs, not what more machines give). The outputs are compared: same rows
kept and quarantined, the same events row for row. Wall time excludes starting the cluster.

    .venv/bin/python bench/ingest_ray.py --sizes 1000000
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_ingest import ensure_shop, size_args  # noqa: E402  (bench/data_ingest.py: the generated exports)
from demo_time import cpu  # noqa: E402
from ray_cluster import ENV, ray_cli  # noqa: E402  (bench/ray_cluster.py: `ray` with token auth off)

CHILD = """
import json, resource, sys, time, shutil
from pathlib import Path
from shelfops.config.schema import DataConfig, SyntheticConfig
from shelfops.data.recipe import export_specs, limits_from, rules_from
from shelfops.data.ingest import ingest
from shelfops.data.ray_ingest import ingest_ray
raw, out, engine = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
cfg = DataConfig(synthetic=SyntheticConfig())  # the CLI's default cleaning rules
run = ingest_ray if engine == "ray" else ingest
t = time.perf_counter()
c = run(export_specs(raw), out, rules=rules_from(cfg), key=b"bench-key-0123456789", limits=limits_from(cfg),
        progress=False)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "events": c["events"]["rows_in"], "kept": c["events"]["kept"],
                  "quarantined": c["events"]["quarantined"], "by_reason": c["events"]["by_reason"]}))
"""


def run(raw: Path, out: Path, engine: str, env: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, str(raw), str(out), engine], capture_output=True,
                         text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def same_events(a: Path, b: Path, whole: bool) -> bool:
    """The engines' events alike: row for row (``whole``), else, streamed in constant memory, the
    same number of rows and the same sum of every column's 64-bit value hashes (order-free)."""
    import polars as pl

    if whole:
        return pl.read_parquet(a / "events.parquet").equals(pl.read_parquet(b / "events.parquet"))

    def digest(p: Path):
        lf = pl.scan_parquet(p / "events.parquet")
        return lf.select(pl.len(), *[pl.col(c).hash(seed=0).sum().alias(c) for c in lf.collect_schema().names()]
                         ).collect(engine="streaming").row(0)

    return digest(a) == digest(b)


def main() -> None:
    a = size_args(__doc__.split("\n\n")[0], [1_000_000], "bench/results/ingest_ray.json")
    from shelfops.serve.server import free_port

    rows = []
    for size in a.sizes:
        raw = ensure_shop(a.workdir, size)
        local = run(raw, a.workdir / f"local-{size}", "local", ENV)
        port = free_port()
        ray_cli("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                "--include-dashboard=false", "--disable-usage-stats")
        try:
            ray_cli("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                    "--disable-usage-stats")
            time.sleep(2)
            dist = run(raw, a.workdir / f"ray-{size}", "ray", {**ENV, "RAY_ADDRESS": f"127.0.0.1:{port}"})
        finally:
            ray_cli("stop", "--force")
        same = (local["kept"], local["quarantined"], local["by_reason"]) == \
            (dist["kept"], dist["quarantined"], dist["by_reason"]) and \
            same_events(a.workdir / f"local-{size}", a.workdir / f"ray-{size}", whole=size <= 10_000_000)
        rows.append({"events": local["events"], "local_s": round(local["seconds"], 1),
                     "local_events_per_s": round(local["events"] / local["seconds"]),
                     "local_peak_rss_mb": round(local["peak_rss_mb"]), "ray_s": round(dist["seconds"], 1),
                     "ray_events_per_s": round(dist["events"] / dist["seconds"]),
                     "ray_driver_peak_rss_mb": round(dist["peak_rss_mb"]),
                     "ray_vs_local": round(local["seconds"] / dist["seconds"], 3), "same_output": same,
                     "kept": local["kept"], "quarantined": local["quarantined"]})
    hdr = ("events", "local s", "local ev/s", "Ray Data, 2 nodes s", "Ray ev/s", "Ray / local throughput",
           "driver RSS MB", "same output")
    print("| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
    for r in rows:
        print(f"| {r['events']:,} | {r['local_s']} | {r['local_events_per_s']:,} | {r['ray_s']} | "
              f"{r['ray_events_per_s']:,} | {r['ray_vs_local']:.2f}x | {r['ray_driver_peak_rss_mb']:,} | "
              f"{'yes' if r['same_output'] else 'NO'} |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"cpu": cpu(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
