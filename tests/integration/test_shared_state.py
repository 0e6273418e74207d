"""Two server replicas share one Redis (real, on 127.0.0.1:6379): a shopper's session and the
served-request log are the same whichever replica a request or an event lands on, which is
what lets replicas sit behind a load balancer (or run as Ray Serve replicas)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shelfops.config.schema import ServeConfig
from shelfops.errors import ConfigError
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.server import start_in_thread

pytestmark = pytest.mark.slow
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def replicas(models, small_shop):
    import redis

    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError as e:  # CI starts Redis (.ci/run); a developer machine runs it
        pytest.fail(f"Redis at {REDIS} does not answer: {e}")
    settings = ServeSettings(models={t: (models / t, "1") for t in ("search", "retrieval", "recommend")},
                             data_dir=small_shop,
                             serve=ServeConfig(rerank_depth=20, state_url=REDIS, session_length=5))
    a, b = start_in_thread(create_app(settings)), start_in_thread(create_app(settings))
    yield a, b
    a.stop()
    b.stop()


def test_a_session_built_on_one_replica_is_read_on_the_other(replicas):
    a, b = (httpx.Client(base_url=r.url, timeout=30) for r in replicas)
    session = f"s-{uuid.uuid4().hex}"  # Redis outlives the test: a fresh key each run
    served = a.post("/v1/search", json={"query": "red running shoes", "k": 8, "session": session}).json()
    items = [it["item_id"] for it in served["items"]]
    # the click lands on replica b, for a request replica a served: b finds the request in Redis
    for i in items[:3]:
        r = b.post("/v1/events", json={"type": "click", "item_id": i, "request_id": served["request_id"]})
        assert r.status_code == 200, r.text
    assert r.json()["session_length"] == 3  # the session came from the request a served
    rec = a.post("/v1/recommend", json={"session": session, "k": 5}).json()
    assert rec["history_length"] == 3
    assert not set(items[:3]) & {it["item_id"] for it in rec["items"]}
    # b counted the feedback for the version a served with
    assert 'shelfops_feedback_total{task="search",type="click",version="1"} 3.0' in b.get("/metrics").text
    # sessions are capped at session_length (5), oldest dropped, on both replicas
    r = a.post("/v1/events/batch", json={"events": [{"type": "view", "item_id": i, "session": session}
                                                    for i in items[3:8]]})
    assert r.status_code == 200, r.text
    assert b.post("/v1/recommend", json={"session": session, "k": 5}).json()["history_length"] == 5
    # an impression does not feed the session; its answer still says how long the session is
    r = b.post("/v1/events", json={"type": "impression", "item_id": items[0], "session": session})
    assert r.json()["session_length"] == 5
    # a request id neither replica served is refused by both, naming the field
    for c in (a, b):
        bad = c.post("/v1/events", json={"type": "click", "item_id": items[0], "request_id": "nope"})
        assert bad.status_code == 400 and "request_id" in bad.text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's exit
def test_a_shared_store_that_does_not_answer_stops_the_start_with_its_name(models, small_shop, caplog):
    settings = ServeSettings(models={"search": (models / "search", "1")}, data_dir=small_shop,
                             serve=ServeConfig(state_url="redis://127.0.0.1:1/0"))
    with pytest.raises(RuntimeError, match="did not start"):
        start_in_thread(create_app(settings), timeout=30)
    err = caplog.text  # uvicorn logs the failed start through shelfops' logging (no handler of its own)
    assert "serve.state_url" in err and "does not answer" in err, err[-2000:]


def test_an_unknown_state_url_is_a_config_error():
    with pytest.raises(ConfigError, match="serve.state_url"):
        create_app(ServeSettings(models={}, serve=ServeConfig(state_url="postgres://x")))
