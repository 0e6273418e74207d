"""The one task list: what shelfops trains, ships and serves, in the order the stages take them
(a search re-ranker, the retrieval bi-encoder it re-ranks for, the product classifier, next-item
recommendation). Add a task here first; the layers above read it from here."""

from __future__ import annotations

from typing import Literal, get_args

Task = Literal["search", "retrieval", "classify", "recommend"]
TASKS: tuple[str, ...] = get_args(Task)
# what a canary, shadow or interleave rollout can compare (retrieval is judged through search)
RolloutTask = Literal["search", "recommend", "classify"]
ROLLOUT_TASKS: tuple[str, ...] = get_args(RolloutTask)
