"""Runnable variants of one trained text model, all behind the same small interface.

A variant takes a tokenised batch (``input_ids``, ``attention_mask``, ``token_type_ids``
as int64 tensors) and returns the task's output as a numpy array: one relevance score per
pair (search), class logits (classify) or a unit-length embedding (retrieval).

    torch-fp32         the reference: the trained model as it was evaluated
    torch-bf16         bf16 autocast (inference only)
    torch-int8         dynamic int8 quantisation of every nn.Linear
    onnx-fp32          ONNX export run by ONNX Runtime with its BERT graph fusions
    onnx-int8          the fused graph with dynamic int8 weights (per channel)
    onnx-int8-static   static int8 with activation ranges calibrated on real inputs
    pruned-*           a copy with whole layers removed (see prune.py), then exported as above

ONNX files are written into the variant folder; torch variants are derived from the
model's own safetensors at load time, so nothing else needs storing. Nothing here loads a
pickle.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shelfops.errors import ModelError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ALL_VARIANTS = ("torch-fp32", "torch-bf16", "torch-int8", "onnx-fp32", "onnx-int8",
                "onnx-int8-static")
# the same arithmetic as the trained model (up to float re-association): held to strict parity
EXACT_VARIANTS = ("torch-fp32", "onnx-fp32")


def is_approximate(name: str, precision: str) -> bool:
    """True for a lossy variant: lower precision (int8, bf16), fewer layers (pruned-*), or
    another model altogether (external-*). Such a variant is held to the quality budget and a
    churn bound instead of strict ranking parity with the fp32 reference."""
    return precision != "fp32" or name not in EXACT_VARIANTS


class TaskOutput(nn.Module):
    """Wraps a trained model so that forward(ids, mask, types) returns the task's output."""

    def __init__(self, model: nn.Module, task: str) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, input_ids, attention_mask, token_type_ids):
        if self.task == "retrieval":
            return self.model.embed(input_ids, attention_mask, token_type_ids)
        return self.model(input_ids, attention_mask, token_type_ids)


@dataclass
class Variant:
    """One way to run the model. ``files`` are what must ship with it (ONNX graphs)."""

    name: str
    engine: str  # torch | onnxruntime
    precision: str  # fp32 | bf16 | int8
    layers: int
    files: list[Path] = field(default_factory=list)
    note: str = ""
    threads: int = 1
    _runner: Any = None

    def set_threads(self, n: int) -> None:
        self.threads = n
        if self.engine == "onnxruntime":
            self._runner.open(n)

    def __call__(self, enc: dict[str, torch.Tensor]) -> np.ndarray:
        if self.engine == "torch":
            torch.set_num_threads(self.threads)
        return self._runner(enc)

    @property
    def file_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.exists())


