"""Language-model data: a token stream split into train/val, and random (x, y) windows.

A corpus is one long 1-D stream of token ids (N,). Pretraining reads random windows of
``context_length + 1`` tokens from it (nanoGPT's ``get_batch``, Karpathy 2022):

    x = ids[s : s + T]          (B, T)   inputs
    y = ids[s + 1 : s + T + 1]  (B, T)   next-token targets (x shifted left by one)

so every window trains T next-token predictions at once, one per prefix length.
"""

from __future__ import annotations

import torch


def _check_ids(ids: torch.Tensor, name: str = "ids") -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{name} must be an integer tensor of token ids, got {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(f"{name} must be a 1-D token stream (N,), got shape {tuple(ids.shape)}")
    return ids


def split_token_stream(
    ids: torch.Tensor, train_fraction: float = 0.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-D token stream (N,) into contiguous ``(train, val)`` pieces.

    The first ``int(N * train_fraction)`` tokens are the training split, the rest validation
    (contiguous, like nanoGPT's 90/10 split, so no window straddles both). Views, not copies.

    Raises ValueError: ids not 1-D ("1-D"), ``train_fraction`` outside (0, 1) ("between 0 and
    1"), or a side that would be empty ("empty"). TypeError for non-integer ids.
    """
    if not isinstance(train_fraction, (int, float)) or not 0.0 < train_fraction < 1.0:
        raise ValueError(
            f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction}"
        )
    ids = _check_ids(ids)
    n_train = int(ids.numel() * train_fraction)
    if n_train == 0 or n_train == ids.numel():
        raise ValueError(
            f"split of {ids.numel()} tokens at train_fraction={train_fraction} leaves an empty "
            "side; pass more tokens or a fraction closer to 0.5"
        )
    return ids[:n_train], ids[n_train:]


def get_lm_batch(
    ids: torch.Tensor,
    batch_size: int,
    context_length: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` random windows: ``x`` (B, T) and ``y`` (B, T) long, y = x shifted by 1.

    Start offsets are uniform in [0, N − T − 1] drawn with ``torch.randint`` from
    ``generator`` (a CPU ``torch.Generator``; the global RNG when None), so the same generator
    state gives the same batch. The batch lives on ``ids``' device.

    Raises ValueError when ``ids`` has fewer than ``context_length + 1`` tokens ("too short"),
    or batch_size / context_length < 1; TypeError / ValueError for non-1-D or non-integer ids.
    """
    ids = _check_ids(ids)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    n = ids.numel()
    if n < context_length + 1:
        raise ValueError(
            f"ids is too short: {n} tokens, need at least context_length + 1 = "
            f"{context_length + 1}; use a smaller context_length or more data"
        )
    starts = torch.randint(0, n - context_length, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(context_length + 1)  # (T+1,)
    windows = ids[(starts[:, None] + offsets[None, :]).to(ids.device)]  # (B, T+1)
    return windows[:, :-1].long(), windows[:, 1:].long()  # (B, T), (B, T)
