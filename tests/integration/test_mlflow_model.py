"""Each registered version is an MLflow model: what MLflow's own tools load and serve answers
what shelfops' loader answers, for every task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shelfops.optimize.shipped import load_shipped
from shelfops.registry.registry import Registry
from shelfops.serve.server import free_port
from shelfops.train.recommend import Recommender


@pytest.fixture(scope="module")
def registered(models, tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow-model")
    reg = Registry(home=home)
    for task in ("search", "retrieval", "classify", "recommend"):
        v = reg.register(models / task, f"shop-{task}")
        reg.promote(f"shop-{task}", v.version, "production", force=True, reason="test")
    return reg


@pytest.fixture
def mlflow_uris(registered):
    """MLflow's process-wide tracking and registry URIs on the test's store, as a user sets
    them, and unset afterwards: set_tracking_uri also exports MLFLOW_TRACKING_URI, which every
    later Registry (and the processes it starts) would otherwise follow."""
    import mlflow

    mlflow.set_tracking_uri(registered.tracking_uri)
    mlflow.set_registry_uri(registered.tracking_uri)
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    assert "MLFLOW_TRACKING_URI" not in os.environ


def _pyfunc(reg: Registry, name: str):
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{name}@production")


def test_every_task_loads_with_mlflow_pyfunc_and_answers_like_shelfops(registered, models, mlflow_uris):
    m = _pyfunc(registered, "shop-search")
    meta = m.metadata
    assert [c["name"] for c in meta.signature.inputs.to_dict()] == ["query", "title"]
    assert meta.saved_input_example_info is not None
    import mlflow

    stored = Path(mlflow.artifacts.download_artifacts("models:/shop-search@production"))
    assert "python_function" in (stored / "MLmodel").read_text()
    assert not list(stored.rglob("*.pkl")), "the model is logged from code: nothing is pickled"
    pairs = pd.DataFrame({"query": ["red shirt", "garden hose"], "title": ["red cotton shirt", "blue lamp"]})
    got = m.predict(pairs)
    want = load_shipped(models / "search").run(list(pairs["query"]), list(pairs["title"]))
    np.testing.assert_allclose(got["score"].to_numpy(), want.reshape(-1), rtol=1e-5, atol=1e-5)

    emb = _pyfunc(registered, "shop-retrieval").predict(pd.DataFrame({"text": ["red shirt"]}))
    want = load_shipped(models / "retrieval").run(["red shirt"])
    np.testing.assert_allclose(np.asarray(emb["embedding"][0]), want[0], rtol=1e-5, atol=1e-5)

    cls = _pyfunc(registered, "shop-classify").predict(pd.DataFrame({"text": ["red shirt", "garden hose"]}))
    shipped = load_shipped(models / "classify")
    logits = shipped.run(["red shirt", "garden hose"])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert list(cls["label"]) == [shipped.spec.labels[i] for i in p.argmax(1)]
    np.testing.assert_allclose(cls["score"].to_numpy(), p.max(1), rtol=1e-5, atol=1e-5)

    rec = Recommender.load(models / "recommend")
    history = rec.items[:3]
    got = _pyfunc(registered, "shop-recommend").predict(pd.DataFrame({"history": [history]}))
    assert list(got["items"][0]) == [i for i, _ in rec.recommend(history, k=10)]


@pytest.mark.slow  # starts MLflow's own scoring server (~15 s)
def test_mlflow_models_serve_answers_for_the_production_alias(registered, tmp_path):
    port = free_port()
    # as in an activated venv: MLflow starts its scoring server with the uvicorn on PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", "models:/shop-search@production",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT)
    try:
        body = json.dumps({"dataframe_split": {"columns": ["query", "title"],
                                               "data": [["red shirt", "red cotton shirt"]]}}).encode()
        deadline = time.time() + 180
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError((tmp_path / "serve.log").read_text()[-3000:]) from None
                time.sleep(1)
        local = registered.load("shop-search", "production")
        want = float(load_shipped(local).run(["red shirt"], ["red cotton shirt"]).reshape(-1)[0])
        assert answer["predictions"][0]["score"] == pytest.approx(want, abs=1e-5)
    finally:
        proc.terminate()
        proc.wait(30)
