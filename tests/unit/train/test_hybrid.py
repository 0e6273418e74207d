"""Hybrid retrieval: rank fusion, the choice of weight and depth, hard negatives, re-ranking."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from shelfops.train.catalogue import PairScores, pooled
from shelfops.train.hybrid import RRF_K, Candidates, choose, fuse, hard_negatives, rerank


def test_fuse_ranks_agreement_first_and_weights_pick_a_side():
    lexical = np.array([[1, 2, 3, -1]])
    dense = np.array([[3, 4, 1, 5]])
    # equal weights: 1 and 3 are in both lists and lead; 1 (ranks 1 and 3) ties 3 (ranks 3 and 1)
    # and the lexical list breaks the tie
    got = fuse(lexical, dense, 0.5, n=5)[0].tolist()
    assert got[:2] == [1, 3] and set(got) == {1, 2, 3, 4, 5}
    # a weight of 0 or 1 is one retriever's own order
    assert fuse(lexical, dense, 0.0, n=3)[0].tolist() == [1, 2, 3]
    assert fuse(lexical, dense, 1.0, n=4)[0].tolist() == [3, 4, 1, 5]
    # the score is sum w / (k + rank): with w = 0.9 dense's second item beats lexical's first
    # alone (0.9 / (k + 2) > 0.1 / (k + 1))
    assert fuse(np.array([[7]]), np.array([[8, 9]]), 0.9, n=3)[0].tolist() == [8, 9, 7]
    assert 0.9 / (RRF_K + 2) > 0.1 / (RRF_K + 1)


def test_fuse_pads_and_refuses_bad_input():
    out = fuse(np.array([[0, -1], [-1, -1]]), np.array([[0, 1], [-1, -1]]), 0.5, n=4)
    assert out.tolist() == [[0, 1, -1, -1], [-1, -1, -1, -1]]
    with pytest.raises(ValueError, match="fusion weight must be in"):
        fuse(np.array([[0]]), np.array([[0]]), 1.5, n=1)
    with pytest.raises(ValueError, match="1 lexical rows vs 2 dense rows"):
        fuse(np.array([[0]]), np.array([[0], [1]]), 0.5, n=1)


def test_candidates_at_the_ends_of_the_grid_are_the_single_retrievers():
    c = Candidates(np.array([[1, 2]]), np.array([[3, 4]]))
    assert c.fused(0.0, 3).tolist() == [[1, 2, -1]]
    assert c.fused(1.0, 2).tolist() == [[3, 4]]


def test_rerank_orders_the_head_and_keeps_the_tail():
    rows = np.array([[5, 6, 7, 8], [1, -1, -1, -1]])
    got = rerank(rows, lambda head: head.astype(float), depth=3)  # score = row number
    assert got.tolist() == [[7, 6, 5, 8], [1, -1, -1, -1]]


def test_choose_prefers_shallow_depth_within_tolerance_then_the_middle_weight():
    table = {(0.0, 10): 0.30, (0.5, 10): 0.4995, (0.5, 20): 0.50, (1.0, 20): 0.50, (1.0, 10): 0.40}
    c = choose(lambda w, d, b: table.get((w, d), 0.0), (0.0, 0.5, 1.0), (10, 20), tolerance=1e-3)
    assert (c.weight, c.depth) == (0.5, 10) and c.value == pytest.approx(0.4995)
    strict = choose(lambda w, d, b: table.get((w, d), 0.0), (0.0, 0.5, 1.0), (10, 20))
    assert (strict.weight, strict.depth) == (0.5, 20)  # 0.5 and 1.0 tie: the middle weight
    assert strict.to_dict()["grid"]["w=1,depth=20,blend=0"] == 0.5
    blended = choose(lambda w, d, b: table.get((w, d), 0.0) + (0.01 if b == 0.5 else 0.0), (0.5,), (20,),
                     blends=(0.0, 0.5))
    assert blended.blend == 0.5 and blended.to_dict()["rerank_blend"] == 0.5
    with pytest.raises(ValueError, match="empty weight, depth or blend grid"):
        choose(lambda w, d, b: 0.0, (), (10,))


def test_hard_negatives_skip_the_top_and_every_judged_product():
    ids = [f"p{i}" for i in range(10)]
    judged = pl.DataFrame({"query": ["a", "a", "b"], "item_id": ["p4", "p5", "p0"], "grade": [3.0, 1.0, 2.0]})
    cands = np.array([[0, 1, 2, 3, 4, 5, 6, -1], [0, 1, 2, 3, -1, -1, -1, -1]])
    neg = hard_negatives(["a", "b"], cands, judged, ids, per_query=10, skip=2, seed=0)
    a = set(neg.filter(pl.col("query") == "a")["item_id"])
    b = set(neg.filter(pl.col("query") == "b")["item_id"])
    assert a == {"p2", "p3", "p6"}  # p0, p1 skipped; p4 and p5 judged (any grade) for "a"
    assert b == {"p2", "p3"}
    few = hard_negatives(["a"], cands[:1], judged, ids, per_query=2, skip=2, seed=1)
    assert len(few) == 2 and set(few["item_id"]) <= a


def _counting_scorer(calls: list[int]):
    """A re-ranker stub: query length x 10 + the text's number, each call's size kept in ``calls``."""
    def score(qs, ts):
        calls.append(len(qs))
        return np.array([len(q) * 10 + int(t[1:]) for q, t in zip(qs, ts)], dtype=float)

    return score


def test_pair_scores_score_each_pair_once():
    calls: list[int] = []
    score = _counting_scorer(calls)
    texts = [f"t{i}" for i in range(5)]
    s = PairScores(["q", "qq"], texts, score)
    first = s(np.array([[0, 1], [1, -1]]))
    assert first[0].tolist() == [10, 11] and first[1, 0] == 21 and np.isnan(first[1, 1])
    again = s(np.array([[1, 2], [1, 3]]))
    assert again.tolist() == [[11, 12], [21, 23]]
    assert calls == [3, 2]  # the second call scored only (q, t2) and (qq, t3)


def test_pair_scores_seeded_with_judged_pairs_score_only_the_rest():
    """The judged pools' scores, already computed for the metrics within them, are taken for
    the pairs retrieval brings again; a pair whose text is not the catalogue row's is not."""
    calls: list[int] = []
    score = _counting_scorer(calls)
    texts = [f"t{i}" for i in range(4)]
    s = PairScores(["q", "qq"], texts, score)
    judged = pl.DataFrame({"query": ["q", "q", "qq", "other"], "item_id": ["i0", "i1", "i2", "i3"],
                           "text": ["t0", "stale text", "t2", "t3"]})
    assert s.seed(judged, np.array([-1.0, -2.0, -3.0, -4.0]), ["i0", "i1", "i2", "i3"]) == 2
    got = s(np.array([[0, 1], [2, 3]]))
    assert got.tolist() == [[-1.0, 11.0], [-3.0, 23.0]]  # (q, t0), (qq, t2) seeded; the rest scored
    assert calls == [2]


