from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shelfops.cli.main import app
from shelfops.config.load import apply_overrides, load_config
from shelfops.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_every_shipped_config_is_valid():
    for cfg in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(cfg, check_files=False)


def test_all_problems_reported_at_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "data:\n"
        "  sources:\n"
        "    - {format: csv, paths: [nope.csv]}\n"
        "    - {format: xml, paths: []}\n"
        "  cleaning: {max_reject_ratio: 3, batch_rows: 5}\n"
        "  colour: blue\n"
    )
    with pytest.raises(ConfigError, match="configuration problem") as e:
        load_config(bad)
    text = "\n".join(e.value.problems)
    for needle in ("data.sources.0", "needs `table`", "data.sources.1.format",
                   "data.sources.1.paths", "data.cleaning.max_reject_ratio",
                   "data.cleaning.batch_rows", "data.colour"):
        assert needle in text, needle
    assert len(e.value.problems) >= 6


def test_overrides_are_typed_and_nested():
    cfg = load_config(data={"data": {"synthetic": {}}},
                      overrides=["data.synthetic.users=50", "data.synthetic.drift_day=null",
                                 "data.cleaning.strip_html=false", "name=x y"])
    assert cfg.data.synthetic.users == 50 and cfg.data.synthetic.drift_day is None
    assert cfg.data.cleaning.strip_html is False and cfg.name == "x y"


def test_override_into_list_and_bad_override():
    d = apply_overrides({"a": [{"b": 1}]}, ["a.0.b=2"])
    assert d["a"][0]["b"] == 2
    with pytest.raises(ConfigError, match="no list index 3"):
        apply_overrides({"a": [{"b": 1}]}, ["a.3.b=2"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["justakey"])


def test_unknown_mapping_column_is_named(tmp_path):
    f = tmp_path / "j.csv"
    f.write_text("q,t,g\n")
    with pytest.raises(ConfigError, match=r"columns.relevance: not a column of judgements"):
        load_config(data={"data": {"sources": [{"format": "csv", "table": "judgements",
                                                "paths": [str(f)],
                                                "columns": {"relevance": "g"}}]}})


def test_cli_validate_exit_codes(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(ROOT / "configs" / "synthetic.yaml"),
                             "data.synthetic.users=10"])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "b.yaml"
    bad.write_text("data: {synthetic: {users: -1, items: 2}}\n")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    assert "data.synthetic.users" in res.output and "data.synthetic.items" in res.output


def test_prune_takes_one_count_or_several_and_refuses_zero():
    from shelfops.config.load import load_config

    assert load_config(None, ["optimize.prune.drop_layers=[2,3]"]).optimize.prune.drop_layers == [2, 3]
    assert load_config(None, ["optimize.prune.drop_layers=2"]).optimize.prune.drop_layers == 2
    with pytest.raises(ConfigError, match="optimize.prune.drop_layers"):
        load_config(None, ["optimize.prune.drop_layers=[1,0]"])


def test_a_preset_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from shelfops.config.load import PRESETS, config_file

    monkeypatch.chdir(tmp_path)
    assert config_file("synthetic") == PRESETS / "synthetic.yaml"
    assert config_file("configs/homedepot.yaml") == PRESETS / "homedepot.yaml"  # the repo's spelling
    assert config_file("elsewhere/synthetic.yaml") == Path("elsewhere/synthetic.yaml")  # not a preset
    assert load_config("synthetic").data.synthetic is not None
    (tmp_path / "synthetic.yaml").write_text("data: {synthetic: {users: 123}}\n")
    assert load_config("synthetic.yaml").data.synthetic.users == 123  # a file of that name wins


def test_relative_source_paths_are_read_from_the_folder_the_config_was_named_in(tmp_path):
    """configs/ is a link into the package: '..' in a source path is the repo's parent, as written."""
    cfg = load_config(ROOT / "configs" / "examples" / "generic-judgements.yaml", check_files=False)
    assert Path(cfg.data.sources[0].paths[0]) == ROOT / "configs" / "examples" / "judgements.csv"


def test_ray_engine_refuses_what_it_cannot_cut_into_units():
    src = {"format": "amazon", "paths": ["Beauty.txt"]}
    assert load_config(data={"data": {"sources": [src]}}, check_files=False).data.engine == "local"
    with pytest.raises(ConfigError, match=r"data: .*engine: ray reads csv"):
        load_config(data={"data": {"sources": [src], "engine": "ray"}}, check_files=False)
    with pytest.raises(ConfigError, match=r"data.engine"):
        load_config(data={"data": {"synthetic": {}, "engine": "spark"}})
