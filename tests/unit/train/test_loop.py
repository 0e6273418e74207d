from __future__ import annotations

import torch
from torch import nn

from shelfops.config.schema import ScheduleConfig
from shelfops.train.loop import fit, schedule_from


def _schedule(**kw):
    """The config's schedule (its defaults but for ``kw``), fp32 on every machine (auto would follow
    the CPU's flags)."""
    return schedule_from(ScheduleConfig(**{"bf16": "off", **kw}))

torch.set_num_threads(1)


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.arange(8, dtype=torch.float32) / 8
    y = x @ w + 0.01 * torch.randn(n, generator=g)
    return x, y


def _batches(x, y, bs=16):
    def f(epoch: int):
        g = torch.Generator().manual_seed(100 + epoch)
        perm = torch.randperm(len(x), generator=g)
        return [{"x": x[perm[i:i + bs]], "y": y[perm[i:i + bs]]} for i in range(0, len(x), bs)]
    return f


def _loss(model, b):
    return nn.functional.mse_loss(model(b["x"]).squeeze(-1), b["y"])


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def test_learns_and_is_deterministic(tmp_path):
    x, y = _data()
    vx, vy = _data(32, seed=1)

    def evaluate(m):
        return {"mse": float(nn.functional.mse_loss(m(vx).squeeze(-1), vy))}

    runs = []
    for k in range(2):
        m = _model()
        r = fit(m, batches=_batches(x, y), loss_fn=_loss, evaluate=evaluate, metric="mse",
                higher_is_better=False, schedule=_schedule(epochs=20, lr=1e-2, seed=3),
                workdir=tmp_path / f"r{k}", progress=False)
        runs.append((m, r))
    (m0, r0), (m1, r1) = runs
    assert r0.history[-1]["mse"] < 0.5 * r0.history[0]["mse"]
    assert r0.best_metric == min(h["mse"] for h in r0.history)
    for a, b in zip(m0.parameters(), m1.parameters()):
        assert torch.equal(a, b)


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    x, y = _data()
    sched = _schedule(epochs=4, lr=1e-2, seed=5, checkpoint_every=1, warmup_ratio=0.25)
    ref = _model()
    fit(ref, batches=_batches(x, y), loss_fn=_loss, schedule=sched, workdir=tmp_path / "ref",
        progress=False)

    calls = {"n": 0}

    def flaky(model, b):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # the machine goes away mid-epoch 2
        return _loss(model, b)

    m = _model()
    try:
        fit(m, batches=_batches(x, y), loss_fn=flaky, schedule=sched, workdir=tmp_path / "run",
            progress=False)
    except KeyboardInterrupt:
        pass
    m2 = _model()
    r = fit(m2, batches=_batches(x, y), loss_fn=_loss, schedule=sched, workdir=tmp_path / "run",
            progress=False)
    assert r.resumed_from == 6 and r.steps == 16
    for a, b in zip(ref.parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_early_stopping_keeps_best_weights(tmp_path):
    x, y = _data()
    scores = iter([0.5, 0.6, 0.55, 0.52, 0.51, 0.9])

    def evaluate(m):
        return {"ndcg": next(scores)}

    m = _model()
    r = fit(m, batches=_batches(x, y), loss_fn=_loss, evaluate=evaluate, metric="ndcg",
            schedule=_schedule(epochs=6, lr=1e-2, patience=3), workdir=tmp_path, progress=False)
    assert r.stopped_early and r.best_metric == 0.6 and r.best_step == 8 and r.steps == 20
    assert r.bf16 is False  # bf16 off: the run records that it trained in fp32
    from safetensors.torch import load_file

    best = load_file(str(tmp_path / "best.safetensors"))
    assert torch.equal(best["0.weight"], m.state_dict()["0.weight"])