def test_the_untuned_embedder_loads_no_encoder_for_texts_it_has_embedded(tiny_encoder, tmp_path, monkeypatch):
    from shelfops.train import catalogue

    monkeypatch.setenv("SHELFOPS_CACHE", str(tmp_path / "cache"))
    first = catalogue.untuned_embedder(tiny_encoder, 16)(["red shoe", "blue lamp"])
    assert first.shape[0] == 2 and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)

    def no_load(*_a, **_k):
        raise AssertionError("the encoder was loaded for cached texts")

    monkeypatch.setattr(catalogue, "load_backbone", no_load)
    again = catalogue.untuned_embedder(tiny_encoder, 16)(["blue lamp", "red shoe"])
    assert np.array_equal(again, first[::-1])
    with pytest.raises(AssertionError, match="was loaded"):
        catalogue.untuned_embedder(tiny_encoder, 16)(["a new text"])


def test_pooled_folds_need_disjoint_queries():
    f = pl.DataFrame({"query": ["a", "b"], "pipeline_ndcg@10": [1.0, 0.5], "pipeline_recall@10": [1.0, 0.5],
                      "bm25_ndcg@10": [0.5, 0.5], "bm25_recall@10": [0.5, 0.0]})
    g = f.with_columns(pl.Series("query", ["c", "d"]))
    out = pooled([f, g], n_boot=200)
    assert out["queries"] == 4 and out["systems"]["pipeline"]["ndcg@10"]["mean"] == pytest.approx(0.75)
    assert out["comparisons"]["recall@10"]["bm25"]["diff"]["mean"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="share a query"):
        pooled([f, f], n_boot=200)


