"""02 tensors — from scalars to arrays.

Module 01 computed with one number at a time; everything after it computes with arrays.
This module shows what an array *is* and what makes array code fast:

- :class:`TinyArray`: an n-d array as a flat list + shape (+ strides), with NumPy
  broadcasting for ``+``, ``-`` and ``*``; :func:`broadcast_shapes` gives the rule alone.
- :func:`matmul_loops` / :func:`matmul_numpy` / :func:`matmul_torch`: the same matrix product
  by a Python triple loop, by NumPy's BLAS, and by PyTorch on any device
  (``bench/matmul.py`` measures the gap).
- :func:`linear` (``x @ W + b``, W (in, out)) and a numerically stable :func:`softmax`
  (plus :func:`log_softmax`), the first two building blocks of a neural network, composed in
  :func:`classifier_forward` (logits and class probabilities).

Sources: NumPy broadcasting rules; Goto & van de Geijn (2008) for fast matmul;
Goodfellow et al., *Deep Learning* (2016) §4.1 for the softmax shift.
See docs/modules/02-tensors.md.
"""

from g2c.tensors.matmul import matmul_flops, matmul_loops, matmul_numpy, matmul_torch
from g2c.tensors.ops import classifier_forward, linear, log_softmax, softmax
from g2c.tensors.tiny_array import TinyArray, broadcast_shapes

__all__ = [
    "TinyArray",
    "broadcast_shapes",
    "matmul_loops",
    "matmul_numpy",
    "matmul_torch",
    "matmul_flops",
    "linear",
    "softmax",
    "log_softmax",
    "classifier_forward",
]
