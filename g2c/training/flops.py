"""Throughput accounting: training FLOPs per token, device peak FLOP/s, and MFU.

Model FLOPs utilisation (MFU, PaLM, Chowdhery et al. 2022, appendix B) is

    MFU = (training FLOPs per token × tokens per second) / device peak FLOP/s

Training FLOPs per token come from ``model.estimate_flops_per_token(seq_len)`` when the model
has it (6·N_non-embedding + 12·L·T·D, Kaplan et al. 2020), else 6·N (forward 2N + backward 4N).

Peak FLOP/s (``device_peak_flops``):
- NVIDIA GPUs in the table below: dense bf16 tensor-core peak from the vendor spec sheets,
  ``estimated=False``.
- CPUs: the thread count × the MEASURED per-core rate of a square fp32 matmul (one thread,
  best of repeated runs for about half a second, once per process) — so MFU is comparable with
  the benches, which time the same kind of matmul. The disk cache
  (``$XDG_CACHE_HOME/g2c/peak_flops.json``, default ``~/.cache/g2c/``; keyed by device name and
  torch version; written atomically) keeps the largest per-core rate ever measured: a
  measurement taken on a loaded machine is too low, never too high, so the peak only moves up
  towards the truth (a cached peak measured under load once read MFU 133 %).
- Unknown accelerators: a measured bf16 matmul rate, cached.
  ``estimated=True`` ("the peak is a measured or assumed value, not a spec sheet"). ``G2C_PEAK_FLOPS=<flop/s>`` (or the ``override`` argument) skips the measurement
  and uses that value (``estimated=True``); ``G2C_PEAK_FLOPS_CACHE=0`` skips the disk cache.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from g2c.artifacts import atomic_write_json
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
PEAK_FLOPS_ENV = "G2C_PEAK_FLOPS"
PEAK_CACHE_ENV = "G2C_PEAK_FLOPS_CACHE"
_MEMO: dict[str, tuple[float, bool]] = {}


def model_flops_per_token(model: Module, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward) of ``model``.

    Uses ``model.estimate_flops_per_token(seq_len=...)`` when available, else 6 × number of
    trainable parameters (Kaplan et al. 2020; 0 when the model cannot count them). Returns an
    int ≥ 0.
    """
    fn = getattr(model, "estimate_flops_per_token", None)
    if callable(fn):
        try:
            return int(fn(seq_len=seq_len))
        except TypeError:
            return int(fn())
    if hasattr(model, "num_parameters"):
        return 6 * int(model.num_parameters())
    if hasattr(model, "parameters"):
        return 6 * sum(int(p.numel()) for p in model.parameters())
    return 0


def measure_matmul_flops(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    n: int = 1024,
    *,
    seconds: float = 0.5,
) -> float:
    """Measured FLOP/s of an (n, n) @ (n, n) matmul on ``device``: 2n³ / best time.

    One warm-up product, then repeats for about ``seconds`` (at least 3, at most 50 runs).
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    a @ b
    sync()
    best, t_end, runs = float("inf"), time.perf_counter() + seconds, 0
    while runs < 3 or (runs < 50 and time.perf_counter() < t_end):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
        runs += 1
    return 2.0 * n**3 / best


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.partition(":")[2].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine() or "cpu"
    return device.type


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "g2c" / "peak_flops.json"


def _read_disk_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _measured_peak(device: torch.device, key: str, use_disk: bool) -> float:
    """Measured peak FLOP/s. CPU: ``threads × per-core peak``, the per-core peak being the best
    single-thread fp32 matmul rate ever measured on this machine (the disk cache keeps the
    maximum): a measurement taken while other processes load the machine can only be too low,
    so the largest one is the closest to the peak, and one core is easier to find free than
    all of them. Other devices: a bf16 matmul at the device's full width."""
    path = _cache_file()
    cached = _read_disk_cache(path).get(key) if use_disk else None
    if device.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            flops = measure_matmul_flops(device, torch.float32, 1024)
        finally:
            torch.set_num_threads(threads)
    elif isinstance(cached, (int, float)) and cached > 0:
        return float(cached)
    else:
        flops = measure_matmul_flops(device, torch.bfloat16, 4096)
    if isinstance(cached, (int, float)) and cached > flops:
        flops = float(cached)
    elif use_disk:
        try:
            data = _read_disk_cache(path)
            data[key] = flops
            atomic_write_json(path, data)
        except OSError:
            pass  # a read-only home: the in-process cache still holds it
    return flops * (torch.get_num_threads() if device.type == "cpu" else 1)


def device_peak_flops(
    device: torch.device | str = "cpu", *, override: float | None = None, cache: bool = True
) -> tuple[float, bool]:
    """Peak FLOP/s of ``device`` and whether it is measured/assumed: ``(flops_per_s, estimated)``.

    Known NVIDIA GPUs → spec-sheet dense bf16 peak, ``estimated=False``. Otherwise
    ``override`` (or the ``G2C_PEAK_FLOPS`` environment variable, flop/s) when given, else the
    measured matmul rate (fp32 on CPU at ``torch.get_num_threads()`` threads), cached in-process
    and — with ``cache`` and unless ``G2C_PEAK_FLOPS_CACHE=0`` — on disk; ``estimated=True``.
    A non-positive or unparsable override → ValueError naming it.
    """
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key in sorted(GPU_PEAK_BF16_FLOPS, key=len, reverse=True):
            if key in name:
                return GPU_PEAK_BF16_FLOPS[key], False
    if override is None and os.environ.get(PEAK_FLOPS_ENV):
        text = os.environ[PEAK_FLOPS_ENV]
        try:
            override = float(text)
        except ValueError:
            raise ValueError(f"{PEAK_FLOPS_ENV} must be a number of FLOP/s, got {text!r}") from None
    if override is not None:
        if not isinstance(override, (int, float)) or not override > 0:
            raise ValueError(f"override must be a positive number of FLOP/s, got {override!r}")
        return float(override), True
    key = f"{_device_name(device)}|{device.type}|per-core|torch={torch.__version__}"
    memo_key = f"{key}|threads={torch.get_num_threads()}"
    if memo_key not in _MEMO:
        use_disk = cache and os.environ.get(PEAK_CACHE_ENV, "1") != "0"
        _MEMO[memo_key] = (_measured_peak(device, key, use_disk), True)
    return _MEMO[memo_key]
