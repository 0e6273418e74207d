"""Prometheus metrics of one server: latency histograms, batch sizes, per-version counts.

Names follow Prometheus' conventions (base units in the name, ``_seconds``, ``_total`` for
counters, ``_ratio`` for fractions) and the registry carries the standard process, platform
and GC collectors, so the usual dashboards work unchanged. Every metric is defined once, in
``DEFINITIONS``; a server records into its own prometheus_client registry (``/metrics``) and,
where a ``mirror`` is set, into a second system with the same names: under Ray Serve each
replica mirrors into Ray's metrics (``serve.ray_backend.ray_mirror``), which every node's
metrics agent exports with the replica as a label, so that a scrape of the Ray nodes sums
all replicas (``/metrics`` through the gateway shows the one replica that answered it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# no ``*_created`` gauge beside every counter and histogram: one more series each that no
# dashboard reads (prometheus_client's switch is process-wide, as its env variable would be)
disable_created_metrics()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # counter | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


DEFINITIONS = {d.name: d for d in (
    Definition("shelfops_request_duration_seconds", "histogram", "request latency in seconds (/v1 and /admin)",
               ("path",), LATENCY_BUCKETS),
    Definition("shelfops_requests_total", "counter", "requests by path, status and served version",
               ("path", "status", "version")),
    Definition("shelfops_errors_total", "counter", "5xx answers by path and served version", ("path", "version")),
    Definition("shelfops_batch_size", "histogram", "inputs per model call", ("task",),
               (1, 2, 4, 8, 16, 32, 64, 128, 256)),
    Definition("shelfops_batch_duration_seconds", "histogram", "model call time in seconds", ("task",),
               LATENCY_BUCKETS),
    Definition("shelfops_feedback_total", "counter", "feedback events by served version",
               ("task", "version", "type")),
    Definition("shelfops_swaps_total", "counter", "hot swaps of a served model", ("task",)),
    Definition("shelfops_watch_errors_total", "counter", "failed registry polls or loads"),
    Definition("shelfops_shadow_overlap_ratio", "histogram", "top-k overlap of shadow vs production answers",
               ("task", "version"), (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)),
)}

# (metric name, label values in its definition's order, value): what a mirror receives
Mirror = Callable[[str, tuple[str, ...], float], None]


class ServeMetrics:
    def __init__(self, mirror: Mirror | None = None) -> None:
        self.registry = r = CollectorRegistry()
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(standard)
        self._made = {name: (Counter(name, d.help, d.labels, registry=r) if d.kind == "counter" else
                             Histogram(name, d.help, d.labels, buckets=d.buckets, registry=r))
                      for name, d in DEFINITIONS.items()}
        self.mirror = mirror
        # online outcomes per (task, version), read by the rollout controller and the dashboard
        self.online: dict[tuple[str, str], dict[str, int]] = {}

    def record(self, name: str, labels: tuple[str, ...] = (), value: float = 1.0) -> None:
        metric = self._made[name]
        child = metric.labels(*labels) if labels else metric
        if DEFINITIONS[name].kind == "counter":
            child.inc(value)
        else:
            child.observe(value)
        if self.mirror is not None:
            self.mirror(name, labels, value)

    def request(self, path: str, status: int, seconds: float, version: str) -> None:
        if not path.startswith(("/v1/", "/admin/")):
            return
        self.record("shelfops_request_duration_seconds", (path,), seconds)
        self.record("shelfops_requests_total", (path, str(status), version))
        if status >= 500:
            self.record("shelfops_errors_total", (path, version))

    def batch(self, task: str, n: int, seconds: float) -> None:
        self.record("shelfops_batch_size", (task,), n)
        self.record("shelfops_batch_duration_seconds", (task,), seconds)

    def feedback(self, task: str, version: str, kind: str) -> None:
        self.record("shelfops_feedback_total", (task, version, kind))
        tally = self.online.setdefault((task, version), {})
        tally[kind] = tally.get(kind, 0) + 1

    def swap(self, task: str) -> None:
        self.record("shelfops_swaps_total", (task,))

    def watch_error(self) -> None:
        self.record("shelfops_watch_errors_total")

    def shadow_overlap(self, task: str, version: str, overlap: float) -> None:
        self.record("shelfops_shadow_overlap_ratio", (task, version), overlap)

    def render(self) -> bytes:
        return generate_latest(self.registry)
