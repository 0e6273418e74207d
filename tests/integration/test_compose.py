"""deploy/compose.yaml for real with podman-compose: PostgreSQL (operational store and MLflow's
backend), an MLflow tracking server, Redis and the serving image, each in its own container on
the compose network. From outside, as a user would: versions are registered in that MLflow
server with their alias history in that PostgreSQL; the server serves production, keeps
sessions in that Redis, and a new version is rolled out through it by the controller (shadow,
canary steps on live traffic, promotion) until the server answers with it."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
import uuid

import httpx
import pytest
from containers import ENV, IMAGE, ROOT, built_image, podman, readable_copy, waited

from shelfops.config.schema import RolloutConfig
from shelfops.monitor.controller import Controller, HttpServer
from shelfops.monitor.rollout import policy_from
from shelfops.serve.server import free_port

# the image (up to 1500 s when no container test built it first), the service images (900 s), the stack
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]
COMPOSE = ROOT / "deploy" / "compose.yaml"


def wait(what: str, cond, timeout: float = 180.0) -> float:
    took = waited(cond, timeout)
    assert took is not None, f"{what}: not within {timeout:.0f} s"
    return took


def test_the_compose_stack_serves_the_registrys_production_and_rolls_a_version_out(models, small_shop, tmp_path):
    assert shutil.which("podman-compose"), "podman-compose is not installed (make containers installs it)"
    built_image()
    subprocess.run([str(ROOT / "deploy" / "service-images.sh")], env=ENV, check=True, timeout=900,
                   capture_output=True)
    mounted = readable_copy(models, small_shop)
    ports = {k: free_port() for k in ("POSTGRES_PORT", "REDIS_PORT", "MLFLOW_PORT", "SHELFOPS_PORT")}
    env = {**ENV, **{k: str(v) for k, v in ports.items()}, "POSTGRES_IMAGE": "localhost/shelfops-postgres:bookworm",
           "REDIS_IMAGE": "localhost/shelfops-redis:bookworm", "SHELFOPS_IMAGE": IMAGE,
           "SHELFOPS_DATA": str(mounted / "data"), "SHELFOPS_ADMIN_TOKEN": "compose-test",
           "POSTGRES_PASSWORD": "compose-pw"}
    project = f"shelfops-test-{uuid.uuid4().hex[:6]}"

    def compose(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman-compose", "-p", project, "-f", str(COMPOSE), *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"podman-compose {' '.join(args)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    try:
        compose("up", "-d", "postgres", "redis", "mlflow")
        mlflow = f"http://127.0.0.1:{ports['MLFLOW_PORT']}"
        wait("the MLflow server", lambda: httpx.get(f"{mlflow}/health", timeout=2).status_code == 200)

        # as a user registers from their machine: MLflow over HTTP, alias history in PostgreSQL
        from shelfops.registry.registry import Registry

        ops = f"postgresql+psycopg://shelfops:compose-pw@127.0.0.1:{ports['POSTGRES_PORT']}/shelfops"
        reg = Registry(mlflow, home=tmp_path / "home", ops_url=ops)
        for task in ("search", "retrieval"):
            reg.register(models / task, f"shop-{task}")
            reg.promote(f"shop-{task}", "1", "production", reason="first", force=True, actor="compose-test")

        compose("up", "-d", "shelfops")
        url = f"http://127.0.0.1:{ports['SHELFOPS_PORT']}"
        try:
            cold = wait("the server's /readyz", lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200)
        except AssertionError as e:
            logs = podman("logs", "--tail", "40", f"{project}_shelfops_1", check=False)
            raise AssertionError(f"{e}\n{logs.stdout}{logs.stderr}") from None
        ready = httpx.get(f"{url}/readyz").json()
        assert {t: m["version"] for t, m in ready["models"].items()} == {"search": "1", "retrieval": "1"}
        first = httpx.post(f"{url}/v1/search", json={"query": "red shoes", "k": 3}, timeout=30).json()
        assert first["versions"]["search"] == "1" and len(first["items"]) == 3

        # a click lands in the compose stack's Redis, in the session
        session = f"compose-{uuid.uuid4().hex[:8]}"
        r = httpx.post(f"{url}/v1/events", json={"type": "click", "item_id": first["items"][0]["item_id"],
                                                 "request_id": first["request_id"], "session": session})
        assert r.status_code == 200, r.text
        import redis

        assert redis.Redis(port=ports["REDIS_PORT"]).llen(f"shelfops:session:{session}") == 1

        # v2 rolled out through the stack by the controller, as `shelfops rollout run` does: shadow,
        # then canary steps on live traffic and clicks, then production moves in its PostgreSQL and
        # MLflow server and the server answers with v2
        reg.register(models / "search-b", "shop-search")
        gate = tmp_path / "gate"
        gate.mkdir()
        (gate / "gate.json").write_text(json.dumps({"passed": True, "failed": []}))
        (gate / "gate.html").write_text("<html></html>")
        reg.attach_gate("shop-search", "2", gate)
        policy = policy_from(RolloutConfig(min_dwell_s=0, min_requests=30, min_impressions=60,
                                           min_shadow_overlap=0.0, max_p99_ratio=20.0))
        ctl = Controller(reg, HttpServer(url, "compose-test"), "shop-search", policy=policy)
        began = time.monotonic()
        ctl.start("2", reason="compose rollout")
        rng, steps, n = random.Random(0), [], 0
        with httpx.Client(base_url=url, timeout=30) as c:
            while ctl.row().status == "running" and n < 6000:
                n += 1
                r = c.post("/v1/search", json={"query": "shoes", "k": 3, "user": f"u{n}"}).json()
                item = r["items"][0]["item_id"]
                c.post("/v1/events", json={"type": "impression", "item_id": item, "request_id": r["request_id"]})
                if rng.random() < 0.3:  # shoppers click both versions alike
                    c.post("/v1/events", json={"type": "click", "item_id": item, "request_id": r["request_id"]})
                if n % 50 == 0 and (d := ctl.tick()) and d.action != "hold":
                    steps.append((d.action, d.stage))
            rolled = time.monotonic() - began
            row = ctl.row()
            assert row.status == "promoted", (row, steps)
            assert [a for a, _ in steps] == ["advance"] * (len(steps) - 1) + ["promote"], steps
            assert c.post("/v1/search", json={"query": "shoes", "k": 3}).json()["versions"]["search"] == "2"
        assert reg.aliases("shop-search")["production"] == "2"
        moves = [(m.alias, m.from_version, m.to_version, m.actor) for m in reg.history("shop-search")]
        assert ("production", "1", "2", "controller") in moves, moves
    finally:
        subprocess.run(["podman-compose", "-p", project, "-f", str(COMPOSE), "down", "-v"], env=env,
                       capture_output=True, timeout=300)
        shutil.rmtree(mounted, ignore_errors=True)
    print(f"\nCOMPOSE PostgreSQL + MLflow server + Redis + shelfops: /readyz {cold:.1f} s after up, "
          f"v1 served from the MLflow server, v2 rolled out by the controller in {rolled:.1f} s "
          f"({n} searches; {' -> '.join(f'{a} {s}' for a, s in steps)})")
