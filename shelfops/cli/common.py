"""Shared CLI plumbing: config + overrides, errors -> exit codes, the console."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from shelfops.errors import ConfigError, DataError, ShelfopsError

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_CODES: dict[type[ShelfopsError], int] = {ConfigError: 2, DataError: 3}

T = TypeVar("T")


def exit_code(e: ShelfopsError) -> int:
    for cls in type(e).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn shelfops errors into a clear message and a non-zero exit code."""
    try:
        yield
    except ShelfopsError as e:
        err_console.print(f"[bold red]error[/] [dim]({e.code})[/]: {e.message}")
        raise SystemExit(exit_code(e)) from None


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


def load(config: Path | None, overrides: list[str], default: dict[str, Any] | None = None):
    from shelfops.config.load import load_config

    if config is not None:
        return load_config(config, overrides)
    return load_config(data=default or {"data": {"synthetic": {}}}, overrides=overrides)


def say(text: str) -> None:
    console.print(text)


def run(fn: Callable[[], T]) -> T:
    with reported_errors():
        return fn()


def isatty() -> bool:
    return sys.stdout.isatty()
