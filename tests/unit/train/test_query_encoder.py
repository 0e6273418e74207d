"""One query through an ONNX export of the untuned encoder, checked against PyTorch."""

import numpy as np


def _encoder(tiny_encoder, tmp_path, **kw):
    from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer
    from shelfops.train.query_encoder import QueryEncoder

    enc, tok = TextEncoder(load_backbone(tiny_encoder), "mean"), load_tokenizer(tiny_encoder)
    return QueryEncoder(enc, tok, tiny_encoder, max_length=16, store=tmp_path / "onnx", **kw), enc, tok


def test_one_query_goes_through_the_checked_export_and_matches_pytorch(tiny_encoder, tmp_path, monkeypatch):
    import shelfops.train.query_encoder as qe
    from shelfops.train.search import embed_texts

    q, enc, tok = _encoder(tiny_encoder, tmp_path)
    texts = ["a red running shoe for trail", "lamp"]
    want = embed_texts(enc, tok, texts, max_length=16)
    one = np.concatenate([q([t]) for t in texts])
    assert q.engine == "onnxruntime" and (tmp_path / "onnx" / "encoder.onnx").exists()
    assert np.abs(one - want).max() < 1e-5
    assert np.array_equal(q(texts), want)  # a batch stays on PyTorch

    def no_export(*_a, **_k):
        raise AssertionError("exported again")

    monkeypatch.setattr(qe, "_export", no_export)
    again, _, _ = _encoder(tiny_encoder, tmp_path)  # another process, the same encoder: the export is reused
    assert np.abs(again([texts[0]]) - want[:1]).max() < 1e-5 and again.engine == "onnxruntime"


def test_an_export_that_disagrees_or_cannot_load_leaves_queries_on_pytorch(tiny_encoder, tmp_path, monkeypatch):
    import shelfops.train.query_encoder as qe
    from shelfops.train.search import embed_texts

    monkeypatch.setattr(qe, "TOLERANCE", -1.0)  # no export is close enough
    q, enc, tok = _encoder(tiny_encoder, tmp_path)
    got = q(["lamp"])
    assert q.engine == "torch" and "differs from PyTorch" in q.why_torch
    assert not (tmp_path / "onnx" / "encoder.onnx").exists()  # not kept for the next start
    assert np.array_equal(got, embed_texts(enc, tok, ["lamp"], max_length=16))

    monkeypatch.setattr(qe, "TOLERANCE", 1e-4)
    (tmp_path / "onnx").mkdir(exist_ok=True)
    (tmp_path / "onnx" / "encoder.onnx").write_bytes(b"not a model")  # damaged: exported again
    mended, _, _ = _encoder(tiny_encoder, tmp_path)
    assert np.abs(mended(["lamp"]) - got).max() < 1e-5 and mended.engine == "onnxruntime"


def test_an_export_on_disk_from_other_weights_is_made_again(tiny_encoder, tmp_path):
    """An export that no longer matches the encoder (another torch made it, say) fails its check
    and is replaced by a fresh one, not trusted and not left to fail every start."""
    import torch
    from transformers import BertConfig, BertModel

    import shelfops.train.query_encoder as qe
    from shelfops.train.encoder import TextEncoder, load_tokenizer

    torch.manual_seed(1)
    other = TextEncoder(BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64,
                                             max_position_embeddings=128)), "mean")
    qe._export(other, load_tokenizer(tiny_encoder), tmp_path / "onnx" / "encoder.onnx", 16)
    q, enc, tok = _encoder(tiny_encoder, tmp_path)
    from shelfops.train.search import embed_texts

    assert np.abs(q(["lamp"]) - embed_texts(enc, tok, ["lamp"], max_length=16)).max() < 1e-5
    assert q.engine == "onnxruntime"
    assert not list((tmp_path / "onnx").glob(".*.tmp"))  # no temporary file left behind


def test_without_a_store_queries_stay_on_pytorch(tiny_encoder):
    from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer
    from shelfops.train.query_encoder import QueryEncoder

    q = QueryEncoder(TextEncoder(load_backbone(tiny_encoder), "mean"), load_tokenizer(tiny_encoder),
                     tiny_encoder, max_length=16, store=None)
    assert q(["lamp"]).shape[0] == 1 and q.engine == "torch"


def test_queries_from_many_threads_at_once_all_answer_as_one_at_a_time(tiny_encoder, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    q, _, _ = _encoder(tiny_encoder, tmp_path)
    texts = [f"query number {i} " + "word " * (i % 7) for i in range(40)]
    want = {t: q([t]) for t in texts}  # one at a time (the first call exports)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: q([t]), texts * 5))
    assert q.engine == "onnxruntime"
    assert all(np.array_equal(g, want[t]) for g, t in zip(got, texts * 5))
