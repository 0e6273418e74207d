from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from shelfops.config.schema import ScheduleConfig, SearchTrainConfig
from shelfops.errors import ModelError
from shelfops.train import text_models
from shelfops.train.index import build_index, choose_kind, load_index, save_index, search
from shelfops.train.loop import fit, schedule_from
from shelfops.train.search import (
    loss_fn,
    make_batches,
    score_pairs,
    search_settings_from,
    start_from_similarity,
)
from shelfops.train.text_batches import encode_pairs

torch.set_num_threads(1)


def _pairs() -> pl.DataFrame:
    rows = []
    for q, good, bad in [("red kettle", "Acme Red Kettle", "Blue Garden Hose"),
                         ("garden hose", "Blue Garden Hose", "Acme Red Kettle"),
                         ("yoga mat", "Cork Yoga Mat", "Steel Saucepan"),
                         ("saucepan", "Steel Saucepan", "Cork Yoga Mat")]:
        rows += [(q, good, 3.0), (q, bad, 0.0)]
    return pl.DataFrame(rows, schema=["query", "text", "grade"], orient="row").with_columns(
        pl.col("text").alias("item_id"))


@pytest.mark.parametrize("head", ["linear", "similarity"])
@pytest.mark.parametrize("kind", ["pointwise", "pairwise", "listwise"])
def test_cross_encoder_learns_toy_relevance(tiny_encoder, tmp_path, kind, head):
    spec = text_models.ModelSpec(task="search", encoder=tiny_encoder, max_length=16,
                                 extra={"loss": kind, "grade_min": 0.0, "grade_max": 3.0,
                                        "head": head})
    model, tok = text_models.new_model(spec, tiny_encoder)
    df = _pairs()
    batches = make_batches(df, tok, search_settings_from(SearchTrainConfig(loss=kind, batch_size=8)), 0, 0.0, 3.0)
    fit(model, batches=batches, loss_fn=loss_fn(kind), schedule=schedule_from(ScheduleConfig(
        epochs=250, lr=1e-3, warmup_ratio=0.0, decay="constant", bf16="off", checkpoint_every=None)),
        workdir=tmp_path, progress=False)
    s = score_pairs(model, tok, df["query"].to_list(), df["text"].to_list(), max_length=16)
    good, bad = s[0::2], s[1::2]
    assert (good > bad).all(), (good, bad)


@pytest.mark.parametrize("head", ["linear", "similarity"])
def test_saved_model_scores_identically(tiny_encoder, tmp_path, head):
    spec = text_models.ModelSpec(task="search", encoder=tiny_encoder, max_length=16,
                                 extra={"head": head})
    model, tok = text_models.new_model(spec, tiny_encoder)
    text_models.save(model, spec, tiny_encoder, tmp_path / "m")
    loaded, tok2, spec2 = text_models.load(tmp_path / "m")
    df = _pairs()
    a = score_pairs(model, tok, df["query"].to_list(), df["text"].to_list(), max_length=16)
    b = score_pairs(loaded, tok2, df["query"].to_list(), df["text"].to_list(), max_length=16)
    assert np.allclose(a, b, atol=1e-6) and spec2 == spec
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pt"))


def test_similarity_head_starts_as_the_segment_cosine(tiny_encoder):
    spec = text_models.ModelSpec(task="search", encoder=tiny_encoder, max_length=16,
                                 extra={"head": "similarity"})
    model, tok = text_models.new_model(spec, tiny_encoder)
    model.eval()
    df = _pairs()
    enc = encode_pairs(tok, df["query"].to_list(), df["text"].to_list(), 16)
    with torch.no_grad():
        hidden = model.encoder.hidden(**enc)
        cos = model.segment_cosine(hidden, enc["attention_mask"], enc["token_type_ids"])
        got = model(**enc)
    # the linear read starts at zero: score = scale * cosine + bias
    bias = float(model.head[1].bias.detach())
    assert torch.allclose(got, model.similarity * cos + bias, atol=1e-6)
    # the cosine is between the two segments: swapping a pair's product changes it
    swapped = encode_pairs(tok, ["red kettle"], ["Blue Garden Hose"], 16)
    with torch.no_grad():
        other = model.segment_cosine(model.encoder.hidden(**swapped), swapped["attention_mask"],
                                     swapped["token_type_ids"])
    assert abs(float(other[0]) - float(cos[0])) > 1e-4
    # an old model folder without a head setting keeps the linear head
    old = text_models.build(text_models.ModelSpec(task="search", encoder=tiny_encoder),
                            model.encoder.backbone)
    assert old.similarity is None
    with pytest.raises(ModelError, match="head"):
        text_models.build(text_models.ModelSpec(task="search", encoder=tiny_encoder,
                                                extra={"head": "bilinear"}), model.encoder.backbone)


