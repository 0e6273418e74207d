"""Run the API with uvicorn: in the foreground (CLI) or in a background thread (tests, bench)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_in_thread(app: FastAPI, *, host: str = "127.0.0.1", port: int | None = None,
                    timeout: float = 300.0) -> Running:
    """Serve ``app`` over real loopback HTTP from a background thread; returns once ready."""
    port = port or free_port()
    # logging as the process has it (shelfops.logs.setup, or Python's default: warnings and up);
    # the access log is the app's own (ServeSettings.access_log)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, log_level=None,
                                           lifespan="on", access_log=False))
    t = threading.Thread(target=server.run, daemon=True, name="shelfops-http")
    t.start()
    t0 = time.time()
    while not (server.started and app.state.shelfops.ready):
        if not t.is_alive() or time.time() - t0 > timeout:
            server.should_exit = True
            raise RuntimeError("the server did not start (see the log above)")
        time.sleep(0.05)
    return Running(server, t, f"http://{host}:{port}")
