"""Gate checks: pure functions that compare a candidate with production (or a variant with its reference).

Every check takes numbers that were already measured (numpy arrays of scores or per-query metric
values), loads nothing, writes nothing, and returns a :class:`GateResult` whose ``numbers`` and
``thresholds`` are plain, JSON-serialisable Python values. A check never raises because the candidate
is bad: it fails with ``details`` that say which number broke which threshold. It raises
:class:`~shelfops.errors.DataError` / :class:`~shelfops.errors.ConfigError` only when its inputs are
malformed (mismatched lengths, NaN scores, no probes at all), because then nothing was measured.

Conventions

* Higher score ranks higher; rankings are ``argsort(-scores, kind="stable")`` (ties by index), the
  same rule as :func:`shelfops.optimize.measure.top_k_overlap`.
* Top-k overlap = |top-k(a) ∩ top-k(b)| / k with k capped at the group size (1.0 for an empty group).
* Kendall tau is scipy's tau-b. Where it is undefined: both score vectors constant -> 1.0 (same
  "ranking"); exactly one constant -> 0.0 (one side lost all ordering, which must not pass);
  fewer than two items -> 1.0.
* Rates are compared with ``>=`` (a pass rate of exactly ``min_pass_rate`` passes) and differences
  with ``<=``.
* :func:`summarize` reports every failed gate together; nothing stops at the first failure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from shelfops.config.schema import CHURN_MIN_OVERLAP, CHURN_MIN_TAU
from shelfops.errors import ConfigError, DataError
from shelfops.eval.agreement import kendall_tau, rank_biased_overlap, ranking, top_k_overlap
from shelfops.eval.metrics import compare
from shelfops.plain import jsonable

__all__ = [
    "GateResult",
    "behavioural",
    "case_whitespace_invariance",
    "determinism",
    "exact_title_top_k",
    "parity_with_reference",
    "quality_non_regression",
    "queries_needed",
    "ranking_consistency",
    "summarize",
    "typo",
    "typo_robustness",
]


# --------------------------------------------------------------------------- result


@dataclass
class GateResult:
    """The outcome of one gate check.

    ``numbers``: what was measured; ``thresholds``: what it was held to; ``details``: one line per
    reason, and on failure each line names the number and the threshold it broke. Values are
    converted to plain JSON types on construction (a non-finite float becomes ``None``).
    """

    name: str
    passed: bool
    numbers: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.passed = bool(self.passed)
        self.numbers = jsonable(self.numbers)
        self.thresholds = jsonable(self.thresholds)
        self.details = [str(d) for d in self.details]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "passed": self.passed,
            "numbers": jsonable(self.numbers),
            "thresholds": jsonable(self.thresholds),
            "details": list(self.details),
        }


def summarize(results: Sequence[GateResult]) -> dict:
    """``{"passed", "failed": [names of every failed gate], "results": [to_dict, ...]}``.

    ``passed`` is True only when there is at least one result and every result passed: an empty
    gate run proves nothing, so it does not pass.
    """
    results = list(results)
    failed = [r.name for r in results if not r.passed]
    return {
        "passed": bool(results) and not failed,
        "failed": failed,
        "results": [r.to_dict() for r in results],
    }


# --------------------------------------------------------------------------- helpers


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _scores(x: Any, name: str) -> np.ndarray:
    """A finite float64 1-D array of scores."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {arr.shape}", argument=name)
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or infinite values", argument=name)
    return arr


