"""Traffic windows for the drift check, built from the server's traffic log (``GET /v1/traffic``)."""

from __future__ import annotations

from collections.abc import Iterable

from shelfops.monitor.drift import Window


def window_from_traffic(records: Iterable[dict]) -> Window:
    """One :class:`Window` from traffic-log records: ``kind`` "search" (query, top_category,
    top_score) or an event kind ("click", ...: item, category)."""
    w = Window()
    for r in records:
        if r.get("kind") == "search":
            w.queries.append(r["query"])
            if r.get("top_category") is not None:
                w.query_categories.append(r["top_category"])
            if r.get("top_score") is not None:
                w.top_scores.append(float(r["top_score"]))
        elif r.get("kind") == "click":
            w.clicked_items.append(r["item"])
            if r.get("category"):
                w.clicked_categories.append(r["category"])
    return w
