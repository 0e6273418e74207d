"""Pure decisions added for faults: what `registry verify` calls a problem, how the controller
backs off, what is redacted before anything is written."""

from __future__ import annotations

import pytest

from shelfops.monitor.controller import backoff
from shelfops.redact import redacted, url
from shelfops.registry.consistency import problems

TAGS = {"shelfops.manifest_sha256": "ab"}


def test_a_consistent_registry_has_no_problem():
    store = {"production": ("2", 2), "previous": ("1", 1)}
    audit = [("production", "1"), ("production", "2"), ("previous", "1")]
    assert problems("m", store, {"production": "2", "previous": "1"}, audit, {"1": TAGS, "2": TAGS}) == []


def test_a_mirror_ahead_of_the_store_is_repairable_and_the_rest_is_not():
    store = {"production": ("1", 1)}
    found = problems("m", store, {"production": "2", "canary": "2"}, [("production", "1")], {"1": TAGS, "2": TAGS})
    assert [(p.kind, p.repairable) for p in found] == [("mirror", True), ("mirror", True)]
    assert "MLflow's m@production is v2; the operational store says v1" in found[0].message
    # a move without its history row, a last move that disagrees, a version MLflow lacks, a
    # registration cut short: none of these can be fixed by re-pointing a mirror
    broken = problems("m", {"production": ("3", 2)}, {"production": "3"}, [("production", "1")],
                      {"1": TAGS, "2": {}})
    assert sorted(p.kind for p in broken) == ["history", "incomplete_version", "missing_version"]
    assert not any(p.repairable for p in broken)
    assert problems("m", {"production": ("2", 2)}, {"production": "2"}, [("production", "1"), ("production", "3")],
                    {"2": TAGS})[0].message.endswith("its last recorded move went to v3")


@pytest.mark.parametrize("failures,expect", [(0, 5.0), (1, 0.5), (2, 1.0), (4, 4.0), (7, 30.0), (50, 30.0)])
def test_backoff_doubles_from_half_a_second_to_its_cap(failures, expect):
    assert backoff(failures, every=5.0) == expect


def test_secrets_are_redacted_from_urls_and_fields():
    assert url("postgresql+psycopg://app:s3cret@db:5432/ops") == "postgresql+psycopg://app:***@db:5432/ops"
    assert url("redis://:pw@cache:6379/0 and https://h/x?token=abc&page=2") == \
        "redis://:***@cache:6379/0 and https://h/x?token=***&page=2"
    assert url("sqlite:////home/u/.shelfops/ops.db") == "sqlite:////home/u/.shelfops/ops.db"
    doc = {"registry": {"ops_url": "postgresql://u:p@h/db", "tracking_uri": None},
           "data": {"pseudonymise": {"key_env": "SHELFOPS_PSEUDONYM_KEY"}}, "admin_token": "t0k", "list": ["a://x:y@z"]}
    assert redacted(doc) == {"registry": {"ops_url": "postgresql://u:***@h/db", "tracking_uri": None},
                             "data": {"pseudonymise": {"key_env": "SHELFOPS_PSEUDONYM_KEY"}},
                             "admin_token": "***", "list": ["a://x:***@z"]}
