"""The registry watcher and a rollout's promotion: a poll that read the alias before the
controller moved it must not swap the version just promoted on this server back out."""

from __future__ import annotations

from types import SimpleNamespace

from shelfops.serve.state import follows


def test_a_promoted_version_waits_for_the_registry_then_the_registry_leads_again():
    state = SimpleNamespace(promoted={"search": ("2", 100.0)})
    assert not follows(state, "search", "1", now=10.0)  # stale read: production still 1
    assert state.promoted == {"search": ("2", 100.0)}
    assert follows(state, "retrieval", "1", now=10.0)  # other tasks are followed as ever
    assert follows(state, "search", "2", now=11.0)  # the alias caught up: nothing pinned any more
    assert state.promoted == {}
    assert follows(state, "search", "1", now=12.0)  # a later rollback in the registry is followed


def test_a_promotion_the_registry_never_confirms_is_given_up_after_its_wait():
    state = SimpleNamespace(promoted={"search": ("2", 100.0)})
    assert not follows(state, "search", "1", now=99.0)
    assert follows(state, "search", "1", now=100.5) and state.promoted == {}
