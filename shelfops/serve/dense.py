"""The dense side of hybrid search when no bi-encoder is served: the untuned encoder.

A search model trained with ``train.search.catalogue.retriever`` unset was validated (and its
fusion weight chosen) with the untuned pretrained encoder as the dense retriever beside BM25;
the server answers with the same pipeline. The catalogue is embedded once, in a background
thread, so a server starts and swaps without waiting for it; until the index is ready, search
answers from BM25 alone and says so (``"retriever": "lexical"``).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch

from shelfops.train.catalogue import cached_embeddings
from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer, resolve_encoder
from shelfops.train.index import build_index
from shelfops.train.index import search as index_search
from shelfops.train.search import embed_texts

log = logging.getLogger("shelfops.serve")


class UntunedDense:
    """An untuned encoder and a FAISS index of the catalogue under it."""

    def __init__(self, encoder: str, texts: list[str], *, max_length: int = 64,
                 queries: list[str] | None = None) -> None:
        self.encoder_name, self.max_length = encoder, max_length
        self.queries = queries or []  # past searches: the index is tuned to find their products
        self.index = None
        self.error: str | None = None
        self._lock = threading.Lock()  # one forward pass at a time on this module
        self._thread = threading.Thread(target=self._build, args=(texts,), name="untuned-dense", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self.index is not None

    def _build(self, texts: list[str]) -> None:
        try:
            path = resolve_encoder(self.encoder_name)
            self.enc, self.tok = TextEncoder(load_backbone(path), "mean"), load_tokenizer(path)
            with self._lock, torch.inference_mode():
                emb = cached_embeddings(path, texts, self.max_length, lambda ts: embed_texts(
                    self.enc, self.tok, ts, max_length=self.max_length))
                probes = embed_texts(self.enc, self.tok, self.queries, max_length=self.max_length) \
                    if self.queries else None
            self.index, _ = build_index(emb, probes=probes)
        except Exception as e:  # the server keeps answering from BM25 and says why in /readyz
            self.error = f"{type(e).__name__}: {e}"
            log.warning("untuned dense retriever unavailable, search stays lexical: %s", self.error)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.ready

    def search(self, query: str, k: int) -> np.ndarray:
        with self._lock, torch.inference_mode():
            q = embed_texts(self.enc, self.tok, [query], max_length=self.max_length)
        return index_search(self.index, q, k)[1][0]
