# %% [markdown]
# # 02 tensors — from scalars to arrays
#
# A walkthrough of `g2c.tensors`: what an array is (flat data + shape + strides), how
# broadcasting stretches size-1 axes with stride 0, the same matrix product three ways
# (Python loops, NumPy, PyTorch) and how far apart they are, and the two first network
# functions, `linear` and a numerically stable `softmax`.
#
# Run: `python examples/02_tensors.py` (a few seconds) or `--smoke` (under a second).

# %%
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from g2c.tensors import (
    TinyArray,
    broadcast_shapes,
    linear,
    matmul_flops,
    matmul_loops,
    matmul_numpy,
    matmul_torch,
    softmax,
)


# %% [markdown]
# ## 1. An array is a flat list plus a shape
def arrays() -> None:
    """Show flat storage, strides and broadcasting on a (2, 3) array."""
    a = TinyArray([1, 2, 3, 4, 5, 6], (2, 3))
    print("a       =", a.tolist(), "shape", a.shape, "strides", a.strides)
    print("a[1, 2] = data[1*3 + 2*1] =", a[1, 2])
    row = TinyArray([10, 20, 30], (3,))
    col = TinyArray([100, 200], (2, 1))
    print("a + row =", (a + row).tolist(), " # (2, 3) + (3,) -> (2, 3)")
    print("a * col =", (a * col).tolist(), " # (2, 3) * (2, 1) -> (2, 3)")
    print("2 * a + 1 =", (2 * a + 1).tolist())
    print("broadcast_shapes((8, 1, 6, 1), (7, 1, 5)) =", broadcast_shapes((8, 1, 6, 1), (7, 1, 5)))
    try:
        a + TinyArray([1, 2], (2,))
    except ValueError as exc:
        print("(2, 3) + (2,) ->", exc)


# %% [markdown]
# ## 2. The same product three ways
def matmul_three_ways(n: int) -> None:
    """Check the three implementations agree on an (n, n) product and time each once."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n))
    B = rng.standard_normal((n, n))
    ref = A @ B
    timings = {}
    for name, fn, args in [
        ("loops", matmul_loops, (A.tolist(), B.tolist())),
        ("numpy", matmul_numpy, (A, B)),
        ("torch", matmul_torch, (torch.from_numpy(A), torch.from_numpy(B))),
    ]:
        best = float("inf")
        for _ in range(1 if name == "loops" else 5):  # best of 5 for the fast ones
            t0 = time.perf_counter()
            C = np.asarray(fn(*args))
            best = min(best, time.perf_counter() - t0)
        timings[name] = best
        err = np.abs(C - ref).max()
        print(
            f"{name:>5}: max |C - A@B| = {err:.1e}, {timings[name] * 1e3:8.2f} ms, "
            f"{matmul_flops(n, n, n) / timings[name] / 1e9:8.3f} GFLOP/s"
        )
    print(
        f"loops are {timings['loops'] / timings['numpy']:,.0f}x slower than NumPy at n={n} "
        f"(bench/matmul.py times every size properly)"
    )


# %% [markdown]
# ## 3. linear and a softmax that does not overflow
def layers() -> None:
    """A linear layer on a batch, then softmax naive vs shifted at logits 1e4."""
    torch.manual_seed(0)
    x = torch.randn(4, 3)  # (B, in)
    W = torch.randn(3, 2)  # (in, out)
    b = torch.zeros(2)
    print("linear(x, W, b).shape =", tuple(linear(x, W, b).shape), " # (4, 3) @ (3, 2) -> (4, 2)")
    logits = torch.tensor([1e4, 0.0, -1e4])
    naive = torch.exp(logits) / torch.exp(logits).sum()
    print("naive   softmax([1e4, 0, -1e4]) =", naive.tolist())
    print("shifted softmax([1e4, 0, -1e4]) =", softmax(logits, 0).tolist())
    print(
        "shift invariance (float64): softmax(x + 1000) == softmax(x):",
        torch.allclose(softmax(x.double() + 1000.0, 1), softmax(x.double(), 1), atol=1e-12),
    )
    # in float32, x + 1000 itself rounds x to steps of 2^-14 ~ 6e-5 (ulp of 1000), so the
    # probabilities move by ~1e-4: the shift is exact in math, not in the input's rounding.


# %%
def main(argv: list[str] | None = None) -> int:
    """Run the walkthrough; ``--smoke`` uses tiny sizes. Returns 0."""
    p = argparse.ArgumentParser(description="02 tensors walkthrough")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (under a second)")
    p.add_argument("--n", type=int, default=None, help="matrix size for part 2 (default 96)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)
    old_threads = torch.get_num_threads()
    # On a busy 2-core machine, 2 OpenMP threads can make a small product 100x slower
    # (threads wait for each other at every barrier); one thread is the safe default.
    torch.set_num_threads(args.threads)
    n = args.n or (16 if args.smoke else 96)
    print("== 1. arrays")
    arrays()
    print(f"\n== 2. matmul three ways (n={n})")
    matmul_three_ways(n)
    print("\n== 3. linear and softmax")
    layers()
    torch.set_num_threads(old_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
