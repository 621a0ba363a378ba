"""Bigram language models: the next character depends only on the current one.

- ``CountsBigramLM``: count every (current, next) pair in the training ids, add ``smoothing``
  to every cell (Laplace / add-one smoothing), normalise rows: P(next | current) =
  (N[current, next] + s) / Σ_j (N[current, j] + s). This is the maximum-likelihood bigram model
  of Karpathy's makemore part 1 (and of Shannon 1948, "A Mathematical Theory of
  Communication", §3).
- ``NeuralBigramLM``: the same conditional distribution learned by gradient descent:
  embedding (V, D) → Linear (D, V) → logits. With enough steps it matches the counts model.

Shared LM interface (``g2c.lm.train``): ``model.context_length`` and
``model(x (B, ctx) long) → (B, V)`` next-token logits (for the counts model: log-probabilities).
"""

from __future__ import annotations

import torch

from g2c.embeddings import TokenEmbedding
from g2c.embeddings.positional import check_token_ids
from g2c.nn import Linear, Module


class CountsBigramLM(Module):
    """Bigram model by counting: ``counts[i, j]`` = times token j followed token i.

    Args:
        vocab_size: V (> 0).
        smoothing: pseudo-count added to every cell before normalising (≥ 0; 1.0 = add-one).

    Attributes: ``counts`` (V, V) float32 buffer (not a parameter), ``context_length`` = 1.
    Raises ValueError for vocab_size ≤ 0 or smoothing < 0.
    """

    def __init__(self, vocab_size: int, smoothing: float = 1.0) -> None:
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}")
        self.vocab_size = vocab_size
        self.smoothing = float(smoothing)
        self.context_length = 1
        self.counts = torch.zeros(vocab_size, vocab_size)

    def fit(self, ids: torch.Tensor) -> CountsBigramLM:
        """Add the bigram counts of the 1-D id sequence ``ids`` (T,) to ``counts``; returns self.

        Calling ``fit`` again accumulates (counts of several texts add up). Non-integer ids →
        TypeError; ids outside [0, V) or not 1-D → ValueError.
        """
        ids = check_token_ids(ids, self.vocab_size)
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D (T,), got shape {tuple(ids.shape)}")
        if ids.numel() < 2:
            return self
        pair = ids[:-1] * self.vocab_size + ids[1:]  # (T-1,) flat index of (current, next)
        flat = torch.bincount(pair.cpu(), minlength=self.vocab_size**2).to(self.counts)
        self.counts += flat.view(self.vocab_size, self.vocab_size)  # (V*V,) -> (V, V)
        return self

    def log_probs(self) -> torch.Tensor:
        """The full (V, V) table of log P(next = j | current = i); every row normalises.

        A row with no counts and no smoothing is uniform (log 1/V) rather than NaN.
        """
        table = self.counts + self.smoothing  # (V, V)
        totals = table.sum(dim=1, keepdim=True)  # (V, 1)
        empty = totals == 0
        table = torch.where(empty, torch.ones_like(table), table)
        totals = torch.where(empty, torch.full_like(totals, self.vocab_size), totals)
        return torch.log(table) - torch.log(totals)

    def logits(self, ctx: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the next token: ctx (B,) or (B, 1) long → (B, V) float.

        ``exp`` of each row sums to 1. Other shapes → ValueError; bad ids as in :meth:`fit`.
        """
        ctx = check_token_ids(ctx, self.vocab_size, "ctx")
        if ctx.dim() == 2 and ctx.shape[1] == 1:
            ctx = ctx[:, 0]  # (B, 1) -> (B,)
        if ctx.dim() != 1:
            raise ValueError(f"ctx must be (B,) or (B, 1), got shape {tuple(ctx.shape)}")
        return self.log_probs()[ctx]  # (B,) -> (B, V)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shared LM interface: x (B, ctx) → (B, V) log-probabilities given the last token."""
        if x.dim() != 2:
            raise ValueError(f"x must be (B, ctx), got shape {tuple(x.shape)}")
        return self.logits(x[:, -1])  # (B, ctx) -> (B,) -> (B, V)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return f"vocab_size={self.vocab_size}, smoothing={self.smoothing}"


class NeuralBigramLM(Module):
    """Bigram model trained by gradient descent: logits = Linear(embedding(current token)).

    Args:
        vocab_size: V; embedding_dim: D (both > 0, else ValueError).
        generator: optional ``torch.Generator`` for the initialisation.

    ``model(ids)`` and ``model.logits(ids)`` (the same call): ids (B,) or (B, 1) long → logits
    (B, V) for the next token; a wider context (B, ctx) uses its last column, so the model also
    fits the shared LM interface (``context_length`` = 1). Other ranks → ValueError; ids
    outside [0, V) → ValueError; non-integer ids → TypeError.
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int, *, generator: torch.Generator | None = None
    ) -> None:
        # TokenEmbedding raises the ValueError for vocab_size or embedding_dim <= 0.
        self.embedding = TokenEmbedding(vocab_size, embedding_dim, generator=generator)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.context_length = 1
        self.head = Linear(embedding_dim, vocab_size, generator=generator)
        with torch.no_grad():
            self.head.W.mul_(0.1)  # near-uniform start: initial loss ≈ log V

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B,), (B, 1) or (B, ctx) long → (B, V) logits for the token after the last one."""
        if not isinstance(ids, torch.Tensor) or ids.dim() not in (1, 2):
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be (B,) or (B, ctx), got {shape}")
        current = ids if ids.dim() == 1 else ids[:, -1]  # (B, ctx) -> (B,): the last token
        e = self.embedding(current)  # (B,) -> (B, D)
        return self.head(e)  # (B, D) -> (B, V)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """The same call as ``model(ids)``: (B,) / (B, 1) / (B, ctx) ids → (B, V) logits."""
        return self(ids)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return f"vocab_size={self.vocab_size}, embedding_dim={self.embedding_dim}"
