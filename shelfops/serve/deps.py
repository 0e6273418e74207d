"""What every route module asks FastAPI for: the server's state, and the admin check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from shelfops.errors import Unauthorized
from shelfops.serve.state import State


def get_state(request: Request) -> State:
    return request.app.state.shelfops


Served = Annotated[State, Depends(get_state)]


def admin(state: Served, authorization: Annotated[str | None, Header()] = None) -> None:
    """Admin routes need ``Authorization: Bearer <token>``, compared in constant time."""
    token = state.settings.admin_token
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not token or not secrets.compare_digest(given, token):
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <token>'")
