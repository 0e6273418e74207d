"""Evaluation metrics for stage ② train: ranking, next-item recommendation, pointwise, bootstrap.

Conventions shared by every function here

* A higher score ranks higher. Positions ``p`` are 0-based, so rank = ``p + 1``.
* Ties (``ties=``) are broken deterministically, never by input order (input order may be
  sorted by relevance and would flatter a model that scores everything the same):

  - ``"pessimistic"`` (default): among equal scores the *less* relevant items come first,
    so a tie never helps; a constant scorer gets the worst possible value.
  - ``"optimistic"``: among equal scores the *more* relevant items come first.
  - ``"average"`` (:func:`grouped_ranking_metrics` only): the exact expected value over a
    uniformly random order of tied items (McSherry & Najork, ECIR 2008): a tied block's
    gain is spread evenly over the positions it occupies; hit@k and MRR use the
    hypergeometric chance that a relevant item lands in the block's first slots.

  The first two bound the value of a random tie order; they can be far apart for a scorer
  that ties a lot (BM25 scores every pool item that shares no query term 0: on Home Depot
  the bounds are 0.915 and 0.947 NDCG@10, optimistic ties ordering by the label itself).
  Baselines in search pools are therefore reported tie-averaged, with both bounds beside
  them; full-ranking recommendation evaluates PopRec optimistically (its published protocol).
* Graded relevance: ``labels``/``gains`` are non-negative gains (Home Depot protocol:
  gain = relevance - 1, so 1.00..3.00 becomes 0..2). The caller does the shift.
  ``gain="linear"``: g(y) = y; ``gain="exponential"``: g(y) = 2**y - 1.
  DCG@k = sum_{p < k} g(y_p) / log2(p + 2); IDCG@k is DCG@k of the same pool sorted by
  y descending; NDCG@k = DCG@k / IDCG@k, NaN when IDCG@k = 0.
* Binary metrics call an item relevant when ``label > rel_threshold`` (default 0). A query
  with no relevant item gets NaN for mrr/recall/hit/precision. :func:`summarize` and
  :func:`compare` drop NaN and report how many they dropped.
* Next-item recommendation has one relevant item (the target): with its 0-based rank r,
  HR@k = [r < k], NDCG@k = [r < k] / log2(r + 2), MRR = 1 / (r + 1).
* Bootstrap intervals are percentile intervals: resample queries (users) with
  replacement ``n_boot`` times with ``numpy.random.default_rng(seed)``, take the
  ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from shelfops.errors import ConfigError, DataError

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch

    Matrix: TypeAlias = np.ndarray | torch.Tensor
else:
    Matrix = Any

Gain = Literal["linear", "exponential"]
Ties = Literal["pessimistic", "optimistic", "average"]
FullScorer = Callable[[np.ndarray], Any]
"""``fn(user_rows) -> [len(user_rows) x n_items]`` scores for those rows (users)."""
SampledScorer = Callable[[np.ndarray, np.ndarray], Any]
"""``fn(user_rows, candidates[len(user_rows) x m]) -> [len(user_rows) x m]`` scores."""

# --------------------------------------------------------------------------- validation


def _problem(where: str, message: str) -> ConfigError:
    return ConfigError([message], where)


def _ks(ks: int | Sequence[int], where: str) -> tuple[int, ...]:
    out = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not out or any(
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in out
    ):
        raise _problem(where, f"ks must be integers >= 1, got {ks!r}")
    return tuple(int(k) for k in out)


def _choice(value: str, allowed: tuple[str, ...], name: str, where: str) -> None:
    if value not in allowed:
        raise _problem(where, f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _vec(name: str, x: ArrayLike, *, kind: str = "float") -> np.ndarray:
    """A 1-D array; ``kind`` "float" (finite float64), "int" (int64) or "any"."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged input and the like
        raise DataError(f"{name} is not array-like: {exc}", argument=name) from exc
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {arr.shape}", argument=name)
    if kind == "float":
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise DataError(f"{name} must be numeric, got dtype {arr.dtype}", argument=name)
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise DataError(f"{name} contains NaN or infinite values", argument=name)
    elif kind == "int":
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{name} must hold integers, got dtype {arr.dtype}", argument=name)
        arr = arr.astype(np.int64)
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{n}={v}" for n, v in lengths.items())
        raise DataError(f"arrays must have the same length: {shown}", lengths=lengths)
    return next(iter(lengths.values()))


