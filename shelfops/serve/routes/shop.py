"""What shoppers' requests reach: search, re-rank, recommend, classify, and the feedback events
that tie a click to the version that served it.

    POST /v1/search     {query, k, filters}  BM25 + dense retrieval fused, cross-encoder re-rank
    POST /v1/rerank     {query, items}       cross-encoder scores for the caller's candidates
    POST /v1/recommend  {user | session, k}  SASRec over the user's history + live session events
    POST /v1/classify   {title, description} category + probability
    POST /v1/events     impressions, clicks, carts, purchases tied to the request that served them

During an interleave step (monitor.rollout) a share of shoppers' searches show production's and
the candidate's rankings team-drafted into one list: each item says which ranker contributed
it, and a click on it is credited to that ranker in the shared store (so across replicas).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shelfops.errors import BadRequest, DependencyUnavailable, Unavailable
from shelfops.eval.interleave import TEAMS, credited, tally_change, team_draft
from shelfops.serve.deps import RequestId, Served
from shelfops.serve.routing import experiment_key, interleaving, route, route_key, served, shadow
from shelfops.serve.schemas import (
    ERRORS,
    ClassifyIn,
    ClassifyOut,
    EventIn,
    EventOut,
    EventsIn,
    EventsOut,
    RecommendIn,
    RecommendOut,
    RerankIn,
    RerankOut,
    SearchIn,
    SearchOut,
)
from shelfops.serve.state import (
    DEFAULT_RERANK_DEPTH,
    Rollout,
    ServedCatalogue,
    Slot,
    State,
    candidates,
    degraded,
)
from shelfops.train.hybrid import DEFAULT_WEIGHT as DEFAULT_FUSION_WEIGHT
from shelfops.train.hybrid import final_order
from shelfops.train.index import search as faiss_search

router = APIRouter()


async def retrieve(state: State, cat: ServedCatalogue, body: SearchIn, slot: Slot | None, depth: int,
                   versions: dict[str, str]) -> tuple[list[int], str]:
    """The catalogue rows to re-rank (at most ``depth``) and which retriever found them: BM25
    and the dense side (the served bi-encoder, else the untuned encoder) fused, as configured."""
    settings = state.settings
    # a release answers from the catalogue it was built and gated on (its data snapshot)
    known = getattr(slot, "known_rows", None)
    want = min(len(cat.ids), depth * (4 if body.filters else 1) * (2 if known is not None else 1))
    lexical = dense = None
    if settings.serve.retriever != "lexical" and "retrieval" in state.host.slots and cat.index is not None:
        r = state.host.get("retrieval")
        try:
            q = await r.batcher.submit(body.query)
            versions["retrieval"] = r.version
        finally:
            r.release()
        dense = faiss_search(cat.index, np.asarray([q]), want)[1][0]
    elif settings.serve.retriever != "lexical" and cat.untuned is not None and cat.untuned.ready:
        dense = await asyncio.to_thread(cat.untuned.search, body.query, want)
        versions["retrieval"] = "untuned"
    if dense is None or settings.serve.retriever == "hybrid":
        lexical = cat.bm25().search([body.query], want)[0][0]
    weight = settings.serve.fusion_weight
    if weight is None:
        weight = slot.meta.get("fusion_weight") if slot else None
    weight = DEFAULT_FUSION_WEIGHT if weight is None else float(weight)
    category = body.filters.get("category")
    rows = candidates(lexical, dense, weight, depth, keep=lambda i: (
        (not category or cat.categories[i].startswith(category)) and (known is None or i in known)))
    if dense is None:
        versions["retrieval"] = "bm25"
    return rows, "lexical" if dense is None else ("dense" if lexical is None else "hybrid")


async def rerank_rows(state: State, cat: ServedCatalogue, key: str, query: str, rows: list[int], k: int,
                      versions: dict[str, str]) -> tuple[list[int], list[float]]:
    """Rows and scores in the final order: the re-ranker's, blended with the retrieved order as
    the model was validated; a shadow candidate is asked the same question off the path."""
    if not rows or key not in state.host.slots:
        return rows, [0.0] * len(rows)
    s = state.host.get(key)
    pairs = [(query, cat.texts[i]) for i in rows]
    scores = await served(state, "search", s, s.batcher.submit_many(pairs))
    versions["search"] = s.version
    order = final_order(np.asarray(scores, dtype=float), float(s.meta.get("rerank_blend") or 0.0))
    prod_top = {int(i) for i in order[:k]}

    def agree(got) -> float:  # top-k overlap with production's
        top = np.argsort(-np.asarray(got), kind="stable")[:k]
        return len({int(i) for i in top} & prod_top) / max(1, len(prod_top))

    shadow(state, "search", lambda c: c.batcher.submit_many(pairs), agree)
    return [rows[i] for i in order], [scores[i] for i in order]


async def interleave_rows(state: State, cat: ServedCatalogue, body: SearchIn, versions: dict[str, str], exp: Rollout
                          ) -> tuple[list[int], list[float], tuple[list[str], list[str | None]] | None, str]:
    """Production's and the candidate's whole pipelines (each retrieves from its release's
    catalogue with its own fusion weight and depth, then re-ranks with its own model) on the
    same search, team-drafted into one list (eval.interleave): rows, each one's score from the
    ranker that contributed it, the rankers that contributed and that clicks credit (None:
    production's list alone, when the candidate failed, counted as its error, or its rollout
    ended while this search was under way), and the retriever."""
    p = state.host.get("search")
    try:
        c: Slot | None = state.host.get("search:candidate")
    except Exception:  # the rollout ended between routing this search and here
        c = None
    slots = [s for s in (p, c) if s is not None]
    ranked, retriever = [], "lexical"
    try:
        for s in slots:
            rows, retriever = await retrieve(state, cat, body, s, depth_for(state, cat, s, body.k), versions)
            ranked.append(rows)
    except BaseException:
        for s in slots:
            s.release()
        raise
    # both rankers' calls counted apart (search:interleave): they run side by side, so their
    # latencies are compared with each other, not with production's calls that ran alone
    calls = [served(state, "search:interleave", s,
                    s.batcher.submit_many([(body.query, cat.texts[i]) for i in rows]))
             for s, rows in zip(slots, ranked)]
    got = await asyncio.gather(*calls, return_exceptions=True)
    versions["search"] = p.version
    if isinstance(got[0], BaseException):
        raise got[0]
    lists: list[list[int]] = []
    by_row: list[dict[int, float]] = []
    for g, s, rows in zip(got, slots, ranked):
        if isinstance(g, BaseException):
            continue
        order = final_order(np.asarray(g, dtype=float), float(s.meta.get("rerank_blend") or 0.0))
        lists.append([rows[i] for i in order])
        by_row.append({rows[i]: float(g[i]) for i in range(len(rows))})
    if len(lists) == 1:
        return lists[0], [by_row[0][r] for r in lists[0]], None, retriever
    shown, teams, credited = draft(lists[0], lists[1], body.k, exp.credit)
    return shown, [by_row[TEAMS.index(t)][r] for r, t in zip(shown, teams)], (teams, credited), retriever


def draft(production: list, candidate: list, k: int, credit: str) -> tuple[list, list[str], list[str | None]]:
    """One search's (or recommendation's) team-drafted list of at most ``k`` items from two
    rankings of any ids: the items, which ranker contributed each, and which ranker a click on
    it credits (None: both rankers show it in their top ``k`` and ``credit`` is "unique")."""
    ids = list(dict.fromkeys([*production, *candidate]))
    at = {x: i for i, x in enumerate(ids)}
    width = max(len(production), len(candidate), 1)
    pad = np.full((2, width), -1, np.int64)
    for i, ranking in enumerate((production, candidate)):
        pad[i, :len(ranking)] = [at[x] for x in ranking]
    d = team_draft(pad[:1], pad[1:], k, np.random.default_rng())
    credit_to = credited(d, pad[:1], pad[1:], k, credit)
    n = int((d.items[0] >= 0).sum())
    return ([ids[int(i)] for i in d.items[0][:n]], [TEAMS[int(t)] for t in d.teams[0][:n]],
            [TEAMS[int(t)] if t >= 0 else None for t in credit_to[0][:n]])


def depth_for(state: State, cat: ServedCatalogue, slot: Slot | None, k: int) -> int:
    """How deep ``slot`` re-ranks: the server's setting, else the depth its optimize stage chose
    for the search latency budget (serving.json), else the default; at least ``k``."""
    chosen = state.settings.serve.rerank_depth or (slot.meta.get("rerank_depth") if slot else None)
    return min(len(cat.ids), max(chosen or DEFAULT_RERANK_DEPTH, k))


@router.post("/v1/search", response_model=SearchOut, responses=ERRORS)
async def search(body: SearchIn, state: Served, rid: RequestId):
    cat = state.catalogue
    if cat is None:
        raise Unavailable("no catalogue loaded")
    t0 = time.perf_counter()
    exp = interleaving(state, "search", body.session or body.user)
    versions: dict[str, str] = {}
    teams = None
    if exp:  # both pipelines, end to end, drafted into one list (timed as one re-rank)
        t_retrieved = time.perf_counter()
        rows, scores, teams, retriever = await interleave_rows(state, cat, body, versions, exp)
    else:
        key = route_key(state, "search", body.user or body.session)
        slot = state.host.slots.get(key)
        rows, retriever = await retrieve(state, cat, body, slot, depth_for(state, cat, slot, body.k), versions)
        t_retrieved = time.perf_counter()
        rows, scores = await rerank_rows(state, cat, key, body.query, rows, body.k, versions)
    t_ranked = time.perf_counter()
    items = [{"item_id": cat.ids[i], "title": cat.titles[i], "category": cat.categories[i],
              "score": float(sc)} for i, sc in zip(rows[:body.k], scores[:body.k])]
    info = {"endpoint": "search", "versions": versions, "user": body.user, "session": body.session,
            "items": [it["item_id"] for it in items]}
    extra = await interleaved(state, "search", exp, items, teams, info) if exp and teams else {}
    shared = await state.shared.remember(rid, info)
    version = versions.get("search", versions["retrieval"])
    state.traffic.append({"t": time.time(), "kind": "search", "query": body.query, "version": version,
                          "top_category": items[0]["category"] if items else None,
                          "top_score": items[0]["score"] if items else None, "results": len(items),
                          **({"interleaved": True} if extra else {})})
    t_end = time.perf_counter()
    # each stage's wall time, for the client (and bench/serve.py) to read: W3C Server-Timing
    timing = (f"retrieval;dur={(t_retrieved - t0) * 1e3:.2f}, rerank;dur={(t_ranked - t_retrieved) * 1e3:.2f}, "
              f"response;dur={(t_end - t_ranked) * 1e3:.2f}, depth;desc={len(rows)}, retriever;desc={retriever}")
    return JSONResponse({"request_id": rid, "items": items, "versions": versions, "retriever": retriever,
                         **extra, **degraded(state, shared)},
                        headers={"x-shelfops-version": version, "server-timing": timing})


async def count_quietly(state: State, key: str, delta: dict[str, int]) -> None:
    """Count an interleaved search; a store that just went down costs the count, not the search."""
    try:
        await state.shared.count(key, delta)
    except DependencyUnavailable:
        pass


@router.post("/v1/rerank", response_model=RerankOut, responses=ERRORS)
async def rerank(body: RerankIn, state: Served):
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


@router.post("/v1/recommend", response_model=RecommendOut, responses=ERRORS)
async def recommend(body: RecommendIn, state: Served, rid: RequestId):
    if not (body.user or body.session):
        raise BadRequest("recommend needs 'user' or 'session'", field="user")
    key = body.session or body.user
    try:
        history = await state.shared.history(key)
    except DependencyUnavailable:
        history = []  # the request's own context: none but the shopper's id
    exp = interleaving(state, "recommend", key)
    if exp:
        got, teams, version = await interleave_recommend(state, history, body.k, exp)
    else:
        s = route(state, "recommend", key)  # a canary's share of shoppers, sticky by session or user
        got, teams, version = await served(state, "recommend", s, s.batcher.submit((history, body.k))), None, s.version
        mine = {i for i, _ in got}
        shadow(state, "recommend", lambda c: c.batcher.submit((history, body.k)),
               lambda theirs: len({i for i, _ in theirs} & mine) / max(1, len(mine)))
    items = [{"item_id": i, "score": sc} for i, sc in got]
    info = {"endpoint": "recommend", "versions": {"recommend": version}, "user": body.user,
            "session": body.session, "items": [i for i, _ in got]}
    extra = await interleaved(state, "recommend", exp, items, teams, info) if exp and teams else {}
    shared = await state.shared.remember(rid, info)
    return JSONResponse({"request_id": rid, "items": items, "history_length": len(history),
                         "versions": {"recommend": version}, **extra, **degraded(state, shared)},
                        headers={"x-shelfops-version": version})


async def interleave_recommend(state: State, history: list[str], k: int, exp: Rollout
                               ) -> tuple[list[tuple[str, float]], tuple[list[str], list[str | None]] | None, str]:
    """Production's and the candidate's recommendations drafted into one list (production's
    alone when the candidate failed or its rollout ended while this request was under way)."""
    p = state.host.get("recommend")
    try:
        c: Slot | None = state.host.get("recommend:candidate")
    except Exception:
        c = None
    slots = [s for s in (p, c) if s is not None]
    got = await asyncio.gather(*[served(state, "recommend:interleave", s, s.batcher.submit((history, k)))
                                 for s in slots],
                               return_exceptions=True)
    if isinstance(got[0], BaseException):
        raise got[0]
    if len(got) == 1 or isinstance(got[1], BaseException):
        return got[0], None, p.version
    ids, teams, credited = draft([i for i, _ in got[0]], [i for i, _ in got[1]], k, exp.credit)
    score = [dict(g) for g in got]
    return [(i, float(score[TEAMS.index(t)][i])) for i, t in zip(ids, teams)], (teams, credited), p.version


async def interleaved(state: State, task: str, exp, items: list[dict],
                      teams: tuple[list[str], list[str | None]], info: dict) -> dict:
    """Mark each shown item with the ranker that contributed it, keep with the served request
    the ranker a click on each item credits (so a click credits it, on any replica), count the
    interleaved request; what the response adds."""
    for it, team in zip(items, teams[0]):
        it["ranker"] = team
    production = info["versions"][task]
    info["interleave"] = {"key": experiment_key(task, production, exp.version),
                          "teams": {it["item_id"]: t for it, t in zip(items, teams[1]) if t is not None}}
    await count_quietly(state, info["interleave"]["key"], {"interleaved": 1})
    return {"interleaving": {"production": production, "candidate": exp.version, "credit": exp.credit}}


@router.post("/v1/classify", response_model=ClassifyOut, responses=ERRORS)
async def classify(body: ClassifyIn, state: Served):
    text = body.title + (f". {body.description}" if body.description else "")
    s = route(state, "classify", body.title)  # a canary's share of products, sticky by title
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


async def record_event(state: State, body: EventIn, served: dict | None, *, want_length: bool = False) -> int:
    """Feed the session (views, clicks, carts, purchases), count the feedback for the
    version that served the request; the session's length after it (when wanted)."""
    key = body.session or body.user or (served or {}).get("session") or (served or {}).get("user")
    n = 0
    if key and body.type in ("view", "click", "add_to_cart", "purchase"):
        n = await state.shared.append(key, body.item_id)
    elif key and want_length:
        n = await state.shared.length(key)
    il = (served or {}).get("interleave")
    if served and not il:  # an interleaved list is both versions': its clicks credit rankers instead
        for task, version in served["versions"].items():
            state.metrics.feedback(task, version, body.type)
    if il and body.type == "click" and body.request_id and body.item_id in il["teams"]:
        team = il["teams"][body.item_id]
        after = await state.shared.credit(body.request_id, team)
        before = {**after, team: after[team] - 1}
        delta = tally_change(*[(c.get("candidate", 0), c.get("production", 0)) for c in (before, after)])
        if delta:
            await state.shared.count(il["key"], delta)
    if body.type == "click":
        cat = state.catalogue
        row = cat.row.get(body.item_id) if cat else None
        state.traffic.append({"t": time.time(), "kind": "click", "item": body.item_id,
                              "search": body.request_id,
                              "category": cat.categories[row] if row is not None else None,
                              "version": (served or {}).get("versions", {}).get("search"),
                              **({"interleaved": True} if il else {})})
    return n


@router.post("/v1/events", response_model=EventOut, responses=ERRORS)
async def events(body: EventIn, state: Served):
    served = (await state.shared.served([body.request_id]))[0] if body.request_id else None
    if body.request_id and served is None:
        raise BadRequest(f"unknown request_id {body.request_id!r} (expired or never served)",
                         field="request_id")
    return {"ok": True, "session_length": await record_event(state, body, served, want_length=True)}


@router.post("/v1/events/batch", response_model=EventsOut, responses=ERRORS)
async def events_batch(body: EventsIn, state: Served):
    """Up to 200 events in one call (an impression per shown item adds up); each is checked
    first, so a bad one rejects the batch and names its position."""
    rids = sorted({e.request_id for e in body.events if e.request_id})
    served = dict(zip(rids, await state.shared.served(rids)))
    for n, e in enumerate(body.events):
        if e.request_id and served[e.request_id] is None:
            raise BadRequest(f"events[{n}]: unknown request_id {e.request_id!r} (expired or never served)",
                             field=f"events.{n}.request_id")
    for e in body.events:
        await record_event(state, e, served.get(e.request_id) if e.request_id else None)
    return {"ok": True, "accepted": len(body.events)}
