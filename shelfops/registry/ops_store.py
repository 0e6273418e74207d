"""The operational store: where aliases point and the audit history of every move.

SQLAlchemy Core over SQLite by default (a file under the shelfops home) or PostgreSQL by
URL. An alias move is one transaction: a compare-and-set on the alias row (its revision
must be the one the mover read) plus the audit row. Of two processes moving the same alias
at once, exactly one commits; the other gets ``PromotionRefused`` and nothing it did
persists, so the history never shows a move that did not happen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from shelfops import redact
from shelfops.errors import PromotionRefused, RegistryError

META = sa.MetaData()

ALIASES = sa.Table(
    "shelfops_aliases", META,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("alias", sa.String(50), primary_key=True),
    sa.Column("version", sa.String(50), nullable=True),  # null = alias cleared
    sa.Column("rev", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

AUDIT = sa.Table(
    "shelfops_audit", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("alias", sa.String(50), nullable=False),
    sa.Column("from_version", sa.String(50), nullable=True),
    sa.Column("to_version", sa.String(50), nullable=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),  # promote | rollback | force | controller...
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),  # JSON
)


@dataclass(frozen=True)
class Move:
    id: int
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    at: str
    actor: str
    action: str
    reason: str
    evidence: dict[str, Any]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class OpsStore:
    """Alias state and audit history. ``url``: any SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...)."""

    def __init__(self, url: str) -> None:
        self.url = url
        # pre-ping: a pooled connection that died with a database restart is replaced, not used
        kw: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30}
        elif url.startswith("postgresql"):
            kw["connect_args"] = {"connect_timeout": 5}  # a server that is down fails fast, named
        try:
            self.engine = sa.create_engine(url, **kw)
            META.create_all(self.engine)
        except Exception as e:  # driver / connection errors come in many types
            raise RegistryError(f"operational store {redact.url(url)!r} is not reachable: {e}") from e

    def aliases(self, model: str) -> dict[str, str]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(ALIASES.c.alias, ALIASES.c.version)
                             .where(ALIASES.c.model == model)).all()
        return {a: v for a, v in rows if v is not None}

    def revisions(self, model: str) -> dict[str, tuple[str | None, int]]:
        """alias -> (version or None when unset, revision), every alias the model ever had."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(ALIASES.c.alias, ALIASES.c.version, ALIASES.c.rev)
                             .where(ALIASES.c.model == model)).all()
        return {a: (v, r) for a, v, r in rows}

    def models(self) -> list[str]:
        with self.engine.connect() as c:
            return sorted(r[0] for r in c.execute(sa.select(ALIASES.c.model).distinct()))

    def get(self, model: str, alias: str) -> tuple[str | None, int]:
        """(version, revision) of an alias; (None, 0) if it was never set."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(ALIASES.c.version, ALIASES.c.rev).where(
                (ALIASES.c.model == model) & (ALIASES.c.alias == alias))).first()
        return (row[0], row[1]) if row else (None, 0)

    def move(self, model: str, alias: str, to_version: str | None, *, expected_rev: int, actor: str,
             action: str, reason: str, evidence: dict[str, Any] | None = None,
             also: list[tuple[str, str | None, int]] | None = None, side_effect=None,
             with_move: Callable[[sa.Connection], None] | None = None) -> Move:
        """Move ``alias`` (and the ``also`` aliases: (alias, version, expected_rev)) in one
        transaction, if nobody moved them since they were read. ``with_move(connection)`` writes
        what must commit with the move (the rollout controller's stage), and ``side_effect()``
        runs last inside the transaction (e.g. setting the MLflow alias); if either raises,
        nothing is committed."""
        moves = [(alias, to_version, expected_rev), *(also or [])]
        at = now()
        try:
            with self.engine.begin() as c:
                first: Move | None = None
                for a, v, rev in moves:
                    old = c.execute(sa.select(ALIASES.c.version).where(
                        (ALIASES.c.model == model) & (ALIASES.c.alias == a))).first()
                    if rev == 0 and old is None:
                        c.execute(ALIASES.insert().values(model=model, alias=a, version=v, rev=1,
                                                          updated_at=at))
                    else:
                        res = c.execute(ALIASES.update().where(
                            (ALIASES.c.model == model) & (ALIASES.c.alias == a) & (ALIASES.c.rev == rev)
                        ).values(version=v, rev=ALIASES.c.rev + 1, updated_at=at))
                        if res.rowcount != 1:
                            raise PromotionRefused(
                                f"{model}@{a} was moved by someone else since it was read "
                                f"(expected revision {rev}); nothing changed", model=model, alias=a)
                    from_v = old[0] if old else None
                    ev = json.dumps(evidence or {}, default=str, sort_keys=True)
                    rid = c.execute(AUDIT.insert().values(
                        model=model, alias=a, from_version=from_v, to_version=v, at=at, actor=actor,
                        action=action, reason=reason, evidence=ev)).inserted_primary_key[0]
                    if first is None:
                        first = Move(int(rid), model, a, from_v, v, at, actor, action, reason, evidence or {})
                if with_move is not None:
                    with_move(c)
                if side_effect is not None:
                    side_effect()
        except SAIntegrityError as e:  # two first-time inserts of the same alias row
            raise PromotionRefused(f"{model}@{alias} was set by someone else at the same time; "
                                   "nothing changed", model=model, alias=alias) from e
        assert first is not None
        return first

    def history(self, model: str | None = None, limit: int = 1000) -> list[Move]:
        q = sa.select(AUDIT).order_by(AUDIT.c.id)
        if model:
            q = q.where(AUDIT.c.model == model)
        with self.engine.connect() as c:
            rows = c.execute(q.limit(limit)).mappings().all()
        return [Move(r["id"], r["model"], r["alias"], r["from_version"], r["to_version"], r["at"],
                     r["actor"], r["action"], r["reason"], json.loads(r["evidence"])) for r in rows]
