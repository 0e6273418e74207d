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

    for exc, want in ((ConfigError(["x"]), 2), (DataError("x"), 3), (GateError("x"), 4), (PromotionRefused("x"), 5),
                      (ZeroDivisionError(), CRASH)):
        with pytest.raises(SystemExit, match=f"^{want}$") as info, reported_errors():
            raise exc
        assert info.value.code == want, exc  # the number itself, not only its text
    with pytest.raises(typer.Exit, match="^1$") as chosen, reported_errors():
        raise typer.Exit(1)
    assert chosen.value.exit_code == 1
