"""Data-parallel training under torchrun (gloo, 2 CPU processes) matches one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
@pytest.mark.timeout(900)  # two training processes of up to 300 s each
def test_two_process_ddp_matches_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, str(WORKER), str(single)], check=True, env=env, timeout=300)
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29533", str(WORKER), str(ddp)],
                   check=True, env=env, timeout=300)
    s_steps, s_best, s_world = (single / "result.txt").read_text().split()
    d_steps, d_best, d_world = (ddp / "result.txt").read_text().split()
    assert (s_world, d_world) == ("1", "2") and s_steps == d_steps == "24"
    a = load_file(str(single / "model.safetensors"))
    b = load_file(str(ddp / "model.safetensors"))
    # each rank computes the mean gradient of half of every global batch; DDP averages
    # them, so a step equals the single-process step on the whole batch up to float
    # summation order: stated tolerance 1e-5 absolute on every weight
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), (k, (a[k] - b[k]).abs().max())
    assert abs(float(s_best) - float(d_best)) < 1e-6