def _paired_groups(
    a: Sequence[Any], b: Sequence[Any], a_name: str, b_name: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of ``a`` and ``b`` as finite 1-D arrays, checked for equal counts and equal lengths."""
    if len(a) != len(b):
        raise DataError(
            f"{a_name} has {len(a)} groups but {b_name} has {len(b)}", argument=b_name
        )
    if len(a) == 0:
        raise DataError(f"{a_name} is empty: a gate needs at least one probe", argument=a_name)
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        xa, ya = _scores(x, f"{a_name}[{i}]"), _scores(y, f"{b_name}[{i}]")
        if xa.shape != ya.shape:
            raise DataError(
                f"{a_name}[{i}] has {len(xa)} scores but {b_name}[{i}] has {len(ya)}", argument=b_name
            )
        out.append((xa, ya))
    return out


def _unit(value: float, name: str, where: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError([f"{name} must be in [0, 1], got {value!r}"], where)


def _rate(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else 0.0


# --------------------------------------------------------------------------- quality


def queries_needed(diffs: Sequence[float], *, margin: float, power: float = 0.9, alpha: float = 0.05) -> int:
    """Queries a paired non-inferiority comparison needs to pass, with probability ``power``, a
    candidate exactly as good as production: n = ((z[1 - alpha/2] + z[power]) * sd / margin)^2,
    with ``sd`` the standard deviation of the per-query differences seen in a pilot sample (the
    usual sample size of a non-inferiority test; a better candidate passes with more power).
    A pilot of fewer than two defined differences, or a margin of 0, needs every query (a huge n)."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) < 2 or not margin > 0:
        return 2**31 - 1
    if not 0.0 < power < 1.0:
        raise ConfigError([f"power must be in (0, 1), got {power!r}"], "queries_needed")
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return int(math.ceil((z * float(d.std(ddof=1)) / margin) ** 2))


def quality_non_regression(
    candidate: np.ndarray,
    production: np.ndarray,
    *,
    margin: float = 0.005,
    n_boot: int = 1000,
    metric: str = "ndcg@10",
    seed: int = 0,
    name: str = "quality_non_regression",
    against: str = "production",
) -> GateResult:
    """The candidate is not worse than production on a per-query metric, beyond ``margin``.

    ``name`` / ``against`` relabel the check when the comparison is another one (an approximate
    variant against its own fp32 model: ``quality_vs_reference`` against ``reference``).

    ``candidate[i]`` and ``production[i]`` are the metric of the same query i (NaN queries are
    dropped from both, as :func:`shelfops.eval.metrics.compare` does). Passes when the lower end
    of the 95% paired-bootstrap interval of mean(candidate - production) is >= ``-margin``: a
    candidate only has to show that any loss is smaller than ``margin``, not that it wins; a
    noisy small test set therefore makes the gate stricter, never looser.
    """
    if not margin >= 0.0:
        raise ConfigError([f"margin must be >= 0, got {margin!r}"], "quality_non_regression")
    cmp = compare(candidate, production, n_boot=n_boot, seed=seed, alpha=0.05)
    diff = cmp["diff"]
    numbers = {
        "metric": metric,
        "candidate_mean": cmp["a"]["mean"],
        "production_mean": cmp["b"]["mean"],
        "diff": diff["mean"],
        "ci_low": diff["ci_low"],
        "ci_high": diff["ci_high"],
        "n": cmp["n"],
        "n_dropped": cmp["n_dropped"],
    }
    passed = diff["ci_low"] >= -margin
    summary = (
        f"{metric}: candidate {_fmt(cmp['a']['mean'])} vs {against} {_fmt(cmp['b']['mean'])}, "
        f"diff {_fmt(diff['mean'])} [95% CI {_fmt(diff['ci_low'])}, {_fmt(diff['ci_high'])}] "
        f"over {cmp['n']} queries"
    )
    verdict = (
        f"ci_low {_fmt(diff['ci_low'])} >= -margin {_fmt(-margin)}"
        if passed
        else f"ci_low {_fmt(diff['ci_low'])} < -margin {_fmt(-margin)}: {metric} may have regressed "
        f"by more than {_fmt(margin)}"
    )
    return GateResult(
        name,
        passed,
        numbers,
        {"margin": margin, "ci": 0.95, "n_boot": n_boot},
        [summary, verdict],
    )


# --------------------------------------------------------------------------- parity


def parity_with_reference(
    ref_groups: Sequence[np.ndarray],
    groups: Sequence[np.ndarray],
    *,
    max_abs_diff: float | None = None,
    min_overlap: float = 0.9,
    min_tau: float = 0.9,
    k: int = 10,
    min_pass_rate: float = 0.999,
) -> GateResult:
    """An optimised variant ranks the golden groups like its fp32 reference.

    ``ref_groups[i]`` / ``groups[i]``: the reference's and the variant's scores for golden group
    i's candidates (same items, same order). A group passes when its top-k overlap >=
    ``min_overlap`` and its Kendall tau >= ``min_tau``. The gate passes when the share of passing
    groups >= ``min_pass_rate`` and, if ``max_abs_diff`` is given, the largest absolute score
    difference over all groups <= ``max_abs_diff`` (raw scores matter when a threshold is applied
    to them downstream, not only their order).
    """
    where = "parity_with_reference"
    for name, v in (("min_overlap", min_overlap), ("min_pass_rate", min_pass_rate)):
        _unit(v, name, where)
    pairs = _paired_groups(ref_groups, groups, "ref_groups", "groups")
    overlaps = [top_k_overlap(r, g, k) for r, g in pairs]
    taus = [kendall_tau(r, g) for r, g in pairs]
    ok = [o >= min_overlap and t >= min_tau for o, t in zip(overlaps, taus)]
    diffs = np.concatenate([np.abs(g - r) for r, g in pairs])
    worst_diff = float(diffs.max()) if diffs.size else 0.0
    pass_rate = _rate(ok)
    failing = [i for i, f in enumerate(ok) if not f]
    numbers = {
        "groups": len(pairs),
        "pass_rate": pass_rate,
        "overlap_mean": float(np.mean(overlaps)),
        "overlap_min": float(np.min(overlaps)),
        "tau_mean": float(np.mean(taus)),
        "tau_min": float(np.min(taus)),
        "max_abs_diff": worst_diff,
        "mean_abs_diff": float(diffs.mean()) if diffs.size else 0.0,
        "failing_groups": failing[:20],
    }
    thresholds = {
        "k": k,
        "min_overlap": min_overlap,
        "min_tau": min_tau,
        "min_pass_rate": min_pass_rate,
        "max_abs_diff": max_abs_diff,
    }
    details = [
        f"{len(pairs) - len(failing)}/{len(pairs)} groups pass (top-{k} overlap >= {_fmt(min_overlap)} "
        f"and tau >= {_fmt(min_tau)}); overlap min {_fmt(numbers['overlap_min'])}, "
        f"tau min {_fmt(numbers['tau_min'])}, max |diff| {_fmt(worst_diff)}"
    ]
    passed = True
    if pass_rate < min_pass_rate:
        passed = False
        details.append(
            f"pass_rate {_fmt(pass_rate)} < min_pass_rate {_fmt(min_pass_rate)}; failing groups "
            f"(first 20): {failing[:20]}"
        )
    if max_abs_diff is not None and worst_diff > max_abs_diff:
        passed = False
        details.append(f"max_abs_diff {_fmt(worst_diff)} > allowed {_fmt(max_abs_diff)}")
    return GateResult(where, passed, numbers, thresholds, details)


# --------------------------------------------------------------------------- determinism


def _max_abs_diff(ref: np.ndarray, got: Any, name: str) -> float:
    """max |got - ref|; a NaN in one and not the other counts as infinitely different."""
    g = np.asarray(got, dtype=np.float64)
    if g.shape != ref.shape:
        raise DataError(f"{name} has shape {g.shape} but first has shape {ref.shape}", argument=name)
    if g.size == 0:
        return 0.0
    both_nan = np.isnan(ref) & np.isnan(g)
    with np.errstate(invalid="ignore"):
        d = np.abs(g - ref)
    d = np.where(both_nan, 0.0, np.where(np.isnan(d), np.inf, d))
    return float(d.max())


def determinism(
    first: np.ndarray,
    second: np.ndarray,
    by_batch: Mapping[int, np.ndarray],
    padded: np.ndarray | None,
    *,
    atol: float = 1e-4,
) -> GateResult:
    """The model's outputs do not depend on the run, the batch size or the padding.

    ``first`` / ``second``: the same inputs scored twice (any shape: scores, logits, embeddings);
    ``by_batch[b]``: the same inputs scored with batch size b; ``padded``: scored with extra
    padding, or None for a variant that serves unbatched (never padded). Passes when every
    max |x - first| <= ``atol``. A served score must not change with the traffic it happens to
    be batched with.
    """
    ref = np.asarray(first, dtype=np.float64)
    repeat = _max_abs_diff(ref, second, "second")
    per_batch = {int(b): _max_abs_diff(ref, v, f"by_batch[{b}]") for b, v in sorted(by_batch.items())}
    pad = None if padded is None else _max_abs_diff(ref, padded, "padded")
    measured = {"repeat": repeat, **{f"batch size {b}": d for b, d in per_batch.items()},
                **({} if pad is None else {"padding": pad})}
    broken = {what: d for what, d in measured.items() if not d <= atol}
    numbers = {
        "repeat_max_abs_diff": repeat,
        "batch_max_abs_diff": {str(b): d for b, d in per_batch.items()},
        "padding_max_abs_diff": pad,
        "max_abs_diff": max(measured.values()),
    }
    details = [
        f"max |diff| vs first: repeat {_fmt(repeat)}, "
        + ", ".join(f"batch {b} {_fmt(d)}" for b, d in per_batch.items())
        + (", " if per_batch else "")
        + (f"padding {_fmt(pad)}" if pad is not None else "padding not applicable (serves unbatched)")
    ]
    details += [f"{what}: max_abs_diff {_fmt(d)} > atol {_fmt(atol)}" for what, d in broken.items()]
    return GateResult("determinism", not broken, numbers, {"atol": atol}, details)


# --------------------------------------------------------------------------- ranking


def ranking_consistency(
    names: Sequence[str],
    production: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    *,
    k: int = 10,
    min_overlap: float = CHURN_MIN_OVERLAP,
    min_rbo: float = 0.7,
    min_tau: float = CHURN_MIN_TAU,
    min_pass_rate: float = 0.9,
    worst: int = 10,
    p: float = 0.9,
) -> GateResult:
    """The candidate ranks the golden queries' items much like production does.

    ``production[i]`` / ``candidate[i]``: both models' scores for golden query ``names[i]``'s
    candidate items (same items, same order). Per query: top-k overlap, RBO (``p``) of the two
    rankings (item indices by descending score, stable) and Kendall tau of the scores. A query
    passes when overlap >= ``min_overlap``, rbo >= ``min_rbo`` and tau >= ``min_tau``; the gate
    passes when the share of passing queries >= ``min_pass_rate``. A better model is allowed to
    move some queries; this gate only bounds how many, and ``most_changed`` (the ``worst`` queries
    with the lowest RBO, ties in input order) shows a reviewer which ones moved.
    """
    where = "ranking_consistency"
    for name, v in (("min_overlap", min_overlap), ("min_rbo", min_rbo), ("min_pass_rate", min_pass_rate)):
        _unit(v, name, where)
    if len(names) != len(production):
        raise DataError(
            f"names has {len(names)} entries but production has {len(production)}", argument="names"
        )
    pairs = _paired_groups(production, candidate, "production", "candidate")
    per_query = []
    for name, (prod, cand) in zip(names, pairs):
        overlap = top_k_overlap(prod, cand, k)
        rbo = rank_biased_overlap(ranking(prod), ranking(cand), p)
        tau = kendall_tau(prod, cand)
        ok = overlap >= min_overlap and rbo >= min_rbo and tau >= min_tau
        per_query.append({"name": str(name), "overlap": overlap, "rbo": rbo, "tau": tau, "passed": ok})
    order = sorted(range(len(per_query)), key=lambda i: (per_query[i]["rbo"], i))
    most_changed = [per_query[i] for i in order[: max(worst, 0)]]
    failing = [q["name"] for q in per_query if not q["passed"]]
    pass_rate = _rate([q["passed"] for q in per_query])
    numbers = {
        "queries": len(per_query),
        "pass_rate": pass_rate,
        "overlap_mean": float(np.mean([q["overlap"] for q in per_query])),
        "rbo_mean": float(np.mean([q["rbo"] for q in per_query])),
        "tau_mean": float(np.mean([q["tau"] for q in per_query])),
        "failing": failing,
        "most_changed": most_changed,
        "per_query": per_query,
    }
    thresholds = {
        "k": k,
        "p": p,
        "min_overlap": min_overlap,
        "min_rbo": min_rbo,
        "min_tau": min_tau,
        "min_pass_rate": min_pass_rate,
    }
    details = [
        f"{len(per_query) - len(failing)}/{len(per_query)} golden queries pass; means: top-{k} overlap "
        f"{_fmt(numbers['overlap_mean'])}, rbo {_fmt(numbers['rbo_mean'])}, tau {_fmt(numbers['tau_mean'])}",
        "most changed: "
        + ", ".join(
            f"{q['name']} (overlap {_fmt(q['overlap'])}, rbo {_fmt(q['rbo'])}, tau {_fmt(q['tau'])})"
            for q in most_changed[:5]
        ),
    ]
    passed = pass_rate >= min_pass_rate
    if not passed:
        details.append(
            f"pass_rate {_fmt(pass_rate)} < min_pass_rate {_fmt(min_pass_rate)}; failing queries: "
            + ", ".join(failing[:20])
            + (" ..." if len(failing) > 20 else "")
        )
    return GateResult(where, passed, numbers, thresholds, details)


# --------------------------------------------------------------------------- behavioural


def _overlap_probe_gate(
    name: str,
    base: Sequence[np.ndarray],
    other: Sequence[np.ndarray],
    k: int,
    min_overlap: float,
    min_pass_rate: float,
    what: str,
) -> GateResult:
    _unit(min_overlap, "min_overlap", name)
    _unit(min_pass_rate, "min_pass_rate", name)
    pairs = _paired_groups(base, other, "base", what)
    overlaps = [top_k_overlap(b, o, k) for b, o in pairs]
    ok = [o >= min_overlap for o in overlaps]
    failing = [i for i, f in enumerate(ok) if not f]
    pass_rate = _rate(ok)
    numbers = {
        "probes": len(pairs),
        "pass_rate": pass_rate,
        "overlap_mean": float(np.mean(overlaps)),
        "overlap_min": float(np.min(overlaps)),
        "failing_probes": failing[:20],
    }
    details = [
        f"{len(pairs) - len(failing)}/{len(pairs)} probes keep top-{k} overlap >= {_fmt(min_overlap)} "
        f"under the {what} query (mean {_fmt(numbers['overlap_mean'])}, min {_fmt(numbers['overlap_min'])})"
    ]
    passed = pass_rate >= min_pass_rate
    if not passed:
        details.append(
            f"pass_rate {_fmt(pass_rate)} < min_pass_rate {_fmt(min_pass_rate)}; failing probes "
            f"(first 20): {failing[:20]}"
        )
    thresholds = {"k": k, "min_overlap": min_overlap, "min_pass_rate": min_pass_rate}
    return GateResult(name, passed, numbers, thresholds, details)


def case_whitespace_invariance(
    base: Sequence[np.ndarray],
    variants: Sequence[np.ndarray],
    *,
    k: int = 10,
    min_overlap: float = 0.9,
    min_pass_rate: float = 0.95,
) -> GateResult:
    """Upper-casing the query or adding whitespace barely changes the top k.

    ``base[i]``: golden query i's candidates scored for the query as typed; ``variants[i]``: the
    same candidates for the upper-cased / extra-whitespace query. A probe passes when the top-k
    overlap >= ``min_overlap``; the gate when the share of passing probes >= ``min_pass_rate``.
    Shoppers type in any case and spacing; the results should not care.
    """
    return _overlap_probe_gate(
        "case_whitespace_invariance", base, variants, k, min_overlap, min_pass_rate, "case/whitespace"
    )


def typo_robustness(
    base: Sequence[np.ndarray],
    typo: Sequence[np.ndarray],
    *,
    k: int = 10,
    min_overlap: float = 0.6,
    min_pass_rate: float = 0.8,
) -> GateResult:
    """One typo in the query keeps most of the top k (looser than case/whitespace: a typo can
    legitimately change meaning). Same shapes and rule as :func:`case_whitespace_invariance`;
    :func:`typo` makes the typo'd queries."""
    return _overlap_probe_gate("typo_robustness", base, typo, k, min_overlap, min_pass_rate, "typo")


def exact_title_top_k(ranks: Sequence[int], *, k: int = 10, min_pass_rate: float = 0.9) -> GateResult:
    """Searching a product's exact title finds that product in the top k.

    ``ranks[i]``: 0-based rank of the product whose exact title was probe i's query. A probe passes
    when rank < k; the gate when the share of passing probes >= ``min_pass_rate``.
    """
    where = "exact_title_top_k"
    _unit(min_pass_rate, "min_pass_rate", where)
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise DataError("ranks must be a non-empty list of 0-based ranks", argument="ranks")
    if not np.issubdtype(r.dtype, np.integer) or (r < 0).any():
        raise DataError("ranks must be integers >= 0", argument="ranks")
    ok = r < k
    failing = np.flatnonzero(~ok).tolist()
    pass_rate = float(ok.mean())
    numbers = {
        "probes": int(r.size),
        "pass_rate": pass_rate,
        "mean_rank": float(r.mean()),
        "median_rank": float(np.median(r)),
        "max_rank": int(r.max()),
        "failing_probes": failing[:20],
    }
    details = [f"{int(ok.sum())}/{r.size} exact-title probes rank their product in the top {k}"]
    passed = pass_rate >= min_pass_rate
    if not passed:
        details.append(
            f"pass_rate {_fmt(pass_rate)} < min_pass_rate {_fmt(min_pass_rate)}; failing probes "
            f"(first 20): {failing[:20]}"
        )
    return GateResult(where, passed, numbers, {"k": k, "min_pass_rate": min_pass_rate}, details)


def behavioural(checks: Mapping[str, Sequence[bool]], *, min_pass_rate: float = 0.95) -> GateResult:
    """Generic behavioural gate: ``checks[name]`` lists each probe's pass/fail for that check.

    Passes when every check's pass rate >= ``min_pass_rate``; a check with no probes fails (it
    measured nothing).
    """
    _unit(min_pass_rate, "min_pass_rate", "behavioural")
    if not checks:
        raise DataError("behavioural needs at least one check", argument="checks")
    per_check = {}
    details = []
    broken = []
    for name, outcomes in checks.items():
        flags = [bool(o) for o in outcomes]
        rate = _rate(flags)
        per_check[str(name)] = {"probes": len(flags), "pass_rate": rate}
        details.append(f"{name}: {sum(flags)}/{len(flags)} probes pass")
        if not flags or rate < min_pass_rate:
            broken.append(name)
            details.append(f"{name}: pass_rate {_fmt(rate)} < min_pass_rate {_fmt(min_pass_rate)}")
    numbers = {"checks": per_check, "failing_checks": broken}
    return GateResult("behavioural", not broken, numbers, {"min_pass_rate": min_pass_rate}, details)


_WORD = re.compile(r"[^\W\d_]{4,}")


def typo(text: str, rng: np.random.Generator) -> str:
    """``text`` with one typo: two adjacent, different letters swapped inside one word of >= 4 letters.

    The word and the position are drawn from ``rng``, so a seeded generator gives the same typo
    every time. Text without such a word (or whose words are like "aaaa") comes back unchanged.
    """
    words = []
    for m in _WORD.finditer(text):
        w = m.group()
        spots = [m.start() + i for i in range(len(w) - 1) if w[i] != w[i + 1]]
        if spots:
            words.append(spots)
    if not words:
        return text
    spots = words[int(rng.integers(len(words)))]
    j = spots[int(rng.integers(len(spots)))]
    return text[:j] + text[j + 1] + text[j] + text[j + 2 :]
