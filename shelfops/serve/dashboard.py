"""The dashboard's data: one JSON document built from what the server already knows.

``GET /dashboard`` is a static page (``dashboard.html``) that polls ``GET /v1/dashboard``:
serving versions, registry versions and aliases with their gate results and alias history,
the rollout timeline with traffic shares, charts written by other stages (optimize's
Pareto front, drift reports; PNG files in ``ServeSettings.report_dir``), and live latency
and throughput of the last minutes in fixed buckets.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(png|html|json)$")


def live_series(samples: Iterable[tuple[float, float]], *, now: float, span_s: float = 300.0,
                bucket_s: float = 10.0) -> list[dict]:
    """Requests per second, p50 and p99 latency (ms) per bucket over the last ``span_s``."""
    n = int(span_s // bucket_s)
    start = now - n * bucket_s
    buckets: list[list[float]] = [[] for _ in range(n)]
    for t, secs in samples:
        if t >= start:
            b = min(n - 1, int((t - start) // bucket_s))
            buckets[b].append(secs * 1e3)
    out = []
    for i, lat in enumerate(buckets):
        a = np.asarray(lat)
        out.append({"t": round(start + (i + 1) * bucket_s, 1), "rps": round(len(lat) / bucket_s, 2),
                    "p50_ms": round(float(np.percentile(a, 50)), 2) if len(a) else None,
                    "p99_ms": round(float(np.percentile(a, 99)), 2) if len(a) else None})
    return out


def charts(report_dir: Path | None) -> list[dict]:
    """PNG charts other stages left in the report folder, newest first."""
    if report_dir is None or not Path(report_dir).is_dir():
        return []
    files = [p for p in Path(report_dir).iterdir() if p.suffix == ".png" and SAFE_NAME.match(p.name)]
    files.sort(key=lambda p: -p.stat().st_mtime)
    return [{"name": p.name, "title": p.stem.replace("-", " ").replace("_", " "),
             "url": f"/dashboard/files/{p.name}", "mtime": p.stat().st_mtime} for p in files]


def report_file(report_dir: Path | None, name: str) -> Path | None:
    """The file ``name`` inside the report folder, or None (no path tricks)."""
    if report_dir is None or not SAFE_NAME.match(name):
        return None
    p = Path(report_dir) / name
    return p if p.is_file() else None


def state_document(state, registry: dict | None, rollouts: dict) -> dict:
    """``rollouts``: serve.routing.rollouts_now, each arm's numbers (interleaving's wins and losses)."""
    now = time.time()
    slots = {t: s.version for t, s in state.host.slots.items()}
    online = {f"{t} v{v}": {"impressions": c.get("impression", 0), "clicks": c.get("click", 0),
                            "ctr": (c.get("click", 0) / c["impression"]) if c.get("impression") else None}
              for (t, v), c in sorted(state.metrics.online.items())}
    return {"now": now, "uptime_s": round(now - state.started, 1), "ready": state.ready,
            "serving": slots, "rollouts": rollouts, "timeline": state.timeline[-200:],
            "online": online, "registry": registry or {},
            "charts": charts(state.settings.report_dir),
            "live": live_series(list(state.live), now=now)}
