"""Training-data augmentation for search: noisy query variants and pseudo-queries.

* :func:`augment_queries` copies a judged query's rows under a variant of the query: a
  typo (swap two neighbouring letters, drop one, double one, or replace one with a
  neighbouring key on a QWERTY keyboard), a case change (upper or title case) or one word
  dropped from a multi-word query. Each kind is applied to a variant independently with
  its rate, in the order word-drop, typo, case; ``augment_kind`` names the kinds applied,
  joined by ``+`` (e.g. ``"drop+typo"``).
* :func:`pseudo_queries` draws short queries (2-4 informative words) from product titles,
  sometimes with the brand or the category's leaf noun, judged 3.0 for their own item.
* :func:`augment_train_split` applies both to ``splits["train"]`` only and drops every
  generated query whose normalised form is a validation or test query.

Every random draw comes from a generator seeded by a keyed hash of ``(seed, query)`` or
``(seed, item_id)``, so output is deterministic per seed and a query's variants do not
depend on row order or on the other rows in the frame.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping

import numpy as np
import polars as pl

from shelfops.data.text import normalise_query
from shelfops.errors import ConfigError, SchemaError
from shelfops.tables import CATEGORY_SEP

AUGMENT_KINDS: tuple[str, ...] = ("drop", "typo", "case", "pseudo")

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Keys next to each letter: same row left/right, and the staggered rows above/below."""
    pos = {c: (r, i) for r, row in enumerate(_KEYBOARD_ROWS) for i, c in enumerate(row)}
    # each row sits about half a key to the right of the one above it
    offsets = {(0, -1), (0, 1), (-1, 0), (-1, 1), (1, -1), (1, 0)}
    return {
        c: "".join(sorted(d for d, (r2, i2) in pos.items() if (r2 - r, i2 - i) in offsets))
        for c, (r, i) in pos.items()
    }


KEYBOARD_NEIGHBOURS: dict[str, str] = _keyboard_neighbours()

STOPWORDS: frozenset[str] = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "per", "the", "to", "with", "without",
    # units and pack words: true of many products, they tell none apart
    "pk", "pack", "set", "ct", "count", "ft", "oz", "lb", "lbs", "cm", "mm", "ml", "inch",
    "inches", "new",
])
_WORD = re.compile(r"[0-9a-z][0-9a-z'.\-]*[0-9a-z]|[a-z]")


