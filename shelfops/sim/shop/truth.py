"""The synthetic shop's hidden truth: what shoppers want and how they react to a ranking.

The generator draws its behaviour from these functions, and :class:`ShopTruth` loads
them back from ``<out_dir>/truth/`` so a traffic simulator can play the same shoppers
against a served model. Nothing here is visible in the exported tables.

Relevance of an item to a query (grade in [0, 3]) is ``3 * category * match + quality``,
computed on the query's *meaning* (:func:`parse_query`: a synonym, plural or known
misspelling means what the catalogue's word means), never on its words:

* *category*: 1 for the query's noun, 0.3 for another noun of the same leaf, 0.05 for the
  same group; 0.85 for any noun of a leaf the query names ("cookware"); 1 when the
  query names no category (a brand or attribute alone); 0 for an empty query.
* *match*: weighted share of what the query asks for that the item has (the category
  itself weighs 1, each attribute value 0.6, the brand 0.7).
* *quality*: a small per-item term (|q| <= 0.6) added once the item is at all relevant.

A shown item is clicked with ``P = examination(position) * attractiveness`` where
``examination = position ** -0.8`` and ``attractiveness = sigmoid(-4.0 + 1.4 grade +
0.7 affinity + trend)``; ``affinity`` mixes the user's category taste, a latent taste
vector (brands, styles) and price sensitivity; ``trend`` lifts the trending leaf once the
drift has started. Judgements are ``rint(relevance)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shelfops.sim.shop.catalogue import (
    LATENT_DIM,
    Query,
    QueryBank,
    ShopCatalogue,
    Vocab,
    parse_query,
)


@dataclass(frozen=True)
class Params:
    """Coefficients of the behaviour model (stored with the truth)."""

    w_value: float = 0.6
    w_brand: float = 0.7
    exam_power: float = 0.8
    click_bias: float = -4.0
    click_grade: float = 1.4
    click_affinity: float = 0.7
    trend_boost: float = 0.6
    cart_bias: float = -2.6
    cart_grade: float = 0.5
    cart_affinity: float = 0.6
    purchase_bias: float = -0.3
    purchase_affinity: float = 0.4
    zero_result_share: float = 0.03
    drift_ramp_days: float = 3.0
    trending_prior: float = 0.15  # the trending leaf's share of taste before the drift


@dataclass
class Users:
    """Hidden tastes and habits, row u is user ``u``."""

    leaf_pref: np.ndarray  # float32 (n, leaves), rows sum to 1
    latent: np.ndarray  # float32 (n, LATENT_DIM)
    price_sens: np.ndarray  # float32 >= 0
    activity: np.ndarray  # float32 > 0, heavy-tailed
    search_prop: np.ndarray  # float32 in (0, 1): share of sessions that start with a search
    join_day: np.ndarray  # int32
    leave_day: np.ndarray  # int32 (> days: never leaves)

    def __len__(self) -> int:
        return len(self.activity)

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)


def make_users(rng: np.random.Generator, n: int, vocab: Vocab, *, days: int,
               leaf_ok: np.ndarray, trending: int | None, params: Params) -> Users:
    """Draw ``n`` shoppers: department and leaf tastes, latent taste, habits."""
    L, D = vocab.n_leaves, len(vocab.departments)
    leaf_pop = rng.lognormal(0.0, 0.5, L)
    dept = rng.dirichlet(np.full(D, 0.5), n)[:, vocab.leaf_dept]
    w = rng.gamma(1.0, 1.0, (n, L)) * leaf_pop
    dsum = np.zeros((n, D))
    np.add.at(dsum.T, vocab.leaf_dept, w.T)
    pref = dept * w / dsum[:, vocab.leaf_dept]
    pref = 0.75 * pref + 0.25 * leaf_pop / leaf_pop.sum()
    if trending is not None:
        pref[:, trending] *= params.trending_prior
    pref *= leaf_ok
    pref /= pref.sum(1, keepdims=True)
    join = np.where(rng.random(n) < 0.75, 0, rng.integers(0, max(days, 1), n))
    leave = np.where(rng.random(n) < 0.15, join + 1 + rng.integers(0, max(days, 1), n), days + 1)
    return Users(
        leaf_pref=pref.astype(np.float32),
        latent=rng.normal(0.0, 0.8, (n, LATENT_DIM)).astype(np.float32),
        price_sens=(1.5 * rng.beta(2.0, 2.0, n)).astype(np.float32),
        activity=rng.lognormal(0.0, 1.0, n).astype(np.float32),
        search_prop=rng.beta(4.0, 3.0, n).astype(np.float32),
        join_day=join.astype(np.int32), leave_day=np.minimum(leave, days + 1).astype(np.int32),
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def relevance_of(q: Query, vocab: Vocab, cat: ShopCatalogue, idx: np.ndarray,
                 params: Params) -> np.ndarray:
    """Graded relevance in [0, 3] of items ``idx`` to the parsed query ``q``."""
    idx = np.asarray(idx, np.int64)
    if q.empty:
        return np.zeros(idx.shape, np.float64)
    leaf = cat.leaf[idx]
    if q.noun >= 0:
        same_group = vocab.leaf_group[leaf] == vocab.leaf_group[q.leaf]
        category = np.where(cat.noun[idx] == q.noun, 1.0,
                            np.where(leaf == q.leaf, 0.3, np.where(same_group, 0.05, 0.0)))
    elif q.leaf >= 0:
        same_group = vocab.leaf_group[leaf] == vocab.leaf_group[q.leaf]
        category = np.where(leaf == q.leaf, 0.85, np.where(same_group, 0.1, 0.0))
    else:
        category = np.ones(idx.shape)
    num = np.full(idx.shape, 1.0 if q.leaf >= 0 else 0.0)
    den = 1.0 if q.leaf >= 0 else 0.0
    for v in q.values:
        num = num + params.w_value * (cat.values[idx] == v).any(-1)
        den += params.w_value
    if q.brand >= 0:
        num = num + params.w_brand * (cat.brand[idx] == q.brand)
        den += params.w_brand
    s = category * num / den
    return np.clip(3.0 * s + cat.quality[idx] * (s > 0.15), 0.0, 3.0)


def affinity_of(users: Users, cat: ShopCatalogue, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Taste of users ``u`` for items ``i`` (broadcast), roughly N(0, 1); -1 = unknown user."""
    u = np.asarray(u, np.int64)
    i = np.asarray(i, np.int64)
    known = u >= 0
    uu = np.where(known, u, 0)
    L = users.leaf_pref.shape[1]
    pref = np.where(known, users.leaf_pref[uu, cat.leaf[i]], 1.0 / L)
    latent = np.where(known, (users.latent[uu] * cat.latent[i]).sum(-1), 0.0)
    sens = np.where(known, users.price_sens[uu], 0.75)
    return 0.4 * np.clip(np.log(pref * L + 1e-3), -2.0, 2.0) + latent - 0.4 * sens * cat.zprice[i]


