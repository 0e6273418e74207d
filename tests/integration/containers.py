"""What the container tests share: podman with this project's settings, and the serving image
built once per test process on a base made from Debian packages (no image registry is
reachable here)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/shelfops-base:bookworm"
IMAGE = "localhost/shelfops:test"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "containers.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=check)


@functools.cache
def built_image() -> dict:
    """Build the Dockerfile (layers cached by podman between runs); its build time and size."""
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


def readable_copy(models: Path, shop: Path) -> Path:
    """The models and the catalogue in a folder the image's user can read (pytest's are 0700)."""
    mounted = Path(tempfile.mkdtemp(prefix="shelfops-image-"))
    for task in ("search", "retrieval"):
        shutil.copytree(models / task, mounted / task)
    shutil.copytree(shop, mounted / "data")
    for p in [mounted, *mounted.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return mounted


def ready_after(url: str, t0: float, timeout: float = 180.0):
    """Seconds from ``t0`` until ``url``/readyz answered 200 (None past ``timeout``), and that answer."""
    import httpx

    while time.monotonic() - t0 < timeout:
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return time.monotonic() - t0, r
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return None, None
