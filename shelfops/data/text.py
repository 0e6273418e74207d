"""Text cleaning for titles, descriptions and queries: HTML, unicode, whitespace."""

from __future__ import annotations

import html

import polars as pl

_TAG = r"<[^<>]{0,200}>"
_ENTITY = r"&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"


def _unescape(s: str | None) -> str | None:
    return None if s is None else html.unescape(s)


def clean_text_expr(expr: pl.Expr, *, strip_html: bool = True) -> pl.Expr:
    """Vectorised: strip tags, unescape entities, NFKC-normalise, collapse whitespace.

    Empty results become null so that "required" checks see them as missing.
    """
    out = expr.cast(pl.String)
    if strip_html:
        out = out.str.replace_all(_TAG, " ")
        out = (
            pl.when(out.str.contains(_ENTITY))
            .then(out.map_elements(_unescape, return_dtype=pl.String, skip_nulls=True))
            .otherwise(out)
        )
    out = out.str.normalize("NFKC").str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(out.str.len_chars() == 0).then(None).otherwise(out)


def normalise_query(expr: pl.Expr) -> pl.Expr:
    """The grouping key of a query: lowercase, single spaces."""
    return expr.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
