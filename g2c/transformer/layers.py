"""The pieces of a transformer block: norms, feed-forwards, and the block itself.

- ``LayerNorm`` (Ba et al. 2016): per position, subtract the mean and divide by the standard
  deviation (biased variance) over the D features, then scale by ``gamma`` and shift by ``beta``.
- ``RMSNorm`` (Zhang & Sennrich 2019, used by Llama): divide by the root-mean-square only,
  scale by ``gamma``; no mean, no shift.
- ``FeedForward``: the position-wise MLP of GPT-2, fc1 (D → 4D), GELU, fc2 (4D → D).
- ``SwiGLU`` (Shazeer 2020, "GLU Variants Improve Transformer"; Llama): down(silu(gate(x)) ⊙ up(x)).
- ``Block``: attention and feed-forward, each wrapped in a residual connection with a norm;
  pre-norm x + f(norm(x)) (GPT-2, default) or post-norm norm(x + f(x)) (the 2017 Transformer).

All map (B, T, D) → (B, T, D). Each layer reads like the formula above it (the reference,
``fused=False``) and has ONE fast branch beside it, ``fused=True`` (the default): torch's fused
kernel (F.layer_norm, F.rms_norm, F.gelu, F.silu, addmm), tested equal to the reference.
The layers are built from one :class:`TransformerConfig` through the name → class tables
``NORMS`` and ``FEED_FORWARDS`` (:func:`make_norm`, :func:`make_feed_forward`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from g2c.attention import LayerKVCache, MultiHeadAttention, linear
from g2c.embeddings import RotaryEmbedding
from g2c.nn import GELU, Dropout, Linear, Module
from g2c.transformer.config import MLP_NAMES, NORM_NAMES, TransformerConfig


class _FeatureNorm(Module):
    """What LayerNorm and RMSNorm share: the checks, ``gamma`` ones (D,), the last-dim check.

    Subclasses write ``forward`` (the normalisation itself) and call :meth:`_check_x` first.
    embedding_dim ≤ 0 or eps ≤ 0 → ValueError.
    """

    def __init__(self, embedding_dim: int, eps: float, fused: bool) -> None:
        if embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.embedding_dim = embedding_dim
        self.eps = eps
        self.fused = fused
        self.gamma = torch.ones(embedding_dim, requires_grad=True)

    def _check_x(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__}: x must have last dimension {self.embedding_dim} "
                f"(embedding_dim), got shape {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        """Short description shown by ``repr``."""
        return f"{self.embedding_dim}, eps={self.eps}, fused={self.fused}"


class LayerNorm(_FeatureNorm):
    """Layer normalisation over the last dimension: γ · (x − mean) / √(var + eps) + β.

    ``gamma`` ones and ``beta`` zeros, shape (D,); biased variance (divide by D), so a constant
    row maps to β (no NaN). ``bias=False`` drops β. ``fused=True`` (default) uses ``F.layer_norm``
    (same result within 1e-6). Input (..., D) → (..., D); wrong last dim → ValueError.
    """

    def __init__(
        self, embedding_dim: int, eps: float = 1e-5, *, bias: bool = True, fused: bool = True
    ) -> None:
        super().__init__(embedding_dim, eps, fused)
        self.beta = torch.zeros(embedding_dim, requires_grad=True) if bias else None

    @classmethod
    def from_config(cls, c: TransformerConfig) -> LayerNorm:
        """LayerNorm(D, norm_eps, bias, fused) of config ``c``."""
        return cls(c.embedding_dim, c.norm_eps, bias=c.bias, fused=c.fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) → (..., D)."""
        self._check_x(x)
        if self.fused:  # fast path
            return F.layer_norm(x, (self.embedding_dim,), self.gamma, self.beta, self.eps)
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance, (..., 1)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        y = self.gamma * x_hat
        return y + self.beta if self.beta is not None else y


