"""The first two neural-network functions on tensors: ``linear`` and a stable ``softmax``.

The idea: a linear (fully connected) layer is one matrix product plus a bias,
``y = x @ W + b`` with ``W`` stored (in, out) so that a batch of rows ``x`` (B, in) maps to
(B, out). Softmax turns a vector of scores (logits) into probabilities,
``softmax(x)_i = exp(x_i) / sum_j exp(x_j)``. Computed literally, ``exp(1e4)`` overflows to
inf and the result is nan; since softmax is unchanged when the same constant is subtracted
from every logit (the factor ``exp(-c)`` cancels), we subtract the maximum first, so the
largest exponent is ``exp(0) = 1`` and nothing overflows. ``log_softmax`` uses the same shift
(the log-sum-exp trick) so that tiny probabilities keep their logarithm instead of rounding to
``log(0) = -inf``.

Source: Goodfellow, Bengio & Courville, *Deep Learning* (2016), sections 4.1 (the shift) and
6.2.2.3 (softmax units).

Shapes: ``linear``: x (..., in), W (in, out), b (out,) -> (..., out).
``classifier_forward``: x (..., in), W (in, C), b (C,) -> logits and probs, both (..., C).
``softmax`` / ``log_softmax``: any shape, normalised along ``dim``; output has x's shape.
"""

from __future__ import annotations

import torch

__all__ = ["linear", "softmax", "log_softmax", "classifier_forward"]


def _check_tensor(x: object, name: str, fn: str) -> torch.Tensor:
    """Raise TypeError unless ``x`` is a torch.Tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}; "
            f"convert it with torch.as_tensor({name}) (torch.from_numpy for NumPy arrays)"
        )
    return x


def linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """A fully connected layer: ``x @ W + b`` with ``W`` shaped (in, out).

    Note the layout: ``W`` is (in_features, out_features), the transpose of
    ``torch.nn.Linear.weight`` (out, in); ``linear(x, W, b)`` equals
    ``torch.nn.functional.linear(x, W.T, b)``.

    Args:
        x: (..., in) input, any number of leading (batch) axes; floating point.
        W: (in, out) weight matrix, same dtype and device as ``x``.
        b: (out,) bias, or None for no bias.

    Returns:
        (..., out) tensor on x's device. Autograd flows to x, W and b.

    Raises:
        TypeError: an argument that is not a tensor.
        ValueError: W not 2-D, x's last axis != W's first axis, b not of shape (out,),
            or mismatched dtypes/devices (the message names the shapes).
    """
    _check_tensor(x, "x", "linear")
    _check_tensor(W, "W", "linear")
    if W.ndim != 2:
        raise ValueError(f"linear: W must be 2-D (in, out), got shape {tuple(W.shape)}")
    if x.ndim == 0 or x.shape[-1] != W.shape[0]:
        raise ValueError(
            f"linear: x has shape {tuple(x.shape)} and W has shape {tuple(W.shape)}; the last "
            f"axis of x must equal W's first axis (in_features = {W.shape[0]})"
        )
    tensors = {"x": x, "W": W}
    if b is not None:
        _check_tensor(b, "b", "linear")
        if tuple(b.shape) != (W.shape[1],):
            raise ValueError(
                f"linear: b has shape {tuple(b.shape)} but W has shape {tuple(W.shape)}; b must "
                f"have shape ({W.shape[1]},) (one bias per output feature)"
            )
        tensors["b"] = b
    for name, t in tensors.items():
        if t.device != x.device or t.dtype != x.dtype:
            raise ValueError(
                f"linear: {name} is {t.dtype} on {t.device} but x is {x.dtype} on {x.device}; "
                f"use {name}.to(x)"
            )
    y = x @ W  # (..., in) @ (in, out) -> (..., out)
    if b is not None:
        y = y + b  # (out,) broadcasts over the leading axes
    return y


def _check_softmax_args(x: object, dim: int, fn: str) -> torch.Tensor:
    """Validate a softmax input: floating tensor and an in-range integer ``dim``."""
    x = _check_tensor(x, "x", fn)
    if not x.is_floating_point():
        raise TypeError(
            f"{fn}: x must be a real floating-point tensor, got {x.dtype}; use x.float()"
        )
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{fn}: dim must be an int, got {dim!r}")
    ndim = max(x.ndim, 1)  # a 0-d tensor accepts dim 0 / -1, as in torch
    if not -ndim <= dim < ndim:
        raise ValueError(
            f"{fn}: dim={dim} is out of range for x of shape {tuple(x.shape)} "
            f"(valid: {-ndim} .. {ndim - 1})"
        )
    return x


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``: ``exp(x - max) / sum(exp(x - max))``.

    Subtracting the maximum along ``dim`` changes nothing mathematically (softmax is
    shift-invariant) but keeps every exponent <= 0, so logits of 1e4 (or 1e30) give exact
    probabilities instead of inf/nan. Entries of ``-inf`` (masked positions) get probability
    0. A slice that is entirely ``-inf`` gives nan, as in ``torch.softmax``.

    Args:
        x: floating-point tensor of any shape, e.g. logits (B, T, V).
        dim: the axis to normalise (default -1, the last).

    Returns:
        Tensor of x's shape, dtype and device; entries in [0, 1] summing to 1 along ``dim``.
        Autograd flows through it (the shift is treated as a constant).

    Raises:
        TypeError: x not a floating-point tensor, or dim not an int.
        ValueError: dim out of range for x's rank.
    """
    x = _check_softmax_args(x, dim, "softmax")
    shift = x.amax(dim=dim, keepdim=True).detach()  # (..., 1, ...): the max along dim
    e = torch.exp(x - shift)  # every exponent <= 0, so no overflow
    return e / e.sum(dim=dim, keepdim=True)  # normalise along dim


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable ``log(softmax(x))`` by the log-sum-exp trick.

    ``log_softmax(x) = (x - m) - log(sum(exp(x - m)))`` with ``m = max(x)`` along ``dim``.
    Unlike ``softmax(x).log()`` it stays finite for probabilities below the float range
    (e.g. logits [0, -1e4] give [0, -1e4], not [0, -inf]).

    Args:
        x: floating-point tensor of any shape.
        dim: the axis to normalise (default -1).

    Returns:
        Tensor of x's shape with ``exp(out).sum(dim) == 1``.

    Raises:
        TypeError / ValueError: as :func:`softmax`.
    """
    x = _check_softmax_args(x, dim, "log_softmax")
    shifted = x - x.amax(dim=dim, keepdim=True).detach()  # max along dim becomes 0
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def classifier_forward(
    x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear classifier's forward pass: ``logits = linear(x, W, b)``, ``probs = softmax(logits)``.

    The two functions above composed, as the course's exercise writes it: class scores, then
    probabilities over the last axis (the classes).

    Args:
        x: (..., in) floating-point inputs, e.g. a batch (B, in).
        W: (in, C) weights, same dtype/device as x; b: (C,) bias or None.

    Returns:
        ``(logits, probs)``, both (..., C) in x's dtype; each row of ``probs`` is in [0, 1] and
        sums to 1. Autograd flows through both.

    Raises:
        TypeError: a non-tensor argument, or x not floating point.
        ValueError: as :func:`linear` (shapes, dtypes, devices).
    """
    if not _check_tensor(x, "x", "classifier_forward").is_floating_point():
        raise TypeError(
            f"classifier_forward: x must be floating point, got {x.dtype}; use x.float()"
        )
    logits = linear(x, W, b)  # (..., in) @ (in, C) + (C,) -> (..., C)
    return logits, softmax(logits, dim=-1)  # (..., C) -> (..., C), rows sum to 1
