"""Thresholds shared by the gate and by the config schema (no heavy imports here)."""

from __future__ import annotations

# a query (golden group) within these moved, but was not reshuffled: the per-query bound of
# ranking_consistency, of the gate's parity for an approximate variant (int8, pruned) and of
# optimize's churn check for such a variant
CHURN_MIN_OVERLAP = 0.7
CHURN_MIN_TAU = 0.5
