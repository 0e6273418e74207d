from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from shelfops.config.schema import RecommendSchedule, ScheduleConfig
from shelfops.errors import DataError
from shelfops.train.loop import schedule_from
from shelfops.train.recommend import (
    Recommender,
    evaluate_folder,
    item_text_vectors,
    load_sequences,
    make_batches,
    save,
    train_recommend,
    training_windows,
)
from shelfops.train.sasrec import SASRec, full_softmax_ce, init_from_vectors

torch.set_num_threads(1)
N_ITEMS = 40


def write_dataset(folder, n_users=160, seed=0, untitled=("i7", "i8")):
    """Users walk i{s}, i{s+1}, ... (4-9 steps); the last is test, the one before valid."""
    rng = np.random.default_rng(seed)
    train, valid, test = [], [], []
    for u in range(n_users):
        n = int(rng.integers(4, 10))
        start = int(rng.integers(1, N_ITEMS - n + 1))
        seq = [f"i{k}" for k in range(start, start + n)]
        user = f"u{u:04d}"
        train += [(user, it, 1000 * u + p, p) for p, it in enumerate(seq[:-2])]
        valid.append((user, seq[-2], 1000 * u + n - 2, seq[:-2]))
        test.append((user, seq[-1], 1000 * u + n - 1, seq[:-1]))
    ids = [f"i{k}" for k in range(1, N_ITEMS + 1)]
    items = pl.DataFrame({"item_id": ids,
                          "title": [None if i in untitled else f"product number {i}" for i in ids]})
    (folder / "splits").mkdir(parents=True)
    items.write_parquet(folder / "items.parquet")
    pl.DataFrame(train, schema=["user_id", "item_id", "seq", "position"], orient="row").write_parquet(
        folder / "splits" / "sequences_train.parquet")
    for name, rows in (("valid", valid), ("test", test)):
        pl.DataFrame(rows, schema=["user_id", "item_id", "seq", "history"], orient="row").write_parquet(
            folder / "splits" / f"sequences_{name}.parquet")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("rec") / "data")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    schedule = schedule_from(RecommendSchedule(epochs=25, lr=5e-3, patience=4, seed=1, bf16="off"))
    return train_recommend(dataset, hidden=32, layers=1, heads=2, dropout=0.1, max_len=8,
                           batch_size=32, loss="ce", negatives=8, init_from_text=False,
                           encoder_path=None, eval_every_epochs=1, schedule=schedule,
                           workdir=tmp_path_factory.mktemp("work"), progress=False, bootstrap=100)


def test_learns_the_pattern_well_above_popularity(trained):
    m = trained.metrics
    assert m["model"]["ndcg@10"]["mean"] > 0.8
    assert m["model"]["hr@10"]["mean"] > 0.9
    assert m["baselines"]["poprec_train"]["ndcg@10"]["mean"] < 0.3
    assert m["comparisons"]["a_better"] and not m["comparisons"]["overlap"]
    assert set(m["baselines"]) == {"poprec_train", "poprec_all"}
    assert m["sampled"]["model"]["hr@10"]["mean"] > 0.9
    assert trained.history and trained.fit["best_metric"] == max(h["ndcg@10"] for h in trained.history)
    assert trained.counts["items"] == N_ITEMS and trained.timings["fit_s"] > 0


@pytest.mark.parametrize("loss", ["bce", "sampled_ce"])
def test_sampled_losses_learn(dataset, tmp_path, loss):
    schedule = schedule_from(ScheduleConfig(epochs=12, lr=1e-2, weight_decay=0.0, warmup_ratio=0.0,
                                            decay="constant", patience=20, seed=0, bf16="off"))
    r = train_recommend(dataset, hidden=32, layers=1, heads=1, dropout=0.0, max_len=8,
                        batch_size=32, loss=loss, negatives=8, init_from_text=False,
                        encoder_path=None, eval_every_epochs=4, schedule=schedule, workdir=tmp_path,
                        progress=False, bootstrap=100)
    pop = r.metrics["baselines"]["poprec_train"]["ndcg@10"]["mean"]
    assert r.metrics["model"]["ndcg@10"]["mean"] > 2 * pop


