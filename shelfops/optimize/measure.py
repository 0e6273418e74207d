"""Measure a variant: outputs on the evaluation set, ranking parity, latency, FLOPs.

Latency is measured on real tokenised inputs (dynamic padding, as served), per batch
size and thread count, for a fixed time per point; p50 / p99 are per-batch wall times,
throughput is items per second. The machine's fp32 matrix-multiply rate is measured in the
same run, so compute efficiency is a ratio of two numbers taken minutes apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from shelfops.eval.agreement import kendall_tau, top_k_overlap
from shelfops.eval.metrics import compare
from shelfops.optimize.variants import Variant

# a fast tokenizer sets its truncation / padding state on every call, which two threads may not do
# at once ("Already borrowed"): serving workers share one tokenizer through this lock
TOKENIZER = threading.Lock()


def _tokenize(tok, a: Sequence[str], b: Sequence[str] | None, max_length: int, **kw):
    """Single texts, or (query, text) pairs truncated longest-first; one thread at a time."""
    with TOKENIZER:
        return (tok(list(a), list(b), truncation="longest_first", max_length=max_length, **kw)
                if b is not None else tok(list(a), truncation=True, max_length=max_length, **kw))


def encode(tok, a: Sequence[str], b: Sequence[str] | None, max_length: int,
           padding: bool | str = True) -> dict[str, torch.Tensor]:
    out = dict(_tokenize(tok, a, b, max_length, padding=padding, return_tensors="pt"))
    if "token_type_ids" not in out:
        out["token_type_ids"] = torch.zeros_like(out["input_ids"])
    return out


def run_all(variant: Variant, tok, a: Sequence[str], b: Sequence[str] | None, *, max_length: int,
            batch_size: int = 32, workers: int = 1) -> np.ndarray:
    """The variant's outputs for every input, in input order (batched by similar length;
    ``batch_size=1``: one unpadded input per model call, tokenized together). ``workers`` > 1
    scores interleaved shares of the inputs side by side, one thread each (model calls
    release the GIL): offline scoring on every core with a variant tuned to few threads."""
    if workers > 1 and len(a) >= 2 * workers:
        return _run_side_by_side(variant, tok, a, b, max_length, batch_size, workers)
    if batch_size == 1 and len(a):
        return _run_unbatched(variant, tok, a, b, max_length)
    keys = [len(x) + (len(b[i]) if b is not None else 0) for i, x in enumerate(a)]
    order = np.argsort(keys, kind="stable")
    parts: list[np.ndarray] = []
    for s in range(0, len(order), batch_size):
        ix = order[s : s + batch_size]
        parts.append(variant(encode(tok, [a[i] for i in ix], [b[i] for i in ix] if b is not None else None,
                                    max_length)))
    out = np.concatenate(parts)
    res = np.empty_like(out)
    res[order] = out
    return res


def _run_side_by_side(variant: Variant, tok, a: Sequence[str], b: Sequence[str] | None, max_length: int,
                      batch_size: int, workers: int) -> np.ndarray:
    from concurrent.futures import ThreadPoolExecutor

    shares = [np.arange(k, len(a), workers) for k in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        outs = list(pool.map(lambda ix: run_all(variant, tok, [a[i] for i in ix],
                                                [b[i] for i in ix] if b is not None else None,
                                                max_length=max_length, batch_size=batch_size), shares))
    res = np.empty((len(a),) + outs[0].shape[1:], dtype=outs[0].dtype)
    for ix, out in zip(shares, outs):
        res[ix] = out
    return res


def _run_unbatched(variant: Variant, tok, a: Sequence[str], b: Sequence[str] | None, max_length: int
                   ) -> np.ndarray:
    """One model call per input, never padded (what a variant tuned to batch 1 serves); the
    tokenizer runs once over all inputs, which is most of the per-call cost it would add."""
    enc = _tokenize(tok, a, b, max_length, padding=False)
    types = enc.get("token_type_ids")
    # ONNX Runtime takes numpy arrays as they are; torch variants need tensors
    arr = (lambda x: np.asarray([x], dtype=np.int64)) if variant.engine == "onnxruntime" else (
        lambda x: torch.tensor([x]))
    out = []
    for i, ids in enumerate(enc["input_ids"]):
        t = arr(ids)
        out.append(variant({"input_ids": t, "attention_mask": arr([1] * len(ids)),
                            "token_type_ids": arr(types[i] if types is not None else [0] * len(ids))}))
    return np.concatenate(out)


def padding_max_diff(variant: Variant, tok, a: Sequence[str], b: Sequence[str] | None, *, max_length: int,
                     n: int = 64, batch_size: int = 16) -> float:
    """Largest output change when the same inputs are padded to ``max_length`` instead of to
    the longest in their batch. A faithful variant does not care (attention masks the
    padding); one that quantises activations per batch may, and then a request's scores
    depend on what it was batched with."""
    a, b = list(a[:n]), (list(b[:n]) if b is not None else None)
    diff = 0.0
    for s in range(0, len(a), batch_size):
        aa, bb = a[s:s + batch_size], (b[s:s + batch_size] if b is not None else None)
        short = variant(encode(tok, aa, bb, max_length))
        full = variant(encode(tok, aa, bb, max_length, padding="max_length"))
        diff = max(diff, float(np.max(np.abs(np.asarray(short) - np.asarray(full)))))
    return diff


def parity(ref_groups: list[np.ndarray], groups: list[np.ndarray], ref_all: np.ndarray,
           out_all: np.ndarray, *, k: int = 10, min_overlap: float = 0.8, min_tau: float = 0.7,
           churn_overlap: float = 0.7, churn_tau: float = 0.5) -> dict:
    """Ranking parity with the reference over golden groups, plus raw output differences.

    A group passes when its top-k overlap >= ``min_overlap`` and its Kendall tau >= ``min_tau``
    (``pass_rate``); it stays within the churn bound when they reach ``churn_overlap`` and
    ``churn_tau`` (``churn_pass_rate``, what an approximate variant is held to);
    ``worst`` lists the groups that moved most (for review)."""
    taus, overlaps = [], []
    for r, g in zip(ref_groups, groups):
        overlaps.append(top_k_overlap(r, g, k))
        taus.append(kendall_tau(np.asarray(r), np.asarray(g)))
    taus_a, ov_a = np.array(taus), np.array(overlaps)
    passed = (ov_a >= min_overlap) & (taus_a >= min_tau)
    within = (ov_a >= churn_overlap) & (taus_a >= churn_tau)
    diff = np.abs(np.asarray(out_all, np.float64) - np.asarray(ref_all, np.float64))
    worst = np.argsort(ov_a + taus_a, kind="stable")[:5]
    return {"groups": len(taus), f"top{k}_overlap_mean": float(ov_a.mean()) if len(ov_a) else 1.0,
            f"top{k}_overlap_min": float(ov_a.min()) if len(ov_a) else 1.0,
            "kendall_tau_mean": float(taus_a.mean()) if len(taus_a) else 1.0,
            "kendall_tau_min": float(taus_a.min()) if len(taus_a) else 1.0,
            "pass_rate": float(passed.mean()) if len(passed) else 1.0,
            "churn_pass_rate": float(within.mean()) if len(within) else 1.0,
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "worst_groups": [int(i) for i in worst],
            "thresholds": {"min_overlap": min_overlap, "min_tau": min_tau,
                           "churn_overlap": churn_overlap, "churn_tau": churn_tau}}


def quality_drop(ref_per_query: np.ndarray, per_query: np.ndarray, *, n_boot: int = 1000) -> dict:
    """Relative quality drop against the reference with its 95% paired-bootstrap interval:
    ``{"mean", "low", "high"}`` as fractions of the reference's mean (positive = worse)."""

    cmp = compare(per_query, ref_per_query, n_boot=n_boot, seed=0)
    base = cmp["b"]["mean"] or 1.0
    d = cmp["diff"]
    # + 0.0 turns the -0.0 of an identical variant into 0.0
    return {"mean": -d["mean"] / base + 0.0, "low": -d["ci_high"] / base + 0.0,
            "high": -d["ci_low"] / base + 0.0}


