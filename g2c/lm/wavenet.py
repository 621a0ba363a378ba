"""WaveNet-style hierarchical character model (makemore part 5, after van den Oord et al. 2016,
"WaveNet: A Generative Model for Raw Audio").

Instead of squashing the whole window into one hidden layer (the MLP), fuse neighbouring
positions two at a time, level by level, like WaveNet's dilated causal convolutions seen as a
tree. With a context of 8 = 2³ there are three levels:

    x (B, 8) → E[x] (B, 8, D)
      → FlattenConsecutive(2) (B, 4, 2D) → Linear (B, 4, H) → BatchNorm1d → tanh
      → FlattenConsecutive(2) (B, 2, 2H) → Linear (B, 2, H) → BatchNorm1d → tanh
      → FlattenConsecutive(2) (B, 2H)    → Linear (B, H)    → BatchNorm1d → tanh
      → Linear (B, V)

Linear layers before a BatchNorm have no bias (the norm's β replaces it). BatchNorm uses batch
statistics in training and running statistics in eval mode, so ``perplexity`` and ``sample``
(which switch the model to eval) see a deterministic function of the window.
"""

from __future__ import annotations

import torch

from g2c.embeddings import TokenEmbedding
from g2c.lm.mlp import _check_positive, _check_window
from g2c.nn import BatchNorm1d, Linear, Module, Tanh


class FlattenConsecutive(Module):
    """Concatenate every ``n`` consecutive time steps: (B, T, C) → (B, T/n, n·C).

    When T/n == 1 the time axis is dropped: (B, n·C). T not divisible by n, or an input that
    is not 3-D → ValueError; n ≤ 0 → ValueError.
    """

    def __init__(self, n: int) -> None:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → (B, T/n, n·C), or (B, n·C) when T == n."""
        if x.dim() != 3 or x.shape[1] % self.n:
            raise ValueError(
                f"FlattenConsecutive({self.n}) needs (B, T, C) with T divisible by {self.n}, "
                f"got shape {tuple(x.shape)}"
            )
        B, T, C = x.shape
        x = x.reshape(B, T // self.n, C * self.n)  # (B, T, C) -> (B, T/n, n*C)
        return x[:, 0] if x.shape[1] == 1 else x

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return str(self.n)


class WaveNetLM(Module):
    """Hierarchical char model: log2(ctx) levels of FlattenConsecutive(2) → Linear → BN → tanh.

    Args:
        vocab_size: V; context_length: ctx, a power of two ≥ 2 (else ValueError);
        embedding_dim: D; hidden_dim: H (> 0).
        generator: optional ``torch.Generator`` for the initialisation.

    forward: x (B, ctx) long → logits (B, V). Call ``eval()`` before scoring or sampling
    (``perplexity``/``sample`` do it for you) so BatchNorm uses its running statistics.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        embedding_dim: int,
        hidden_dim: int,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_positive(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_dim=hidden_dim)
        if context_length < 2 or context_length & (context_length - 1):
            raise ValueError(
                f"context_length must be a power of two >= 2 (e.g. 8 or 16), got {context_length}"
            )
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.embedding = TokenEmbedding(vocab_size, embedding_dim, generator=generator)
        layers: list[Module] = []
        width = embedding_dim
        for _ in range(context_length.bit_length() - 1):  # log2(ctx) levels
            layers += [
                FlattenConsecutive(2),
                Linear(2 * width, hidden_dim, bias=False, generator=generator),
                BatchNorm1d(hidden_dim),
                Tanh(),
            ]
            width = hidden_dim
        self.layers = layers
        self.head = Linear(hidden_dim, vocab_size, generator=generator)
        with torch.no_grad():
            self.head.W.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ctx) long → (B, V) next-token logits."""
        _check_window(x, self.context_length)
        h = self.embedding(x)  # (B, ctx) -> (B, ctx, D)
        for layer in self.layers:  # each level halves T and maps the width to H
            h = layer(h)
        return self.head(h)  # (B, H) -> (B, V)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return (
            f"vocab_size={self.vocab_size}, context_length={self.context_length}, "
            f"embedding_dim={self.embedding_dim}, hidden_dim={self.hidden_dim}"
        )
