"""The container image, built and run for real with podman: the project's Dockerfile on a base
built here from Debian packages (no image registry is reachable), a non-editable install of
the project with the CPU build of torch, run as a non-root user; the test waits for /readyz
(the image's own healthcheck agrees) and answers a search over the mounted models.

Prints the figures the issue asks for: build time, image size, cold start to /readyz."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from shelfops.serve.server import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/shelfops-base:bookworm"
IMAGE = "localhost/shelfops:test"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "containers.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def image() -> dict:
    for tool in ("podman", "mmdebstrap", "runc"):
        assert shutil.which(tool), f"{tool} is not installed (make containers installs it)"
    if podman("image", "exists", BASE, check=False).returncode != 0:
        subprocess.run([str(ROOT / "deploy" / "base-image.sh"), BASE], env=ENV, check=True, timeout=600)
    build = ["build", "--format", "docker", "--network", "host", "--build-arg", f"BASE={BASE}", "-t", IMAGE]
    wheels, ca = os.environ.get("PIP_FIND_LINKS"), os.environ.get("PIP_CERT")
    if wheels:  # the CPU torch wheel on this machine's disk, instead of the CPU index
        build += ["--volume", f"{wheels}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels",
                  "--build-arg", "PIP_EXTRA_INDEX_URL="]
    if ca:  # the certificates this machine's pip trusts (a TLS proxy's own CA)
        build += ["--volume", f"{ca}:/run/ca.crt:ro", "--build-arg", "PIP_CERT=/run/ca.crt"]
    t0 = time.monotonic()
    done = podman(*build, str(ROOT), timeout=1500, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    return {"build_s": time.monotonic() - t0, "size_mb": size / 1e6}


def test_the_image_serves_a_search_as_a_non_root_user(image, models, small_shop):
    # the models and the catalogue, readable by the image's user (pytest's folders are 0700)
    mounted = Path(tempfile.mkdtemp(prefix="shelfops-image-"))
    try:
        for task in ("search", "retrieval"):
            shutil.copytree(models / task, mounted / task)
        shutil.copytree(small_shop, mounted / "data")
        for p in [mounted, *mounted.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        port = free_port()
        t0 = time.monotonic()
        name = podman("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", "-v", f"{mounted}:/models:ro",
                      IMAGE, "serve", "--host", "0.0.0.0", "--model", "search=/models/search",
                      "--model", "retrieval=/models/retrieval", "--data", "/models/data").stdout.strip()
        try:
            url, ready = f"http://127.0.0.1:{port}", None
            while time.monotonic() - t0 < 180:
                try:
                    r = httpx.get(f"{url}/readyz", timeout=2)
                    if r.status_code == 200:
                        ready = time.monotonic() - t0
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            logs = podman("logs", name, check=False)
            assert ready is not None, f"no /readyz within 180 s:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"
            assert set(r.json()["models"]) == {"search", "retrieval"}
            s = httpx.post(f"{url}/v1/search", json={"query": "red shoes", "k": 5}, timeout=30)
            assert s.status_code == 200 and len(s.json()["items"]) == 5, s.text
            assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
            assert podman("healthcheck", "run", name, check=False).returncode == 0  # the image's own check
            # a non-editable install finds the configs it ships (the demo's among them)
            ok = podman("run", "--rm", IMAGE, "validate", "synthetic", check=False)
            assert ok.returncode == 0 and "valid" in ok.stdout, ok.stdout + ok.stderr
        finally:
            podman("rm", "-f", name, check=False)
    finally:
        shutil.rmtree(mounted, ignore_errors=True)
    print(f"\nIMAGE built in {image['build_s']:.0f} s, {image['size_mb']:.0f} MB; cold start to /readyz "
          f"{ready:.1f} s; a search answered as uid 10001")
