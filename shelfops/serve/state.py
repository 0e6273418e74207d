"""What one server process holds and does between requests: its settings, the catalogue and
its indexes, the model slots, rollouts and their per-version arms, shadow mirroring, hot swaps,
following the registry, and what it can say about its dependencies. The routes
(``serve.routes.shop``, ``serve.routes.ops``, ``serve.routes.admin``) are thin over this."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shelfops import redact
from shelfops.serve.dense import UntunedDense
from shelfops.serve.host import ModelHost, Slot
from shelfops.serve.metrics import ServeMetrics
from shelfops.serve.sessions import shared_state
from shelfops.serve.settings import ServeSettings
from shelfops.train.baselines import BM25Index
from shelfops.train.hybrid import fuse
from shelfops.train.index import build_index, choose_kind, past_queries, saved_embeddings
from shelfops.train.pairs import item_texts

DEFAULT_RERANK_DEPTH = 50  # a search model whose optimize stage chose no depth
SERVED_PATHS = frozenset({"/v1/search", "/v1/rerank", "/v1/recommend", "/v1/classify"})


class ServedCatalogue:
    """Items the API can return, with the retrieval index over them (rebuilt on a swap)."""

    def __init__(self, data_dir: Path) -> None:
        items = item_texts(pl.read_parquet(Path(data_dir) / "items.parquet"))
        self.ids = items["item_id"].to_list()
        # what an approximate dense index is tuned for; an exact one (a small catalogue) needs none
        self.queries = past_queries(Path(data_dir)) if choose_kind(len(self.ids)) != "flat" else []
        self.texts = items["text"].to_list()
        self.titles = items["title"].to_list()
        self.categories = items["category"].fill_null("").to_list()
        self.row = {i: r for r, i in enumerate(self.ids)}
        self.index = None
        self.index_version: str | None = None
        self._bm25 = None
        self.untuned: UntunedDense | None = None  # the dense side when no bi-encoder is served

    def build_index(self, emb: np.ndarray, version: str, probes: np.ndarray | None = None) -> None:
        self.index, _ = build_index(np.ascontiguousarray(emb, dtype=np.float32), probes=probes)
        self.index_version = version

    def bm25(self):
        if self._bm25 is None:
            self._bm25 = BM25Index(self.texts)
        return self._bm25


def reusable_embeddings(folder: Path, ids: list[str]) -> np.ndarray | None:
    """The catalogue embeddings a retrieval model's train stage saved (``train.index.saved_embeddings``)
    when that model is what is served and the catalogue is the same, row for row. None for an
    optimized folder (it serves a variant with numbers of its own) or another catalogue."""
    return None if (folder / "serving.json").exists() else saved_embeddings(folder / "index", ids)


def candidates(lexical: np.ndarray | None, dense: np.ndarray | None, weight: float, n: int,
               keep: Callable[[int], bool]) -> list[int]:
    """One search's candidates: each retriever's rows filtered first (a category filter, the
    release's catalogue), then fused by rank (train.hybrid.fuse), the first ``n`` kept."""
    lists = [np.asarray([i for i in (a if a is not None else []) if i >= 0 and keep(int(i))] or [-1])
             for a in (lexical, dense)]
    if dense is None:
        weight = 0.0
    elif lexical is None:
        weight = 1.0
    fused = fuse(lists[0][None, :], lists[1][None, :], weight, n=n)[0]
    return [int(i) for i in fused if i >= 0]


def dense_status(cat: ServedCatalogue | None) -> str:
    """Which dense retriever search can use now, for /readyz."""
    if cat is None:
        return "no catalogue"
    if cat.index is not None:
        return f"bi-encoder v{cat.index_version}"
    u = cat.untuned
    if u is None:
        return "none"
    if u.ready:  # and what embeds each query: a failed ONNX export says why it is PyTorch
        q = u.query
        return f"untuned encoder ready, queries by {q.engine}" + (f" ({q.why_torch})" if q.why_torch else "")
    return f"untuned encoder failed: {u.error}" if u.error else "untuned encoder: embedding the catalogue"


def known_rows(cat: ServedCatalogue, data_dir: str | None) -> frozenset[int] | None:
    """Rows of the served catalogue that a release's data snapshot holds; None when it holds
    them all (or its snapshot is not on this machine): new products reach users with the
    first release built on a catalogue that has them."""
    path = Path(data_dir) / "items.parquet" if data_dir else None
    if path is None or not path.exists():
        return None
    ids = pl.read_parquet(path, columns=["item_id"])["item_id"].to_list()
    rows = frozenset(cat.row[i] for i in ids if i in cat.row)
    return None if len(rows) == len(cat.ids) else rows


@dataclass
class Rollout:
    mode: str  # shadow | interleave | canary
    percent: int  # canary: the candidate's share of shoppers; interleave: the share whose searches interleave
    version: str
    folder: Path
    started: float
    credit: str = "unique"  # interleave: which clicks credit a ranker (eval.interleave.contested)


class State:
    def __init__(self, s: ServeSettings) -> None:
        self.settings = s
        self.host = ModelHost(batcher=s.batcher)
        self.metrics = ServeMetrics()
        self.catalogue: ServedCatalogue | None = None
        self.shared = shared_state(s.serve.state_url, session_length=s.serve.session_length,
                                   request_log=s.request_log)
        self.ready = False
        self.started = time.time()
        self.registry_error: str | None = None  # the registry's last poll failed: why (None: it answered)
        self.refused: set[tuple[str, str]] = set()  # versions that failed to load (not retried)
        self.rollouts: dict[str, Rollout] = {}
        # task -> (version, until): a rollout promoted here ahead of the registry's alias move (the
        # controller ends the rollout on the server, then moves the alias); the watcher does not
        # swap the task to another version until the registry names this one, or ``until`` passes
        self.promoted: dict[str, tuple[str, float]] = {}
        self.arms: dict[tuple[str, str], dict] = {}  # (task, version) -> requests, errors, latencies
        self.shadow_tasks: set[asyncio.Task] = set()
        self.live: deque[tuple[float, float]] = deque(maxlen=50_000)  # (time, seconds) of served requests
        self.registry_cache: tuple[float, dict] = (0.0, {})
        self.traffic: deque[dict] = deque(maxlen=s.traffic_log)  # searches and clicks, oldest first
        self.timeline: list[dict] = []  # rollout steps with traffic shares, for the dashboard

    def log_rollout(self, task: str, what: str, candidate: str | None, percent: int) -> None:
        prod = self.host.slots.get(task)
        self.timeline.append({"t": time.time(), "task": task, "event": what, "candidate": candidate,
                              "production": prod.version if prod else None, "percent": percent})

    def arm(self, task: str, version: str) -> dict:
        return self.arms.setdefault((task, version), {"requests": 0, "errors": 0,
                                                      "latency_ms": deque(maxlen=5000), "overlap": deque(maxlen=5000)})

    def reset_window(self, task: str, versions: list[str]) -> None:
        """A rollout step starts: its numbers are counted afresh (Prometheus counters keep totals)."""
        for v in versions:
            for arms in (task, f"{task}:interleave"):
                self.arms.pop((arms, v), None)
                self.metrics.online.pop((arms, v), None)

    def observed(self, task: str, version: str) -> dict:
        a = self.arm(task, version)
        fb = self.metrics.online.get((task, version), {})
        lat = sorted(a["latency_ms"])
        return {"requests": a["requests"], "errors": a["errors"],
                "p99_ms": float(lat[int(0.99 * (len(lat) - 1))]) if lat else 0.0,
                "impressions": fb.get("impression", 0), "clicks": fb.get("click", 0),
                "conversions": fb.get("purchase", 0),
                "overlap": float(np.mean(a["overlap"])) if a["overlap"] else None}


async def _warm(state: State, slot: Slot) -> None:
    """Run real inputs through a new slot before it takes traffic (and index the catalogue)."""
    cat = state.catalogue
    if slot.task == "search" and cat is not None:
        slot.known_rows = known_rows(cat, slot.meta.get("data"))
        # a search model validated with the untuned encoder as its dense retriever: embed the
        # catalogue under it, in the background (search stays lexical until it is ready)
        enc = slot.meta.get("dense_encoder")
        if enc and state.settings.serve.retriever != "lexical" and (
                cat.untuned is None or cat.untuned.encoder_name != enc):
            cat.untuned = UntunedDense(enc, cat.texts, max_length=int(slot.meta.get("dense_max_length") or 64),
                                       queries=cat.queries)
    if slot.task == "search":
        await slot.batcher.submit_many([("warm up", t) for t in (cat.texts[:8] if cat else ["x"])])
    elif slot.task == "retrieval" and cat is not None:
        # one query alone, as a search sends it: a trained model's ONNX export for single queries
        # is made (or opened) and checked now, before any shopper waits for it (optimize.shipped)
        await slot.batcher.submit("warm up")
        emb = reusable_embeddings(slot.folder, cat.ids)
        if emb is None:
            emb = np.stack(await slot.batcher.submit_many(cat.texts))
        probes = await slot.batcher.submit_many(cat.queries) if cat.queries else None  # the index tuned for them
        cat.build_index(emb, slot.version, np.stack(probes) if probes else None)
    elif slot.task == "classify":
        await slot.batcher.submit_many(["warm up"] * 4)
    elif slot.task == "recommend":
        await slot.batcher.submit(([], 1))


async def swap(state: State, task: str, folder: Path, version: str, *, key: str | None = None) -> Slot:
    def on_batch(n: int, secs: float, task=task) -> None:
        state.metrics.batch(task, n, secs)

    slot = await state.host.swap(task, folder, version, warm=lambda s: _warm(state, s), on_batch=on_batch,
                                 key=key)
    state.metrics.swap(task)
    return slot


async def follow(state: State) -> None:
    """Follow alias moves: when the wanted version of a task changes, swap it in."""
    s = state.settings
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(s.watch_seconds)
        try:
            wanted = await asyncio.wait_for(loop.run_in_executor(None, s.watch), max(30.0, 6 * s.watch_seconds))
        except Exception as e:  # registry unreachable or hanging: keep serving what we have
            state.metrics.watch_error()
            state.registry_error = redact.url(f"registry: {type(e).__name__}: {e}")
            continue
        state.registry_error = None
        for task, (folder, version) in wanted.items():
            cur = state.host.slots.get(task)
            if not follows(state, task, version, time.monotonic()):
                continue
            if (cur is None or cur.version != version) and (task, version) not in state.refused:
                try:
                    await swap(state, task, Path(folder), version)
                except Exception:  # a version that fails to load never replaces the serving one
                    state.refused.add((task, version))
                    state.metrics.watch_error()


def follows(state: State, task: str, wanted: str, now: float) -> bool:
    """Whether the watcher may act on the registry naming ``wanted`` for ``task``: not while a
    version promoted here by a rollout waits for the registry's alias to catch up (a poll read
    before the alias moved would swap the promoted version straight back out: seen as a server
    answering with the old version right after a promotion), unless that wait has expired."""
    pinned = state.promoted.get(task)
    if pinned is None:
        return True
    version, until = pinned
    if wanted == version or now > until:
        del state.promoted[task]
        return True
    return False


REPLICA = f"{socket.gethostname()}:{os.getpid()}"


def degraded(state: State, shared: bool) -> dict:
    """What an answer could not use, said in it: ``{}`` when nothing is missing."""
    st = state.shared.status()
    if shared and st["ok"]:
        return {}
    return {"degraded": [f"sessions: {st['name']} is unavailable; this answer used the request alone and "
                         "its request_id is known to this replica only"]}


def dependencies(state: State) -> dict:
    """Each outside store the server uses and whether it answers, for /readyz."""
    out = {"state": state.shared.status()}
    if state.settings.watch is not None:
        out["registry"] = ({"ok": True} if state.registry_error is None else
                           {"ok": False, "error": state.registry_error[:300]})
    return out
