"""Losses: mean squared error and softmax cross-entropy, written with tensor ops.

Cross-entropy uses the log-sum-exp trick: log softmax(z)_y = z_y − (m + log Σ exp(z − m)) with
m = max z, so logits of ±1e4 stay finite. Matches ``F.cross_entropy`` within 1e-6.
"""

from __future__ import annotations

import torch

from g2c.nn.module import Module
from g2c.tensors import log_softmax  # 02 built it: the log-sum-exp trick


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int | None = None
) -> torch.Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    logits (N, C) float and targets (N,) integer; also (..., C) with targets (...), flattened.
    ``ignore_index`` positions are left out of the mean (all ignored → 0.0, not NaN).
    Raises TypeError for non-integer targets and ValueError for mismatched shapes or
    targets outside [0, C).
    """
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor of class ids, got {targets.dtype}")
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits (..., C) and targets (...) must agree: got logits {tuple(logits.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    C = logits.shape[-1]
    logits = logits.reshape(-1, C)  # (N, C)
    targets = targets.reshape(-1)  # (N,)
    keep = targets != ignore_index if ignore_index is not None else None
    if keep is not None:
        targets = targets.masked_fill(~keep, 0)
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= C):
        raise ValueError(
            f"targets must be class ids in [0, {C}), got range "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    logp = log_softmax(logits, dim=-1)  # (N, C)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)  # (N,)
    if keep is None:
        return nll.mean()
    return (nll * keep).sum() / keep.sum().clamp_min(1)


class CrossEntropyLoss(Module):
    """Softmax cross-entropy: logits (N, C) + int targets (N,) → scalar mean NLL (nats).

    Uniform logits give log C; finite for logits ±1e4; equals ``F.cross_entropy`` within 1e-6.
    See :func:`cross_entropy` for the errors raised.
    """

    def __init__(self, *, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar mean negative log-likelihood."""
        return cross_entropy(logits, targets, ignore_index=self.ignore_index)


class MSELoss(Module):
    """Mean squared error ``mean((pred − target)²)``; shapes must match (ValueError if not)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar mean of squared differences."""
        if pred.shape != target.shape:
            raise ValueError(
                f"MSELoss: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
            )
        return ((pred - target) ** 2).mean()
