"""Matrix multiplication three ways: Python loops, NumPy, PyTorch.

The idea: ``C = A @ B`` with ``A`` (n, k) and ``B`` (k, m) is ``C[i][j] = sum_p A[i][p] * B[p][j]``,
2·n·k·m floating-point operations (one multiply and one add per term). The triple loop below
is that formula and nothing else; NumPy and PyTorch compute the same numbers with a BLAS
library (OpenBLAS / MKL / cuBLAS) that blocks the loops for the caches, vectorises them with
SIMD (AVX2/AVX-512) and spreads them over cores, which is why it runs 10^3-10^5 times faster
(see ``bench/matmul.py`` and docs/modules/02-tensors.md for the measured numbers).

Source: the definition of the matrix product; for why BLAS is fast, Goto & van de Geijn,
"Anatomy of High-Performance Matrix Multiplication", ACM TOMS 34(3), 2008.

Shapes: ``matmul_loops`` takes nested lists (n, k) and (k, m) and returns a nested list
(n, m). ``matmul_numpy`` and ``matmul_torch`` follow ``A @ B`` exactly, including 1-D
operands and broadcast batch axes: (..., n, k) @ (..., k, m) -> (..., n, m).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from g2c.tensors.tiny_array import broadcast_shapes

__all__ = ["matmul_loops", "matmul_numpy", "matmul_torch", "matmul_flops"]


def matmul_flops(n: int, k: int, m: int) -> int:
    """Floating-point operations of an (n, k) @ (k, m) product: 2·n·k·m (multiply + add)."""
    return 2 * n * k * m


def _matmul_shape(sa: tuple[int, ...], sb: tuple[int, ...], fn: str) -> tuple[int, ...]:
    """Output shape of ``A @ B`` for shapes ``sa`` and ``sb`` (NumPy matmul rules).

    1-D ``A`` is a row vector (k,), 1-D ``B`` a column vector (k,); the dimension added for
    them is removed from the result. Leading (batch) axes broadcast with
    :func:`~g2c.tensors.broadcast_shapes`. Raises ValueError naming both shapes.
    """
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(
            f"{fn}: A has shape {sa} and B has shape {sb}; matmul needs at least 1-D operands "
            f"(for a scalar use elementwise *)"
        )
    ka = sa[-1]
    kb = sb[0] if len(sb) == 1 else sb[-2]
    if ka != kb:
        raise ValueError(
            f"{fn}: A has shape {sa} and B has shape {sb}; the last axis of A ({ka}) must "
            f"equal the {'only' if len(sb) == 1 else 'second-to-last'} axis of B ({kb})"
        )
    try:
        batch = broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError as exc:
        raise ValueError(
            f"{fn}: A has shape {sa} and B has shape {sb}; their batch axes "
            f"{sa[:-2]} and {sb[:-2]} cannot be broadcast"
        ) from exc
    rows = (sa[-2],) if len(sa) >= 2 else ()
    cols = (sb[-1],) if len(sb) >= 2 else ()
    return (*batch, *rows, *cols)


# ---- 1. the pedagogical version: three nested loops on lists --------------------------------
def _nested_matrix_shape(M: Any, name: str) -> tuple[int, int]:
    """(rows, cols) of a rectangular nested list of numbers; ValueError/TypeError otherwise."""
    if isinstance(M, (str, bytes)) or not isinstance(M, Sequence):
        raise TypeError(
            f"matmul_loops: {name} must be a nested list (a list of rows), got "
            f"{type(M).__name__}; for arrays use matmul_numpy or call .tolist() first"
        )
    if len(M) == 0 or isinstance(M[0], numbers.Real):
        raise ValueError(
            f"matmul_loops: {name} must be a non-empty 2-D nested list such as [[1, 2], [3, 4]], "
            f"got {'an empty list' if len(M) == 0 else 'a flat list (1-D)'}"
        )
    cols = None
    for i, row in enumerate(M):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise TypeError(f"matmul_loops: {name}[{i}] must be a list of numbers, got {row!r}")
        if cols is None:
            cols = len(row)
        elif len(row) != cols:
            raise ValueError(
                f"matmul_loops: {name} is ragged: row {i} has {len(row)} entries but row 0 "
                f"has {cols}"
            )
        for x in row:
            if not isinstance(x, numbers.Real):
                raise TypeError(f"matmul_loops: {name}[{i}] contains {x!r}, not a number")
    if cols == 0:
        raise ValueError(f"matmul_loops: {name} has rows of length 0; use at least one column")
    return len(M), cols


def matmul_loops(A: Sequence[Sequence[float]], B: Sequence[Sequence[float]]) -> list[list[float]]:
    """``A @ B`` for nested Python lists, by the textbook triple loop.

    ``C[i][j] = sum_p A[i][p] * B[p][j]``: n·m dot products of length k, each a loop of
    multiply-adds in Python (2·n·k·m FLOP, accumulated left to right in Python floats, i.e.
    IEEE float64). This is the readable reference; it is ~10^4 times slower than
    :func:`matmul_numpy` (see bench/matmul.py).

    Args:
        A: (n, k) nested list (a list of n rows of k numbers; tuples work too).
        B: (k, m) nested list.

    Returns:
        (n, m) nested list (a new list of lists).

    Raises:
        ValueError: empty or 1-D input, ragged rows, or A's column count differs from B's
            row count (the message names both shapes).
        TypeError: input that is not a nested list of numbers (e.g. a NumPy array:
            use :func:`matmul_numpy` or ``.tolist()``).
    """
    n, k = _nested_matrix_shape(A, "A")
    k_b, m = _nested_matrix_shape(B, "B")
    if k != k_b:
        raise ValueError(
            f"matmul_loops: A has shape ({n}, {k}) and B has shape ({k_b}, {m}); the number of "
            f"columns of A ({k}) must equal the number of rows of B ({k_b})"
        )
    C = [[0.0] * m for _ in range(n)]  # (n, m)
    for i in range(n):  # each row of A ...
        for j in range(m):  # ... times each column of B ...
            acc = 0
            for p in range(k):  # ... is a dot product of length k
                acc += A[i][p] * B[p][j]
            C[i][j] = acc
    return C


# ---- 2. NumPy: the same product by BLAS (OpenBLAS in the PyPI wheels) ------------------------
def matmul_numpy(A: Any, B: Any) -> np.ndarray:
    """``A @ B`` with NumPy (``np.matmul``, which calls a BLAS ``gemm`` for float matrices).

    Args:
        A: array-like (..., n, k) or (k,); converted with ``np.asarray`` (nested lists become
            float64 or int64 arrays; arrays keep their dtype).
        B: array-like (..., k, m) or (k,).

    Returns:
        ``np.ndarray`` of shape (..., n, m) (1-D operands drop their axis, as in NumPy); the
        dtype follows NumPy's promotion (float32 @ float32 -> float32).

    Raises:
        ValueError: 0-d operands, mismatched inner sizes, or batch axes that do not
            broadcast (the message names both shapes).
        TypeError: non-numeric input.
    """
    a = np.asarray(A)
    b = np.asarray(B)
    for name, x in (("A", a), ("B", b)):
        if x.dtype.kind not in "biufc":
            raise TypeError(f"matmul_numpy: {name} must be numeric, got dtype {x.dtype}")
    _matmul_shape(a.shape, b.shape, "matmul_numpy")
    return np.matmul(a, b)  # (..., n, k) @ (..., k, m) -> (..., n, m)


# ---- 3. PyTorch: the same product on whichever device the tensors live ----------------------
def matmul_torch(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A @ B`` with PyTorch; the result stays on the inputs' device (CPU, CUDA or MPS).

    Args:
        A: tensor (..., n, k) or (k,).
        B: tensor (..., k, m) or (k,), same device and dtype as ``A``.

    Returns:
        Tensor of shape (..., n, m) on the inputs' device, with their dtype. Autograd flows
        through it.

    Raises:
        TypeError: an input that is not a ``torch.Tensor`` (wrap it with ``torch.as_tensor``),
            or bool tensors.
        ValueError: tensors on different devices, with different dtypes, 0-d, or with shapes
            that do not match (the message names both shapes / devices / dtypes).
    """
    for name, x in (("A", A), ("B", B)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"matmul_torch: {name} must be a torch.Tensor, got {type(x).__name__}; "
                f"wrap it with torch.as_tensor({name})"
            )
        if x.dtype == torch.bool:
            raise TypeError(f"matmul_torch: {name} is a bool tensor; convert it with .float()")
    if A.device != B.device:
        raise ValueError(
            f"matmul_torch: A is on {A.device} but B is on {B.device}; move one with "
            f".to({str(A.device)!r})"
        )
    if A.dtype != B.dtype:
        raise ValueError(
            f"matmul_torch: A has dtype {A.dtype} but B has dtype {B.dtype}; convert one "
            f"with .to({A.dtype})"
        )
    _matmul_shape(tuple(A.shape), tuple(B.shape), "matmul_torch")
    return torch.matmul(A, B)  # (..., n, k) @ (..., k, m) -> (..., n, m), same device
