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
    """``make image`` as a user runs it (the base from Debian packages when missing, the torch
    wheel and CA bundle this machine's pip uses), tagged IMAGE; its time and the image's size."""
    for tool in ("podman", "mmdebstrap", "runc"):
        assert shutil.which(tool), f"{tool} is not installed (make containers installs it)"
    t0 = time.monotonic()
    done = subprocess.run(["make", "-C", str(ROOT), "image", f"SHELFOPS_IMAGE={IMAGE}", f"BASE_IMAGE={BASE}"],
                          env=ENV, capture_output=True, text=True, timeout=1500)
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


def waited(cond, timeout: float = 180.0) -> float | None:
    """Seconds until ``cond()`` held (a server not answering yet counts as not yet); None past ``timeout``."""
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if cond():
                return time.monotonic() - t0
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(0.5)
    return None


def ready_after(url: str, t0: float, timeout: float = 180.0):
    """Seconds from ``t0`` until ``url``/readyz answered 200 (None past ``timeout``), and that answer."""
    import httpx

    took = waited(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, timeout - (time.monotonic() - t0))
    return (None, None) if took is None else (time.monotonic() - t0, httpx.get(f"{url}/readyz", timeout=5))
