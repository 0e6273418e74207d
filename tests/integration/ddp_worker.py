"""Trains a tiny model with shelfops' loop; run alone or under torchrun (2 processes).

    python tests/integration/ddp_worker.py OUT
    torchrun --nproc_per_node=2 tests/integration/ddp_worker.py OUT
"""

import sys
from pathlib import Path

import torch
from torch import nn

from shelfops.config.schema import ScheduleConfig
from shelfops.train import distributed as dd
from shelfops.train.checkpoint import save_model
from shelfops.train.loop import fit, schedule_from

torch.set_num_threads(1)


def main(out: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long()

    def batches(epoch: int):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        return [{"x": x[perm[i:i + 32]], "y": y[perm[i:i + 32]]} for i in range(0, len(x), 32)]

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))

    def loss(m, b):
        return nn.functional.cross_entropy(m(b["x"]), b["y"])

    def evaluate(m):
        return {"acc": float((m(x).argmax(1) == y).float().mean())}

    res = fit(model, batches=batches, loss_fn=loss, evaluate=evaluate, metric="acc",
              schedule=schedule_from(ScheduleConfig(epochs=3, lr=1e-2, seed=0, bf16="off")), workdir=out / "work",
              device=torch.device("cpu"), progress=False)
    d = dd.setup(torch.device("cpu"))
    if d.main:
        save_model(model, out / "model.safetensors")
        (out / "result.txt").write_text(f"{res.steps} {res.best_metric} {d.world}")
    dd.teardown(d)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
