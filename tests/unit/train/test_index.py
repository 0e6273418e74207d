"""The FAISS index chosen by catalogue size, and its search breadth tuned as it is built: an
approximate index reaches its target Recall@10 against exact search (measured again here on
other queries), records what it reached, its build time and bytes per item, and keeps its
tuned breadth through a save and load."""

from __future__ import annotations

import numpy as np
import pytest

from shelfops.train.index import (
    build_index,
    choose_kind,
    exact_top,
    load_index,
    probe_queries,
    recall_at,
    save_index,
)


def _catalogue(n: int, d: int = 64, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors: products come in families, as embeddings of titles do."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_top_matches_a_full_sort_and_recall_counts_overlap():
    x = _catalogue(3000)
    q = probe_queries(x, n=20, seed=1)
    full = np.argsort(-(q @ x.T), axis=1)[:, :10]
    got = exact_top(x, q, block=700)  # blocks that do not divide the catalogue
    assert [set(r) for r in got] == [set(r) for r in full]
    assert recall_at(x, q, full, full) == 1.0
    assert recall_at(x, q, np.repeat(full[:, :1], 10, axis=1), full) == pytest.approx(0.1)  # 1 of 10 found
    # a product whose vector equals one of the exact top-10 is as right as that one
    twin = np.vstack([x, x[full[0, 3]]])
    swapped = full.copy()
    swapped[0, 3] = len(x)
    assert recall_at(twin, q, swapped, full) == 1.0


@pytest.mark.parametrize("kind,breadth", [("hnsw", "ef_search"), ("ivf", "nprobe")])
def test_an_approximate_index_is_widened_until_it_reaches_its_target_recall(kind, breadth, tmp_path):
    x = _catalogue(20_000)
    # started narrow on purpose: tuning must widen it to the target
    index, info = build_index(x, kind=kind, ef_search=4, nprobe=1, target_recall=0.95)
    assert info.params["recall@10"] >= 0.95 and info.params[breadth] > (4 if kind == "hnsw" else 1)
    assert info.params["probes"] == "synthetic"
    assert info.params["build_seconds"] > 0 and info.params["bytes_per_item"] >= 4 * x.shape[1]
    # on queries it was not tuned on, the recall holds (within sampling noise)
    q = probe_queries(x, n=300, seed=7)
    assert recall_at(x, q, index.search(q, 10)[1], exact_top(x, q)) >= 0.92

    save_index(index, info, tmp_path)
    again, info2 = load_index(tmp_path)
    assert info2.params[breadth] == info.params[breadth]
    assert (again.hnsw.efSearch if kind == "hnsw" else again.nprobe) == info.params[breadth]


def test_given_queries_tune_the_index_for_them():
    """Queries unlike the catalogue's vectors (a shopper's short text beside product texts)
    need a wider search than probes near products: tuned on them, the recall holds for them."""
    x = _catalogue(20_000)
    rng = np.random.default_rng(3)
    far = rng.normal(size=(300, x.shape[1])).astype(np.float32)  # off the products' clusters
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    _, near = build_index(x, kind="ivf", nprobe=1)
    index, tuned = build_index(x, kind="ivf", nprobe=1, probes=far[:150])
    assert tuned.params["probes"] == "150 queries" and tuned.params["nprobe"] >= near.params["nprobe"]
    assert recall_at(x, far[150:], index.search(far[150:], 10)[1], exact_top(x, far[150:])) >= 0.9


def test_small_catalogues_are_exact_and_need_no_tuning():
    x = _catalogue(2000)
    index, info = build_index(x)
    assert info.kind == "flat" == choose_kind(2000) and "recall@10" not in info.params
    q = probe_queries(x, n=10)
    assert recall_at(x, q, index.search(q, 10)[1], exact_top(x, q)) == 1.0
    assert choose_kind(100_000) == "ivf" == choose_kind(5_000_000)


def test_saved_embeddings_are_read_back_only_for_the_same_catalogue_row_for_row(tmp_path):
    from shelfops.train.index import save_embeddings, saved_embeddings

    emb = np.arange(12, dtype=np.float64).reshape(3, 4)
    save_embeddings(tmp_path / "index", ["a", "b", "c"], emb)
    got = saved_embeddings(tmp_path / "index", ["a", "b", "c"])
    assert got is not None and got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, emb)
    assert saved_embeddings(tmp_path / "index", ["c", "b", "a"]) is None  # reordered
    assert saved_embeddings(tmp_path / "index", ["a", "b"]) is None  # another catalogue
    assert saved_embeddings(tmp_path / "nothing", ["a"]) is None
