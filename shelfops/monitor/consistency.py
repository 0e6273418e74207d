"""Scheduled consistency check: does the production version still answer its golden set
the way it did when it was gated?

The gate stores what the version answered on its golden queries (``golden.json`` beside
``gate.json``, kept with the version in the registry). This check loads the version again
(checksums verified), re-scores the same golden groups and applies the gate's parity test
(top-10 overlap and Kendall tau per group, the share of groups that pass). A different
runtime, library, CPU or a damaged file shows up here before shoppers notice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from shelfops.gate.checks import parity_with_reference
from shelfops.gate.recipe import score_groups
from shelfops.optimize.shipped import load_shipped


def check_consistency(folder: Path, golden_file: Path, *, min_pass_rate: float) -> dict:
    """``min_pass_rate``: the gate's parity bar (``gate.parity_min_pass_rate``)."""
    g = json.loads(Path(golden_file).read_text())
    t0 = time.perf_counter()
    now = [np.asarray(x, np.float64) for x in score_groups(load_shipped(Path(folder)).offline(), g["queries"],
                                                           g["candidates"])]
    ref = [np.asarray(x, np.float64) for x in g["scores"]]
    r = parity_with_reference(ref, now, min_pass_rate=min_pass_rate)
    max_diff = max((float(np.max(np.abs(a - b))) for a, b in zip(ref, now) if len(a)), default=0.0)
    return {"passed": r.passed, "groups": len(ref), "max_abs_diff": max_diff,
            "seconds": round(time.perf_counter() - t0, 2), "numbers": r.numbers, "details": r.details}
