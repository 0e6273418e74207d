"""Every backend takes the config's `serve:` section through one mapping (ReplicaSpec)."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from shelfops.artifacts import stage_output
from shelfops.cli.main import app
from shelfops.config.load import load_config
from shelfops.serve.batcher import MicroBatcher
from shelfops.serve.spec import ReplicaSpec, serve_settings

SERVE = ["serve.state_url=redis://127.0.0.1:6379/3", "serve.session_length=7", "serve.rerank_depth=11",
         "serve.shadow_fraction=0.25", "serve.access_log=true"]


def test_every_serve_setting_reaches_the_app_settings(tmp_path):
    cfg = load_config(None, SERVE)
    spec = ReplicaSpec.from_config(cfg, models={"search": (tmp_path, "3")}, data_dir=tmp_path,
                                   admin_token="t", watch_seconds=2.5)
    for batcher in (MicroBatcher, object):  # any class with the batcher's interface (Ray's in a replica)
        st = serve_settings(spec, batcher=batcher)
        assert st.serve == cfg.serve  # the whole section: a new serve: field reaches the app too
        assert st.batcher is batcher and st.watch_seconds == 2.5 and st.admin_token == "t"
        assert st.models == {"search": (tmp_path, "3")} and st.data_dir == tmp_path


def test_serve_cli_passes_the_config_to_the_uvicorn_app(tmp_path, monkeypatch, restore_logging):
    with stage_output(tmp_path / "model", "train") as w:
        w.manifest.extra = {"data": str(tmp_path / "data")}
    seen = {}
    monkeypatch.setattr("shelfops.serve.app.create_app", lambda s: seen.setdefault("settings", s))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    res = CliRunner().invoke(app, ["serve", "--model", f"search={tmp_path / 'model'}", "--port", "8124",
                                   *SERVE])
    assert res.exit_code == 0, res.output
    st = seen["settings"]
    assert (st.serve.state_url, st.serve.session_length, st.serve.rerank_depth, st.serve.shadow_fraction) == (
        "redis://127.0.0.1:6379/3", 7, 11, 0.25)
    assert st.data_dir == Path(tmp_path / "data") and seen["port"] == 8124
    assert st.serve.access_log is True  # serve.access_log: the app's own access log
    # logging is shelfops' (shelfops.logs), never reconfigured by uvicorn, and uvicorn's access log is off
    assert seen["log_config"] is None and seen["log_level"] is None and seen["access_log"] is False
    assert "sessions: redis://127.0.0.1:6379/3" in res.output


def test_serve_cli_log_flags_env_and_read_token(tmp_path, monkeypatch, restore_logging):
    """--log-level / --log-json (or the global ones, or $SHELFOPS_LOG_LEVEL / $SHELFOPS_LOG_JSON)
    set up shelfops.logs; --access-log turns the app's access log on; $SHELFOPS_READ_TOKEN
    reaches the app."""
    import logging

    from shelfops import logs

    with stage_output(tmp_path / "model", "train") as w:
        w.manifest.extra = {"data": str(tmp_path / "data")}
    seen = {}
    monkeypatch.setattr("shelfops.serve.app.create_app", lambda s: seen.setdefault("settings", s))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    serve = ["serve", "--model", f"search={tmp_path / 'model'}"]

    def run(args: list[str], env: dict | None = None) -> tuple[object, str, int, str]:
        seen.clear()
        res = CliRunner().invoke(app, args, env=env)
        assert res.exit_code == 0, res.output
        (ours,) = [h for h in logging.getLogger().handlers if getattr(h, "shelfops", False)]
        return seen["settings"], type(ours.formatter).__name__, logging.getLogger().level, res.output

    st, fmt, level, _ = run(serve)
    assert (st.serve.access_log, st.read_token, fmt, level) == (False, None, "TextFormatter", logging.WARNING)
    monkeypatch.setenv("SHELFOPS_READ_TOKEN", "rt-1")
    st, fmt, level, _ = run([*serve, "--access-log", "--log-json", "--log-level", "info"])
    assert (st.serve.access_log, st.read_token, fmt, level) == (True, "rt-1", "JsonFormatter", logging.INFO)
    st, fmt, level, _ = run(["--log-level", "debug", "--log-json", *serve])  # the global flags
    assert (st.serve.access_log, fmt, level) == (False, "JsonFormatter", logging.DEBUG)
    _, fmt, level, _ = run(serve, env={"SHELFOPS_LOG_LEVEL": "error", "SHELFOPS_LOG_JSON": "1"})
    assert (fmt, level) == ("JsonFormatter", logging.ERROR)
    _, fmt, level, _ = run([*serve, "--log-text", "--log-level", "info"], env={"SHELFOPS_LOG_LEVEL": "error",
                                                                             "SHELFOPS_LOG_JSON": "1"})
    assert (fmt, level) == ("TextFormatter", logging.INFO)  # a flag wins over the environment
    bad = CliRunner().invoke(app, [*serve, "--log-level", "loud"])
    assert bad.exit_code == 2 and "loud" in bad.output
    assert logs.level_of("TRACE") == logs.TRACE


def test_urls_with_passwords_come_from_the_environment_when_the_config_leaves_them_unset(tmp_path, monkeypatch):
    """A Kubernetes Secret reaches the server as environment variables, never as a config file."""
    from shelfops.registry.registry import registry_from

    monkeypatch.setenv("SHELFOPS_STATE_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("SHELFOPS_OPS_URL", f"sqlite:///{tmp_path}/ops-from-env.db")
    assert ReplicaSpec.from_config(load_config(None, [])).serve_config.state_url == "redis://:pw@redis:6379/0"
    assert ReplicaSpec.from_config(load_config(None, SERVE)).serve_config.state_url == "redis://127.0.0.1:6379/3"  # config wins
    reg = registry_from(load_config(None, [f"registry.home={tmp_path}/home"]).registry)
    reg.history()  # opens the store
    assert (tmp_path / "ops-from-env.db").exists()
