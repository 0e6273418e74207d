"""Shopper sessions of the synthetic shop, simulated a block of sessions at a time.

Everything is vectorised over the sessions of a block: a loop runs over search rounds
or browse steps (a handful), never over events.

* **search** session: search -> up to 10 impressions from the shop's *current*
  production ranker (:class:`Ranker`: candidates by meaning, a few "false friends" that
  only share a word with the query, popularity, heavy noise; nothing for zero-result
  queries) -> clicks (examination x attractiveness, see
  :mod:`shelfops.sim.shop.truth`) -> some carts -> some purchases; then maybe a
  follow-up search (more likely after no results or no click, often a refinement).
* **browse** session: a chain of product views; each step follows an item-to-item
  neighbour (same leaf, similar item) picked by the user's taste, or the leaf's popular
  items, or a jump to another leaf of the user's taste; may end with a cart/purchase.
* **bot** session: hundreds of views of random items within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shelfops.sim.shop.catalogue import LexicalIndex, Query, ShopCatalogue
from shelfops.sim.shop.truth import ShopTruth, affinity_of, relevance_of, sigmoid
from shelfops.tables import EVENT_TYPES

IMPRESSION, VIEW, CLICK, CART, PURCHASE, SEARCH = (
    EVENT_TYPES.index(t) for t in ("impression", "view", "click", "add_to_cart", "purchase",
                                   "search"))
KIND_SEARCH, KIND_BROWSE, KIND_BOT = 0, 1, 2
PAGE = 10  # results shown per search
POOL = 80  # lexical candidates per query
NEIGHBOURS = 20
MAX_ROUNDS = 4
MAX_VIEWS = 30
RANKER_NOISE = 1.2
FALSE_FRIENDS = 6  # candidates per query from other categories that only share a word


@dataclass
class Ranker:
    """The production search that produced the logged impressions (imperfect on purpose)."""

    items: np.ndarray  # int32 (queries, POOL), -1 padded
    base: np.ndarray  # float32 (queries, POOL): lexical score + popularity, -inf padded
    grade: np.ndarray  # float32 (queries, POOL): the hidden relevance of each candidate

    def rank(self, rng: np.random.Generator, q: np.ndarray, launch_day: np.ndarray,
             day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-PAGE items per query row: (items, grades, shown mask), best first."""
        items = self.items[q]
        ok = (items >= 0) & (launch_day[np.maximum(items, 0)] <= day)
        score = np.where(ok, self.base[q] + rng.normal(0.0, RANKER_NOISE, items.shape), -np.inf)
        top = np.argpartition(-score, PAGE - 1, axis=1)[:, :PAGE]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1), 1)
        shown = np.isfinite(np.take_along_axis(score, top, 1))
        return (np.take_along_axis(items, top, 1), np.take_along_axis(self.grade[q], top, 1),
                shown)


def build_ranker(rng: np.random.Generator, truth: ShopTruth, lex: LexicalIndex) -> Ranker:
    """Candidate pools for every bank query (zero-result queries get none): the items that
    match what the query means (same department, by category, values, brand), and a few
    of other categories that only share a word with the query text (a lexical engine's
    false friends: "exercise mat" finds bath mats), scored low."""
    cat, bank, vocab = truth.cat, truth.bank, truth.vocab
    nq = len(bank)
    items = np.full((nq, POOL), -1, np.int32)
    base = np.full((nq, POOL), -np.inf, np.float32)
    grade = np.zeros((nq, POOL), np.float32)
    dept_items = [np.flatnonzero(vocab.leaf_dept[cat.leaf] == d)
                  for d in range(len(vocab.departments))]
    logpop = np.log(cat.popularity)
    meant: dict[Query, tuple[np.ndarray, np.ndarray]] = {}  # a meaning's candidates, best first
    for qi in range(truth.n_zero_start):
        q = bank.query(qi)
        shared = lex.scores(bank.text[qi])
        false = np.flatnonzero((shared > 0) & (cat.leaf != q.leaf))
        noisy = shared[false] + rng.gumbel(0.0, 1.0, len(false))
        if len(false) > FALSE_FRIENDS:
            keep = np.argpartition(-noisy, FALSE_FRIENDS - 1)[:FALSE_FRIENDS]
            false, noisy = false[keep], noisy[keep]
        false = false[np.argsort(-noisy, kind="stable")]
        if q not in meant:  # every wording of a query finds the same items by meaning
            idx = dept_items[int(vocab.leaf_dept[q.leaf])]
            lex_q = np.where(cat.leaf[idx] == q.leaf, 2.0 if q.noun < 0 else 0.3, 0.0)
            if q.noun >= 0:
                lex_q += 2.0 * (cat.noun[idx] == q.noun)
            for v in q.values:
                lex_q += (cat.values[idx] == v).any(1)
            if q.brand >= 0:
                lex_q += cat.brand[idx] == q.brand
            cand, s = idx[lex_q > 0], (lex_q + 0.4 * logpop[idx])[lex_q > 0]
            noisy = s + rng.gumbel(0.0, 0.7, len(s))
            k = min(POOL, len(s))
            pick = np.argpartition(-noisy, k - 1)[:k] if 0 < k < len(s) else np.arange(k)
            pick = pick[np.argsort(-noisy[pick], kind="stable")]
            meant[q] = (cand[pick], s[pick])
        cand, s = meant[q]
        k = min(POOL - len(false), len(cand))
        ids = np.concatenate([cand[:k], false])
        items[qi, :len(ids)] = ids
        base[qi, :len(ids)] = np.concatenate([s[:k], 0.25 * shared[false] - 0.5
                                              + 0.4 * logpop[false]])
        grade[qi, :len(ids)] = relevance_of(q, vocab, cat, ids, truth.params)
    return Ranker(items, base, grade)


