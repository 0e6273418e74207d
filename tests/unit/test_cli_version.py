from typer.testing import CliRunner

from shelfops import __version__
from shelfops.cli.main import app


def test_version_prints_the_package_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"shelfops {__version__}"