class _Torch:
    def __init__(self, module: nn.Module, bf16: bool = False) -> None:
        self.module, self.bf16 = module.eval(), bf16

    @torch.inference_mode()
    def __call__(self, enc: dict[str, torch.Tensor]) -> np.ndarray:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            out = self.module(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        return out.float().numpy()


class _Ort:
    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = path
        self.open(threads)

    def open(self, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"ONNX Runtime cannot load {self.path}: {e}") from e
        self.names = [i.name for i in self.sess.get_inputs()]

    def __call__(self, enc: dict[str, torch.Tensor | np.ndarray]) -> np.ndarray:
        feed = {n: np.asarray(enc[n], dtype=np.int64) for n in self.names}
        return self.sess.run(None, feed)[0]


def n_layers(model: nn.Module) -> int:
    return int(model.encoder.backbone.config.num_hidden_layers)


def torch_variant(name: str, model: nn.Module, task: str) -> Variant:
    """torch-fp32, torch-bf16 or torch-int8 of ``model`` (left unchanged)."""
    wrapped = TaskOutput(model, task).eval()
    if name.endswith("fp32"):
        return Variant(name, "torch", "fp32", n_layers(model), _runner=_Torch(wrapped))
    if name.endswith("bf16"):
        return Variant(name, "torch", "bf16", n_layers(model), _runner=_Torch(wrapped, bf16=True),
                       note="bf16 autocast")
    if name.endswith("int8"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(wrapped, {nn.Linear}, dtype=torch.qint8)
        return Variant(name, "torch", "int8", n_layers(model), _runner=_Torch(q),
                       note="dynamic int8 on every Linear")
    raise ModelError(f"unknown torch variant {name!r}")


def export_onnx(model: nn.Module, task: str, tok, path: Path) -> Path:
    """Export with dynamic batch and sequence axes (TorchScript exporter: no onnxscript)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = tok(["a query"], ["a product title"], return_tensors="pt")
    args = tuple(enc[n] for n in INPUTS)
    dyn = {n: {0: "batch", 1: "seq"} for n in INPUTS}
    dyn["out"] = {0: "batch"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TaskOutput(model, task).eval(), args, str(path), input_names=list(INPUTS),
                          output_names=["out"], dynamic_axes=dyn, opset_version=17, dynamo=False)
    return path


def fuse_onnx(src: Path, dst: Path, config) -> Path:
    """ONNX Runtime's BERT optimiser: fused attention, layer norm and GELU kernels."""
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(src), model_type="bert", num_heads=int(config.num_attention_heads),
                         hidden_size=int(config.hidden_size), opt_level=1)
    opt.save_model_to_file(str(dst))
    return dst


def quantize_onnx(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


@contextlib.contextmanager
def _quiet_root_logger():
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx_static(src: Path, dst: Path, calibration: list[dict[str, torch.Tensor]]) -> Path:
    """Static int8 (QDQ) with activation ranges from real tokenised batches."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{n: b[n].numpy().astype(np.int64) for n in INPUTS} for b in calibration])

        def get_next(self):
            return next(self.it, None)

    with _quiet_root_logger():  # one warning per tensor whose type it cannot infer
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=["MatMul"],
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def onnx_variants(model: nn.Module, task: str, tok, folder: Path, wanted: tuple[str, ...], *,
                  prefix: str = "", calibration: list[dict[str, torch.Tensor]] | None = None
                  ) -> list[Variant]:
    """Export once, fuse once, then quantise: each wanted ONNX variant as a Variant."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = n_layers(model)
    raw = export_onnx(model, task, tok, folder / f"{prefix}raw.onnx")
    fused = fuse_onnx(raw, folder / f"{prefix}onnx-fp32.onnx", model.encoder.backbone.config)
    raw.unlink()
    out = []
    if "onnx-fp32" in wanted:
        out.append(Variant(f"{prefix}onnx-fp32", "onnxruntime", "fp32", layers, [fused],
                           "ONNX Runtime, fused BERT graph", _runner=_Ort(fused)))
    if "onnx-int8" in wanted:
        q = quantize_onnx(fused, folder / f"{prefix}onnx-int8.onnx")
        out.append(Variant(f"{prefix}onnx-int8", "onnxruntime", "int8", layers, [q],
                           "ONNX Runtime, dynamic int8 per channel", _runner=_Ort(q)))
    if "onnx-int8-static" in wanted and calibration:
        q = quantize_onnx_static(fused, folder / f"{prefix}onnx-int8-static.onnx", calibration)
        out.append(Variant(f"{prefix}onnx-int8-static", "onnxruntime", "int8", layers, [q],
                           f"ONNX Runtime, static int8 (QDQ), {len(calibration)} calibration batches",
                           _runner=_Ort(q)))
    if "onnx-fp32" not in wanted:
        fused.unlink()
    return out


def load_onnx_variant(path: Path, name: str, precision: str, layers: int, threads: int = 1) -> Variant:
    """A shipped ONNX variant, opened for serving."""
    if not path.exists():
        raise ModelError(f"variant file {path} does not exist")
    return Variant(name, "onnxruntime", precision, layers, [path], _runner=_Ort(path, threads),
                   threads=threads)
