"""Pseudonymisation and PII masking, applied at ingest so no raw id reaches an artifact.

User and session ids are replaced by a keyed hash (HMAC-SHA256, truncated to 16 hex
characters): stable for one key, so joins across tables and runs still work, and not
reversible without the key. The key comes from config or an environment variable.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable

import polars as pl
import polars_hash  # noqa: F401  (registers the ``chash`` expressions: native HMAC-SHA256)

from shelfops.errors import ConfigError

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# phone numbers: separated 3-3-4 groups (optional +country code), or + followed by 9-14 digits;
# bare digit runs are left alone (model numbers and SKUs look like that)
_PHONE = r"(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}|\+\d{9,14}"
PHONE = re.compile(_PHONE)
EMAIL_MASK = "<email>"
PHONE_MASK = "<phone>"

_PL_EMAIL = EMAIL.pattern
_PL_PHONE = _PHONE


def resolve_key(key: str | None, key_env: str) -> tuple[bytes, str]:
    """Return (key bytes, where it came from). Generates a fresh key when none is set."""
    if key:
        return key.encode(), "config"
    env = os.environ.get(key_env)
    if env:
        return env.encode(), f"environment variable {key_env}"
    return secrets.token_hex(32).encode(), f"generated for this run (set {key_env} to keep ids stable across runs)"


def pseudonymise(value: str, key: bytes) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, 16 hex characters (one id; many: :func:`keyed_hasher`)."""
    return keyed_hasher(key)(value)


def keyed_hasher(key: bytes) -> Callable[[str], str]:
    """:func:`pseudonymise` with ``key`` bound, for hashing many ids: HMAC's two key blocks
    (RFC 2104) are hashed once here and each id costs only its own two SHA-256 blocks
    (0.75 us an id against 1.8 us for ``hmac.new``, whose digests these are)."""
    if len(key) > 64:  # SHA-256's block: longer keys are hashed first, as HMAC does
        key = hashlib.sha256(key).digest()
    block = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def one(value: str) -> str:
        i = inner.copy()
        i.update(value.encode())
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()[:16]

    return one


def keyed_column_hasher(key: bytes) -> Callable[[pl.Series], pl.Series]:
    """:func:`pseudonymise` of every value of a string column at once (nulls stay null): the
    same digests, computed in native code (polars-hash's HMAC-SHA256, Rust, the GIL released)
    at 0.38 us an id against ~1.4 us for :func:`keyed_hasher` called from Python with its list
    and Series conversions, which also held the GIL the ingest's checking threads share. A key
    that is not UTF-8 text (the plugin takes the key as text) is hashed id by id."""
    try:
        text = key.decode()
    except UnicodeDecodeError:
        one = keyed_hasher(key)
        return lambda s: pl.Series(s.name, [None if v is None else one(v) for v in s.to_list()], dtype=pl.String)
    expr = pl.first().chash.hmac_sha256(key=text).str.slice(0, 16)
    return lambda s: s.to_frame().select(expr).to_series().rename(s.name)


def mask_pii_expr(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all(_PL_EMAIL, EMAIL_MASK).str.replace_all(_PL_PHONE, PHONE_MASK)


def mask_pii(text: str) -> str:
    return PHONE.sub(PHONE_MASK, EMAIL.sub(EMAIL_MASK, text))


def check_key(key: bytes) -> None:
    if len(key) < 16:
        raise ConfigError(["data.privacy.key: pseudonymisation key must be at least 16 characters"])
