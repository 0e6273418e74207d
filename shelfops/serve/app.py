"""The HTTP API (FastAPI): search, recommend, classify, events, health, metrics, admin.

    POST /v1/search     {query, k, filters}  bi-encoder + FAISS retrieval, cross-encoder re-rank
    POST /v1/rerank     {query, items}      cross-encoder scores for the caller's candidates
    POST /v1/recommend  {user | session, k}  SASRec over the user's history + live session events
    POST /v1/classify   {title, description} category + probability
    POST /v1/events     impressions, clicks, carts, purchases tied to the request that served them
    GET  /healthz /readyz /metrics           liveness, readiness, Prometheus
    POST /admin/reload  {task, folder, version}  hot swap (bearer token)

Every response carries the request id and the model versions that produced it, so feedback
events are attributed to a version (online click-through per version).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shelfops.config.schema import LimitsConfig
from shelfops import redact
from shelfops.errors import BadRequest, DependencyUnavailable, ShelfopsError, Unauthorized, Unavailable
from shelfops.serve import doors
from shelfops.serve.dashboard import report_file, state_document
from shelfops.serve.dense import UntunedDense
from shelfops.serve.host import ModelHost, Slot
from shelfops.serve.metrics import ServeMetrics
from shelfops.serve.sessions import shared_state
from shelfops.train.baselines import BM25Index
from shelfops.train.hybrid import DEFAULT_WEIGHT as DEFAULT_FUSION_WEIGHT
from shelfops.train.hybrid import final_order, fuse
from shelfops.train.index import build_index
from shelfops.train.index import search as faiss_search
from shelfops.train.pairs import item_texts

Text = Annotated[str, StringConstraints(min_length=1, max_length=512, strip_whitespace=True)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]


DEFAULT_RERANK_DEPTH = 50  # a search model whose optimize stage chose no depth
SERVED_PATHS = frozenset({"/v1/search", "/v1/rerank", "/v1/recommend", "/v1/classify"})


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchIn(_In):
    query: Text
    k: int = Field(10, ge=1, le=100)
    filters: dict[Literal["category"], Annotated[str, StringConstraints(max_length=256)]] = {}
    user: Id | None = None
    session: Id | None = None


ROLLOUT_TASKS = Literal["search", "recommend", "classify"]


class RolloutIn(_In):
    task: ROLLOUT_TASKS
    mode: Literal["shadow", "canary"]
    percent: int = Field(0, ge=0, le=100)
    folder: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    version: Id | None = None


class RolloutEndIn(_In):
    task: ROLLOUT_TASKS
    promote: bool = False


class RerankIn(_In):
    query: Text
    items: list[Id] = Field(min_length=1, max_length=200)


class RecommendIn(_In):
    user: Id | None = None
    session: Id | None = None
    k: int = Field(10, ge=1, le=100)


class ClassifyIn(_In):
    title: Text
    description: Annotated[str, StringConstraints(max_length=4096)] = ""


class EventIn(_In):
    type: Literal["impression", "view", "click", "add_to_cart", "purchase"]
    item_id: Id
    request_id: Id | None = None
    user: Id | None = None
    session: Id | None = None


class EventsIn(_In):
    events: list[EventIn] = Field(min_length=1, max_length=200)


class ReloadIn(_In):
    task: Literal["search", "retrieval", "classify", "recommend"]
    folder: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    version: Id


@dataclass
class ServeSettings:
    models: dict[str, tuple[Path, str]]  # task -> (folder, version)
    data_dir: Path | None = None
    admin_token: str | None = None
    rerank_depth: int | None = None  # None: the search model's own (serving.json), else DEFAULT_RERANK_DEPTH
    retriever: Literal["hybrid", "dense", "lexical"] = "hybrid"
    fusion_weight: float | None = None  # None: the search model's own (serving.json), else hybrid.DEFAULT_WEIGHT
    limits: LimitsConfig = field(default_factory=LimitsConfig)  # body size and time, rate (serve.doors)
    session_length: int = 50
    request_log: int = 100_000
    # where sessions and the served-request log live: None (this process) or redis://...,
    # shared by every replica (shelfops.serve.sessions)
    state_url: str | None = None
    # model-call batching: "asyncio" (shelfops.serve.batcher) or "ray" (@serve.batch, in Ray Serve replicas)
    batching: Literal["asyncio", "ray"] = "asyncio"
    shadow_fraction: float = 1.0  # share of requests mirrored to a shadow candidate
    traffic_log: int = 50_000  # searches and clicks kept for the drift monitor (GET /v1/traffic)
    # polled every watch_seconds: task -> (folder, version) that should serve now (e.g. the
    # registry's production alias); a different version is hot-swapped in
    watch: Callable[[], dict[str, tuple[Path, str]]] | None = None
    watch_seconds: float = 5.0
    # the dashboard: registry versions, aliases, gates and history (shelfops.serve.watch.registry_view),
    # and a folder of charts other stages wrote (optimize's pareto.png, drift reports)
    registry_view: Callable[[], dict] | None = None
    report_dir: Path | None = None
    extra: dict = field(default_factory=dict)


class Catalogue:
    """Items the API can return, with the retrieval index over them (rebuilt on a swap)."""

    def __init__(self, data_dir: Path) -> None:
        items = item_texts(pl.read_parquet(Path(data_dir) / "items.parquet"))
        self.ids = items["item_id"].to_list()
        self.texts = items["text"].to_list()
        self.titles = items["title"].to_list()
        self.categories = items["category"].fill_null("").to_list()
        self.row = {i: r for r, i in enumerate(self.ids)}
        self.index = None
        self.index_version: str | None = None
        self._bm25 = None
        self.untuned: UntunedDense | None = None  # the dense side when no bi-encoder is served

    def build_index(self, emb: np.ndarray, version: str) -> None:
        self.index, _ = build_index(np.ascontiguousarray(emb, dtype=np.float32))
        self.index_version = version

    def bm25(self):
        if self._bm25 is None:
            self._bm25 = BM25Index(self.texts)
        return self._bm25


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


def dense_status(cat: Catalogue | None) -> str:
    """Which dense retriever search can use now, for /readyz."""
    if cat is None:
        return "no catalogue"
    if cat.index is not None:
        return f"bi-encoder v{cat.index_version}"
    u = cat.untuned
    if u is None:
        return "none"
    return "untuned encoder ready" if u.ready else (f"untuned encoder failed: {u.error}" if u.error
                                                     else "untuned encoder: embedding the catalogue")


def known_rows(cat: Catalogue, data_dir: str | None) -> frozenset[int] | None:
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
    mode: str  # shadow | canary
    percent: int
    version: str
    folder: Path
    started: float


def arm_of(task: str, who: str, percent: int) -> bool:
    """Sticky canary assignment: the same user (or session) always lands in the same arm."""
    import hashlib

    return int(hashlib.sha256(f"{task}:{who}".encode()).hexdigest()[:8], 16) % 100 < percent


class State:
    def __init__(self, s: ServeSettings) -> None:
        self.settings = s
        self.host = ModelHost(batching=s.batching)
        self.metrics = ServeMetrics()
        self.catalogue: Catalogue | None = None
        self.shared = shared_state(s.state_url, session_length=s.session_length, request_log=s.request_log)
        self.ready = False
        self.started = time.time()
        self.last_watch_error: str | None = None
        self.registry_error: str | None = None  # the registry's last poll failed: why (None: it answered)
        self.refused: set[tuple[str, str]] = set()  # versions that failed to load (not retried)
        self.rollouts: dict[str, Rollout] = {}
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
            self.arms.pop((task, v), None)
            self.metrics.online.pop((task, v), None)

    def observed(self, task: str, version: str) -> dict:
        a = self.arm(task, version)
        fb = self.metrics.online.get((task, version), {})
        lat = sorted(a["latency_ms"])
        return {"requests": a["requests"], "errors": a["errors"],
                "p99_ms": float(lat[int(0.99 * (len(lat) - 1))]) if lat else 0.0,
                "impressions": fb.get("impression", 0), "clicks": fb.get("click", 0),
                "conversions": fb.get("purchase", 0),
                "overlap": float(np.mean(a["overlap"])) if a["overlap"] else None}

    def route_key(self, task: str, who: str | None) -> str:
        """The production slot's key, or the canary candidate's for users hashed into its share."""
        r = self.rollouts.get(task)
        key = f"{task}:candidate"
        if r and r.mode == "canary" and who and key in self.host.slots and arm_of(task, who, r.percent):
            return key
        return task

    def route(self, task: str, who: str | None) -> Slot:
        return self.host.get(self.route_key(task, who))


async def _mirror(state: State, task: str, ask: Callable[[Slot], Any], agree: Callable[[Any], float]) -> None:
    """Mirror a request to the shadow candidate, off the response path: ``ask`` it the same
    question, and record how far its answer ``agree``s with production's (0..1)."""
    c = state.host.get(f"{task}:candidate")
    arm = state.arm(task, c.version)
    t0 = time.perf_counter()
    try:
        got = await ask(c)
        arm["overlap"].append(float(agree(got)))
        state.metrics.shadow_overlap.labels(task, c.version).observe(arm["overlap"][-1])
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
            state.settings.shadow_fraction >= 1 or random.random() < state.settings.shadow_fraction):
        t = asyncio.create_task(_mirror(state, task, ask, agree))
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


