from typer.testing import CliRunner

from shelfops import __version__
from shelfops.cli.main import app


def test_version_prints_the_package_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"shelfops {__version__}"


def test_exit_codes_tell_a_refusal_from_a_crash():
    """A script can tell a bad config (2), bad data (3), a failed gate (4) and a refused
    promotion (5) from a crash (70), and an exit a command chose is kept as it is."""
    import pytest
    import typer

    from shelfops.cli.common import CRASH, reported_errors
    from shelfops.errors import ConfigError, DataError, GateError, PromotionRefused

    def code(exc: BaseException) -> int:
        with pytest.raises(SystemExit) as info, reported_errors():
            raise exc
        return info.value.code

    assert [code(ConfigError(["x"])), code(DataError("x")), code(GateError("x")), code(PromotionRefused("x")),
            code(ZeroDivisionError())] == [2, 3, 4, 5, CRASH]
    with pytest.raises(typer.Exit), reported_errors():
        raise typer.Exit(1)
