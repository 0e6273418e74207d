"""Baselines, measured in the same run and on the same split as the models that must beat them.

* Search: BM25 (:class:`BM25Index`, :func:`bm25_scores`) on the maintained ``bm25s``
  library, k1 = 1.5, b = 0.75, Lucene variant by default::

      score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
      idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

  A query term repeated in the query counts once per occurrence (as in ``bm25s``).
* Recommendation: PopRec (:func:`popularity_scores`): score(i) = training interactions
  with item i, the same for every user.
* Classification: :func:`majority_class` and :class:`TfidfCentroidClassifier` (nearest
  class centroid by cosine of TF-IDF title vectors; numpy + scipy.sparse, no sklearn).

Tokenisation (:func:`tokenize`, shared by BM25 and TF-IDF): lowercase, split on every
character that is not a Unicode letter or digit (``[^\\W_]+``), keep one-character tokens
("1/2 in" -> ``["1", "2", "in"]``), no stemming; ``stopwords=True`` drops the English
stop words that ``bm25s`` ships (NLTK's list).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from shelfops.errors import ConfigError, DataError
from shelfops.plain import tokens


def tokenize(text: str, *, stopwords: bool = False) -> list[str]:
    """Lowercased runs of letters/digits of ``text``; English stop words dropped if asked."""
    if not isinstance(text, str):
        raise DataError(f"text to tokenize must be a str, got {type(text).__name__}")
    words = tokens(text)
    if stopwords:
        from bm25s.stopwords import STOPWORDS_EN

        stop = frozenset(STOPWORDS_EN)
        words = [t for t in words if t not in stop]
    return words


def _texts(name: str, texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DataError(f"{name} must be a sequence of strings, not one string", argument=name)
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise DataError(
            f"{name}[{bad[0]}] is {type(out[bad[0]]).__name__}, not str ({len(bad)} such)",
            argument=name,
        )
    return out


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; equal scores by ascending index."""
    if k >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    kth = -np.partition(-scores, k - 1)[k - 1]  # the k-th highest value
    above = np.flatnonzero(scores > kth)
    above = above[np.lexsort((above, -scores[above]))]
    tied = np.flatnonzero(scores == kth)[: k - len(above)]  # ascending index already
    return np.concatenate((above, tied))


# --------------------------------------------------------------------------- BM25


