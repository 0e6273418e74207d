"""Prometheus metrics of one server: latency histograms, batch sizes, per-version counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.latency = Histogram("shelfops_request_seconds", "request latency", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("shelfops_requests_total", "requests by path, status and version",
                                ["path", "status", "version"], registry=r)
        self.errors = Counter("shelfops_errors_total", "5xx answers by path and version", ["path", "version"],
                              registry=r)
        self.batch_size = Histogram("shelfops_batch_size", "inputs per model call", ["task"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.batch_seconds = Histogram("shelfops_batch_seconds", "model call time", ["task"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.feedback_events = Counter("shelfops_feedback_total", "feedback events by served version",
                                       ["task", "version", "type"], registry=r)
        self.swaps = Counter("shelfops_swaps_total", "hot swaps", ["task"], registry=r)
        self.watch_errors = Counter("shelfops_watch_errors_total", "failed registry polls or loads",
                                    registry=r)
        self.shadow_overlap = Histogram("shelfops_shadow_overlap", "top-k overlap of shadow vs production",
                                        ["task", "version"], buckets=(0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0),
                                        registry=r)
        self.online: dict[tuple[str, str], dict[str, int]] = {}

    def request(self, path: str, status: int, seconds: float, version: str) -> None:
        if not path.startswith(("/v1/", "/admin/")):
            return
        self.latency.labels(path).observe(seconds)
        self.requests.labels(path, str(status), version).inc()
        if status >= 500:
            self.errors.labels(path, version).inc()

    def batch(self, task: str, n: int, seconds: float) -> None:
        self.batch_size.labels(task).observe(n)
        self.batch_seconds.labels(task).observe(seconds)

    def feedback(self, task: str, version: str, kind: str) -> None:
        self.feedback_events.labels(task, version, kind).inc()
        tally = self.online.setdefault((task, version), {})
        tally[kind] = tally.get(kind, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)