# --------------------------------------------------------------------------- graded ranking


def grouped_ranking_metrics(
    query_ids: ArrayLike,
    scores: ArrayLike,
    labels: ArrayLike,
    ks: int | Sequence[int] = (5, 10),
    gain: Gain = "linear",
    *,
    rel_threshold: float = 0.0,
    ties: Ties = "pessimistic",
) -> dict[str, np.ndarray]:
    """Per-query ranking metrics over a long table of (query, item) rows.

    Each query's rows are its pool (the judged items); rows are ranked within their query
    by score (ties as in the module docstring). Returns ``{"ndcg@k", "recall@k", "hit@k",
    "precision@k"}`` for each k and ``"mrr"``, each a float64 array with one value per
    query, aligned with ``numpy.unique(query_ids)`` (sorted query ids).

    * ndcg@k = DCG@k / IDCG@k (NaN if IDCG@k = 0, i.e. no positive gain in the pool)
    * recall@k = |relevant in top k| / |relevant|; hit@k = [|relevant in top k| > 0]
    * precision@k = |relevant in top k| / k (k, not the pool size, as trec_eval does)
    * mrr = 1 / rank of the first relevant item
    * relevant = ``label > rel_threshold``; the four binary metrics are NaN for a query
      with no relevant item.

    Vectorised: one ``lexsort`` by (query, -score, tie key) and ``bincount`` per metric.
    """
    where = "grouped_ranking_metrics"
    ks_t = _ks(ks, where)
    _choice(gain, ("linear", "exponential"), "gain", where)
    _choice(ties, ("pessimistic", "optimistic", "average"), "ties", where)
    q = _vec("query_ids", query_ids, kind="any")
    s = _vec("scores", scores)
    y = _vec("labels", labels)
    n = _same_length(query_ids=q, scores=s, labels=y)
    if n == 0:
        raise DataError("query_ids, scores and labels are empty", argument="query_ids")
    if (y < 0).any():
        raise DataError(
            "labels must be non-negative gains (Home Depot: relevance - 1)", argument="labels"
        )
    _, group = np.unique(q, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1
    g = y if gain == "linear" else np.exp2(y) - 1.0

    tie_key = y if ties == "pessimistic" else -y
    order = np.lexsort((tie_key, -s, group))
    ideal = np.lexsort((-y, group))
    g_sorted = group[order]  # == group[ideal]: both are sorted by group first
    counts = np.bincount(g_sorted, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(n) - starts[g_sorted]
    discount = 1.0 / np.log2(pos + 2.0)

    rel = (y > rel_threshold)[order]
    n_rel = np.bincount(g_sorted, weights=rel, minlength=n_groups)
    no_rel = n_rel == 0
    if ties == "average":
        return _tie_averaged(g_sorted, s[order], g[order], g[ideal], rel, pos, discount, n_rel, ks_t,
                             n_groups)
    out: dict[str, np.ndarray] = {}
    for k in ks_t:
        top = pos < k
        dcg = np.bincount(g_sorted, weights=g[order] * discount * top, minlength=n_groups)
        idcg = np.bincount(g_sorted, weights=g[ideal] * discount * top, minlength=n_groups)
        out[f"ndcg@{k}"] = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)
        hits = np.bincount(g_sorted, weights=rel & top, minlength=n_groups)
        out[f"recall@{k}"] = np.where(no_rel, np.nan, hits / np.maximum(n_rel, 1))
        out[f"hit@{k}"] = np.where(no_rel, np.nan, (hits > 0).astype(np.float64))
        out[f"precision@{k}"] = np.where(no_rel, np.nan, hits / k)
    first_rel = np.full(n_groups, np.inf)
    np.minimum.at(first_rel, g_sorted[rel], pos[rel])
    out["mrr"] = np.where(no_rel, np.nan, 1.0 / (first_rel + 1.0))
    return out


def _log_comb(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log C(n, x), -inf where x > n."""
    from scipy.special import gammaln

    ok = x <= n
    val = gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(np.where(ok, n - x, 0) + 1.0)
    return np.where(ok, val, -np.inf)


def _tie_averaged(group, score, gain, ideal_gain, rel, pos, discount, n_rel, ks, n_groups
                  ) -> dict[str, np.ndarray]:
    """Expected metrics over uniformly random orders of tied items (rows sorted by group, then
    score descending). A block = one group's rows with one score; it occupies positions
    [start, start + m) whatever its internal order."""
    new = np.ones(len(group), bool)
    new[1:] = (group[1:] != group[:-1]) | (score[1:] != score[:-1])
    block = np.cumsum(new) - 1
    n_blocks = int(block[-1]) + 1
    m = np.bincount(block, minlength=n_blocks).astype(np.float64)
    b_start = pos[new].astype(np.float64)
    b_group = group[new]
    b_rel = np.bincount(block, weights=rel, minlength=n_blocks)
    mean_gain = (np.bincount(block, weights=gain, minlength=n_blocks) / m)[block]
    mean_rel = (b_rel / m)[block]  # each relevant item is equally likely at each block position
    no_rel = n_rel == 0
    out: dict[str, np.ndarray] = {}
    for k in ks:
        top = pos < k
        dcg = np.bincount(group, weights=mean_gain * discount * top, minlength=n_groups)
        idcg = np.bincount(group, weights=ideal_gain * discount * top, minlength=n_groups)
        out[f"ndcg@{k}"] = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)
        hits = np.bincount(group, weights=mean_rel * top, minlength=n_groups)
        out[f"recall@{k}"] = np.where(no_rel, np.nan, hits / np.maximum(n_rel, 1))
        out[f"precision@{k}"] = np.where(no_rel, np.nan, hits / k)
        # P(no relevant item in the top k) = product over blocks of C(m - r, s) / C(m, s), s = its slots above k
        slots = np.clip(k - b_start, 0, m)
        log_none = _log_comb(m - b_rel, slots) - _log_comb(m, slots)
        p_none = np.exp(np.bincount(b_group, weights=np.where(np.isfinite(log_none), log_none, -1e9),
                                    minlength=n_groups))
        out[f"hit@{k}"] = np.where(no_rel, np.nan, 1.0 - p_none)
    # MRR: the first block holding a relevant item; in it, the first relevant item sits at
    # offset j with probability C(m - j - 1, r - 1) / C(m, r)
    mrr = np.full(n_groups, np.nan)
    seen = np.zeros(n_groups, bool)
    for b in np.flatnonzero(b_rel > 0):
        gq = b_group[b]
        if seen[gq]:
            continue
        seen[gq] = True
        mb, r, a = m[b], b_rel[b], b_start[b]
        j = np.arange(0, mb - r + 1)
        p = np.exp(_log_comb(mb - j - 1, np.full_like(j, r - 1)) - _log_comb(np.array(mb), np.array(r)))
        mrr[gq] = float((p / (a + j + 1)).sum())
    out["mrr"] = mrr
    return out


def _one_query(scores: ArrayLike, labels: ArrayLike, key: str, **kwargs: Any) -> float:
    s = _vec("scores", scores)
    return float(grouped_ranking_metrics(np.zeros(len(s), np.int64), s, labels, **kwargs)[key][0])


def ndcg_at_k(
    scores: ArrayLike,
    gains: ArrayLike,
    k: int,
    *,
    gain: Gain = "linear",
    ties: Ties = "pessimistic",
) -> float:
    """NDCG@k of one query's pool: DCG@k / IDCG@k, NaN when IDCG@k = 0 (see module doc)."""
    return _one_query(scores, gains, f"ndcg@{_ks(k, 'ndcg_at_k')[0]}", ks=k, gain=gain, ties=ties)


def mrr(
    scores: ArrayLike, labels: ArrayLike, *, rel_threshold: float = 0.0, ties: Ties = "pessimistic"
) -> float:
    """Reciprocal rank of the first item with ``label > rel_threshold`` (NaN if none)."""
    return _one_query(scores, labels, "mrr", ks=1, rel_threshold=rel_threshold, ties=ties)


def recall_at_k(
    scores: ArrayLike,
    labels: ArrayLike,
    k: int,
    *,
    rel_threshold: float = 0.0,
    ties: Ties = "pessimistic",
) -> float:
    """|relevant in top k| / |relevant| for one query (NaN if nothing is relevant)."""
    k = _ks(k, "recall_at_k")[0]
    return _one_query(scores, labels, f"recall@{k}", ks=k, rel_threshold=rel_threshold, ties=ties)


def hit_rate_at_k(
    scores: ArrayLike,
    labels: ArrayLike,
    k: int,
    *,
    rel_threshold: float = 0.0,
    ties: Ties = "pessimistic",
) -> float:
    """1.0 if any relevant item is in the top k, else 0.0 (NaN if nothing is relevant)."""
    k = _ks(k, "hit_rate_at_k")[0]
    return _one_query(scores, labels, f"hit@{k}", ks=k, rel_threshold=rel_threshold, ties=ties)


def precision_at_k(
    scores: ArrayLike,
    labels: ArrayLike,
    k: int,
    *,
    rel_threshold: float = 0.0,
    ties: Ties = "pessimistic",
) -> float:
    """|relevant in top k| / k for one query (NaN if nothing is relevant)."""
    k = _ks(k, "precision_at_k")[0]
    key = f"precision@{k}"
    return _one_query(scores, labels, key, ks=k, rel_threshold=rel_threshold, ties=ties)


# --------------------------------------------------------------------------- next item


def _rank_metrics(rank: np.ndarray, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    rank = rank.astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        top = rank < k
        out[f"hr@{k}"] = top.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(top, 1.0 / np.log2(rank + 2.0), 0.0)
    out["mrr"] = 1.0 / (rank + 1.0)
    return out


def _chunk(scores: Matrix | Callable[..., Any], rows: np.ndarray, n_users: int) -> Any:
    """Rows ``rows`` of the scores (numpy array or torch tensor, never copied), checked."""
    import torch

    raw = scores(rows) if callable(scores) else scores[int(rows[0]) : int(rows[-1]) + 1]
    if isinstance(raw, torch.Tensor) and raw.device.type == "cpu" and raw.dtype != torch.bfloat16:
        raw = raw.detach().numpy()  # zero-copy; numpy's comparisons are faster on CPU
    if not isinstance(raw, torch.Tensor):
        raw = np.asarray(raw)
        if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
            raise DataError(f"scores must be numeric, got dtype {raw.dtype}", argument="scores")
    if raw.ndim != 2 or raw.shape[0] != len(rows):
        raise DataError(
            f"scores must be [users x items] with {n_users} users; a chunk of {len(rows)} "
            f"rows came back with shape {tuple(raw.shape)}",
            argument="scores",
        )
    nan = bool(torch.isnan(raw).any()) if isinstance(raw, torch.Tensor) else np.isnan(raw).any()
    if nan:
        raise DataError("scores contain NaN", argument="scores")
    return raw


def _count_above(s: Any, ref: Any, strict: bool) -> np.ndarray:
    """Per row, how many entries of ``s`` are > ``ref`` (``strict``) or >= ``ref``."""
    above = s > ref if strict else s >= ref
    if isinstance(above, np.ndarray):
        return np.count_nonzero(above, axis=1).astype(np.int64)
    return above.sum(dim=1).cpu().numpy().astype(np.int64)


def _take(s: Any, rows: np.ndarray, cols: np.ndarray) -> Any:
    """``s[rows, cols]`` for a numpy array or a tensor (index arrays moved to its device)."""
    if isinstance(s, np.ndarray):
        return s[rows, cols]
    import torch

    return s[torch.as_tensor(rows, device=s.device), torch.as_tensor(cols, device=s.device)]


def _masked_pairs(
    exclude: Sequence[ArrayLike] | None,
    rows: np.ndarray,
    targets: np.ndarray,
    n_items: int,
    exclude_padding: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (chunk row, item) pairs to mask, never a row's own target."""
    items = [] if exclude is None else [np.asarray(exclude[u]).reshape(-1) for u in rows]
    if exclude_padding:
        items = [np.append(i, 0) for i in items] if items else [np.zeros(1, np.int64)] * len(rows)
    if not items:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    cols = np.concatenate(items)
    if not np.issubdtype(cols.dtype, np.integer) and not np.array_equal(cols, np.round(cols)):
        raise DataError("exclude must hold integer item ids", argument="exclude")
    cols = cols.astype(np.int64)
    if len(cols) and (cols.min() < 0 or cols.max() >= n_items):
        raise DataError(f"exclude holds item ids outside [0, {n_items})", argument="exclude")
    mrows = np.repeat(np.arange(len(rows)), [len(i) for i in items])
    keep = cols != targets[mrows]
    key = np.unique(mrows[keep] * n_items + cols[keep])
    return key // n_items, key % n_items


def full_rank_metrics(
    scores: Matrix | FullScorer,
    targets: ArrayLike,
    exclude: Sequence[ArrayLike] | None = None,
    ks: int | Sequence[int] = (5, 10, 20),
    *,
    exclude_padding: bool = False,
    ties: Ties = "pessimistic",
    chunk_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Per-user HR@k, NDCG@k and MRR of the target ranked against every item.

    ``scores``: a ``[users x items]`` numpy array or torch tensor (any device; a tensor is
    processed on its device), or a callable ``fn(user_rows) -> [len(user_rows) x items]``
    so the full matrix never has to exist (PopRec:
    ``lambda rows: np.broadcast_to(pop, (len(rows), len(pop)))``). Item ids index
    columns. ``targets[u]``: the held-out item of user row ``u``. ``exclude[u]``: item ids
    masked out for user ``u`` (its history); the target itself is never masked, so a
    repeat purchase stays reachable. ``exclude_padding=True`` also masks column 0 (the
    padding id of 1-based item ids; a target of 0 is then an error).

    rank r = |{i unmasked: s_i > s_t}| (+ |{i != t unmasked: s_i = s_t}| if pessimistic);
    HR@k = [r < k], NDCG@k = [r < k] / log2(r + 2), MRR = 1 / (r + 1). Works ``chunk_size``
    users at a time; only one chunk of scores is materialised (and copied) at once.
    """
    import torch

    where = "full_rank_metrics"
    ks_t = _ks(ks, where)
    _choice(ties, ("pessimistic", "optimistic"), "ties", where)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise _problem(where, f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    tgt = _vec("targets", targets, kind="int")
    n_users = len(tgt)
    if n_users == 0:
        raise DataError("targets is empty", argument="targets")
    if not callable(scores):
        if not isinstance(scores, torch.Tensor):
            scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[0] != n_users:
            raise DataError(
                f"scores must be [users x items] with {n_users} users (one per target), "
                f"got shape {tuple(scores.shape)}",
                argument="scores",
            )
    if exclude is not None and len(exclude) != n_users:
        raise DataError(
            f"exclude must hold one item-id array per user: {len(exclude)} for {n_users} users",
            argument="exclude",
        )
    if exclude_padding and (tgt == 0).any():
        raise DataError(
            "a target is 0, the padding column masked by exclude_padding", argument="targets"
        )

    strict = ties == "optimistic"
    ranks = np.empty(n_users, dtype=np.int64)
    for lo in range(0, n_users, chunk_size):
        rows = np.arange(lo, min(lo + chunk_size, n_users))
        s = _chunk(scores, rows, n_users)
        n_items = s.shape[1]
        t = tgt[rows]
        if t.min() < 0 or t.max() >= n_items:
            raise DataError(f"targets must be item ids in [0, {n_items})", argument="targets")
        local = np.arange(len(rows))
        t_score = _take(s, local, t)
        # count over all items, then take back the masked ones: no copy of the chunk
        above = _count_above(s, t_score[:, None], strict)
        mrows, mcols = _masked_pairs(exclude, rows, t, n_items, exclude_padding)
        if len(mrows):
            masked = _count_above(_take(s, mrows, mcols)[:, None], t_score[mrows][:, None], strict)
            above -= np.bincount(mrows, weights=masked, minlength=len(rows)).astype(np.int64)
        ranks[rows] = above if strict else above - 1  # >= counted the target itself
    return _rank_metrics(ranks, ks_t)


def sample_negatives(
    n_items: int,
    histories: Sequence[ArrayLike],
    n: int = 99,
    seed: int = 0,
    *,
    exclude_padding: bool = False,
) -> np.ndarray:
    """``[users x n]`` int64 negatives per user: distinct item ids the user never touched.

    ``histories[u]`` must hold every item user ``u`` interacted with, targets included.
    Items are drawn uniformly without replacement from ``[0, n_items)`` (``[1, n_items)``
    with ``exclude_padding``) minus the history, by rejection sampling with
    ``numpy.random.default_rng(seed)``; the same inputs and seed give the same array.
    """
    where = "sample_negatives"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _problem(where, f"n must be an integer >= 1, got {n!r}")
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise _problem(where, f"n_items must be an integer >= 1, got {n_items!r}")
    rng = np.random.default_rng(seed)
    low = 1 if exclude_padding else 0
    out = np.empty((len(histories), n), dtype=np.int64)
    for u, hist in enumerate(histories):
        h = np.unique(np.asarray(hist, dtype=np.int64).reshape(-1))
        if len(h) and (h[0] < 0 or h[-1] >= n_items):
            raise DataError(
                f"histories[{u}] holds item ids outside [0, {n_items})", argument="histories"
            )
        free = (n_items - low) - int(((h >= low) & (h < n_items)).sum())
        if free < n:
            raise DataError(
                f"user row {u} has only {free} untouched items, fewer than n={n}",
                argument="histories",
            )
        got = np.empty(0, dtype=np.int64)
        while len(got) < n:
            draw = rng.integers(low, n_items, size=2 * (n - len(got)) + 8)
            draw = draw[~np.isin(draw, h) & ~np.isin(draw, got)]
            _, first = np.unique(draw, return_index=True)
            got = np.concatenate((got, draw[np.sort(first)]))
        out[u] = got[:n]
    return out


def sampled_rank_metrics(
    scores: Matrix | SampledScorer,
    targets: ArrayLike,
    negatives: ArrayLike,
    ks: int | Sequence[int] = (1, 5, 10),
    *,
    ties: Ties = "pessimistic",
    chunk_size: int = 4096,
) -> dict[str, np.ndarray]:
    """Per-user HR@k, NDCG@k, MRR of the target ranked among itself + its negatives.

    The S3-Rec sampled protocol (99 negatives from :func:`sample_negatives`). ``scores``:
    a ``[users x items]`` matrix, or ``fn(user_rows, candidates) -> [rows x (1 + n)]``
    where ``candidates[:, 0]`` is the target and the rest are the negatives. Formulas as
    in :func:`full_rank_metrics` with the candidates as the item set. A negative equal to
    the user's target is an error.
    """
    import torch

    where = "sampled_rank_metrics"
    ks_t = _ks(ks, where)
    _choice(ties, ("pessimistic", "optimistic"), "ties", where)
    tgt = _vec("targets", targets, kind="int")
    neg = np.asarray(negatives)
    if neg.ndim != 2 or len(neg) != len(tgt) or not np.issubdtype(neg.dtype, np.integer):
        raise DataError(
            f"negatives must be an integer [users x n] array with {len(tgt)} rows, "
            f"got {neg.dtype} {neg.shape}",
            argument="negatives",
        )
    if (neg == tgt[:, None]).any():
        raise DataError("negatives contain a user's own target", argument="negatives")
    cand = np.concatenate((tgt[:, None], neg.astype(np.int64)), axis=1)
    if not callable(scores) and not isinstance(scores, torch.Tensor):
        scores = np.asarray(scores)
    ranks = np.empty(len(tgt), dtype=np.int64)
    for lo in range(0, len(tgt), chunk_size):
        rows = np.arange(lo, min(lo + chunk_size, len(tgt)))
        if callable(scores):
            s = _chunk(lambda r: scores(r, cand[r]), rows, len(tgt))
        else:
            full = _chunk(scores, rows, len(tgt))
            if cand[rows].max() >= full.shape[1] or cand[rows].min() < 0:
                raise DataError(f"item ids outside [0, {full.shape[1]})", argument="negatives")
            c = cand[rows]
            if isinstance(full, np.ndarray):
                s = np.take_along_axis(full, c, axis=1)
            else:
                s = full.gather(1, torch.as_tensor(c, device=full.device))
        if s.shape[1] != cand.shape[1]:
            raise DataError(
                f"scores must give {cand.shape[1]} candidates per row", argument="scores"
            )
        # pessimistic: a negative tied with the target ranks above it
        ranks[rows] = _count_above(s[:, 1:], s[:, :1], ties == "optimistic")
    return _rank_metrics(ranks, ks_t)


# --------------------------------------------------------------------------- pointwise


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """sqrt(mean((y_pred - y_true)^2))."""
    t, p = _vec("y_true", y_true), _vec("y_pred", y_pred)
    if _same_length(y_true=t, y_pred=p) == 0:
        raise DataError("y_true is empty", argument="y_true")
    return float(np.sqrt(np.mean((p - t) ** 2)))


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """mean(y_pred == y_true)."""
    t, p = _vec("y_true", y_true, kind="any"), _vec("y_pred", y_pred, kind="any")
    if _same_length(y_true=t, y_pred=p) == 0:
        raise DataError("y_true is empty", argument="y_true")
    return float(np.mean(t == p))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean over classes c present in y_true or y_pred of F1_c = 2 TP / (2 TP + FP + FN)."""
    t, p = _vec("y_true", y_true, kind="any"), _vec("y_pred", y_pred, kind="any")
    n = _same_length(y_true=t, y_pred=p)
    if n == 0:
        raise DataError("y_true is empty", argument="y_true")
    classes, idx = np.unique(np.concatenate((t, p)), return_inverse=True)
    it, ip = idx.reshape(-1)[:n], idx.reshape(-1)[n:]
    c = len(classes)
    tp = np.bincount(it[it == ip], minlength=c)
    n_true = np.bincount(it, minlength=c)
    n_pred = np.bincount(ip, minlength=c)
    return float(np.mean(2 * tp / (n_true + n_pred)))


# --------------------------------------------------------------------------- bootstrap


def _check_boot(n_boot: int, alpha: float, where: str) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise _problem(where, f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise _problem(where, f"alpha must be in (0, 1), got {alpha!r}")


def _boot_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot x m]`` means of ``values`` (``[n x m]``) over rows resampled together."""
    rng = np.random.default_rng(seed)
    n = len(values)
    per = max(1, 4_000_000 // max(n * values.shape[1], 1))
    parts = []
    for done in range(0, n_boot, per):
        idx = rng.integers(0, n, size=(min(per, n_boot - done), n))
        parts.append(values[idx].mean(axis=1))
    return np.concatenate(parts)


def _interval(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    *arrays: ArrayLike,
    statistic: Callable[..., float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)`` over paired rows.

    Every array is resampled with the same row indices (pairs stay pairs), e.g.
    ``bootstrap_ci(y_true, y_pred, statistic=rmse)``. Without ``statistic`` it is the mean
    of one array (vectorised). Returns ``{"estimate", "ci_low", "ci_high", "n"}`` where
    estimate = statistic on the original data.
    """
    where = "bootstrap_ci"
    _check_boot(n_boot, alpha, where)
    if not arrays:
        raise _problem(where, "bootstrap_ci needs at least one array")
    kind = "float" if statistic is None else "any"
    arrs = [_vec(f"arrays[{i}]", a, kind=kind) for i, a in enumerate(arrays)]
    n = _same_length(**{f"arrays[{i}]": a for i, a in enumerate(arrs)})
    if n == 0:
        raise DataError("bootstrap_ci got empty arrays", argument="arrays")
    if statistic is None:
        if len(arrs) != 1:
            raise _problem(where, "without statistic, bootstrap_ci takes exactly one array")
        reps = _boot_means(arrs[0][:, None], n_boot, seed)[:, 0]
        estimate = float(arrs[0].mean())
    else:
        rng = np.random.default_rng(seed)
        reps = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, n, size=n)
            reps[b] = statistic(*(a[idx] for a in arrs))
        estimate = float(statistic(*arrs))
    lo, hi = _interval(reps, alpha)
    return {"estimate": estimate, "ci_low": lo, "ci_high": hi, "n": n}


def summarize(
    per_query: Mapping[str, ArrayLike], *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, dict[str, float]]:
    """Mean and percentile bootstrap CI per metric, NaN values dropped and counted.

    ``{"ndcg@10": {"mean", "ci_low", "ci_high", "n", "n_nan"}, ...}``; ``n`` = values
    used. A metric with no finite value gets NaN mean and interval and ``n = 0``. Every
    metric is bootstrapped with its own ``default_rng(seed)``, so results do not depend
    on the order of the mapping.
    """
    _check_boot(n_boot, alpha, "summarize")
    out: dict[str, dict[str, float]] = {}
    for name, values in per_query.items():
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1:
            raise DataError(f"per_query[{name!r}] must be one-dimensional", argument=name)
        keep = ~np.isnan(v)
        v = v[keep]
        if np.isinf(v).any():
            raise DataError(f"per_query[{name!r}] contains infinite values", argument=name)
        if len(v) == 0:
            stats = {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        else:
            lo, hi = _interval(_boot_means(v[:, None], n_boot, seed)[:, 0], alpha)
            stats = {"mean": float(v.mean()), "ci_low": lo, "ci_high": hi}
        out[name] = {**stats, "n": int(keep.sum()), "n_nan": int((~keep).sum())}
    return out


def compare(
    a_per_query: ArrayLike,
    b_per_query: ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Paired bootstrap comparison of two systems' per-query values of one metric.

    ``a`` and ``b`` are aligned on the same queries (users); a query where either is NaN
    is dropped from both (``n_dropped``). Queries are resampled together, giving
    percentile intervals for mean(a), mean(b) and mean(a - b). Returns::

        {"a": {"mean", "ci_low", "ci_high"}, "b": {...}, "diff": {...}  # diff = a - b
         "n", "n_dropped",
         "overlap": do the a and b intervals overlap,
         "diff_excludes_zero": the paired interval of a - b excludes 0,
         "a_better": not overlap and mean(a) > mean(b)}

    ``a_better`` is the strict claim "a beats b with non-overlapping intervals";
    ``diff_excludes_zero`` is the (more powerful) paired test.
    """
    _check_boot(n_boot, alpha, "compare")
    a = np.asarray(a_per_query, dtype=np.float64)
    b = np.asarray(b_per_query, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise DataError(
            "a_per_query and b_per_query must be one-dimensional", argument="a_per_query"
        )
    _same_length(a_per_query=a, b_per_query=b)
    keep = ~(np.isnan(a) | np.isnan(b))
    pairs = np.stack((a[keep], b[keep], a[keep] - b[keep]), axis=1)
    if len(pairs) == 0:
        raise DataError(
            "no query has a value in both a_per_query and b_per_query", argument="a_per_query"
        )
    if np.isinf(pairs).any():
        raise DataError(
            "a_per_query or b_per_query contains infinite values", argument="a_per_query"
        )
    reps = _boot_means(pairs, n_boot, seed)
    parts = {}
    for j, name in enumerate(("a", "b", "diff")):
        lo, hi = _interval(reps[:, j], alpha)
        parts[name] = {"mean": float(pairs[:, j].mean()), "ci_low": lo, "ci_high": hi}
    overlap = (
        parts["a"]["ci_low"] <= parts["b"]["ci_high"]
        and parts["b"]["ci_low"] <= parts["a"]["ci_high"]
    )
    return {
        **parts,
        "n": int(keep.sum()),
        "n_dropped": int((~keep).sum()),
        "overlap": bool(overlap),
        "diff_excludes_zero": bool(parts["diff"]["ci_low"] > 0 or parts["diff"]["ci_high"] < 0),
        "a_better": bool(not overlap and parts["a"]["mean"] > parts["b"]["mean"]),
    }


def dcg(gains: ArrayLike, *, gain: Gain = "linear") -> float:
    """DCG of gains already in ranked order: sum_i g_i / log2(i + 2) (exponential: 2^g - 1)."""
    g = np.asarray(gains, dtype=np.float64)
    if gain == "exponential":
        g = np.power(2.0, g) - 1.0
    return float((g / np.log2(np.arange(len(g)) + 2.0)).sum())