def _similarity_features(cat: ShopCatalogue, rows: np.ndarray) -> np.ndarray:
    """Item vectors whose dot product is the browsing similarity: latent taste + 0.8 same
    noun + 0.3 same brand + 0.25 per shared attribute value."""
    parts = [cat.latent[rows]]
    for col, w in ((cat.noun[rows], 0.8), (cat.brand[rows], 0.3),
                   *((cat.values[rows, s], 0.25) for s in range(cat.values.shape[1]))):
        codes, inv = np.unique(col, return_inverse=True)
        onehot = np.zeros((len(rows), len(codes)), np.float32)
        onehot[np.arange(len(rows)), inv] = np.sqrt(w)
        onehot[:, codes < 0] = 0.0
        parts.append(onehot)
    return np.concatenate(parts, axis=1).astype(np.float32)


def build_neighbours(rng: np.random.Generator, cat: ShopCatalogue, live: np.ndarray,
                     leaves: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """NEIGHBOURS similar live items of the same leaf for every item of ``leaves``."""
    nb = np.zeros((len(cat), NEIGHBOURS), np.int32) if out is None else out.copy()
    for li in leaves:
        rows = np.flatnonzero(cat.leaf == li)
        is_live = live[rows]
        cols = rows[is_live]
        if len(cols) == 0:
            nb[rows] = rows[:, None]
            continue
        feats = _similarity_features(cat, rows)
        col_feats = feats[is_live].T.copy()
        for a in range(0, len(rows), 1024):
            r = rows[a:a + 1024]
            sim = feats[a:a + 1024] @ col_feats
            sim += 0.2 * rng.random(sim.shape, dtype=np.float32)
            sim[r[:, None] == cols[None, :]] = -np.inf
            if len(cols) > NEIGHBOURS:
                top = np.argpartition(-sim, NEIGHBOURS - 1, axis=1)[:, :NEIGHBOURS]
            else:
                top = np.argsort(-sim, 1)[:, np.arange(NEIGHBOURS) % len(cols)]
            order = np.argsort(-np.take_along_axis(sim, top, 1), 1, kind="stable")
            nb[r] = cols[np.take_along_axis(top, order, 1)]
    return nb


@dataclass
class ItemSampler:
    """Draws items of a given leaf by popularity (only live items)."""

    order: np.ndarray  # item ids sorted by leaf
    key: np.ndarray  # leaf + cumulative share within the leaf

    @classmethod
    def build(cls, cat: ShopCatalogue, live: np.ndarray) -> ItemSampler:
        order = np.argsort(cat.leaf, kind="stable")
        w = (cat.popularity * live)[order].astype(np.float64)
        leaf = cat.leaf[order]
        key = np.zeros(len(order))
        for li in np.unique(leaf):
            m = np.flatnonzero(leaf == li)
            tot = w[m].sum()
            if tot > 0:
                key[m] = np.cumsum(w[m]) / tot
                key[m[-1]] = 1.0
        return cls(order, leaf + key)

    def pick(self, rng: np.random.Generator, leaves: np.ndarray) -> np.ndarray:
        j = np.searchsorted(self.key, leaves + rng.random(len(leaves)), side="right")
        return self.order[np.minimum(j, len(self.order) - 1)].astype(np.int32)


@dataclass
class Phase:
    """What can be shown on a day: before or after the new items launch."""

    live: np.ndarray
    live_ids: np.ndarray
    neighbours: np.ndarray
    sampler: ItemSampler


@dataclass
class Events:
    """Column buffers of one block; ``order`` breaks timestamp ties within a session."""

    cols: dict[str, list[np.ndarray]] = field(default_factory=lambda: {
        k: [] for k in ("sess", "user", "etype", "item", "query", "ts", "pos", "req", "order")})

    def add(self, n: int, **values: np.ndarray | int) -> None:
        for k, lst in self.cols.items():
            v = np.asarray(values.get(k, -1 if k != "pos" else 0))
            lst.append(np.broadcast_to(v, (n,)) if v.ndim == 0 else v.copy())  # callers mutate

    def arrays(self) -> dict[str, np.ndarray]:
        types = {"sess": np.int64, "user": np.int32, "etype": np.int8, "item": np.int32,
                 "query": np.int32, "ts": np.int64, "pos": np.int16, "req": np.int64,
                 "order": np.int32}
        return {k: (np.concatenate(v) if v else np.zeros(0)).astype(types[k])
                for k, v in self.cols.items()}


@dataclass
class SearchStats:
    """Counts kept while simulating searches (for the summary and the drift check)."""

    leaf_counts: np.ndarray  # searches per leaf
    requests: int = 0
    zero_result: int = 0


@dataclass
class Sessions:
    gid: np.ndarray  # int64 global session number
    user: np.ndarray  # int32 user whose taste drives the session
    shown: np.ndarray  # int32 user id logged (-1: anonymous)
    kind: np.ndarray  # int8
    start: np.ndarray  # int64 ms

    def take(self, m: np.ndarray) -> Sessions:
        return Sessions(self.gid[m], self.user[m], self.shown[m], self.kind[m], self.start[m])


def simulate_search(rng: np.random.Generator, truth: ShopTruth, ranker: Ranker, s: Sessions,
                    day: int, ev: Events, next_req: int, stats: SearchStats) -> int:
    """Search rounds of the block's search sessions; returns the next request number."""
    p, cat = truth.params, truth.cat
    t = s.start.copy()
    order = np.zeros(len(t), np.int32)
    prev_leaf = np.full(len(t), -1, np.int32)
    alive = np.arange(len(t))
    for _ in range(MAX_ROUNDS):
        m = len(alive)
        if m == 0:
            break
        u = s.user[alive]
        leaves = truth.pick_leaves(rng, truth.users.leaf_pref[u], day)
        refine = (prev_leaf[alive] >= 0) & (rng.random(m) < 0.6)
        leaves = np.where(refine, prev_leaf[alive], leaves)
        q = truth.pick_queries(rng, leaves)
        qleaf = truth.bank.leaf[q]
        stats.leaf_counts += np.bincount(qleaf[qleaf >= 0], minlength=len(stats.leaf_counts))
        stats.requests += m
        req = next_req + np.arange(m, dtype=np.int64)
        next_req += m
        gid, shown, ta, oa = s.gid[alive], s.shown[alive], t[alive], order[alive]
        ev.add(m, sess=gid, user=shown, etype=SEARCH, query=q, ts=ta, req=req, order=oa)
        items, grade, ok = ranker.rank(rng, q, cat.launch_day, day)
        t_imp = ta + 300 + rng.integers(0, 500, m)
        r, c = np.nonzero(ok)
        ev.add(len(r), sess=gid[r], user=shown[r], etype=IMPRESSION, item=items[r, c],
               query=q[r], ts=t_imp[r], pos=c + 1, req=req[r], order=oa[r] + 1 + c)
        safe = np.maximum(items, 0)
        aff = affinity_of(truth.users, cat, u[:, None], safe)
        pos = np.arange(1, PAGE + 1)
        attract = truth.attractiveness(grade, aff, truth.trend(safe, day))
        clicked = ok & (rng.random(items.shape) < truth.examination(pos) * attract)
        dwell = np.where(clicked, 5_000 + rng.exponential(40_000, items.shape), 0).astype(np.int64)
        t_click = t_imp[:, None] + 2_000 + 1_500 * (pos - 1) + np.cumsum(dwell, 1) - dwell
        carted = clicked & (rng.random(items.shape) < sigmoid(
            p.cart_bias + p.cart_grade * grade + p.cart_affinity * aff))
        t_cart = t_click + (dwell * rng.uniform(0.3, 0.9, items.shape)).astype(np.int64)
        bought = carted & (rng.random(items.shape) < sigmoid(
            p.purchase_bias + p.purchase_affinity * aff))
        t_buy = t_cart + 20_000 + rng.exponential(60_000, items.shape).astype(np.int64)
        for mask, etype, tt, k, has_pos in ((clicked, CLICK, t_click, 11, True),
                                            (carted, CART, t_cart, 12, False),
                                            (bought, PURCHASE, t_buy, 13, False)):
            r, c = np.nonzero(mask)
            ev.add(len(r), sess=gid[r], user=shown[r], etype=etype, item=items[r, c],
                   query=q[r], ts=tt[r, c], pos=(c + 1) if has_pos else 0, req=req[r],
                   order=oa[r] + k + 3 * c)
        end = np.maximum(t_imp, np.where(bought, t_buy, np.where(clicked, t_click + dwell, 0))
                         .max(1))
        no_result = ~ok.any(1)
        stats.zero_result += int(no_result.sum())
        p_more = np.where(no_result, 0.6, np.where(clicked.any(1), 0.15, 0.45))
        t[alive] = end + 5_000 + rng.exponential(20_000, m).astype(np.int64)
        order[alive] += 64
        prev_leaf[alive] = np.where(no_result, -1, leaves)
        alive = alive[rng.random(m) < p_more]
    return next_req


def _steps(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten variable-length runs: (run index, step within run) per element."""
    run = np.repeat(np.arange(len(counts)), counts)
    step = np.arange(len(run)) - np.repeat(np.cumsum(counts) - counts, counts)
    return run, step


def simulate_browse(rng: np.random.Generator, truth: ShopTruth, phase: Phase, s: Sessions,
                    day: int, ev: Events) -> None:
    """Chains of product views, following taste and item-to-item similarity."""
    n, p, cat = len(s.gid), truth.params, truth.cat
    if n == 0:
        return
    length = np.minimum(rng.geometric(0.2, n), MAX_VIEWS)
    pref = truth.users.leaf_pref[s.user]
    cur = phase.sampler.pick(rng, truth.pick_leaves(rng, pref, day, trend_scale=0.5))
    t = s.start.copy()
    ev.add(n, sess=s.gid, user=s.shown, etype=VIEW, item=cur, ts=t, order=0)
    rank_cdf = np.cumsum(1.0 / np.arange(1, NEIGHBOURS + 1))
    rank_cdf /= rank_cdf[-1]
    for step in range(1, int(length.max())):
        a = np.flatnonzero(length > step)
        m = len(a)
        ranks = np.minimum(np.searchsorted(rank_cdf, rng.random((m, 3))), NEIGHBOURS - 1)
        cands = phase.neighbours[cur[a][:, None], ranks]
        score = affinity_of(truth.users, cat, s.user[a][:, None], cands)
        score += rng.gumbel(0.0, 0.5, (m, 3))
        nxt = cands[np.arange(m), score.argmax(1)]
        r = rng.random(m)
        same_leaf = phase.sampler.pick(rng, cat.leaf[cur[a]])
        jump = phase.sampler.pick(rng, truth.pick_leaves(rng, pref[a], day, trend_scale=0.5))
        step_to = np.where(r < 0.7, nxt, np.where(r < 0.85, same_leaf, jump))
        cur[a] = np.where(step_to == cur[a], nxt, step_to)  # no immediate repeat
        t[a] += 3_000 + rng.exponential(35_000, m).astype(np.int64)
        ev.add(m, sess=s.gid[a], user=s.shown[a], etype=VIEW, item=cur[a], ts=t[a], order=step)
    aff = affinity_of(truth.users, cat, s.user, cur)
    cart = rng.random(n) < sigmoid(-3.2 + 0.8 * aff + 0.25 * np.minimum(length, 5))
    buy = cart & (rng.random(n) < sigmoid(p.purchase_bias + p.purchase_affinity * aff))
    t_cart = t + 10_000 + rng.exponential(30_000, n).astype(np.int64)
    t_buy = t_cart + 20_000 + rng.exponential(90_000, n).astype(np.int64)
    for mask, etype, tt, k in ((cart, CART, t_cart, MAX_VIEWS),
                               (buy, PURCHASE, t_buy, MAX_VIEWS + 1)):
        ev.add(int(mask.sum()), sess=s.gid[mask], user=s.shown[mask], etype=etype,
               item=cur[mask], ts=tt[mask], order=k)


def simulate_bots(rng: np.random.Generator, phase: Phase, s: Sessions, ev: Events) -> None:
    """Scrapers: 150-400 views of random items, tens of milliseconds apart."""
    if len(s.gid) == 0:
        return
    counts = rng.integers(150, 400, len(s.gid))
    run, step = _steps(counts)
    gap = rng.integers(40, 400, len(run))
    cg = np.cumsum(gap)
    first = np.cumsum(counts) - counts
    ts = s.start[run] + cg - np.repeat(cg[first] - gap[first], counts)
    items = phase.live_ids[rng.integers(0, len(phase.live_ids), len(run))]
    ev.add(len(run), sess=s.gid[run], user=s.shown[run], etype=VIEW, item=items, ts=ts,
           order=step)
