"""Which model answers a request during a rollout, and what is recorded of it: the canary's
sticky share of shoppers, the interleave step's share, the shadow mirror (off the response
path), and each arm's numbers that the rollout controller (:mod:`shelfops.monitor.rollout`)
decides on. The routes call these; :class:`shelfops.serve.state.State` holds the data."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from typing import Any

from shelfops.errors import DependencyUnavailable
from shelfops.serve.host import Slot
from shelfops.serve.state import Rollout, State


def arm_of(task: str, who: str, percent: int) -> bool:
    """Sticky canary assignment: the same user (or session) always lands in the same arm."""
    return int(hashlib.sha256(f"{task}:{who}".encode()).hexdigest()[:8], 16) % 100 < percent


def route_key(state: State, task: str, who: str | None) -> str:
    """The production slot's key, or the canary candidate's for users hashed into its share."""
    r = state.rollouts.get(task)
    key = f"{task}:candidate"
    if r and r.mode == "canary" and who and key in state.host.slots and arm_of(task, who, r.percent):
        return key
    return task


def route(state: State, task: str, who: str | None) -> Slot:
    """The slot that answers ``who`` (held: release it, or let :func:`served` do it)."""
    return state.host.get(route_key(state, task, who))


def interleaving(state: State, task: str, who: str | None) -> Rollout | None:
    """The interleave step this shopper's request takes part in (sticky by session or user),
    if any; none while the shared store is down (its credits could not be kept)."""
    r = state.rollouts.get(task)
    if r and r.mode == "interleave" and who and f"{task}:candidate" in state.host.slots \
            and arm_of(f"{task}:interleave", who, r.percent) and state.shared.status()["ok"]:
        return r
    return None


def experiment_key(task: str, production: str, candidate: str) -> str:
    """Where an interleaving experiment's counts live in the shared store."""
    return f"interleave:{task}:{production}:{candidate}"


async def rollouts_now(state: State) -> dict:
    """Every running rollout with each arm's numbers over the current step (GET /v1/rollout,
    the dashboard): requests, errors, p99, feedback, and in an interleave step the candidate's
    interleaved searches, wins and losses."""
    out = {}
    for task, r in state.rollouts.items():
        prod = state.host.slots.get(task)
        arms = f"{task}:interleave" if r.mode == "interleave" else task  # (serve.routes.shop.interleave_rows)
        cand = state.observed(arms, r.version)
        if r.mode == "interleave" and prod is not None:
            try:
                counts = await state.shared.counts(experiment_key(task, prod.version, r.version))
            except DependencyUnavailable as e:  # the controller holds until the counts are back
                counts, cand["unavailable"] = {}, str(e)
            cand.update({k: int(counts.get(k, 0)) for k in ("interleaved", "wins", "losses")})
        out[task] = {"mode": r.mode, "percent": r.percent, "candidate": r.version,
                     "production": prod.version if prod else None, "seconds": round(time.time() - r.started, 1),
                     "observed": {"candidate": cand,
                                  "production": state.observed(arms, prod.version) if prod else None}}
    return out


async def mirror(state: State, task: str, ask: Callable[[Slot], Any], agree: Callable[[Any], float]) -> None:
    """Mirror a request to the shadow candidate, off the response path: ``ask`` it the same
    question, and record how far its answer ``agree``s with production's (0..1)."""
    c = state.host.get(f"{task}:candidate")
    arm = state.arm(task, c.version)
    t0 = time.perf_counter()
    try:
        got = await ask(c)
        arm["overlap"].append(float(agree(got)))
        state.metrics.shadow_overlap(task, c.version, arm["overlap"][-1])
    except Exception:  # a failing shadow never affects users; it is counted against the candidate
        arm["errors"] += 1
    finally:
        c.release()
        arm["requests"] += 1
        arm["latency_ms"].append((time.perf_counter() - t0) * 1e3)


def shadow(state: State, task: str, ask: Callable[[Slot], Any], agree: Callable[[Any], float]) -> None:
    """Start a mirror when ``task`` has a shadow candidate; never waits for it."""
    r = state.rollouts.get(task)
    if r and r.mode == "shadow" and f"{task}:candidate" in state.host.slots and (
            (share := state.settings.serve.shadow_fraction) >= 1 or random.random() < share):
        t = asyncio.create_task(mirror(state, task, ask, agree))
        state.shadow_tasks.add(t)
        t.add_done_callback(state.shadow_tasks.discard)


async def served(state: State, task: str, slot: Slot, call):
    """Run one model call for a request, counted in its version's arm (requests, errors,
    latency: what the rollout controller compares), and release the slot."""
    arm = state.arm(task, slot.version)
    t0 = time.perf_counter()
    try:
        return await call
    except Exception:
        arm["errors"] += 1
        raise
    finally:
        slot.release()
        arm["requests"] += 1
        arm["latency_ms"].append((time.perf_counter() - t0) * 1e3)