def test_served_candidates_filter_each_list_before_fusing():
    from shelfops.serve.state import candidates

    lexical, dense = np.array([0, 1, 2, 3, -1]), np.array([4, 2, 5, 1])
    even = lambda i: i % 2 == 0  # noqa: E731  (a category filter)
    # filtered first: lexical [0, 2], dense [4, 2]; 2 is in both and leads
    assert candidates(lexical, dense, 0.5, 3, keep=even) == [2, 0, 4]
    assert candidates(lexical, None, 0.5, 2, keep=lambda i: True) == [0, 1]  # no bi-encoder: BM25
    assert candidates(None, dense, 0.0, 2, keep=lambda i: True) == [4, 2]  # dense only, whatever the weight
    assert candidates(lexical, dense, 0.5, 3, keep=lambda i: False) == []


def test_catalogue_embeddings_are_computed_once_per_encoder_length_and_text(tmp_path, monkeypatch):
    """Each distinct text is embedded once per encoder files and length: a catalogue that grew
    embeds only its new texts, a run that fails midway keeps its finished segments, and a
    damaged segment is embedded again, never trusted."""
    import pytest

    from shelfops.train.catalogue import cached_embeddings, embedding_cache

    monkeypatch.setenv("SHELFOPS_CACHE", str(tmp_path / "cache"))
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "model.safetensors").write_bytes(b"w1")
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32).reshape(-1, 2)

    def want(texts):
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)

    first = cached_embeddings(str(enc), ["a", "bb", "c"], 64, compute)
    assert np.array_equal(first, want(["a", "bb", "c"])) and calls == [["a", "bb", "c"]]
    # the same texts, reordered and repeated: nothing to embed, rows in the asked order
    again = cached_embeddings(str(enc), ["c", "a", "a", "bb"], 64, compute)
    assert np.array_equal(again, want(["c", "a", "a", "bb"])) and len(calls) == 1
    # the catalogue grew: only the new texts are embedded
    grown = cached_embeddings(str(enc), ["a", "bb", "c", "dd", "e"], 64, compute)
    assert calls[-1] == ["dd", "e"] and np.array_equal(grown, want(["a", "bb", "c", "dd", "e"]))
    cached_embeddings(str(enc), ["a"], 32, compute)  # another length: its own store
    assert calls[-1] == ["a"]
    (enc / "model.safetensors").write_bytes(b"weights 2")  # the encoder changed: all again
    cached_embeddings(str(enc), ["a", "bb"], 64, compute)
    assert calls[-1] == ["a", "bb"]

    # a run that fails after its first segment keeps it; the next run embeds the rest only
    def failing(texts):
        if "h" in texts:
            raise RuntimeError("killed")
        return compute(texts)

    with pytest.raises(RuntimeError):
        cached_embeddings(str(enc), ["f", "g", "h", "i"], 64, failing, segment=2)
    assert calls[-1] == ["f", "g"]
    cached_embeddings(str(enc), ["f", "g", "h", "i"], 64, compute, segment=2)
    assert calls[-1] == ["h", "i"]

    for f in embedding_cache().rglob("seg-*.npz"):
        f.write_bytes(b"not an archive")  # damaged segments are embedded again
    n = len(calls)
    assert np.array_equal(cached_embeddings(str(enc), ["a", "bb"], 64, compute), want(["a", "bb"]))
    assert calls[n:] == [["a", "bb"]]


def test_negative_triples_pair_each_negative_with_a_relevant_judged_product():
    from shelfops.train.hybrid import negative_triples

    judged = pl.DataFrame({"query": ["a", "a", "a", "b"], "item_id": ["p1", "p2", "p3", "p4"],
                           "grade": [3.0, 2.0, 1.0, 1.0]})
    neg = pl.DataFrame({"query": ["a", "a", "b"], "item_id": ["n1", "n2", "n3"]})
    t = negative_triples(neg, judged, relevant=2.0, seed=0)
    assert t["negative"].to_list() == ["n1", "n2"]  # "b" has no relevant product: no triple
    assert set(t["positive"]) <= {"p1", "p2"}  # never the grade-1 p3


