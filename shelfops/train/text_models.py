"""Heads on the shared text encoder: cross-encoder, bi-encoder, classifier.

A trained model is a folder: ``model.json`` (task, architecture, settings),
``model.safetensors`` (all weights) and ``encoder/`` (tokenizer + architecture config),
so it loads with no access to the original pretrained folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shelfops.errors import ModelError
from shelfops.train.checkpoint import load_model, save_model
from shelfops.train.encoder import (
    TextEncoder,
    backbone_from_config,
    copy_encoder_files,
    load_backbone,
    load_tokenizer,
    mean_pool,
)


@dataclass
class ModelSpec:
    task: str  # search | retrieval | classify
    encoder: str  # where the pretrained weights came from (lineage)
    pooling: str = "mean"
    max_length: int = 64
    labels: list[str] = field(default_factory=list)  # classify
    extra: dict[str, Any] = field(default_factory=dict)


class CrossEncoder(nn.Module):
    """(query, product text) -> relevance score from one joint encoding of the pair.

    ``head="linear"``: a linear read of the pooled joint encoding. ``head="similarity"``:
    that linear read plus a learned scale times the cosine between the mean-pooled query
    segment and the mean-pooled product segment of the same encoding (told apart by
    ``token_type_ids``). A pretrained sentence encoder already ranks by such a cosine, so a
    model whose linear read starts at zero starts near the zero-shot ranking and fine-tuning
    adds what the shop's judgements teach, instead of starting from a random head. Same
    inputs, same cost: one pass over the pair either way."""

    HEADS = ("linear", "similarity")

    def __init__(self, encoder: TextEncoder, head: str = "linear") -> None:
        super().__init__()
        if head not in self.HEADS:
            raise ModelError(f"cross-encoder head must be one of {self.HEADS}, not {head!r}")
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(encoder.dim, 1))
        self.similarity: nn.Parameter | None = None
        if head == "similarity":
            self.similarity = nn.Parameter(torch.tensor(1.0))
            nn.init.zeros_(self.head[1].weight)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.encoder.hidden(input_ids, attention_mask, token_type_ids)
        score = self.head(self.encoder.pool(hidden, attention_mask)).squeeze(-1)
        if self.similarity is None:
            return score
        return score + self.similarity * self.segment_cosine(hidden, attention_mask, token_type_ids)

    @staticmethod
    def segment_cosine(hidden, attention_mask, token_type_ids) -> torch.Tensor:
        """Cosine of the mean-pooled first (query) and second (product) segments."""
        if token_type_ids is None:
            raise ModelError("the similarity head needs token_type_ids to find the two segments")
        mask = attention_mask.to(hidden.dtype)
        second = mask * token_type_ids.to(hidden.dtype)
        return nn.functional.cosine_similarity(
            mean_pool(hidden, mask - second), mean_pool(hidden, second), dim=-1
        )


class BiEncoder(nn.Module):
    """Query and product embedded apart (shared weights); cosine similarity scores."""

    def __init__(self, encoder: TextEncoder, scale: float = 20.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.scale = scale

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return nn.functional.normalize(
            self.encoder(input_ids, attention_mask, token_type_ids), dim=-1
        )

    def forward(self, q: dict[str, torch.Tensor], d: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scale * self.embed(**q) @ self.embed(**d).T


class Classifier(nn.Module):
    def __init__(self, encoder: TextEncoder, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(encoder.dim, n_classes))

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids))


def build(spec: ModelSpec, backbone: nn.Module) -> nn.Module:
    enc = TextEncoder(backbone, spec.pooling)
    if spec.task == "search":
        return CrossEncoder(enc, spec.extra.get("head", "linear"))
    if spec.task == "retrieval":
        return BiEncoder(enc, float(spec.extra.get("scale", 20.0)))
    if spec.task == "classify":
        if not spec.labels:
            raise ModelError("a classifier needs its labels")
        return Classifier(enc, len(spec.labels))
    raise ModelError(f"unknown text task {spec.task!r}")


def new_model(spec: ModelSpec, encoder_path: str) -> tuple[nn.Module, Any]:
    """A model whose encoder starts from pretrained weights; returns (model, tokenizer)."""
    return build(spec, load_backbone(encoder_path)), load_tokenizer(encoder_path)


def freeze_lower(model: nn.Module, n_layers: int) -> nn.Module:
    """Freeze the embeddings and the lowest ``n_layers`` transformer layers (no gradients, no
    optimiser state): backward stops at the first trainable layer, so a step costs less while
    the top layers and the head adapt. 0 leaves everything trainable."""
    if n_layers <= 0:
        return model
    backbone = model.encoder.backbone
    layers = backbone.encoder.layer
    if n_layers > len(layers):
        raise ModelError(f"freeze_layers={n_layers} but the encoder has only {len(layers)} layers")
    for module in [backbone.embeddings, *layers[:n_layers]]:
        for p in module.parameters():
            p.requires_grad_(False)
    return model


def save(model: nn.Module, spec: ModelSpec, encoder_path: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    copy_encoder_files(encoder_path, folder / "encoder")
    save_model(model, folder / "model.safetensors")
    (folder / "model.json").write_text(json.dumps(asdict(spec), indent=2))


def read_spec(folder: Path) -> ModelSpec:
    p = Path(folder) / "model.json"
    if not p.exists():
        raise ModelError(f"{folder} holds no model (no model.json)")
    return ModelSpec(**json.loads(p.read_text()))


def load(folder: Path) -> tuple[nn.Module, Any, ModelSpec]:
    """Load a trained text model folder (safetensors only; never a pickle)."""
    folder = Path(folder)
    spec = read_spec(folder)
    model = build(spec, backbone_from_config(str(folder / "encoder")))
    load_model(model, folder / "model.safetensors")
    model.eval()
    return model, load_tokenizer(str(folder / "encoder")), spec
