"""Recurrent language models: a vanilla RNN cell and an LSTM cell written with tensor ops.

Vanilla RNN (Elman 1990, "Finding Structure in Time"), as ``torch.nn.RNNCell`` (tanh):

    h' = tanh(x W_ih + b_ih + h W_hh + b_hh)                 x (B, I), h (B, H) → h' (B, H)

LSTM (Hochreiter & Schmidhuber 1997; forget gate of Gers et al. 2000), as
``torch.nn.LSTMCell``, gates in torch's order i, f, g, o:

    [i, f, g, o] = x W_ih + b_ih + h W_hh + b_hh             (B, 4H) split into four (B, H)
    c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g);   h' = σ(o) ⊙ tanh(c')

Our weights are stored (in, out) like ``g2c.nn.Linear``, so ``W_ih`` is torch's
``weight_ih.T``. Initialisation follows torch: every weight and bias ~ U(−1/√H, 1/√H).

The language model (``RNNLanguageModel``) reads a window of ``context_length`` tokens from a zero
state and predicts the next token from the final hidden state (the same (B, ctx) → (B, V)
interface as the MLP, so every model in the comparison is scored on the same targets).
Karpathy's char-rnn instead trains on every position of long sequences; the window form costs
more compute per target but keeps the comparison like-for-like.

Fast path: the input projection ``x W_ih + b_ih`` does not depend on the recurrence, so
``forward`` computes it for all time steps in one (B·T, I) @ (I, kH) matmul and loops only over
the recurrent half (``fused_input=True``, the default). ``fused_input=False`` is the reference
loop that calls the cell at every step; ``tests/test_lm.py`` checks they agree.
"""

from __future__ import annotations

import math

import torch