def test_start_from_similarity_fits_scale_and_bias_to_the_grades(tiny_encoder):
    spec = text_models.ModelSpec(task="search", encoder=tiny_encoder, max_length=16,
                                 extra={"head": "similarity"})
    model, tok = text_models.new_model(spec, tiny_encoder)
    df = _pairs()
    enc = encode_pairs(tok, df["query"].to_list(), df["text"].to_list(), 16)
    with torch.no_grad():
        cos = model.segment_cosine(model.encoder.hidden(**enc), enc["attention_mask"],
                                   enc["token_type_ids"])
    # grades that rise with the cosine: the fitted scale must be positive, and the fitted
    # start must fit them better than the untouched (scale 1, bias 0) start
    target = (cos - cos.min()) / (cos.max() - cos.min())
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    before = float(bce(cos, target))
    start = start_from_similarity(model, {**enc, "target": target})
    assert start["scale"] > 0
    model.eval()
    with torch.no_grad():
        after = float(bce(model(**enc), target))
    assert after < before
    # reversed grades give a negative scale: the fit follows the data, not a prior
    start_from_similarity(model, {**enc, "target": 1 - target})
    assert float(model.similarity.detach()) < 0


def test_similarity_head_needs_a_second_segment(tiny_encoder):
    spec = text_models.ModelSpec(task="search", encoder=tiny_encoder, extra={"head": "similarity"})
    model, tok = text_models.new_model(spec, tiny_encoder)
    enc = encode_pairs(tok, ["red kettle"], ["Acme Red Kettle"], 16)
    with pytest.raises(ModelError, match="token_type_ids"):
        model(enc["input_ids"], enc["attention_mask"], None)


def test_score_pairs_is_invariant_to_batch_size_and_padding(tiny_encoder):
    spec = text_models.ModelSpec(task="search", encoder=tiny_encoder, max_length=32)
    model, tok = text_models.new_model(spec, tiny_encoder)
    df = _pairs()
    a = score_pairs(model, tok, df["query"].to_list(), df["text"].to_list(), max_length=32, batch_size=1)
    b = score_pairs(model, tok, df["query"].to_list(), df["text"].to_list(), max_length=32, batch_size=8)
    assert np.allclose(a, b, atol=1e-5)


def test_index_kinds_and_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert choose_kind(1000) == "flat" and choose_kind(100_000) == "ivf" and choose_kind(5_000_000) == "ivf"
    flat, info = build_index(x)
    _, ids = search(flat, x[:5], 3)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    hnsw, hinfo = build_index(x, kind="hnsw")
    _, hids = search(hnsw, x[:50], 10)
    exact = np.argsort(-(x[:50] @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hids, exact)])
    assert recall > 0.9
    save_index(hnsw, hinfo, tmp_path / "ix")
    again, info2 = load_index(tmp_path / "ix")
    assert info2 == hinfo and np.array_equal(search(again, x[:5], 3)[1], search(hnsw, x[:5], 3)[1])


def test_freeze_lower_stops_gradients_below_the_cut(tiny_encoder):
    from shelfops.errors import ModelError
    from shelfops.train.text_models import ModelSpec, freeze_lower, new_model

    model, tok = new_model(ModelSpec(task="search", encoder=tiny_encoder), tiny_encoder)
    freeze_lower(model, 1)
    enc = tok(["drill"], ["cordless drill"], return_tensors="pt")
    model(**enc).sum().backward()
    bb = model.encoder.backbone
    assert all(p.grad is None for p in bb.embeddings.parameters())
    assert all(p.grad is None for p in bb.encoder.layer[0].parameters())
    assert all(p.grad is not None for p in bb.encoder.layer[1].parameters())
    assert model.head[1].weight.grad is not None
    with pytest.raises(ModelError, match="only 2 layers"):
        freeze_lower(model, 3)
