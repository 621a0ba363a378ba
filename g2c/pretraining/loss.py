"""The language-modelling loss: mean next-token cross-entropy over every position.

logits (B, T, V) and targets (B, T) are flattened to (B·T, V) and (B·T,) and scored with the
log-sum-exp cross-entropy of ``g2c.nn.cross_entropy`` (module 03), so the loss is
−(1/BT) Σ_{b,t} log softmax(logits[b, t])[targets[b, t]] in nats. Uniform logits give log V.

``impl="fused"`` calls ``torch.nn.functional.cross_entropy`` (one fused kernel, no (B·T, V)
intermediates kept for backward beyond the softmax) — the fast path, tested equal within 1e-6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from g2c.nn import cross_entropy


def lm_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, *, impl: str = "reference"
) -> torch.Tensor:
    """Mean cross-entropy (nats, float32 scalar) of ``targets`` (B, T) under ``logits`` (B, T, V).

    Reduced-precision logits (bf16/fp16 under autocast) are upcast to float32 first.
    ``impl``: "reference" (g2c's log-sum-exp, the course path) or "fused"
    (``F.cross_entropy``). Raises ValueError for mismatched shapes or an unknown impl,
    TypeError for non-integer targets.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, T, V) and targets (B, T): got logits {tuple(logits.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer token ids, got {targets.dtype}")
    V = logits.shape[-1]
    flat_logits = logits.reshape(-1, V).float()  # (B, T, V) -> (B·T, V)
    flat_targets = targets.reshape(-1)  # (B, T) -> (B·T,)
    if impl == "reference":
        return cross_entropy(flat_logits, flat_targets)
    if impl == "fused":
        return F.cross_entropy(flat_logits, flat_targets)
    raise ValueError(f"impl must be 'reference' or 'fused', got {impl!r}")
