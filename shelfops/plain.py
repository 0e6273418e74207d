"""Plain values every stage shares: text as tokens (the one token rule), and numbers as JSON
(numpy scalars and arrays as Python values, non-finite floats as null)."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

#: a token: a run of letters or digits (any script), after lower-casing; punctuation and "_" split
TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """The lower-cased tokens of ``text``: how queries, titles and drift vocabularies are split."""
    return TOKEN.findall(text.lower())


def jsonable(x: Any, *, drop: Collection[str] = ()) -> Any:
    """``x`` as plain JSON values: mappings with str keys (``drop``: keys left out, at any depth),
    numpy scalars/arrays to Python, tuples to lists, NaN and infinities to None."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, drop=drop) for k, v in x.items() if k not in drop}
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist(), drop=drop)
    if isinstance(x, (list, tuple)):
        return [jsonable(v, drop=drop) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    return x