def test_pairwise_hard_negatives_ride_along_with_graded_batches_and_push_negatives_down(tiny_encoder):
    import torch

    from shelfops.config.schema import CatalogueSearchConfig, SearchTrainConfig
    from shelfops.train.encoder import load_tokenizer
    from shelfops.train.search import loss_fn, make_batches, search_settings_from

    tok = load_tokenizer(tiny_encoder)
    df = pl.DataFrame({"query": ["q"] * 6, "text": [f"item {i}" for i in range(6)],
                       "grade": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]})
    triples = pl.DataFrame({"query": ["q"] * 5, "positive": ["good"] * 5, "negative": [f"bad {i}" for i in range(5)]})
    s = search_settings_from(SearchTrainConfig(batch_size=4, max_length=16,
                                               catalogue=CatalogueSearchConfig(triples_per_batch=2)))
    epoch = make_batches(df, tok, s, seed=0, lo=1.0, hi=3.0, triples=triples)(0)
    batches = [epoch[i] for i in range(len(epoch))]
    assert [int(b["triples"]) for b in batches] == [2, 2]
    assert all(b["input_ids"].shape[0] == len(b["target"]) + 4 for b in batches)

    class Fixed(torch.nn.Module):  # scores: graded pairs 0, positives +1, negatives -1
        def forward(self, input_ids, attention_mask, token_type_ids=None):
            n = input_ids.shape[0] - 4
            return torch.cat([torch.zeros(n), torch.ones(2), -torch.ones(2)])

    b = batches[0]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(len(b["target"])), b["target"])
    got = loss_fn("pointwise")(Fixed(), b)
    assert float(got) == pytest.approx(float(bce) + float(torch.nn.functional.softplus(torch.tensor(-2.0))))
    quarter = loss_fn("pointwise", negative_weight=0.25)(Fixed(), b)  # train.search.catalogue.negative_weight
    assert float(quarter) == pytest.approx(float(bce) + 0.25 * float(torch.nn.functional.softplus(torch.tensor(-2.0))))
    plain = make_batches(df, tok, s, seed=0, lo=1.0, hi=3.0)(0)[0]
    assert "triples" in plain and int(plain["triples"]) == 0


def test_final_order_blends_the_re_ranker_with_the_retrieved_order():
    from shelfops.train.hybrid import final_order

    s = np.array([0.1, 0.9, 0.5])  # the re-ranker prefers 1, 2, 0; the retriever 0, 1, 2
    assert final_order(s).tolist() == [1, 2, 0]
    assert final_order(s, 1.0).tolist() == [0, 1, 2]  # the retrieved order alone
    assert final_order(s, 0.5)[0] == 1  # 1 is first or second in both
    two = final_order(np.array([[0.1, 0.9, -np.inf], [3.0, 2.0, 1.0]]), 0.5)
    assert two[0, -1] == 2 and two[1].tolist() == [0, 1, 2]  # a missing candidate stays last


