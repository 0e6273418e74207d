"""Whether training runs under bf16 autocast: ``schedule.bf16`` is ``on``, ``off`` or ``auto``.

``auto`` is on only where the device computes bf16 natively: a CUDA GPU with bf16 units
(Ampere or later; not one that emulates it), or a CPU whose flags include ``avx512_bf16`` or
``amx_bf16``. Elsewhere torch emulates bf16, and a bf16 matmul on an AVX2-only CPU ran at
0.6 GFLOP/s against 29 for fp32 (issue 18), so ``auto`` is off there. The decision is made
once per process and device kind (:func:`bf16_auto`); :func:`native_bf16` is the pure rule.
"""

from __future__ import annotations

import functools
from pathlib import Path

#: CPU flags (``/proc/cpuinfo``) of native bf16 arithmetic: AVX-512 BF16 and AMX BF16
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_bf16(device_type: str, *, cpu_flags: str = "", cuda_bf16: bool = False) -> bool:
    """The rule, pure: ``cpu_flags`` is the CPU's flags line (space separated), ``cuda_bf16``
    whether the GPU computes bf16 natively."""
    if device_type == "cuda":
        return cuda_bf16
    if device_type == "cpu":
        return not CPU_BF16_FLAGS.isdisjoint(cpu_flags.lower().split())
    return False  # mps and others: not decided here, so off


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first ``flags`` line of ``/proc/cpuinfo`` ("" where there is none: not Linux x86)."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return value.strip()
    except OSError:
        pass
    return ""


def _cuda_bf16() -> bool:
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no including_emulation (and did not count emulation)
        return bool(torch.cuda.is_bf16_supported())


@functools.cache
def bf16_auto(device_type: str) -> bool:
    """``auto`` on this process's ``device_type`` (cuda, cpu, ...), decided once."""
    if device_type == "cuda":
        return native_bf16("cuda", cuda_bf16=_cuda_bf16())
    return native_bf16(device_type, cpu_flags=cpu_flags() if device_type == "cpu" else "")


def use_bf16(setting: str, device_type: str) -> bool:
    """``schedule.bf16`` (on | off | auto) on ``device_type``."""
    if setting not in ("on", "off", "auto"):
        raise ValueError(f"bf16 must be on, off or auto, got {setting!r}")
    return setting == "on" or (setting == "auto" and bf16_auto(device_type))
