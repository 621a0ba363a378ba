"""TransformerLM: a decoder-only transformer language model (GPT-2 by default, Llama by switches).

Data flow (Radford et al. 2019, GPT-2; nanoGPT's model.py), read top to bottom in ``forward``:

    idx (B, T) → token_embed (B, T, D) [+ pos_embed (T, D)] → blocks × L → ln_final
               → logits = x @ token_embedᵀ + head_bias (B, T, V)      (weights tied)

``forward_hidden`` stops after ln_final (B, T, D) and ``logits_from_hidden`` is the last line
alone, so a loss that counts only some positions (SFT, DPO) projects just those rows onto the
vocabulary. ``segment_ids=`` packs several sequences into one row (block-diagonal causal
attention, positions restarting per sequence).

Keyword-only switches turn the course model into a Llama-style one (Touvron et al. 2023):
``positional="rope"``, ``norm="rmsnorm"``, ``mlp="swiglu"``, ``num_kv_heads`` (grouped-query),
``bias=False``. SmolLM2-135M loads into it exactly (see ``gguf_loader``). ``fused=True`` (the
default) runs every layer's fast branch; ``fused=False`` is the reference the course walks
through, tested equal within 1e-5.

Initialisation (``init``): "course" (default) gives every matrix the 1/√fan_in scale of the
course's ``Linear`` — the tied token table is also the D → V output layer, so N(0, 1/D) — which
lets tiny models learn with plain SGD; "gpt2" is GPT-2's recipe: every weight N(0, 0.02),
residual output projections N(0, 0.02/√(2L)) so the residual stream's variance does not grow
with depth. Biases zero and norm gains one in both.

KV cache: ``empty_kv_cache()`` → :class:`KVCache`; ``forward_prefill(ids, cache)`` runs a prompt,
``forward_cached(ids (B, 1), cache)`` one new position, so generating n tokens costs n
one-position forwards instead of n full ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from g2c.artifacts import atomic_write_json, load_safetensors, save_safetensors
from g2c.attention import (
    LayerKVCache,
    cache_attention_mask,
    check_segment_ids,
    segment_positions,
)
from g2c.embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    TokenEmbedding,
)
from g2c.nn import Dropout, Linear, Module
from g2c.transformer.config import INIT_NAMES, POSITIONALS, TransformerConfig
from g2c.transformer.layers import Block, make_norm

CONFIG_FORMAT = "g2c.transformer"


class KVCache:
    """The KV cache of a whole model: one :class:`LayerKVCache` per block.

    ``KVCache.empty(num_layers)``; ``layers`` (list of LayerKVCache); ``length`` = cached
    positions (the same in every layer) = ``len(cache)``. ``reorder(index)`` keeps batch rows
    ``index`` in every layer (beam search).
    """

    def __init__(self, layers: list[LayerKVCache]) -> None:
        self.layers = list(layers)

    @classmethod
    def empty(cls, num_layers: int) -> KVCache:
        """A cache with ``num_layers`` empty layers; num_layers < 1 → ValueError."""
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        return cls([LayerKVCache() for _ in range(num_layers)])

    @property
    def length(self) -> int:
        """Number of cached positions."""
        return self.layers[0].length if self.layers else 0

    def __len__(self) -> int:
        return self.length

    def reorder(self, index: torch.Tensor) -> KVCache:
        """Keep batch rows ``index`` (1-D LongTensor) in every layer; returns self."""
        for layer in self.layers:
            layer.reorder(index)
        return self

    def crop(self, length: int) -> KVCache:
        """Keep the first ``length`` cached positions in every layer (0 ≤ length ≤
        ``self.length``, else ValueError) — e.g. to drop rejected draft tokens; returns self."""
        if not isinstance(length, int) or not 0 <= length <= self.length:
            raise ValueError(f"length must be an int in [0, {self.length}], got {length!r}")
        for layer in self.layers:
            layer.crop(length)
        return self

    def __repr__(self) -> str:
        return f"KVCache(num_layers={len(self.layers)}, length={self.length})"


# -- name → builder tables ------------------------------------------------------------------------
PositionalParts = tuple[Module | None, RotaryEmbedding | None]  # (added table, rotary)
PositionalBuilder = Callable[[TransformerConfig, torch.Generator | None], PositionalParts]


def _learned(c: TransformerConfig, g: torch.Generator | None) -> PositionalParts:
    return LearnedPositionalEmbedding(c.max_seq_len, c.embedding_dim, generator=g), None


def _sinusoidal(c: TransformerConfig, g: torch.Generator | None) -> PositionalParts:
    return SinusoidalPositionalEmbedding(c.max_seq_len, c.embedding_dim), None


def _rope(c: TransformerConfig, g: torch.Generator | None) -> PositionalParts:
    return None, RotaryEmbedding(c.max_seq_len, c.head_dim, base=c.rope_base)


def _no_positions(c: TransformerConfig, g: torch.Generator | None) -> PositionalParts:
    return None, None


POSITIONAL_EMBEDDINGS: dict[str, PositionalBuilder] = {
    "learned": _learned,
    "sinusoidal": _sinusoidal,
    "rope": _rope,
    "none": _no_positions,
}
assert set(POSITIONAL_EMBEDDINGS) == set(POSITIONALS)


def _normal_(t: torch.Tensor, std: float, generator: torch.Generator | None) -> None:
    t.copy_(torch.randn(t.shape, generator=generator, dtype=t.dtype) * std)


@torch.no_grad()
def course_init(model: TransformerLM, generator: torch.Generator | None = None) -> None:
    """Every matrix N(0, 1/fan_in) (the course ``Linear``'s scale): Linear W (in, out) with
    1/√in; the token table, which is also the D → V output layer, the position table and an
    untied head with 1/√D. Biases 0, norm gains 1."""
    std = 1.0 / math.sqrt(model.embedding_dim)
    for table in model._tables():
        _normal_(table, std, generator)
    for lin in model._linears():
        _normal_(lin.W, 1.0 / math.sqrt(lin.in_features), generator)


@torch.no_grad()
def gpt2_init(model: TransformerLM, generator: torch.Generator | None = None) -> None:
    """GPT-2 (Radford et al. 2019; nanoGPT ``_init_weights``): every weight N(0, 0.02);
    attention ``out_proj`` and the MLP's last layer N(0, 0.02/√(2L)); biases 0, gains 1."""
    std = 0.02
    resid_std = std / math.sqrt(2 * model.num_layers)
    for table in model._tables():
        _normal_(table, std, generator)
    residual = {id(b.attn.out_proj) for b in model.blocks}
    residual |= {id(_linears_of(b.ffn)[-1]) for b in model.blocks}
    for lin in model._linears():
        _normal_(lin.W, resid_std if id(lin) in residual else std, generator)


INITS: dict[str, Callable[[TransformerLM, torch.Generator | None], None]] = {
    "course": course_init,
    "gpt2": gpt2_init,
}
assert set(INITS) == set(INIT_NAMES)


class TransformerLM(Module):
    """Decoder-only transformer LM: (B, T) token ids → (B, T, V) next-token logits.

    Attributes: ``token_embed`` (TokenEmbedding (V, D)), ``pos_embed`` (learned / sinusoidal
    table, or None for "rope"/"none"), ``rope`` (shared RotaryEmbedding over head_dim, or None),
    ``blocks`` (list of :class:`Block`), ``ln_final``, ``head_bias`` (V,) when ``bias``,
    ``lm_head`` (V, D) when ``tie_embeddings=False`` (else None), ``config``, and the sizes
    ``vocab_size``, ``embedding_dim``, ``num_layers``, ``num_heads``, ``max_seq_len``,
    ``hidden_dim`` (resolved). Keyword switches: see :class:`TransformerConfig` (``fused``
    default True, ``init`` default "course"). T > max_seq_len → ValueError; non-integer ids →
    TypeError; ids outside [0, V) → ValueError, on every device, before any work
    (``check_ids=False`` skips that check).
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
        fused: bool = True,
        init: str = "course",
        check_ids: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        c = TransformerConfig(
            vocab_size, embedding_dim, num_layers, num_heads, max_seq_len, hidden_dim,
            positional=positional, norm=norm, norm_position=norm_position, mlp=mlp,
            num_kv_heads=num_kv_heads, dropout=dropout, bias=bias, tie_embeddings=tie_embeddings,
            attention_impl=attention_impl, rope_base=rope_base, norm_eps=norm_eps,
            gelu_approximate=gelu_approximate, fused=fused, init=init,
        )  # fmt: skip
        self.config = c
        self.vocab_size, self.embedding_dim = c.vocab_size, c.embedding_dim
        self.num_layers, self.num_heads, self.max_seq_len = c.num_layers, c.num_heads, c.max_seq_len
        self.check_ids = check_ids
        V, D = c.vocab_size, c.embedding_dim
        self.token_embed = TokenEmbedding(V, D, generator=generator)
        self.pos_embed, self.rope = POSITIONAL_EMBEDDINGS[c.positional](c, generator)
        self.embed_dropout = Dropout(c.dropout)
        self.blocks = [
            Block(D, c.num_heads, c.hidden_dim, config=c, rope=self.rope, generator=generator)
            for _ in range(c.num_layers)
        ]
        self.hidden_dim = self.blocks[0].hidden_dim
        self.ln_final = make_norm(c)
        self.lm_head = None if c.tie_embeddings else torch.empty(V, D, requires_grad=True)
        self.head_bias = torch.zeros(V, requires_grad=True) if c.bias else None
        self.init_weights(generator)

    @classmethod
    def from_config(cls, config: TransformerConfig, **kwargs: Any) -> TransformerLM:
        """Build a model from a :class:`TransformerConfig` (extra kwargs: check_ids, generator)."""
        return cls(**config.to_dict(), **kwargs)

    # -- init -----------------------------------------------------------------------------
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialise every parameter with the ``config.init`` recipe (table :data:`INITS`)."""
        INITS[self.config.init](self, generator)
        with torch.no_grad():  # both recipes: biases 0, norm gains 1
            for lin in self._linears():
                if lin.b is not None:
                    lin.b.zero_()
            for norm in self._norms():
                norm.gamma.fill_(1.0)
                if getattr(norm, "beta", None) is not None:
                    norm.beta.zero_()
            if self.head_bias is not None:
                self.head_bias.zero_()

    def _tables(self) -> list[torch.Tensor]:
        """The embedding-like matrices: token table, learned positions, untied head."""
        tables = [self.token_embed.weight]
        if isinstance(self.pos_embed, LearnedPositionalEmbedding):
            tables.append(self.pos_embed.weight)
        if self.lm_head is not None:
            tables.append(self.lm_head)
        return tables

    def _linears(self) -> list[Linear]:
        """Every course Linear of every block, in order."""
        out = []
        for b in self.blocks:
            out += [b.attn.q_proj, b.attn.k_proj, b.attn.v_proj, b.attn.out_proj]
            out += _linears_of(b.ffn)
        return out

    def _norms(self) -> list[Module]:
        return [n for b in self.blocks for n in (b.ln1, b.ln2)] + [self.ln_final]

    # -- forward ----------------------------------------------------------------------------
    def _check_idx(self, idx: torch.Tensor, offset: int = 0) -> None:
        """Type, shape, length and id range of ``idx`` (B, T) — before any work, any device."""
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"idx must be an integer (long) tensor, got {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"idx must be (B, T), got shape {tuple(idx.shape)}")
        T = idx.shape[1]
        if offset + T > self.max_seq_len:
            raise ValueError(
                f"sequence length {offset + T} (cached {offset} + new {T}) exceeds max_seq_len "
                f"{self.max_seq_len}; crop the input to the last {self.max_seq_len} tokens"
            )
        if self.check_ids and idx.numel():
            lo, hi = (int(v) for v in torch.aminmax(idx))  # one device sync on accelerators
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(
                    f"idx must hold ids in [0, {self.vocab_size}), got range [{lo}, {hi}]"
                )

    def _embed(
        self, idx: torch.Tensor, offset: int, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) → (B, T, D): token vectors plus absolute positions (when learned/sinusoidal),
        from ``offset`` on, or at per-token ``positions`` (B, T) for packed rows."""
        W = self.token_embed.weight
        x = F.embedding(idx, W) if self.config.fused else W[idx]  # (B, T) -> (B, T, D)
        if self.pos_embed is not None and positions is not None:  # packed: restart per segment
            x = x + self.pos_embed.weight[positions]  # + (B, T, D)
        elif self.pos_embed is not None:
            x = x + self.pos_embed(seq_len=idx.shape[1], offset=offset)  # + (T, D)
        return self.embed_dropout(x)

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden states h (..., D) → logits (..., V): the tied ``token_embed``
        (or untied ``lm_head``) matrix plus ``head_bias``.

        Any leading shape: SFT/DPO pass only the (N, D) rows where the loss counts, so the
        (B, T, V) logits of a whole batch are never built. Last dim ≠ D → ValueError.
        """
        if h.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"h must have last dimension {self.embedding_dim} (embedding_dim), got shape "
                f"{tuple(h.shape)}"
            )
        W = self.token_embed.weight if self.lm_head is None else self.lm_head  # (V, D)
        if self.config.fused:  # fast path: one addmm
            return F.linear(h, W, self.head_bias)
        logits = h @ W.T  # (..., D) @ (D, V) -> (..., V)
        return logits + self.head_bias if self.head_bias is not None else logits

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """Last block's output (B, T, D) → logits (B, T, V): ln_final, then the output matrix."""
        return self.logits_from_hidden(self.ln_final(x))

    #: Per-block activation checkpointing (Chen et al. 2016; ``torch.utils.checkpoint``,
    #: non-reentrant), a policy: False / 0 = none; True = every block — training forwards keep
    #: only each block's input and recompute the block in backward (about one extra forward per
    #: step for the memory of the activations); an int k >= 1 = every k-th block (blocks 0, k,
    #: 2k, ...; k = 1 is every block) — a memory / recompute trade-off in between. Same
    #: gradients (tested); a runtime switch, not part of the config.
    activation_checkpointing: bool | int = False

    def checkpointed_blocks(self) -> list[bool]:
        """Per block, whether :attr:`activation_checkpointing` recomputes it in training: all
        for True, none for False / 0, every k-th (index % k == 0) for an int k >= 1. A negative
        or non-integer policy → ValueError naming activation_checkpointing."""
        policy = self.activation_checkpointing
        if policy is True or policy is False:
            return [policy] * len(self.blocks)
        if not isinstance(policy, int) or policy < 0:
            raise ValueError(
                "activation_checkpointing must be True, False or an integer k >= 0 (every k-th "
                f"block), got {policy!r}"
            )
        return [policy > 0 and i % policy == 0 for i in range(len(self.blocks))]

    def forward_hidden(
        self, idx: torch.Tensor, *, segment_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """idx (B, T) long → final-normed hidden states (B, T, D) (``ln_final`` applied; no
        vocabulary projection — :meth:`logits_from_hidden` does that).

        ``segment_ids`` (B, T) integer, sequence packing: every run of equal consecutive ids is
        its own sequence — its tokens attend only to earlier tokens of the same run
        (block-diagonal causal mask) and positions (learned, sinusoidal or RoPE) restart at 0
        at its first token, so a packed row gives what its sequences give one by one. Wrong
        shape/dtype → ValueError/TypeError naming segment_ids.
        """
        self._check_idx(idx)
        positions = None
        if segment_ids is not None:
            check_segment_ids(segment_ids, tuple(idx.shape))
            segment_ids = segment_ids.to(idx.device)
            positions = segment_positions(segment_ids)  # (B, T), 0 at each segment start
        x = self._embed(idx, offset=0, positions=positions)
        packed = (
            {} if segment_ids is None else {"segment_ids": segment_ids}
        )  # plain call: as before
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        policy = self.checkpointed_blocks() if recompute else None
        for i, block in enumerate(self.blocks):
            if recompute and policy[i]:  # keep only the block's input; rerun it in backward
                x = checkpoint(block, x, use_reentrant=False, **packed)
            else:
                x = block(x, **packed)  # (B, T, D) -> (B, T, D)
        return self.ln_final(x)

    def forward(
        self, idx: torch.Tensor, *, segment_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """idx (B, T) long → logits (B, T, V) float; ``segment_ids`` as in
        :meth:`forward_hidden` (packed rows)."""
        return self.logits_from_hidden(self.forward_hidden(idx, segment_ids=segment_ids))

    @torch.no_grad()
    def attention_weights(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every block for ids idx (B, T): a list of L tensors (B, H, T, T).

        Rows sum to 1 (causal: zero above the diagonal); computed with the explicit formula
        whatever ``attention_impl``/``fused``. Runs in eval mode (no dropout) and restores the
        previous mode. T > max_seq_len → ValueError. Used by ``g2c inspect attention``.
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
    def empty_kv_cache(self) -> KVCache:
        """A :class:`KVCache` with one empty layer per block."""
        return KVCache.empty(self.num_layers)

    def forward_prefill(
        self,
        idx: torch.Tensor,
        cache: KVCache,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        hidden: bool = False,
    ) -> tuple[torch.Tensor, KVCache]:
        """New tokens idx (B, T_new) after the cached positions → (logits (B, T_new, V), cache).

        ``hidden=True`` returns the final-normed hidden states (B, T_new, D) instead of the
        logits, for callers that need the vocabulary projection at a few positions only
        (:meth:`logits_from_hidden` on those rows; multiple-choice scoring uses it).

        Appends each layer's keys/values and continues positions from ``cache.length``; equals
        the matching positions of :meth:`forward` on the whole sequence within 1e-5.

        Padded batches (left padding, rows of different lengths): ``attention_mask`` (B,
        cache.length + T_new), 1/True = real token, 0 = padding, over the cached AND the new
        positions (Hugging Face's convention); ``position_ids`` (B, T_new) long, default the
        number of real tokens before each one, so every row's positions start at 0 at its
        first real token (learned / sinusoidal tables and RoPE alike). A pre-allocated cache
        (``g2c.inference.StaticKVCache``: it has ``prepare``/``commit``) keeps its own padding
        bookkeeping; its ``attention_mask`` covers the new tokens only, (B, T_new).
        A 3-D ``attention_mask`` (B, T_new, cache.length + T_new), True = query t may attend to
        key s, is used as it is (with explicit ``position_ids``): several continuations of one
        shared prefix in one row ("tree" attention, as multiple-choice scoring uses); every
        query must see at least its own key.

        Cache length + T_new > max_seq_len, a cache for another number of layers, ids outside
        [0, V), or masks / position ids of the wrong shape → ValueError.
        """
        if not hasattr(cache, "layers") or len(cache.layers) != self.num_layers:
            raise ValueError(
                f"cache must be a KVCache with {self.num_layers} layers "
                f"(model.empty_kv_cache()), got {cache!r}"
            )
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            self._check_idx(idx)  # raises the TypeError / ValueError naming idx
        B, T = idx.shape
        if hasattr(cache, "prepare"):  # pre-allocated cache: it plans writes, positions, mask
            self._check_idx(idx)  # ids and T, before the cache plans anything
            plan = cache.prepare(
                B, T, attention_mask=attention_mask, position_ids=position_ids,
                max_positions=self.max_seq_len,
            )  # fmt: skip
            offset, positions, mask = plan.offset, plan.positions, plan.mask
        elif not isinstance(cache, KVCache):
            raise ValueError(f"cache must be a KVCache (model.empty_kv_cache()), got {cache!r}")
        else:
            offset, positions, mask = cache.length, None, None
            if attention_mask is not None and attention_mask.dim() == 3:  # explicit (tree) mask
                L = cache.length
                if tuple(attention_mask.shape) != (B, T, L + T) or position_ids is None:
                    raise ValueError(
                        f"a 3-D attention_mask must be (B, T_new, cache.length + T_new) = "
                        f"{(B, T, L + T)} and come with position_ids, got "
                        f"{tuple(attention_mask.shape)}"
                    )
                mask = ~attention_mask.to(device=idx.device, dtype=torch.bool)[:, None]
            elif attention_mask is not None:
                L = cache.length
                if tuple(attention_mask.shape) != (B, L + T):
                    raise ValueError(
                        f"attention_mask must be (B, cache.length + T_new) = {(B, L + T)}, got "
                        f"{tuple(attention_mask.shape)}"
                    )
                valid = attention_mask.to(device=idx.device, dtype=torch.bool)
                q_index = torch.arange(L, L + T, device=idx.device).expand(B, T)
                mask = cache_attention_mask(valid, q_index)
                if position_ids is None:
                    position_ids = (valid.long().cumsum(-1) - 1).clamp(min=0)[:, L:]
            if position_ids is not None:
                if tuple(position_ids.shape) != (B, T):
                    raise ValueError(
                        f"position_ids must be (B, T_new) = {(B, T)}, got "
                        f"{tuple(position_ids.shape)}"
                    )
                positions = position_ids.to(device=idx.device, dtype=torch.long)
            end = offset + T if positions is None else int(positions.max()) + 1
            self._check_idx(idx, end - T)
        x = self._embed(idx, offset=offset, positions=positions)
        for block, layer_cache in zip(self.blocks, cache.layers):
            x, _ = block.forward_prefill(x, layer_cache, positions=positions, mask=mask)
        if hasattr(cache, "commit"):
            cache.commit()
        return (self.ln_final(x) if hidden else self._head(x)), cache

    def forward_cached(self, idx: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """One new position idx (B, 1) → (logits (B, 1, V), cache with one more position).

        More than one position → ValueError (use :meth:`forward_prefill`); past max_seq_len →
        ValueError.
        """
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.shape[1] != 1:
            shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(
                f"forward_cached takes one new position idx (B, 1), got {shape}; "
                "use forward_prefill for a prompt"
            )
        return self.forward_prefill(idx, cache)

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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors(directory / "model.safetensors", self.state_dict())
        atomic_write_json(
            directory / "config.json", {"format": CONFIG_FORMAT, **self.config.to_dict()}
        )
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str = "cpu", *, fused: bool = True
    ) -> TransformerLM:
        """Load a model written by :meth:`save_pretrained`; missing files or another format →
        FileNotFoundError / ValueError.

        ``fused`` picks the kernels (not part of the weights): the fast path by default, also for
        directories saved before it became the default; ``fused=False`` for the reference path.
        """
        directory = Path(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"no config.json in {directory}")
        d = json.loads(cfg_path.read_text(encoding="utf-8"))
        fmt = d.pop("format", None)
        if fmt != CONFIG_FORMAT:
            raise ValueError(f"{cfg_path}: format {fmt!r} is not {CONFIG_FORMAT!r}")
        d["fused"] = fused
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


def _linears_of(ffn: Module) -> list[Linear]:
    """The Linear layers of a FeedForward or SwiGLU, in order (the last one is residual)."""
    names = ("fc1", "fc2") if hasattr(ffn, "fc1") else ("gate_proj", "up_proj", "down_proj")
    return [getattr(ffn, n) for n in names]
