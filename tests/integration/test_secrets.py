"""No secret leaves the process: with an admin token, a pseudonym key and passwords in the
operational store's and the session store's URLs, a real run (ingest, train, register, promote,
serve the dashboard) writes none of them to a manifest, MLflow (its database and artifacts), the
operational store's tables, a log line or an HTTP response. And nothing is loaded with pickle."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from shelfops.cli.main import app as cli
from shelfops.config.load import load_config
from shelfops.serve.app import create_app
from shelfops.serve.server import start_in_thread
from shelfops.serve.spec import ReplicaSpec, serve_settings

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"admin token": "adm-7f3c1e9b2d", "pseudonym key": "psk-c0ffee5eed1234",
           "database password": "dbpw-91b7e3a0", "redis password": "rdpw-4d2a8c6f"}


@pytest.mark.slow
def test_no_secret_in_manifests_mlflow_store_logs_or_responses(tmp_path, monkeypatch, pg_url, tiny_encoder,
                                                                caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("SHELFOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHELFOPS_PSEUDONYM_KEY", SECRETS["pseudonym key"])
    monkeypatch.setenv("SHELFOPS_ADMIN_TOKEN", SECRETS["admin token"])
    ops = pg_url.replace("postgres@", f"postgres:{SECRETS['database password']}@")  # trust auth ignores it
    overrides = [f"registry.ops_url={ops}", f"serve.state_url=redis://:{SECRETS['redis password']}@127.0.0.1:6379/0",
                 "data.synthetic.users=200", "data.synthetic.items=200", "data.synthetic.days=6",
                 "data.synthetic.drift_day=4", "data.synthetic.judged_queries=80"]
    r, said = CliRunner(), []

    def run(*argv: str) -> None:
        res = r.invoke(cli, list(argv))
        said.append(res.output)
        assert res.exit_code == 0, res.output

    run("data", "ingest", "--out", str(tmp_path / "data"), "--no-progress", *overrides)
    run("train", "--task", "search", "--data", str(tmp_path / "data"), "--out",
        str(tmp_path / "search"), "--no-progress", f"train.encoder={tiny_encoder}", "train.threads=1",
        "train.bootstrap=100", "train.search.schedule.max_steps=5", "train.search.catalogue.enabled=false",
        *overrides)
    run("registry", "register", str(tmp_path / "search"), "--name", "leak-search", *overrides)
    run("registry", "promote", "leak-search", "1", "production", "--force", "-r", "first", *overrides)
    run("registry", "history", "leak-search", *overrides)

    # the server, following the registry (sessions in this process: no Redis with that password here)
    cfg = load_config(None, [o for o in overrides if not o.startswith("serve.state_url")])
    spec = ReplicaSpec.from_config(cfg, registry_prefix="leak", data_dir=tmp_path / "data",
                                   admin_token=SECRETS["admin token"])
    running = start_in_thread(create_app(serve_settings(spec)))
    try:
        token = {"Authorization": f"Bearer {SECRETS['admin token']}"}
        for path in ("/dashboard", "/v1/dashboard", "/readyz", "/metrics", "/openapi.json", "/v1/rollout",
                     "/v1/traffic"):
            said.append(httpx.get(running.url + path, headers=token, timeout=30).text)
    finally:
        running.stop()

    with sa.create_engine(pg_url).connect() as c:  # every row of the operational store, as text
        for table in sa.inspect(c).get_table_names():
            said += [repr(row) for row in c.execute(sa.text(f'SELECT * FROM "{table}"'))]
    said += [rec.getMessage() for rec in caplog.records]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any(p.name == "manifest.json" for p in files)
    assert any("ops_url" in p.read_text() for p in files if p.name == "manifest.json")  # the config is there
    for what, secret in SECRETS.items():
        leaks = [str(p.relative_to(tmp_path)) for p in files if secret.encode() in p.read_bytes()]
        leaks += [s[:200] for s in said if secret in s]
        assert not leaks, f"the {what} leaked into {leaks[:5]}"


#: calls that unpickle: what a tampered file would execute on load
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _parsed(path: Path) -> ast.Module:
    """``path``'s syntax tree. CPython 3.11's parser keeps its recursion depth in state that a
    thread compiling at the same moment (left running by an earlier test of this process) can
    corrupt, raising "SystemError: AST constructor recursion depth mismatch" for a valid file
    (CPython gh-106905; seen once in CI on recommend.py, unchanged): parsed again then."""
    source = path.read_text()
    try:
        return ast.parse(source, str(path))
    except SystemError as e:
        if "recursion depth mismatch" not in str(e):
            raise
        return ast.parse(source, str(path))


def pickle_loads(path: Path) -> list[str]:
    """Places in ``path`` that could load a pickle: an unpickling module imported, torch.load
    without weights_only=True, np.load(allow_pickle=True), read_pickle, trust_remote_code=True."""
    found, shown = [], path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(_parsed(path)):
        where = f"{shown}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                   else [])
            found += [f"{where} imports {n}" for n in names if n.split(".")[0] in UNPICKLERS]
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if name.endswith("torch.load") or name == "load" and "weights_only" in kw:
            if kw.get("weights_only") != "True":
                found.append(f"{where} torch.load without weights_only=True")
        if kw.get("allow_pickle") == "True":
            found.append(f"{where} {name}(allow_pickle=True)")
        if name.endswith(("read_pickle", "from_pickle", "pickle.loads", "pickle.load")):
            found.append(f"{where} {name}")
        if kw.get("trust_remote_code") == "True":
            found.append(f"{where} {name}(trust_remote_code=True)")
    return found


def test_nothing_loads_a_pickle():
    # the project's code, not the third-party packages of a venv kept beside it (bench/peers/*/.venv)
    files = [p for d in ("shelfops", "bench", "tests") for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts]
    assert len(files) > 50
    found = [f for p in files for f in pickle_loads(p)]
    assert not found, found


def test_the_pickle_scan_finds_each_kind(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("import joblib\nimport torch\nimport numpy as np\nfrom pickle import loads\n"
                   "torch.load('m.pt')\nnp.load('x.npy', allow_pickle=True)\n"
                   "AutoModel.from_pretrained('x', trust_remote_code=True)\npd.read_pickle('x')\n")
    found = pickle_loads(bad)
    assert len(found) == 6, found
