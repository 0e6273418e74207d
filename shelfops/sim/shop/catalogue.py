"""The synthetic shop's catalogue: vocabulary, products, and the bank of shopper queries.

* :class:`Vocab` numbers the tree, nouns, brands and attribute values and maps every
  query term (singular and plural nouns, their shopper synonyms, leaf words, brands,
  values and theirs) to what it means; it also knows one misspelling of each longer word.
  :func:`parse_query` reads any query text back into a :class:`Query` by correcting known
  misspellings, then greedy longest match, so a query typed by a simulator means what
  the generator meant ("grey couches" and "gray sofa" mean the same).
* :func:`make_catalogue` draws the products (numeric truth in :class:`ShopCatalogue`, text in
  :func:`items_table`).
* :func:`build_query_bank` lists the queries shoppers type, grouped by leaf, with weights:
  each in the catalogue's words and in shoppers' own words (synonyms, plurals, typos).
* :class:`LexicalIndex` finds products that share words with a text (a lexical engine's
  view, for the production ranker's false friends and the judged pools' distractors).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from shelfops.plain import tokens
from shelfops.sim.shop.text import plural, related_nouns, render_description, render_title
from shelfops.sim.shop.vocab import (
    BRANDS,
    HOUSE_BRANDS,
    LEAVES,
    PRE_ATTRS,
    ZERO_RESULT_QUERIES,
    value_synonyms,
)
from shelfops.tables import CATEGORY_SEP, ITEMS

LATENT_DIM = 8
HOUSE_SHARE = 0.3  # popularity of a house brand relative to a department's own brands
MAX_VALUES = 3  # attribute slots per item and value terms per query


@dataclass(frozen=True)
class Vocab:
    """Numbered names of the catalogue tree and every query term.

    ``*_syn`` hold the other words shoppers use for a noun, leaf or attribute value
    ("couch" for "sofa"); ``typos`` maps a misspelt word to the word meant ("skilet").
    Every form (and a noun form's plural) means one thing: :attr:`terms` maps it there.
    """

    departments: list[str]
    leaf_paths: list[str]
    leaf_terms: list[str | None]
    leaf_dept: np.ndarray
    leaf_group: np.ndarray
    nouns: list[str]
    noun_leaf: np.ndarray
    brands: list[str]
    brand_dept: np.ndarray  # -1: a house brand, sold in every department
    values: list[str]
    leaf_attrs: list[list[tuple[str, list[int]]]]  # leaf -> [(attribute, value ids)]
    noun_syn: list[list[str]] = field(default_factory=list)
    leaf_syn: list[list[str]] = field(default_factory=list)
    value_syn: list[list[str]] = field(default_factory=list)
    typos: dict[str, str] = field(default_factory=dict)
    terms: dict[str, tuple[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, n in (("noun_syn", len(self.nouns)), ("leaf_syn", len(self.leaf_paths)),
                        ("value_syn", len(self.values))):
            if not getattr(self, name):
                getattr(self, name).extend([] for _ in range(n))
        if not self.terms:
            self.terms.update(_term_map(self))

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_paths)

    def forms(self, kind: str, i: int) -> list[str]:
        """The catalogue's word for a concept first, then the shoppers' synonyms."""
        if kind == "noun":
            return [self.nouns[i], *self.noun_syn[i]]
        if kind == "leaf":
            term = self.leaf_terms[i]
            return ([term] if term else []) + self.leaf_syn[i]
        if kind == "value":
            return [self.values[i], *self.value_syn[i]]
        return [self.brands[i].lower()]

    def to_json(self) -> dict[str, Any]:
        return {
            "departments": self.departments, "leaf_paths": self.leaf_paths,
            "leaf_terms": self.leaf_terms, "leaf_dept": self.leaf_dept.tolist(),
            "leaf_group": self.leaf_group.tolist(), "nouns": self.nouns,
            "noun_leaf": self.noun_leaf.tolist(), "brands": self.brands,
            "brand_dept": self.brand_dept.tolist(), "values": self.values,
            "leaf_attrs": [[[a, v] for a, v in attrs] for attrs in self.leaf_attrs],
            "noun_syn": self.noun_syn, "leaf_syn": self.leaf_syn, "value_syn": self.value_syn,
            "typos": self.typos,
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
            noun_syn=[list(s) for s in d.get("noun_syn", [])],
            leaf_syn=[list(s) for s in d.get("leaf_syn", [])],
            value_syn=[list(s) for s in d.get("value_syn", [])],
            typos=dict(d.get("typos", {})),
        )


def _term_map(v: Vocab) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}

    def add(text: str, kind: str, i: int) -> None:
        key = " ".join(tokens(text))
        if key in out and out[key] != (kind, i):
            raise ValueError(f"query term {key!r} is ambiguous: {out[key]} and {(kind, i)}")
        out[key] = (kind, i)

    for i in range(len(v.nouns)):
        for form in v.forms("noun", i):
            add(form, "noun", i)
            add(plural(form), "noun", i)
    for i in range(v.n_leaves):
        for form in v.forms("leaf", i):
            add(form, "leaf", i)
    for i, b in enumerate(v.brands):
        add(b, "brand", i)
    for i in range(len(v.values)):
        for form in v.forms("value", i):
            add(form, "value", i)
    return out


def _typo(word: str) -> str:
    """A deterministic slip of the keyboard: drop, swap or double an inner letter."""
    h = zlib.crc32(word.encode())
    i = 1 + h % (len(word) - 2)
    op = (h >> 12) % 3
    if op == 0:
        return word[:i] + word[i + 1:]
    if op == 1 and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + word[i] + word[i:]


def _typos(v: Vocab) -> dict[str, str]:
    """One misspelling for each longer word of nouns, leaf terms and brands (never a word
    the vocabulary already uses, so a correction is never ambiguous)."""
    words: list[str] = []
    for kind, n in (("noun", len(v.nouns)), ("leaf", v.n_leaves), ("brand", len(v.brands))):
        for i in range(n):
            for form in v.forms(kind, i):
                words += tokens(form) + (tokens(plural(form)) if kind == "noun" else [])
    known = set(words) | {t for key in v.terms for t in key.split(" ")}
    out: dict[str, str] = {}
    for w in dict.fromkeys(words):
        if len(w) >= 5 and w.isalpha():
            t = _typo(w)
            if t != w and t not in known and t not in out:
                out[t] = w
    return out


def build_vocab() -> Vocab:
    """Number the fixed tree of :mod:`shelfops.sim.shop.text`."""
    departments = list(dict.fromkeys(leaf.path[0] for leaf in LEAVES))
    groups = list(dict.fromkeys(leaf.path[:2] for leaf in LEAVES))
    nouns: list[str] = []
    noun_syn: list[list[str]] = []
    noun_leaf: list[int] = []
    values: list[str] = []
    leaf_attrs: list[list[tuple[str, list[int]]]] = []
    for li, leaf in enumerate(LEAVES):
        for word, *syn in leaf.noun_forms:
            nouns.append(word)
            noun_syn.append(list(syn))
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
    brands = [b for d in departments for b in BRANDS[d]] + list(HOUSE_BRANDS)
    vocab = Vocab(
        departments=departments,
        leaf_paths=[CATEGORY_SEP.join(leaf.path) for leaf in LEAVES],
        leaf_terms=[leaf.term for leaf in LEAVES],
        leaf_dept=np.array([departments.index(leaf.path[0]) for leaf in LEAVES], np.int32),
        leaf_group=np.array([groups.index(leaf.path[:2]) for leaf in LEAVES], np.int32),
        nouns=nouns, noun_leaf=np.array(noun_leaf, np.int32), brands=brands,
        brand_dept=np.array([departments.index(d) for d in departments for _ in BRANDS[d]]
                            + [-1] * len(HOUSE_BRANDS), np.int32),
        values=values, leaf_attrs=leaf_attrs, noun_syn=noun_syn,
        leaf_syn=[list(leaf.term_syn) for leaf in LEAVES],
        value_syn=[list(value_synonyms(val)) for val in values],
    )
    vocab.typos.update(_typos(vocab))
    return vocab


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
    """Read a query by greedy longest match of known terms (synonyms and plurals included,
    known misspellings corrected first); unknown words are ignored."""
    toks = [vocab.typos.get(t, t) for t in tokens(text)]
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
class ShopCatalogue:
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
                   new_leaf: int | None, n_new: int, launch: int) -> tuple[ShopCatalogue, pa.Table]:
    """Draw ``n_items`` products; the last ``n_new`` of them launch on day ``launch`` in
    ``new_leaf`` (the drift's trending leaf). Returns the truth and the ITEMS table."""
    n_old = n_items - n_new
    leaf = np.repeat(np.arange(vocab.n_leaves), _leaf_sizes(rng, n_old, vocab.n_leaves))
    leaf = np.concatenate([rng.permutation(leaf), np.full(n_new, new_leaf or 0)]).astype(np.int32)
    nb = len(vocab.brands)
    brand_pop = (rng.pareto(1.5, nb) + 0.5) * np.where(vocab.brand_dept < 0, HOUSE_SHARE, 1.0)
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
        brands = np.flatnonzero((vocab.brand_dept == vocab.leaf_dept[li]) | (vocab.brand_dept < 0))
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
    cat = ShopCatalogue(leaf=leaf, noun=noun, brand=brand, values=values, price=price,
                        zprice=zprice.astype(np.float32), quality=quality.astype(np.float32),
                        popularity=pop.astype(np.float32), latent=lat.astype(np.float32),
                        launch_day=launch_day)
    return cat, items_table(rng, vocab, cat)


def items_table(rng: np.random.Generator, vocab: Vocab, cat: ShopCatalogue) -> pa.Table:
    """Titles, descriptions and attribute JSON for every product, as an ITEMS table."""
    titles, descs, attrs_json = [], [], []
    related = [related_nouns(li) for li in range(vocab.n_leaves)]
    for i in range(len(cat)):
        li = int(cat.leaf[i])
        spec = LEAVES[li]
        attrs = [(name, vocab.values[int(cat.values[i, s])])
                 for s, (name, _) in enumerate(vocab.leaf_attrs[li]) if cat.values[i, s] >= 0]
        brand, noun = vocab.brands[int(cat.brand[i])], vocab.nouns[int(cat.noun[i])]
        titles.append(render_title(rng, brand=brand, noun=noun, attrs=attrs, leaf=spec))
        descs.append(render_description(rng, brand=brand, noun=noun, attrs=attrs, leaf=spec,
                                        others=related[li]))
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


Slot = tuple[str, int]  # ("noun" | "leaf" | "value" | "brand", id)

# How shoppers word a query: each base query is typed in the catalogue's words
# (VARIANTS[0] of its typing weight) and in two renderings in the shopper's own words,
# where each noun, leaf and value takes a synonym with P_SYNONYM, a noun is plural with
# P_PLURAL, and P_TYPO of renderings misspell one word.
VARIANTS = (0.4, 0.3, 0.3)
P_SYNONYM = 0.8
P_PLURAL = 0.3
P_TYPO = 0.1


def _leaf_queries(vocab: Vocab, cat: ShopCatalogue, li: int) -> list[tuple[list[Slot], Query, float]]:
    """The base queries of a leaf (as slots of concepts) with their typing weights."""
    out: list[tuple[list[Slot], Query, float]] = []
    in_leaf = np.flatnonzero(cat.leaf == li)
    pre = [s for s, (a, _) in enumerate(vocab.leaf_attrs[li]) if a in PRE_ATTRS]
    if vocab.forms("leaf", li):
        out.append(([("leaf", li)], Query(leaf=li), 0.4))
        for s in pre:
            for v, sh in _shares(cat.values[in_leaf, s]):
                out.append(([("value", v), ("leaf", li)], Query(leaf=li, values=(v,)), 0.3 * sh))
    for n in np.unique(cat.noun[in_leaf]):
        idx = in_leaf[cat.noun[in_leaf] == n]
        noun, w = ("noun", int(n)), float(np.sqrt(len(idx) / len(in_leaf)))
        q = Query(noun=int(n), leaf=li)
        out.append(([noun], q, 1.3 * w))
        for s, (attr, _) in enumerate(vocab.leaf_attrs[li]):
            for v, sh in _shares(cat.values[idx, s]):
                slots = [("value", v), noun] if attr in PRE_ATTRS else [noun, ("value", v)]
                out.append((slots, Query(int(n), li, -1, (v,)), 0.5 * w * sh))
        for b, sh in _shares(cat.brand[idx]):
            out.append(([("brand", b), noun], Query(int(n), li, b), 0.4 * w * sh))
        if len(vocab.leaf_attrs[li]) >= 2 and pre:
            s0 = pre[0]
            s1 = next(s for s in range(len(vocab.leaf_attrs[li])) if s != s0)
            pairs, counts = np.unique(cat.values[idx][:, [s0, s1]], axis=0, return_counts=True)
            keep = (pairs >= 0).all(1)
            pairs, counts = pairs[keep], counts[keep]
            for k in np.argsort(-counts, kind="stable")[:8]:
                v0, v1 = (int(x) for x in pairs[k])
                slots = ([("value", v0), ("value", v1), noun] if s1 in pre
                         else [("value", v0), noun, ("value", v1)])
                out.append((slots, Query(int(n), li, -1, (v0, v1)),
                            0.3 * w * counts[k] / len(idx)))
    return out


def render_query(rng: np.random.Generator | None, vocab: Vocab, slots: list[Slot],
                 misspell: dict[str, str]) -> str:
    """A query's text: the catalogue's words (``rng`` None) or a shopper's own words."""
    words = []
    for kind, k in slots:
        forms = vocab.forms(kind, k)
        form = forms[0]
        if rng is not None and len(forms) > 1 and rng.random() < P_SYNONYM:
            form = forms[1 + int(rng.integers(len(forms) - 1))]
        if rng is not None and kind == "noun" and rng.random() < P_PLURAL:
            form = plural(form)
        words.append(form)
    text = " ".join(words)
    if rng is not None and rng.random() < P_TYPO:
        toks = text.split(" ")
        can = [i for i, t in enumerate(toks) if t in misspell]
        if can:
            i = can[int(rng.integers(len(can)))]
            toks[i] = misspell[toks[i]]
            text = " ".join(toks)
    return text


def build_query_bank(vocab: Vocab, cat: ShopCatalogue, rng: np.random.Generator) -> QueryBank:
    """All queries for the products that exist, weighted by how often they are typed;
    every text parses back (:func:`parse_query`) to the meaning it was written for."""
    misspell = {w: t for t, w in vocab.typos.items()}
    rows: list[tuple[str, Query, float]] = []
    for li in range(vocab.n_leaves):
        part = _leaf_queries(vocab, cat, li)
        total = sum(w for _, _, w in part)
        texts: dict[str, list] = {}
        for slots, q, w in part:
            canonical = render_query(None, vocab, slots, misspell)
            texts.setdefault(canonical, [q, 0.0])[1] += VARIANTS[0] * w / total
            for share in VARIANTS[1:]:
                text = render_query(rng, vocab, slots, misspell)
                if text not in texts and parse_query(text, vocab) != q:
                    text = canonical  # a rendering that reads as something else
                texts.setdefault(text, [q, 0.0])[1] += share * w / total
        rows += [(t, q, w) for t, (q, w) in texts.items()]
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


# ----------------------------------------------------------------------------- lexical

STOPWORDS = frozenset({"a", "an", "and", "by", "for", "of", "on", "the", "with", "s"})


class LexicalIndex:
    """Which products share words with a text: an inverted index over product texts (title,
    brand, category leaf) scoring items by the idf of the distinct words they share."""

    def __init__(self, texts: list[str]) -> None:
        post: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            for t in dict.fromkeys(tokens(text)):
                post.setdefault(t, []).append(i)
        self.n = len(texts)
        self.postings = {t: np.asarray(ix, np.int64) for t, ix in post.items()}
        self.idf = {t: float(np.log(1.0 + self.n / len(ix))) for t, ix in post.items()}

    def scores(self, text: str) -> np.ndarray:
        s = np.zeros(self.n)
        for t in dict.fromkeys(tokens(text)):
            if t not in STOPWORDS and t in self.postings:
                s[self.postings[t]] += self.idf[t]
        return s
