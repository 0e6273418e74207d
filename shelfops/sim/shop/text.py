"""The templates that write the synthetic shop's titles and descriptions from its vocabulary
(:mod:`shelfops.sim.shop.vocab`). Randomness comes in through the ``rng`` argument, so a seed
decides every title and description."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from shelfops.sim.shop.vocab import (
    CLOSINGS,
    DEPT_FEATURES,
    DEPT_USES,
    GLOBAL_FEATURES,
    GLOBAL_USES,
    KIND_FEATURES,
    LEAVES,
    MENTIONS,
    N_MENTION,
    P_MENTION,
    PRE_ATTRS,
    SERIES,
    UNITS,
    LeafSpec,
)

_ACRONYMS = {"tpe": "TPE", "pvc": "PVC"}
_NO_SHORT = frozenset({"set", "oven", "bank", "bed", "can", "box", "top", "parfum", "shampoo",
                       "shirt", "headphones", "protector"})
P_SHORT_TITLE = 0.45  # titles that name the product by its head word only
P_SHORT_DESC = 0.5  # descriptions that do
P_TITLE_SKIP = 0.35  # each attribute value is left out of a title with this probability
P_SPECS = 0.6  # descriptions that list the measured attributes
W_KIND, W_OWN, W_DEPT, W_SHOP = 3.0, 0.4, 0.8, 0.5
_IRREGULAR = {"knife": "knives", "shelf": "shelves", "mouse": "mice"}


@lru_cache(maxsize=4096)
def plural(noun: str) -> str:
    """English plural of a (possibly multi-word) noun: the last word is inflected; a last
    word ending in a single "s" ("headphones", "shears") is taken as plural already."""
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith("s") and not last.endswith("ss"):
        word = last
    elif last.endswith(("ss", "x", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


@lru_cache(maxsize=8192)
def display(text: str) -> str:
    """Title-case a phrase for a product title, keeping units and codes lower case."""
    words = []
    for w in text.split(" "):
        if w in _ACRONYMS:
            words.append(_ACRONYMS[w])
        elif w in UNITS or w[:1].isdigit() or w.startswith(("ipx", "usb")):
            words.append(w)
        else:
            words.append("-".join(p[:1].upper() + p[1:] for p in w.split("-")))
    return " ".join(words)


def short_noun(noun: str) -> str:
    """What a terse title calls a product: the head word ("Yoga Mat" -> "Mat"), unless the
    head alone would name something else ("Dutch Oven", "Power Bank")."""
    head = noun.rpartition(" ")[2]
    return noun if head in _NO_SHORT or head == noun else head


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def kind_of(noun: str) -> str | None:
    """The kind of product a noun names, if that kind is sold in several leaves."""
    head = noun.rpartition(" ")[2]
    return head if head in KIND_FEATURES else None


@lru_cache(maxsize=None)
def _feature_pool(leaf: LeafSpec, kind: str | None) -> tuple[tuple[str, ...], np.ndarray]:
    """The features of the product's kind weigh most, then the leaf's own, its
    department's, then the shop's (phrases, log weights)."""
    dept = leaf.path[0]
    own = KIND_FEATURES.get(kind or "", ())
    pool = tuple(dict.fromkeys(own + leaf.features + DEPT_FEATURES[dept] + GLOBAL_FEATURES))
    w = np.array([W_KIND if f in own else W_OWN if f in leaf.features
                  else W_DEPT if f in DEPT_FEATURES[dept] else W_SHOP for f in pool])
    return pool, np.log(w)


@lru_cache(maxsize=None)
def _use_pool(leaf: LeafSpec) -> tuple[tuple[str, ...], np.ndarray]:
    dept = leaf.path[0]
    pool = tuple(dict.fromkeys(leaf.uses + DEPT_USES[dept] + GLOBAL_USES))
    w = np.array([W_OWN if u in leaf.uses else W_DEPT if u in DEPT_USES[dept] else W_SHOP
                  for u in pool])
    return pool, np.log(w)


def _draw(rng: np.random.Generator, pool: tuple[tuple[str, ...], np.ndarray], k: int) -> list[str]:
    """``k`` distinct phrases by weight (Gumbel top-k: sampling without replacement)."""
    phrases, logw = pool
    top = np.argsort(-(logw + rng.gumbel(size=len(logw))))[:k]
    return [phrases[int(i)] for i in top]


def render_title(rng: np.random.Generator, *, brand: str, noun: str,
                 attrs: list[tuple[str, str]], leaf: LeafSpec) -> str:
    """A realistic product title, e.g. "Acme Red Cast Iron Skillet, 5 qt"."""
    shown = [(a, v) for a, v in attrs if rng.random() >= P_TITLE_SKIP]  # titles omit some
    pre = [display(v) for a, v in shown if a in PRE_ATTRS]
    post = [display(v) for a, v in shown if a not in PRE_ATTRS]
    n = display(short_noun(noun) if rng.random() < P_SHORT_TITLE else noun)
    series = _pick(rng, SERIES)
    feature = _draw(rng, _feature_pool(leaf, kind_of(noun)), 1)[0]
    feature = feature.removeprefix("a ").removeprefix("an ")
    k = int(rng.integers(5))
    if k == 0:
        title = " ".join([brand, *pre, n]) + "".join(f", {p}" for p in post)
    elif k == 1:
        title = f"{brand} {series} {n}" + (f" - {' '.join(pre + post)}" if pre or post else "")
    elif k == 2:
        title = " ".join([*pre, n]) + f" by {brand}" + (f" ({', '.join(post)})" if post else "")
    elif k == 3:
        title = f"{brand} {n}" + (f" ({', '.join(pre + post)})" if pre or post else "")
    else:
        title = " ".join([brand, series, *post, *pre, n]) + f" with {display(feature)}"
    return title


def render_description(rng: np.random.Generator, *, brand: str, noun: str,
                       attrs: list[tuple[str, str]], leaf: LeafSpec,
                       others: list[list[str]]) -> str:
    """Three to five sentences about the product, in the shop's house style: what it is
    and what for, features (many shared with other categories), specs, and often a
    cross-sell naming products of ``others`` (nouns of other categories)."""
    pre = " ".join(v for a, v in attrs if a in PRE_ATTRS)
    post = ", ".join(v for a, v in attrs if a not in PRE_ATTRS)
    f1, f2, f3 = _draw(rng, _feature_pool(leaf, kind_of(noun)), 3)
    use = _draw(rng, _use_pool(leaf), 1)[0]
    if rng.random() < P_SHORT_DESC:
        noun = short_noun(noun)
    thing = f"{pre} {noun}".strip()
    intro = _pick(rng, (
        f"This {thing} from {brand} is built for {use}.",
        f"Meet the {brand} {thing}, made for {use}.",
        f"{brand} designed this {thing} with {use} in mind.",
        f"The {brand} {noun} brings {f1} to {use}.",
    ))
    detail = _pick(rng, (
        f"It features {f2} and {f3}.",
        f"Highlights include {f1}, {f2} and {f3}.",
        f"Expect {f2}, plus {f3}.",
    ))
    if post and rng.random() < P_SPECS:
        detail += " " + _pick(rng, (f"Specs: {post}.", f"Available here in {post}.",
                                    f"This listing is the {post} version."))
    parts = [intro, detail]
    if rng.random() < 0.7:
        parts.append(_pick(rng, CLOSINGS).format(
            years=int(rng.integers(1, 6)), rating=f"{rng.uniform(3.6, 4.9):.1f}",
            year=int(rng.integers(2008, 2024))))
    if others and rng.random() < P_MENTION:
        group = others[int(rng.integers(len(others)))]
        for template in rng.permutation(len(MENTIONS))[:N_MENTION]:
            a, b, c = (group[int(i)] for i in rng.integers(len(group), size=3))
            parts.append(MENTIONS[int(template)].format(
                other=a, others=f"{plural(a)} and {plural(b)}" if a != b else plural(a),
                three=", ".join(dict.fromkeys([plural(a), plural(b), plural(c)])), brand=brand))
    return " ".join(parts)


def related_nouns(li: int) -> list[list[str]]:
    """The nouns of each other leaf that a leaf's descriptions cross-sell: the leaves of
    the same department, and any with a noun that shares a word with one of its nouns."""
    leaf = LEAVES[li]
    words = {w for n in leaf.nouns for w in n.split(" ")}
    out: list[list[str]] = []
    for lj, other in enumerate(LEAVES):
        near = other.path[0] == leaf.path[0] or any(words & set(n.split(" ")) for n in other.nouns)
        if lj != li and near:
            out.append(list(other.nouns))
    return out
