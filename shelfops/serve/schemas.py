"""The bodies the HTTP API accepts: strict (unknown fields refused), bounded, typed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shelfops.tasks import RolloutTask, Task

Text = Annotated[str, StringConstraints(min_length=1, max_length=512, strip_whitespace=True)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchIn(_In):
    query: Text
    k: int = Field(10, ge=1, le=100)
    filters: dict[Literal["category"], Annotated[str, StringConstraints(max_length=256)]] = {}
    user: Id | None = None
    session: Id | None = None


ROLLOUT_TASKS = RolloutTask


class RolloutIn(_In):
    task: ROLLOUT_TASKS
    mode: Literal["shadow", "interleave", "canary"]
    percent: int = Field(0, ge=0, le=100)  # canary: candidate's share; interleave: share interleaved
    credit: Literal["unique", "all", "rank"] = "unique"  # interleave: clicks on items one ranker alone shows, or all
    # the candidate: a folder this server can read, or (where the server follows a registry)
    # the version alone, optionally with the registered model's name to check against
    folder: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    version: Id | None = None
    model: Id | None = None


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
    task: Task
    folder: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    version: Id


# -- what the API answers (documented in the OpenAPI; tests/integration/test_serve_openapi.py
#    checks real answers against these schemas) ----------------------------------------------

class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Out):
    field: str
    message: str
    type: str = ""


class ErrorOut(BaseModel):
    """The one error body of every 4xx and 5xx (with details that name what was wrong)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable, machine-readable: invalid_request, body_too_large, rate_limited, ...")
    message: str = Field(description="a sentence that names the field, the limit or the dependency")
    errors: list[ErrorDetail] | None = Field(None, description="422 only: each invalid field")
    field: str | None = None
    limit: int | None = Field(None, description="413: the body limit in bytes")


ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 404, 413, 415, 422, 429, 503)}

Versions = Annotated[dict[str, str], Field(description="task -> the model version that produced the answer")]
Degraded = Annotated[list[str] | None, Field(None, description="what this answer could not use (a shared "
                                                              "store down); absent when nothing was missing")]


class Interleaving(_Out):
    production: str
    candidate: str
    credit: Literal["unique", "all", "rank"]


class SearchItem(_Out):
    item_id: str
    title: str
    category: str | None
    score: float
    ranker: Literal["production", "candidate"] | None = Field(None, description="interleaved only: whose item")


class SearchOut(_Out):
    request_id: str = Field(description="name it in /v1/events so feedback counts for the versions that served")
    items: list[SearchItem]
    versions: Versions
    retriever: str = Field(description="what retrieved the candidates: hybrid, dense, lexical ...")
    interleaving: Interleaving | None = None
    degraded: Degraded = None


class ScoredItem(_Out):
    item_id: str
    score: float
    ranker: Literal["production", "candidate"] | None = None


class RerankOut(_Out):
    items: list[ScoredItem]
    versions: Versions


class RecommendOut(_Out):
    request_id: str
    items: list[ScoredItem]
    history_length: int = Field(description="items in the session or user history the model saw")
    versions: Versions
    interleaving: Interleaving | None = None
    degraded: Degraded = None


class Alternative(_Out):
    category: str
    probability: float


class ClassifyOut(_Out):
    category: str
    probability: float
    alternatives: list[Alternative]
    versions: Versions


class EventOut(_Out):
    ok: bool
    session_length: int


class EventsOut(_Out):
    ok: bool
    accepted: int


class HealthOut(_Out):
    ok: bool
    uptime_s: float


class ReadyOut(BaseModel):
    """Ready: every model loaded and each dependency's state (503 with ``ready: false`` before)."""

    model_config = ConfigDict(extra="allow")
    ready: bool
    models: dict[str, dict] = {}
    swaps: int = 0
    dense: str = ""
    dependencies: dict[str, dict] = {}


class TrafficOut(_Out):
    records: list[dict]
    now: float


class RolloutStepOut(_Out):
    task: str
    mode: str
    percent: int
    candidate: str


class RolloutEndOut(_Out):
    task: str
    promoted: bool
    production: str


class ReloadOut(_Out):
    task: str
    version: str
    seconds: float


class ArmOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # per-arm numbers grow with the rollout's checks
    requests: int = 0


class RolloutNow(_Out):
    mode: str
    percent: int
    candidate: str
    production: str | None
    seconds: float
    observed: dict[str, ArmOut | None]


class DashboardOut(BaseModel):
    """Everything the dashboard shows (public: no queries, no user ids)."""

    model_config = ConfigDict(extra="allow")
    now: float
    uptime_s: float
    ready: bool
    serving: dict[str, str]
    rollouts: dict[str, RolloutNow]
    timeline: list[dict]
    online: dict[str, dict]
    registry: dict
    charts: list | dict
    live: dict | list
