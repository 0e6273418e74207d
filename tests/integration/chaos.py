"""What the chaos tests share: real processes to break (a Redis server, a PostgreSQL cluster of
their own on a free port, never the machine's shared ones) and a small async client that keeps
steady load on a server and records every answer."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shelfops.serve.server import free_port


def wait_for(cond, timeout: float = 30.0, every: float = 0.05) -> float:
    """Seconds until ``cond()`` held; fails past ``timeout``."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"not within {timeout} s: {cond}")
        time.sleep(every)
    return time.monotonic() - t0


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence; stop and start it at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        wait_for(lambda: _answers(redis.Redis(port=self.port, socket_timeout=0.2)), 10)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def _answers(r) -> bool:
    try:
        return bool(r.ping())
    except Exception:
        return False


class PostgresServer:
    """A PostgreSQL cluster of its own (initdb into a temp folder, trust auth, a free port),
    so a test can stop and start it without touching the machine's shared server."""

    def __init__(self) -> None:
        import os
        import tempfile

        self.root, self.port = Path(tempfile.mkdtemp(prefix="shelfops-pg-")), free_port()
        if os.geteuid() == 0:  # the server runs as postgres, which must own its folder
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.data = self.root / "pgdata"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.ctl = shutil.which("pg_ctl")
        assert self.ctl and shutil.which("initdb"), "PostgreSQL server binaries are not installed"

    def init(self) -> PostgresServer:
        subprocess.run(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=_user())
        return self.start()

    def start(self) -> PostgresServer:
        subprocess.run([self.ctl, "-D", str(self.data), "-o", f"-p {self.port} -k {self.root} -h 127.0.0.1",
                        "-l", str(self.root / "pg.log"), "-w", "start"], check=True, stdout=subprocess.DEVNULL,
                       user=_user())
        return self

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run([self.ctl, "-D", str(self.data), "-m", mode, "-w", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=_user())

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the folder's owner ``postgres``."""
    import os

    return "postgres" if os.geteuid() == 0 else None


@dataclass
class Answer:
    t: float  # seconds since the load started
    route: str
    status: int  # 0: no HTTP answer (connection error or client timeout)
    seconds: float
    body: dict = field(default_factory=dict)
    replica: str = ""  # x-shelfops-replica: host:pid of the process that answered
    replayed: bool = False  # x-shelfops-replayed: sent again after its first replica died with it


@dataclass
class Load:
    """Shoppers searching, clicking and asking for recommendations at a steady pace until
    stopped; every answer is kept."""

    url: str
    shoppers: int = 4
    pause: float = 0.05
    timeout: float = 5.0
    searches_only: bool = False
    recommend: bool = True  # False: search and click only (a server without a recommendation model)
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _call(self, c: httpx.AsyncClient, route: str, body: dict, t0: float) -> Answer:
        t = time.monotonic()
        try:
            r = await c.post(route, json=body)
            try:
                doc = r.json()
            except ValueError:  # a proxy's plain-text error page
                doc = {"text": r.text[:300]}
            ans = Answer(t - t0, route, r.status_code, time.monotonic() - t, doc,
                         r.headers.get("x-shelfops-replica", ""), r.headers.get("x-shelfops-replayed") == "1")
        except httpx.HTTPError as e:
            ans = Answer(t - t0, route, 0, time.monotonic() - t, {"error": repr(e)})
        self.answers.append(ans)
        return ans

    async def shopper(self, n: int, t0: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout) as c:
            i = 0
            while not self.stop.is_set():
                session = f"chaos-{n}-{i // 5}"
                s = await self._call(c, "/v1/search", {"query": "red running shoes", "k": 5, "session": session}, t0)
                if self.searches_only:
                    await asyncio.sleep(self.pause)
                    continue
                if s.status == 200 and s.body["items"]:
                    await self._call(c, "/v1/events", {"type": "click", "item_id": s.body["items"][0]["item_id"],
                                                       "request_id": s.body["request_id"], "session": session}, t0)
                if self.recommend:
                    await self._call(c, "/v1/recommend", {"session": session, "k": 5}, t0)
                i += 1
                await asyncio.sleep(self.pause)

    async def run(self, seconds: float | None = None) -> None:
        t0 = time.monotonic()
        tasks = [asyncio.create_task(self.shopper(n, t0)) for n in range(self.shoppers)]
        if seconds is not None:
            await asyncio.sleep(seconds)
            self.stop.set()
        await asyncio.gather(*tasks)

    def between(self, a: float, b: float, route: str | None = None) -> list[Answer]:
        return [x for x in self.answers if a <= x.t < b and (route is None or x.route == route)]
