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
:func:`sft_loss` needs only the *sum*, so there it does better (:func:`projected_nll_sum`):
the gradients of h and of the output matrix are computed in the forward, chunk by chunk, and
the weight gradient accumulated in place — no logits kept and none recomputed (Liger-Kernel's
fused linear cross-entropy, Hsu et al. 2024).

An all-zero mask gives 0.0 with zero (finite) gradients, never NaN: the masked positions are
*selected*, not multiplied, and the count is clamped to 1 (a 0/0 here broke a well-known
implementation's gradient accumulation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
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


class _LinearCrossEntropySum(torch.autograd.Function):
    """Σ −log softmax(h Wᵀ + b)[target] over rows, with its gradients computed chunk by chunk
    in the forward pass (the "fused linear cross-entropy" of Liger-Kernel, Hsu et al. 2024):
    no (N, V) logits are kept for backward and none are recomputed; the weight gradient
    accumulates in place (``addmm_``) in one (V, D) buffer. Backward only scales the stored
    gradients by the incoming scalar (so, like Liger's, it supports one backward per forward).
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, rows):  # type: ignore[override]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if (bias is not None and need_b) else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for i in range(0, h.shape[0], rows):
            hc, tc = h[i : i + rows], targets[i : i + rows]  # (c, D), (c,)
            z = F.linear(hc, weight, bias).float()  # (c, V)
            lse = torch.logsumexp(z, dim=-1)  # (c,)
            total += (lse - z.gather(-1, tc.unsqueeze(-1)).squeeze(-1)).sum()
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            dz = z.sub_(lse.unsqueeze(-1)).exp_()  # softmax, in place: (c, V)
            dz[torch.arange(len(tc), device=dz.device), tc] -= 1.0  # d nll / d z
            dz = dz.to(h.dtype)
            if grad_h is not None:
                torch.matmul(dz, weight, out=grad_h[i : i + rows])  # (c, V) @ (V, D)
            if grad_w is not None:
                grad_w.addmm_(dz.T, hc)  # (V, c) @ (c, D)
            if grad_b is not None:
                grad_b += dz.sum(0)
        ctx.save_for_backward(*(t for t in (grad_h, grad_w, grad_b) if t is not None))
        ctx.which = (grad_h is not None, grad_w is not None, grad_b is not None)
        return total

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        saved = iter(ctx.saved_tensors)
        grads = [next(saved).mul_(grad_out) if flag else None for flag in ctx.which]
        return grads[0], grads[1], grads[2], None, None


def _fused_head(model: Any) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(W (V, D), bias) of a TransformerLM whose ``logits_from_hidden`` is the class's own
    (F.linear(h, W, bias)); None for anything else (LoRA-wrapped or quantized heads)."""
    if "logits_from_hidden" in vars(model) or not hasattr(model, "token_embed"):
        return None
    weight = (
        model.lm_head if getattr(model, "lm_head", None) is not None else model.token_embed.weight
    )
    return weight, getattr(model, "head_bias", None)


def projected_nll_sum(model: Any, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ of :func:`projected_token_nll` (a float32 scalar). With gradients on and the model
    trading compute for memory (``activation_checkpointing``), through
    :class:`_LinearCrossEntropySum`: gradients made in the forward, chunk by chunk — no logits
    kept, none recomputed. Otherwise the sum of :func:`projected_token_nll`. Tested equal.
    """
    head = _fused_head(model)
    use_fused = (
        head is not None
        and torch.is_grad_enabled()
        and bool(getattr(model, "activation_checkpointing", False))
    )
    if not use_fused:
        return projected_token_nll(model, h, targets).sum()
    weight, bias = head
    rows = max(1, LOGITS_CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropySum.apply(h, weight, bias, targets, rows)


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
        total = projected_nll_sum(model, h[keep], y[keep])  # (N, D) -> (N, V) -> sum
        return total / n.clamp(min=1), n
    if segment_ids is not None:
        raise ValueError("segment_ids (packing) needs a model with forward_hidden (TransformerLM)")
    return masked_cross_entropy(model(x), y, mask), n


__all__ = [
    "masked_cross_entropy",
    "projected_nll_sum",
    "projected_token_nll",
    "sft_loss",
    "token_nll",
]
