"""Agreement between two rankings of the same items: how much a candidate moved production's.

Scores are higher-is-better; a ranking is ``argsort(-scores, kind="stable")`` (ties by index).

* top-k overlap: |top-k(a) ∩ top-k(b)| / k, k capped at the group size (1.0 for an empty group);
* Kendall tau: scipy's tau-b; both score vectors constant -> 1.0 (the same "ranking"), exactly
  one constant -> 0.0 (one side lost all ordering), fewer than two items -> 1.0;
* rank-biased overlap (Webber, Moffat & Zobel 2010), extrapolated, on rankings of ids.

Pure functions: the gate's ranking checks, the optimize stage's parity and the scheduled
consistency check all use these, so a number means the same thing wherever it is printed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from scipy.stats import kendalltau as _scipy_kendalltau

from shelfops.errors import ConfigError, DataError

__all__ = ["kendall_tau", "rank_biased_overlap", "ranking", "top_k_overlap"]


def top_k_overlap(ref: np.ndarray, got: np.ndarray, k: int = 10) -> float:
    """|top-k(ref) ∩ top-k(got)| / k, k capped at the group size (1.0 for an empty group)."""
    k = min(k, len(ref))
    if k == 0:
        return 1.0
    a = set(np.argsort(-ref, kind="stable")[:k].tolist())
    b = set(np.argsort(-got, kind="stable")[:k].tolist())
    return len(a & b) / k


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """scipy's tau-b; 1.0 for < 2 items or both constant, 0.0 when only one side is constant."""
    if len(a) < 2:
        return 1.0
    const_a, const_b = bool(np.all(a == a[0])), bool(np.all(b == b[0]))
    if const_a or const_b:
        return 1.0 if const_a and const_b else 0.0
    t = float(_scipy_kendalltau(a, b).statistic)
    return 0.0 if math.isnan(t) else t


def ranking(scores: np.ndarray) -> list[int]:
    return np.argsort(-scores, kind="stable").tolist()


def rank_biased_overlap(a: Sequence[Hashable], b: Sequence[Hashable], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap, RBO_ext (Webber, Moffat & Zobel 2010, eq. 32).

    ``a`` and ``b`` are rankings of ids, best first, without repeats; they may differ in length and
    in content. With S the shorter list (length s), L the longer (length l) and X_d the overlap of
    their first d items (for d > s, all of S against L's first d)::

        RBO_ext = (1-p)/p * (sum_{d=1..l} X_d/d p^d + sum_{d=s+1..l} X_s (d-s)/(s d) p^d)
                  + ((X_l - X_s)/l + X_s/s) p^l

    1.0 for identical lists (and when the shorter list is a prefix of the longer), 0.0 for
    disjoint ones. ``p`` in (0, 1): smaller p weighs the top more (the first d items carry about
    1 - p^d of the weight). Two empty lists give 1.0, one empty list gives 0.0.
    """
    if not 0.0 < p < 1.0:
        raise ConfigError([f"p must be in (0, 1), got {p!r}"], "rank_biased_overlap")
    la, lb = list(a), list(b)
    for name, lst in (("a", la), ("b", lb)):
        if len(set(lst)) != len(lst):
            raise DataError(f"{name} repeats an id; a ranking lists each id once", argument=name)
    short, long_ = (la, lb) if len(la) <= len(lb) else (lb, la)
    s, l_ = len(short), len(long_)
    if l_ == 0:
        return 1.0
    if s == 0:
        return 0.0
    seen_s: set = set()
    seen_l: set = set()
    x = x_s = 0
    total = 0.0
    for d in range(1, l_ + 1):
        item_l = long_[d - 1]
        if d <= s:
            item_s = short[d - 1]
            if item_s == item_l:
                x += 1
            else:
                x += (item_s in seen_l) + (item_l in seen_s)
            seen_s.add(item_s)
        else:
            x += item_l in seen_s
        seen_l.add(item_l)
        weight = p**d
        total += x / d * weight
        if d == s:
            x_s = x
        elif d > s:
            total += x_s * (d - s) / (s * d) * weight
    value = (1.0 - p) / p * total + ((x - x_s) / l_ + x_s / s) * p**l_
    return min(1.0, max(0.0, value))