async def _warm(state: State, slot: Slot) -> None:
    """Run real inputs through a new slot before it takes traffic (and index the catalogue)."""
    cat = state.catalogue
    if slot.task == "search" and cat is not None:
        slot.known_rows = known_rows(cat, slot.meta.get("data"))
        # a search model validated with the untuned encoder as its dense retriever: embed the
        # catalogue under it, in the background (search stays lexical until it is ready)
        enc = slot.meta.get("dense_encoder")
        if enc and state.settings.retriever != "lexical" and (cat.untuned is None or cat.untuned.encoder_name != enc):
            cat.untuned = UntunedDense(enc, cat.texts, max_length=int(slot.meta.get("dense_max_length") or 64))
    if slot.task == "search":
        await slot.batcher.submit_many([("warm up", t) for t in (cat.texts[:8] if cat else ["x"])])
    elif slot.task == "retrieval" and cat is not None:
        emb = await slot.batcher.submit_many(cat.texts)
        cat.build_index(np.stack(emb), slot.version)
    elif slot.task == "classify":
        await slot.batcher.submit_many(["warm up"] * 4)
    elif slot.task == "recommend":
        await slot.batcher.submit(([], 1))


async def swap(state: State, task: str, folder: Path, version: str, *, key: str | None = None) -> Slot:
    def on_batch(n: int, secs: float, task=task) -> None:
        state.metrics.batch(task, n, secs)

    slot = await state.host.swap(task, folder, version, warm=lambda s: _warm(state, s), on_batch=on_batch,
                                 key=key)
    state.metrics.swaps.labels(task).inc()
    return slot