def _model(**kw):
    torch.manual_seed(0)
    return SASRec(30, hidden=16, layers=2, heads=2, dropout=0.3, max_len=10, **kw).eval()


def test_causal_later_items_do_not_change_earlier_outputs():
    m = _model()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 5:] = torch.tensor([20, 21, 22])
    with torch.no_grad():
        ha, hb = m(a), m(b)
    torch.testing.assert_close(ha[:, :5], hb[:, :5])
    assert not torch.allclose(ha[:, 5:], hb[:, 5:])


def test_padding_does_not_change_outputs():
    m = _model()
    seq = [3, 9, 4, 12]
    with torch.no_grad():
        short = m(torch.tensor([seq]))
        padded = m(torch.tensor([[0] * 6 + seq]))
        batch = m(torch.tensor([[0, 0, 0] + seq[:1] + [5, 6, 7], [0] * 3 + seq]))
    torch.testing.assert_close(short[0], padded[0, 6:])
    torch.testing.assert_close(short[0], batch[1, 3:])
    assert torch.isfinite(padded).all()
    m.train()
    loss = m(torch.tensor([[0, 0] + seq]), torch.tensor([[0, 0] + seq[1:] + [5]]))
    assert torch.isfinite(loss)


def test_chunked_softmax_ce_matches_cross_entropy():
    torch.manual_seed(0)
    h = torch.randn(37, 8, requires_grad=True)
    e = torch.randn(50, 8, requires_grad=True)
    t = torch.randint(0, 50, (37,))
    ref = torch.nn.functional.cross_entropy(h @ e.T, t)
    ref.backward()
    gh, ge = h.grad.clone(), e.grad.clone()
    h.grad = e.grad = None
    got = full_softmax_ce(h, e, t, chunk=10)
    got.backward()
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(h.grad, gh)
    torch.testing.assert_close(e.grad, ge)


def test_training_windows_and_batches():
    seqs = [np.arange(1, 13), np.array([5]), np.array([2, 3])]
    inp, tgt = training_windows(seqs, 5)
    # 12 items -> 11 next-item pairs -> windows of 5, 5, 1; [5] gives none; [2, 3] gives one
    assert inp.shape == (4, 5)
    assert inp[0].tolist() == [7, 8, 9, 10, 11] and tgt[0].tolist() == [8, 9, 10, 11, 12]
    assert inp[2].tolist() == [0, 0, 0, 0, 1] and tgt[2].tolist() == [0, 0, 0, 0, 2]
    assert inp[3].tolist() == [0, 0, 0, 0, 2] and tgt[3].tolist() == [0, 0, 0, 0, 3]
    f = make_batches(inp, tgt, batch_size=2, loss="bce", negatives=3, n_items=13, seed=4)
    b1, b2 = f(1), make_batches(inp, tgt, batch_size=2, loss="bce", negatives=3, n_items=13, seed=4)(1)
    assert len(b1) == 2
    for x, y in zip(b1, b2):
        assert torch.equal(x["seq"], y["seq"]) and torch.equal(x["neg"], y["neg"])
        assert not (x["neg"] == x["tgt"]).any() and x["neg"].min() >= 1
    with pytest.raises(DataError, match="two or more items"):
        training_windows([np.array([1])], 5)


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path):
    save(trained, tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.json", "model.safetensors",
                                                            "items.parquet"}
    loaded = Recommender.load(tmp_path / "m")
    live = Recommender.from_result(trained)
    hist = [["i3", "i4", "i5"], ["i30"], [], ["i1", "i2", "i3", "i4", "i5", "i6", "i9", "i10", "i11"]]
    torch.testing.assert_close(loaded.scores(hist), live.scores(hist), rtol=0, atol=0)
    assert loaded.recommend_batch(hist, k=5) == live.recommend_batch(hist, k=5)
    assert loaded.items == trained.items


