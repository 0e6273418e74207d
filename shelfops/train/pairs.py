"""(query, product text, grade) tables for the text tasks, read from a dataset folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from shelfops.errors import DataError
from shelfops.tables import CATEGORY_SEP


@dataclass
class PairSplits:
    train: pl.DataFrame  # query, item_id, grade, text (+ augmented)
    valid: pl.DataFrame
    test: pl.DataFrame
    items: pl.DataFrame  # item_id, text, title, category
    grade_min: float
    grade_max: float
    sources: dict[str, str]


def item_texts(items: pl.DataFrame) -> pl.DataFrame:
    """The text a model reads for a product: title, then brand and category leaf."""
    leaf = pl.col("category").str.split(CATEGORY_SEP).list.last()
    text = pl.concat_str(
        [pl.col("title"), pl.col("brand"), leaf], separator=" | ", ignore_nulls=True
    )
    return items.select(
        "item_id",
        pl.col("title"),
        pl.col("category"),
        text.fill_null(pl.col("item_id")).alias("text"),
    )


def _read(root: Path, name: str) -> pl.DataFrame | None:
    p = root / "splits" / f"{name}.parquet"
    return pl.read_parquet(p) if p.exists() else None


def load_pairs(
    data_dir: Path, *, train_on: tuple[str, ...] = ("judgements", "labels"), augmented: bool = True
) -> PairSplits:
    """Train on every available graded table's train split (human judgements and grades
    derived from behaviour); validate and test on human judgements when there are any."""
    root = Path(data_dir)
    if not (root / "items.parquet").exists():
        raise DataError(f"{root} has no items.parquet: is it a dataset folder?")
    items = item_texts(pl.read_parquet(root / "items.parquet"))
    eval_on = next(
        (n for n in ("judgements", "labels") if _read(root, f"{n}_test") is not None), None
    )
    if eval_on is None:
        raise DataError(
            f"{root}/splits has no judgements_* or labels_* split: nothing to train "
            "search on (ingest judgements, or events with searches and impressions)"
        )
    parts = []
    used = {}
    for name in train_on:
        split = (
            "train_augmented"
            if augmented and (root / "splits" / f"{name}_train_augmented.parquet").exists()
            else "train"
        )
        df = _read(root, f"{name}_{split}")
        if df is not None:
            parts.append(df.select("query", "item_id", pl.col("grade").cast(pl.Float64)))
            used[name] = split
    train = pl.concat(parts)
    valid = _read(root, f"{eval_on}_valid").select(
        "query", "item_id", pl.col("grade").cast(pl.Float64)
    )
    test = _read(root, f"{eval_on}_test").select(
        "query", "item_id", pl.col("grade").cast(pl.Float64)
    )
    text = items.select("item_id", "text")
    train, valid, test = (d.join(text, on="item_id", how="inner") for d in (train, valid, test))
    allg = pl.concat([train["grade"], valid["grade"], test["grade"]])
    return PairSplits(
        train,
        valid,
        test,
        items,
        float(allg.min()),
        float(allg.max()),
        {"train": ",".join(f"{k}:{v}" for k, v in used.items()), "eval": eval_on},
    )