class RMSNorm(_FeatureNorm):
    """Root-mean-square normalisation: γ · x / √(mean(x²) + eps) (Zhang & Sennrich 2019).

    ``gamma`` ones, shape (D,). Computed in float32 like Hugging Face Llama. ``fused=True`` (default)
    uses ``F.rms_norm``. Input (..., D) → (..., D); wrong last dim → ValueError.
    """

    def __init__(self, embedding_dim: int, eps: float = 1e-5, *, fused: bool = True) -> None:
        super().__init__(embedding_dim, eps, fused)

    @classmethod
    def from_config(cls, c: TransformerConfig) -> RMSNorm:
        """RMSNorm(D, norm_eps, fused) of config ``c``."""
        return cls(c.embedding_dim, c.norm_eps, fused=c.fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) → (..., D)."""
        self._check_x(x)
        if self.fused:  # fast path
            return F.rms_norm(x, (self.embedding_dim,), self.gamma, self.eps)
        x32 = x.float()
        rms_inv = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return self.gamma * (x32 * rms_inv).to(x.dtype)


class FeedForward(Module):
    """GPT-2 position-wise MLP: fc2(GELU(fc1(x))), fc1 D → hidden_dim (default 4·D), fc2 back.

    ``approximate="tanh"`` selects GPT-2's tanh GELU ("gelu_new"); ``fused=True`` (default) uses
    ``F.gelu`` and addmm (``F.linear``) for both layers; ``dropout`` applies after fc2. (B, T, D) → (B, T, D).
    """

    def __init__(
        self,
        embedding_dim: int,
        hidden_dim: int | None = None,
        *,
        approximate: str = "none",
        bias: bool = True,
        dropout: float = 0.0,
        fused: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        hidden_dim = 4 * embedding_dim if hidden_dim is None else hidden_dim
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.fused = fused
        self.fc1 = Linear(embedding_dim, hidden_dim, bias=bias, generator=generator)
        self.act = GELU(approximate)
        self.fc2 = Linear(hidden_dim, embedding_dim, bias=bias, generator=generator)
        self.dropout = Dropout(dropout)

    @classmethod
    def from_config(
        cls, c: TransformerConfig, generator: torch.Generator | None = None
    ) -> FeedForward:
        """The GELU MLP of config ``c`` (hidden_dim, gelu_approximate, bias, dropout, fused)."""
        return cls(c.embedding_dim, c.hidden_dim, approximate=c.gelu_approximate, bias=c.bias,
                   dropout=c.dropout, fused=c.fused, generator=generator)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D)."""
        if self.fused:  # fast path: addmm and torch's GELU kernel
            h = F.gelu(linear(self.fc1, x, fused=True), approximate=self.act.approximate)
            return self.dropout(linear(self.fc2, h, fused=True))
        h = self.act(self.fc1(x))  # (B, T, D) -> (B, T, hidden)
        return self.dropout(self.fc2(h))  # (B, T, hidden) -> (B, T, D)


def swiglu_hidden_dim(embedding_dim: int) -> int:
    """Default SwiGLU width: 8·D/3 (same parameters as a 4·D GELU MLP), rounded up to 8."""
    return 8 * math.ceil(8 * embedding_dim / 3 / 8)


