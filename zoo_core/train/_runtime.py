"""How a run uses this machine: DataLoader workers by default, and a warning when the
requested precision is slower here than fp32 (bf16 on a CPU without native bf16)."""

from __future__ import annotations

import os
import warnings
from typing import Any

# Measured on an AVX2 CPU without avx512_bf16/AMX (benchmarks/bench_finetune.py, issue 20):
# bf16 autocast ran 9-10 s per epoch against 1.5-2 s for fp32.
BF16_EMULATED_COST = "4-8x slower than fp32"
SMALL_INPUT_PIXELS = 64 * 64
MAX_WORKERS = 8


class PerformanceWarning(UserWarning):
    """A setting that works but is known to be slow on this machine."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (macOS, Windows)
        return os.cpu_count() or 1


def cpu_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (x86 ``avx512_bf16`` or AMX, Arm
    ``bf16``); torch's capability string names the vector ISA, not bf16, so the CPU's
    own flags decide."""
    import torch

    cap = str(torch.backends.cpu.get_cpu_capability()).lower()
    if "bf16" in cap or "amx" in cap:
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:  # not Linux: no way to tell, assume the fast path
        return True
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def warn_precision_cost(precision: str, device: Any) -> str | None:
    """Warn (:class:`PerformanceWarning`) when ``bf16`` runs on a CPU without native bf16;
    returns the message (None when nothing to say)."""
    if str(precision) != "bf16" or getattr(device, "type", str(device)) != "cpu" or \
            cpu_native_bf16():
        return None
    message = (f"--precision bf16 on this CPU (no avx512_bf16/AMX: bfloat16 is emulated) "
               f"runs {BF16_EMULATED_COST} (measured); use --precision 32 here, and bf16 on a "
               "GPU or a CPU with native bf16")
    warnings.warn(message, PerformanceWarning, stacklevel=3)
    return message


def default_workers(input_size: Any, device: Any, cores: int | None = None) -> int:
    """DataLoader workers when ``--workers`` is not given. Small inputs (up to 64x64
    pixels) on CPU: 0, decoding is cheap and a worker process costs more than it saves.
    Otherwise decoding and resizing JPEGs runs beside the model: on CUDA up to one
    worker per core (at most 8); on CPU, where the model's threads need the same cores,
    half of them (at most 4)."""
    cores = available_cores() if cores is None else cores
    on_cuda = getattr(device, "type", str(device)) == "cuda"
    small = input_size is not None and int(input_size[-1]) * int(input_size[-2]) \
        <= SMALL_INPUT_PIXELS
    if small and not on_cuda:
        return 0
    if on_cuda:
        return max(1, min(MAX_WORKERS, cores))
    return max(1, min(4, cores // 2))


def model_input_size(model: Any, input_size: Any) -> Any:
    """``input_size`` or the registered model's data config (None when unknown)."""
    if input_size is not None:
        return input_size
    if not isinstance(model, str) or model.startswith("hf-hub:"):
        return None
    try:
        from zoo_core.registry._registry import get_registry

        return tuple(get_registry().resolve(model).spec.data_config.input_size)
    except Exception:  # an unknown name fails later with its own clear error
        return None


def resolve_runtime(opts: Any, ctx: Any, num_workers: int | None) -> Any:
    """``opts`` with its workers resolved for ``ctx``'s device; warns (rank 0) when the
    precision is slow here."""
    import dataclasses

    if ctx.main:
        warn_precision_cost(opts.precision, ctx.device)
    if num_workers is None:
        num_workers = default_workers(model_input_size(opts.model, opts.input_size),
                                      ctx.device)
    return dataclasses.replace(opts, num_workers=num_workers)