def test_an_earlier_whole_catalogue_embedding_file_is_still_read(tmp_path, monkeypatch):
    """Caches written before the store (one .npy per encoder, length and text list) are used
    as they are: a cross-validation's later folds do not embed the catalogue again."""
    import hashlib

    from shelfops.train.catalogue import cached_embeddings, embedding_cache

    monkeypatch.setenv("SHELFOPS_CACHE", str(tmp_path / "cache"))
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "model.safetensors").write_bytes(b"w1")
    st = (enc / "model.safetensors").stat()
    h = hashlib.sha256(b"64\n")
    h.update(f"model.safetensors:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(str(enc).encode())
    for t in ("a", "b"):
        h.update(t.encode() + b"\0")
    embedding_cache().mkdir(parents=True)
    stored = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    np.save(embedding_cache() / f"{h.hexdigest()[:32]}.npy", stored)

    def never(texts):
        raise AssertionError(f"embedded {texts} again")

    assert np.array_equal(cached_embeddings(str(enc), ["a", "b"], 64, never), stored)


def test_a_judged_pool_is_ordered_as_the_pipeline_serves_it():
    from shelfops.train.hybrid import pool_order

    ce = np.array([0.0, 3.0, 1.0, 2.0])  # the re-ranker: 1, 3, 2, 0
    lexical = np.array([2.0, 0.0, 1.0, 0.0])  # BM25 retrieves 0 then 2 (1 and 3 share no term)
    dense = np.array([0.1, 0.9, 0.2, 0.5])  # dense: 1, 3, 2, 0
    # blend 1 keeps the retrieved order; at weight 0 that is BM25's two products, and the two it
    # never retrieves follow as given, never lifted by the re-ranker
    assert pool_order(ce, lexical, dense, weight=0.0, depth=4, blend=1.0).tolist() == [0, 2, 1, 3]
    assert pool_order(ce, lexical, dense, weight=0.0, depth=4, blend=0.0).tolist() == [2, 0, 1, 3]
    assert pool_order(ce, lexical, dense, weight=1.0, depth=4, blend=1.0).tolist() == [1, 3, 2, 0]
    # blend 0 is the re-ranker's own order over the re-ranked head; the rest keep retrieval's
    assert pool_order(ce, lexical, dense, weight=1.0, depth=4, blend=0.0).tolist() == [1, 3, 2, 0]
    assert pool_order(ce, lexical, dense, weight=1.0, depth=2, blend=0.0).tolist() == [1, 3, 2, 0]
    assert pool_order(-ce, lexical, dense, weight=1.0, depth=2, blend=0.0).tolist() == [3, 1, 2, 0]
    # both lists fused: 2 is second for BM25 and third for dense, ahead of 3 (dense's second
    # alone) and 0 (BM25's first, dense's last) at equal weights; the re-ranker then blends in
    fused = fuse(np.array([[0, 2]]), np.array([[1, 3, 2, 0]]), 0.5, n=4)[0].tolist()
    assert pool_order(ce, lexical, dense, weight=0.5, depth=4, blend=1.0).tolist() == fused
    assert pool_order(ce, lexical, dense, weight=0.5, depth=4, blend=0.0).tolist() == [1, 3, 2, 0]
    half = pool_order(ce, lexical, dense, weight=0.5, depth=4, blend=0.5).tolist()
    assert sorted(half) == [0, 1, 2, 3] and half != fused
    with pytest.raises(ValueError, match="4 re-ranker, 3 lexical and 4 dense"):
        pool_order(ce, lexical[:3], dense, weight=0.5, depth=4)


def test_served_pool_scores_rank_each_query_within_its_own_pool():
    from shelfops.train.catalogue import served_pool_scores

    pools = pl.DataFrame({"query": ["a", "b", "a", "b", "a"], "item_id": ["x", "x", "y", "y", "z"]})
    ce = np.array([1.0, 5.0, 3.0, 4.0, 2.0])
    got = served_pool_scores(pools, ce, np.zeros(5), np.zeros(5), weight=0.5, depth=10, blend=0.0)
    # query a: y (3) first, z (2), x (1); query b: x (5), y (4); the score is minus the position
    assert got.tolist() == [-2.0, 0.0, 0.0, -1.0, -1.0]
    # the retrieved order counts with a blend: dense puts x first in a, and at blend 0.75 it stays
    dense = np.array([0.9, 0.0, 0.1, 0.0, 0.2])
    got = served_pool_scores(pools, ce, np.zeros(5), dense, weight=1.0, depth=10, blend=0.75)
    assert got[0] == 0.0 and got.tolist() != served_pool_scores(
        pools, ce, np.zeros(5), dense, weight=1.0, depth=10, blend=0.0).tolist()


def test_retrievers_score_judged_pairs_with_both_retrievers():
    from shelfops.errors import ModelError
    from shelfops.train.baselines import BM25Index
    from shelfops.train.catalogue import Retrievers

    texts = ["red drill", "blue hammer", "red paint"]
    vectors = np.eye(3, dtype=np.float32)
    cat = Retrievers(["i0", "i1", "i2"], texts, BM25Index(texts), None,
                     lambda qs: np.stack([vectors[1] if "hammer" in q else vectors[2] for q in qs]),
                     "test", vectors)
    pairs = pl.DataFrame({"query": ["red", "red", "hammer"], "item_id": ["i0", "i1", "i1"]})
    lexical, dense = cat.pair_scores(pairs)
    assert lexical[0] > 0 and lexical[1] == 0 and lexical[2] > 0
    assert dense.tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ModelError, match="not in the catalogue"):
        cat.pair_scores(pairs.with_columns(pl.lit("nope").alias("item_id")))
    with pytest.raises(ModelError, match="no catalogue embeddings"):
        Retrievers(cat.ids, texts, cat.bm25, None, cat.embed, "test").pair_scores(pairs)
