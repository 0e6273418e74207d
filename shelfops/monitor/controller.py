"""The rollout reconciler: observe the server, decide (rollout.decide), act, record.

State (model, candidate, stage, when the stage began, status) lives in the operational
store, so a controller killed mid-rollout resumes where it was: ``tick`` first makes the
server match the stored stage, then decides. Every stage change moves a registry alias
(shadow, canary, production) with the decision's evidence, or clears ``canary`` on a
rollback, so ``shelfops registry history`` tells the rollout's story. The stage and its alias
move commit in one transaction: a store that fails between them (PostgreSQL restarting) leaves
both before, and the retried tick decides again, so no move is recorded twice. ``run`` retries a
tick whose store or server did not answer, backing off (:func:`backoff`).

The server is reached through a small transport (HTTP by default); tests may pass another.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from shelfops.errors import ShelfopsError
from shelfops.monitor.rollout import Decision, Observed, Policy, Stage, decide, mode_of, traffic_of
from shelfops.registry.ops_store import META, now

ROLLOUTS = sa.Table(
    "shelfops_rollouts", META,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("candidate", sa.String(50), nullable=False),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("stage_started", sa.Float, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # running | promoted | rolled_back
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)


#: what a tick may meet while a store or the server restarts; retried, never fatal to ``run``
OUTAGES = (sa.exc.SQLAlchemyError, httpx.HTTPError, OSError, ShelfopsError)


@dataclass
class RolloutRow:
    model: str
    candidate: str
    stage: str | int
    stage_started: float
    status: str
    reason: str


def _stage(s: str) -> Stage:
    return int(s) if s.isdigit() else s


class HttpServer:
    """The transport to one shelfops server's rollout endpoints."""

    def __init__(self, url: str, token: str, timeout: float = 120.0) -> None:
        self.c = httpx.Client(base_url=url, timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def status(self) -> dict:
        return self.c.get("/v1/rollout").raise_for_status().json()

    def set(self, **body) -> dict:
        return self.c.post("/admin/rollout", json=body).raise_for_status().json()

    def end(self, **body) -> dict:
        return self.c.post("/admin/rollout/end", json=body).raise_for_status().json()

    def traffic(self, since: float) -> list[dict]:
        return self.c.get("/v1/traffic", params={"since": since}).raise_for_status().json()["records"]


class Controller:
    def __init__(self, registry, server, model: str, *, policy: Policy, task: str = "search",
                 clock: Callable[[], float] = time.time, actor: str = "controller") -> None:
        self.reg, self.server, self.model, self.task = registry, server, model, task
        if task == "classify":  # no shopper feedback on a category: errors, latency, divergence decide
            policy = dataclasses.replace(policy, min_impressions=0)
        self.policy, self.clock, self.actor = policy, clock, actor
        self.engine = registry.ops.engine
        META.create_all(self.engine)
        self.failures: list[str] = []  # ticks that failed on an unavailable store or server, why
        self.last_ok: float | None = None  # when a tick last went through (clock)

    # ----------------------------------------------------------------- state
    def row(self) -> RolloutRow | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(ROLLOUTS).where(ROLLOUTS.c.model == self.model)).mappings().first()
        return None if r is None else RolloutRow(r["model"], r["candidate"], _stage(r["stage"]),
                                                 r["stage_started"], r["status"], r["reason"])

    def _save(self, row: RolloutRow, c: sa.Connection | None = None) -> None:
        """Store ``row``, in the caller's transaction ``c`` when given (with an alias move)."""
        if c is None:
            with self.engine.begin() as c:
                self._save(row, c)
            return
        vals = dict(candidate=row.candidate, stage=str(row.stage), stage_started=row.stage_started,
                    status=row.status, reason=row.reason, updated_at=now())
        if c.execute(ROLLOUTS.update().where(ROLLOUTS.c.model == self.model).values(**vals)).rowcount == 0:
            c.execute(ROLLOUTS.insert().values(model=self.model, **vals))

    # ----------------------------------------------------------------- actions
    def start(self, candidate: str, reason: str = "new candidate") -> RolloutRow:
        """Begin a rollout in shadow; the candidate must be a registered version."""
        folder = self.reg.load(self.model, candidate)
        row = RolloutRow(self.model, candidate, "shadow", self.clock(), "running", reason)
        self.reg.promote(self.model, candidate, "shadow", reason=reason, actor=self.actor,
                         with_move=lambda c: self._save(row, c))
        self.server.set(task=self.task, mode="shadow", folder=str(folder), version=candidate, model=self.model)
        return row

    def _percent(self, stage: Stage) -> int:
        """The server's percent at ``stage``: the canary's share, or the share of shoppers interleaved."""
        return self.policy.interleave_percent if stage == "interleave" else traffic_of(stage)

    def _sync(self, row: RolloutRow, live: dict) -> None:
        """Make the server match the stored stage (after a restart of either)."""
        want_mode = mode_of(row.stage)
        if live.get("candidate") != row.candidate or live.get("mode") != want_mode or \
                live.get("percent", 0) != self._percent(row.stage):
            folder = self.reg.load(self.model, row.candidate)
            self.server.set(task=self.task, mode=want_mode, percent=self._percent(row.stage), folder=str(folder),
                            version=row.candidate, model=self.model, credit=self.policy.interleave_credit)

    def tick(self) -> Decision | None:
        row = self.row()
        if row is None or row.status != "running":
            return None
        status = self.server.status()
        live = status.get(self.task) or {}
        if not live:
            self._sync(row, live)
            return None
        self._sync(row, live)
        obs = live.get("observed") or {}
        cand = Observed(**{k: v for k, v in (obs.get("candidate") or {}).items() if k in Observed.__annotations__})
        prod = Observed(**{k: v for k, v in (obs.get("production") or {}).items() if k in Observed.__annotations__})
        d = decide(row.stage, self.clock() - row.stage_started, cand, prod, self.policy)
        if d.action == "hold":
            return d
        evidence: dict[str, Any] = {"decision": d.action, "from_stage": row.stage, "to_stage": d.stage,
                                    "observed": d.evidence}
        if d.action == "rollback":
            new = dataclasses.replace(row, status="rolled_back", reason=d.reason)
            self.server.end(task=self.task, promote=False)
            self.reg.clear(self.model, "canary" if row.stage != "shadow" else "shadow", reason=d.reason,
                           actor=self.actor, evidence=evidence, with_move=lambda c: self._save(new, c))
        elif d.action == "promote":
            new = dataclasses.replace(row, status="promoted", reason=d.reason, stage=100)
            self.server.end(task=self.task, promote=True)
            self.reg.promote(self.model, row.candidate, "production", reason=d.reason, actor=self.actor,
                             evidence=evidence, with_move=lambda c: self._save(new, c))
        else:
            new = dataclasses.replace(row, stage=d.stage, stage_started=self.clock(), reason=d.reason)
            self.server.set(task=self.task, mode=mode_of(d.stage), percent=self._percent(d.stage),
                            credit=self.policy.interleave_credit)
            self.reg.promote(self.model, row.candidate, "canary", reason=d.reason, actor=self.actor,
                             evidence=evidence, with_move=lambda c: self._save(new, c))
        return d

    def run(self, *, every: float = 5.0, until_done: bool = True, max_seconds: float | None = None,
            sleep: Callable[[float], None] = time.sleep, max_failures: int = 20) -> RolloutRow | None:
        """Tick every ``every`` seconds until the rollout ends (or ``max_seconds``); a tick whose
        store or server failed is retried after :func:`backoff` (each failure is in ``failures``),
        up to ``max_failures`` in a row (~8 minutes), after which the last error is raised."""
        t0, failed, row = self.clock(), 0, None
        while True:
            try:
                self.tick()
                row = self.row()
                failed, self.last_ok = 0, self.clock()
            except OUTAGES as e:
                failed += 1
                self.failures.append(f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}")
                if failed >= max_failures:
                    raise
            if failed == 0 and until_done and (row is None or row.status != "running"):
                return row
            if max_seconds is not None and self.clock() - t0 > max_seconds:
                return row
            sleep(backoff(failed, every))


def backoff(failures: int, every: float, cap: float = 30.0) -> float:
    """Seconds before the next tick: ``every`` while things work, then doubling from 0.5 s per
    consecutive failure up to ``cap`` (a restarting database is back in seconds; a long outage
    is polled twice a minute)."""
    return every if failures == 0 else min(cap, 0.5 * 2 ** (failures - 1))

