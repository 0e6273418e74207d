"""The replay's panel and probe: the same searches for two versions, asked without feedback."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from shelfops.sim.replay import Replay
from shelfops.sim.shop.generate import ShopTruth, generate_shop


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> ShopTruth:
    out = tmp_path_factory.mktemp("shop")
    generate_shop(out, users=200, items=200, days=6, sessions_per_user_per_day=0.5, seed=5,
                  start=datetime(2026, 1, 1), drift_day=3, drift_strength=0.6, judged_queries=20,
                  target_events=None, drift_new_items=0.03, progress=False)
    return ShopTruth.load(out)


class _Server:
    """A loopback server answering /v1/search with the first ten items, from ``version``."""

    def __init__(self, items: list[str]) -> None:
        self.version, self.searches, self.events = "1", [], 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/search":
                    outer.searches.append((body["user"], body["query"]))
                    out = {"request_id": "r", "versions": {"search": outer.version},
                           "items": [{"item_id": i, "title": i, "category": None, "score": 1.0} for i in items]}
                else:
                    outer.events += 1
                    out = {}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def test_a_panel_is_the_same_searches_for_one_seed_and_a_probe_sends_no_feedback(truth):
    items = [f"i{i:05d}" for i in range(3, 13)]  # the shop's own ids (ShopTruth.item_index)
    server = _Server(items)
    try:
        replay = Replay(truth, server.url, day=4, seed=0)
        panel = replay.panel(30, seed=7)
        assert panel == replay.panel(30, seed=7) and panel != replay.panel(30, seed=8)
        first = replay.probe(panel)
        server.version = "2"
        second = replay.probe(panel, concurrency=2)
        # asked in full, each search twice, and nothing reported back as a shopper's feedback
        assert sorted(server.searches) == sorted(panel * 2) and server.events == 0
        assert [a["version"] for a in first] == ["1"] * 30 and [a["version"] for a in second] == ["2"] * 30
        want = [float(truth.click_probability(u, q, items, np.arange(1, 11), 4).sum()) for u, q in panel]
        assert [a["expected"] for a in first] == pytest.approx(want)
        assert [a["expected"] for a in second] == pytest.approx(want)  # the same lists: worth the same
        assert replay.tally.searches == 0  # the probe is not the shoppers' tally
    finally:
        server.httpd.shutdown()
