"""One query at a time through the untuned encoder, fast: the dense side of a served search.

A search embeds its query before the hybrid retriever can fuse: one text of ~10 tokens. PyTorch
spends ~17 ms on that (2 cores, AVX-512; 37 small matrix products of one row each, per-op
overhead and weights read from memory for each), ONNX Runtime ~4 ms on one thread for the same
graph (bench/RESULTS.md, "One search, served"). So a single query goes through an ONNX export of
the encoder, made once per encoder's files and kept beside the embedding cache
(``catalogue.embedding_cache``), and checked against PyTorch on probe texts before it is used;
batches (a catalogue, a test set) stay on PyTorch, whose per-op cost they amortise. Where the
export or ONNX Runtime fails, or disagrees, queries stay on PyTorch and the reason is kept.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import torch

from shelfops.train.encoder import TextEncoder
from shelfops.train.search import embed_texts

log = logging.getLogger("shelfops.train")

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: texts the export must embed as PyTorch does before it serves (short and long, padded or not)
PROBES = ("red shoe", "cordless drill 18v with two batteries and a charger",
          "stainless steel kitchen sink with drainboard, 33 inch, undermount")
#: largest difference to PyTorch's vector (unit length) an export may show: float32 rounding
#: between two engines is ~1e-6; a broken export differs by 1e-2 and more
TOLERANCE = 1e-4


class QueryEncoder:
    """``encoder`` (mean-pooled, normalised vectors) for ``texts``: one text through ONNX
    Runtime once its export is made and checked (on the first single text: a training run that
    only embeds batches never exports), several through PyTorch. Thread-safe."""

    def __init__(self, encoder: TextEncoder, tok, encoder_path: str, *, max_length: int,
                 store: Path | None, threads: int = 1, tok_lock: threading.Lock | None = None) -> None:
        self.encoder, self.tok, self.path, self.max_length = encoder, tok, encoder_path, max_length
        self.store, self.threads = store, threads
        self.session = None
        self.names: list[str] = []
        self.why_torch: str | None = None if store is not None else "no store for the export"
        self._torch_lock = threading.Lock()  # one PyTorch forward at a time on this module
        self._open_lock = threading.Lock()
        # the tokenizer's turns: a caller that shares the tokenizer with other code passes its lock
        self._tok_lock = tok_lock or threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1 and self._ready():
            return self._onnx(texts)
        with self._torch_lock, self._tok_lock, torch.inference_mode():
            return embed_texts(self.encoder, self.tok, texts, max_length=self.max_length)

    @property
    def torch_lock(self) -> threading.Lock:
        """Held by each PyTorch forward of this encoder and by its export: a caller running the same
        module otherwise (a batch through its torch variant) takes it too."""
        return self._torch_lock

    @property
    def engine(self) -> str:
        return "onnxruntime" if self.session is not None else "torch"

    def _ready(self) -> bool:
        if self.session is not None or self.why_torch is not None:
            return self.session is not None
        with self._open_lock:
            if self.session is None and self.why_torch is None:
                try:
                    self._open()
                except Exception as e:  # the exporter and onnxruntime raise their own, untyped, errors
                    self.why_torch = f"{type(e).__name__}: {e}"
                    log.warning("query encoder stays on PyTorch: %s", self.why_torch)
        return self.session is not None

    def _onnx(self, texts: list[str], session=None) -> np.ndarray:
        # a fast tokenizer sets its truncation and padding on each call: two threads at once can
        # fail ("Already borrowed"), so calls take turns (~0.1 ms); the session runs concurrently
        with self._tok_lock:
            enc = self.tok(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="np")
        feed = {n: np.asarray(enc[n], dtype=np.int64) for n in self.names}
        out = (session or self.session).run(None, feed)[0]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _open(self) -> None:
        """The session on the store's export, made first if there is none; an export on disk that
        will not load or disagrees with PyTorch (made by another torch, say) is made once again."""
        path = self.store / "encoder.onnx"
        fresh = not path.exists()
        if fresh:
            self._export(path)
        try:
            session = self._checked(path)
        except Exception:
            path.unlink(missing_ok=True)  # never trusted again, by this start or a later one
            if fresh:
                raise
            self._export(path)
            session = self._checked(path)
        self.session = session

    def _export(self, path: Path) -> None:
        with self._torch_lock, self._tok_lock:  # it tokenizes and traces the shared modules
            _export(self.encoder, self.tok, path, self.max_length)

    def _checked(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = self.threads, 1
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in session.get_inputs()]
        with self._torch_lock, self._tok_lock, torch.inference_mode():
            ref = embed_texts(self.encoder, self.tok, list(PROBES), max_length=self.max_length)
        got = np.concatenate([self._onnx([p], session) for p in PROBES])
        diff = float(np.abs(got - ref).max())
        if diff > TOLERANCE:
            raise ValueError(f"the ONNX export of {self.path} differs from PyTorch by {diff:.2g}")
        return session


def _export(encoder: TextEncoder, tok, path: Path, max_length: int) -> None:
    """The encoder's pooled output with dynamic batch and length (TorchScript exporter), written
    to a temporary name and moved into place: another process never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = tok([PROBES[1]], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    args = tuple(enc[n] for n in INPUTS if n in enc)
    names = [n for n in INPUTS if n in enc]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    import warnings

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(encoder.eval(), args, str(tmp), input_names=names, output_names=["out"],
                              dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "out": {0: "batch"}},
                              opset_version=17, dynamo=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
