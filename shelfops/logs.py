"""One logging setup for every shelfops process, so that a server's lines (ours, uvicorn's,
the access log) come out one way: to stderr, as a readable line or as JSON lines a log
collector parses without a pattern, and never with a secret in them.

:func:`setup` configures the root logger and uvicorn's loggers (``uvicorn``, ``uvicorn.error``:
their own handlers removed, so that they go through ours; ``uvicorn.access`` silenced, as the
server writes its own access log, ``shelfops.access``, which never holds a query string) and
may be called again: the last call wins, and there is always exactly one shelfops handler.
Run uvicorn with ``log_config=None`` so that it does not configure logging over this.

A JSON line is one object: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``msg``, then every
field the record was given with ``extra=`` (the access log's ``request_id``, ``status``, ...)::

    {"ts": "2025-05-01T12:00:00.123Z", "level": "info", "logger": "shelfops.access",
     "msg": "POST /v1/search 200", "request_id": "9f1c...", "method": "POST", "path": "/v1/search",
     "status": 200, "duration_ms": 12.4, "client": "10.0.0.7", "version": "3"}

Every record passes :class:`Redact` on its way out: its message, its extra fields and its
exception text lose bearer tokens, Authorization and cookie values, ``token=`` query values
and URL passwords (``shelfops.redact``).

The level and the format may come from the environment (``SHELFOPS_LOG_LEVEL``,
``SHELFOPS_LOG_JSON``): the CLI reads both as its flags' defaults, and :func:`from_env` sets a
process up from them (a Ray Serve replica, which no CLI started).
"""

from __future__ import annotations

import json as _json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from shelfops import redact
from shelfops.errors import ConfigError

TRACE = 5  # uvicorn's level below debug
LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
          "info": logging.INFO, "debug": logging.DEBUG, "trace": TRACE}
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")
ACCESS = "shelfops.access"  # one record per request (serve.app), at INFO
TRUE = frozenset({"1", "true", "yes", "on"})

#: what every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def level_of(name: str) -> int:
    """``"info"`` -> 20; a ConfigError naming the choices for anything else."""
    try:
        return LEVELS[name.strip().lower()]
    except (KeyError, AttributeError):
        raise ConfigError([f"log level {name!r}: expected one of {', '.join(LEVELS)}"]) from None


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Redact(logging.Filter):
    """Hides secrets in a record before any formatter sees it: the message (with its arguments
    merged in), every extra field (by name, ``authorization``, ``token``, ...; and by value) and
    the exception's text. The record is changed in place, so the handlers after ours see it
    redacted too."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep what can be shown
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact.text(str(message)), None
        for k, v in extras(record).items():
            setattr(record, k, redact.redacted({k: v}, redact.text)[k])
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact.text(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extra fields, exc (a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": timestamp(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage()}
        for k, v in extras(record).items():
            out.setdefault(k, v)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return _json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``2025-05-01T12:00:00.123Z INFO    shelfops.access: POST /v1/search 200 request_id=... status=200``;
    control characters in the message and fields are escaped (a client's path cannot forge a
    line), a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record.created)} {record.levelname:<7} {record.name}: {_escaped(record.getMessage())}"
        fields = extras(record)
        if fields:
            line += " " + " ".join(f"{k}={_escaped(_text(v))}" for k, v in fields.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _text(v: Any) -> str:
    if isinstance(v, str):
        return _json.dumps(v) if (not v or " " in v or '"' in v) else v
    return _json.dumps(v, default=str) if isinstance(v, dict | list | tuple) else str(v)


def _escaped(s: str) -> str:
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), s)


class _Stderr(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record is written (a test's capture, a
    CLI runner's stream), never a stream closed since."""

    shelfops = True

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup(level: str = "info", json: bool = False) -> None:
    """Log at ``level`` and up to stderr, as text or (``json``) JSON lines, secrets redacted:
    the root logger gets the one shelfops handler (any earlier one replaced), uvicorn's
    loggers go through it. The access log (``shelfops.access``) shows at INFO whatever the
    level: whether it is written at all is the server's ``--access-log``."""
    number = level_of(level)
    logging.addLevelName(TRACE, "TRACE")
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "shelfops", False)]:
        root.removeHandler(h)
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    handler.addFilter(Redact())
    root.addHandler(handler)
    root.setLevel(number)
    for name in UVICORN:  # what uvicorn's own config would have given them: gone, ours instead
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.setLevel(logging.NOTSET)
        # uvicorn writes its access log when that logger has a handler, its parents' included:
        # it has none, so the app's own (shelfops.access, no query strings) is the only one
        lg.propagate = name != "uvicorn.access"
    logging.getLogger(ACCESS).setLevel(min(number, logging.INFO))


def env_choice(environ: dict[str, str] | None = None) -> tuple[str | None, bool | None]:
    """(level, json) as ``SHELFOPS_LOG_LEVEL`` and ``SHELFOPS_LOG_JSON`` say; None where unset."""
    env = os.environ if environ is None else environ
    level = env.get("SHELFOPS_LOG_LEVEL") or None
    raw = env.get("SHELFOPS_LOG_JSON")
    return level, (raw.strip().lower() in TRUE if raw else None)


def from_env(default_level: str = "warning") -> None:
    """:func:`setup` as the environment says (``SHELFOPS_LOG_LEVEL``, ``SHELFOPS_LOG_JSON``),
    for a process no CLI started (a Ray Serve replica)."""
    level, json = env_choice()
    setup(level or default_level, json=bool(json))
