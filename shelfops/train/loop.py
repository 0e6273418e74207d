"""The training loop shared by every task.

AdamW with warm-up then linear or cosine decay, gradient clipping, evaluation on the
validation metric with early stopping (best weights kept), seeded determinism,
resumable safetensors checkpoints, a progress bar with loss and metric, bf16 autocast where
the device computes bf16 natively (``shelfops.train.precision``), and data-parallel training
under torchrun.

A task supplies plain callables: ``batches(epoch)`` returns that epoch's global batches
in a deterministic order, ``loss_fn(model, batch)`` a scalar loss, ``evaluate(model)``
a dict of validation metrics.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shelfops.config.schema import ScheduleConfig
from shelfops.train.checkpoint import (
    load_model,
    load_training_state,
    save_model,
    save_training_state,
)
from shelfops.train.distributed import barrier, pick_device, setup, shard
from shelfops.train.precision import use_bf16


@dataclass
class Schedule:
    """The optimiser schedule of one run; every field comes from ``ScheduleConfig`` (the one
    source of defaults): build it with :func:`schedule_from`."""

    epochs: int
    max_steps: int | None
    lr: float
    weight_decay: float
    warmup_ratio: float
    decay: str  # linear | cosine | constant
    grad_clip: float
    eval_every: int | None  # steps; None = at the end of each epoch
    patience: int  # evaluations without improvement before stopping
    seed: int
    bf16: str  # on | off | auto (where the device has native bf16: shelfops.train.precision)
    checkpoint_every: int | None  # steps; checkpoints are also written at each eval


def schedule_from(c: ScheduleConfig) -> Schedule:
    """The runtime schedule of a config's (``train.<task>.schedule``), field for field."""
    return Schedule(**c.model_dump())


@dataclass
class FitResult:
    steps: int = 0
    epochs: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    resumed_from: int | None = None
    bf16: bool = False  # whether training ran under bf16 autocast (schedule.bf16 on this device)
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def lr_lambda(total: int, warmup: int, decay: str) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if decay == "constant" or total <= warmup:
            return 1.0
        frac = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * frac)) if decay == "cosine" else 1.0 - frac

    return f


def to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(to_device(v, device) for v in batch)
    return batch


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (
            no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay
        ).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fit(
    model: nn.Module,
    *,
    batches: Callable[[int], Sequence[Any]],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    schedule: Schedule,
    workdir: Path,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    metric: str | None = None,
    higher_is_better: bool = True,
    device: torch.device | None = None,
    progress: bool = True,
    resume: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train ``model`` in place; on return it holds the best weights seen (by ``metric``)."""
    t_start = time.perf_counter()
    device = device or pick_device()
    dist = setup(device)
    seed_everything(schedule.seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    net: nn.Module = model
    if dist.active:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=False,
        )

    per_epoch = len(batches(0))
    total = per_epoch * schedule.epochs
    if schedule.max_steps is not None:
        total = min(total, schedule.max_steps) if per_epoch else schedule.max_steps
    opt = torch.optim.AdamW(_param_groups(model, schedule.weight_decay), lr=schedule.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(total, int(schedule.warmup_ratio * total), schedule.decay)
    )
    bf16 = use_bf16(schedule.bf16, device.type)

    result = FitResult(bf16=bf16)
    state = {"step": 0, "best": None, "best_step": None, "bad_evals": 0, "history": []}
    ckpt = workdir / "checkpoint"
    best_path = workdir / "best.safetensors"
    if resume and (ckpt / "state.json").exists():
        state.update(load_training_state(ckpt, model, opt, sched))
        result.resumed_from = state["step"]

    bar = None
    if progress and dist.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state["step"], desc=desc, dynamic_ncols=True, leave=True)

    def run_eval() -> bool:
        """Evaluate, keep the best weights, checkpoint; True when patience ran out."""
        model.eval()
        with torch.no_grad():
            metrics = evaluate(model) if evaluate else {}
        model.train()
        entry = {"step": state["step"], **{k: float(v) for k, v in metrics.items()}}
        state["history"].append(entry)
        stop = False
        if metric is not None and metric in metrics:
            value = float(metrics[metric])
            better = state["best"] is None or (
                value > state["best"] if higher_is_better else value < state["best"]
            )
            if better:
                state.update(best=value, best_step=state["step"], bad_evals=0)
                if dist.main:
                    save_model(model, best_path)
            else:
                state["bad_evals"] += 1
                stop = state["bad_evals"] >= schedule.patience
            if bar is not None:
                bar.set_postfix_str(f"{metric}={value:.4f} best={state['best']:.4f}", refresh=False)
        if dist.main:
            save_training_state(ckpt, model, opt, sched, _progress(state))
        barrier(dist)
        return stop

    model.train()
    stopped = False
    running = None
    while state["step"] < total and not stopped:
        epoch, offset = divmod(state["step"], per_epoch)
        epoch_batches = batches(epoch)
        for i in range(offset, len(epoch_batches)):
            batch = to_device(shard(epoch_batches[i], dist), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if schedule.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
            opt.step()
            sched.step()
            state["step"] += 1
            lv = float(loss.detach())
            running = lv if running is None else 0.9 * running + 0.1 * lv
            if bar is not None:
                bar.update(1)
                bar.set_description(f"{desc} loss {running:.4f}", refresh=False)
            if schedule.eval_every and state["step"] % schedule.eval_every == 0:
                stopped = run_eval()
            elif (
                schedule.checkpoint_every
                and state["step"] % schedule.checkpoint_every == 0
                and dist.main
            ):
                save_training_state(ckpt, model, opt, sched, _progress(state))
            if stopped or state["step"] >= total:
                break
        if not stopped and not schedule.eval_every and state["step"] % per_epoch == 0:
            stopped = run_eval()
    if schedule.eval_every and state["step"] % schedule.eval_every != 0 and not stopped:
        run_eval()
    if bar is not None:
        bar.close()
    if metric is not None and best_path.exists():
        barrier(dist)
        load_model(model, best_path)
    result.steps = state["step"]
    result.epochs = state["step"] / max(1, per_epoch)
    result.best_metric = state["best"]
    result.best_step = state["best_step"]
    result.stopped_early = stopped and state["step"] < total
    result.history = state["history"]
    result.seconds = round(time.perf_counter() - t_start, 2)
    return result


def _progress(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("step", "best", "best_step", "bad_evals", "history")}