@dataclass(frozen=True)
class Drift:
    """The trend: from ``day`` on, ``leaf`` takes up to ``strength`` of the queries."""

    day: int | None
    leaf: int | None
    strength: float
    ramp_days: float

    def share(self, day: int | np.ndarray) -> np.ndarray:
        if self.day is None or self.leaf is None:
            return np.zeros(np.shape(day))
        d = np.asarray(day, np.float64) - self.day + 1.0
        return self.strength * np.clip(d / self.ramp_days, 0.0, 1.0)


class ShopTruth:
    """The hidden model of a generated shop; ``ShopTruth.load(out_dir)`` reads it back."""

    def __init__(self, *, vocab: Vocab, cat: ShopCatalogue, users: Users, bank: QueryBank,
                 params: Params, drift: Drift, meta: dict[str, Any]) -> None:
        self.vocab, self.cat, self.users, self.bank = vocab, cat, users, bank
        self.params, self.drift, self.meta = params, drift, meta
        first = np.flatnonzero(bank.leaf < 0)
        self.n_zero_start = int(first[0]) if len(first) else len(bank)
        within = np.zeros(len(bank))
        leaves = bank.leaf[: self.n_zero_start]
        for li in np.unique(leaves):
            m = np.flatnonzero(leaves == li)
            within[m] = np.cumsum(bank.weight[m]) / bank.weight[m].sum()
            within[m[-1]] = 1.0
        self._qkey = (leaves + within[: self.n_zero_start]).astype(np.float64)
        self.pop_leaf = users.leaf_pref.mean(0).astype(np.float64)
        self.pop_leaf /= self.pop_leaf.sum()

    # ---------------------------------------------------------------- ids
    def item_index(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row numbers of raw item ids ("i00042" -> 42); unknown ids raise ValueError."""
        out = np.fromiter((int(s[1:]) if s and s[0] == "i" and s[1:].isdigit() else -1
                           for s in item_ids), np.int64, len(item_ids))
        if ((out < 0) | (out >= len(self.cat))).any():
            raise ValueError("unknown item id(s): " + ", ".join(
                s for s, o in zip(item_ids, out) if o < 0 or o >= len(self.cat))[:200])
        return out

    def user_index(self, user_id: str | None) -> int:
        """Row of a raw user id ("u000123" -> 123); -1 (an average shopper) when unknown."""
        if not user_id or user_id[0] != "u" or not user_id[1:].isdigit():
            return -1
        u = int(user_id[1:])
        return u if u < len(self.users) else -1

    # ---------------------------------------------------------------- the model
    def parse(self, query: str) -> Query:
        return parse_query(query, self.vocab)

    def relevance(self, query: str, item_ids: Sequence[str]) -> np.ndarray:
        """Graded relevance in [0, 3] (continuous); judgements are its ``rint``."""
        return relevance_of(self.parse(query), self.vocab, self.cat,
                            self.item_index(item_ids), self.params)

    def affinity(self, user_id: str | None, item_ids: Sequence[str]) -> np.ndarray:
        """The user's taste for each item (about N(0, 1)); independent of any query."""
        idx = self.item_index(item_ids)
        return affinity_of(self.users, self.cat, np.full(idx.shape, self.user_index(user_id)), idx)

    def trend(self, idx: np.ndarray, day: int | np.ndarray) -> np.ndarray:
        """Extra attractiveness of trending-leaf items on ``day`` (0 before the drift)."""
        if self.drift.leaf is None or self.drift.strength <= 0:
            return np.zeros(np.shape(idx))
        share = self.drift.share(day) / self.drift.strength
        return self.params.trend_boost * share * (self.cat.leaf[idx] == self.drift.leaf)

    def attractiveness(self, grade: np.ndarray, aff: np.ndarray, trend: np.ndarray) -> np.ndarray:
        p = self.params
        return sigmoid(p.click_bias + p.click_grade * grade + p.click_affinity * aff + trend)

    def examination(self, positions: np.ndarray) -> np.ndarray:
        pos = np.maximum(np.asarray(positions, np.float64), 1.0)
        return pos ** -self.params.exam_power

    def click_probability(self, user_id: str | None, query: str, item_ids: Sequence[str],
                          positions: Sequence[int], day: int) -> np.ndarray:
        """P(click) of each shown item: examination(position) x attractiveness.

        ``day`` counts from the shop's start (0-based); it matters after the drift."""
        idx = self.item_index(item_ids)
        grade = relevance_of(self.parse(query), self.vocab, self.cat, idx, self.params)
        aff = affinity_of(self.users, self.cat, np.full(idx.shape, self.user_index(user_id)), idx)
        return self.examination(np.asarray(positions)) * self.attractiveness(
            grade, aff, self.trend(idx, day))

    # ---------------------------------------------------------------- sampling
    def pick_leaves(self, rng: np.random.Generator, pref: np.ndarray, day: int,
                    trend_scale: float = 1.0) -> np.ndarray:
        """One leaf per row of taste ``pref`` (n, leaves), pulled toward the trend."""
        u = rng.random(len(pref))
        leaves = (pref.cumsum(1) < u[:, None] * pref.sum(1, keepdims=True)).sum(1)
        leaves = np.minimum(leaves, pref.shape[1] - 1)
        if self.drift.leaf is not None:
            trend = rng.random(len(pref)) < trend_scale * self.drift.share(day)
            leaves = np.where(trend, self.drift.leaf, leaves)
        return leaves.astype(np.int32)

    def pick_queries(self, rng: np.random.Generator, leaves: np.ndarray) -> np.ndarray:
        """A bank query per leaf (by typing frequency), or a zero-result query."""
        u = rng.random(len(leaves))
        q = np.searchsorted(self._qkey, leaves + u, side="right")
        q = np.minimum(q, self.n_zero_start - 1)
        zero = rng.random(len(leaves)) < self.params.zero_result_share
        n_zero = len(self.bank) - self.n_zero_start
        if n_zero:
            q = np.where(zero, self.n_zero_start + rng.integers(0, n_zero, len(leaves)), q)
        return q.astype(np.int32)

    def sample_query(self, rng: np.random.Generator, day: int) -> str:
        """A query as the shop's population types it on ``day`` (drift included)."""
        leaves = self.pick_leaves(rng, self.pop_leaf[None, :], day)
        return self.bank.text[int(self.pick_queries(rng, leaves)[0])]

    def sample_user(self, rng: np.random.Generator, day: int) -> str:
        """An active user on ``day``, drawn by activity."""
        u = self.users
        w = u.activity * ((u.join_day <= day) & (day < u.leave_day))
        k = int(np.searchsorted(np.cumsum(w), rng.random() * w.sum(), side="right"))
        return f"u{min(k, len(u) - 1):0{self.meta['user_width']}d}"

    # ---------------------------------------------------------------- disk
    def save(self, truth_dir: Path) -> None:
        """Write .npz arrays and JSON (no pickles) into ``truth_dir``."""
        truth_dir.mkdir(parents=True, exist_ok=True)
        np.savez(truth_dir / "items.npz", **self.cat.arrays())
        np.savez(truth_dir / "users.npz", **self.users.arrays())
        np.savez(truth_dir / "queries.npz", **self.bank.arrays())
        (truth_dir / "vocab.json").write_text(json.dumps(self.vocab.to_json(), indent=1))
        (truth_dir / "model.json").write_text(json.dumps({
            "params": asdict(self.params), "drift": asdict(self.drift), "meta": self.meta,
        }, indent=2, default=str))

    @classmethod
    def load(cls, out_dir: Path | str) -> ShopTruth:
        """Read the truth of a shop from ``out_dir`` (or its ``truth/`` folder)."""
        d = Path(out_dir)
        d = d / "truth" if (d / "truth").is_dir() else d

        def npz(name: str) -> dict[str, np.ndarray]:
            with np.load(d / name, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}

        model = json.loads((d / "model.json").read_text())
        qb = npz("queries.npz")
        bank = QueryBank(text=[str(t) for t in qb.pop("text")], **qb)
        return cls(vocab=Vocab.from_json(json.loads((d / "vocab.json").read_text())),
                   cat=ShopCatalogue(**npz("items.npz")), users=Users(**npz("users.npz")),
                   bank=bank, params=Params(**model["params"]), drift=Drift(**model["drift"]),
                   meta=model["meta"])