def _rng(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def _check_rates(**rates: float) -> list[str]:
    return [f"{k} must be in [0, 1], got {v!r}" for k, v in rates.items() if not 0 <= v <= 1]


# --------------------------------------------------------------------------- variants


def _typo(query: str, rng: np.random.Generator) -> str:
    """One keyboard slip at a random letter of a word of 3+ characters (digits untouched)."""
    spots = [
        m.start() + k
        for m in re.finditer(r"\S{3,}", query)
        for k, ch in enumerate(m.group())
        if ch.isalpha()
    ]
    if not spots:
        return query
    i = spots[int(rng.integers(len(spots)))]
    ch = query[i]
    op = ("swap", "drop", "double", "replace")[int(rng.integers(4))]
    if op == "swap" and i + 1 < len(query) and query[i + 1].isalpha() and query[i + 1] != ch:
        return query[:i] + query[i + 1] + ch + query[i + 2:]
    if op == "drop":
        return query[:i] + query[i + 1:]
    if op == "double":
        return query[:i] + ch + query[i:]
    # "replace", or a swap with no letter to swap with: a neighbouring key instead
    near = KEYBOARD_NEIGHBOURS.get(ch.lower(), "")
    if not near:  # a letter off the latin keyboard: double it
        return query[:i] + ch + query[i:]
    new = near[int(rng.integers(len(near)))]
    return query[:i] + (new.upper() if ch.isupper() else new) + query[i + 1:]


def _case(query: str, rng: np.random.Generator) -> str:
    forms = [query.upper(), query.title()]
    first = int(rng.integers(2))
    for form in (forms[first], forms[1 - first]):
        if form != query:
            return form
    return query


def _drop_word(query: str, rng: np.random.Generator) -> str:
    words = query.split()
    if len(words) < 2:
        return query
    del words[int(rng.integers(len(words)))]
    return " ".join(words)


def query_variants(
    query: str, *, n: int, typo_rate: float, case_rate: float, drop_rate: float, seed: int,
) -> list[tuple[str, str]]:
    """Up to ``n`` distinct ``(variant, kind)`` of one query, each differing from it."""
    rng = _rng(seed, query)
    seen = {query}
    out: list[tuple[str, str]] = []
    for _ in range(n):
        text, kinds = query, []
        for kind, rate, fn in (("drop", drop_rate, _drop_word), ("typo", typo_rate, _typo),
                               ("case", case_rate, _case)):
            if rng.random() < rate:
                new = fn(text, rng)
                if new != text:
                    text, kinds = new, [*kinds, kind]
        if kinds and text.strip() and text not in seen:
            seen.add(text)
            out.append((text, "+".join(kinds)))
    return out


def _normalised(values: Collection[str]) -> list[str]:
    """The same normalisation as the grouping key, applied to plain strings."""
    series = pl.Series("q", list(values), dtype=pl.String)
    return series.to_frame().select(normalise_query(pl.col("q")))["q"].drop_nulls().to_list()


def _with_flags(frame: pl.DataFrame) -> pl.DataFrame:
    cols = frame.columns
    return frame.with_columns(
        (pl.col("augmented").fill_null(False).cast(pl.Boolean) if "augmented" in cols
         else pl.lit(False).alias("augmented")),
        (pl.col("augment_kind").cast(pl.String) if "augment_kind" in cols
         else pl.lit(None, pl.String).alias("augment_kind")),
    )


def augment_queries(
    pairs: pl.DataFrame,
    *,
    variants_per_query: int = 1,
    typo_rate: float = 0.3,
    case_rate: float = 0.3,
    drop_rate: float = 0.3,
    seed: int = 11,
    exclude: Collection[str] = (),
) -> pl.DataFrame:
    """The original rows (``augmented=False``) followed by rows under query variants.

    For every distinct query of a non-augmented row, up to ``variants_per_query`` variants
    are drawn (a draw where no kind applies, or that repeats, gives none); each variant
    copies all of that query's rows, with ``augmented=True`` and ``augment_kind`` set. A
    variant is dropped when its normalised form is in ``exclude`` (normalised
    evaluation queries), is another original query, or comes from two different queries.
    """
    problems = _check_rates(typo_rate=typo_rate, case_rate=case_rate, drop_rate=drop_rate)
    if not isinstance(variants_per_query, int) or variants_per_query < 0:
        problems.append(f"variants_per_query must be an integer >= 0, got {variants_per_query!r}")
    if problems:
        raise ConfigError(problems, "augment_queries")
    if "query" not in pairs.columns:
        raise SchemaError("augment_queries needs column query", column="query")
    base = _with_flags(pairs)
    originals = base.filter(~pl.col("augmented") & pl.col("query").is_not_null())
    queries = originals["query"].unique(maintain_order=True).to_list()
    if variants_per_query == 0 or not queries:
        return base
    norm = _normalised(queries)
    own = dict(zip(queries, norm))
    taken = set(norm)
    blocked = _normalised(exclude)
    rows: list[tuple[str, str, str]] = []  # (source query, variant, kind)
    for q in queries:
        for text, kind in query_variants(
            q, n=variants_per_query, typo_rate=typo_rate, case_rate=case_rate,
            drop_rate=drop_rate, seed=seed,
        ):
            rows.append((q, text, kind))
    if not rows:
        return base
    variants = pl.DataFrame(
        rows, schema={"query": pl.String, "_variant": pl.String, "_kind": pl.String}, orient="row",
    ).with_columns(normalise_query(pl.col("_variant")).alias("_norm"))
    variants = variants.with_columns(
        pl.col("query").replace_strict(own, return_dtype=pl.String).alias("_own_norm")
    ).filter(
        ~pl.col("_norm").is_in(list(blocked))
        & ((pl.col("_norm") == pl.col("_own_norm")) | ~pl.col("_norm").is_in(list(taken)))
        & (pl.col("query").n_unique().over("_norm") == 1)
    )
    extra = (
        originals.join(variants.select("query", "_variant", "_kind"), on="query", how="inner",
                       maintain_order="right")
        .with_columns(
            pl.col("_variant").alias("query"),
            pl.lit(True).alias("augmented"),
            pl.col("_kind").alias("augment_kind"),
        )
        .drop("_variant", "_kind")
        .select(base.columns)
    )
    return pl.concat([base, extra], how="vertical_relaxed")


# --------------------------------------------------------------------------- pseudo-queries


def _words(text: str | None) -> list[str]:
    if not text:
        return []
    return [
        w for w in _WORD.findall(text.lower())
        if w not in STOPWORDS and any(c.isalpha() for c in w) and len(w) >= 2
    ]


def _leaf_noun(category: str | None) -> str | None:
    if not category:
        return None
    words = _words(category.split(CATEGORY_SEP.strip())[-1])
    return words[-1] if words else None


def _stem(word: str) -> str:
    """Crude singular, enough to see that "drill" and "drills" are one word."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and word[-3:-2] in "sxz" and len(word) > 4:
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def _pseudo_for_item(
    item_id: str, title: str | None, brand: str | None, category: str | None, *,
    per_item: int, seed: int,
) -> list[str]:
    brand_words = _words(brand)
    brand_text = " ".join(brand_words) if brand_words else None
    # title words, once each, brand words left out (the brand only ever comes whole)
    words = [w for w in dict.fromkeys(_words(title)) if w not in brand_words]
    leaf = _leaf_noun(category)
    if leaf is not None and _stem(leaf) in {_stem(w) for w in words}:
        leaf = None  # the title already names it
    rng = _rng(seed, item_id)
    out: list[str] = []
    for _ in range(per_item * 3):  # a few extra draws to make up for repeats
        if len(out) >= per_item:
            break
        extra: tuple[str, str] | None = None
        r = rng.random()
        if r < 0.25 and brand_text:
            extra = ("brand", brand_text)
        elif r < 0.5 and leaf:
            extra = ("leaf", leaf)
        n_extra = len(extra[1].split()) if extra else 0
        k_min, k_max = max(2 - n_extra, 1), min(4 - n_extra, len(words))
        if k_max < k_min:
            continue
        k = int(rng.integers(k_min, k_max + 1))
        chosen = [words[i] for i in sorted(rng.choice(len(words), size=k, replace=False))]
        if extra is not None:
            chosen = [extra[1], *chosen] if extra[0] == "brand" else [*chosen, extra[1]]
        q = " ".join(chosen)
        if q not in out:
            out.append(q)
    return out


def pseudo_queries(
    items: pl.DataFrame, *, per_item: int = 1, seed: int = 11,
) -> pl.DataFrame:
    """Up to ``per_item`` short queries per item drawn from its title, judged 3.0 for it.

    A query is 2-4 informative title words (stopwords, units and pure numbers left out)
    in title order; about a quarter start with the brand and a quarter end with the leaf
    noun of the category path. Items with fewer than two informative words give none.
    Returns ``query, item_id, grade, augmented, augment_kind`` (``"pseudo"``).
    """
    if not isinstance(per_item, int) or per_item < 0:
        raise ConfigError([f"per_item must be an integer >= 0, got {per_item!r}"],
                          "pseudo_queries")
    for col in ("item_id", "title"):
        if col not in items.columns:
            raise SchemaError(f"pseudo_queries needs column {col}", column=col)
    cols = items.columns
    frame = items.select(
        pl.col("item_id").cast(pl.String),
        pl.col("title").cast(pl.String),
        (pl.col("brand").cast(pl.String) if "brand" in cols else pl.lit(None, pl.String))
        .alias("brand"),
        (pl.col("category").cast(pl.String) if "category" in cols else pl.lit(None, pl.String))
        .alias("category"),
    ).filter(pl.col("item_id").is_not_null())
    rows: list[tuple[str, str]] = []
    if per_item:
        for item_id, title, brand, category in frame.iter_rows():
            for q in _pseudo_for_item(item_id, title, brand, category, per_item=per_item,
                                      seed=seed):
                rows.append((q, item_id))
    return (
        pl.DataFrame(rows, schema={"query": pl.String, "item_id": pl.String}, orient="row")
        .unique(maintain_order=True)
        .with_columns(
            pl.lit(3.0).alias("grade"),
            pl.lit(True).alias("augmented"),
            pl.lit("pseudo").alias("augment_kind"),
        )
    )


# --------------------------------------------------------------------------- splits


def augment_train_split(
    splits: Mapping[str, pl.DataFrame],
    items: pl.DataFrame | None = None,
    *,
    variants_per_query: int = 1,
    typo_rate: float = 0.3,
    case_rate: float = 0.3,
    drop_rate: float = 0.3,
    pseudo_queries_per_item: int = 0,
    seed: int = 11,
) -> dict[str, pl.DataFrame]:
    """Augment ``splits["train"]`` only; every other split is returned as the same object.

    Generated queries (variants and, when ``items`` is given and ``pseudo_queries_per_item > 0``,
    pseudo-queries) whose normalised form equals a query of any other split are dropped,
    so no evaluation query reaches training. Pseudo-queries that equal a training query
    are dropped too (they would contradict its human or behavioural grades).
    """
    if "train" not in splits:
        raise SchemaError("augment_train_split needs a 'train' split", column="train")
    train = splits["train"]
    if "query" not in train.columns:
        raise SchemaError("the train split has no column query to augment", column="query")
    held_out: set[str] = set()
    for name, frame in splits.items():
        if name != "train" and "query" in frame.columns:
            held_out.update(
                frame.select(normalise_query(pl.col("query").cast(pl.String)))["query"]
                .drop_nulls().to_list()
            )
    out = augment_queries(
        train, variants_per_query=variants_per_query, typo_rate=typo_rate,
        case_rate=case_rate, drop_rate=drop_rate, seed=seed, exclude=held_out,
    )
    if items is not None and pseudo_queries_per_item > 0:
        train_queries = set(
            out.select(normalise_query(pl.col("query")))["query"].drop_nulls().to_list()
        )
        pseudo = pseudo_queries(items, per_item=pseudo_queries_per_item, seed=seed).filter(
            ~normalise_query(pl.col("query")).is_in(list(held_out | train_queries))
        )
        out = pl.concat([out, pseudo], how="diagonal_relaxed")
    return {**splits, "train": out}
