"""A new shop's judged CSV, the recipe's defaults untouched: do the fine-tuned models beat the untuned encoder?

A user with a file of (query, product title, product description, grade) rows points
configs/examples/generic-judgements.yaml at it and runs the CLI with nothing tuned for the shop:

    shelfops data ingest judgements.csv -c configs/examples/generic-judgements.yaml --out W/data
    shelfops train --task retrieval --data W/data --out W/retrieval
    shelfops train --task search --data W/data --out W/search

This script writes such a file from a data set we have (the built-in synthetic shop's judgements, or
Home Depot's train.csv: it has titles and no descriptions), runs exactly those commands, and reads
from the two models' manifests how each compares with the untuned encoder it started from, on the
same test queries with paired 95% bootstrap intervals:

- retrieval: the fine-tuned bi-encoder's Recall@10 over the whole catalogue vs the untuned
  encoder's (mean pooling, the same catalogue);
- search, inside judged pools: the cross-encoder's NDCG@10 vs the untuned encoder's cosine;
- search, over the whole catalogue: the served pipeline (BM25 + untuned encoder fused, re-ranked by
  the cross-encoder) vs the untuned encoder retrieving alone, and vs BM25.

    .venv/bin/python bench/generic_csv.py --shop synthetic      # ~10 min on 2 cores
    .venv/bin/python bench/generic_csv.py --shop homedepot      # hours: one epoch over 44k pairs

Result: bench/results/generic_csv_<shop>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "examples" / "generic-judgements.yaml"
HOMEDEPOT = ROOT.parent / "shared" / "data" / "homedepot-search-relevance" / "train.csv"
COLUMNS = ("query", "product_title", "product_description", "median_relevance")


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shop", choices=("synthetic", "homedepot"), default="synthetic")
    p.add_argument("--workdir", type=Path, default=None, help="default runs/generic-<shop>")
    p.add_argument("--out", type=Path, default=None, help="default bench/results/generic_csv_<shop>.json")
    return p.parse_args()


def shelfops(*argv: str, log: Path) -> None:
    exe = Path(sys.executable).parent / "shelfops"
    with log.open("a") as f:
        subprocess.run([str(exe), *argv, "--no-progress"], check=True, stdout=f, stderr=subprocess.STDOUT)


def write_csv(shop: str, work: Path, log: Path) -> Path:
    """The shop's judgements as the one flat file a shop would export: one row per judged pair."""
    path = work / "judgements.csv"
    if shop == "synthetic":
        raw = work / "shop"
        shelfops("data", "generate", "-c", "synthetic", "--out", str(raw), log=log)
        j, items = pl.read_parquet(raw / "judgements.parquet"), pl.read_parquet(raw / "items.parquet")
        rows = j.join(items, on="item_id").select(
            query="query", product_title="title", product_description="description", median_relevance="grade")
    else:
        hd = pl.read_csv(HOMEDEPOT, encoding="cp1252", infer_schema_length=0)
        rows = hd.select(query="search_term", product_title="product_title",
                         product_description=pl.lit(""), median_relevance=pl.col("relevance").cast(pl.Float64))
    rows.select(COLUMNS).write_csv(path)
    return path


def interval(d: dict) -> dict:
    return {k: round(float(d[k]), 4) for k in ("mean", "ci_low", "ci_high")}


def read(work: Path) -> dict:
    from shelfops.artifacts import read_manifest

    r, s = read_manifest(work / "retrieval").metrics, read_manifest(work / "search").metrics
    cat = s["catalogue"]
    out = {
        "retrieval_recall@10_vs_untuned": {
            "fine_tuned": interval(r["model"]["recall@10"]), "untuned": interval(r["baselines"]["zero_shot"]["recall@10"]),
            "diff": interval(r["comparisons_recall@10"]["zero_shot"]["diff"])},
        "search_pools_ndcg@10_vs_untuned": {
            "fine_tuned": interval(s["model"]["ndcg@10"]), "untuned": interval(s["baselines"]["zero_shot"]["ndcg@10"]),
            "bm25": interval(s["baselines"]["bm25"]["ndcg@10"]),
            "diff": interval(s["comparisons_ndcg@10"]["zero_shot"]["diff"])},
        "search_catalogue": {
            "systems": {n: {m: interval(v[m]) for m in ("ndcg@10", "recall@10")} for n, v in cat["systems"].items()},
            "pipeline_minus": {n: {m: interval(cat["comparisons"][m][n]["diff"]) for m in ("ndcg@10", "recall@10")}
                               for n in ("dense", "bm25", "hybrid")},
            "choice": cat["choice"], "items": cat["items"]},
    }
    out["beats_untuned"] = {
        "retrieval": out["retrieval_recall@10_vs_untuned"]["diff"]["ci_low"] > 0,
        "search_pools": out["search_pools_ndcg@10_vs_untuned"]["diff"]["ci_low"] > 0,
        "search_catalogue": all(d["ci_low"] > 0 for d in out["search_catalogue"]["pipeline_minus"]["dense"].values()),
    }
    return out


def main() -> None:
    a = args()
    work = a.workdir or ROOT / "runs" / f"generic-{a.shop}"
    out = a.out or ROOT / "bench" / "results" / f"generic_csv_{a.shop}.json"
    work.mkdir(parents=True, exist_ok=True)
    log, seconds = work / "run.log", {}
    print(f"log: {log}", flush=True)
    t = time.perf_counter()
    csv = write_csv(a.shop, work, log)
    steps = {"data": ("data", "ingest", str(csv), "-c", str(CONFIG), "--out", str(work / "data")),
             "retrieval": ("train", "--task", "retrieval", "--data", str(work / "data"), "--out", str(work / "retrieval")),
             "search": ("train", "--task", "search", "--data", str(work / "data"), "--out", str(work / "search"))}
    for name, argv in steps.items():
        t0 = time.perf_counter()
        print(f"shelfops {' '.join(argv)}", flush=True)
        shelfops(*argv, log=log)
        seconds[name] = round(time.perf_counter() - t0, 1)
    result = {"shop": a.shop, "rows": pl.scan_csv(csv).select(pl.len()).collect().item(), "config": str(CONFIG.relative_to(ROOT)),
              "commands": [f"shelfops {' '.join(v)}" for v in steps.values()], **read(work), "seconds": seconds,
              "wall_seconds": round(time.perf_counter() - t, 1), "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.node()} {os.cpu_count()} cpu, python {platform.python_version()}"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("beats_untuned", "retrieval_recall@10_vs_untuned",
                                             "search_pools_ndcg@10_vs_untuned")}, indent=2))
    for n, d in result["search_catalogue"]["pipeline_minus"].items():
        print(f"catalogue: pipeline - {n}: NDCG@10 {d['ndcg@10']}, Recall@10 {d['recall@10']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
