"""A real two-node Ray cluster on this machine, for the tests of the scale-out paths: a head and a
worker started with `ray start` (one CPU each, as PLATFORM-NOTES.md describes), a driver joined
to it, everything stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def ray_cli(*args: str) -> None:
    # Ray 2.60's `ray start --head` turns token authentication on unless told not to, and a
    # driver reads its mode once, when ray is imported: these clusters live on this machine's
    # loopback for the length of one test, so they run without (RAY_AUTH_MODE=disabled)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([RAY, *args], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, f"ray {' '.join(args)}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}"


@contextmanager
def two_nodes() -> Iterator[tuple[str, str]]:
    """Start the cluster and join it; yields (its address, its dashboard's URL: Ray's state API)."""
    import ray

    from shelfops.serve.server import free_port

    port, dashboard = free_port(), free_port()
    ray_cli("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
            "--disable-usage-stats")
    try:
        ray_cli("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                "--disable-usage-stats")
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        deadline = time.time() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.time() < deadline, "the worker node did not join"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        ray_cli("stop", "--force")
