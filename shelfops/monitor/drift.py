"""Drift between a reference window of traffic and a current one: pure functions.

Each feature has an effect size judged against a threshold and, where sampling noise can
fake one (PSI grows with the number of categories when windows are small), a test that
must also be significant at ``alpha``:

* numeric features (query length, top-1 score): PSI on the reference's quantile bins, and
  the two-sample Kolmogorov-Smirnov test (scipy);
* categorical mixes (the category of each search's top result, clicked categories, clicked
  items): PSI over the union of categories, and a permutation test of the 2 x K table's
  chi-square statistic that moves whole searches between the windows. Clicks cluster (a
  shopper who wants a duvet clicks two duvets of one search), so the asymptotic chi-square
  test, which counts every click as independent, fired on 8% of pairs of windows drawn from
  one distribution at alpha 0.001; categories too rare for the table (fewer than 5 expected)
  are pooled, as Cochran's rule asks;
* unseen-token rate: the share of query tokens the reference never saw, against the same
  rate between the reference's two halves (what "no drift" looks like for this traffic),
  with a one-sided two-proportion z-test;
* embedding centroid shift: 1 - cosine of the two windows' mean query embeddings, with a
  permutation test (random splits of the pooled queries) for its significance.

A window is a plain :class:`Window`; building one from the server's traffic log lives in
:mod:`shelfops.monitor.windows`. Nothing here does I/O except :func:`plot`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shelfops.config.schema import DriftConfig
from shelfops.plain import tokens

_EPS = 1e-4


@dataclass(frozen=True)
class Thresholds:
    """The config's ``monitor.drift`` (``DriftConfig``, the one source of defaults): build it
    with :func:`thresholds_from`."""

    psi: float  # the usual "significant shift" cut
    alpha: float  # significance the KS / chi-square test must also reach
    unseen_delta: float  # extra share of unseen query tokens over the reference's own
    centroid_shift: float
    min_samples: int  # per window, below this nothing is judged


def thresholds_from(c: DriftConfig) -> Thresholds:
    """The drift thresholds of a config's ``monitor.drift`` section (its ``embeddings`` switch
    is the autopilot's: whether windows carry query embeddings at all)."""
    return Thresholds(**c.model_dump(exclude={"embeddings"}))


@dataclass
class Window:
    """One window of served traffic (one entry per search, per click)."""

    queries: list[str] = field(default_factory=list)
    query_categories: list[str] = field(default_factory=list)  # category of each search's top result
    top_scores: list[float] = field(default_factory=list)
    clicked_items: list[str] = field(default_factory=list)
    clicked_categories: list[str] = field(default_factory=list)
    # the search (request id) each clicked item / clicked category came from, where known
    click_searches: list[str] = field(default_factory=list)
    category_searches: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None  # (n, d) query embeddings, optional

    def __len__(self) -> int:
        return len(self.queries)


def psi(ref: Sequence[float], cur: Sequence[float], bins: int = 10) -> float:
    """Population stability index of ``cur`` against ``ref`` on ``ref``'s quantile bins."""
    r, c = np.asarray(ref, np.float64), np.asarray(cur, np.float64)
    if len(r) == 0 or len(c) == 0:
        return 0.0
    edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
    pr = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1) / len(r)
    pc = np.bincount(np.searchsorted(edges, c, side="right"), minlength=len(edges) + 1) / len(c)
    return _psi(pr, pc)


def psi_categorical(ref: Sequence[str], cur: Sequence[str]) -> float:
    """PSI of two categorical samples over the union of their categories."""
    if not ref or not cur:
        return 0.0
    a, b = Counter(ref), Counter(cur)
    keys = sorted(set(a) | set(b))
    pr = np.array([a[k] for k in keys], np.float64) / len(ref)
    pc = np.array([b[k] for k in keys], np.float64) / len(cur)
    return _psi(pr, pc)


def _psi(pr: np.ndarray, pc: np.ndarray) -> float:
    pr, pc = np.maximum(pr, _EPS), np.maximum(pc, _EPS)
    return float(np.sum((pc - pr) * np.log(pc / pr)))


