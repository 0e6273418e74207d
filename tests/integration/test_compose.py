"""deploy/compose.yaml for real with podman-compose: PostgreSQL (operational store and MLflow's
backend), an MLflow tracking server, Redis and the serving image, each in its own container on
the compose network. From outside, as a user would: versions are registered in that MLflow
server with their alias history in that PostgreSQL; the server follows production, hot-swaps
to a new version when the alias moves, and keeps sessions in that Redis."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import httpx
import pytest
from containers import ENV, IMAGE, ROOT, built_image, podman, readable_copy, waited

from shelfops.serve.server import free_port

# the image (up to 1500 s when no container test built it first), the service images (900 s), the stack
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]
COMPOSE = ROOT / "deploy" / "compose.yaml"


def wait(what: str, cond, timeout: float = 180.0) -> float:
    took = waited(cond, timeout)
    assert took is not None, f"{what}: not within {timeout:.0f} s"
    return took


def test_the_compose_stack_serves_the_registrys_production_and_follows_an_alias_move(models, small_shop, tmp_path):
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

        # a new version promoted in the registry is what the server answers with, without a restart
        reg.register(models / "search-b", "shop-search")
        reg.promote("shop-search", "2", "production", reason="second", force=True, actor="compose-test")
        swap = wait("the hot swap to v2", lambda: httpx.post(f"{url}/v1/search", json={"query": "shoes", "k": 3},
                                                             timeout=10).json()["versions"]["search"] == "2", 60)
        moves = [(m.alias, m.from_version, m.to_version) for m in reg.history("shop-search")]
        assert ("production", "1", "2") in moves, moves
    finally:
        subprocess.run(["podman-compose", "-p", project, "-f", str(COMPOSE), "down", "-v"], env=env,
                       capture_output=True, timeout=300)
        shutil.rmtree(mounted, ignore_errors=True)
    print(f"\nCOMPOSE PostgreSQL + MLflow server + Redis + shelfops: /readyz {cold:.1f} s after up, "
          f"v1 served from the MLflow server, v2 served {swap:.1f} s after its promotion")
