"""CPU memory: keep freed activation memory from piling up in the C heap.

On Linux, PyTorch's CPU tensors come from glibc ``malloc``. glibc serves blocks of at least
``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with their own ``mmap`` and returns them to the
OS on free — but every time such a block is freed it *raises* the threshold (up to 32 MiB), so
a training step's activations (a few MiB each for a 135M-parameter model) soon come from the
heap instead, where fragmentation keeps hundreds of MiB that nothing uses any more. Measured on
SmolLM2-135M full SFT (batch 4 × 256, activation checkpointing): peak RSS 2.96 GB with the
dynamic threshold, 2.51 GB with it pinned (``bench/posttrain.py``).

:func:`pin_malloc_mmap_threshold` pins the threshold (``mallopt(M_MMAP_THRESHOLD, ...)``, which
also switches the dynamic raise off — glibc's documented behaviour). It is a trade, so it is
opt-in (call it before training; ``G2C_MALLOC_TUNING=0`` makes it a no-op): every fresh page of
a large allocation is then a page fault — 2.5 M instead of 0.2 M minor faults per SmolLM2 step,
about 1.3 µs each here (``bench``-style microbenchmark: 300 × 4 MiB allocations 0.05 s → 0.45 s),
i.e. roughly 3 s on a 9 s step. Other C libraries (musl, macOS) → a no-op returning False.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

#: glibc's mallopt parameter number for the mmap threshold (malloc.h: ``#define M_MMAP_THRESHOLD -3``)
_M_MMAP_THRESHOLD = -3
_DEFAULT_THRESHOLD = 128 * 1024  # glibc's own starting value
_pinned: int | None = None


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, opened once (``platform.libc_ver`` reads the interpreter binary: far too slow for
    a per-step call); None on another C library or OS."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def pin_malloc_mmap_threshold(threshold_bytes: int = _DEFAULT_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold to ``threshold_bytes`` (default 128 KiB, glibc's initial
    value) so freed large blocks go back to the OS; True when applied (or already pinned to
    this value), False on a C library without ``mallopt`` or when ``G2C_MALLOC_TUNING=0``.
    ``threshold_bytes`` outside [4 KiB, 32 MiB] → ValueError.
    """
    global _pinned
    if not isinstance(threshold_bytes, int) or not 4096 <= threshold_bytes <= 32 * 1024 * 1024:
        raise ValueError(
            f"threshold_bytes must be an int in [4096, 33554432], got {threshold_bytes!r}"
        )
    if os.environ.get("G2C_MALLOC_TUNING", "1") == "0":
        return False
    if _pinned == threshold_bytes:
        return True
    libc = _glibc()
    if libc is None:
        return False
    try:
        ok = libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(threshold_bytes)) == 1
    except AttributeError:
        return False
    if ok:
        _pinned = threshold_bytes
    return ok


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim(0)``, which also
    releases free pages in the middle of the heap); True when something was released. Called by
    loaders after their scratch allocations (the GGUF loader: dequantization temporaries and the
    parsed metadata), so the memory a training run starts from is the model's, not the loader's
    leftovers; and by ``TrainingLoop`` between forward and backward when the model trains with
    activation checkpointing on the CPU (the memory-saving mode): the forward's freed
    activations (0.4–0.5 GB of heap holes for SmolLM2) go back before the backward's peak —
    full-SFT peak 2.93 → 2.82 GB for ~0.1 s of page faults per step. A no-op returning False
    outside glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    try:
        return libc.malloc_trim(ctypes.c_size_t(0)) == 1
    except AttributeError:
        return False


__all__ = ["pin_malloc_mmap_threshold", "release_free_heap"]
