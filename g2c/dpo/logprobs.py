"""Response log-probabilities of a model, computed only where they count.

``sequence_logprob(model(x), y, mask)`` builds the full (B, T, V) logits and throws most of
them away: in a DPO batch only the response positions matter, and with a 49k vocabulary the
full logits dominate memory. ``response_logprobs`` does the same sum for a model with
``forward_hidden`` / ``logits_from_hidden`` (``TransformerLM``):

    h  = model.forward_hidden(x)            (B, T) -> (B, T, D)   final-normed hidden states
    hs = h[mask]                            (N, D)                N = response positions
    z  = model.logits_from_hidden(hs)       (N, V)                the vocabulary projection, N rows only
    lp = z[target] − logsumexp(z)           (N,)                  (no (N, V) log-softmax kept;
                                                                  in chunks: projected_token_nll)
    out[b] = Σ lp over row b's positions    (B,)                  index_add

Tested equal to the full-logits path (``tests/test_dpo.py``). Any other model (B, T) → (B, T, V)
takes the full-logits path. Chosen and rejected go through ONE forward (concatenated along the
batch, as TRL's ``concatenated_forward``): ``pair_logprobs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from g2c.dpo.data import PreferenceExample, as_preference_examples, pad_and_collate_pref
from g2c.dpo.loss import sequence_logprob
from g2c.sft.loss import projected_token_nll


def has_hidden_path(model: Any) -> bool:
    """True when ``model`` has ``forward_hidden`` and ``logits_from_hidden`` (TransformerLM)."""
    return callable(getattr(model, "forward_hidden", None)) and callable(
        getattr(model, "logits_from_hidden", None)
    )


def response_logprobs(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    average: bool = False,
    full_logits: bool = False,
) -> torch.Tensor:
    """Summed log-probabilities (B,) of targets ``y`` where ``mask`` is set, under ``model``.

    ``x``, ``y``, ``mask``: (B, T) (``pad_and_collate_pref``'s). With ``average`` each row is
    divided by its mask count (IPO). The vocabulary projection runs only on the N masked
    positions when the model has the hidden-state path (module docstring); ``full_logits=True``
    forces ``sequence_logprob(model(x), y, mask)`` (the reference path, for tests).
    """
    keep = mask.bool()
    if full_logits or not has_hidden_path(model):
        return sequence_logprob(model(x), y, keep, average=average)
    h = model.forward_hidden(x)  # (B, T) -> (B, T, D)
    lp = -projected_token_nll(model, h[keep], y[keep])  # (N, D) -> (N, V) -> (N,), chunked
    rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1).expand_as(keep)[keep]  # (N,)
    out = torch.zeros(x.shape[0], dtype=lp.dtype, device=lp.device).index_add_(0, rows, lp)
    if average:
        out = out / keep.sum(-1).clamp_min(1)
    return out  # (B,)


def pair_logprobs(
    model: Any,
    chosen: Sequence[torch.Tensor],
    rejected: Sequence[torch.Tensor],
    *,
    average: bool = False,
    full_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen (B,), rejected (B,)) log-probabilities from ONE forward of the 2B sequences.

    ``chosen`` / ``rejected``: (x, y, mask) triples of equal width (``pad_and_collate_pref``).
    """
    B = chosen[0].shape[0]
    x, y, mask = (torch.cat([c, r]) for c, r in zip(chosen, rejected))  # (2B, T) each
    lp = response_logprobs(model, x, y, mask, average=average, full_logits=full_logits)  # (2B,)
    return lp[:B], lp[B:]


@torch.no_grad()
def precompute_ref_logprobs(
    ref_model: Any,
    examples: Sequence[PreferenceExample],
    max_seq_len: int,
    pad_id: int,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Reference log-probabilities of every pair, once, before training: (N, 2) float32,
    column 0 the chosen response's summed log-probability, column 1 the rejected one's.

    Pass the result as ``DPOTrainer(ref_logprobs=...)`` with ``ref_model=None``: no second
    model in memory while training (the reference's cost is one forward per pair, paid here).
    Pairs are truncated exactly as in training (same ``max_seq_len``). Sums are stored; the
    trainer divides by response lengths itself for ``loss_type="ipo"``. Runs in eval mode with
    no gradients and restores the model's mode. ``device`` defaults to the model's.
    Bad ``batch_size`` or examples → ValueError.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    examples = as_preference_examples(examples)
    if device is None:
        dev = getattr(ref_model, "device", None)
        device = dev if isinstance(dev, torch.device) else torch.device("cpu")
    was_training = getattr(ref_model, "training", False)
    ref_model.eval()
    out = []
    try:
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            batch = pad_and_collate_pref(chunk, max_seq_len, pad_id, pad_to="longest", warn=False)
            chosen, rejected = ([t.to(device) for t in side] for side in batch)
            c, r = pair_logprobs(ref_model, chosen, rejected)
            out.append(torch.stack([c, r], dim=1).float().cpu())  # (b, 2)
    finally:
        ref_model.train(was_training)
    return torch.cat(out)


__all__ = ["has_hidden_path", "pair_logprobs", "precompute_ref_logprobs", "response_logprobs"]
