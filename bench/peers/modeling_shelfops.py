"""A shelfops cross-encoder as a Hugging Face model (``trust_remote_code``), for the peer servers
of bench/serve.py: the same architecture as ``shelfops.train.text_models.CrossEncoder`` (the
encoder, mean or CLS pooling, a linear read, and for the ``similarity`` head a learned scale times
the cosine of the two segments' mean-pooled states), so a server that loads models through
``AutoModelForSequenceClassification`` (sentence-transformers' CrossEncoder, infinity-emb's torch
engine) scores with the very weights shelfops serves. Written by bench/peers/hf_export.py beside
the weights; it imports only torch and transformers."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class ShelfopsCrossEncoderConfig(PretrainedConfig):
    model_type = "shelfops-cross-encoder"

    def __init__(self, encoder: dict | None = None, pooling: str = "mean", head: str = "linear", **kw):
        super().__init__(**kw)
        self.encoder, self.pooling, self.head = encoder or {}, pooling, head


def _mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


class ShelfopsCrossEncoderForSequenceClassification(PreTrainedModel):
    config_class = ShelfopsCrossEncoderConfig

    def __init__(self, config: ShelfopsCrossEncoderConfig) -> None:
        super().__init__(config)
        enc = AutoConfig.for_model(**config.encoder)
        enc._attn_implementation = "eager"
        self.backbone = AutoModel.from_config(enc)
        self.linear = nn.Linear(enc.hidden_size, 1)
        self.similarity = nn.Parameter(torch.tensor(1.0)) if config.head == "similarity" else None

    def _init_weights(self, module) -> None:  # every weight comes from the checkpoint
        pass

    def forward(self, input_ids, attention_mask, token_type_ids=None, return_dict=True, **_):
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        pooled = _mean(hidden, attention_mask) if self.config.pooling == "mean" else hidden[:, 0]
        score = self.linear(pooled).squeeze(-1)
        if self.similarity is not None:
            mask = attention_mask.to(hidden.dtype)
            second = mask * token_type_ids.to(hidden.dtype)
            score = score + self.similarity * nn.functional.cosine_similarity(
                _mean(hidden, mask - second), _mean(hidden, second), dim=-1)
        return SequenceClassifierOutput(logits=score.unsqueeze(-1))
