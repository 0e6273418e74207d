"""Team-draft interleaving: compare two rankers on the same searches instead of on two arms of
traffic (Radlinski, Kurup & Joachims, "How does clickthrough data reflect retrieval quality?",
CIKM 2008).

Both rankers order the same candidates; the shown list is drafted like picking sides for a
game: the team with fewer picks so far picks next (a fair coin decides when they are level),
and it picks its highest-ranked item not yet shown. Every shown item belongs to exactly one
team, and a click is credited to the team that contributed the item. A search whose clicks
favour the candidate's team is a win, the production's a loss, neither (no clicks, or as many
each) a tie. Because each shopper judges both rankers in one list, on one query, in one
mood, the comparison needs far fewer searches than comparing two arms' click-through.

Pure functions over arrays, so the rollout simulation drafts thousands of searches in one call
and the server the same code for one; the server stores the teams and credits clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Outcome = Literal["win", "loss", "tie"]  # the candidate's, over production
PRODUCTION, CANDIDATE = 0, 1
TEAMS = ("production", "candidate")


@dataclass(frozen=True)
class Draft:
    items: np.ndarray  # (n, k) int: the shown lists, best first, as indices into the candidates (-1: none)
    teams: np.ndarray  # (n, k) int8: PRODUCTION or CANDIDATE contributed items[i, j] (-1: none)


def team_draft(production: np.ndarray, candidate: np.ndarray, k: int, rng: np.random.Generator) -> Draft:
    """Interleave ``n`` searches at once: row i of ``production`` and ``candidate`` are the two
    rankings (best first) of search i's candidates, as indices ``0..m-1`` into them; each shown
    list has at most ``k`` items, none twice (-1 pads a ranking). One search is a batch of one."""
    a, b = np.atleast_2d(production).astype(np.int64), np.atleast_2d(candidate).astype(np.int64)
    width = max(a.shape[1], b.shape[1])  # rankings of different lengths: padded with -1 (none)
    rank = np.stack([np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=-1) for r in (a, b)])
    _, n, length = rank.shape
    m = int(rank.max(initial=-1)) + 1
    seen = np.zeros((n, max(m, 1)), bool)
    picks = np.zeros((2, n), np.int64)
    items = np.full((n, k), -1, np.int64)
    teams = np.full((n, k), -1, np.int8)
    rows = np.arange(n)
    for j in range(k):
        # each team's best item not shown yet (length: none left)
        free = ~seen[rows[None, :, None], rank] & (rank >= 0)  # (2, n, L)
        nxt = np.where(free.any(-1), free.argmax(-1), length)
        has = nxt < length
        if not has.any():
            break
        lead = rng.random(n) < 0.5  # the coin, read where the teams have picked as many
        cand = np.where(picks[1] < picks[0], True, np.where(picks[1] > picks[0], False, lead))
        cand = np.where(~has[0], True, np.where(~has[1], False, cand))
        who = cand.astype(np.int64)
        ok = has.any(0)  # searches with an item left to show
        item = rank[who, rows, np.minimum(nxt[who, rows], length - 1)]
        items[ok, j] = item[ok]
        teams[ok, j] = who[ok]
        seen[rows[ok], item[ok]] = True
        picks[who[ok], rows[ok]] += 1
    return Draft(items, teams)


def credit(teams: np.ndarray, clicked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(candidate's, production's) clicks per interleaved list: each click goes to the team
    that contributed the clicked item (a team of -1, uncredited, counts for neither)."""
    clicked = np.asarray(clicked, bool)
    return (clicked & (teams == CANDIDATE)).sum(-1), (clicked & (teams == PRODUCTION)).sum(-1)


def contested(draft: Draft, production: np.ndarray, candidate: np.ndarray, k: int) -> np.ndarray:
    """Teams with the items both rankers put in their top ``k`` uncredited (-1).

    Either ranker would have shown such an item, so a click on it says nothing about which
    ranker is better; team-draft credits it to whichever team happened to pick it first, which
    adds noise and no signal. Crediting only the items one ranker alone would show keeps the
    test fair (with equal rankers each side's items are clicked alike) and, on the demo shop's
    real v1 -> v2 change, needs ~30x fewer searches (bench/RESULTS.md). What it cannot see is a
    change that only reorders the same top ``k``: use ``credit: all`` for such candidates."""
    p, c = np.atleast_2d(production)[:, :k], np.atleast_2d(candidate)[:, :k]
    both = (draft.items[..., None] == p[:, None, :]).any(-1) & (draft.items[..., None] == c[:, None, :]).any(-1)
    return np.where(both & (draft.items >= 0), -1, draft.teams).astype(np.int8)


def outcome(candidate_clicks: int, production_clicks: int) -> Outcome:
    if candidate_clicks > production_clicks:
        return "win"
    return "loss" if production_clicks > candidate_clicks else "tie"


def tally_change(before: tuple[int, int], after: tuple[int, int]) -> dict[str, int]:
    """How one more click on a search moves the win/loss counts, given its (candidate's,
    production's) clicks before and after: a search counts once, by all its clicks so far, so
    a second click can turn a tie into a win or a win back into a tie."""
    delta = {"wins": 0, "losses": 0}
    for sign, (c, p) in ((-1, before), (1, after)):
        o = outcome(c, p)
        if o != "tie":
            delta["wins" if o == "win" else "losses"] += sign
    return {k: v for k, v in delta.items() if v}


def by_rank(draft: Draft, production: np.ndarray, candidate: np.ndarray, k: int) -> np.ndarray:
    """Teams re-assigned for credit: a click on an item credits the ranker that ranked it higher
    in its own top ``k`` (absent counts as rank ``k``), neither when both ranked it alike."""
    p, c = np.atleast_2d(production)[:, :k], np.atleast_2d(candidate)[:, :k]

    def rank_in(lst: np.ndarray) -> np.ndarray:
        eq = (draft.items[..., None] == lst[:, None, :]) & (lst[:, None, :] >= 0)
        return np.where(eq.any(-1), eq.argmax(-1), k)

    rp, rc = rank_in(p), rank_in(c)
    return np.where(draft.items < 0, -1, np.where(rc < rp, CANDIDATE, np.where(rp < rc, PRODUCTION, -1))).astype(np.int8)


CREDIT_RULES = ("unique", "all", "rank")


def credited(draft: Draft, production: np.ndarray, candidate: np.ndarray, k: int, rule: str) -> np.ndarray:
    """The team each shown item's click credits under ``rule``: "all" (classic team-draft: the
    team that picked it), "unique" (:func:`contested`) or "rank" (:func:`by_rank`); -1: none."""
    if rule == "all":
        return draft.teams
    if rule == "unique":
        return contested(draft, production, candidate, k)
    if rule == "rank":
        return by_rank(draft, production, candidate, k)
    raise ValueError(f"credit rule must be one of {CREDIT_RULES}, not {rule!r}")
