"""Checkpoints as safetensors (never pickles): model, optimizer state, RNG, progress."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shelfops.errors import ModelError


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_model(model: nn.Module, path: Path) -> None:
    state = _unwrap(model).state_dict()
    # tied weights share storage; safetensors wants each tensor once, so clone
    save_file({k: v.clone() for k, v in _contiguous(state).items()}, str(path))


def load_model(model: nn.Module, path: Path, *, strict: bool = True) -> nn.Module:
    if not Path(path).is_file():
        raise ModelError(f"no weights at {path}")
    state = load_file(str(path))
    missing, unexpected = _unwrap(model).load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise ModelError(
            f"{path}: weights do not fit the model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    return model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(path))
    Path(str(path) + ".json").write_text(
        json.dumps({"param_groups": sd["param_groups"], "scalars": scalars})
    )


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors = load_file(str(path))
    meta = json.loads(Path(str(path) + ".json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_training_state(
    folder: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, progress: dict[str, Any]
) -> None:
    """Write a resumable checkpoint atomically (rename of a finished temp folder)."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_model(model, tmp / "model.safetensors")
    save_optimizer(opt, tmp / "optimizer.safetensors")
    save_file({"cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(
        json.dumps(
            {**progress, "scheduler": sched.state_dict() if sched is not None else None},
            default=str,
        )
    )
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        os.replace(folder, old)
        os.replace(tmp, folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, folder)


def load_training_state(
    folder: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any
) -> dict[str, Any]:
    load_model(model, folder / "model.safetensors")
    load_optimizer(opt, folder / "optimizer.safetensors")
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["cpu"])
    state = json.loads((folder / "state.json").read_text())
    if sched is not None and state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    return state
