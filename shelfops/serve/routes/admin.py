"""What the rollout controller and operators change, behind the admin token: start or move a
rollout (shadow, interleave for a share of shoppers, canary %), end it (promote or roll back), hot-swap a model folder in."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastapi import APIRouter, Depends

from shelfops.errors import ArtifactNotFound, BadRequest, ShelfopsError, Unavailable
from shelfops.serve.deps import Served, admin
from shelfops.serve.routing import experiment_key
from shelfops.serve.schemas import (
    ERRORS,
    ReloadIn,
    ReloadOut,
    RolloutEndIn,
    RolloutEndOut,
    RolloutIn,
    RolloutStepOut,
)
from shelfops.serve.state import Rollout, swap

# how long a promotion made here waits for the registry's alias to follow before the watcher
# goes by the registry again (the controller moves the alias right after; a minute covers a slow
# registry and leaves a controller that died between the two no longer than that out of step)
PROMOTION_WAIT_S = 60.0

router = APIRouter(dependencies=[Depends(admin)])


@router.post("/admin/rollout", response_model=RolloutStepOut, responses=ERRORS)
async def rollout(body: RolloutIn, state: Served):
    """Start or move a rollout: load the candidate beside production (shadow or canary %)."""
    cur = state.rollouts.get(body.task)
    if body.version and (cur is None or cur.version != body.version):
        folder = await _candidate(body, state)
        await swap(state, body.task, folder, body.version, key=f"{body.task}:candidate")
        cur = Rollout(body.mode, body.percent, body.version, folder, time.time())
    elif cur is None:
        raise BadRequest("no rollout running: give folder and version to start one", field="folder")
    new = Rollout(body.mode, body.percent if body.mode != "shadow" else 0, cur.version, cur.folder, cur.started,
                  body.credit)
    old = state.rollouts.get(body.task)
    if old is None or (old.mode, old.percent, old.version) != (new.mode, new.percent, new.version):
        prod = state.host.slots.get(body.task)
        state.reset_window(body.task, [new.version] + ([prod.version] if prod else []))
        if new.mode == "interleave" and prod is not None:  # an experiment's counts start afresh
            await state.shared.forget(experiment_key(body.task, prod.version, new.version))
    state.rollouts[body.task] = new
    if old is None or (old.mode, old.percent) != (new.mode, new.percent):
        state.log_rollout(body.task, new.mode, new.version, new.percent)
    return {"task": body.task, "mode": body.mode, "percent": state.rollouts[body.task].percent,
            "candidate": cur.version}


async def _candidate(body: RolloutIn, state) -> Path:
    """The candidate's folder: the one named, where this server can read it; else its version
    fetched from the registry this server follows (the controller may run on another machine)."""
    if body.folder and (Path(body.folder) / "manifest.json").exists():
        return Path(body.folder)
    fetch = state.settings.fetch_version
    if fetch is None:
        raise BadRequest(f"{body.folder} is not a model folder (no manifest.json)" if body.folder else
                         "give the candidate's folder: this server follows no registry to fetch "
                         f"version {body.version} from", field="folder")
    try:
        return await asyncio.get_running_loop().run_in_executor(None, fetch, body.task, body.version, body.model)
    except ArtifactNotFound as e:
        raise BadRequest(f"version {body.version} for {body.task}: {e}", field="version") from e
    except ShelfopsError:
        raise
    except Exception as e:  # the registry did not answer: nothing starts, production keeps serving
        raise Unavailable(f"could not fetch version {body.version} for {body.task} from the registry: {e}") from e


@router.post("/admin/rollout/end", response_model=RolloutEndOut, responses=ERRORS)
async def rollout_end(body: RolloutEndIn, state: Served):
    """Promote the candidate to production (hot swap) or roll it back (drop it)."""
    r = state.rollouts.pop(body.task, None)
    if r is None:
        raise BadRequest(f"no rollout running for {body.task}", field="task")
    if body.promote:
        await swap(state, body.task, r.folder, r.version)
        # the registry's alias moves after this answer: the watcher waits for it (state.follows)
        state.promoted[body.task] = (r.version, time.monotonic() + PROMOTION_WAIT_S)
    await state.host.remove(f"{body.task}:candidate")
    state.log_rollout(body.task, "promoted" if body.promote else "rolled back", r.version,
                      100 if body.promote else 0)
    return {"task": body.task, "promoted": body.promote, "production": state.host.slots[body.task].version}


@router.post("/admin/reload", response_model=ReloadOut, responses=ERRORS)
async def reload(body: ReloadIn, state: Served):
    folder = Path(body.folder)
    if not (folder / "manifest.json").exists():
        raise BadRequest(f"{folder} is not a model folder (no manifest.json)", field="folder")
    t0 = time.perf_counter()
    try:
        slot = await swap(state, body.task, folder, body.version)
    except ShelfopsError:
        raise
    except Exception as e:  # the old model keeps serving
        raise Unavailable(f"could not load {folder}: {e}; the serving version is unchanged") from e
    return {"task": body.task, "version": slot.version, "seconds": round(time.perf_counter() - t0, 2)}