@dataclass
class Point:
    threads: int  # intra-op threads per model call
    batch: int
    p50_ms: float
    p99_ms: float
    items_per_s: float
    tokens_per_item: float
    reps: int
    workers: int = 1  # model calls running at once, each on its own thread


def latency(variant: Variant, tok, a: Sequence[str], b: Sequence[str] | None, *, max_length: int,
            batch_sizes: Sequence[int], threads: Sequence[int], seconds: float, seed: int = 0,
            cores: int | None = None) -> list[Point]:
    """Per-call latency and throughput for each (threads, batch size), on random real inputs;
    and, where ``threads`` leaves cores idle, with ``cores // threads`` calls running at once
    (workers): several single-threaded calls side by side often beat one call spread over
    every core, whose threads must meet at each operator."""
    rng = np.random.default_rng(seed)
    points = []
    for t in threads:
        variant.set_threads(t)
        for bs in batch_sizes:
            batches = []
            for _ in range(8):
                ix = rng.integers(0, len(a), bs)
                batches.append(encode(tok, [a[i] for i in ix], [b[i] for i in ix] if b is not None else None,
                                      max_length))
            variant(batches[0])  # warm-up
            for w in sorted({1, max(1, (cores or 1) // t)}):
                points.append(_measure(variant, batches, bs, t, w, seconds))
    return points


def _measure(variant: Variant, batches: list[dict], bs: int, threads: int, workers: int, seconds: float
             ) -> Point:
    times: list[list[float]] = [[] for _ in range(workers)]
    tokens = float(np.mean([int(e["attention_mask"].sum()) for e in batches])) / bs

    def caller(k: int) -> None:
        t_end, i = time.perf_counter() + seconds, k
        while time.perf_counter() < t_end or len(times[k]) < 5:
            t0 = time.perf_counter()
            variant(batches[i % len(batches)])
            times[k].append(time.perf_counter() - t0)
            i += 1

    t0 = time.perf_counter()
    if workers == 1:
        caller(0)
    else:
        pool = [threading.Thread(target=caller, args=(k,)) for k in range(workers)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    wall = time.perf_counter() - t0 if workers > 1 else float(np.sum(times[0]))
    flat = np.concatenate([np.array(x) for x in times]) * 1e3
    return Point(threads, bs, float(np.percentile(flat, 50)), float(np.percentile(flat, 99)),
                 len(flat) * bs / wall, tokens, len(flat), workers)


def flops_per_item(config, tokens: float, layers: int | None = None) -> float:
    """Forward FLOPs of a BERT-style encoder for one input of ``tokens`` tokens."""
    d, f = int(config.hidden_size), int(config.intermediate_size)
    n = layers if layers is not None else int(config.num_hidden_layers)
    per_layer = 2 * tokens * (4 * d * d + 2 * d * f) + 4 * tokens * tokens * d
    return float(n * per_layer)


def matmul_flops(threads: int, n: int = 2048, seconds: float = 0.3) -> float:
    """The machine's fp32 matmul FLOP/s at ``threads`` threads, measured now."""
    torch.set_num_threads(threads)
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or reps < 3:
        x @ y
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)