def ks(ref: Sequence[float], cur: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy.stats import ks_2samp

    if len(ref) == 0 or len(cur) == 0:
        return 0.0, 1.0
    res = ks_2samp(np.asarray(ref, np.float64), np.asarray(cur, np.float64))
    return float(res.statistic), float(res.pvalue)


def chi2_p(ref: Sequence[str], cur: Sequence[str], ref_groups: Sequence[str] | None = None,
           cur_groups: Sequence[str] | None = None, *, n_perm: int = 4999, seed: int = 0) -> float:
    """P-value that two categorical samples share one distribution: the 2 x K table's chi-square
    statistic (categories with fewer than 5 expected pooled) against ``n_perm`` random splits
    that keep each group (``*_groups``: e.g. the search a click came from) whole. Without
    groups every observation is its own group and this is an exact-in-the-limit chi-square test."""
    if not ref or not cur:
        return 1.0
    keys = sorted(set(ref) | set(cur))
    if len(keys) < 2:
        return 1.0
    col = {k: i for i, k in enumerate(keys)}
    counts = _group_counts(ref, ref_groups, col)
    n_ref = len(counts)
    counts = np.vstack([counts, _group_counts(cur, cur_groups, col)])
    total = counts.sum(0)
    rows = np.array([counts[:n_ref].sum(0), counts[n_ref:].sum(0)])
    expected = np.outer(rows.sum(1), total) / total.sum()
    sparse = (expected < 5).any(0)
    if sparse.any():  # pool the sparse categories into one column
        counts = np.hstack([counts[:, ~sparse], counts[:, sparse].sum(1, keepdims=True)])
    if counts.shape[1] < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    g = len(counts)
    masks = np.zeros((n_perm + 1, g), dtype=np.float64)
    masks[0, :n_ref] = 1.0
    for i in range(1, n_perm + 1):
        masks[i, rng.permutation(g)[:n_ref]] = 1.0
    stats = _chi2_stats(masks @ counts, counts.sum(0))
    return float((1 + np.sum(stats[1:] >= stats[0] - 1e-9)) / (1 + n_perm))


def _group_counts(values: Sequence[str], groups: Sequence[str] | None, col: dict[str, int]) -> np.ndarray:
    """One row per group with its count per category."""
    ids = list(groups) if groups is not None and len(groups) == len(values) else range(len(values))
    row: dict = {}
    rows = [row.setdefault(gid, len(row)) for gid in ids]
    out = np.zeros((len(row), len(col)))
    np.add.at(out, (rows, [col[v] for v in values]), 1.0)
    return out


def _chi2_stats(first: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of each 2 x K table whose first row is a row of ``first``."""
    second = total[None, :] - first
    n = total.sum()
    out = np.zeros(len(first))
    for row in (first, second):
        exp = row.sum(1, keepdims=True) * total[None, :] / n
        with np.errstate(divide="ignore", invalid="ignore"):
            out += np.where(exp > 0, (row - exp) ** 2 / exp, 0.0).sum(1)
    return out


def unseen_counts(queries: Sequence[str], vocab: set[str]) -> tuple[int, int]:
    """(query tokens not in ``vocab``, all query tokens)."""
    toks = [t for q in queries for t in tokens(q)]
    return sum(t not in vocab for t in toks), len(toks)


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(1.0 - a @ b / den) if den > 0 else 0.0


def centroid_shift(ref: np.ndarray, cur: np.ndarray) -> float:
    """1 - cosine similarity of the mean embeddings of two windows."""
    return _cosine_distance(np.asarray(ref, np.float64).mean(0), np.asarray(cur, np.float64).mean(0))


def centroid_shift_p(ref: np.ndarray, cur: np.ndarray, n_perm: int = 1999, seed: int = 0) -> float:
    """Permutation p-value of the centroid shift: how often two random halves of the pooled
    queries are at least as far apart. A window of ~100 queries moves its centroid by chance;
    this says whether the observed shift is more than that."""
    x = np.concatenate([np.asarray(ref, np.float64), np.asarray(cur, np.float64)])
    n, observed = len(ref), centroid_shift(ref, cur)
    rng = np.random.default_rng(seed)
    total = x.sum(0)
    hits = 0
    for _ in range(n_perm):
        a = x[rng.permutation(len(x))[:n]].sum(0)  # the cosine of sums is that of means
        hits += _cosine_distance(a, total - a) >= observed - 1e-12
    return (1 + hits) / (1 + n_perm)


def unseen_p(new_now: int, tokens_now: int, new_base: int, tokens_base: int) -> float:
    """One-sided two-proportion z-test: is the current unseen-token rate above the reference's own?"""
    from scipy.stats import norm

    if not tokens_now or not tokens_base:
        return 1.0
    p = (new_now + new_base) / (tokens_now + tokens_base)
    se = np.sqrt(p * (1 - p) * (1 / tokens_now + 1 / tokens_base))
    if se == 0:
        return 1.0
    return float(norm.sf((new_now / tokens_now - new_base / tokens_base) / se))


def compare(ref: Window, cur: Window, th: Thresholds) -> dict:
    """Every feature's statistic, its threshold and whether it drifted; ``drifted`` when any did.

    Windows smaller than ``th.min_samples`` are reported but judged as not drifted."""
    enough = len(ref) >= th.min_samples and len(cur) >= th.min_samples
    feats: dict[str, dict] = {}

    def add(name: str, test: str, value: float, threshold: float, drifted: bool, **more) -> None:
        feats[name] = {"test": test, "value": round(value, 6), "threshold": threshold,
                       "drifted": bool(enough and drifted), **more}

    def numeric(name: str, r: Sequence[float], c: Sequence[float]) -> None:
        v, (stat, p) = psi(r, c), ks(r, c)
        add(name, "psi+ks", v, th.psi, v > th.psi and p < th.alpha, ks=round(stat, 4), p_value=p)

    def categorical(name: str, r: Sequence[str], c: Sequence[str], threshold: float, top: bool = True,
                    groups: tuple | None = None) -> None:
        v, p = psi_categorical(r, c), chi2_p(r, c, *(groups or (None, None)))
        more = {"top_shift": _top_shift(r, c)} if top else {}
        add(name, "psi+chi2 (permutation)", v, threshold, v > threshold and p < th.alpha, p_value=p, **more)

    numeric("query_length", [len(tokens(q)) for q in ref.queries], [len(tokens(q)) for q in cur.queries])
    categorical("query_category_mix", ref.query_categories, cur.query_categories, th.psi)
    half = len(ref.queries) // 2
    nb, tb = unseen_counts(ref.queries[half:], {t for q in ref.queries[:half] for t in tokens(q)})
    nn, tn = unseen_counts(cur.queries, {t for q in ref.queries for t in tokens(q)})
    base, now = nb / max(1, tb), nn / max(1, tn)
    p = unseen_p(nn, tn, nb, tb)
    add("unseen_token_rate", "delta+z", now - base, th.unseen_delta, now - base > th.unseen_delta and p < th.alpha,
        reference=round(base, 4), current=round(now, 4), p_value=p,
        new_tokens=_new_tokens(ref.queries, cur.queries))
    # clicks of one search move together in the permutation test (they are not independent)
    if ref.clicked_categories and cur.clicked_categories:
        categorical("category_popularity", ref.clicked_categories, cur.clicked_categories, th.psi,
                    groups=(ref.category_searches or None, cur.category_searches or None))
    if ref.clicked_items and cur.clicked_items:
        # item-level mixes are sparse, so PSI over many items is noisy: judged against twice the cut
        categorical("item_popularity", ref.clicked_items, cur.clicked_items, 2 * th.psi, top=False,
                    groups=(ref.click_searches or None, cur.click_searches or None))
    if ref.top_scores and cur.top_scores:
        numeric("top_score", ref.top_scores, cur.top_scores)
    if ref.embeddings is not None and cur.embeddings is not None and len(ref.embeddings) and len(cur.embeddings):
        v = centroid_shift(ref.embeddings, cur.embeddings)
        p = centroid_shift_p(ref.embeddings, cur.embeddings)
        add("embedding_centroid_shift", "cosine+permutation", v, th.centroid_shift,
            v > th.centroid_shift and p < th.alpha, p_value=p)
    drifted = [k for k, f in feats.items() if f["drifted"]]
    return {"drifted": bool(drifted), "drifted_features": drifted, "enough_samples": enough,
            "samples": {"reference": len(ref), "current": len(cur)}, "features": feats,
            "thresholds": asdict(th)}


def _top_shift(ref: Sequence[str], cur: Sequence[str], n: int = 3) -> list[dict]:
    """The categories whose share moved most, for the report's reader."""
    a, b = Counter(ref), Counter(cur)
    moves = [(k, b[k] / len(cur) - a[k] / len(ref)) for k in set(a) | set(b)]
    moves.sort(key=lambda kv: -abs(kv[1]))
    return [{"category": k, "reference": round(a[k] / len(ref), 4), "current": round(b[k] / len(cur), 4)}
            for k, _ in moves[:n]]


def _new_tokens(ref: Sequence[str], cur: Sequence[str], n: int = 5) -> list[str]:
    seen = {t for q in ref for t in tokens(q)}
    c = Counter(t for q in cur for t in tokens(q) if t not in seen)
    return [t for t, _ in c.most_common(n)]


def plot(report: dict, ref: Window, cur: Window, png: Path) -> Path:
    """Reference vs current for the main features, one panel each, plus the statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    ql_r = [len(tokens(q)) for q in ref.queries]
    ql_c = [len(tokens(q)) for q in cur.queries]
    top = max(ql_r + ql_c + [1])
    ax[0].hist([ql_r, ql_c], bins=np.arange(0.5, top + 1.5), density=True, label=["reference", "current"])
    ax[0].set_title("query length (tokens)")
    ax[0].legend()
    a, b = Counter(ref.query_categories), Counter(cur.query_categories)
    keys = [k for k, _ in (a + b).most_common(8)]
    x = np.arange(len(keys))
    ax[1].bar(x - 0.2, [a[k] / max(1, len(ref.query_categories)) for k in keys], 0.4, label="reference")
    ax[1].bar(x + 0.2, [b[k] / max(1, len(cur.query_categories)) for k in keys], 0.4, label="current")
    ax[1].set_xticks(x, [k.split(">")[-1].strip()[:14] for k in keys], rotation=45, ha="right", fontsize=7)
    ax[1].set_title("searched category mix")
    if ref.top_scores and cur.top_scores:
        ax[2].hist([ref.top_scores, cur.top_scores], bins=20, density=True, label=["reference", "current"])
    ax[2].set_title("top-1 score")
    feats = report["features"]
    names = list(feats)
    ratio = [feats[n]["value"] / feats[n]["threshold"] for n in names]
    ax[3].barh(names, ratio, color=["tab:red" if feats[n]["drifted"] else "tab:green" for n in names])
    ax[3].axvline(1.0, color="k", ls="--", lw=1)
    ax[3].set_title("statistic / threshold (>1: drifted)")
    ax[3].tick_params(axis="y", labelsize=7)
    fig.suptitle("drift: " + (", ".join(report["drifted_features"]) or "none"), fontsize=11)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
