"""The one home of evaluation: validation loss, perplexity and bits per byte.

Every trainer, stage and example measures a language model with these functions (the seed of
``g2c.eval``):

- ``mean_batch_loss(model, batches, loss_fn)``: mean of a loss over an iterable of batches —
  what ``TrainingLoop.evaluate`` / ``Trainer.evaluate`` report.
- ``stream_loss(model, ids, T)``: mean next-token loss over consecutive, non-overlapping
  windows of a 1-D token stream (every token scored once, unlike random windows).
- ``perplexity_from_loss(loss)`` = exp(loss in nats/token).
- ``bits_per_byte(loss, tokens, bytes)`` = loss · tokens / bytes / ln 2: comparable across
  tokenizers, since it is normalised by the text's UTF-8 bytes, not by its token count.
- ``sequence_perplexity(model, prompt_ids, new_ids)``: perplexity of a continuation given
  its prompt (how surprised the model is by its own sample).

All run without gradients with the model in eval mode and restore its previous mode. The
loss is g2c's own ``g2c.nn.cross_entropy`` (log-sum-exp, module 03; tested equal to
``torch.nn.functional.cross_entropy``) on float32 logits. Sources: nanoGPT ``estimate_loss`` (Karpathy 2022);
bits per byte as in Gao et al. 2020 (The Pile).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from g2c.nn import cross_entropy


def _model_device(model: Any) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@torch.no_grad()
def mean_batch_loss(
    model: Any, batches: Iterable[Any], loss_fn: Callable[[Any, Any], Any]
) -> float:
    """Mean of ``loss_fn(model, batch)`` over ``batches`` (float), eval mode, no gradients.

    ``loss_fn`` returns a scalar tensor or ``(scalar tensor, metrics)`` (the training loop's
    convention); the scalars are averaged with equal weight per batch. The model's previous
    train/eval mode is restored. An empty ``batches`` → ValueError.
    """
    was_training = model.training
    model.eval()
    try:
        losses = []
        for batch in batches:
            out = loss_fn(model, batch)
            loss = out[0] if isinstance(out, tuple) else out
            losses.append(loss.detach().double())  # float64 sum: no rounding drift
    finally:
        model.train(was_training)
    if not losses:
        raise ValueError("batches is empty: mean_batch_loss needs at least one batch")
    return float(torch.stack(losses).mean())


@torch.no_grad()
def stream_loss(
    model: Any,
    ids: torch.Tensor | Sequence[int],
    context_length: int,
    *,
    batch_size: int = 16,
    max_tokens: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, float | int]:
    """Mean next-token loss over consecutive, non-overlapping windows of a token stream.

    ``ids``: 1-D token ids (N,) — a long tensor or any object with ``len`` whose slices give
    1-D tensors (``g2c.pretraining.TokenStream``). Window r is ``x = ids[rT : rT + T]``,
    ``y = ids[rT + 1 : rT + T + 1]`` (T = ``context_length``), scored ``batch_size`` windows at a
    time by ``model`` ((B, T) → (B, T, V) logits). ``max_tokens`` caps the scored predictions
    (whole windows, at least one); None scores every whole window. ``device``: where the
    windows go (None: the model's device).

    Returns ``{"loss": mean nats/token (float), "tokens": predictions scored (int)}``.
    Raises ValueError for fewer than ``context_length + 1`` ids (naming context_length), a
    non-1-D tensor, or sizes < 1.
    """
    _check_int("context_length", context_length, 1)
    _check_int("batch_size", batch_size, 1)
    if max_tokens is not None:
        _check_int("max_tokens", max_tokens, 1)
    if isinstance(ids, torch.Tensor) and ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D token stream (N,), got shape {tuple(ids.shape)}")
    T = context_length
    n_windows = (len(ids) - 1) // T
    if n_windows < 1:
        raise ValueError(f"ids must hold more than context_length={T} tokens, got {len(ids)}")
    if max_tokens is not None:
        n_windows = max(1, min(n_windows, max_tokens // T))
    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, n_windows, batch_size):
            stop = min(start + batch_size, n_windows)
            flat = torch.as_tensor(ids[start * T : stop * T + 1]).long()  # ((stop-start)·T + 1,)
            x = flat[:-1].view(stop - start, T).to(device)  # (B, T)
            y = flat[1:].view(stop - start, T).to(device)  # (B, T)
            logits = model(x).float()  # (B, T, V)
            loss = cross_entropy(logits, y)
            total += float(loss) * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)
    return {"loss": total / count, "tokens": count}


def bits_per_byte(loss_nats: float, num_tokens: int, num_bytes: int) -> float:
    """Bits per UTF-8 byte of text: ``loss (nats/token) × num_tokens / num_bytes / ln 2``.

    ``num_bytes`` < 1 or ``num_tokens`` < 0 → ValueError.
    """
    if num_bytes < 1:
        raise ValueError(f"num_bytes must be >= 1, got {num_bytes}")
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    return loss_nats * num_tokens / num_bytes / math.log(2)


def perplexity_from_loss(loss_nats: float) -> float:
    """Perplexity exp(loss) of a mean loss in nats/token (inf when it overflows)."""
    try:
        return math.exp(loss_nats)
    except OverflowError:
        return math.inf


@torch.no_grad()
def sequence_perplexity(model: Any, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> float:
    """The model's perplexity (temperature 1) of ``new_ids`` following ``prompt_ids``.

    exp(mean NLL of the new tokens); the context is cropped to the last ``model.max_seq_len``
    tokens (when the model has one), so at most that many − 1 new tokens are scored. Eval mode,
    no gradients, mode restored. Empty ``new_ids`` or fewer than 2 tokens in all → ValueError.
    """
    prompt_ids, new_ids = [int(i) for i in prompt_ids], [int(i) for i in new_ids]
    if not new_ids or len(prompt_ids) + len(new_ids) < 2:
        raise ValueError(
            "sequence_perplexity needs at least one new id and two ids in all, got "
            f"{len(prompt_ids)} prompt ids and {len(new_ids)} new ids"
        )
    ids = prompt_ids + new_ids
    max_len = getattr(model, "max_seq_len", None)
    if max_len:
        ids = ids[-max_len:]
    n_new = min(len(new_ids), len(ids) - 1)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        logits = model(torch.tensor([ids[:-1]], device=device))[0].float()  # (T-1, V)
    finally:
        model.train(was_training)
    targets = torch.tensor(ids[1:], device=device)  # (T-1,)
    return perplexity_from_loss(float(cross_entropy(logits[-n_new:], targets[-n_new:])))