async def _watch(state: State) -> None:
    """Follow alias moves: when the wanted version of a task changes, swap it in."""
    s = state.settings
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(s.watch_seconds)
        try:
            wanted = await asyncio.wait_for(loop.run_in_executor(None, s.watch), max(30.0, 6 * s.watch_seconds))
        except Exception as e:  # registry unreachable or hanging: keep serving what we have
            state.metrics.watch_errors.inc()
            state.registry_error = state.last_watch_error = redact.url(f"registry: {type(e).__name__}: {e}")
            continue
        state.registry_error = None
        for task, (folder, version) in wanted.items():
            cur = state.host.slots.get(task)
            if (cur is None or cur.version != version) and (task, version) not in state.refused:
                try:
                    await swap(state, task, Path(folder), version)
                except Exception as e:  # a version that fails to load never replaces the serving one
                    state.refused.add((task, version))
                    state.metrics.watch_errors.inc()
                    state.last_watch_error = f"{task} v{version}: {e}"


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


def create_app(settings: ServeSettings) -> FastAPI:
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if hasattr(state.shared, "ping"):
            await state.shared.ping()  # a shared store that does not answer fails the start, named
        if settings.data_dir is not None:
            state.catalogue = Catalogue(settings.data_dir)
        for task in ("retrieval", "search", "classify", "recommend"):  # retrieval first: it builds the index
            if task in settings.models:
                folder, version = settings.models[task]
                await swap(state, task, folder, version)
        state.ready = True
        watcher = asyncio.create_task(_watch(state)) if settings.watch else None
        yield
        if watcher:
            watcher.cancel()
        await state.host.close()
        await state.shared.close()

    app = FastAPI(title="shelfops", version="1", lifespan=lifespan,
                  description="Search, recommendation and classification served from the registry.")
    app.state.shelfops = state

    doors.install(app, settings.limits)  # before the metrics below, so that they count its refusals

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        secs = time.perf_counter() - t0
        state.metrics.request(request.url.path, response.status_code, secs,
                              response.headers.get("x-shelfops-version", ""))
        if request.url.path in SERVED_PATHS:
            state.live.append((time.time(), secs))
        response.headers["x-shelfops-replica"] = REPLICA  # which process answered (several behind a proxy)
        return response

    @app.exception_handler(ShelfopsError)
    async def shelfops_error(request: Request, e: ShelfopsError):
        return JSONResponse(e.to_dict(), status_code=e.http_status)

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        token = settings.admin_token
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not token or not secrets.compare_digest(given, token):
            raise Unauthorized("admin endpoints need 'Authorization: Bearer <token>'")

    @app.post("/v1/search")
    async def search(body: SearchIn):
        cat = state.catalogue
        if cat is None:
            raise Unavailable("no catalogue loaded")
        t0 = time.perf_counter()
        key = state.route_key("search", body.user or body.session)
        slot = state.host.slots.get(key)
        # the depth the optimize stage chose for the search latency budget, unless the server was told one
        depth = min(len(cat.ids), max(settings.rerank_depth or (slot.meta.get("rerank_depth") if slot else None)
                                      or DEFAULT_RERANK_DEPTH, body.k))
        # a release answers from the catalogue it was built and gated on (its data snapshot)
        known = getattr(slot, "known_rows", None)
        want = min(len(cat.ids), depth * (4 if body.filters else 1) * (2 if known is not None else 1))
        versions: dict[str, str] = {}
        lexical = dense = None
        if settings.retriever != "lexical" and "retrieval" in state.host.slots and cat.index is not None:
            r = state.host.get("retrieval")
            try:
                q = await r.batcher.submit(body.query)
                versions["retrieval"] = r.version
            finally:
                r.release()
            dense = faiss_search(cat.index, np.asarray([q]), want)[1][0]
        elif settings.retriever != "lexical" and cat.untuned is not None and cat.untuned.ready:
            dense = await asyncio.to_thread(cat.untuned.search, body.query, want)
            versions["retrieval"] = "untuned"
        if dense is None or settings.retriever == "hybrid":
            lexical = cat.bm25().search([body.query], want)[0][0]
        weight = settings.fusion_weight
        if weight is None:
            weight = (slot.meta.get("fusion_weight") if slot else None)
        weight = DEFAULT_FUSION_WEIGHT if weight is None else float(weight)
        rows = candidates(lexical, dense, weight, depth, keep=lambda i: (
            (not body.filters.get("category") or cat.categories[i].startswith(body.filters["category"]))
            and (known is None or i in known)))
        if dense is None:
            versions["retrieval"] = "bm25"
        retriever = "lexical" if dense is None else ("dense" if lexical is None else "hybrid")
        t_retrieved = time.perf_counter()
        scores = [0.0] * len(rows)
        if rows and key in state.host.slots:
            s = state.host.get(key)
            pairs = [(body.query, cat.texts[i]) for i in rows]
            scores = await served(state, "search", s, s.batcher.submit_many(pairs))
            versions["search"] = s.version
            # the re-ranker's order, blended with the retrieved one as the model was validated
            order = final_order(np.asarray(scores, dtype=float), float(s.meta.get("rerank_blend") or 0.0))
            prod_top, k = {int(i) for i in order[:body.k]}, body.k

            def agree(got, prod_top=prod_top, k=k) -> float:  # top-k overlap with production's
                top = np.argsort(-np.asarray(got), kind="stable")[:k]
                return len({int(i) for i in top} & prod_top) / max(1, len(prod_top))

            shadow(state, "search", lambda c: c.batcher.submit_many(pairs), agree)
            rows, scores = [rows[i] for i in order], [scores[i] for i in order]
        t_ranked = time.perf_counter()
        rid = uuid.uuid4().hex
        items = [{"item_id": cat.ids[i], "title": cat.titles[i], "category": cat.categories[i],
                  "score": float(sc)} for i, sc in zip(rows[:body.k], scores[:body.k])]
        shared = await state.shared.remember(rid, {"endpoint": "search", "versions": versions, "user": body.user,
                                                   "session": body.session,
                                                   "items": [it["item_id"] for it in items]})
        state.traffic.append({"t": time.time(), "kind": "search", "query": body.query,
                              "version": versions.get("search", versions["retrieval"]),
                              "top_category": items[0]["category"] if items else None,
                              "top_score": items[0]["score"] if items else None, "results": len(items)})
        t_end = time.perf_counter()
        # each stage's wall time, for the client (and bench/serve.py) to read: W3C Server-Timing
        timing = (f"retrieval;dur={(t_retrieved - t0) * 1e3:.2f}, rerank;dur={(t_ranked - t_retrieved) * 1e3:.2f}, "
                  f"response;dur={(t_end - t_ranked) * 1e3:.2f}, depth;desc={len(rows)}, retriever;desc={retriever}")
        return JSONResponse({"request_id": rid, "items": items, "versions": versions, "retriever": retriever,
                             **degraded(state, shared)}, headers={"x-shelfops-version": versions.get("search", versions["retrieval"]),
                                     "server-timing": timing})

    @app.post("/v1/rerank")
    async def rerank(body: RerankIn):
        """Cross-encoder scores for the caller's own candidates (their retrieval, our ranking)."""
        cat = state.catalogue
        if cat is None:
            raise Unavailable("no catalogue loaded")
        unknown = [i for i in body.items if i not in cat.row]
        if unknown:
            raise BadRequest(f"unknown item ids: {unknown[:5]}", field="items")
        s = state.host.get("search")
        try:
            scores = await s.batcher.submit_many([(body.query, cat.texts[cat.row[i]]) for i in body.items])
        finally:
            s.release()
        order = np.argsort(-np.asarray(scores), kind="stable")
        return JSONResponse({"items": [{"item_id": body.items[i], "score": float(scores[i])} for i in order],
                             "versions": {"search": s.version}}, headers={"x-shelfops-version": s.version})

    @app.post("/v1/recommend")
    async def recommend(body: RecommendIn):
        if not (body.user or body.session):
            raise BadRequest("recommend needs 'user' or 'session'", field="user")
        key = body.session or body.user
        try:
            history = await state.shared.history(key)
        except DependencyUnavailable:
            history = []  # the request's own context: none but the shopper's id
        s = state.route("recommend", key)  # a canary's share of shoppers, sticky by session or user
        got = await served(state, "recommend", s, s.batcher.submit((history, body.k)))
        mine = {i for i, _ in got}
        shadow(state, "recommend", lambda c: c.batcher.submit((history, body.k)),
               lambda theirs: len({i for i, _ in theirs} & mine) / max(1, len(mine)))
        rid = uuid.uuid4().hex
        shared = await state.shared.remember(rid, {"endpoint": "recommend", "versions": {"recommend": s.version},
                                                   "user": body.user, "session": body.session,
                                                   "items": [i for i, _ in got]})
        return JSONResponse({"request_id": rid, "items": [{"item_id": i, "score": sc} for i, sc in got],
                             "history_length": len(history), "versions": {"recommend": s.version},
                             **degraded(state, shared)},
                            headers={"x-shelfops-version": s.version})

    @app.post("/v1/classify")
    async def classify(body: ClassifyIn):
        text = body.title + (f". {body.description}" if body.description else "")
        s = state.route("classify", body.title)  # a canary's share of products, sticky by title
        p = await served(state, "classify", s, s.batcher.submit(text))
        label = int(np.argmax(p))
        shadow(state, "classify", lambda c: c.batcher.submit(text),
               lambda theirs: float(int(np.argmax(theirs)) == label))  # same category as production
        labels = s.meta["labels"]
        top = np.argsort(-p)[:3]
        return JSONResponse({"category": labels[int(top[0])], "probability": float(p[top[0]]),
                             "alternatives": [{"category": labels[int(i)], "probability": float(p[i])}
                                              for i in top[1:]], "versions": {"classify": s.version}},
                            headers={"x-shelfops-version": s.version})

    async def record_event(body: EventIn, served: dict | None, *, want_length: bool = False) -> int:
        """Feed the session (views, clicks, carts, purchases), count the feedback for the
        version that served the request; the session's length after it (when wanted)."""
        key = body.session or body.user or (served or {}).get("session") or (served or {}).get("user")
        n = 0
        if key and body.type in ("view", "click", "add_to_cart", "purchase"):
            n = await state.shared.append(key, body.item_id)
        elif key and want_length:
            n = await state.shared.length(key)
        if served:
            for task, version in served["versions"].items():
                state.metrics.feedback(task, version, body.type)
        if body.type == "click":
            cat = state.catalogue
            row = cat.row.get(body.item_id) if cat else None
            state.traffic.append({"t": time.time(), "kind": "click", "item": body.item_id,
                                  "search": body.request_id,
                                  "category": cat.categories[row] if row is not None else None,
                                  "version": (served or {}).get("versions", {}).get("search")})
        return n

    @app.post("/v1/events")
    async def events(body: EventIn):
        served = (await state.shared.served([body.request_id]))[0] if body.request_id else None
        if body.request_id and served is None:
            raise BadRequest(f"unknown request_id {body.request_id!r} (expired or never served)",
                             field="request_id")
        return {"ok": True, "session_length": await record_event(body, served, want_length=True)}

    @app.post("/v1/events/batch")
    async def events_batch(body: EventsIn):
        """Up to 200 events in one call (an impression per shown item adds up); each is checked
        first, so a bad one rejects the batch and names its position."""
        rids = sorted({e.request_id for e in body.events if e.request_id})
        served = dict(zip(rids, await state.shared.served(rids)))
        for n, e in enumerate(body.events):
            if e.request_id and served[e.request_id] is None:
                raise BadRequest(f"events[{n}]: unknown request_id {e.request_id!r} (expired or never served)",
                                 field=f"events.{n}.request_id")
        for e in body.events:
            await record_event(e, served.get(e.request_id) if e.request_id else None)
        return {"ok": True, "accepted": len(body.events)}

    @app.get("/healthz")
    async def healthz():
        return {"ok": True, "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/readyz")
    async def readyz():
        if not state.ready:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True, "models": {t: {"version": s.version, **{k: v for k, v in s.meta.items()
                                                                       if k != "labels"}}
                                          for t, s in state.host.slots.items()}, "swaps": state.host.swaps,
                "dense": dense_status(state.catalogue), "dependencies": dependencies(state)}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/traffic", dependencies=[Depends(admin)])
    async def traffic(since: float = 0.0, limit: int = Query(10_000, ge=1, le=100_000)):
        """Searches and clicks after ``since`` (unix seconds), oldest first: the drift monitor's input."""
        out = [r for r in state.traffic if r["t"] > since]
        return {"records": out[-limit:], "now": time.time()}

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page():
        from importlib.resources import files

        return HTMLResponse(files("shelfops.serve").joinpath("dashboard.html").read_text())

    @app.get("/v1/dashboard")
    async def dashboard_data():
        """Everything the dashboard shows, in one document (public: no queries, no user ids)."""

        fetched, reg = state.registry_cache
        if settings.registry_view is not None and time.time() - fetched > 5.0:
            try:
                reg = await asyncio.get_running_loop().run_in_executor(None, settings.registry_view)
            except Exception as e:  # the registry is down: show the serving side anyway
                reg = {"error": str(e)}
            state.registry_cache = (time.time(), reg)
        return state_document(state, reg)

    @app.get("/dashboard/files/{name}", include_in_schema=False)
    async def dashboard_file(name: str):
        path = report_file(settings.report_dir, name)
        if path is None:
            return JSONResponse({"code": "not_found", "message": f"no report file {name!r}"}, status_code=404)
        return FileResponse(path)

    @app.get("/v1/rollout")
    async def rollout_status():
        out = {}
        for task, r in state.rollouts.items():
            prod = state.host.slots.get(task)
            out[task] = {"mode": r.mode, "percent": r.percent, "candidate": r.version,
                         "production": prod.version if prod else None,
                         "seconds": round(time.time() - r.started, 1),
                         "observed": {"candidate": state.observed(task, r.version),
                                      "production": state.observed(task, prod.version) if prod else None}}
        return out

    @app.post("/admin/rollout", dependencies=[Depends(admin)])
    async def rollout(body: RolloutIn):
        """Start or move a rollout: load the candidate beside production (shadow or canary %)."""
        cur = state.rollouts.get(body.task)
        if body.folder and body.version and (cur is None or cur.version != body.version):
            folder = Path(body.folder)
            if not (folder / "manifest.json").exists():
                raise BadRequest(f"{folder} is not a model folder (no manifest.json)", field="folder")
            await swap(state, body.task, folder, body.version, key=f"{body.task}:candidate")
            cur = Rollout(body.mode, body.percent, body.version, folder, time.time())
        elif cur is None:
            raise BadRequest("no rollout running: give folder and version to start one", field="folder")
        new = Rollout(body.mode, body.percent if body.mode == "canary" else 0, cur.version, cur.folder,
                      cur.started)
        old = state.rollouts.get(body.task)
        if old is None or (old.mode, old.percent, old.version) != (new.mode, new.percent, new.version):
            prod = state.host.slots.get(body.task)
            state.reset_window(body.task, [new.version] + ([prod.version] if prod else []))
        state.rollouts[body.task] = new
        if old is None or (old.mode, old.percent) != (new.mode, new.percent):
            state.log_rollout(body.task, new.mode, new.version, new.percent)
        return {"task": body.task, "mode": body.mode, "percent": state.rollouts[body.task].percent,
                "candidate": cur.version}

    @app.post("/admin/rollout/end", dependencies=[Depends(admin)])
    async def rollout_end(body: RolloutEndIn):
        """Promote the candidate to production (hot swap) or roll it back (drop it)."""
        r = state.rollouts.pop(body.task, None)
        if r is None:
            raise BadRequest(f"no rollout running for {body.task}", field="task")
        if body.promote:
            await swap(state, body.task, r.folder, r.version)
        await state.host.remove(f"{body.task}:candidate")
        state.log_rollout(body.task, "promoted" if body.promote else "rolled back", r.version,
                          100 if body.promote else 0)
        return {"task": body.task, "promoted": body.promote, "production": state.host.slots[body.task].version}

    @app.post("/admin/reload", dependencies=[Depends(admin)])
    async def reload(body: ReloadIn):
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

    return app


async def wait_ready(app: FastAPI, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not app.state.shelfops.ready:
        if time.time() - t0 > timeout:
            raise TimeoutError("server not ready")
        await asyncio.sleep(0.05)
