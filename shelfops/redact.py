"""Secrets stay in the process: before a config, a URL or a message is written to a manifest,
MLflow, a log line or the dashboard, URLs lose their passwords and secret-named fields their
values. Secrets themselves come from the environment (``SHELFOPS_ADMIN_TOKEN``,
``SHELFOPS_READ_TOKEN``, ``SHELFOPS_PSEUDONYM_KEY``) and are never put into a config; URLs are
the one place a password can hide in one (``postgresql+psycopg://user:pw@host/db``,
``redis://:pw@host``, ``/dashboard?token=...``). A log line may also quote an HTTP header
(``Authorization: Bearer ...``, a cookie): :func:`text` hides those values too."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

HIDDEN = "***"
#: a field whose name says it holds a secret (``key_env`` names a variable, so it is not one)
SECRET_FIELD = re.compile(r"(^|_)(password|passwd|secret|token|api_key|apikey|credentials?|authorization|cookie)$",
                          re.I)
_USERINFO = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@", re.I)
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|secret|token|access_token|api_key|apikey)=)[^&#\s]*", re.I)
# a credential after its scheme, wherever it is quoted: "Bearer abc", b'Basic dXNlcjpwdw=='
_SCHEME = re.compile(r"(?P<head>\b(?:bearer|basic)\s+)(?!\*\*\*)[^\s,;'\"]+", re.I)
# a header's whole value: "Authorization: Token abc", "cookie=a=b; c=d", '"authorization": "xyz"'
_HEADER = re.compile(r"(?P<head>\b(?:proxy-authorization|authorization|set-cookie|cookie)[\"']?\s*[:=]\s*[\"']?)"
                     r"(?![\s\"']|\*\*\*)[^\r\n\"']+", re.I)


def url(text: str) -> str:
    """``text`` with every URL password (user info or query parameter) replaced by ***."""
    return _QUERY.sub(lambda m: m["head"] + HIDDEN, _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", text))


def text(s: str) -> str:
    """``s`` (a log message, an exception's text) with URL passwords, ``token=`` query values,
    bearer / basic credentials and Authorization or cookie header values replaced by ***."""
    s = _SCHEME.sub(lambda m: m["head"] + HIDDEN, url(s))
    return _HEADER.sub(lambda m: m["head"] + HIDDEN, s)


def redacted(x: Any, scrub: Callable[[str], str] = url) -> Any:
    """A copy of a config-like document (dicts, lists, strings) with its secrets hidden: a
    secret-named field's value, and in every string what ``scrub`` hides (:func:`url`; a log
    record's fields use :func:`text`)."""
    if isinstance(x, str):
        return scrub(x)
    if isinstance(x, dict):
        return {k: (HIDDEN if isinstance(k, str) and SECRET_FIELD.search(k) and v not in (None, "")
                    else redacted(v, scrub))
                for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [redacted(v, scrub) for v in x]
    return x
