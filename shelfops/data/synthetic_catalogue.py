"""The synthetic shop's catalogue: vocabulary, products, and the bank of shopper queries.

* :class:`Vocab` numbers the tree, nouns, brands and attribute values and maps every
  query term (singular and plural nouns, leaf words, brands, values) to what it means.
  :func:`parse_query` reads any query text back into a :class:`Query` by greedy
  longest match, so a query typed by a simulator means what the generator meant.
* :func:`make_catalogue` draws the products (numeric truth in :class:`Catalogue`, text in
  :func:`items_table`).
* :func:`build_query_bank` lists the queries shoppers type, grouped by leaf, with weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from shelfops.data.schema import CATEGORY_SEP, ITEMS
from shelfops.data.synthetic_text import (
    BRANDS,
    LEAVES,
    PRE_ATTRS,
    ZERO_RESULT_QUERIES,
    plural,
    render_description,
    render_title,
)

LATENT_DIM = 8
MAX_VALUES = 3  # attribute slots per item and value terms per query
_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric tokens; the unit of query matching."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Vocab:
    """Numbered names of the catalogue tree and every query term."""

    departments: list[str]
    leaf_paths: list[str]
    leaf_terms: list[str | None]
    leaf_dept: np.ndarray
    leaf_group: np.ndarray
    nouns: list[str]
    noun_leaf: np.ndarray
    brands: list[str]
    brand_dept: np.ndarray
    values: list[str]
    leaf_attrs: list[list[tuple[str, list[int]]]]  # leaf -> [(attribute, value ids)]
    terms: dict[str, tuple[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.terms:
            self.terms.update(_term_map(self))

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_paths)

    def to_json(self) -> dict[str, Any]:
        return {
            "departments": self.departments, "leaf_paths": self.leaf_paths,
            "leaf_terms": self.leaf_terms, "leaf_dept": self.leaf_dept.tolist(),
            "leaf_group": self.leaf_group.tolist(), "nouns": self.nouns,
            "noun_leaf": self.noun_leaf.tolist(), "brands": self.brands,
            "brand_dept": self.brand_dept.tolist(), "values": self.values,
            "leaf_attrs": [[[a, v] for a, v in attrs] for attrs in self.leaf_attrs],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Vocab:
        return cls(
            departments=d["departments"], leaf_paths=d["leaf_paths"], leaf_terms=d["leaf_terms"],
            leaf_dept=np.asarray(d["leaf_dept"], np.int32),
            leaf_group=np.asarray(d["leaf_group"], np.int32), nouns=d["nouns"],
            noun_leaf=np.asarray(d["noun_leaf"], np.int32), brands=d["brands"],
            brand_dept=np.asarray(d["brand_dept"], np.int32), values=d["values"],
            leaf_attrs=[[(a, list(v)) for a, v in attrs] for attrs in d["leaf_attrs"]],
        )


def _term_map(v: Vocab) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}

    def add(text: str, kind: str, i: int) -> None:
        key = " ".join(tokens(text))
        if key in out and out[key] != (kind, i):
            raise ValueError(f"query term {key!r} is ambiguous: {out[key]} and {(kind, i)}")
        out[key] = (kind, i)

    for i, n in enumerate(v.nouns):
        add(n, "noun", i)
        add(plural(n), "noun", i)
    for i, t in enumerate(v.leaf_terms):
        if t:
            add(t, "leaf", i)
    for i, b in enumerate(v.brands):
        add(b, "brand", i)
    for i, val in enumerate(v.values):
        add(val, "value", i)
    return out


def build_vocab() -> Vocab:
    """Number the fixed tree of :mod:`shelfops.data.synthetic_text`."""
    departments = list(dict.fromkeys(leaf.path[0] for leaf in LEAVES))
    groups = list(dict.fromkeys(leaf.path[:2] for leaf in LEAVES))
    nouns: list[str] = []
    noun_leaf: list[int] = []
    values: list[str] = []
    leaf_attrs: list[list[tuple[str, list[int]]]] = []
    for li, leaf in enumerate(LEAVES):
        for n in leaf.nouns:
            nouns.append(n)
            noun_leaf.append(li)
        attrs = []
        for name, vals in leaf.attrs:
            ids = []
            for val in vals:
                if val not in values:
                    values.append(val)
                ids.append(values.index(val))
            attrs.append((name, ids))
        leaf_attrs.append(attrs)
    brands = [b for d in departments for b in BRANDS[d]]
    return Vocab(
        departments=departments,
        leaf_paths=[CATEGORY_SEP.join(leaf.path) for leaf in LEAVES],
        leaf_terms=[leaf.term for leaf in LEAVES],
        leaf_dept=np.array([departments.index(leaf.path[0]) for leaf in LEAVES], np.int32),
        leaf_group=np.array([groups.index(leaf.path[:2]) for leaf in LEAVES], np.int32),
        nouns=nouns, noun_leaf=np.array(noun_leaf, np.int32), brands=brands,
        brand_dept=np.array([departments.index(d) for d in departments for _ in BRANDS[d]],
                            np.int32),
        values=values, leaf_attrs=leaf_attrs,
    )


@dataclass(frozen=True)
class Query:
    """What a query asks for; -1 / () where it says nothing."""

    noun: int = -1
    leaf: int = -1
    brand: int = -1
    values: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return self.leaf < 0 and self.brand < 0 and not self.values


def parse_query(text: str, vocab: Vocab) -> Query:
    """Read a query by greedy longest match of known terms; unknown words are ignored."""
    toks = tokens(text)
    noun = leaf = brand = -1
    values: list[int] = []
    i = 0
    while i < len(toks):
        for n in range(min(4, len(toks) - i), 0, -1):
            hit = vocab.terms.get(" ".join(toks[i:i + n]))
            if hit:
                break
        else:
            i += 1
            continue
        kind, k = hit
        if kind == "noun" and noun < 0:
            noun, leaf = k, int(vocab.noun_leaf[k])
        elif kind == "leaf" and leaf < 0:
            leaf = k
        elif kind == "brand" and brand < 0:
            brand = k
        elif kind == "value" and k not in values and len(values) < MAX_VALUES:
            values.append(k)
        i += n
    return Query(noun, leaf, brand, tuple(values))


# ----------------------------------------------------------------------------- products


@dataclass
class Catalogue:
    """The numeric truth about every product (row i is item ``i``)."""

    leaf: np.ndarray  # int32
    noun: np.ndarray  # int32
    brand: np.ndarray  # int32
    values: np.ndarray  # int32 (n, MAX_VALUES), -1 padded
    price: np.ndarray  # float64
    zprice: np.ndarray  # float32, log price standardised within the leaf
    quality: np.ndarray  # float32, small hidden per-item relevance term
    popularity: np.ndarray  # float32 > 0
    latent: np.ndarray  # float32 (n, LATENT_DIM), taste space shared with users
    launch_day: np.ndarray  # int32, first day the item can be shown

    def __len__(self) -> int:
        return len(self.leaf)

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)


def item_ids(n: int) -> list[str]:
    width = max(5, len(str(max(n - 1, 0))))
    return [f"i{i:0{width}d}" for i in range(n)]


def _leaf_sizes(rng: np.random.Generator, n_items: int, n_leaves: int) -> np.ndarray:
    w = rng.lognormal(0.0, 0.4, n_leaves)
    base = np.ones(n_leaves, np.int64) if n_items >= n_leaves else np.zeros(n_leaves, np.int64)
    rest = n_items - int(base.sum())
    return base + rng.multinomial(rest, w / w.sum())


def make_catalogue(rng: np.random.Generator, vocab: Vocab, n_items: int, *,
                   new_leaf: int | None, n_new: int, launch: int) -> tuple[Catalogue, pa.Table]:
    """Draw ``n_items`` products; the last ``n_new`` of them launch on day ``launch`` in
    ``new_leaf`` (the drift's trending leaf). Returns the truth and the ITEMS table."""
    n_old = n_items - n_new
    leaf = np.repeat(np.arange(vocab.n_leaves), _leaf_sizes(rng, n_old, vocab.n_leaves))
    leaf = np.concatenate([rng.permutation(leaf), np.full(n_new, new_leaf or 0)]).astype(np.int32)
    nb = len(vocab.brands)
    brand_pop = rng.pareto(1.5, nb) + 0.5
    brand_tier = rng.lognormal(0.0, 0.3, nb)
    brand_q = rng.normal(0.0, 0.15, nb)
    brand_vec = rng.normal(0.0, 1.0, (nb, LATENT_DIM))

    noun = np.empty(n_items, np.int32)
    brand = np.empty(n_items, np.int32)
    values = np.full((n_items, MAX_VALUES), -1, np.int32)
    size_factor = np.ones(n_items)
    for li in range(vocab.n_leaves):
        idx = np.flatnonzero(leaf == li)
        nouns = np.flatnonzero(vocab.noun_leaf == li)
        noun[idx] = nouns[rng.integers(len(nouns), size=len(idx))]
        brands = np.flatnonzero(vocab.brand_dept == vocab.leaf_dept[li])
        p = brand_pop[brands] / brand_pop[brands].sum()
        brand[idx] = brands[rng.choice(len(brands), size=len(idx), p=p)]
        for s, (name, ids) in enumerate(vocab.leaf_attrs[li]):
            w = rng.dirichlet(np.full(len(ids), 2.0))
            pick = rng.choice(len(ids), size=len(idx), p=w)
            values[idx, s] = np.asarray(ids)[pick]
            if name not in PRE_ATTRS:
                size_factor[idx] *= 0.8 + 0.6 * pick / max(len(ids) - 1, 1)
        for noun_name, attr in LEAVES[li].skip:  # attributes that do not apply to a noun
            s = [a for a, _ in vocab.leaf_attrs[li]].index(attr)
            values[idx[noun[idx] == vocab.nouns.index(noun_name)], s] = -1

    quality = np.clip(brand_q[brand] + rng.normal(0.0, 0.2, n_items), -0.6, 0.6)
    base_price = np.array([LEAVES[i].price for i in range(vocab.n_leaves)])[leaf]
    price = base_price * brand_tier[brand] * size_factor * rng.lognormal(0.0, 0.2, n_items)
    price = np.where(price >= 5, np.floor(price) + 0.99, np.round(price, 2))
    logp = np.log(price)
    zprice = np.zeros(n_items)
    for li in range(vocab.n_leaves):
        m = leaf == li
        if m.any():
            zprice[m] = (logp[m] - logp[m].mean()) / (logp[m].std() + 1e-6)
    pop = np.exp(rng.normal(0.0, 0.7, n_items) + 1.2 * quality) * brand_pop[brand]
    lat = 0.8 * brand_vec[brand] + 0.6 * rng.normal(0.0, 1.0, (n_items, LATENT_DIM))
    lat /= np.linalg.norm(lat, axis=1, keepdims=True)
    launch_day = np.zeros(n_items, np.int32)
    launch_day[n_old:] = launch
    cat = Catalogue(leaf=leaf, noun=noun, brand=brand, values=values, price=price,
                    zprice=zprice.astype(np.float32), quality=quality.astype(np.float32),
                    popularity=pop.astype(np.float32), latent=lat.astype(np.float32),
                    launch_day=launch_day)
    return cat, items_table(rng, vocab, cat)


def items_table(rng: np.random.Generator, vocab: Vocab, cat: Catalogue) -> pa.Table:
    """Titles, descriptions and attribute JSON for every product, as an ITEMS table."""
    titles, descs, attrs_json = [], [], []
    for i in range(len(cat)):
        li = int(cat.leaf[i])
        spec = LEAVES[li]
        attrs = [(name, vocab.values[int(cat.values[i, s])])
                 for s, (name, _) in enumerate(vocab.leaf_attrs[li]) if cat.values[i, s] >= 0]
        brand, noun = vocab.brands[int(cat.brand[i])], vocab.nouns[int(cat.noun[i])]
        titles.append(render_title(rng, brand=brand, noun=noun, attrs=attrs, leaf=spec))
        descs.append(render_description(rng, brand=brand, noun=noun, attrs=attrs, leaf=spec))
        attrs_json.append(json.dumps(dict(attrs), separators=(",", ":")))
    return pa.table({
        "item_id": pa.array(item_ids(len(cat)), pa.string()),
        "title": pa.array(titles, pa.string()),
        "description": pa.array(descs, pa.string()),
        "category": pa.array([vocab.leaf_paths[int(x)] for x in cat.leaf], pa.string()),
        "brand": pa.array([vocab.brands[int(x)] for x in cat.brand], pa.string()),
        "price": pa.array(cat.price, pa.float64()),
        "attributes": pa.array(attrs_json, pa.string()),
    }, schema=ITEMS)


# ----------------------------------------------------------------------------- queries


@dataclass
class QueryBank:
    """Every query shoppers type, sorted by leaf; zero-result queries (leaf -1) last."""

    text: list[str]
    noun: np.ndarray  # int32
    leaf: np.ndarray  # int32
    brand: np.ndarray  # int32
    values: np.ndarray  # int32 (nq, MAX_VALUES)
    weight: np.ndarray  # float64, sums to 1 within each leaf; 1/k for the zero-result ones

    def __len__(self) -> int:
        return len(self.text)

    def query(self, q: int) -> Query:
        vals = tuple(int(v) for v in self.values[q] if v >= 0)
        return Query(int(self.noun[q]), int(self.leaf[q]), int(self.brand[q]), vals)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"text": np.array(self.text, dtype=str), "noun": self.noun, "leaf": self.leaf,
                "brand": self.brand, "values": self.values, "weight": self.weight}


