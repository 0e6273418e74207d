"""Render the behaviour report: matplotlib PNG charts and one self-contained HTML page.

Everything here reads only the report dict built by :mod:`shelfops.data.report.dataset`, so a
report loaded back from ``report.json`` renders the same. Charts are drawn on the Agg
canvas without pyplot (no global state, safe in threads); a chart whose section is not
available is simply absent. The page embeds the charts as base64 ``data:`` URIs and
needs nothing else (no scripts, no external CSS).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

Report = dict[str, Any]
COLOURS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6")
LABEL_CHARS = 40


# ------------------------------------------------------------------ charts


def _section(report: Report, *keys: str) -> dict[str, Any] | None:
    node: Any = report
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not node.get("available"):
            return None
    return node


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _label(text: Any) -> str:
    s = str(text)
    return s if len(s) <= LABEL_CHARS else s[: LABEL_CHARS - 1] + "…"


def _hbar(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str,
          colour: str, annotations: Sequence[str] | None = None) -> bytes:
    fig = _figure(7, max(2.0, 0.35 * len(labels) + 1.0))
    ax = fig.add_subplot()
    y = range(len(labels))
    ax.barh(list(y), values, color=colour)
    ax.set_yticks(list(y), [_label(x) for x in labels])
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if annotations:
        for i, (v, a) in enumerate(zip(values, annotations, strict=False)):
            ax.annotate(a, (v, i), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=8)
    ax.margins(x=0.15)
    return _png(fig)


def chart_funnel(report: Report) -> bytes | None:
    f = _section(report, "funnel")
    if f is None:
        return None
    steps = f["steps"]
    names = [s["step"] for s in steps]
    fig = _figure(9, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.bar(names, [s["events"] for s in steps], color=COLOURS[0])
    ax1.set_title("events per step (label: rate from the previous step)", fontsize=10)
    for i, s in enumerate(steps):
        r = s["rate_from_previous"]
        if r is not None:
            ax1.annotate(f"{r:.1%}", (i, s["events"]), ha="center", va="bottom", fontsize=8)
    ax2.bar(names, [s["session_share"] or 0 for s in steps], color=COLOURS[1])
    ax2.set_title("share of sessions reaching the step")
    ax2.set_ylim(0, 1)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


def chart_top_queries(report: Report) -> bytes | None:
    q = _section(report, "queries")
    if q is None or not q["top"]:
        return None
    rows = q["top"]
    ann = ["" if r["ctr"] is None else f"CTR {r['ctr']:.1%}" for r in rows]
    return _hbar([r["query"] for r in rows], [r["searches"] for r in rows],
                 "top queries by searches", "searches", COLOURS[0], ann)


def chart_low_ctr(report: Report) -> bytes | None:
    q = _section(report, "queries")
    if q is None or not q["low_ctr"]:
        return None
    rows = q["low_ctr"]
    ann = [f"{r['impressions']} impr." for r in rows]
    return _hbar([r["query"] for r in rows], [r["ctr"] or 0 for r in rows],
                 f"queries with CTR below {q['low_ctr_threshold']:.0%}", "CTR", COLOURS[3], ann)


def chart_no_result(report: Report) -> bytes | None:
    z = _section(report, "queries", "no_result")
    if z is None or not z["queries"]:
        return None
    rows = z["queries"]
    return _hbar([r["query"] for r in rows], [r["zero_result"] for r in rows],
                 "queries with no results", "searches with no results", COLOURS[1])


def chart_categories(report: Report) -> bytes | None:
    c = _section(report, "categories")
    if c is None or not c["rows"]:
        return None
    rows = c["rows"][:12]
    cols = [("views", "views"), ("clicks", "clicks"), ("add_to_cart", "carts"),
            ("purchases", "purchases")]
    fig = _figure(9, 3.8)
    ax = fig.add_subplot()
    width = 0.8 / len(cols)
    for j, (key, name) in enumerate(cols):
        xs = [i + (j - (len(cols) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [r[key] for r in rows], width, label=name, color=COLOURS[j])
    ax.set_xticks(range(len(rows)), [_label(r["category"]) for r in rows], rotation=30,
                  ha="right", fontsize=8)
    ax.set_yscale("symlog")
    ax.set_title("interactions per top-level category")
    ax.legend(fontsize=8)
    return _png(fig)


def chart_segments(report: Report) -> bytes | None:
    s = _section(report, "segments")
    if s is None:
        return None
    rows = s["rows"]
    labels = [r["segment"] for r in rows] + ["browsers"]
    values = [r["users"] for r in rows] + [s["browsers"]]
    colours = [COLOURS[i % len(COLOURS)] for i in range(len(rows))] + ["#BBBBBB"]
    fig = _figure(8, 3.2)
    ax = fig.add_subplot()
    ax.bar(labels, values, color=colours)
    ax.set_title("users per RFM segment")
    ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


def chart_segment_category(report: Report) -> bytes | None:
    m = _section(report, "segment_category")
    if m is None:
        return None
    segs, cats = m["segments"], m["categories"]
    data = [[v or 0.0 for v in row] for row in m["share"]]
    fig = _figure(max(5.0, 0.8 * len(cats) + 2.5), max(2.2, 0.45 * len(segs) + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cats)), [_label(c) for c in cats], rotation=30, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(segs)), segs, fontsize=8)
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 else "black")
    ax.set_title("share of each segment's interactions by category")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _png(fig)


CHARTS: dict[str, Callable[[Report], bytes | None]] = {
    "funnel": chart_funnel,
    "top_queries": chart_top_queries,
    "low_ctr": chart_low_ctr,
    "no_result": chart_no_result,
    "categories": chart_categories,
    "segments": chart_segments,
    "segment_category": chart_segment_category,
}


def make_charts(report: Report) -> dict[str, bytes]:
    """Chart name -> PNG bytes, for every chart its section supports."""
    out: dict[str, bytes] = {}
    for name, fn in CHARTS.items():
        try:
            png = fn(report)
        except Exception:  # a chart never takes the report down
            log.exception("behaviour report chart %s failed", name)
            continue
        if png:
            out[name] = png
    return out


# ------------------------------------------------------------------ html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #4C78A8;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
.na{color:#a33;font-style:italic}.note{color:#555;font-size:.9rem}
.muted{color:#777}img{max-width:100%;display:block;margin:.6rem 0}
code{background:#f3f5f8;padding:0 .2rem}
"""

