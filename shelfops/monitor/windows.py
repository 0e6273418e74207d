"""Traffic windows for the drift check, built from the server's traffic log (``GET /v1/traffic``)."""

from __future__ import annotations

from collections.abc import Iterable

from shelfops.monitor.drift import Window


def window_from_traffic(records: Iterable[dict]) -> Window:
    """One :class:`Window` from traffic-log records: ``kind`` "search" (query, top_category,
    top_score) or an event kind ("click", ...: item, category,
    search: the request id of the search it came from)."""
    w = Window()
    for r in records:
        if r.get("kind") == "search":
            w.queries.append(r["query"])
            if r.get("top_category") is not None:
                w.query_categories.append(r["top_category"])
            if r.get("top_score") is not None:
                w.top_scores.append(float(r["top_score"]))
        elif r.get("kind") == "click":
            # a click without its search id counts as a search of its own (index: unique per record)
            search = r.get("search") or f"click-{len(w.clicked_items)}"
            w.clicked_items.append(r["item"])
            w.click_searches.append(search)
            if r.get("category"):
                w.clicked_categories.append(r["category"])
                w.category_searches.append(search)
    return w
