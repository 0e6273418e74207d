"""Structured pruning: remove whole transformer layers by importance, then recover.

Importance of a layer = how much the validation quality falls when that one layer is
skipped (measured, not guessed). The least important layers are removed together, and a
short recovery fine-tune distils the pruned student towards the unpruned teacher's outputs
(MSE on scores / embeddings, KL on class logits), so it needs no labels and cannot learn
anything the teacher was not already doing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from shelfops.errors import ConfigError
from shelfops.optimize.variants import TaskOutput


def _layers(model: nn.Module) -> nn.ModuleList:
    return model.encoder.backbone.encoder.layer


def drop_layers(model: nn.Module, drop: Sequence[int]) -> nn.Module:
    """A deep copy of ``model`` without the given layer indices (config updated to match)."""
    n = len(_layers(model))
    if not drop:
        return copy.deepcopy(model)
    if any(i < 0 or i >= n for i in drop) or len(set(drop)) >= n:
        raise ConfigError([f"optimize.prune: cannot drop layers {sorted(drop)} of {n}"])
    out = copy.deepcopy(model)
    keep = [layer for i, layer in enumerate(_layers(out)) if i not in set(drop)]
    out.encoder.backbone.encoder.layer = nn.ModuleList(keep)
    cfg = out.encoder.backbone.config
    cfg.num_hidden_layers = len(keep)
    for i, layer in enumerate(keep):  # attention modules carry their index for caches
        attn = getattr(layer, "attention", None)
        if attn is not None and hasattr(attn, "self") and hasattr(attn.self, "layer_idx"):
            attn.self.layer_idx = i
    return out


def layer_importance(model: nn.Module, quality: Callable[[nn.Module], float]) -> list[float]:
    """Quality lost when each layer alone is skipped (bigger = more important)."""
    base = quality(model)
    return [base - quality(drop_layers(model, [i])) for i in range(len(_layers(model)))]


def choose_drop(importance: Sequence[float], n_drop: int) -> list[int]:
    """The ``n_drop`` least important layers (pure)."""
    if n_drop < 0 or n_drop >= len(importance):
        raise ConfigError([f"optimize.prune.drop_layers: {n_drop} is not in [0, {len(importance) - 1}]"])
    return sorted(np.argsort(np.asarray(importance), kind="stable")[:n_drop].tolist())


def distill(student: nn.Module, teacher: nn.Module, task: str,
            batches: Callable[[int], dict[str, torch.Tensor]], *, steps: int, lr: float,
            seed: int = 0, progress: bool = True) -> list[float]:
    """Recovery fine-tune of the pruned ``student`` towards ``teacher``'s outputs."""
    torch.manual_seed(seed)
    s, t = TaskOutput(student, task).train(), TaskOutput(teacher, task).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / max(1, steps // 10)) * max(0.0, 1 - i / steps))
    losses = []
    bar = tqdm(range(steps), desc="prune: recovery", disable=not progress, leave=False)
    for i in bar:
        b = batches(i)
        with torch.no_grad():
            target = t(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))
        out = s(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))
        if task == "classify":
            loss = nn.functional.kl_div(out.log_softmax(-1), target.log_softmax(-1),
                                        log_target=True, reduction="batchmean")
        else:
            loss = nn.functional.mse_loss(out, target)
        loss.backward()
        nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    student.eval()
    return losses
