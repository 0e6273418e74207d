"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shelfops.cli.main import app as cli


@pytest.fixture(scope="session")
def models(small_shop, tiny_encoder, tmp_path_factory) -> Path:
    """Tiny trained models of all four tasks (and a second search model) on the small shop."""
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
