"""Throughput accounting: training FLOPs per token, device peak FLOP/s, and MFU.

Model FLOPs utilisation (MFU, PaLM, Chowdhery et al. 2022, appendix B) is

    MFU = (training FLOPs per token × tokens per second) / device peak FLOP/s

Training FLOPs per token come from ``model.estimate_flops_per_token(seq_len)`` when the model
has it (6·N_non-embedding + 12·L·T·D, Kaplan et al. 2020), else 6·N (forward 2N + backward 4N).

Peak FLOP/s:
- NVIDIA GPUs: dense bf16 tensor-core peak from the vendor spec sheets (table below), exact
  name match → ``estimated=False``. An unknown accelerator → measured bf16/fp32 matmul rate,
  ``estimated=True``.
- CPU: ``threads × clock (GHz, /proc/cpuinfo) × fp32 FLOPs/cycle/core`` with FLOPs/cycle from
  the vector ISA (2 FMA pipes × lanes × 2: AVX-512 on Intel 64, AVX-512 on AMD Zen 4 — executed
  as two 256-bit halves — 32, AVX2+FMA 32, AVX 16, else 8). Always ``estimated=True``; when
  /proc/cpuinfo is unreadable a measured fp32 matmul rate is used instead.
"""

from __future__ import annotations

import functools
import time

import torch

from g2c.nn import Module

# Dense (no sparsity) bf16 tensor-core peak FLOP/s, vendor data sheets. Longest match first.
GPU_PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,  # fp16 (no bf16 on Volta)
    "T4": 65e12,  # fp16
}


def model_flops_per_token(model: Module, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward) of ``model``.

    Uses ``model.estimate_flops_per_token(seq_len=...)`` when available, else 6 × number of
    trainable parameters (Kaplan et al. 2020). Returns an int ≥ 0.
    """
    fn = getattr(model, "estimate_flops_per_token", None)
    if callable(fn):
        try:
            return int(fn(seq_len=seq_len))
        except TypeError:
            return int(fn())
    n = model.num_parameters() if hasattr(model, "num_parameters") else 0
    return 6 * int(n)


def _cpu_flops_per_cycle() -> tuple[float, float] | None:
    """(clock GHz, fp32 FLOPs per cycle per core) read from /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
    except OSError:
        return None
    mhz = flags = vendor = None
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "cpu MHz" and mhz is None:
            mhz = float(value)
        elif key == "flags" and flags is None:
            flags = set(value.split())
        elif key == "vendor_id" and vendor is None:
            vendor = value.strip()
    if not mhz or flags is None:
        return None
    if "avx512f" in flags:
        per_cycle = 32.0 if vendor == "AuthenticAMD" else 64.0
    elif "avx2" in flags and "fma" in flags:
        per_cycle = 32.0
    elif "avx" in flags:
        per_cycle = 16.0
    else:
        per_cycle = 8.0
    return mhz / 1000.0, per_cycle


def measure_matmul_flops(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int = 1024
) -> float:
    """Measured FLOP/s of an (n, n) @ (n, n) matmul on ``device`` (best of a few runs)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


@functools.lru_cache(maxsize=16)
def _peak_cached(device_str: str, threads: int) -> tuple[float, bool]:
    device = torch.device(device_str)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key in sorted(GPU_PEAK_BF16_FLOPS, key=len, reverse=True):
            if key in name:
                return GPU_PEAK_BF16_FLOPS[key], False
        return measure_matmul_flops(device, torch.bfloat16, 4096), True
    if device.type == "cpu":
        cpu = _cpu_flops_per_cycle()
        if cpu is not None:
            ghz, per_cycle = cpu
            return threads * ghz * 1e9 * per_cycle, True
        return measure_matmul_flops(device), True
    return measure_matmul_flops(device, torch.float32, 2048), True


def device_peak_flops(device: torch.device | str = "cpu") -> tuple[float, bool]:
    """Peak FLOP/s of ``device`` and whether it is an estimate: ``(flops_per_s, estimated)``.

    Known NVIDIA GPUs → spec-sheet dense bf16 peak, ``estimated=False``; CPUs → threads ×
    clock × FLOPs/cycle (uses ``torch.get_num_threads()``), unknown accelerators → a measured
    matmul rate, both ``estimated=True``. Cached per (device, thread count).
    """
    device = torch.device(device)
    return _peak_cached(str(device), torch.get_num_threads())
