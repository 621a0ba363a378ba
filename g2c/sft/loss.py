"""The SFT loss: next-token cross-entropy counted only where the mask is 1.

    loss = Σ_t mask_t · (−log p(y_t | x_≤t)) / Σ_t mask_t

(the mean over assistant tokens; InstructGPT, Ouyang et al. 2022). Two ways, equal within 1e-6:

- :func:`masked_cross_entropy` on full logits (B, T, V) — the course formula, written out:
  −log p = logsumexp(logits) − logits[target];
- :func:`sft_loss` (what SFTTrainer trains with): ``model.forward_hidden`` → keep the N rows
  where the mask is 1 → ``model.logits_from_hidden`` (N, V) → the same cross-entropy. The
  vocabulary projection — the biggest activation of a small-model step, B·T·V floats (49,152
  columns for SmolLM2) — is computed only where the loss counts, as TRL does.

Even N rows of logits are big (600 response tokens × 49,152 × 4 bytes = 118 MB, about three
times that with the softmax and its gradient). :func:`projected_token_nll` cuts the N rows into
chunks of at most ``LOGITS_CHUNK_ELEMENTS`` logits: without gradients (evaluation, reference
log-probabilities) chunk by chunk; with gradients only when the model trades compute for
memory (``model.activation_checkpointing``), each chunk under ``torch.utils.checkpoint`` so its
logits are rebuilt in backward instead of kept — one extra head matmul for O(chunk) memory.

An all-zero mask gives 0.0 with zero (finite) gradients, never NaN: the masked positions are
*selected*, not multiplied, and the count is clamped to 1 (a 0/0 here broke a well-known
implementation's gradient accumulation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

#: Most logits (rows × vocabulary) one chunk of :func:`projected_token_nll` holds: 8 Mi fp32
#: = 32 MiB (170 rows of a 49,152-token vocabulary).
LOGITS_CHUNK_ELEMENTS = 1 << 23


def _check_loss_args(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
    if logits.dim() < 2 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets must have the shape of logits without its last dim: logits "
            f"{tuple(logits.shape)}, targets {tuple(targets.shape)}"
        )
    if tuple(mask.shape) != tuple(targets.shape):
        raise ValueError(
            f"mask must have the shape of targets {tuple(targets.shape)}, got {tuple(mask.shape)}"
        )


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """−log softmax(logits)[target] per position: logits (..., V) float, targets (...) long →
    (...) float32 (half-precision logits upcast, so bf16 autocast stays accurate; float64
    stays float64)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...)
    return torch.logsumexp(logits, dim=-1) - picked


def _chunk_nll(model: Any, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return token_nll(model.logits_from_hidden(h), targets)


def projected_token_nll(
    model: Any, h: torch.Tensor, targets: torch.Tensor, *, chunked: bool | None = None
) -> torch.Tensor:
    """−log p(target) per row from final-normed hidden rows: h (N, D), targets (N,) long →
    (N,) float32, through ``model.logits_from_hidden``, never more than
    ``LOGITS_CHUNK_ELEMENTS`` logits alive when chunked (module docstring).

    ``chunked`` None (default) = chunk when gradients are off, or when they are on and
    ``model.activation_checkpointing`` is True; False = one (N, V) projection (the plain path,
    tested equal). Values and gradients equal the unchunked path to float rounding.
    """
    n, V = h.shape[0], int(getattr(model, "vocab_size", 0) or 1)
    grad = torch.is_grad_enabled()
    if chunked is None:
        chunked = not grad or bool(getattr(model, "activation_checkpointing", False))
    rows = max(1, LOGITS_CHUNK_ELEMENTS // V)
    if not chunked or n <= rows:
        return _chunk_nll(model, h, targets)
    parts = []
    for i in range(0, n, rows):
        hc, tc = h[i : i + rows], targets[i : i + rows]
        if grad:  # logits of this chunk rebuilt in backward, not kept
            parts.append(checkpoint(_chunk_nll, model, hc, tc, use_reentrant=False))
        else:
            parts.append(_chunk_nll(model, hc, tc))
    return torch.cat(parts)


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where ``mask`` is nonzero.

    logits (B, T, V) float, targets (B, T) long, mask (B, T) (0/1, any dtype) → scalar float32,
    the sum of masked per-token losses divided by ``mask.sum()``. An all-zero mask → 0.0 (and
    zero gradients), never NaN. Shape mismatches → ValueError.
    """
    _check_loss_args(logits, targets, mask)
    keep = mask.bool()
    nll = token_nll(logits, targets)  # (B, T)
    total = torch.where(keep, nll, torch.zeros_like(nll)).sum()  # unselected: no NaN leaks in
    return total / keep.sum().clamp(min=1)


def sft_loss(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    segment_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked loss with the vocabulary projection only at masked positions.

    x, y, mask (B, T); ``segment_ids`` (B, T) for packed rows. For a model with
    ``forward_hidden``/``logits_from_hidden`` (TransformerLM): hidden (B, T, D) → rows where
    mask is 1 (N, D) → logits (N, V) → cross-entropy, never the (B, T, V) logits. Any other
    model: ``masked_cross_entropy(model(x), y, mask)`` (packing needs a TransformerLM).
    Returns (loss scalar, number of target tokens N as a tensor).
    """
    keep = mask.bool()
    n = keep.sum()
    if hasattr(model, "forward_hidden") and hasattr(model, "logits_from_hidden"):
        h = model.forward_hidden(x, segment_ids=segment_ids)  # (B, T, D)
        nll = projected_token_nll(model, h[keep], y[keep])  # (N, D) -> (N, V) -> (N,)
        return nll.sum() / n.clamp(min=1), n
    if segment_ids is not None:
        raise ValueError("segment_ids (packing) needs a model with forward_hidden (TransformerLM)")
    return masked_cross_entropy(model(x), y, mask), n


__all__ = ["masked_cross_entropy", "projected_token_nll", "sft_loss", "token_nll"]
