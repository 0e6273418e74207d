"""A version that fails to load never replaces the one serving, and /v1/rerank answers the
caller's own candidates in the model's order, over real loopback HTTP (uvicorn) with tiny
untrained search models written by shelfops' own stage writer (seconds, no training):

* a folder whose weights no longer match their manifest, or whose model cannot be built, is
  refused by /admin/reload with the reason, and searches keep answering with the old version;
* the registry watcher (``ServeSettings.watch``, driven here by a stand-in poll) refuses such
  a version once, keeps serving the old one, does not retry it, and still follows the next."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from chaos import wait_for
from conftest import make_stage_folder

from shelfops.config.schema import ServeConfig
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.server import start_in_thread

TOKEN = "failed-loads-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TITLES = ["red running shoes", "blue running shoes", "trail running shoes", "leather boots",
          "cotton t-shirt", "wool socks", "rain jacket", "garden hose", "kitchen faucet", "desk lamp",
          "yoga mat", "water bottle"]


def search_folder(path: Path, encoder: str, seed: int) -> Path:
    """An untrained cross-encoder on the tiny encoder, as a train-stage folder (manifest last)."""
    import torch

    from shelfops.artifacts import stage_output
    from shelfops.train import text_models

    torch.manual_seed(seed)
    spec = text_models.ModelSpec(task="search", encoder=encoder, max_length=32)
    model, _ = text_models.new_model(spec, encoder)
    with stage_output(path, "train", config={"seed": seed}) as w:
        text_models.save(model, spec, encoder, w.dir)
        w.manifest.extra = {"task": "search"}
    return path


@pytest.fixture(scope="module")
def folders(tiny_encoder, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("failed-loads")
    shop = root / "shop"
    shop.mkdir()
    pl.DataFrame({"item_id": [f"i{n:03d}" for n in range(len(TITLES))], "title": TITLES,
                  "brand": ["acme"] * len(TITLES),
                  "category": ["Shoes > Running" if "shoes" in t else "Home > Misc" for t in TITLES]}
                 ).write_parquet(shop / "items.parquet")
    v1 = search_folder(root / "v1", tiny_encoder, seed=1)
    v2 = search_folder(root / "v2", tiny_encoder, seed=2)
    # v2's weights changed after its manifest was written (one byte): still loadable by torch,
    # but not the model that was gated; only the checksum tells
    corrupt = root / "v2-corrupt"
    shutil.copytree(v2, corrupt)
    weights = bytearray((corrupt / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (corrupt / "model.safetensors").write_bytes(bytes(weights))
    # a whole folder (every checksum matches) that holds no model that can be built
    unloadable = make_stage_folder(root / "unloadable")
    return {"shop": shop, "v1": v1, "v2": v2, "corrupt": corrupt, "unloadable": unloadable}


def serve(folders: dict[str, Path], **settings):
    app = create_app(ServeSettings(models={"search": (folders["v1"], "1")}, data_dir=folders["shop"],
                                   admin_token=TOKEN, **settings, serve=ServeConfig(retriever="lexical")))
    return app, start_in_thread(app)


def assert_serving(c: httpx.Client, version: str, swaps: int) -> None:
    """Searches answer with ``version`` (header and body), and /readyz says so."""
    r = c.post("/v1/search", json={"query": "running shoes", "k": 3})
    assert r.status_code == 200, r.text
    assert r.headers["x-shelfops-version"] == version and r.json()["versions"]["search"] == version
    assert len(r.json()["items"]) == 3
    ready = c.get("/readyz").json()
    assert ready["models"]["search"]["version"] == version and ready["swaps"] == swaps, ready


def test_reload_refuses_a_corrupt_or_unloadable_folder_and_the_old_version_keeps_serving(folders):
    _, running = serve(folders)
    c = httpx.Client(base_url=running.url, timeout=60)
    try:
        assert_serving(c, "1", swaps=1)
        for folder, version, status, code, says in (
                ("corrupt", "2", 409, "integrity_mismatch", "model.safetensors: checksum mismatch"),
                ("unloadable", "3", 503, "unavailable", "the serving version is unchanged")):
            r = c.post("/admin/reload", json={"task": "search", "folder": str(folders[folder]), "version": version},
                       headers=AUTH)
            assert r.status_code == status, r.text
            assert r.json()["code"] == code
            assert says in r.json()["message"]
            assert_serving(c, "1", swaps=1)

        # the same route takes a sound folder: what was refused was the folders, not the reload
        r = c.post("/admin/reload", json={"task": "search", "folder": str(folders["v2"]), "version": "2"},
                   headers=AUTH)
        assert r.status_code == 200 and r.json()["version"] == "2", r.text
        assert_serving(c, "2", swaps=2)
    finally:
        running.stop()


def test_the_watcher_refuses_a_version_that_fails_verification_and_keeps_serving(folders):
    wanted = {"search": (folders["corrupt"], "2")}
    polls: list[float] = []

    def watch() -> dict:  # what the registry says should serve now (serve.watch.follow_registry's place)
        polls.append(time.monotonic())
        return dict(wanted)

    app, running = serve(folders, watch=watch, watch_seconds=0.05)
    state = app.state.shelfops
    c = httpx.Client(base_url=running.url, timeout=60)
    try:
        wait_for(lambda: len(polls) >= 5)  # the refusal came at the first poll; four more asked again
        assert state.refused == {("search", "2")}
        assert_serving(c, "1", swaps=1)
        # refused once, not retried at every poll
        assert "shelfops_watch_errors_total 1.0" in c.get("/metrics").text
        assert c.get("/readyz").json()["dependencies"]["registry"] == {"ok": True}  # the registry answered

        # the watcher still follows: the next version the registry names, sound, is swapped in
        wanted["search"] = (folders["v2"], "3")
        wait_for(lambda: c.post("/v1/search", json={"query": "shoes", "k": 2}).json()["versions"]["search"] == "3")
        assert_serving(c, "3", swaps=2)
        assert state.refused == {("search", "2")}
    finally:
        running.stop()


def test_rerank_answers_the_callers_candidates_in_the_models_order_with_its_version(folders):
    from shelfops.optimize.shipped import load_shipped
    from shelfops.train.pairs import item_texts

    _, running = serve(folders)
    c = httpx.Client(base_url=running.url, timeout=60)
    query, ids = "red running shoes", ["i009", "i000", "i004", "i002", "i007"]
    try:
        r = c.post("/v1/rerank", json={"query": query, "items": ids})
        assert r.status_code == 200, r.text
        assert r.headers["x-shelfops-version"] == "1" and r.json()["versions"] == {"search": "1"}
        got = [(it["item_id"], it["score"]) for it in r.json()["items"]]
        assert sorted(i for i, _ in got) == sorted(ids)  # the caller's candidates, each once, no others
        scores = [s for _, s in got]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(ids)
        # each score is the served model's own for (query, product text)
        texts = dict(item_texts(pl.read_parquet(folders["shop"] / "items.parquet")).select("item_id", "text")
                     .iter_rows())
        want = np.asarray(load_shipped(folders["v1"]).run([query] * len(ids), [texts[i] for i in ids])).reshape(-1)
        assert dict(got) == pytest.approx(dict(zip(ids, want.tolist())), abs=1e-4)

        r = c.post("/v1/rerank", json={"query": query, "items": ["i000", "no-such-item"]})
        assert r.status_code == 400 and "no-such-item" in r.json()["message"], r.text
    finally:
        running.stop()
