"""TransformerLM: a decoder-only transformer language model (GPT-2 by default, Llama by switches).

Data flow (Radford et al. 2019, GPT-2; nanoGPT's model.py):

    idx (B, T) → token_embed (B, T, D) [+ pos_embed (T, D)] → blocks × L → ln_final
               → logits = x @ token_embedᵀ + head_bias (B, T, V)      (weights tied)

Keyword-only switches turn the course model into a Llama-style one (Touvron et al. 2023):
``positional="rope"``, ``norm="rmsnorm"``, ``mlp="swiglu"``, ``num_kv_heads`` (grouped-query),
``bias=False``. SmolLM2-135M loads into it exactly (see ``gguf_loader``).

Weight init follows GPT-2: every weight N(0, 0.02), residual output projections (attention
``out_proj`` and the MLP's last layer) N(0, 0.02/√(2L)) so the residual stream's variance does
not grow with depth, biases zero, norm gains one.

``forward_cached`` runs new positions against per-layer KV caches (``new_kv_cache()``), so
generating n tokens costs n one-position forwards instead of n full ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from g2c.attention import ATTENTION_IMPLS, LayerKVCache
from g2c.embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    TokenEmbedding,
)
from g2c.nn import Dropout, Module
from g2c.transformer.layers import MLPS, NORMS, Block, make_norm

POSITIONALS = ("learned", "sinusoidal", "rope", "none")
CONFIG_FORMAT = "g2c.transformer"


@dataclass
class TransformerConfig:
    """Every hyper-parameter of a TransformerLM; ``to_dict``/``from_dict`` round-trip via JSON.

    Fields mirror :class:`TransformerLM`'s arguments. ``fused`` selects torch's fused kernels
    for norms, GELU/SiLU, the embedding lookup and the output layer (same numbers as the
    reference within float32 rounding); ``gelu_approximate`` is "none" (erf) or "tanh" (GPT-2).
    """

    vocab_size: int
    embedding_dim: int
    num_layers: int
    num_heads: int
    max_seq_len: int
    hidden_dim: int | None = None
    positional: str = "learned"
    norm: str = "layernorm"
    norm_position: str = "pre"
    mlp: str = "gelu"
    num_kv_heads: int | None = None
    dropout: float = 0.0
    bias: bool = True
    tie_embeddings: bool = True
    attention_impl: str = "explicit"
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    gelu_approximate: str = "none"
    fused: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "num_layers", "num_heads", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"embedding_dim ({self.embedding_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.positional not in POSITIONALS:
            raise ValueError(f"positional must be one of {POSITIONALS}, got {self.positional!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {tuple(NORMS)}, got {self.norm!r}")
        if self.norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position must be 'pre' or 'post', got {self.norm_position!r}")
        if self.mlp not in MLPS:
            raise ValueError(f"mlp must be one of {MLPS}, got {self.mlp!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}"
            )
        if self.hidden_dim is not None and (
            not isinstance(self.hidden_dim, int) or self.hidden_dim <= 0
        ):
            raise ValueError(f"hidden_dim must be a positive int or None, got {self.hidden_dim!r}")
        if self.norm_eps <= 0 or self.rope_base <= 0:
            raise ValueError(
                f"norm_eps and rope_base must be > 0, got {self.norm_eps}, {self.rope_base}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(
                f"gelu_approximate must be 'none' or 'tanh', got {self.gelu_approximate!r}"
            )
        kv = self.num_heads if self.num_kv_heads is None else self.num_kv_heads
        if kv <= 0 or self.num_heads % kv:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a positive multiple of num_kv_heads ({kv})"
            )
        if self.positional in ("sinusoidal", "rope"):
            dim = self.embedding_dim if self.positional == "sinusoidal" else self.head_dim
            if dim % 2:
                raise ValueError(f"positional={self.positional!r} needs an even dim, got {dim}")

    @property
    def head_dim(self) -> int:
        """D / H."""
        return self.embedding_dim // self.num_heads

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransformerConfig:
        """Inverse of :meth:`to_dict`; unknown keys → ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig keys: {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TransformerConfig:
        """Parse :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


class TransformerLM(Module):
    """Decoder-only transformer LM: (B, T) token ids → (B, T, V) next-token logits.

    Attributes: ``token_embed`` (TokenEmbedding (V, D)), ``pos_embed`` (learned / sinusoidal
    table, or None for "rope"/"none"), ``rope`` (shared RotaryEmbedding over head_dim, or None),
    ``blocks`` (list of :class:`Block`), ``ln_final``, ``head_bias`` (V,) when ``bias``,
    ``lm_head`` (V, D) when ``tie_embeddings=False`` (else None), ``config``, ``max_seq_len``,
    ``vocab_size``. T > max_seq_len → ValueError; non-integer ids → TypeError; ids outside
    [0, V) → ValueError (checked on CPU tensors; ``check_ids=False`` skips the check).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        num_layers: int,
        num_heads: int,
        max_seq_len: int,
        hidden_dim: int | None = None,
        *,
        positional: str = "learned",
        norm: str = "layernorm",
        norm_position: str = "pre",
        mlp: str = "gelu",
        num_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        tie_embeddings: bool = True,
        attention_impl: str = "explicit",
        rope_base: float = 10000.0,
        norm_eps: float = 1e-5,
        gelu_approximate: str = "none",
        fused: bool = False,
        check_ids: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        cfg = TransformerConfig(
            vocab_size, embedding_dim, num_layers, num_heads, max_seq_len, hidden_dim,
            positional=positional, norm=norm, norm_position=norm_position, mlp=mlp,
            num_kv_heads=num_kv_heads, dropout=dropout, bias=bias, tie_embeddings=tie_embeddings,
            attention_impl=attention_impl, rope_base=rope_base, norm_eps=norm_eps,
            gelu_approximate=gelu_approximate, fused=fused,
        )  # fmt: skip
        self.config = cfg
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len
        self.check_ids = check_ids
        D = embedding_dim
        self.token_embed = TokenEmbedding(vocab_size, D, generator=generator)
        self.pos_embed: Module | None = None
        if positional == "learned":
            self.pos_embed = LearnedPositionalEmbedding(max_seq_len, D, generator=generator)
        elif positional == "sinusoidal":
            self.pos_embed = SinusoidalPositionalEmbedding(max_seq_len, D)
        self.rope = (
            RotaryEmbedding(max_seq_len, cfg.head_dim, base=rope_base)
            if positional == "rope"
            else None
        )
        self.embed_dropout = Dropout(dropout)
        self.blocks = [
            Block(
                D,
                num_heads,
                hidden_dim,
                True,
                norm_position=norm_position,
                norm=norm,
                mlp=mlp,
                num_kv_heads=num_kv_heads,
                rope=self.rope,
                dropout=dropout,
                bias=bias,
                attention_impl=attention_impl,
                norm_eps=norm_eps,
                gelu_approximate=gelu_approximate,
                fused=fused,
                generator=generator,
            )  # fmt: skip
            for _ in range(num_layers)
        ]
        self.ln_final = make_norm(norm, D, norm_eps, bias=bias, fused=fused)
        self.lm_head = None if tie_embeddings else torch.empty(vocab_size, D, requires_grad=True)
        self.head_bias = torch.zeros(vocab_size, requires_grad=True) if bias else None
        self.init_weights(generator)

    @classmethod
    def from_config(cls, config: TransformerConfig, **kwargs: Any) -> TransformerLM:
        """Build a model from a :class:`TransformerConfig` (extra kwargs: check_ids, generator)."""
        return cls(**config.to_dict(), **kwargs)

    # -- init -----------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """GPT-2 init: weights N(0, 0.02); residual projections N(0, 0.02/√(2L)); biases 0;
        norm gains 1."""
        std = 0.02
        resid_std = std / math.sqrt(2 * self.config.num_layers)

        def normal_(t: torch.Tensor, s: float) -> None:
            t.copy_(torch.randn(t.shape, generator=generator, dtype=t.dtype) * s)

        normal_(self.token_embed.weight, std)
        if isinstance(self.pos_embed, LearnedPositionalEmbedding):
            normal_(self.pos_embed.weight, std)
        if self.lm_head is not None:
            normal_(self.lm_head, std)
        if self.head_bias is not None:
            self.head_bias.zero_()
        for block in self.blocks:
            attn, ffn = block.attn, block.ffn
            residual = {id(attn.out_proj), id(getattr(ffn, "fc2", getattr(ffn, "down_proj", None)))}
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, *_linears(ffn)):
                normal_(lin.W, resid_std if id(lin) in residual else std)
                if lin.b is not None:
                    lin.b.zero_()

    # -- forward ----------------------------------------------------------------------------
    def _check_idx(self, idx: torch.Tensor, offset: int = 0) -> None:
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise TypeError(f"idx must be an integer (long) tensor, got {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"idx must be (B, T), got shape {tuple(idx.shape)}")
        T = idx.shape[1]
        if offset + T > self.max_seq_len:
            raise ValueError(
                f"sequence length {offset + T} (cached {offset} + new {T}) exceeds max_seq_len "
                f"{self.max_seq_len}; crop the input to the last {self.max_seq_len} tokens"
            )
        if self.check_ids and idx.device.type == "cpu" and idx.numel():
            lo, hi = torch.aminmax(idx)
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(
                    f"idx must hold ids in [0, {self.vocab_size}), got range [{int(lo)}, {int(hi)}]"
                )

    def _embed(self, idx: torch.Tensor, offset: int) -> torch.Tensor:
        """(B, T) → (B, T, D): token vectors plus absolute positions (when learned/sinusoidal)."""
        W = self.token_embed.weight
        x = F.embedding(idx, W) if self.config.fused else W[idx]  # (B, T) -> (B, T, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed(seq_len=idx.shape[1], offset=offset)  # + (T, D)
        return self.embed_dropout(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → logits (B, T, V) through the tied (or untied) output matrix."""
        x = self.ln_final(x)
        W = self.token_embed.weight if self.lm_head is None else self.lm_head  # (V, D)
        if self.config.fused:
            return F.linear(x, W, self.head_bias)
        logits = x @ W.T  # (B, T, D) @ (D, V) -> (B, T, V)
        return logits + self.head_bias if self.head_bias is not None else logits

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) long → logits (B, T, V) float."""
        self._check_idx(idx)
        x = self._embed(idx, offset=0)
        for block in self.blocks:
            x = block(x)  # (B, T, D) -> (B, T, D)
        return self._head(x)

    @torch.no_grad()
    def attention_weights(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every block for ids idx (B, T): a list of L tensors (B, H, T, T).

        Rows sum to 1 (causal: zero above the diagonal). Runs in eval mode (no dropout) and
        restores the previous mode. T > max_seq_len → ValueError. Used by the attention
        inspector (``g2c inspect attention``).
        """
        self._check_idx(idx)
        was_training = self.training
        self.eval()
        try:
            x = self._embed(idx, offset=0)  # (B, T, D)
            maps = []
            for block in self.blocks:
                h = block.ln1(x) if block.norm_position == "pre" else x  # the attention's input
                maps.append(block.attn.attention_weights(h))  # (B, H, T, T)
                x = block(x)
        finally:
            self.train(was_training)
        return maps

    # -- KV cache -----------------------------------------------------------------------------
    def new_kv_cache(self) -> list[LayerKVCache]:
        """One empty :class:`LayerKVCache` per block."""
        return [LayerKVCache() for _ in self.blocks]

    def forward_cached(self, idx: torch.Tensor, caches: list[LayerKVCache]) -> torch.Tensor:
        """New tokens idx (B, T_new) after the cached positions → logits (B, T_new, V).

        Appends each layer's keys/values to ``caches`` and continues positions from the cache
        length; works for a prompt prefill and for one token at a time, and equals the
        matching positions of :meth:`forward` on the whole sequence within 1e-5. Cache length
        + T_new > max_seq_len → ValueError; wrong number of caches → ValueError.
        """
        if len(caches) != len(self.blocks):
            raise ValueError(
                f"caches must hold one LayerKVCache per block ({len(self.blocks)}), got {len(caches)}"
            )
        offset = caches[0].seq_len
        self._check_idx(idx, offset)
        x = self._embed(idx, offset=offset)
        for block, cache in zip(self.blocks, caches):
            x = block.forward_cached(x, cache)
        return self._head(x)

    # -- accounting -----------------------------------------------------------------------------
    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Trainable scalars, tied weights counted once. ``exclude_embeddings=True`` leaves out
        the token table and the learned position table (Kaplan et al. 2020's N)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.token_embed.weight.numel()
            if isinstance(self.pos_embed, LearnedPositionalEmbedding):
                n -= self.pos_embed.weight.numel()
        return n

    def estimate_flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward): 6·N + 12·L·T·D.

        N counts every parameter used in a matrix multiply: all parameters minus the position
        table, with the (tied) token table counted once for the output layer (nanoGPT's
        estimate_mfu; PaLM appendix B). 12·L·T·D is the attention score and weighted-sum
        matmuls (2·2·T·D per token per layer, ×3 for backward). ``seq_len`` defaults to
        max_seq_len.
        """
        T = self.max_seq_len if seq_len is None else seq_len
        n = self.num_parameters()
        if isinstance(self.pos_embed, LearnedPositionalEmbedding):
            n -= self.pos_embed.weight.numel()
        if self.lm_head is not None:  # untied: the input table is a lookup, not a matmul
            n -= self.token_embed.weight.numel()
        cfg = self.config
        return int(6 * n + 12 * cfg.num_layers * T * cfg.embedding_dim)

    # -- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (atomically) into ``directory``."""
        from g2c.artifacts import atomic_write_json, save_safetensors

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors(directory / "model.safetensors", self.state_dict())
        atomic_write_json(
            directory / "config.json", {"format": CONFIG_FORMAT, **self.config.to_dict()}
        )
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu") -> TransformerLM:
        """Load a model written by :meth:`save_pretrained`; missing files or another format →
        FileNotFoundError / ValueError."""
        from g2c.artifacts import load_safetensors

        directory = Path(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"no config.json in {directory}")
        d = json.loads(cfg_path.read_text(encoding="utf-8"))
        fmt = d.pop("format", None)
        if fmt != CONFIG_FORMAT:
            raise ValueError(f"{cfg_path}: format {fmt!r} is not {CONFIG_FORMAT!r}")
        model = cls.from_config(TransformerConfig.from_dict(d))
        model.load_state_dict(load_safetensors(directory / "model.safetensors"))
        return model.to(device)

    def extra_repr(self) -> str:
        """Short description shown by ``repr``."""
        c = self.config
        return (
            f"V={c.vocab_size}, D={c.embedding_dim}, L={c.num_layers}, H={c.num_heads}, "
            f"T={c.max_seq_len}, params={self.num_parameters():,}"
        )


def _linears(ffn: Module) -> list:
    """The Linear layers of a FeedForward or SwiGLU, in order."""
    names = ("fc1", "fc2") if hasattr(ffn, "fc1") else ("gate_proj", "up_proj", "down_proj")
    return [getattr(ffn, n) for n in names]
