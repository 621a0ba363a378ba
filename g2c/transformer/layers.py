"""The pieces of a transformer block: norms, feed-forwards, and the block itself.

- ``LayerNorm`` (Ba et al. 2016): per position, subtract the mean and divide by the standard
  deviation (biased variance) over the D features, then scale by ``gamma`` and shift by ``beta``.
- ``RMSNorm`` (Zhang & Sennrich 2019, used by Llama): divide by the root-mean-square only,
  scale by ``gamma``; no mean, no shift.
- ``FeedForward``: the position-wise MLP of GPT-2, fc1 (D → 4D), GELU, fc2 (4D → D).
- ``SwiGLU`` (Shazeer 2020, "GLU Variants Improve Transformer"; Llama): down(silu(gate(x)) ⊙ up(x)).
- ``Block``: attention and feed-forward, each wrapped in a residual connection with a norm;
  pre-norm x + f(norm(x)) (GPT-2, default) or post-norm norm(x + f(x)) (the 2017 Transformer).

All map (B, T, D) → (B, T, D). Each norm/activation has a from-scratch reference and, with
``fused=True``, a fast path through torch's fused kernel (F.layer_norm, F.rms_norm, F.gelu,
F.silu), tested equal to the reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from g2c.attention import LayerKVCache, MultiHeadAttention, linear
from g2c.embeddings import RotaryEmbedding
from g2c.nn import GELU, Dropout, Linear, Module


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
    row maps to β (no NaN). ``bias=False`` drops β. ``fused=True`` uses ``F.layer_norm``
    (same result within 1e-6). Input (..., D) → (..., D); wrong last dim → ValueError.
    """

    def __init__(
        self, embedding_dim: int, eps: float = 1e-5, *, bias: bool = True, fused: bool = False
    ) -> None:
        super().__init__(embedding_dim, eps, fused)
        self.beta = torch.zeros(embedding_dim, requires_grad=True) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) → (..., D)."""
        self._check_x(x)
        if self.fused:
            return F.layer_norm(x, (self.embedding_dim,), self.gamma, self.beta, self.eps)
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance, (..., 1)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        y = self.gamma * x_hat
        return y + self.beta if self.beta is not None else y


class RMSNorm(_FeatureNorm):
    """Root-mean-square normalisation: γ · x / √(mean(x²) + eps) (Zhang & Sennrich 2019).

    ``gamma`` ones, shape (D,). Computed in float32 like Hugging Face Llama. ``fused=True``
    uses ``F.rms_norm``. Input (..., D) → (..., D); wrong last dim → ValueError.
    """

    def __init__(self, embedding_dim: int, eps: float = 1e-5, *, fused: bool = False) -> None:
        super().__init__(embedding_dim, eps, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) → (..., D)."""
        self._check_x(x)
        if self.fused:
            return F.rms_norm(x, (self.embedding_dim,), self.gamma, self.eps)
        x32 = x.float()
        rms_inv = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return self.gamma * (x32 * rms_inv).to(x.dtype)


class FeedForward(Module):
    """GPT-2 position-wise MLP: fc2(GELU(fc1(x))), fc1 D → hidden_dim (default 4·D), fc2 back.

    ``approximate="tanh"`` selects GPT-2's tanh GELU ("gelu_new"); ``fused=True`` uses
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
        fused: bool = False,
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D)."""
        if not self.fused:
            h = self.act(self.fc1(x))  # (B, T, D) -> (B, T, hidden)
            return self.dropout(self.fc2(h))  # (B, T, hidden) -> (B, T, D)
        h = F.gelu(linear(self.fc1, x, fused=True), approximate=self.act.approximate)
        return self.dropout(linear(self.fc2, h, fused=True))


def swiglu_hidden_dim(embedding_dim: int) -> int:
    """Default SwiGLU width: 8·D/3 (same parameters as a 4·D GELU MLP), rounded up to 8."""
    return 8 * math.ceil(8 * embedding_dim / 3 / 8)


