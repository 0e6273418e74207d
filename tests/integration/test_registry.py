"""The registry on real MLflow (SQLite store here; a PostgreSQL-backed server in the slow
tests) and the operational store's audited, compare-and-set alias moves."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest
from conftest import make_stage_folder
from typer.testing import CliRunner

from shelfops.cli.main import app
from shelfops.errors import IntegrityError, PromotionRefused
from shelfops.registry.ops_store import OpsStore
from shelfops.registry.registry import Registry, stage_folder


def _gate(folder: Path, passed: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gate.json").write_text(json.dumps({"passed": passed, "failed": [] if passed else ["parity"]}))
    (folder / "gate.html").write_text("<html>gate</html>")
    return folder


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(home=tmp_path / "home")


pytestmark = pytest.mark.slow  # each test creates a fresh MLflow database (~5-10 s)


def test_register_records_lineage_and_load_verifies(reg, tmp_path):
    v1 = reg.register(make_stage_folder(tmp_path / "m1"), "shop-search")
    v2 = reg.register(make_stage_folder(tmp_path / "m2", payload=b"x" * 64), "shop-search")
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.stage == "train" and v1.task == "search" and v1.gate == "none"
    assert v1.tags["shelfops.dataset"] == "/data/shop" and len(v1.tags["shelfops.manifest_sha256"]) == 64
    run = reg.client.get_run(v1.run_id)
    assert run.data.metrics["model.ndcg_10.mean"] == pytest.approx(0.9)
    local = reg.load("shop-search", "1", tmp_path / "dl")
    assert (local / "model.safetensors").read_bytes() == b"w" * 64

    # tamper with the stored artifact: the next load refuses it
    stored = stage_folder(Path(v2.source.replace("file://", ""))) / "model.safetensors"
    stored.write_bytes(b"evil" * 16)
    with pytest.raises(IntegrityError, match="model.safetensors: checksum mismatch"):
        reg.load("shop-search", "2", tmp_path / "dl2")


def test_promotion_rules_rollback_and_history(reg, tmp_path):
    for i in (1, 2):
        reg.register(make_stage_folder(tmp_path / f"m{i}", payload=bytes([i]) * 32), "shop")
    with pytest.raises(PromotionRefused, match="no passing gate"):
        reg.promote("shop", "1", "production", reason="ship it")
    with pytest.raises(PromotionRefused, match="written reason"):
        reg.promote("shop", "1", "production", reason=" ", force=True)
    reg.promote("shop", "1", "production", reason="bootstrap: first model", force=True)
    reg.attach_gate("shop", "2", _gate(tmp_path / "g2", passed=True))
    reg.promote("shop", "2", "canary", reason="gate passed")
    reg.promote("shop", "2", "production", reason="canary healthy", evidence={"ctr_ratio": 1.04})
    assert reg.aliases("shop") == {"production": "2", "previous": "1", "canary": "2"}
    assert str(reg.client.get_model_version_by_alias("shop", "previous").version) == "1"
    reg.rollback("shop", reason="p99 regression")
    assert reg.aliases("shop")["production"] == "1" and reg.aliases("shop")["previous"] == "2"
    assert str(reg.client.get_model_version_by_alias("shop", "production").version) == "1"

    h = reg.history("shop")
    assert [(m.alias, m.from_version, m.to_version, m.action) for m in h] == [
        ("production", None, "1", "force"), ("canary", None, "2", "promote"),
        ("production", "1", "2", "promote"), ("previous", None, "1", "promote"),
        ("production", "2", "1", "rollback"), ("previous", "1", "2", "rollback")]
    assert h[2].evidence["gate"] == "passed" and h[2].evidence["ctr_ratio"] == 1.04
    assert h[4].reason == "p99 regression" and h[4].evidence["rolled_back"] == "2"

    reg.attach_gate("shop", "1", _gate(tmp_path / "g1", passed=False))
    with pytest.raises(PromotionRefused, match="no passing gate report"):
        reg.promote("shop", "1", "canary", reason="try")
    assert reg.aliases("shop")["canary"] == "2"  # a refused move changes nothing


def test_registry_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SHELFOPS_HOME", str(tmp_path / "home"))
    r = CliRunner()
    folder = make_stage_folder(tmp_path / "m")
    res = r.invoke(app, ["registry", "register", str(folder), "--name", "cli-model"])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["registry", "promote", "cli-model", "1", "production"])
    assert res.exit_code == 5 and "no passing gate" in res.output  # 5: promotion refused
    res = r.invoke(app, ["registry", "promote", "cli-model", "1", "production", "--force", "-r", "first"])
    assert res.exit_code == 0, res.output
    for cmd in (["ls"], ["ls", "cli-model"], ["show", "cli-model", "production"], ["history"]):
        res = r.invoke(app, ["registry", *cmd])
        assert res.exit_code == 0, res.output
        assert "cli-model" in res.output or "production" in res.output
    assert "why: first" in r.invoke(app, ["registry", "history", "cli-model"]).output


def _race(url: str, barrier, to_version: str, q) -> None:
    store = OpsStore(url)
    _, rev = store.get("m", "production")
    barrier.wait()
    try:
        store.move("m", "production", to_version, expected_rev=rev, actor=f"p{to_version}",
                   action="promote", reason="race")
        q.put(("won", to_version))
    except PromotionRefused:
        q.put(("refused", to_version))


@pytest.mark.parametrize("first_time", [True, False])
def test_two_processes_promoting_at_once_exactly_one_wins(pg_url, first_time):
    store = OpsStore(pg_url)
    if not first_time:
        store.move("m", "production", "1", expected_rev=0, actor="setup", action="promote", reason="setup")
    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(pg_url, barrier, v, q)) for v in ("7", "8")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(q.get(timeout=5) for _ in procs)
    assert [r[0] for r in results] == ["refused", "won"]
    winner = next(v for s, v in results if s == "won")
    assert store.get("m", "production")[0] == winner
    races = [m for m in store.history("m") if m.reason == "race"]
    assert len(races) == 1 and races[0].to_version == winner


@pytest.fixture
def mlflow_server(pg_url, tmp_path):
    """A real MLflow tracking server whose backend store is the local PostgreSQL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "mlflow.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", pg_url, "--artifacts-destination", (tmp_path / "art").as_uri(),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError((tmp_path / "mlflow.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    yield url, pg_url
    proc.terminate()
    proc.wait(30)


def test_registry_against_mlflow_server_on_postgresql(mlflow_server, tmp_path):
    url, pg = mlflow_server
    reg = Registry(url, home=tmp_path / "home", ops_url=pg)
    v = reg.register(make_stage_folder(tmp_path / "m"), "pg-model")
    assert v.version == "1" and v.source.startswith("mlflow-artifacts:")
    local = reg.load("pg-model", "1", tmp_path / "dl")
    assert (local / "model.safetensors").read_bytes() == b"w" * 64
    reg.attach_gate("pg-model", "1", _gate(tmp_path / "g", passed=True))
    reg.promote("pg-model", "1", "production", reason="gate passed")
    assert str(reg.client.get_model_version_by_alias("pg-model", "production").version) == "1"
    again = Registry(url, home=tmp_path / "other-home", ops_url=pg)  # another client, same stores
    assert again.aliases("pg-model") == {"production": "1"}
    assert [m.to_version for m in again.history("pg-model")] == ["1"]


def test_loaders_racing_for_one_version_all_get_a_verified_copy(reg, tmp_path):
    """The server's registry watcher and the autopilot may load the same version at the same
    moment (a story run in CI failed on exactly this: one loader removed the other's fresh
    copy). Each must end with a complete, verified folder."""
    from concurrent.futures import ThreadPoolExecutor

    reg.register(make_stage_folder(tmp_path / "m1"), "shop-search")
    for _ in range(5):
        import shutil

        shutil.rmtree(reg.home / "cache", ignore_errors=True)
        with ThreadPoolExecutor(4) as pool:
            folders = list(pool.map(lambda _: reg.load("shop-search", "1"), range(4)))
        assert len(set(folders)) == 1 and (folders[0] / "manifest.json").exists()
    leftovers = [p for p in (reg.home / "cache" / "shop-search").iterdir() if p.name != "1"]
    assert leftovers == []  # no half-copies left beside the cache entry
