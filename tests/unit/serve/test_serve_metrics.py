"""The served metrics follow Prometheus' naming conventions, carry the standard process
collectors, reach a mirror unchanged, and the Grafana dashboard in deploy/ asks only for
metrics a server really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from shelfops.serve.metrics import DEFINITIONS, ServeMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "shelfops-serving.json"


def _exercised(mirror=None) -> ServeMetrics:
    m = ServeMetrics(mirror)
    m.request("/v1/search", 200, 0.02, "1")
    m.request("/v1/search", 503, 0.5, "2")
    m.request("/healthz", 200, 0.001, "")  # not a served route: not counted
    m.batch("search", 8, 0.01)
    m.feedback("search", "1", "click")
    m.swap("search")
    m.watch_error()
    m.shadow_overlap("search", "2", 0.8)
    return m


def _families(m: ServeMetrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}


def test_names_follow_prometheus_conventions_and_process_collectors_are_there():
    fams = _families(_exercised())
    ours = {n: t for n, t in fams.items() if n.startswith("shelfops_")}
    assert {n.removesuffix("_total") if t == "counter" else n for n, t in ours.items()} == \
        {n.removesuffix("_total") if d.kind == "counter" else n for n, d in DEFINITIONS.items()}
    for name, d in DEFINITIONS.items():
        assert re.fullmatch(r"shelfops_[a-z_]+", name)
        if d.kind == "counter":
            assert name.endswith("_total"), name
        else:  # a histogram's name ends in its base unit, or says it counts inputs
            assert name.endswith(("_seconds", "_ratio", "_size")), name
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "python_gc_objects_collected"} <= set(fams)


def test_request_counts_and_the_mirror_sees_every_record_once():
    seen: list[tuple[str, tuple[str, ...], float]] = []
    m = _exercised(lambda name, labels, value: seen.append((name, labels, value)))
    text = m.render().decode()
    assert 'shelfops_requests_total{path="/v1/search",status="200",version="1"} 1.0' in text
    assert 'shelfops_errors_total{path="/v1/search",version="2"} 1.0' in text
    assert "/healthz" not in text
    assert ("shelfops_requests_total", ("/v1/search", "503", "2"), 1.0) in seen
    assert ("shelfops_shadow_overlap_ratio", ("search", "2"), 0.8) in seen
    # one mirrored record per recorded sample, each with its definition's labels
    assert len(seen) == 2 * 2 + 1 + 2 + 1 + 1 + 1 + 1
    assert all(len(labels) == len(DEFINITIONS[name].labels) for name, labels, _ in seen)


def test_the_grafana_dashboard_asks_only_for_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    exported = set()
    for name, kind in _families(_exercised()).items():
        exported |= ({f"{name}_total"} if kind == "counter" else
                     {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name})
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    prefixes = {o["value"] for v in dash["templating"]["list"] if v["name"] == "prefix" for o in v["options"]}
    assert prefixes == {"", "ray_"}  # shelfops serve's /metrics, and Ray's export of the replicas' mirror
    asked = set()
    for e in exprs:
        for prefix in prefixes:
            asked |= set(re.findall(r"\b((?:ray_)?(?:shelfops|process|python)_[a-z_]+)\{",
                                    e.replace("${prefix}", prefix)))
    assert asked and all(n.removeprefix("ray_") in exported for n in asked), sorted(
        n for n in asked if n.removeprefix("ray_") not in exported)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])
