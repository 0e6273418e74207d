"""Shared CLI plumbing: config + overrides, errors -> exit codes, the console."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console

from shelfops.errors import ConfigError, DataError, GateError, PromotionRefused, ShelfopsError

# the logging options, the same on `shelfops` and on `shelfops serve` (serve's win; unset: the environment's)
LogLevel = Annotated[str | None, typer.Option(
    envvar="SHELFOPS_LOG_LEVEL", help="critical | error | warning | info | debug | trace: what is logged to "
    "stderr, shelfops' and uvicorn's logs alike (unset: the outer command's, else warnings and up)")]
LogJson = Annotated[bool | None, typer.Option(
    "--log-json/--log-text", envvar="SHELFOPS_LOG_JSON", help="logs as JSON lines (ts, level, logger, msg, "
    "fields) instead of text")]

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

#: what a script calling shelfops can tell apart: a refusal it can act on vs a crash
EXIT_CODES: dict[type[ShelfopsError], int] = {ConfigError: 2, DataError: 3, GateError: 4, PromotionRefused: 5}
CRASH = 70  # an unexpected exception (BSD sysexits' EX_SOFTWARE): a bug, the traceback says where

T = TypeVar("T")


def exit_code(e: ShelfopsError) -> int:
    for cls in type(e).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


# typer 0.29 raises its own copy of click's exceptions (its BadParameter is no click.BadParameter,
# earlier ones were): a usage error either way, which click reports with the usage and exit 2
_USAGE = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn shelfops errors into a clear message and a non-zero exit code."""
    try:
        yield
    except ShelfopsError as e:
        err_console.print(f"[bold red]error[/] [dim]({e.code})[/]: {e.message}")
        raise SystemExit(exit_code(e)) from None
    except (SystemExit, KeyboardInterrupt, typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException,
            click.Abort, _USAGE):
        raise  # an exit the command chose, or the user's Ctrl-C
    except Exception:
        err_console.print_exception()
        err_console.print(f"[bold red]crash[/]: an unexpected error (exit {CRASH}); the traceback above says where")
        raise SystemExit(CRASH) from None


def split_overrides(args: list[str] | None) -> tuple[list[str], list[str]]:
    """Positional args -> (paths, key=value overrides). An arg with '=' that is not an
    existing file is an override."""
    paths, overrides = [], []
    for a in args or []:
        if "=" in a and not Path(a).exists():
            overrides.append(a)
        else:
            paths.append(a)
    return paths, overrides


def load(config: Path | None, overrides: list[str], default: dict[str, Any] | None = None, *,
         check_files: bool = True):
    from shelfops.config.load import load_config

    if config is not None:
        return load_config(config, overrides, check_files=check_files)
    return load_config(data=default or {"data": {"synthetic": {}}}, overrides=overrides)


def log_choice(ctx: typer.Context | None, level: str | None, json: bool | None) -> tuple[str, bool]:
    """The log level and format a command runs with: its own ``--log-level`` / ``--log-json``,
    else the global ones (``shelfops --log-level debug serve``), else warning and text. Both
    read ``$SHELFOPS_LOG_LEVEL`` / ``$SHELFOPS_LOG_JSON`` as their defaults."""
    top = ctx.find_root().params if ctx is not None else {}
    level = level or top.get("log_level") or "warning"
    json = json if json is not None else bool(top.get("log_json"))
    return level, json


def say(text: str) -> None:
    console.print(text)


def run(fn: Callable[[], T]) -> T:
    with reported_errors():
        return fn()


def isatty() -> bool:
    return sys.stdout.isatty()