class SwiGLU(Module):
    """Gated feed-forward of Llama: down(silu(gate(x)) ⊙ up(x)), silu(z) = z·σ(z).

    ``gate_proj``, ``up_proj``: D → hidden_dim (default :func:`swiglu_hidden_dim`);
    ``down_proj``: hidden → D. ``fused=True`` (default) uses ``F.silu`` and addmm. (B, T, D) → (B, T, D).
    """

    def __init__(
        self,
        embedding_dim: int,
        hidden_dim: int | None = None,
        *,
        bias: bool = False,
        dropout: float = 0.0,
        fused: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        hidden_dim = swiglu_hidden_dim(embedding_dim) if hidden_dim is None else hidden_dim
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.fused = fused
        self.gate_proj = Linear(embedding_dim, hidden_dim, bias=bias, generator=generator)
        self.up_proj = Linear(embedding_dim, hidden_dim, bias=bias, generator=generator)
        self.down_proj = Linear(hidden_dim, embedding_dim, bias=bias, generator=generator)
        self.dropout = Dropout(dropout)

    @classmethod
    def from_config(cls, c: TransformerConfig, generator: torch.Generator | None = None) -> SwiGLU:
        """The SwiGLU MLP of config ``c`` (hidden_dim, bias, dropout, fused)."""
        return cls(c.embedding_dim, c.hidden_dim, bias=c.bias, dropout=c.dropout, fused=c.fused,
                   generator=generator)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D)."""
        if self.fused:  # fast path: addmm and torch's SiLU kernel
            gate = F.silu(linear(self.gate_proj, x, fused=True))
            return self.dropout(
                linear(self.down_proj, gate * linear(self.up_proj, x, fused=True), fused=True)
            )
        gate = self.gate_proj(x)  # (B, T, hidden)
        act = gate * torch.sigmoid(gate)  # silu(z) = z·σ(z)
        return self.dropout(self.down_proj(act * self.up_proj(x)))  # (B, T, hidden) -> (B, T, D)


NORMS: dict[str, type[Module]] = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}
FEED_FORWARDS: dict[str, type[Module]] = {"gelu": FeedForward, "swiglu": SwiGLU}
assert set(NORMS) == set(NORM_NAMES) and set(FEED_FORWARDS) == set(MLP_NAMES)


def make_norm(config: TransformerConfig) -> Module:
    """The norm layer named by ``config.norm`` (table :data:`NORMS`)."""
    return NORMS[config.norm].from_config(config)


def make_feed_forward(
    config: TransformerConfig, generator: torch.Generator | None = None
) -> Module:
    """The feed-forward named by ``config.mlp`` (table :data:`FEED_FORWARDS`)."""
    return FEED_FORWARDS[config.mlp].from_config(config, generator)


class Block(Module):
    """Transformer block: ``ln1``, ``attn`` (MultiHeadAttention), ``ln2``, ``ffn``.

    Pre-norm (default, GPT-2): x ← x + attn(ln1(x)); x ← x + ffn(ln2(x)).
    Post-norm (``norm_position="post"``, Vaswani et al. 2017): x ← ln1(x + attn(x));
    x ← ln2(x + ffn(x)). (B, T, D) → (B, T, D).

    ``config``: the model's :class:`TransformerConfig` (how TransformerLM builds its blocks);
    without it, the keyword ``switches`` are any TransformerConfig fields (norm, mlp,
    norm_position, num_kv_heads, dropout, bias, attention_impl, norm_eps, gelu_approximate,
    fused), checked by the config (bad value → ValueError naming the field). ``rope``: a shared
    RotaryEmbedding over head_dim, or None. Attributes ``embedding_dim``, ``num_heads``,
    ``hidden_dim`` (resolved: 4·D for GELU, :func:`swiglu_hidden_dim` for SwiGLU), ``causal``.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        hidden_dim: int | None = None,
        causal: bool = True,
        *,
        config: TransformerConfig | None = None,
        rope: RotaryEmbedding | None = None,
        generator: torch.Generator | None = None,
        **switches: Any,
    ) -> None:
        if config is None:
            config = TransformerConfig.for_block(embedding_dim, num_heads, hidden_dim, **switches)
        elif switches or (embedding_dim, num_heads, hidden_dim) != (
            config.embedding_dim, config.num_heads, config.hidden_dim
        ):  # fmt: skip
            raise ValueError(
                "Block: pass either config= or the sizes and switches, not both disagreeing"
            )
        c = config
        self.embedding_dim = c.embedding_dim
        self.num_heads = c.num_heads
        self.causal = causal
        self.norm_position = c.norm_position
        self.ln1 = make_norm(c)
        self.attn = MultiHeadAttention(
            c.embedding_dim, c.num_heads, causal, num_kv_heads=c.num_kv_heads, rope=rope,
            dropout=c.dropout, bias=c.bias, attention_impl=c.attention_impl, fused=c.fused,
            generator=generator,
        )  # fmt: skip
        self.ln2 = make_norm(c)
        self.ffn = make_feed_forward(c, generator)
        self.hidden_dim = self.ffn.hidden_dim

    def forward(self, x: torch.Tensor, *, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) → (B, T, D). ``segment_ids`` (B, T): packed sequences, attention stays
        inside each run of equal ids (see ``MultiHeadAttention.forward``)."""
        packed = (
            {} if segment_ids is None else {"segment_ids": segment_ids}
        )  # plain call: as before
        if self.norm_position == "pre":
            x = x + self.attn(self.ln1(x), **packed)
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + self.attn(x, **packed))
        return self.ln2(x + self.ffn(x))

    def forward_prefill(
        self,
        x: torch.Tensor,
        cache: LayerKVCache,
        *,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LayerKVCache]:
        """New positions x (B, T_new, D) after those in ``cache`` → (out (B, T_new, D), cache).

        The same two residual steps as :meth:`forward`, with the attention continuing the cache;
        ``positions`` / ``mask`` (padded batches) as in ``MultiHeadAttention.forward_prefill``.
        """
        kw = {} if positions is None and mask is None else {"positions": positions, "mask": mask}
        if self.norm_position == "pre":
            x = x + self.attn.forward_prefill(self.ln1(x), cache, **kw)[0]
            return x + self.ffn(self.ln2(x)), cache
        x = self.ln1(x + self.attn.forward_prefill(x, cache, **kw)[0])
        return self.ln2(x + self.ffn(x)), cache

    def extra_repr(self) -> str:
        """Short description shown by ``repr``."""
        return (f"{self.embedding_dim}, num_heads={self.num_heads}, hidden_dim={self.hidden_dim}, "
                f"causal={self.causal}, norm_position={self.norm_position!r}")  # fmt: skip
