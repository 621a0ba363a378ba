"""Gradient clipping by global L2 norm (Pascanu et al. 2013), as ``torch.nn.utils.clip_grad_norm_``.

total = ‖(‖g₁‖, ‖g₂‖, ...)‖₂ over every parameter with a gradient; when total > max_norm every
gradient is multiplied by max_norm / (total + 1e-6). Returns total *before* clipping.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def clip_grad_norm_(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """Clip gradients in place to global L2 norm ``max_norm``; return the pre-clip norm (float).

    Parameters whose ``.grad`` is None are skipped; no gradients → 0.0. ``max_norm <= 0`` →
    ValueError. Non-finite norms are returned as is (the gradients are then scaled by NaN, as
    torch does with ``error_if_nonfinite=False``).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norms = torch._foreach_norm(grads)  # one ‖g‖₂ per tensor
    total = torch.linalg.vector_norm(torch.stack([n.to(grads[0].device) for n in norms]))
    clip_coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, clip_coef)
    return float(total)