_PCT = {"ctr", "share", "rate_from_previous", "rate_from_first", "session_share",
        "session_rate_from_previous", "conversion", "cart_rate", "purchase_share",
        "zero_result_share"}


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return '<span class="muted">–</span>'
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if key in _PCT:
            return f"{v:.1%}"
        return f"{v:,.2f}"
    return html.escape(str(v))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(c, r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(pairs: Sequence[tuple[str, Any]]) -> str:
    return _table([{"measure": k, "value": v} for k, v in pairs])


def _img(charts: dict[str, bytes], name: str, alt: str) -> str:
    png = charts.get(name)
    if not png:
        return ""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _notes(section: dict[str, Any]) -> str:
    return "".join(f'<p class="note">{html.escape(str(n))}</p>' for n in section.get("notes") or [])


def _unavailable(section: Any) -> str | None:
    if not isinstance(section, dict):
        return '<p class="na">not available: section missing</p>'
    if not section.get("available"):
        return f'<p class="na">{html.escape(str(section.get("reason", "not available")))}</p>'
    return None


def _overview(o: dict[str, Any]) -> str:
    keys = ["events", "items", "users", "sessions", "anonymous_events",
            "events_without_timestamp", "first_timestamp", "last_timestamp", "days",
            "items_with_price", "items_with_category"]
    body = _kv([(k.replace("_", " "), o.get(k)) for k in keys])
    if o.get("missing"):
        body += ('<p class="na">missing from this dataset: '
                 + html.escape(", ".join(o["missing"])) + "</p>")
    return body


def _funnel(f: dict[str, Any], charts: dict[str, bytes]) -> str:
    return (_img(charts, "funnel", "funnel")
            + _table(f["steps"])
            + "<h3>events per type</h3>"
            + _table([{"event type": k, "events": v} for k, v in f["counts"].items()])
            + _kv([("sessions", f["sessions"])]))


def _queries(q: dict[str, Any], charts: dict[str, bytes]) -> str:
    cols = ["query", "searches", "impressions", "clicks", "ctr", "add_to_cart", "purchases",
            "zero_result"]
    body = _kv([("searches", q["searches"]), ("distinct queries", q["distinct_queries"]),
                ("impressions on searches", q["impressions"]), ("clicks", q["clicks"]),
                ("CTR", None if q["ctr"] is None else f"{q['ctr']:.1%}")])
    body += f"<h3>top {len(q['top'])} queries</h3>" + _img(charts, "top_queries", "top queries")
    body += _table(q["top"], cols)
    body += (f"<h3>low click-through: CTR below {q['low_ctr_threshold']:.1%} with at least "
             f"{q['min_query_impressions']} impressions ({q['low_ctr_queries']} queries)</h3>")
    body += _img(charts, "low_ctr", "low CTR queries") + _table(q["low_ctr"], cols)
    z = q.get("no_result")
    body += "<h3>searches with no results</h3>"
    na = _unavailable(z)
    if na:
        return body + na
    share = "–" if z["share"] is None else f"{z['share']:.1%}"
    body += (f'<p>{z["searches"]:,} of {z["linked_searches"]:,} linked searches returned '
             f"no results ({share}).</p>")
    return body + _img(charts, "no_result", "queries with no results") + _table(z["queries"])


def _categories(c: dict[str, Any], charts: dict[str, bytes]) -> str:
    return _img(charts, "categories", "categories") + _table(c["rows"])


def _segments(s: dict[str, Any], charts: dict[str, bytes]) -> str:
    body = _kv([("users", s["users"]), ("purchasers", s["purchasers"]),
                ("browsers (no purchase)", s["browsers"])])
    body += _img(charts, "segments", "RFM segments") + _table(s["rows"])
    return body + f'<p class="note">{html.escape(s["method"])}</p>'


def _segment_category(m: dict[str, Any], charts: dict[str, bytes]) -> str:
    rows = [{"segment": s, **{c: ("–" if v is None else f"{v:.1%}")
                              for c, v in zip(m["categories"], row, strict=True)}}
            for s, row in zip(m["segments"], m["share"], strict=True)]
    return _img(charts, "segment_category", "segment by category heatmap") + _table(rows)


def _audience(a: dict[str, Any], charts: dict[str, bytes]) -> str:
    body = _kv([("category", a["category"]), ("chosen by", a["chosen_by"]),
                ("users exported", a["users"]), ("requested size", a["size"]),
                ("file", a["file"])])
    body += f'<p class="note">{html.escape(a["formula"])}</p>'
    return body + f"<h3>top {len(a['preview'])}</h3>" + _table(a["preview"])


SECTIONS: list[tuple[str, str, Callable[[dict[str, Any], dict[str, bytes]], str]]] = [
    ("funnel", "Funnel", _funnel),
    ("queries", "Queries", _queries),
    ("categories", "Category affinity", _categories),
    ("segments", "User segments (RFM)", _segments),
    ("segment_category", "Segment × category", _segment_category),
    ("audience", "Marketing audience", _audience),
]


def render_html(report: Report, charts: dict[str, bytes]) -> str:
    """One self-contained HTML page: every chart in ``charts`` is embedded as base64 PNG."""
    title = html.escape(str(report.get("title", "Behaviour report")))
    parts = [
        (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body>"),
        f"<h1>{title}</h1>",
        (f'<p class="muted">dataset <code>{html.escape(str(report.get("dataset", "")))}</code>'
        f' · generated {html.escape(str(report.get("generated_at", "")))}</p>'),
    ]
    parts += [f'<p class="na">{html.escape(str(n))}</p>' for n in report.get("notes") or []]
    parts.append("<h2>Overview</h2>")
    o = report.get("overview")
    parts.append(_unavailable(o) or _overview(o))
    for key, heading, render in SECTIONS:
        section = report.get(key)
        parts.append(f'<h2 id="{key}">{html.escape(heading)}</h2>')
        na = _unavailable(section)
        if na:
            parts.append(na)
            continue
        try:
            parts.append(render(section, charts) + _notes(section))
        except Exception as e:  # a malformed section shows as such, the page still renders
            log.exception("behaviour report section %s could not be rendered", key)
            parts.append(f'<p class="na">could not render: {html.escape(repr(e))}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)
