"""Open a model folder the way it ships: the variant that serves, plus its fp32 reference.

A trained folder (stage ``train``) serves its torch fp32 model. An optimized folder
(stage ``optimize``) serves the variant named in ``serving.json`` (an ONNX file, or a torch
variant derived from the folder's own safetensors) with that file's tuned settings, and
keeps the fp32 model it was derived from as the reference for parity checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shelfops.artifacts import verify_outputs
from shelfops.errors import ModelError
from shelfops.optimize import measure
from shelfops.optimize.measure import run_all
from shelfops.optimize.variants import Variant, load_onnx_variant, torch_variant
from shelfops.train import text_models
from shelfops.train.catalogue import onnx_store
from shelfops.train.query_encoder import QueryEncoder


@dataclass
class Shipped:
    folder: Path
    stage: str
    spec: Any
    tok: Any
    variant: Variant
    reference: Variant
    serving: dict = field(default_factory=dict)
    # model calls side by side in one ``run``: 1 as a server's batcher worker calls it (the server
    # runs its own workers); ``offline()`` sets every core's worth, for the gate and checks
    workers: int = 1
    # a trained retrieval model's single texts (a served query) through an ONNX export checked
    # against it (train.query_encoder: ~4 ms instead of PyTorch's ~15 for one query); None: the variant
    query: Callable[[list[str]], np.ndarray] | None = None

    @property
    def name(self) -> str:
        return self.variant.name

    def offline(self) -> Shipped:
        """Score on every core: as many side-by-side calls as the variant's threads leave room for."""
        self.workers = max(1, (os.cpu_count() or 1) // max(1, self.variant.threads))
        return self

    def run(self, a: list[str], b: list[str] | None = None, *, reference: bool = False,
            batch_size: int | None = None) -> np.ndarray:
        """Outputs for inputs (pairs for search, single texts otherwise), in input order."""

        if self.query is not None and not reference and b is None and len(a) == 1:
            return self.query(a)
        v = self.reference if reference else self.variant
        bs = batch_size or int(self.serving.get("max_batch", 32))
        if self.query is None:
            return run_all(v, self.tok, a, b, max_length=self.spec.max_length, batch_size=bs, workers=self.workers)
        with self.query.torch_lock:  # never beside the export tracing the same module
            return run_all(v, self.tok, a, b, max_length=self.spec.max_length, batch_size=bs, workers=self.workers)


def load_shipped(folder: Path, *, threads: int = 1, verify: bool = True, fast_query: bool = False) -> Shipped:
    """``fast_query``: a trained retrieval model embeds a text alone through its ONNX export (the
    server's queries); offline callers leave it off and get PyTorch's numbers for any batch."""
    folder = Path(folder)
    m = verify_outputs(folder) if verify else None
    model, tok, spec = text_models.load(folder)
    ref = torch_variant("torch-fp32", model, spec.task)
    ref.threads = threads
    serving_path = folder / "serving.json"
    if not serving_path.exists():
        # the variant is PyTorch fp32, which the export matches to 1e-4: the catalogue embeddings
        # its training saved stay valid for the queries it embeds (an optimized folder has its own)
        path = str(folder.resolve())  # one export per model, however its folder is named
        query = QueryEncoder(model.encoder, tok, path, max_length=spec.max_length, store=onnx_store(path),
                             threads=threads, tok_lock=measure.TOKENIZER) \
            if fast_query and spec.task == "retrieval" else None
        return Shipped(folder, m.stage if m else "train", spec, tok, ref, ref, {"threads": threads}, query=query)
    serving = json.loads(serving_path.read_text())
    name, engine = serving["variant"], serving["engine"]
    threads = int(serving.get("threads", threads))
    if engine == "onnxruntime":
        v = load_onnx_variant(folder / serving["files"][0], name, serving["precision"],
                              _layers(folder, serving), threads)
    elif name in ("torch-fp32", "torch-bf16", "torch-int8"):
        v = torch_variant(name, model, spec.task)
        v.threads = threads
    else:
        raise ModelError(f"{folder}: cannot open shipped variant {name!r} ({engine})")
    return Shipped(folder, m.stage if m else "optimize", spec, tok, v, ref, serving)


def _layers(folder: Path, serving: dict) -> int:
    name = serving["variant"]
    if name.startswith("pruned"):
        return int(name[len("pruned"):].split("-")[0])
    cfg = json.loads((folder / "encoder" / "config.json").read_text())
    return int(cfg.get("num_hidden_layers", 0))
