"""What every route module asks FastAPI for: the server's state, the request's id, and the two
token checks: the admin token (admin routes) and the read token (the dashboard).

The dashboard is open while no token is configured (local development). With
``SHELFOPS_READ_TOKEN`` or ``SHELFOPS_ADMIN_TOKEN`` set it needs one of them (the admin token
may do everything the read token may): as ``Authorization: Bearer <token>`` (a script), or
as the cookie the page's link ``/dashboard?token=<token>`` sets (a browser: the page's own
fetches and chart images then carry it with no script handling the token). The cookie holds a
keyed hash of the token, never the token, is HttpOnly and SameSite=Lax, and opens only the
dashboard's read routes: admin routes take the bearer header alone, so a page another site
shows cannot act with it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from typing import Annotated

from fastapi import Depends, Header, Request

from shelfops.errors import Unauthorized
from shelfops.serve.settings import ServeSettings
from shelfops.serve.state import State

REQUEST_ID = "x-request-id"
READ_COOKIE = "shelfops_read"
READ_REFUSAL = ("the dashboard needs the read token: open /dashboard?token=<token>, or send "
                "'Authorization: Bearer <token>'")
_SANE_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


def get_state(request: Request) -> State:
    return request.app.state.shelfops


Served = Annotated[State, Depends(get_state)]


def request_id_from(given: str | None) -> str:
    """The id a request is known by: the caller's ``X-Request-ID`` (a proxy's, a client's) when
    it is a sane one (1-128 letters, digits or ``._:+/=-``), else a new one. The access log,
    the ``x-request-id`` response header and a search's ``request_id`` (what a feedback event
    names) are this one id."""
    if given and _SANE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def request_id(request: Request) -> str:
    """This request's id: the one serve.app's middleware chose (made here when a route runs
    without it)."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = request_id_from(request.headers.get(REQUEST_ID))
    return rid


RequestId = Annotated[str, Depends(request_id)]


def bearer(authorization: str | None) -> str:
    """The credential of an ``Authorization`` header (its ``Bearer`` scheme optional)."""
    value = (authorization or "").strip()
    return value[7:].strip() if value[:7].lower() == "bearer " else value


def same(given: str, token: str) -> bool:
    """Constant-time equality, for any text a client sends (non-ASCII included)."""
    return secrets.compare_digest(given.encode("utf-8", "backslashreplace"), token.encode("utf-8", "backslashreplace"))


def admin(state: Served, authorization: Annotated[str | None, Header()] = None) -> None:
    """Admin routes need ``Authorization: Bearer <token>``, compared in constant time."""
    token = state.settings.admin_token
    if not token or not same(bearer(authorization), token):
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <token>'")


def read_tokens(settings: ServeSettings) -> list[str]:
    """The tokens that open the dashboard: the read token and the admin token; none: it is open."""
    return [t for t in (settings.read_token, settings.admin_token) if t]


def read_cookie(token: str) -> str:
    """What the dashboard's cookie holds for ``token``: a keyed hash of it (a cookie copied out
    of a browser is not the token; changing the token ends every cookie made from it)."""
    return hmac.new(token.encode(), b"shelfops dashboard read", hashlib.sha256).hexdigest()


def opened_by(settings: ServeSettings, given: str) -> str | None:
    """The configured token ``given`` is, or None."""
    return next((t for t in read_tokens(settings) if same(given, t)), None)


def may_read(settings: ServeSettings, authorization: str | None, cookie: str | None) -> bool:
    """Whether a request with this Authorization header and read cookie may see the dashboard."""
    tokens = read_tokens(settings)
    if not tokens:
        return True
    given = bearer(authorization)
    return bool(given and opened_by(settings, given)) or bool(
        cookie and any(same(cookie, read_cookie(t)) for t in tokens))


def reader(request: Request, state: Served, authorization: Annotated[str | None, Header()] = None) -> None:
    """The dashboard's routes: open without tokens configured, else the read (or admin) token
    as a bearer header or the cookie ``/dashboard?token=`` set; a 401 otherwise."""
    if not may_read(state.settings, authorization, request.cookies.get(READ_COOKIE)):
        raise Unauthorized(READ_REFUSAL)