def test_live_session_excludes_seen_and_ignores_unknown(trained):
    rec = Recommender.from_result(trained)
    got = rec.recommend(["i10", "nope", "i11", "i12"], k=5)
    assert got[0][0] == "i13"
    assert len(got) == 5 and not {"i10", "i11", "i12"} & {i for i, _ in got}
    assert got == rec.recommend(["i10", "i11", "i12"], k=5)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    seen_ok = rec.recommend(["i10", "i11", "i12"], k=N_ITEMS, exclude_seen=False)
    assert len(seen_ok) == N_ITEMS and {"i10", "i11"} <= {i for i, _ in seen_ok}
    cold = rec.recommend(["unknown-1"], k=3)  # nothing known: training popularity
    pop = trained.popularity
    assert [s for _, s in cold] == sorted(pop[1:].tolist(), reverse=True)[:3]
    assert all(pop[trained.items.index(i) + 1] == s for i, s in cold)
    assert rec.recommend_batch([], k=3) == []


def test_evaluate_folder_matches_the_training_run(trained, dataset, tmp_path):
    save(trained, tmp_path / "m")
    summary = evaluate_folder(tmp_path / "m", dataset, bootstrap=100)
    assert summary["ndcg@10"]["mean"] == pytest.approx(trained.metrics["model"]["ndcg@10"]["mean"])
    assert summary["unknown_test_targets"] == 0


def test_load_sequences_format(dataset):
    s = load_sequences(dataset)
    assert s.n_items == N_ITEMS + 1 and s.items[0] == "i1"
    assert s.titles[6] is None and s.titles[0] == "product number i1"
    u = 0
    hist = s.test_history()[u]
    assert hist[-1] == s.valid_target[u] and len(hist) == len(s.seen[u]) + 1
    assert (np.diff(hist) == 1).all() and s.test_target[u] == hist[-1] + 1
    assert len(s.all_interactions()) == len(s.train_interactions) + 2 * len(s.users)
    with pytest.raises(DataError, match="items.parquet not found"):
        load_sequences(dataset.parent / "missing")


def test_init_from_vectors_changes_only_the_given_rows():
    m = _model()
    before = m.item_emb.weight.detach().clone()
    rows = torch.tensor([1, 2, 5, 6, 9, 20])
    vecs = torch.randn(len(rows), 48)
    q = init_from_vectors(m, rows, vecs)
    after = m.item_emb.weight.detach()
    assert q == 5  # min(hidden 16, dims 48, rows - 1)
    changed = (after != before).any(1)
    assert set(torch.nonzero(changed)[:, 0].tolist()) == set(rows.tolist())
    assert after[0].abs().sum() == 0
    assert after[rows, :q].std().item() == pytest.approx(0.02, rel=1e-3)
    # similar texts give similar item vectors
    v2 = torch.cat([vecs[:1], vecs[:1] + 0.01 * torch.randn(1, 48), torch.randn(4, 48)])
    init_from_vectors(m, rows, v2)
    e = torch.nn.functional.normalize(m.item_emb.weight[rows, :q], dim=1)
    assert (e[0] @ e[1]).item() > 0.99


def _tiny_encoder(folder):
    """A 1-layer BERT with the MiniLM tokenizer and random weights (fast to run)."""
    import shutil

    from transformers import BertConfig, BertModel

    from shelfops.train.encoder import resolve_encoder

    src = resolve_encoder(None)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=24, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy2(f"{src}/{f}", folder / f)
    return str(folder)


def test_init_from_text_with_an_encoder_and_cache(dataset, tmp_path):
    enc = _tiny_encoder(tmp_path / "enc")
    s = load_sequences(dataset)
    rows, vecs = item_text_vectors(s.titles, enc, tmp_path / "cache", progress=False)
    assert len(rows) == N_ITEMS - 2 and 7 not in rows and 8 not in rows and vecs.shape == (38, 24)
    cached = list((tmp_path / "cache").glob("item-text-*.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    rows2, vecs2 = item_text_vectors(s.titles, enc, tmp_path / "cache", progress=False)
    assert cached[0].stat().st_mtime_ns == stamp and np.array_equal(vecs, vecs2)
    torch.manual_seed(3)
    m = SASRec(s.n_items, hidden=16, layers=1, heads=1)
    before = m.item_emb.weight.detach().clone()
    init_from_vectors(m, torch.from_numpy(rows), torch.from_numpy(vecs))
    changed = set(torch.nonzero((m.item_emb.weight != before).any(1))[:, 0].tolist())
    assert changed == set(rows.tolist())  # untitled items (7, 8) and padding keep their init
