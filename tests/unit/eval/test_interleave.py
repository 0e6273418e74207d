"""Team-draft interleaving: fair, no item twice, every shown item credited to one ranker."""

from __future__ import annotations

import numpy as np
import pytest

from shelfops.eval.interleave import (
    CANDIDATE,
    PRODUCTION,
    by_rank,
    contested,
    credit,
    outcome,
    tally_change,
    team_draft,
)


def rankings(n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return np.argsort(rng.random((n, m)), 1), np.argsort(rng.random((n, m)), 1)


def test_each_ranker_leads_half_of_the_time_and_picks_alternate():
    rng = np.random.default_rng(0)
    a, b = rankings(4000, 30, rng)
    d = team_draft(a, b, 10, rng)
    lead = (d.teams[:, 0] == CANDIDATE).mean()
    assert abs(lead - 0.5) < 4 * np.sqrt(0.25 / 4000)  # a fair coin, within 4 sd
    picks = (d.teams == CANDIDATE).sum(1) - (d.teams == PRODUCTION).sum(1)
    assert set(np.unique(picks)) <= {-1, 0, 1}  # after every full round the teams are level
    # ... and after each prefix too: a team is never two picks ahead
    run = np.cumsum(np.where(d.teams == CANDIDATE, 1, -1), 1)
    assert np.abs(run).max() <= 1


def test_no_item_twice_and_each_shown_item_from_its_teams_ranking():
    rng = np.random.default_rng(1)
    a, b = rankings(500, 12, rng)
    a[:, :3] = b[:, :3]  # the rankers agree at the top, as a retrained model often does
    d = team_draft(a, b, 10, rng)
    for i in range(500):
        assert len(set(d.items[i])) == 10
        for j, (item, team) in enumerate(zip(d.items[i], d.teams[i])):
            mine = (a if team == PRODUCTION else b)[i]
            # the team picked its best item not already shown
            shown = set(d.items[i][:j])
            assert item == next(x for x in mine if x not in shown)


def test_short_rankings_fill_from_the_other_team_and_stop_when_both_are_spent():
    rng = np.random.default_rng(2)
    d = team_draft(np.array([[0, 1]]), np.array([[2, 3, 4, 5]]), 10, rng)
    assert sorted(d.items[0][d.items[0] >= 0].tolist()) == [0, 1, 2, 3, 4, 5]
    assert (d.items[0][6:] == -1).all() and (d.teams[0][6:] == -1).all()


def test_credit_outcome_and_how_a_second_click_changes_the_tally():
    teams = np.array([[PRODUCTION, CANDIDATE, CANDIDATE, PRODUCTION]])
    c, p = credit(teams, np.array([[True, True, True, False]]))
    assert (int(c[0]), int(p[0])) == (2, 1) and outcome(2, 1) == "win"
    assert tally_change((0, 0), (1, 0)) == {"wins": 1}
    assert tally_change((1, 0), (1, 1)) == {"wins": -1}  # back to a tie
    assert tally_change((1, 1), (1, 2)) == {"losses": 1}
    assert tally_change((2, 0), (3, 0)) == {}


@pytest.mark.parametrize("same", [True, False])
def test_two_equal_rankers_split_the_wins(same):
    """Clicks that ignore who ranked (position-biased, random appeal) favour neither team."""
    rng = np.random.default_rng(3)
    a, b = rankings(6000, 20, rng)
    if same:
        b = a.copy()
    d = team_draft(a, b, 10, rng)
    clicks = rng.random(d.items.shape) < 0.3 / np.arange(1, 11)
    c, p = credit(d.teams, clicks)
    wins, losses = int((c > p).sum()), int((p > c).sum())
    assert abs(wins - losses) < 4 * np.sqrt(wins + losses)


def test_unique_credit_ignores_items_both_rankers_would_show():
    rng = np.random.default_rng(4)
    a = np.array([[0, 1, 2, 3, 4, 5]])
    b = np.array([[1, 0, 6, 7, 2, 8]])  # shares 0, 1, 2 with a's top 6
    d = team_draft(a, b, 6, rng)
    teams = contested(d, a, b, 6)
    for item, team, kept in zip(d.items[0], d.teams[0], teams[0]):
        assert kept == (-1 if item in (0, 1, 2) else team)
    c, p = credit(teams, np.ones((1, 6), bool))  # every item clicked: only the unshared count
    assert int(c[0]) == sum(1 for i in d.items[0] if i in (6, 7, 8))
    assert int(p[0]) == sum(1 for i in d.items[0] if i in (3, 4, 5))


def test_the_servers_draft_of_item_ids_marks_what_a_click_credits():
    from shelfops.serve.routes.shop import draft

    ids, teams, credited = draft(["a", "b", "c", "d"], ["b", "x", "a", "y"], 4, "unique")
    assert len(ids) == len(set(ids)) == 4 and set(teams) == {"production", "candidate"}
    assert all(cr is None if i in ("a", "b") else cr == t for i, t, cr in zip(ids, teams, credited))
    _, teams, credited = draft(["a", "b", "c", "d"], ["b", "x", "a", "y"], 4, "all")
    assert credited == teams


def test_rank_credit_goes_to_the_ranker_that_ranked_the_clicked_item_higher():
    rng = np.random.default_rng(5)
    a = np.array([[0, 1, 2, 3]])
    b = np.array([[1, 0, 2, 9]])  # 0 and 1 swapped, 2 alike, 3 vs 9 each one side's
    d = team_draft(a, b, 4, rng)
    teams = by_rank(d, a, b, 4)
    want = {0: PRODUCTION, 1: CANDIDATE, 2: -1, 3: PRODUCTION, 9: CANDIDATE}
    assert [want[int(i)] for i in d.items[0]] == teams[0].tolist()
