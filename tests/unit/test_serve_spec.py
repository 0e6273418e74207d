"""Every backend takes the config's `serve:` section through one mapping (ReplicaSpec)."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from shelfops.artifacts import stage_output
from shelfops.cli.main import app
from shelfops.config.load import load_config
from shelfops.config.schema import ServeConfig
from shelfops.serve.spec import ReplicaSpec

SERVE = ["serve.state_url=redis://127.0.0.1:6379/3", "serve.session_length=7", "serve.rerank_depth=11",
         "serve.shadow_fraction=0.25"]


def test_every_serve_setting_reaches_the_app_settings(tmp_path):
    cfg = load_config(None, SERVE)
    spec = ReplicaSpec.from_config(cfg, models={"search": (tmp_path, "3")}, data_dir=tmp_path,
                                   admin_token="t", watch_seconds=2.5)
    for batching in ("asyncio", "ray"):
        st = spec.settings(batching=batching)
        for name in ServeConfig.model_fields:  # a new serve: field must reach the app too
            assert getattr(st, name) == getattr(cfg.serve, name), name
        assert st.batching == batching and st.watch_seconds == 2.5 and st.admin_token == "t"
        assert st.models == {"search": (tmp_path, "3")} and st.data_dir == tmp_path


def test_serve_cli_passes_the_config_to_the_uvicorn_app(tmp_path, monkeypatch):
    with stage_output(tmp_path / "model", "train") as w:
        w.manifest.extra = {"data": str(tmp_path / "data")}
    seen = {}
    monkeypatch.setattr("shelfops.serve.app.create_app", lambda s: seen.setdefault("settings", s))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    res = CliRunner().invoke(app, ["serve", "--model", f"search={tmp_path / 'model'}", "--port", "8124",
                                   *SERVE])
    assert res.exit_code == 0, res.output
    st = seen["settings"]
    assert (st.state_url, st.session_length, st.rerank_depth, st.shadow_fraction) == (
        "redis://127.0.0.1:6379/3", 7, 11, 0.25)
    assert st.data_dir == Path(tmp_path / "data") and seen["port"] == 8124
    assert seen["log_level"] == "warning" and seen["access_log"] is False  # quiet unless asked
    assert "sessions: redis://127.0.0.1:6379/3" in res.output


def test_urls_with_passwords_come_from_the_environment_when_the_config_leaves_them_unset(tmp_path, monkeypatch):
    """A Kubernetes Secret reaches the server as environment variables, never as a config file."""
    from shelfops.registry.registry import registry_from

    monkeypatch.setenv("SHELFOPS_STATE_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("SHELFOPS_OPS_URL", f"sqlite:///{tmp_path}/ops-from-env.db")
    assert ReplicaSpec.from_config(load_config(None, [])).state_url == "redis://:pw@redis:6379/0"
    assert ReplicaSpec.from_config(load_config(None, SERVE)).state_url == "redis://127.0.0.1:6379/3"  # config wins
    reg = registry_from(load_config(None, [f"registry.home={tmp_path}/home"]).registry)
    reg.history()  # opens the store
    assert (tmp_path / "ops-from-env.db").exists()
