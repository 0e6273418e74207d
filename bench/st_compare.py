"""shelfops' search training vs sentence-transformers' own CrossEncoder, same data, budget, start.

The library a user would reach for first is sentence-transformers. This trains its
``CrossEncoder`` (a sequence-classification head on the same MiniLM weights, binary
cross-entropy on the grade scaled to [0, 1]) on exactly the pairs ``shelfops train --task
search`` trained on for one fold (real judgements plus the same mined hard negatives, same
seed), with the same batch size, learning rate, warm-up share, step budget and length; then
scores it with the same evaluation: NDCG@10 within the judged test pools, and the served
pipeline over the whole catalogue (fusion weight and depth chosen on validation the same
way). Both models are compared query by query (paired bootstrap).

    .venv/bin/python bench/hd_catalogue_search.py --only 0     # shelfops' fold 0 first
    .venv/bin/python bench/st_compare.py --fold 0

Writes bench/results/st_compare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "hd-cat")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "st_compare.json")
    return p.parse_args()


def main() -> None:
    a = args()
    import numpy as np
    import polars as pl
    import torch
    from sentence_transformers import InputExample
    from sentence_transformers.cross_encoder import CrossEncoder
    from torch.utils.data import DataLoader

    from shelfops.artifacts import read_manifest
    from shelfops.config.schema import SearchTrainConfig
    from shelfops.eval import metrics as M
    from shelfops.train import catalogue
    from shelfops.train.pairs import load_pairs
    from shelfops.train.search import pool_metrics

    data_dir, ours = a.workdir / f"data-{a.fold}", a.workdir / f"model-{a.fold}"
    m = read_manifest(ours)
    c = SearchTrainConfig.model_validate(m.config["train"]["search"])  # the run's own settings
    cc, sch = c.catalogue, c.schedule
    torch.set_num_threads(2)
    torch.manual_seed(sch.seed)
    enc_path = m.extra["encoder"]
    data = load_pairs(data_dir, train_on=tuple(c.train_on), augmented=c.augmented)
    lo, hi = data.grade_min, data.grade_max
    cat = catalogue.Retrievers.open(data.items, enc_path, cc.retriever, max_length=c.max_length)
    # sentence-transformers' CrossEncoder trains pointwise: the mined negatives as bottom-grade pairs
    neg = catalogue.mined_negatives(data.train, cat, per_query=cc.hard_negatives, depth=cc.negative_depth,
                                    skip=cc.negative_skip, seed=sch.seed)
    train_df, mined = catalogue.as_graded(data.train, neg, cat, grade=lo), len(neg)
    steps = int(m.extra["fit"]["steps"])
    n = min(len(train_df), steps * c.batch_size)
    rows = train_df.sample(n, seed=sch.seed, shuffle=True)
    target = ((rows["grade"].to_numpy() - lo) / (hi - lo)).astype(float)
    examples = [InputExample(texts=[q, t], label=float(y))
                for q, t, y in zip(rows["query"].to_list(), rows["text"].to_list(), target)]
    loader = DataLoader(examples, shuffle=True, batch_size=c.batch_size)
    ce = CrossEncoder(enc_path, num_labels=1, max_length=c.max_length, device="cpu")
    t0 = time.perf_counter()
    ce.old_fit(train_dataloader=loader, epochs=1, warmup_steps=int(sch.warmup_ratio * len(loader)),
               optimizer_params={"lr": sch.lr}, weight_decay=sch.weight_decay, max_grad_norm=sch.grad_clip,
               show_progress_bar=True)
    train_s = time.perf_counter() - t0

    def score(qs: list[str], ts: list[str]) -> np.ndarray:
        return np.asarray(ce.predict(list(zip(qs, ts)), batch_size=64, show_progress_bar=False), dtype=float)

    # judged pools
    test = data.test
    pools_st = pool_metrics(test, score(test["query"].to_list(), test["text"].to_list()), lo=lo)["ndcg@10"]
    ts = pl.read_parquet(ours / "test_scores.parquet")
    pools_ours = pool_metrics(ts, ts["model"].to_numpy(), lo=lo)["ndcg@10"]
    # the whole catalogue, chosen and tested as the train recipe does
    vq = catalogue.relevant_queries(data.valid, lo, hi, cc.relevant_threshold, cc.eval_queries)
    choice = catalogue.choose_pipeline(cat.candidates(vq), catalogue.PairScores(vq, cat.texts, score),
                                       catalogue.Judged(data.valid, lo, hi, cc.relevant_threshold, cat.ids),
                                       vq, weights=cc.weights, depths=cc.depths, blends=cc.blends)
    tq = catalogue.relevant_queries(test, lo, hi, cc.relevant_threshold)
    sys_rows = catalogue.system_rows(cat.candidates(tq), catalogue.PairScores(tq, cat.texts, score),
                                     choice.weight, choice.depth, choice.blend)
    st_cat = catalogue.Judged(test, lo, hi, cc.relevant_threshold, cat.ids).per_query(tq, sys_rows["pipeline"])
    ours_cat = pl.read_parquet(ours / "catalogue_scores.parquet")
    if ours_cat["query"].to_list() != tq:
        raise SystemExit("the fold's catalogue_scores.parquet holds other test queries")
    result = {
        "fold": a.fold, "train_pairs": n, "hard_negatives_available": mined, "steps": len(loader),
        "train_seconds_st": round(train_s, 1), "train_seconds_shelfops": m.extra.get("seconds"),
        "choice_st": choice.to_dict(), "choice_shelfops": m.metrics["catalogue"]["choice"],
        "pools_ndcg@10": M.compare(pools_ours, pools_st),
        "catalogue_ndcg@10": M.compare(ours_cat["pipeline_ndcg@10"].to_numpy(), st_cat["ndcg@10"]),
        "catalogue_recall@10": M.compare(ours_cat["pipeline_recall@10"].to_numpy(), st_cat["recall@10"]),
        "note": "a = shelfops (similarity head), b = sentence-transformers CrossEncoder (linear head)",
    }
    for k in ("pools_ndcg@10", "catalogue_ndcg@10", "catalogue_recall@10"):
        r = result[k]
        print(f"{k:>20}: shelfops {r['a']['mean']:.4f}  sentence-transformers {r['b']['mean']:.4f}  "
              f"diff {r['diff']['mean']:+.4f} [{r['diff']['ci_low']:+.4f}, {r['diff']['ci_high']:+.4f}]")
    print(f"training: sentence-transformers {train_s:.0f} s for {len(loader)} steps; "
          f"shelfops run {m.extra.get('seconds')} s in all")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
