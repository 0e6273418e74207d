"""The bodies the HTTP API accepts: strict (unknown fields refused), bounded, typed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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


ROLLOUT_TASKS = Literal["search", "recommend", "classify"]


class RolloutIn(_In):
    task: ROLLOUT_TASKS
    mode: Literal["shadow", "interleave", "canary"]
    percent: int = Field(0, ge=0, le=100)  # canary: candidate's share; interleave: share interleaved
    credit: Literal["unique", "all", "rank"] = "unique"  # interleave: clicks on items one ranker alone shows, or all
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