from g2c.embeddings import TokenEmbedding
from g2c.lm.mlp import _check_positive, _check_window
from g2c.nn import Linear, Module


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator | None):
    """U(−bound, bound) tensor with requires_grad."""
    w = (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound
    return w.requires_grad_()


def _check_input(x: torch.Tensor, h: torch.Tensor | None, input_size: int, hidden_size: int):
    if x.dim() != 2 or x.shape[1] != input_size:
        raise ValueError(f"x must be (B, {input_size}), got shape {tuple(x.shape)}")
    if h is not None and tuple(h.shape) != (x.shape[0], hidden_size):
        raise ValueError(
            f"hidden state must be (B, {hidden_size}) = ({x.shape[0]}, {hidden_size}), "
            f"got shape {tuple(h.shape)}"
        )


class _RecurrentCell(Module):
    """What both cells share: sizes, parameters and torch's U(−1/√H, 1/√H) init.

    ``num_gates`` g (1 for the RNN, 4 for the LSTM) sets the parameter shapes: ``W_ih`` (I, gH),
    ``W_hh`` (H, gH), ``b_ih`` (gH,), ``b_hh`` (gH,). Sizes ≤ 0 → ValueError.
    """

    num_gates = 1

    def __init__(
        self, input_size: int, hidden_size: int, *, generator: torch.Generator | None = None
    ) -> None:
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(
                f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        k = 1.0 / math.sqrt(hidden_size)
        gH = self.num_gates * hidden_size
        self.W_ih = _uniform((input_size, gH), k, generator)
        self.W_hh = _uniform((hidden_size, gH), k, generator)
        self.b_ih = _uniform((gH,), k, generator)
        self.b_hh = _uniform((gH,), k, generator)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return f"{self.input_size}, {self.hidden_size}"


class RNNCell(_RecurrentCell):
    """Elman RNN cell h' = tanh(x W_ih + b_ih + h W_hh + b_hh), like ``torch.nn.RNNCell``.

    Args:
        input_size: I; hidden_size: H (> 0, else ValueError).
        generator: optional ``torch.Generator`` for the U(−1/√H, 1/√H) init.

    Parameters: ``W_ih`` (I, H), ``W_hh`` (H, H), ``b_ih`` (H,), ``b_hh`` (H,).
    """

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, I), h (B, H) or None (zeros) → h' (B, H). Wrong shapes → ValueError."""
        _check_input(x, h, self.input_size, self.hidden_size)
        return self.recur(x @ self.W_ih + self.b_ih, h)

    def recur(self, x_proj: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """The recurrent half, given the input projection x_proj = x W_ih + b_ih (B, H)."""
        if h is None:
            return torch.tanh(x_proj + self.b_hh)
        return torch.tanh(x_proj + h @ self.W_hh + self.b_hh)  # (B, H)


class LSTMCell(_RecurrentCell):
    """LSTM cell like ``torch.nn.LSTMCell`` (gates i, f, g, o in torch's order).

    Args:
        input_size: I; hidden_size: H (> 0, else ValueError).
        generator: optional ``torch.Generator`` for the U(−1/√H, 1/√H) init.

    Parameters: ``W_ih`` (I, 4H), ``W_hh`` (H, 4H), ``b_ih`` (4H,), ``b_hh`` (4H,).
    """

    num_gates = 4  # i, f, g, o

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, I), state (h, c) each (B, H) or None (zeros) → (h', c') each (B, H).

        Wrong shapes → ValueError.
        """
        _check_input(x, None if state is None else state[0], self.input_size, self.hidden_size)
        if state is not None and state[1].shape != state[0].shape:
            raise ValueError(
                f"cell state c must match h {tuple(state[0].shape)}, got {tuple(state[1].shape)}"
            )
        return self.recur(x @ self.W_ih + self.b_ih, state)

    def recur(
        self, x_proj: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrent half, given x_proj = x W_ih + b_ih (B, 4H) → (h', c')."""
        gates = x_proj + self.b_hh if state is None else x_proj + state[0] @ self.W_hh + self.b_hh
        i, f, g, o = gates.chunk(4, dim=-1)  # (B, 4H) -> 4 × (B, H)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = i * g if state is None else f * state[1] + i * g  # (B, H)
        h = o * torch.tanh(c)  # (B, H)
        return h, c


CELLS = {"rnn": RNNCell, "lstm": LSTMCell}


class RNNLanguageModel(Module):
    """Character RNN/LSTM LM: embed a window, run the cell over it, predict from the last h.

    Args:
        vocab_size: V; context_length: ctx; embedding_dim: D; hidden_dim: H (> 0).
        cell: ``"rnn"`` (``RNNCell``) or ``"lstm"`` (``LSTMCell``); another name → ValueError.
        fused_input: compute the input projection of all steps in one matmul (fast path,
            default) instead of calling the cell step by step (reference path).
        forget_bias: added to the LSTM's forget-gate bias at init (Jozefowicz, Zaremba &
            Sutskever 2015, "An Empirical Exploration of Recurrent Network Architectures": 1.0
            helps the cell keep its memory early in training); ignored for ``"rnn"``.
        generator: optional ``torch.Generator`` for the initialisation.

    forward: x (B, ctx) long → logits (B, V) for the token after each window.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        embedding_dim: int,
        hidden_dim: int,
        *,
        cell: str = "rnn",
        fused_input: bool = True,
        forget_bias: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
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
        self.cell_type = cell
        self.fused_input = fused_input
        self.embedding = TokenEmbedding(vocab_size, embedding_dim, generator=generator)
        self.cell = CELLS[cell](embedding_dim, hidden_dim, generator=generator)
        self.head = Linear(hidden_dim, vocab_size, generator=generator)
        with torch.no_grad():
            self.head.W.mul_(0.1)
            if cell == "lstm":  # open the forget gate at the start (remember by default)
                self.cell.b_ih[hidden_dim : 2 * hidden_dim].add_(forget_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ctx) long → (B, V) next-token logits from the final hidden state."""
        _check_window(x, self.context_length)
        return self.head(self._run(x, keep_all=False))  # (B, H) -> (B, V)

    def sequence_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T) long, any T >= 1 → (B, T, V): next-token logits after every prefix.

        Position t sees tokens 0..t only (the recurrence is causal), like a causal
        transformer's output; ``sequence_logits(x)[:, -1]`` equals ``forward(x)`` when T = ctx.
        Used by sequence tasks (``g2c.lm.copy_task``). x not 2-D → ValueError.
        """
        if x.dim() != 2 or x.shape[1] < 1:
            raise ValueError(f"x must be (B, T) token ids with T >= 1, got shape {tuple(x.shape)}")
        return self.head(self._run(x, keep_all=True))  # (B, T, H) -> (B, T, V)

    def _run(self, x: torch.Tensor, keep_all: bool) -> torch.Tensor:
        """Run the cell over x (B, T): the last h (B, H), or every h (B, T, H) with keep_all."""
        e = self.embedding(x)  # (B, T) -> (B, T, D)
        state, hs = None, []
        if self.fused_input:
            x_proj = e @ self.cell.W_ih + self.cell.b_ih  # (B, T, D) -> (B, T, kH), one matmul
            steps = x_proj.unbind(1)  # unbind: one gradient stack, not T zero-filled copies
            step = self.cell.recur  # (B, kH) -> (B, H)
        else:
            steps = e.unbind(1)
            step = self.cell  # (B, D) -> (B, H)
        for x_t in steps:
            state = step(x_t, state)
            if keep_all:
                hs.append(state[0] if isinstance(state, tuple) else state)
        if keep_all:
            return torch.stack(hs, dim=1)  # T × (B, H) -> (B, T, H)
        return state[0] if isinstance(state, tuple) else state  # (B, H)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return (
            f"cell={self.cell_type!r}, vocab_size={self.vocab_size}, "
            f"context_length={self.context_length}, embedding_dim={self.embedding_dim}, "
            f"hidden_dim={self.hidden_dim}"
        )


class LSTMLanguageModel(RNNLanguageModel):
    """``RNNLanguageModel`` with ``cell="lstm"`` (same arguments, minus ``cell``)."""

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        embedding_dim: int,
        hidden_dim: int,
        *,
        fused_input: bool = True,
        forget_bias: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            vocab_size,
            context_length,
            embedding_dim,
            hidden_dim,
            cell="lstm",
            fused_input=fused_input,
            forget_bias=forget_bias,
            generator=generator,
        )
