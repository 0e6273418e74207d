"""Pure decisions: serving settings per variant, and which variant ships.

``tune`` picks, for one variant, the thread count, maximum batch and maximum batch wait
that meet the p99 SLO with the highest throughput (only batch 1 for a variant whose outputs
change with padding, such as dynamic int8, which quantises activations per batch: an input
scored alone is never padded, so it answers the same whatever traffic it arrives with). A request waits at most ``max_wait``
for its batch to fill and then takes one batch's time, so the budget is
``p99(batch) + max_wait <= slo``; waiting longer than one batch's own p50 fills nothing
that the next batch would not, so the wait is capped there.

``select`` rejects every variant whose quality fell by more than the allowed relative
drop (judged on the upper end of the paired-bootstrap interval of the drop when one is
given, so a noisy measurement never lets a loss through), or whose rankings drifted from
the reference, rejects those that cannot meet the SLO, and picks the best of the rest by
the objective. Every rejection carries the numbers that condemned it.

Rankings are judged by what a variant is. An exact variant (the fp32 model, its fp32 ONNX
export) computes the same function, so any reordering is a bug: it must pass strict parity
(``min_pass_rate`` of golden groups with top-10 overlap and tau >= 0.9). An approximate
variant (int8, bf16, pruned, distilled) computes a slightly different function, and on a
shop whose candidates score close together it reorders near-ties even when quality holds;
it is held, like a retrained model at the gate, to the quality budget plus a churn bound
(``min_churn_pass_rate`` of groups keep top-10 overlap >= 0.7 and tau >= 0.5). A collapsed
variant fails both: its quality drops and its rankings are reshuffled wholesale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Objective = Literal["throughput", "latency", "quality"]


@dataclass(frozen=True)
class Setting:
    threads: int  # intra-op threads per model call
    max_batch: int
    max_wait_ms: float
    p50_ms: float
    p99_ms: float
    items_per_s: float
    workers: int = 1  # model calls running at once (each worker forms its own batches)


def tune(points: list[dict], slo_p99_ms: float, *, max_batch: int | None = None,
         prefer_workers_within: float = 0.0) -> Setting | None:
    """Best (threads, batch, wait) under the SLO from measured points, or None if none fits.

    ``points``: dicts with threads, batch, p50_ms, p99_ms, items_per_s (and workers, the calls
    measured running at once; 1 if absent). ``max_batch`` limits the
    batch sizes considered (1 for a variant whose outputs depend on padding: unbatched inputs
    are never padded, so it stays deterministic). Among settings within ``prefer_workers_within``
    (relative) of the best throughput, the one with the fewest threads per call wins: in a
    server the event loop takes a core now and then, and a call spread over every core waits
    at each operator for the thread that lost it, while single-threaded workers side by side
    only slow down by that share (Home Depot, pruned int8: 1 call x 2 threads measured 6%
    faster alone, yet served 714 pairs/s against 1,166 for 2 workers x 1 thread)."""
    ok: list[Setting] = []
    for p in points:
        if p["p99_ms"] > slo_p99_ms or (max_batch is not None and p["batch"] > max_batch):
            continue
        wait = max(0.0, min(slo_p99_ms - p["p99_ms"], p["p50_ms"]))
        ok.append(Setting(int(p["threads"]), int(p["batch"]), round(wait, 2), p["p50_ms"], p["p99_ms"],
                          p["items_per_s"], int(p.get("workers", 1))))
    if not ok:
        return None
    top = max(s.items_per_s for s in ok)
    near = [s for s in ok if s.items_per_s >= top * (1 - prefer_workers_within)]
    return max(near, key=lambda s: (-s.threads, s.items_per_s, -s.workers))


@dataclass
class Candidate:
    name: str
    quality: float
    parity_pass_rate: float
    top10_overlap: float
    kendall_tau: float
    setting: Setting | None  # tuned serving settings; None = cannot meet the SLO
    fp32_items_per_s: float = 0.0  # reference throughput at the same batch size (for ratios)
    padding_max_diff: float = 0.0  # largest output change when batches are padded to max length
    padding_atol: float = float("inf")  # what the gate's determinism check allows for its precision
    approximate: bool = False  # lossy (int8, bf16, pruned, external): quality budget + churn bound
    churn_pass_rate: float = 1.0  # share of golden groups within the churn bound
    quality_drop_high: float | None = None  # upper 95% bound of the relative drop (paired bootstrap)


@dataclass
class Selection:
    chosen: str | None
    reason: str
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    frontier: list[str] = field(default_factory=list)
    objective: str = "throughput"
    slo_p99_ms: float = 0.0
    max_quality_drop: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def relative_drop(reference: float, quality: float) -> float:
    return (reference - quality) / reference if reference else 0.0


def pareto(cands: list[Candidate]) -> list[str]:
    """Names not dominated in (quality up, throughput up), among those with a setting."""
    pts = [(c.name, c.quality, c.setting.items_per_s) for c in cands if c.setting]
    out = []
    for n, q, t in pts:
        if not any((q2 >= q and t2 >= t) and (q2 > q or t2 > t) for _, q2, t2 in pts):
            out.append(n)
    return sorted(out, key=lambda n: -next(t for m, _, t in pts if m == n))


def select(cands: list[Candidate], *, reference: str, slo_p99_ms: float, max_quality_drop: float,
           objective: Objective, min_pass_rate: float, min_churn_pass_rate: float) -> Selection:
    """The variant to ship: the best ``objective`` among those within the quality budget, the
    parity (exact variants) or churn (approximate ones) bar and the latency SLO. Every bar is
    an argument, with no default of its own: the optimize config's (``optimize:``) are the
    ones (``shelfops.optimize.recipe`` passes them)."""
    ref = next((c for c in cands if c.name == reference), None)
    if ref is None:
        raise ValueError(f"reference variant {reference!r} was not measured")
    sel = Selection(None, "", objective=objective, slo_p99_ms=slo_p99_ms,
                    max_quality_drop=max_quality_drop)
    for c in cands:
        drop = relative_drop(ref.quality, c.quality)
        worst = drop if c.quality_drop_high is None else max(drop, c.quality_drop_high)
        bound = "" if c.quality_drop_high is None else f" (95% upper bound {c.quality_drop_high:+.2%})"
        if worst > max_quality_drop:
            sel.rejected[c.name] = (f"quality {c.quality:.4f} vs reference {ref.quality:.4f}: "
                                    f"{drop:+.2%} relative drop{bound} > allowed {max_quality_drop:.2%}")
        elif c.approximate and c.churn_pass_rate < min_churn_pass_rate:
            sel.rejected[c.name] = (f"rankings reshuffled: {c.churn_pass_rate:.1%} of golden groups stay "
                                    f"within the churn bound (< {min_churn_pass_rate:.1%}); top-10 overlap "
                                    f"{c.top10_overlap:.3f}, Kendall tau {c.kendall_tau:.3f}")
        elif not c.approximate and c.parity_pass_rate < min_pass_rate:
            sel.rejected[c.name] = (f"rankings drifted from the reference: {c.parity_pass_rate:.1%} of "
                                    f"golden groups pass (< {min_pass_rate:.1%}); top-10 overlap "
                                    f"{c.top10_overlap:.3f}, Kendall tau {c.kendall_tau:.3f}")
        elif c.padding_max_diff > c.padding_atol and (c.setting is None or c.setting.max_batch > 1):
            sel.rejected[c.name] = (f"outputs depend on batch padding: max |diff| {c.padding_max_diff:.3g} "
                                    f"when padded to max length (> {c.padding_atol:g}) and no unbatched "
                                    f"setting meets p99 <= {slo_p99_ms:g} ms; the gate's determinism "
                                    "check would refuse it batched")
        elif c.setting is None:
            sel.rejected[c.name] = f"no measured setting meets p99 <= {slo_p99_ms:g} ms"
        else:
            sel.accepted.append(c.name)
    sel.frontier = pareto([c for c in cands if c.name in sel.accepted])
    ok = [c for c in cands if c.name in sel.accepted]
    if not ok:
        sel.reason = "no variant meets both the quality budget and the latency SLO"
        return sel
    key = {"throughput": lambda c: (c.setting.items_per_s, c.quality),
           "latency": lambda c: (-c.setting.p99_ms, c.quality),
           "quality": lambda c: (c.quality, c.setting.items_per_s)}[objective]
    best = max(ok, key=key)
    sel.chosen = best.name
    speed = best.setting.items_per_s / ref.setting.items_per_s if ref.setting else float("nan")
    sel.reason = (f"{best.name}: best {objective} among {len(ok)} variant(s) within the budget; "
                  f"{best.setting.items_per_s:.0f} items/s at batch {best.setting.max_batch}, "
                  f"{best.setting.threads} thread(s)"
                  + (f" x {best.setting.workers} workers" if best.setting.workers > 1 else "")
                  + f", p99 {best.setting.p99_ms:.1f} ms "
                  f"(SLO {slo_p99_ms:g} ms); quality {best.quality:.4f} "
                  f"({-relative_drop(ref.quality, best.quality):+.2%} vs {reference})"
                  + (f"; {speed:.2f}x the reference's tuned throughput" if speed == speed else "")
                  + (f"; approximate: {best.churn_pass_rate:.0%} of golden groups within the churn "
                     f"bound, top-10 overlap {best.top10_overlap:.3f}, Kendall tau {best.kendall_tau:.3f}"
                     if best.approximate else ""))
    return sel