class SwiGLU(Module):
    """Gated feed-forward of Llama: down(silu(gate(x)) ⊙ up(x)), silu(z) = z·σ(z).

    ``gate_proj``, ``up_proj``: D → hidden_dim (default :func:`swiglu_hidden_dim`);
    ``down_proj``: hidden → D. ``fused=True`` uses ``F.silu`` and addmm. (B, T, D) → (B, T, D).
    """

    def __init__(
        self,
        embedding_dim: int,
        hidden_dim: int | None = None,
        *,
        bias: bool = False,
        dropout: float = 0.0,
        fused: bool = False,
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D)."""
        if not self.fused:
            gate = self.gate_proj(x)  # (B, T, hidden)
            act = gate * torch.sigmoid(gate)  # silu
            return self.dropout(
                self.down_proj(act * self.up_proj(x))
            )  # (B, T, hidden) -> (B, T, D)
        act = F.silu(linear(self.gate_proj, x, fused=True)) * linear(self.up_proj, x, fused=True)
        return self.dropout(linear(self.down_proj, act, fused=True))


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}
MLPS = ("gelu", "swiglu")


def make_norm(
    norm: str, embedding_dim: int, eps: float, *, bias: bool = True, fused: bool = False
) -> Module:
    """Name → norm layer ("layernorm" | "rmsnorm"); unknown name → ValueError."""
    if norm == "layernorm":
        return LayerNorm(embedding_dim, eps, bias=bias, fused=fused)
    if norm == "rmsnorm":
        return RMSNorm(embedding_dim, eps, fused=fused)
    raise ValueError(f"norm must be one of {tuple(NORMS)}, got {norm!r}")


class Block(Module):
    """Transformer block: ``ln1``, ``attn`` (MultiHeadAttention), ``ln2``, ``ffn``.

    Pre-norm (default, GPT-2): x ← x + attn(ln1(x)); x ← x + ffn(ln2(x)).
    Post-norm (``norm_position="post"``, Vaswani et al. 2017): x ← ln1(x + attn(x));
    x ← ln2(x + ffn(x)). Keyword-only switches select the norm, the MLP ("gelu" | "swiglu"),
    grouped-query heads, RoPE, dropout, biases, the attention implementation and the fused
    fast path. (B, T, D) → (B, T, D). Unknown names → ValueError.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        hidden_dim: int | None = None,
        causal: bool = True,
        *,
        norm_position: str = "pre",
        norm: str = "layernorm",
        mlp: str = "gelu",
        num_kv_heads: int | None = None,
        rope: RotaryEmbedding | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        attention_impl: str = "explicit",
        norm_eps: float = 1e-5,
        gelu_approximate: str = "none",
        fused: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position must be 'pre' or 'post', got {norm_position!r}")
        if mlp not in MLPS:
            raise ValueError(f"mlp must be one of {MLPS}, got {mlp!r}")
        self.norm_position = norm_position
        self.ln1 = make_norm(norm, embedding_dim, norm_eps, bias=bias, fused=fused)
        self.attn = MultiHeadAttention(
            embedding_dim,
            num_heads,
            causal,
            num_kv_heads=num_kv_heads,
            rope=rope,
            dropout=dropout,
            bias=bias,
            attention_impl=attention_impl,
            fused=fused,
            generator=generator,
        )
        self.ln2 = make_norm(norm, embedding_dim, norm_eps, bias=bias, fused=fused)
        if mlp == "gelu":
            self.ffn = FeedForward(
                embedding_dim,
                hidden_dim,
                approximate=gelu_approximate,
                bias=bias,
                dropout=dropout,
                fused=fused,
                generator=generator,
            )
        else:
            self.ffn = SwiGLU(
                embedding_dim,
                hidden_dim,
                bias=bias,
                dropout=dropout,
                fused=fused,
                generator=generator,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D)."""
        if self.norm_position == "pre":
            x = x + self.attn(self.ln1(x))
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.ffn(x))

    def forward_cached(self, x: torch.Tensor, cache: LayerKVCache) -> torch.Tensor:
        """New positions x (B, T_new, D) continuing ``cache`` (a LayerKVCache) → (B, T_new, D)."""
        if self.norm_position == "pre":
            x = x + self.attn.forward_prefill(self.ln1(x), cache)[0]
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + self.attn.forward_prefill(x, cache)[0])
        return self.ln2(x + self.ffn(x))
