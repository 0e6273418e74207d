"""Traffic replay: the synthetic shop's shoppers, played against a live server over HTTP.

Each simulated search picks an active shopper and a query the way the generator does
(their category taste, pulled toward the trend once the drift has begun on ``day``), asks
``POST /v1/search``, then clicks each shown item with the hidden truth's probability
(examination of the position x attractiveness of the item to that shopper), and reports
impressions and clicks through ``POST /v1/events/batch`` tied to the request. So a model
that ranks what shoppers want higher earns more clicks, which is what the rollout
controller measures. The replay also keeps its own tally per served search version.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from shelfops.sim.shop.truth import ShopTruth


@dataclass
class ReplayTally:
    searches: int = 0
    impressions: int = 0
    clicks: int = 0
    errors: int = 0
    by_version: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, version: str, impressions: int, clicks: int, expected: float = 0.0) -> None:
        """One search: what it showed, what was clicked, and the clicks the hidden truth expected
        of its list (the sum of its items' click probabilities: what the list was worth)."""
        self.searches += 1
        self.impressions += impressions
        self.clicks += clicks
        v = self.by_version.setdefault(version, {"searches": 0, "impressions": 0, "clicks": 0, "expected": 0.0,
                                                 "expected_sq": 0.0})
        v["searches"] += 1
        v["impressions"] += impressions
        v["clicks"] += clicks
        v["expected"] += expected
        v["expected_sq"] += expected * expected

    def ctr(self, version: str | None = None) -> float | None:
        v = self.by_version.get(version, {}) if version else {"impressions": self.impressions,
                                                              "clicks": self.clicks}
        return v["clicks"] / v["impressions"] if v.get("impressions") else None

    def to_dict(self) -> dict:
        return {"searches": self.searches, "impressions": self.impressions, "clicks": self.clicks,
                "errors": self.errors, "ctr": self.ctr(),
                "by_version": {k: {**v, "ctr": v["clicks"] / v["impressions"] if v["impressions"] else None,
                                   "expected_per_search": v["expected"] / v["searches"] if v["searches"] else None}
                               for k, v in sorted(self.by_version.items())}}


def served_version(answer: dict) -> str:
    """The version a /v1/search answer came from; an interleaved list is both versions', tallied
    apart ("interleaved"), so that each version's click-through is its own."""
    if answer.get("interleaving"):
        return "interleaved"
    return answer["versions"].get("search") or answer["versions"].get("retrieval", "?")


class Replay:
    """Plays shoppers of ``truth`` on ``day`` against the server at ``url``."""

    def __init__(self, truth: ShopTruth, url: str, *, day: int, seed: int = 0, k: int = 10,
                 timeout: float = 60.0) -> None:
        import httpx

        self.truth, self.day, self.k = truth, day, k
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()
        self._seed = np.random.SeedSequence(seed)
        self._lock = threading.Lock()
        self.tally = ReplayTally()
        self._httpx = httpx

    def _client(self):
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = self._httpx.Client(base_url=self.url, timeout=self.timeout)
        return c

    def query_for(self, rng: np.random.Generator, user: str) -> str:
        t = self.truth
        u = t.user_index(user)
        pref = t.users.leaf_pref[[u]] if u >= 0 else t.pop_leaf[None, :]
        q = t.pick_queries(rng, t.pick_leaves(rng, pref, self.day))
        return t.bank.text[int(q[0])]

    def one(self, rng: np.random.Generator) -> dict:
        """One search and its feedback; returns what happened."""
        c = self._client()
        user = self.truth.sample_user(rng, self.day)
        query = self.query_for(rng, user)
        try:
            # each replayed search is a shopping session of its own (what interleaving is sticky by)
            session = f"{user}-{rng.integers(1 << 62):x}"
            r = c.post("/v1/search", json={"query": query, "k": self.k, "user": user, "session": session})
            r.raise_for_status()
            got = r.json()
        except Exception:
            with self._lock:
                self.tally.errors += 1
            return {"error": True}
        ids = [it["item_id"] for it in got["items"]]
        version, p = served_version(got), self._click_probability(user, query, ids)
        clicked: list[str] = []
        if ids:
            clicked = [i for i, hit in zip(ids, rng.random(len(ids)) < p) if hit]
            events = [{"type": "impression", "item_id": i, "request_id": got["request_id"], "user": user}
                      for i in ids] + [{"type": "click", "item_id": i, "request_id": got["request_id"],
                                        "user": user} for i in clicked]
            try:
                c.post("/v1/events/batch", json={"events": events}).raise_for_status()
            except Exception:
                with self._lock:
                    self.tally.errors += 1
                return {"error": True}
        with self._lock:
            self.tally.add(version, len(ids), len(clicked), float(p.sum()))
        return {"user": user, "query": query, "version": version, "shown": len(ids), "clicks": len(clicked)}

    def _click_probability(self, user: str, query: str, ids: list[str]) -> np.ndarray:
        """Each shown item's click probability at its position, by the hidden truth."""
        if not ids:
            return np.zeros(0)
        return self.truth.click_probability(user, query, ids, np.arange(1, len(ids) + 1), self.day)

    def panel(self, n: int, seed: int) -> list[tuple[str, str]]:
        """``n`` searches (shopper, query) drawn as :meth:`one` draws them, fixed by ``seed``: a
        panel that :meth:`probe` can put to two versions, so that they answer the same searches."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            user = self.truth.sample_user(rng, self.day)
            out.append((user, self.query_for(rng, user)))
        return out

    def probe(self, panel: list[tuple[str, str]], *, concurrency: int = 4) -> list[dict]:
        """Each panel search asked of the server as it serves now, with no feedback sent (a probe
        is not a shopper, and must not move what the controller measures): which version answered
        and what its list was worth by the hidden truth (expected clicks), in the panel's order."""
        def ask(i: int) -> dict:
            user, query = panel[i]
            r = self._client().post("/v1/search", json={"query": query, "k": self.k, "user": user,
                                                        "session": f"probe-{i}"})
            r.raise_for_status()
            got = r.json()
            p = self._click_probability(user, query, [it["item_id"] for it in got["items"]])
            return {"version": served_version(got), "expected": float(p.sum())}

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(ask, range(len(panel))))

    def run(self, searches: int | None = None, *, seconds: float | None = None, concurrency: int = 4,
            stop: threading.Event | None = None, rate: float | None = None, progress=None) -> ReplayTally:
        """Play ``searches`` searches (or until ``seconds`` pass, or ``stop`` is set) with
        ``concurrency`` shoppers at a time, at most ``rate`` searches per second overall
        (None: as fast as the server answers; 0: paused until the rate is raised again);
        returns the tally (also kept on ``self.tally``)."""
        if searches is None and seconds is None and stop is None:
            raise ValueError("give searches, seconds or a stop event")
        deadline = time.monotonic() + seconds if seconds is not None else None
        counter = iter(range(searches if searches is not None else 1 << 62))
        seeds = self._seed.spawn(concurrency)
        self.rate = rate  # may be changed while running (e.g. slowed while a retraining runs)
        slot = [time.monotonic()]  # when the next search may start

        def worker(ss: np.random.SeedSequence) -> None:
            rng = np.random.default_rng(ss)
            while True:
                if stop is not None and stop.is_set():
                    return
                if deadline is not None and time.monotonic() > deadline:
                    return
                if self.rate == 0:  # paused
                    (stop.wait if stop is not None else time.sleep)(0.05)
                    continue
                with self._lock:
                    if next(counter, None) is None:
                        return
                    wait = 0.0
                    if self.rate:
                        now = time.monotonic()
                        slot[0] = max(slot[0], now) + 1.0 / self.rate
                        wait = slot[0] - now - 1.0 / self.rate
                if wait > 0:
                    if stop is not None:
                        stop.wait(wait)
                    else:
                        time.sleep(wait)
                self.one(rng)
                if progress is not None:
                    progress()

        with ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(worker, s) for s in seeds]:
                f.result()
        return self.tally
