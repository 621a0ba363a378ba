"""Logit processors applied before sampling the next token. Each maps logits (..., V) → (..., V).

- temperature: logits / τ — τ < 1 sharpens, τ > 1 flattens (τ → 0 is greedy).
- top-k (Fan et al. 2018): keep the k largest logits, the rest → −inf.
- top-p / nucleus (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration"): keep
  the smallest set of most-likely tokens whose probability reaches p.
- repetition penalty (Keskar et al. 2019, CTRL): for tokens already generated, a positive logit
  is divided by the penalty and a negative one multiplied, so penalty > 1 always lowers them.

The order used by ``generate`` is Hugging Face's: repetition penalty → temperature → top-k →
top-p → softmax.
"""

from __future__ import annotations

import torch


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point torch.Tensor (..., V)")
    if logits.dim() == 0:
        raise ValueError("logits must have a vocabulary dimension (..., V), got a scalar")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits (..., V) / ``temperature`` (a new tensor). temperature ≤ 0 → ValueError
    (greedy decoding is ``generate(..., temperature=0)``, not a division by zero)."""
    _check_logits(logits)
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; use temperature=0 in generate() "
            "for greedy decoding"
        )
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits in each row of (..., V); set the others to −inf.

    k ≥ V keeps every logit. Ties at the k-th value are all kept. k ≤ 0 → ValueError.
    """
    _check_logits(logits)
    if not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest prefix of the descending-probability order whose
    cumulative probability reaches ``p``; others → −inf. Rows of (..., V).

    The most likely token always survives (also for tiny p); p = 1 keeps everything with
    non-zero probability. p outside (0, 1] → ValueError.
    """
    _check_logits(logits)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    cum_before = torch.cumsum(probs, dim=-1) - probs  # mass strictly before each token
    drop_sorted = cum_before >= p  # the prefix already reached p without this token
    drop_sorted[..., 0] = False  # the argmax always survives
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocab order
    return logits.masked_fill(drop, float("-inf"))


def apply_repetition_penalty(
    logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL repetition penalty on logits (B, V) (or (V,)) for the ids in ``prev_ids``.

    ``prev_ids``: (B, N) ids per row, or 1-D (N,) broadcast over all rows. For each id seen in
    the row, logit > 0 → logit / penalty, logit < 0 → logit × penalty (each id once, however
    often it occurred). penalty = 1 is a no-op; penalty ≤ 0 → ValueError; ids outside [0, V)
    → ValueError. Returns a new tensor.
    """
    _check_logits(logits)
    if not penalty > 0:
        raise ValueError(f"penalty must be > 0, got {penalty}")
    squeeze = logits.dim() == 1
    out = logits.clone()
    rows = out[None] if squeeze else out.reshape(-1, out.shape[-1])  # (B, V)
    prev = torch.as_tensor(prev_ids, device=logits.device).long()
    if prev.dim() == 1:
        prev = prev[None].expand(rows.shape[0], -1)  # (N,) -> (B, N)
    if prev.dim() != 2 or prev.shape[0] != rows.shape[0]:
        raise ValueError(
            f"prev_ids must be (N,) or (B, N) with B = {rows.shape[0]}, got {tuple(prev.shape)}"
        )
    if prev.numel() == 0 or penalty == 1.0:
        return out
    if int(prev.min()) < 0 or int(prev.max()) >= rows.shape[-1]:
        raise ValueError(f"prev_ids must be token ids in [0, {rows.shape[-1]})")
    seen = rows.gather(-1, prev)  # (B, N) logits of previously seen tokens
    penalised = torch.where(seen > 0, seen / penalty, seen * penalty)
    rows.scatter_(-1, prev, penalised)
    return out
