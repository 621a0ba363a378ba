"""Token and position embeddings.

- ``TokenEmbedding``: a (V, D) table; ids (T,) or (B, T) → vectors (T, D) or (B, T, D). A row
  lookup is the same as one-hot(ids) @ weight, without building the one-hot.
- ``LearnedPositionalEmbedding``: a trained (max_seq_len, D) table (GPT-2).
- ``SinusoidalPositionalEmbedding``: fixed PE[pos, 2i] = sin(pos / base^(2i/D)),
  PE[pos, 2i+1] = cos(pos / base^(2i/D)) ("Attention Is All You Need", Vaswani et al. 2017).
- ``RotaryEmbedding``: RoPE (Su et al. 2021, RoFormer) rotates pairs of q/k features by an
  angle proportional to the position, so q_m·k_n depends only on m − n. The pairing is the
  "rotate-half" layout of GPT-NeoX / Llama / Hugging Face (feature i pairs with i + D/2), which
  is what real checkpoints such as SmolLM2 expect.
"""

from __future__ import annotations

import torch

from g2c.nn import Module


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str = "ids") -> torch.Tensor:
    """Validate token ids of any shape: integer dtype, values in [0, vocab_size); returns long.

    ``ids`` may be a tensor or anything ``torch.as_tensor`` takes (a list of ints). Float, bool
    or complex dtype → TypeError; a value outside [0, vocab_size) → ValueError naming ``name``
    and the range found. Shared by ``TokenEmbedding`` and the bigram models of ``g2c.lm``.
    """
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(ids)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
        raise TypeError(f"{name} must be an integer tensor of token ids, got {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} must be token ids in [0, {vocab_size}), got range "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    return ids.long()


class TokenEmbedding(Module):
    """Lookup table ``weight`` (vocab_size, embedding_dim), N(0, 1) init, ``requires_grad``.

    ids: integer tensor (T,) or (B, T) → float (T, D) or (B, T, D). Non-integer ids →
    TypeError; ids outside [0, vocab_size) or other ranks → ValueError.
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int, *, generator: torch.Generator | None = None
    ) -> None:
        if vocab_size <= 0 or embedding_dim <= 0:
            raise ValueError(
                f"vocab_size and embedding_dim must be positive, got {vocab_size}, {embedding_dim}"
            )
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.weight = torch.randn(vocab_size, embedding_dim, generator=generator).requires_grad_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(T,) or (B, T) long → (T, D) or (B, T, D)."""
        ids = check_token_ids(ids, self.vocab_size)
        if ids.dim() not in (1, 2):
            raise ValueError(f"ids must be 1-D (T,) or 2-D (B, T), got shape {tuple(ids.shape)}")
        return self.weight[ids]  # (..., T) -> (..., T, D)


def _check_len(seq_len: int, offset: int, max_seq_len: int) -> None:
    if seq_len < 0 or offset < 0:
        raise ValueError(f"seq_len and offset must be >= 0, got {seq_len}, {offset}")
    if offset + seq_len > max_seq_len:
        raise ValueError(
            f"positions up to {offset + seq_len} requested but max_seq_len is {max_seq_len}; "
            "build the embedding with a larger max_seq_len or crop the input"
        )


class LearnedPositionalEmbedding(Module):
    """Trained position table ``weight`` (max_seq_len, embedding_dim), N(0, 1) init.

    ``forward(seq_len=T, offset=0)`` → rows offset..offset+T−1, shape (T, D); past
    max_seq_len → ValueError.
    """

    def __init__(
        self, max_seq_len: int, embedding_dim: int, *, generator: torch.Generator | None = None
    ) -> None:
        if max_seq_len <= 0 or embedding_dim <= 0:
            raise ValueError(
                f"max_seq_len and embedding_dim must be positive, got {max_seq_len}, {embedding_dim}"
            )
        self.max_seq_len = max_seq_len
        self.embedding_dim = embedding_dim
        self.weight = torch.randn(max_seq_len, embedding_dim, generator=generator).requires_grad_()

    def forward(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        """(T, D) position vectors for positions offset … offset+T−1."""
        _check_len(seq_len, offset, self.max_seq_len)
        return self.weight[offset : offset + seq_len]


def sinusoidal_table(max_seq_len: int, embedding_dim: int, base: float = 10000.0) -> torch.Tensor:
    """The (max_seq_len, D) sinusoid table: sin on even dims, cos on odd dims (float32)."""
    if embedding_dim % 2:
        raise ValueError(
            f"embedding_dim must be even for sinusoidal positions, got {embedding_dim}"
        )
    pos = torch.arange(max_seq_len, dtype=torch.float64)[:, None]  # (T, 1)
    i2 = torch.arange(0, embedding_dim, 2, dtype=torch.float64)  # (D/2,)
    angle = pos / base ** (i2 / embedding_dim)  # (T, D/2)
    table = torch.empty(max_seq_len, embedding_dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


class SinusoidalPositionalEmbedding(Module):
    """Fixed sinusoid positions (no parameters): buffer ``weight`` (max_seq_len, D).

    PE[1, 0] = sin 1, PE[1, 1] = cos 1. Odd ``embedding_dim`` → ValueError.
    ``forward(seq_len=T, offset=0)`` → (T, D).
    """

    def __init__(self, max_seq_len: int, embedding_dim: int, base: float = 10000.0) -> None:
        if max_seq_len <= 0:
            raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
        self.max_seq_len = max_seq_len
        self.embedding_dim = embedding_dim
        self.weight = sinusoidal_table(max_seq_len, embedding_dim, base)  # buffer, no grad

    def forward(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        """(T, D) fixed position vectors."""
        _check_len(seq_len, offset, self.max_seq_len)
        return self.weight[offset : offset + seq_len]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) → (−x2, x1) on the two halves of the last dimension."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class RotaryEmbedding(Module):
    """Rotary position embedding (RoPE) on the last dimension of q or k.

    Buffers ``cos``/``sin`` (max_seq_len, embedding_dim): angle θ_{p,i} = p · base^(−2i/D) for
    pair i, repeated over both halves. ``forward(x, offset=0)`` with x (..., T, D) returns the
    rotated x (same shape, same norms); position 0 is the identity; (R_m q)·(R_n k) depends only
    on n − m. ``embedding_dim`` is the per-head dimension. Odd dim → ValueError.
    """

    def __init__(self, max_seq_len: int, embedding_dim: int, base: float = 10000.0) -> None:
        if embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even for RoPE, got {embedding_dim}")
        if max_seq_len <= 0:
            raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
        self.max_seq_len = max_seq_len
        self.embedding_dim = embedding_dim
        self.base = base
        inv_freq = 1.0 / base ** (
            torch.arange(0, embedding_dim, 2, dtype=torch.float64) / embedding_dim
        )
        angle = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)  # (T, D/2)
        angle = torch.cat((angle, angle), dim=-1)  # (T, D): pair i ↔ i + D/2
        self.cos = angle.cos().float()
        self.sin = angle.sin().float()

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate x (..., T, D) for positions offset … offset+T−1; returns (..., T, D)."""
        T, D = x.shape[-2], x.shape[-1]
        if D != self.embedding_dim:
            raise ValueError(f"RoPE built for dim {self.embedding_dim}, got input dim {D}")
        _check_len(T, offset, self.max_seq_len)
        cos = self.cos[offset : offset + T].to(x.dtype)  # (T, D)
        sin = self.sin[offset : offset + T].to(x.dtype)
        return x * cos + rotate_half(x) * sin