class BM25Index:
    """A BM25 index over ``docs`` (e.g. product titles); document i is ``docs[i]``."""

    def __init__(
        self,
        docs: Sequence[str],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: bool = False,
    ) -> None:
        import bm25s

        # bm25s logs each index build at DEBUG; once any library adds a root handler
        # (onnxruntime's quantizer does) those lines would reach the user's terminal
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        docs = _texts("docs", docs)
        if not docs:
            raise DataError("docs is empty: BM25 needs at least one document", argument="docs")
        problems = []
        if not k1 >= 0:
            problems.append(f"k1 must be >= 0, got {k1!r}")
        if not 0 <= b <= 1:
            problems.append(f"b must be in [0, 1], got {b!r}")
        methods = ("robertson", "lucene", "atire", "bm25l", "bm25+")
        if method not in methods:
            problems.append(f"method must be one of {', '.join(methods)}; got {method!r}")
        if problems:
            raise ConfigError(problems, "BM25Index")
        tokens = [tokenize(d, stopwords=stopwords) for d in docs]
        if not any(tokens):
            raise DataError("no document in docs has a single token", argument="docs")
        self.stopwords = stopwords
        self.n_docs = len(docs)
        self._bm25 = bm25s.BM25(k1=k1, b=b, method=method)
        self._bm25.index(tokens, show_progress=False)

    def query_scores(self, query: str) -> np.ndarray:
        """BM25 score of ``query`` against every document: float32 ``[n_docs]``.

        Terms missing from the index contribute 0; a query with no known term scores 0
        everywhere.
        """
        ids = self._bm25.get_tokens_ids(tokenize(query, stopwords=self.stopwords))
        return np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32)

    def score_pairs(self, query_texts: Sequence[str], doc_indices: ArrayLike) -> np.ndarray:
        """Score (query_texts[j], docs[doc_indices[j]]) pairs: float32 ``[n_pairs]``.

        For re-ranking a judged pool (Home Depot: NDCG within each query's pool). Each
        distinct query text is scored once against the index.
        """
        queries = _texts("query_texts", query_texts)
        idx = np.asarray(doc_indices)
        if idx.ndim != 1 or len(idx) != len(queries):
            raise DataError(
                f"doc_indices must be 1-D with one index per query text ({len(queries)}), "
                f"got shape {idx.shape}",
                argument="doc_indices",
            )
        if len(idx) and (
            not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= self.n_docs
        ):
            raise DataError(
                f"doc_indices must be integers in [0, {self.n_docs})", argument="doc_indices"
            )
        out = np.empty(len(queries), dtype=np.float32)
        if not queries:
            return out
        distinct, which = np.unique(np.asarray(queries, dtype=object), return_inverse=True)
        which = which.reshape(-1)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(distinct) + 1))
        for qi, query in enumerate(distinct):
            rows = order[bounds[qi] : bounds[qi + 1]]
            out[rows] = self.query_scores(query)[idx[rows]]
        return out

    def search(self, queries: Sequence[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents per query over the whole index.

        Returns ``(doc_indices int64 [n_queries x k'], scores float32 [n_queries x k'])``,
        best first, k' = min(k, n_docs); equal scores come in ascending document index.
        """
        queries = _texts("queries", queries)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError([f"k must be an integer >= 1, got {k!r}"], "BM25Index.search")
        k = min(int(k), self.n_docs)
        docs = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float32)
        for qi, query in enumerate(queries):
            s = self.query_scores(query)
            docs[qi] = _top_k(s, k)
            scores[qi] = s[docs[qi]]
        return docs, scores


def bm25_scores(
    queries: Sequence[str],
    docs: Sequence[str],
    pairs: Sequence[tuple[int, int]] | None = None,
    *,
    stopwords: bool = False,
) -> np.ndarray:
    """One-shot BM25 (defaults of :class:`BM25Index`).

    With ``pairs`` (``(query index, doc index)``): float32 ``[n_pairs]``. Without: the
    dense float32 ``[n_queries x n_docs]`` matrix (mind the memory: 4 bytes per cell).
    """
    index = BM25Index(docs, stopwords=stopwords)
    queries = _texts("queries", queries)
    if pairs is None:
        if not queries:
            return np.empty((0, index.n_docs), dtype=np.float32)
        return np.stack([index.query_scores(q) for q in queries])
    p = np.asarray(pairs)
    if len(p) == 0:
        return np.empty(0, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 2 or not np.issubdtype(p.dtype, np.integer):
        raise DataError("pairs must be (query index, doc index) integer pairs", argument="pairs")
    if p[:, 0].min() < 0 or p[:, 0].max() >= len(queries):
        raise DataError(f"pairs name query indices outside [0, {len(queries)})", argument="pairs")
    return index.score_pairs([queries[q] for q in p[:, 0]], p[:, 1])


# --------------------------------------------------------------------------- PopRec


def popularity_scores(train_items: ArrayLike, n_items: int) -> np.ndarray:
    """PopRec: float32 ``[n_items]``, score[i] = number of training interactions with item i.

    ``train_items``: the item id of every training interaction (repeats count), ids in
    ``[0, n_items)``. Use only the training split so the held-out targets do not leak.
    """
    items = np.asarray(train_items)
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ConfigError([f"n_items must be an integer >= 1, got {n_items!r}"], "popularity")
    if items.ndim != 1 or (len(items) and not np.issubdtype(items.dtype, np.integer)):
        raise DataError("train_items must be a 1-D array of item ids", argument="train_items")
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise DataError(f"train_items holds ids outside [0, {n_items})", argument="train_items")
    return np.bincount(items.astype(np.int64), minlength=int(n_items)).astype(np.float32)


def popularity_scorer(item_scores: ArrayLike) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(user_rows)`` giving every user the same item scores (a read-only broadcast view).

    Pass it as ``scores`` to ``metrics.full_rank_metrics`` so the [users x items] matrix
    is never built: ``full_rank_metrics(popularity_scorer(pop), targets, histories)``.
    """
    scores = np.asarray(item_scores)
    if scores.ndim != 1:
        raise DataError("item_scores must be one-dimensional", argument="item_scores")
    return lambda rows: np.broadcast_to(scores, (len(rows), len(scores)))


# --------------------------------------------------------------------------- classification


def majority_class(train_labels: ArrayLike, n: int) -> np.ndarray:
    """``n`` copies of the most frequent training label (ties: the smallest label)."""
    labels = np.asarray(train_labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise DataError("train_labels must be a non-empty 1-D array", argument="train_labels")
    classes, counts = np.unique(labels, return_counts=True)
    return np.full(n, classes[np.argmax(counts)], dtype=classes.dtype)


class TfidfCentroidClassifier:
    """Nearest class centroid by cosine similarity of TF-IDF title vectors.

    Fit on ``titles``/``labels``: tf = 1 + ln(count) per token, idf(t) = ln((1 + N) /
    (1 + df(t))) + 1 over the N training titles, rows L2-normalised; a class centroid is
    the L2-normalised sum of its titles' vectors. ``predict`` picks the class of highest
    cosine; a title with no known token (all cosines 0) gets the majority class.
    """

    def __init__(self, titles: Sequence[str], labels: ArrayLike, *, stopwords: bool = False):
        titles = _texts("titles", titles)
        y = np.asarray(labels)
        if y.ndim != 1 or len(y) != len(titles) or len(y) == 0:
            raise DataError(
                f"labels must be 1-D, one per title ({len(titles)}), non-empty; "
                f"got shape {y.shape}",
                argument="labels",
            )
        self.stopwords = stopwords
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self._majority = int(np.argmax(np.bincount(y_idx.reshape(-1))))
        tokens = [tokenize(t, stopwords=stopwords) for t in titles]
        self.vocab = {tok: i for i, tok in enumerate(sorted({t for ts in tokens for t in ts}))}
        counts = self._counts(tokens)
        df = np.bincount(counts.indices, minlength=len(self.vocab))
        self.idf = np.log((1.0 + len(titles)) / (1.0 + df)) + 1.0
        x = self._tfidf(counts)
        member = sp.csr_matrix(
            (np.ones(len(y)), (y_idx.reshape(-1), np.arange(len(y)))),
            shape=(len(self.classes_), len(y)),
        )
        self.centroids = _l2_rows(sp.csr_matrix(member @ x))

    def _counts(self, tokens: list[list[str]]) -> sp.csr_matrix:
        ids = [[self.vocab[t] for t in ts if t in self.vocab] for ts in tokens]
        rows = np.repeat(np.arange(len(ids)), [len(i) for i in ids])
        cols = np.fromiter((c for i in ids for c in i), dtype=np.int64, count=len(rows))
        m = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(ids), max(len(self.vocab), 1))
        )
        m.sum_duplicates()
        return m

    def _tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        x = counts.copy()
        x.data = (1.0 + np.log(x.data)) * self.idf[x.indices]
        return _l2_rows(x)

    def scores(self, titles: Sequence[str]) -> np.ndarray:
        """Cosine of each title to each class centroid: ``[n_titles x n_classes]``."""
        titles = _texts("titles", titles)
        x = self._tfidf(self._counts([tokenize(t, stopwords=self.stopwords) for t in titles]))
        return np.asarray((x @ self.centroids.T).todense())

    def predict(self, titles: Sequence[str]) -> np.ndarray:
        """The predicted label of each title (see the class docstring)."""
        s = self.scores(titles)
        if s.shape[0] == 0:
            return self.classes_[:0]
        best = np.argmax(s, axis=1)
        best[s.max(axis=1) <= 0] = self._majority
        return self.classes_[best]


def _l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).reshape(-1))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ m)
