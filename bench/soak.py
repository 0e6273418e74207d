"""A long day in half an hour: `shelfops serve` in its own process under steady mixed traffic
(search, impressions and clicks, recommend) for 30 minutes, with a hot swap of the search model
every 3 minutes (a production alias move the server follows) and one full rollout (shadow ->
canary 5/25/50% -> promote, by the controller). Per minute: requests, failed requests, p50 and
p99 of searches, and the server's resident memory, open file descriptors and threads.

    make demo   # or: .venv/bin/python bench/demo_time.py --keep /tmp/demo-keep
    .venv/bin/python bench/soak.py --home runs/demo/registry
    .venv/bin/python bench/soak.py --home runs/demo/registry --minutes 4 --swap-every 1 --rollout-at 2

The load is open-loop (requests leave at the set rate whether or not earlier ones returned), so
a server that slows down shows it in latency instead of quietly getting less work. The bars
(issue 21): no failed request, RSS growth under 10% from minute 5 to the end, and the p99 of
the last 5 minutes within 20% of minutes 5-10. Writes bench/results/soak.json and soak.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, required=True, help="registry home holding <prefix>-search versions")
    p.add_argument("--prefix", default="synthetic-shop")
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--swap-every", type=float, default=3, help="minutes between hot swaps")
    p.add_argument("--rollout-at", type=float, default=15, help="minute the full rollout starts")
    p.add_argument("--rate", type=float, default=6.0, help="searches per second (recommends: a third of it)")
    p.add_argument("--port", type=int, default=8431)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    return p.parse_args()


def process(pid: int) -> dict:
    """Resident memory (MB), open file descriptors and threads of ``pid``, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    field = {line.split(":")[0]: line.split(":")[1].strip() for line in status.splitlines() if ":" in line}
    return {"rss_mb": int(field["VmRSS"].split()[0]) / 1024, "threads": int(field["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Soak:
    def __init__(self, a: argparse.Namespace, url: str, queries: list[str], recommend: bool) -> None:
        self.a, self.url, self.queries, self.recommend = a, url, queries, recommend
        self.answers: list[tuple[float, str, int, float]] = []  # (t, route, status, seconds)
        self.samples: list[dict] = []
        self.events: list[tuple[float, str]] = []  # planned moves: (t, what)
        self.t0 = time.monotonic()
        self.rng = random.Random(0)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def call(self, c: httpx.AsyncClient, route: str, body: dict) -> dict | None:
        t = time.monotonic()
        try:
            r = await c.post(route, json=body)
            status = r.status_code
            doc = r.json() if status == 200 else None
        except httpx.HTTPError:
            status, doc = 0, None
        self.answers.append((t - self.t0, route, status, time.monotonic() - t))
        return doc

    async def shopper_visit(self, c: httpx.AsyncClient, n: int) -> None:
        session = f"soak-{n % 5000}"
        r = await self.call(c, "/v1/search", {"query": self.rng.choice(self.queries), "k": 10, "session": session,
                                              "user": f"u{n % 20000}"})
        if not r or not r["items"]:
            return
        shown = [{"type": "impression", "item_id": it["item_id"], "request_id": r["request_id"]}
                 for it in r["items"][:5]]
        await self.call(c, "/v1/events/batch", {"events": shown})
        if self.rng.random() < 0.3:
            it = self.rng.choice(r["items"][:3])
            await self.call(c, "/v1/events", {"type": "click", "item_id": it["item_id"],
                                              "request_id": r["request_id"], "session": session})

    async def traffic(self, until: float) -> None:
        tasks: set[asyncio.Task] = set()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as c:
            n, gap = 0, 1.0 / self.a.rate
            while self.now() < until:
                n += 1
                t = asyncio.create_task(self.shopper_visit(c, n))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                if self.recommend and n % 3 == 0:
                    r = asyncio.create_task(self.call(c, "/v1/recommend", {"session": f"soak-{n % 5000}", "k": 10}))
                    tasks.add(r)
                    r.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, n * gap - self.now()))
            await asyncio.gather(*tasks)

    async def sample(self, pid: int, until: float) -> None:
        while self.now() < until:
            self.samples.append({"t": self.now(), **process(pid)})
            await asyncio.sleep(10)


def moves(soak: Soak, a: argparse.Namespace, url: str, token: str, stop: threading.Event) -> None:
    """The planned changes, in a thread: a production alias move every ``swap_every`` minutes
    (the server hot-swaps), and at ``rollout_at`` a whole rollout driven by the controller."""
    from shelfops.config.schema import RolloutConfig
    from shelfops.monitor.controller import Controller, HttpServer
    from shelfops.monitor.rollout import policy_from
    from shelfops.registry.registry import Registry

    reg = Registry(home=a.home)
    name = f"{a.prefix}-search"
    passing = [v.version for v in reg.versions(name) if v.gate == "passed"]
    assert len(passing) >= 2, f"{name}: need two versions with a passing gate, have {passing}"
    next_swap, rolled = a.swap_every * 60, False
    while not stop.is_set() and soak.now() < a.minutes * 60:
        if not rolled and soak.now() >= a.rollout_at * 60:
            rolled = True
            prod = reg.aliases(name)["production"]
            cand = next(v for v in passing if v != prod)
            soak.events.append((soak.now(), f"rollout v{cand} starts"))
            ctl = Controller(reg, HttpServer(url, token), name,
                             policy=policy_from(RolloutConfig(
                                 min_dwell_s=20, min_requests=60, min_impressions=200, alpha=0.01,
                                 min_shadow_overlap=0.0, max_p99_ratio=3.0)))
            ctl.start(cand, reason="soak rollout")
            row = ctl.run(every=2, max_seconds=600)
            soak.events.append((soak.now(), f"rollout v{cand} {row.status if row else 'ended'}"))
            next_swap = soak.now() + a.swap_every * 60
        elif soak.now() >= next_swap:
            prod = reg.aliases(name)["production"]
            other = next(v for v in passing if v != prod)
            reg.promote(name, other, "production", reason="soak hot swap", actor="soak", force=True)
            soak.events.append((soak.now(), f"swap v{prod} -> v{other}"))
            next_swap += a.swap_every * 60
        time.sleep(0.5)


def per_minute(soak: Soak) -> list[dict]:
    rows = []
    for m in range(int(max(t for t, *_ in soak.answers) // 60) + 1):
        got = [x for x in soak.answers if m * 60 <= x[0] < (m + 1) * 60]
        lat = [s for _, route, st, s in got if route == "/v1/search" and st == 200]
        proc = [s for s in soak.samples if m * 60 <= s["t"] < (m + 1) * 60]
        rows.append({"minute": m + 1, "requests": len(got), "failed": sum(st != 200 for _, _, st, _ in got),
                     "search_p50_ms": float(np.percentile(lat, 50) * 1e3) if lat else None,
                     "search_p99_ms": float(np.percentile(lat, 99) * 1e3) if lat else None,
                     **({k: proc[-1][k] for k in ("rss_mb", "fds", "threads")} if proc else {})})
    return rows


def plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["minutes"]
    x = [r["minute"] for r in rows]
    fig = Figure(figsize=(10, 6.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True)
    panels = [("search latency (ms)", [("search_p50_ms", "p50"), ("search_p99_ms", "p99")]),
              ("requests / failed per minute", [("requests", "requests"), ("failed", "failed")]),
              ("server RSS (MB)", [("rss_mb", "RSS")]), ("open fds / threads", [("fds", "fds"), ("threads", "threads")])]
    for ax, (title, series) in zip(axes.flat, panels):
        for key, label in series:
            ax.plot(x, [r.get(key) for r in rows], marker=".", label=label)
        for t, what in result["events"]:
            ax.axvline(t / 60, color="grey", alpha=0.3, lw=0.8)
        ax.set_title(title)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("minute (grey: a hot swap or a rollout step)")
    fig.suptitle(f"soak: {result['minutes_run']:.0f} min, {result['requests']:,} requests, "
                 f"{result['failed']} failed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    a = args()
    import polars as pl

    from shelfops.artifacts import read_manifest
    from shelfops.registry.registry import Registry

    reg = Registry(home=a.home)
    name = f"{a.prefix}-search"
    data = Path(read_manifest(reg.load(name, reg.aliases(name)["production"])).extra["data"])
    queries = pl.read_parquet(data / "judgements.parquet")["query"].unique().sort().to_list()
    token = secrets.token_hex(8)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SHELFOPS_ADMIN_TOKEN": token}
    exe = Path(sys.executable).parent / "shelfops"
    log = ROOT / "runs" / "soak-server.log"  # the server's own log (runs/ is not committed)
    log.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([str(exe), "serve", "--registry-prefix", a.prefix, "--port", str(a.port),
                               "--watch-seconds", "2", f"registry.home={a.home}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{a.port}"
    try:
        t0 = time.time()
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=5).json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if server.poll() is not None or time.time() - t0 > 300:
                raise SystemExit(f"the server did not start; see {log}")
            time.sleep(1)
        print(f"server pid {server.pid} ready in {time.time() - t0:.0f} s; soaking {a.minutes:g} min at "
              f"{a.rate:g} searches/s", flush=True)
        served = httpx.get(url + "/readyz", timeout=5).json()["models"]
        soak = Soak(a, url, queries, recommend="recommend" in served)
        print(f"serving {sorted(served)}; recommend traffic {'on' if soak.recommend else 'off (no model)'}")
        stop = threading.Event()
        mover = threading.Thread(target=moves, args=(soak, a, url, token, stop), daemon=True)
        mover.start()

        async def run() -> None:
            until = a.minutes * 60
            progress = asyncio.create_task(report(soak, until))
            await asyncio.gather(soak.traffic(until), soak.sample(server.pid, until))
            progress.cancel()

        asyncio.run(run())
        stop.set()
        mover.join(60)
    finally:
        server.terminate()
        server.wait(30)
    rows = per_minute(soak)
    early = [r["search_p99_ms"] for r in rows if 5 <= r["minute"] <= 10 and r["search_p99_ms"]]
    late = [r["search_p99_ms"] for r in rows if r["minute"] > len(rows) - 5 and r["search_p99_ms"]]
    rss5 = next((r["rss_mb"] for r in rows if r["minute"] >= 5 and "rss_mb" in r), None)
    rss_end = rows[-1].get("rss_mb")
    result = {"minutes_run": soak.now() / 60, "requests": len(soak.answers),
              "failed": sum(st != 200 for _, _, st, _ in soak.answers),
              "failed_by_status": {str(s): sum(st == s for _, _, st, _ in soak.answers)
                                   for s in sorted({st for _, _, st, _ in soak.answers if st != 200})},
              "rss_growth_from_minute_5": (rss_end / rss5 - 1) if rss5 and rss_end else None,
              "p99_last5_over_minutes_5_10": (float(np.median(late)) / float(np.median(early))) if early and late
              else None,
              "events": soak.events, "minutes": rows, "rate_searches_per_s": a.rate,
              "machine": f"{platform.node()} {os.cpu_count()} cpu, python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d")}
    result["bars"] = {"no failed request": result["failed"] == 0,
                      "RSS growth < 10% (minute 5 to end)": (result["rss_growth_from_minute_5"] or 0) < 0.10,
                      "p99 of the last 5 min within 20% of minutes 5-10":
                          abs((result["p99_last5_over_minutes_5_10"] or 1) - 1) <= 0.20}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    plot(result, a.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k not in ("minutes", "events")}, indent=2))
    for r in rows:
        print(r)
    print(f"wrote {a.out} and {a.out.with_suffix('.png')}")


async def report(soak: Soak, until: float) -> None:
    """One line a minute, so a long run shows it is alive."""
    while soak.now() < until:
        await asyncio.sleep(60)
        last = [x for x in soak.answers if x[0] >= soak.now() - 60]
        lat = sorted(s for _, route, st, s in last if route == "/v1/search" and st == 200)
        p99 = lat[int(0.99 * (len(lat) - 1))] * 1e3 if lat else float("nan")
        mem = soak.samples[-1] if soak.samples else {}
        print(f"minute {soak.now() / 60:4.1f}: {len(last)} requests, {sum(x[2] != 200 for x in last)} failed, "
              f"search p99 {p99:.0f} ms, rss {mem.get('rss_mb', 0):.0f} MB, fds {mem.get('fds')}, "
              f"threads {mem.get('threads')}; {soak.events[-1][1] if soak.events else ''}", flush=True)


if __name__ == "__main__":
    main()
