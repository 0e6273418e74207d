"""Secrets stay in the process: before a config, a URL or a message is written to a manifest,
MLflow, a log line or the dashboard, URLs lose their passwords and secret-named fields their
values. Secrets themselves come from the environment (``SHELFOPS_ADMIN_TOKEN``,
``SHELFOPS_PSEUDONYM_KEY``) and are never put into a config; URLs are the one place a
password can hide in one (``postgresql+psycopg://user:pw@host/db``, ``redis://:pw@host``)."""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "***"
#: a field whose name says it holds a secret (``key_env`` names a variable, so it is not one)
SECRET_FIELD = re.compile(r"(^|_)(password|passwd|secret|token|api_key|apikey|credentials?)$", re.I)
_USERINFO = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@", re.I)
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|secret|token|api_key|apikey)=)[^&#\s]*", re.I)


def url(text: str) -> str:
    """``text`` with every URL password (user info or query parameter) replaced by ***."""
    return _QUERY.sub(lambda m: m["head"] + HIDDEN, _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", text))


def redacted(x: Any) -> Any:
    """A copy of a config-like document (dicts, lists, strings) with its secrets hidden."""
    if isinstance(x, str):
        return url(x)
    if isinstance(x, dict):
        return {k: (HIDDEN if isinstance(k, str) and SECRET_FIELD.search(k) and v not in (None, "") else redacted(v))
                for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [redacted(v) for v in x]
    return x
