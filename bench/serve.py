"""Served re-rank throughput vs in-process, and vs a plain per-request FastAPI service;
with ``--search``, the latency of one whole search instead.

Three numbers from one run, all on the same optimized search model and the same
(query, 20 candidates) requests drawn from the dataset's judged pools:

1. in-process: the shipped variant scoring batches of its tuned max_batch, no HTTP;
2. shelfops serve (`/v1/rerank`, micro-batching, the tuned variant) in its own process,
   driven over loopback by C concurrent clients;
3. a plain FastAPI + transformers fp32 service (one model call per request, no batching
   across requests, torch fp32 eager), in its own process, same clients and requests.

    .venv/bin/python bench/serve.py --model runs/demo/optimized/search --concurrency 16

``--search``: `shelfops serve` with the model in its own process, `/v1/search` (BM25 over the
whole catalogue, then the re-rank at the depth the optimize stage chose) posted with real
validation queries by C clients (default 1, then 8); per stage (retrieval, re-rank, response:
the server's own Server-Timing header) and end to end at the client, p50 and p99, beside the
re-rank quality the optimize stage measured at that depth. Writes bench/results/search_latency.json.

    .venv/bin/python bench/serve.py --search --model runs/demo/optimized/v2 --seconds 20
    .venv/bin/python bench/serve.py --serve-baseline runs/demo/optimized/search --port 8123  # (internal)

Writes bench/results/serve.json.

``--peers``: also infinity-emb (PyPI ``infinity-emb``, its own venv from ``make bench-peers``)
serving the same weights, exported as a Hugging Face model (bench/peers/hf_export.py), with each
of its CPU engines that can run them, under the same load in the same run; beside each, the
largest gap of its scores to shelfops' fp32 model's. Writes bench/results/serve_peers.json.

    make bench-peers && .venv/bin/python bench/serve.py --model runs/demo/optimized/search --peers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- the plain baseline server
class Body(BaseModel):
    query: str
    items: list[str]


def baseline_app(folder: Path):
    """FastAPI + transformers fp32 eager, one forward per request: what teams start with."""
    import polars as pl
    import torch
    from fastapi import FastAPI

    from shelfops.artifacts import read_manifest
    from shelfops.train import text_models
    from shelfops.train.pairs import item_texts

    model, tok, spec = text_models.load(folder)
    torch.set_num_threads(int(os.environ.get("BASELINE_THREADS", "2")))
    data = Path(read_manifest(folder).extra["data"])
    items = item_texts(pl.read_parquet(data / "items.parquet"))
    text = dict(zip(items["item_id"].to_list(), items["text"].to_list()))
    app = FastAPI()

    @app.post("/v1/rerank")
    def rerank(b: Body):  # a sync endpoint: FastAPI runs it in its thread pool, one per request
        enc = tok([b.query] * len(b.items), [text[i] for i in b.items], truncation=True,
                  max_length=spec.max_length, padding=True, return_tensors="pt")
        with torch.inference_mode():
            s = model(**enc).tolist()
        return {"items": [{"item_id": i, "score": x} for i, x in sorted(zip(b.items, s), key=lambda t: -t[1])]}

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app


# ----------------------------------------------------------------- load generator
async def _post(reader, writer, head: bytes, body: bytes, timing: list | None = None) -> int:
    """One HTTP/1.1 keep-alive POST on an open connection; returns the status code (and appends
    the response's Server-Timing header, if any, to ``timing``)."""
    writer.write(head + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"server-timing" and timing is not None:
            timing.append(value.decode().strip())
    await reader.readexactly(length)
    return status


async def load(url: str, requests: list[dict], *, concurrency: int, seconds: float,
               path: str = "/v1/rerank", timing: list | None = None) -> dict:
    """Closed-loop load: ``concurrency`` clients, each on its own keep-alive connection, posting
    pre-encoded requests back to back. A bare asyncio HTTP/1.1 client, so that the load
    generator, which shares the machine's cores with the server, costs as little CPU as it
    can (an httpx client cost the server a measurable share of 2 cores)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    bodies = [json.dumps(r).encode() for r in requests]
    heads = [(f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(b)}\r\n\r\n").encode() for b in bodies]
    sizes = [len(r.get("items") or r.get("documents") or ()) or 1 for r in requests]
    lat, errors, pairs = [], 0, 0
    stop = time.perf_counter() + seconds

    async def user(i: int) -> None:
        nonlocal errors, pairs
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        n = i
        try:
            while time.perf_counter() < stop:
                k = n % len(bodies)
                n += concurrency
                t0 = time.perf_counter()
                try:
                    ok = await _post(reader, writer, heads[k], bodies[k], timing) == 200
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection(u.hostname, u.port)
                lat.append(time.perf_counter() - t0)
                if ok:
                    pairs += sizes[k]
                else:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    import numpy as np

    ms = np.array(lat) * 1e3
    return {"requests": len(lat), "errors": errors, "wall_s": wall, "req_per_s": len(lat) / wall,
            "pairs_per_s": pairs / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 300, health: str = "/healthz") -> None:
    import httpx

    t0 = time.time()
    while True:
        try:
            if httpx.get(url + health, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() - t0 > timeout:
            raise RuntimeError(f"server at {url} did not start")
        time.sleep(0.5)


def wait_retriever(url: str, proc: subprocess.Popen, want: str, timeout: float = 1200) -> str:
    """Search until the answer comes from ``want`` (a large catalogue is embedded in the background
    after the server is up; until then search says it is lexical), so that no timed search is."""
    import httpx

    t0, got = time.time(), None
    while time.time() - t0 < timeout and proc.poll() is None:
        got = httpx.post(url + "/v1/search", json={"query": "warm up", "k": 10}, timeout=30).json().get("retriever")
        if got == want:
            return got
        time.sleep(2)
    raise RuntimeError(f"search still answered from {got!r}, not {want!r}, after {time.time() - t0:.0f} s")


def parse_timing(header: str) -> dict[str, float]:
    """``retrieval;dur=0.31, rerank;dur=28.4, depth;desc=10, retriever;desc=hybrid`` ->
    {"retrieval": 0.31, "rerank": 28.4, "depth": 10.0} (ms; numeric desc values too; a word such
    as the retriever's name is left out)."""
    out = {}
    for part in header.split(","):
        name, *params = [x.strip() for x in part.split(";")]
        for prm in params:
            key, _, val = prm.partition("=")
            if key in ("dur", "desc"):
                try:
                    out[name] = float(val)
                except ValueError:
                    pass
    return out


def search_latency(model: Path, seconds: float, concurrencies: list[int], depth_override: int | None = None,
                   retriever: str | None = None, retrieval_model: Path | None = None) -> dict:
    """One whole search as a shopper's browser sees it (see the module docstring)."""
    import numpy as np

    from shelfops.artifacts import read_manifest
    from shelfops.serve.server import free_port
    from shelfops.train.pairs import load_pairs

    data = Path(read_manifest(model).extra["data"])
    valid = load_pairs(data, augmented=False).valid
    queries = valid["query"].unique(maintain_order=True).to_list()
    requests = [{"query": q, "k": 10} for q in queries]
    opt = json.loads((model / "optimize.json").read_text()) if (model / "optimize.json").exists() else {}
    serving = json.loads((model / "serving.json").read_text()) if (model / "serving.json").exists() else {}
    depth = opt.get("depth") or {}
    served_depth = depth_override or depth.get("chosen")
    point = next((p for p in depth.get("points", []) if p["depth"] == served_depth), None)
    port = free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [str(Path(sys.executable).parent / "shelfops"), "serve", "--model", f"search={model}", "--port", str(port)]
    if depth_override:  # what a config's serve.rerank_depth does (the demo story pins 20)
        cmd.append(f"serve.rerank_depth={depth_override}")
    if retrieval_model:  # the bi-encoder the search model was validated with (train.search.catalogue.retriever)
        cmd[cmd.index("--port"):cmd.index("--port")] = ["--model", f"retrieval={retrieval_model}"]
    if retriever:  # serve.retriever: lexical is BM25 alone before the re-rank
        cmd.append(f"serve.retriever={retriever}")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    out: dict = {"model": str(model), "variant": serving.get("variant"), "rerank_depth": served_depth,
                 "retriever_override": retriever,
                 "depth_chosen_by_optimize": depth.get("chosen"), "depth_points": depth.get("points"),
                 "budget_p99_ms": depth.get("budget_p99_ms"), "catalogue": depth.get("catalogue"),
                 "quality_at_depth": point and {"ndcg@10": point["ndcg10"], "recall@10": point["recall10"],
                                                "bm25_ndcg@10": depth.get("bm25_ndcg10"),
                                                "validation_queries": depth.get("queries")},
                 "by_concurrency": {}}
    try:
        # a served bi-encoder embeds the whole catalogue before the server answers (54,666 Home Depot
        # products: minutes on 2 cores)
        wait_http(url, proc, timeout=1800 if retrieval_model else 300)
        out["retriever"] = wait_retriever(url, proc, retriever or "hybrid")
        asyncio.run(load(url, requests[:20], concurrency=2, seconds=2, path="/v1/search"))  # warm-up
        for c in concurrencies:
            timing: list[str] = []
            r = asyncio.run(load(url, requests, concurrency=c, seconds=seconds, path="/v1/search", timing=timing))
            parsed = [parse_timing(h) for h in timing]
            stages = {}
            for name in ("retrieval", "rerank", "response"):
                v = np.array([t[name] for t in parsed if name in t])
                stages[name] = {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99))}
            server = np.array([sum(t.get(n, 0.0) for n in ("retrieval", "rerank", "response")) for t in parsed])
            stages["server"] = {"p50_ms": float(np.percentile(server, 50)), "p99_ms": float(np.percentile(server, 99))}
            stages["client"] = {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}
            depths = sorted({int(t["depth"]) for t in parsed if "depth" in t})
            out["by_concurrency"][str(c)] = {"searches": r["requests"], "errors": r["errors"],
                                             "searches_per_s": r["req_per_s"], "depths": depths, "stages": stages}
            print(f"concurrency {c}: {r['requests']} searches, {r['req_per_s']:.1f}/s, errors {r['errors']}, "
                  f"depth {depths}")
            for name, v in stages.items():
                print(f"  {name:<10} p50 {v['p50_ms']:7.2f} ms  p99 {v['p99_ms']:7.2f} ms")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # busy embedding: no server outlives its benchmark
            proc.kill()
            proc.wait(30)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "runs" / "demo" / "optimized" / "search")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--search", action="store_true", help="time whole searches instead (see above)")
    ap.add_argument("--search-concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--depth", type=int, default=None, help="--search: re-rank this deep instead of the "
                    "depth the optimize stage chose (serving.json)")
    ap.add_argument("--retriever", choices=("hybrid", "dense", "lexical"), default=None,
                    help="--search: serve.retriever instead of the model's own (lexical: BM25 alone retrieves)")
    ap.add_argument("--retrieval-model", type=Path, default=None, help="--search: also serve this bi-encoder "
                    "(the dense side of a search model trained with train.search.catalogue.retriever)")
    ap.add_argument("--name", default=None, help="--search: results file name (default search_latency[_depthN].json)")
    ap.add_argument("--peers", action="store_true", help="also run infinity-emb (its own venv, "
                    "bench/peers/infinity/.venv: `make bench-peers`) on the same weights, each engine")
    ap.add_argument("--peer-venv", type=Path, default=ROOT / "bench" / "peers" / "infinity" / ".venv")
    ap.add_argument("--serve-baseline", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve_baseline:
        import uvicorn

        uvicorn.run(baseline_app(a.serve_baseline), host="127.0.0.1", port=a.port, log_level="warning")
        return 0

    if a.search:
        res = {**search_latency(a.model, a.seconds, a.search_concurrency, a.depth, a.retriever,
                                      a.retrieval_model), "cpu": _cpu()}
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        name = a.name or ("search_latency.json" if a.depth is None else f"search_latency_depth{a.depth}.json")
        (out / name).write_text(json.dumps(res, indent=2))
        q = res["quality_at_depth"] or {}
        print(f"variant {res['variant']}, re-rank depth {res['rerank_depth']} (budget p99 {res['budget_p99_ms']} ms), "
              f"NDCG@10 over the catalogue at that depth {q.get('ndcg@10', float('nan')):.4f} "
              f"(BM25 {q.get('bm25_ndcg@10', float('nan')):.4f})")
        return 0

    import numpy as np
    import polars as pl

    from shelfops.artifacts import read_manifest
    from shelfops.optimize.shipped import load_shipped
    from shelfops.serve.host import UNBATCHED_DISPATCH
    from shelfops.serve.server import free_port
    from shelfops.train.pairs import item_texts

    data = Path(read_manifest(a.model).extra["data"])
    items = item_texts(pl.read_parquet(data / "items.parquet"))
    ids, texts = items["item_id"].to_list(), items["text"].to_list()
    judg = pl.read_parquet(data / "judgements.parquet")
    queries = judg["query"].unique(maintain_order=True).to_list()[:300]
    rng = np.random.default_rng(0)
    requests = [{"query": q, "items": [ids[i] for i in rng.choice(len(ids), a.candidates, replace=False)]}
                for q in queries]
    text_of = dict(zip(ids, texts))

    # 1. in-process, the tuned variant at its own batch size
    s = load_shipped(a.model)
    bs = int(s.serving.get("max_batch", 32))
    # a variant tuned to batch 1 scores one input per model call; it is handed inputs in groups
    # (the server's dispatch), each still scored alone
    chunk = bs if bs > 1 else UNBATCHED_DISPATCH
    qs = [r["query"] for r in requests for _ in r["items"]]
    ts = [text_of[i] for r in requests for i in r["items"]]
    workers = int(s.serving.get("workers", 1))  # model calls at once, as tuned (and as served)
    s.run(qs[:chunk], ts[:chunk])
    done = [0] * workers

    def caller(k: int, run=s.run) -> None:
        n = k
        while time.perf_counter() - t0 < a.seconds / 2:
            lo = (n * chunk) % (len(qs) - chunk)
            run(qs[lo:lo + chunk], ts[lo:lo + chunk], batch_size=bs)
            done[k] += chunk
            n += workers

    import threading

    t0 = time.perf_counter()
    pool = [threading.Thread(target=caller, args=(k,)) for k in range(workers)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    inproc = sum(done) / (time.perf_counter() - t0)
    threads = int(s.serving.get("threads", 1))
    del s

    results = {"in_process_pairs_per_s": inproc, "variant_batch": bs, "workers": workers,
               "threads": threads}
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    for name, cmd in (
        ("shelfops", [str(Path(sys.executable).parent / "shelfops"), "serve", "--model", f"search={a.model}",
                      "--port", "{port}"]),
        ("plain_fastapi_fp32", [sys.executable, __file__, "--serve-baseline", str(a.model), "--port", "{port}"]),
    ):
        port = free_port()
        proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url, proc)
            asyncio.run(load(url, requests[:20], concurrency=a.concurrency, seconds=3))  # warm-up
            results[name] = asyncio.run(load(url, requests, concurrency=a.concurrency, seconds=a.seconds))
        finally:
            proc.terminate()
            proc.wait(30)
        r = results[name]
        print(f"{name:<20} {r['pairs_per_s']:8.0f} pairs/s  {r['req_per_s']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
              f"p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}/{r['requests']}")
    peers = _peers(a, requests, text_of, env) if a.peers else {}
    results.update(peers)
    ours, base = results["shelfops"], results["plain_fastapi_fp32"]
    summary = {
        "served_vs_in_process": ours["pairs_per_s"] / inproc,
        "served_vs_plain": ours["pairs_per_s"] / base["pairs_per_s"],
        "p99_ours_ms": ours["p99_ms"], "p99_plain_ms": base["p99_ms"],
        "passes": bool(ours["pairs_per_s"] >= 0.8 * inproc and ours["pairs_per_s"] >= 4 * base["pairs_per_s"]
                       and ours["p99_ms"] < base["p99_ms"]),
        "vs_peers": {n: {"throughput_ratio": ours["pairs_per_s"] / r["pairs_per_s"] if r.get("pairs_per_s") else None,
                         "p99_ours_ms": ours["p99_ms"], "p99_peer_ms": r.get("p99_ms"),
                         "max_score_diff_vs_fp32": r.get("max_score_diff_vs_fp32")}
                     for n, r in peers.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "concurrency": a.concurrency,
        "candidates_per_request": a.candidates, "model": str(a.model)}
    print(f"in-process {inproc:.0f} pairs/s at batch {bs} x {workers} worker(s); served/in-process "
          f"{summary['served_vs_in_process']:.2f} (bar 0.8); served/plain {summary['served_vs_plain']:.2f}x "
          f"(bar 4x); p99 {ours['p99_ms']:.0f} vs {base['p99_ms']:.0f} ms")
    print("PASS" if summary["passes"] else "FAIL")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "serve_peers.json" if a.peers else "serve.json"
    (out / name).write_text(json.dumps({"summary": summary, "results": results, "cpu": _cpu()}, indent=2))
    return 0 if summary["passes"] else 1


# ----------------------------------------------------------------- a peer: infinity-emb
#: infinity's CPU engines for a cross-encoder: torch fp32, and torch with its dynamic int8; its
#: onnx engine (optimum) sends no token_type_ids, which the similarity head reads
PEER_ENGINES = {"infinity_torch_fp32": ["--engine", "torch", "--dtype", "float32"],
                "infinity_torch_int8": ["--engine", "torch", "--dtype", "int8"]}


def _peers(a, requests: list[dict], text_of: dict[str, str], env: dict) -> dict:
    """infinity-emb serving the same weights (exported by bench/peers/hf_export.py), under the same
    load; beside each result, how far its scores are from shelfops' fp32 model's on 20 requests."""
    import tempfile
    from functools import partial

    sys.path.insert(0, str(ROOT / "bench" / "peers"))
    from hf_export import export

    from shelfops.serve.server import free_port

    exe = a.peer_venv / "bin" / "infinity_emb"
    if not exe.exists():
        raise SystemExit(f"no infinity-emb at {exe}: `make bench-peers` installs it")
    folder = export(a.model, Path(tempfile.mkdtemp(prefix="shelfops-peer-")) / "model")
    body = [{"model": "shelfops", "query": r["query"], "documents": [text_of[i] for i in r["items"]],
             "return_documents": False} for r in requests]
    fp32 = _fp32_scorer(a.model)
    want = [fp32(b) for b in body[:20]]
    pools = _judged_pools(a.model, text_of)
    out = {"shelfops_fp32_in_process": {"judged_ndcg@10": _ndcg(pools, fp32)},
           "shelfops_variant_in_process": {"judged_ndcg@10": _ndcg(pools, _variant_scorer(a.model))}}
    print(f"judged-pool NDCG@10 ({len(pools)} validation queries): shelfops fp32 "
          f"{out['shelfops_fp32_in_process']['judged_ndcg@10']:.4f}, shelfops served variant "
          f"{out['shelfops_variant_in_process']['judged_ndcg@10']:.4f}")
    for name, flags in PEER_ENGINES.items():
        port = free_port()
        cmd = [str(exe), "v2", "--model-id", str(folder), "--served-model-name", "shelfops", "--device", "cpu",
               "--port", str(port), "--host", "127.0.0.1", "--batch-size", "32", "--no-bettertransformer",
               "--trust-remote-code", *flags]
        proc = subprocess.Popen(cmd, env={**env, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url, proc, health="/health")
            got = [_peer_scores(url, b) for b in body[:20]]
            asyncio.run(load(url, body[:20], concurrency=a.concurrency, seconds=3, path="/rerank"))
            out[name] = asyncio.run(load(url, body, concurrency=a.concurrency, seconds=a.seconds, path="/rerank"))
            out[name]["max_score_diff_vs_fp32"] = _sigmoid_gap(got, want)
            out[name]["judged_ndcg@10"] = _ndcg(pools, partial(_peer_scores, url))
        except RuntimeError as e:
            out[name] = {"error": f"{e}: {proc.stderr.read().decode()[-800:] if proc.poll() is not None else ''}"}
        finally:
            proc.terminate()
            proc.wait(30)
        r = out[name]
        if "pairs_per_s" in r:
            print(f"{name:<20} {r['pairs_per_s']:8.0f} pairs/s  {r['req_per_s']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                  f"p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}/{r['requests']}  "
                  f"score gap to fp32 {r['max_score_diff_vs_fp32']:.2e}  judged NDCG@10 {r['judged_ndcg@10']:.4f}")
        else:
            print(f"{name:<20} failed: {r['error'][:300]}")
    return out


def _peer_scores(url: str, body: dict) -> list[float]:
    """A peer's scores for one /rerank request, in the documents' order."""
    import httpx

    got = httpx.post(url + "/rerank", json=body, timeout=60).json()["results"]
    return [x["relevance_score"] for x in sorted(got, key=lambda x: x["index"])]


def _judged_pools(model: Path, text_of: dict[str, str], n: int = 150) -> list[tuple[dict, list[float]]]:
    """Up to ``n`` validation queries of the model's data with their judged products (a request
    each, the grades beside): the pools every system's quality is measured on."""
    import polars as pl

    from shelfops.artifacts import read_manifest

    data = Path(read_manifest(model).extra["data"])
    j = pl.read_parquet(data / "splits" / "judgements_valid.parquet").filter(pl.col("item_id").is_in(list(text_of)))
    pools = []
    for (q,), g in j.group_by("query", maintain_order=True):
        if len(g) >= 2 and g["grade"].n_unique() > 1:
            pools.append(({"model": "shelfops", "query": q, "documents": [text_of[i] for i in g["item_id"]],
                           "return_documents": False}, g["grade"].to_list()))
        if len(pools) == n:
            break
    return pools


def _ndcg(pools, score) -> float:
    import numpy as np

    from shelfops.eval.metrics import ndcg_at_k

    return float(np.nanmean([ndcg_at_k(score(b), gains, 10) for b, gains in pools]))


def _variant_scorer(model: Path):
    from shelfops.optimize.shipped import load_shipped

    s = load_shipped(model)
    return lambda b: list(s.run([b["query"]] * len(b["documents"]), b["documents"]))


def _fp32_scorer(model: Path):
    """shelfops' fp32 model (loaded once): a /rerank body -> its logits, in the documents' order."""
    import torch

    from shelfops.train import text_models

    m, tok, spec = text_models.load(model)

    def score(b: dict) -> list[float]:
        enc = tok([b["query"]] * len(b["documents"]), b["documents"], truncation=True, max_length=spec.max_length,
                  padding=True, return_tensors="pt")
        with torch.inference_mode():
            return m(**enc).tolist()
    return score


def _sigmoid_gap(got: list[list[float]], logits: list[list[float]]) -> float:
    """The largest difference between a peer's scores and sigmoid(shelfops fp32 logits): a
    sentence-transformers cross-encoder with one label puts its logit through a sigmoid."""
    import math

    return max(abs(g - 1 / (1 + math.exp(-x))) for gs, xs in zip(got, logits) for g, x in zip(gs, xs))


def _cpu() -> dict:
    """The CPU and the vector extensions that decide these numbers (lscpu)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from demo_time import cpu

    return cpu()


if __name__ == "__main__":
    sys.exit(main())
