"""Product classification: title + description -> category, a head on the encoder.

Items are split by a keyed hash of their id (80/10/10), so the split is stable across
runs. The category text never reaches the model's input. Baselines in the same run:
the majority class and a TF-IDF nearest-centroid classifier.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from shelfops.config.schema import ClassifyTrainConfig
from shelfops.errors import DataError
from shelfops.tables import CATEGORY_SEP
from shelfops.train.loop import FitResult, Schedule, fit
from shelfops.train.text_batches import LazyBatches, bucketed_batches, encode_texts, run_by_length
from shelfops.train.text_models import ModelSpec, freeze_lower, new_model


@dataclass
class ClassifySettings:
    """``train.classify`` (``ClassifyTrainConfig``, the one source of defaults): build it with
    :func:`classify_settings_from`."""

    batch_size: int
    freeze_layers: int  # embeddings + this many lowest layers stay frozen
    max_length: int
    level: int | None  # category depth to predict; None = the full path
    min_class_size: int


def classify_settings_from(c: ClassifyTrainConfig) -> ClassifySettings:
    """The model-training settings of ``train.classify`` (its schedule: ``schedule_from``)."""
    return ClassifySettings(batch_size=c.batch_size, freeze_layers=c.freeze_layers, max_length=c.max_length,
                            level=c.level, min_class_size=c.min_class_size)


def _bucket(item_id: str, seed: int) -> int:
    return (
        int.from_bytes(hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest(), "big")
        % 10
    )


def load_items(
    data_dir: Path, *, level: int | None, min_class_size: int, seed: int
) -> dict[str, pl.DataFrame]:
    p = Path(data_dir) / "items.parquet"
    if not p.exists():
        raise DataError(f"{data_dir} has no items.parquet")
    items = pl.read_parquet(p).filter(
        pl.col("category").is_not_null() & pl.col("title").is_not_null()
    )
    if items.is_empty():
        raise DataError(f"{p}: no item has both a title and a category: nothing to classify")
    label = pl.col("category")
    if level is not None:
        label = label.str.split(CATEGORY_SEP).list.slice(0, level).list.join(CATEGORY_SEP)
    df = items.select(
        "item_id",
        pl.concat_str(
            [pl.col("title"), pl.col("description")], separator=". ", ignore_nulls=True
        ).alias("text"),
        label.alias("label"),
    )
    counts = df.group_by("label").len()
    df = df.filter(
        pl.col("label").is_in(counts.filter(pl.col("len") >= min_class_size)["label"].implode())
    )
    b = df["item_id"].map_elements(lambda i: _bucket(i, seed), return_dtype=pl.Int64)
    df = df.with_columns(b.alias("_b"))
    return {
        "train": df.filter(pl.col("_b") < 8).drop("_b"),
        "valid": df.filter(pl.col("_b") == 8).drop("_b"),
        "test": df.filter(pl.col("_b") == 9).drop("_b"),
    }


@torch.no_grad()
def predict_proba(
    model: nn.Module, tok, texts: list[str], *, max_length: int, batch_size: int = 64
) -> np.ndarray:
    model.eval()
    return run_by_length(
        texts, batch_size, lambda ix: encode_texts(tok, [texts[j] for j in ix], max_length),
        lambda enc: torch.softmax(model(**enc).float(), -1), next(model.parameters()).device,
        empty_shape=(0, 0))


def train_classifier(
    splits: dict[str, pl.DataFrame],
    *,
    encoder_path: str,
    workdir: Path,
    schedule: Schedule,
    settings: ClassifySettings,
    progress: bool = True,
) -> tuple[nn.Module, Any, ModelSpec, FitResult]:
    labels = sorted(splits["train"]["label"].unique().to_list())
    spec = ModelSpec(
        task="classify",
        encoder=encoder_path,
        max_length=settings.max_length,
        labels=labels,
        extra={"level": settings.level},
    )
    model, tok = new_model(spec, encoder_path)
    freeze_lower(model, settings.freeze_layers)
    lid = {name: i for i, name in enumerate(labels)}
    train = splits["train"]
    texts, y = train["text"].to_list(), np.array([lid[v] for v in train["label"].to_list()])
    valid = splits["valid"].filter(pl.col("label").is_in(labels))
    vt, vy = valid["text"].to_list(), np.array([lid[v] for v in valid["label"].to_list()])

    lengths = np.array([len(x) for x in texts])

    def make(ix: np.ndarray) -> dict[str, torch.Tensor]:
        enc = encode_texts(tok, [texts[i] for i in ix], settings.max_length)
        enc["y"] = torch.tensor(y[ix], dtype=torch.long)
        return enc

    def batches(epoch: int) -> LazyBatches:
        return LazyBatches(bucketed_batches(lengths, settings.batch_size, schedule.seed, epoch), make)

    def loss(m, b):
        return nn.functional.cross_entropy(
            m(b["input_ids"], b["attention_mask"], b.get("token_type_ids")), b["y"]
        )

    def evaluate(m: nn.Module) -> dict[str, float]:
        p = predict_proba(m, tok, vt, max_length=settings.max_length)
        return {"accuracy": float((p.argmax(1) == vy).mean()) if len(vy) else 0.0}

    result = fit(
        model,
        batches=batches,
        loss_fn=loss,
        evaluate=evaluate,
        metric="accuracy",
        schedule=schedule,
        workdir=workdir,
        progress=progress,
        desc="classify",
    )
    return model, tok, spec, result
