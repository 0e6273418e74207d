"""`shelfops data ingest FILE -c CONFIG`: a config says how to read a shop's file, the command which file."""

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from shelfops.artifacts import read_manifest
from shelfops.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
GENERIC = ROOT / "configs" / "examples" / "generic-judgements.yaml"


def _judgements(path: Path, queries: int = 40) -> None:
    rows = [{"query": f"query {q}", "product_title": f"product {q}-{k}", "product_description": f"about {q} {k}",
             "median_relevance": 1 + (q + k) % 3} for q in range(queries) for k in range(4)]
    pl.DataFrame(rows).write_csv(path)


def test_the_file_named_on_the_command_line_is_the_one_read(tmp_path, monkeypatch):
    """The config names judgements.csv; the shop's file has another name, in a folder that holds no
    judgements.csv: it is read, not refused (nor a file of the config's name read in its place)."""
    monkeypatch.chdir(tmp_path)
    _judgements(tmp_path / "myshop.csv")
    res = CliRunner().invoke(app, ["data", "ingest", "myshop.csv", "-c", str(GENERIC), "--out", "out",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    m = read_manifest(tmp_path / "out")
    assert m.counts["judgements"]["kept"] == 160
    assert [Path(p).name for s in m.config["data"]["sources"] for p in s["paths"]] == ["myshop.csv"]


def test_files_with_no_way_to_read_them_are_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _judgements(tmp_path / "myshop.csv")
    for extra, said in (([], "--format"), (["-c", "synthetic"], "synthetic has 0 data sources")):
        res = CliRunner().invoke(app, ["data", "ingest", "myshop.csv", *extra, "--out", "out", "--no-progress"])
        assert res.exit_code == 2, res.output
        assert said in " ".join(res.output.split()), res.output  # the box may wrap the message
    res = CliRunner().invoke(app, ["data", "ingest", "gone.csv", "-c", str(GENERIC), "--out", "out", "--no-progress"])
    assert res.exit_code == 2 and "gone.csv does not exist" in " ".join(res.output.split()), res.output
    assert not (tmp_path / "out").exists()