def _shares(x: np.ndarray) -> list[tuple[int, float]]:
    u, c = np.unique(x, return_counts=True)
    return [(int(a), float(b) / len(x)) for a, b in zip(u, c) if a >= 0]


def _leaf_queries(vocab: Vocab, cat: Catalogue, li: int) -> list[tuple[str, Query, float]]:
    out: list[tuple[str, Query, float]] = []
    in_leaf = np.flatnonzero(cat.leaf == li)
    pre = [s for s, (a, _) in enumerate(vocab.leaf_attrs[li]) if a in PRE_ATTRS]
    term = vocab.leaf_terms[li]
    if term:
        out.append((term, Query(leaf=li), 0.4))
        for s in pre:
            for v, sh in _shares(cat.values[in_leaf, s]):
                out.append((f"{vocab.values[v]} {term}", Query(leaf=li, values=(v,)), 0.3 * sh))
    for n in np.unique(cat.noun[in_leaf]):
        idx = in_leaf[cat.noun[in_leaf] == n]
        word, w = vocab.nouns[n], float(np.sqrt(len(idx) / len(in_leaf)))
        q = Query(noun=int(n), leaf=li)
        out.append((word, q, w))
        if plural(word) != word:
            out.append((plural(word), q, 0.3 * w))
        for s, (attr, _) in enumerate(vocab.leaf_attrs[li]):
            for v, sh in _shares(cat.values[idx, s]):
                val = vocab.values[v]
                text = f"{val} {word}" if attr in PRE_ATTRS else f"{word} {val}"
                out.append((text, Query(int(n), li, -1, (v,)), 0.5 * w * sh))
        for b, sh in _shares(cat.brand[idx]):
            out.append((f"{vocab.brands[b].lower()} {word}", Query(int(n), li, b), 0.4 * w * sh))
        if len(vocab.leaf_attrs[li]) >= 2 and pre:
            s0 = pre[0]
            s1 = next(s for s in range(len(vocab.leaf_attrs[li])) if s != s0)
            pairs, counts = np.unique(cat.values[idx][:, [s0, s1]], axis=0, return_counts=True)
            keep = (pairs >= 0).all(1)
            pairs, counts = pairs[keep], counts[keep]
            for k in np.argsort(-counts, kind="stable")[:8]:
                v0, v1 = (int(x) for x in pairs[k])
                a, b = vocab.values[v0], vocab.values[v1]
                text = f"{a} {b} {word}" if s1 in pre else f"{a} {word} {b}"
                out.append((text, Query(int(n), li, -1, (v0, v1)), 0.3 * w * counts[k] / len(idx)))
    return out


def build_query_bank(vocab: Vocab, cat: Catalogue) -> QueryBank:
    """All queries for the products that exist, weighted by how often they are typed."""
    rows: list[tuple[str, Query, float]] = []
    for li in range(vocab.n_leaves):
        part = _leaf_queries(vocab, cat, li)
        total = sum(w for _, _, w in part)
        rows += [(t, q, w / total) for t, q, w in part]
    rows += [(t, Query(), 1.0 / len(ZERO_RESULT_QUERIES)) for t in ZERO_RESULT_QUERIES]
    vals = np.full((len(rows), MAX_VALUES), -1, np.int32)
    for r, (_, q, _) in enumerate(rows):
        vals[r, :len(q.values)] = q.values
    return QueryBank(
        text=[t for t, _, _ in rows],
        noun=np.array([q.noun for _, q, _ in rows], np.int32),
        leaf=np.array([q.leaf for _, q, _ in rows], np.int32),
        brand=np.array([q.brand for _, q, _ in rows], np.int32),
        values=vals, weight=np.array([w for _, _, w in rows], np.float64),
    )
