"""The dense side of hybrid search when no bi-encoder is served: the untuned encoder.

A search model trained with ``train.search.catalogue.retriever`` unset was validated (and its
fusion weight chosen) with the untuned pretrained encoder as the dense retriever beside BM25;
the server answers with the same pipeline. The catalogue is embedded once, in a background
thread, so a server starts and swaps without waiting for it; until the index is ready, search
answers from BM25 alone and says so (``"retriever": "lexical"``). Each search's query is
embedded by ONNX Runtime from a checked export of the encoder (``train.query_encoder``: ~4 ms
against PyTorch's ~17 ms for one short text on these CPUs).
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from shelfops.train.catalogue import dense_side
from shelfops.train.encoder import resolve_encoder
from shelfops.train.index import build_index
from shelfops.train.index import search as index_search
from shelfops.train.query_encoder import QueryEncoder

log = logging.getLogger("shelfops.serve")


class UntunedDense:
    """An untuned encoder and a FAISS index of the catalogue under it."""

    def __init__(self, encoder: str, texts: list[str], *, max_length: int = 64,
                 queries: list[str] | None = None) -> None:
        self.encoder_name, self.max_length = encoder, max_length
        self.queries = queries or []  # past searches: the index is tuned to find their products
        self.index = None
        self.query: QueryEncoder | None = None  # set with the index: what embeds each search's query
        self.error: str | None = None
        self._thread = threading.Thread(target=self._build, args=(texts,), name="untuned-dense", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self.index is not None

    def _build(self, texts: list[str]) -> None:
        try:
            # the same dense side optimize timed this model's searches with (served: one query
            # through the encoder's checked ONNX export), its catalogue vectors from the cache
            self.query, _, emb = dense_side(resolve_encoder(self.encoder_name), None, max_length=self.max_length,
                                            texts=texts, progress=False, served=True)
            probes = self.query(self.queries) if self.queries else None
            self.query(["warm-up"])  # the export (once per encoder) and its check, before the first search
            self.index, _ = build_index(emb, probes=probes)
        except Exception as e:  # the server keeps answering from BM25 and says why in /readyz
            self.error = f"{type(e).__name__}: {e}"
            log.warning("untuned dense retriever unavailable, search stays lexical: %s", self.error)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.ready

    def search(self, query: str, k: int) -> np.ndarray:
        """The ``k`` nearest catalogue rows to ``query`` (one text: ONNX Runtime, ~4 ms, where
        the encoder's export is good; PyTorch otherwise, ~17 ms)."""
        return index_search(self.index, self.query([query]), k)[1][0]
