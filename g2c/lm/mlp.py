"""MLP language model (Bengio, Ducharme, Vincent & Jauvin 2003, "A Neural Probabilistic
Language Model", JMLR 3), as in Karpathy's makemore part 2.

The previous ``context_length`` tokens are looked up in a shared embedding table, the vectors
are concatenated, and a one-hidden-layer tanh MLP maps them to next-token logits:

    x (B, ctx) → E[x] (B, ctx, D) → flatten (B, ctx·D) → tanh(· W1 + b1) (B, H) → · W2 + b2 (B, V)

(Bengio's optional direct input→output connections are left out, as in makemore.)
"""

from __future__ import annotations

import torch

from g2c.embeddings import TokenEmbedding
from g2c.nn import Linear, Module, Tanh


def _check_window(x: torch.Tensor, context_length: int) -> None:
    """x must be (B, context_length) integer ids."""
    if x.dim() != 2 or x.shape[1] != context_length:
        raise ValueError(
            f"x must be (B, {context_length}) token ids (B windows of context_length), "
            f"got shape {tuple(x.shape)}"
        )


def _check_positive(**sizes: int) -> None:
    """Every size must be > 0, else ValueError naming it (``vocab_size must be positive``)."""
    for name, value in sizes.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


class MLPLanguageModel(Module):
    """Bengio-style MLP LM over a fixed window of ``context_length`` tokens.

    Args:
        vocab_size: V; context_length: ctx; embedding_dim: D; hidden_dim: H (all > 0, else
            ValueError).
        generator: optional ``torch.Generator`` for the initialisation.

    forward: x (B, ctx) long → logits (B, V) for the token that follows each window. The output
    layer starts scaled by 0.1 so the initial loss is close to log V (makemore part 3).
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
        _check_positive(
            vocab_size=vocab_size,
            context_length=context_length,
            embedding_dim=embedding_dim,
            hidden_dim=hidden_dim,
        )
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.embedding = TokenEmbedding(vocab_size, embedding_dim, generator=generator)
        self.hidden = Linear(context_length * embedding_dim, hidden_dim, generator=generator)
        self.act = Tanh()
        self.head = Linear(hidden_dim, vocab_size, generator=generator)
        with torch.no_grad():
            self.head.W.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ctx) long → (B, V) next-token logits."""
        _check_window(x, self.context_length)
        e = self.embedding(x)  # (B, ctx) -> (B, ctx, D)
        h = self.act(self.hidden(e.flatten(1)))  # (B, ctx*D) -> (B, H)
        return self.head(h)  # (B, H) -> (B, V)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return (
            f"vocab_size={self.vocab_size}, context_length={self.context_length}, "
            f"embedding_dim={self.embedding_dim}, hidden_dim={self.hidden_dim}"
        )
