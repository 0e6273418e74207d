"""Training throughput of the search cross-encoder for a few hundred steps (for a lent GPU).

Runs the same fine-tuning as `shelfops train --task search` (MiniLM-L6 cross-encoder,
pointwise loss, AdamW) on pairs from a dataset folder, on the chosen device, fp32 and
bf16 autocast interleaved, and prints steps/s and pairs/s for each. On a CPU-only machine
it measures the CPU.

    .venv/bin/python bench/gpu_train.py --data runs/hd --steps 300 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from shelfops.config.schema import SearchTrainConfig
from shelfops.train.encoder import resolve_encoder
from shelfops.train.pairs import load_pairs
from shelfops.train.search import loss_fn, make_batches, search_settings_from
from shelfops.train.text_models import ModelSpec, new_model


def run(data, device, steps, batch_size, bf16, encoder):
    c = SearchTrainConfig(batch_size=batch_size)  # `shelfops train --task search`'s defaults, this batch
    spec = ModelSpec(task="search", encoder=encoder, max_length=c.max_length)
    model, tok = new_model(spec, encoder)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=c.schedule.lr)
    batches = make_batches(data.train, tok, search_settings_from(c), 0,
                           data.grade_min, data.grade_max)(0)
    f = loss_fn("pointwise")
    warm = 10
    t0 = None
    for i in range(steps + warm):
        if i == warm:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        b = {k: v.to(device, non_blocking=True) for k, v in batches[i % len(batches)].items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = f(model, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"precision": "bf16" if bf16 else "fp32", "steps": steps, "batch": batch_size,
            "steps_per_s": round(steps / dt, 2), "pairs_per_s": round(steps * batch_size / dt, 1),
            "peak_gpu_gib": round(mem, 2) if mem else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    data = load_pairs(args.data)
    enc = resolve_encoder(None)
    rows = [run(data, device, args.steps, args.batch_size, bf16, enc) for bf16 in (False, True)]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    print("| precision | batch | steps/s | pairs/s | peak GPU GiB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['batch']} | {r['steps_per_s']} | {r['pairs_per_s']} | {r['peak_gpu_gib']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
