"""Scaled dot-product self-attention, single head and multi-head (with a KV cache).

The idea ("Attention Is All You Need", Vaswani et al. 2017, eq. 1): every position t builds a
query q_t, a key k_t and a value v_t from its own vector; its output is the average of the
values, weighted by softmax over s of q_t·k_s / √d. A causal mask hides s > t, so a language
model cannot look at the token it must predict.

Shapes: x (B, T, D) → q, k, v (B, T, D) → scores (B, T, T) → out (B, T, D). Multi-head
attention reshapes D into H heads of size D/H: (B, T, D) → (B, H, T, D/H), attends per head
and reshapes back. Grouped-query attention (Ainslie et al. 2023) gives keys and values only
H_kv heads, each shared by H/H_kv query heads.

Three ways to compute the same attention, each tested equal to the first within 1e-5:

- the reference (``fused=False, attention_impl="explicit"``): :func:`attend`, every step written
  with tensor ops and module 02's softmax — what the course walks through;
- ``fused=True`` (the default): the same formula with torch's fused kernels — one Q/K/V matmul,
  then ``torch.nn.functional.scaled_dot_product_attention`` (:func:`attend_sdpa`: flash /
  memory-efficient kernels, the weights never materialised), whatever ``attention_impl`` says;
- ``attention_impl="sdpa"`` with ``fused=False``: SDPA inside the otherwise unfused reference.

:func:`attend_fused` is a third, readable fast version of :func:`attend` (scores by ``baddbmm``
with the scale and the mask folded in, ``torch.softmax``), tested equal; the model's fast path
used it until SDPA, measured 7–8 % faster per training step at the classic CPU config, took
its place (``bench/model_step.py``).

``attention_weights(x)`` always computes the weights explicitly, whatever the path.

Sequence packing (``segment_ids=``, module 13): several short sequences share one row of the
batch; ``segment_ids`` (B, T) labels each position's sequence. A position attends only to
earlier positions of its own segment (a block-diagonal causal mask, :func:`segment_causal_mask`)
and RoPE rotates by the position inside the segment (:func:`segment_positions`), so a packed row
computes exactly what its sequences would compute one by one. Every path supports it (sdpa
through an ``attn_mask``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from g2c.embeddings import RotaryEmbedding, rotate_half
from g2c.nn import Dropout, Linear, Module
from g2c.tensors import softmax  # 02 built it: shift by the max, then normalise

ATTENTION_IMPLS = ("explicit", "sdpa")


def linear(layer: Linear, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
    """Apply a course ``Linear``: ``layer(x)``, or with ``fused=True`` one ``F.linear`` call
    (matmul and bias add in a single addmm kernel; same numbers within float rounding).
    A layer that is not a plain ``Linear`` (e.g. a ``g2c.lora.LoRALinear`` wrapping one) is
    always called, so it computes its own way."""
    if not fused or type(layer) is not Linear:
        return layer(x)
    return F.linear(x, layer.W.T, layer.b)  # W.T is a (out, in) view, no copy


def causal_mask(T: int, device: str | torch.device | None = None) -> torch.Tensor:
    """Bool (T, T) mask, True strictly above the diagonal (the future positions to hide).

    Row t is the query at position t; column s is True when s > t. T < 1 → ValueError.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(diagonal=1)


def offset_causal_mask(
    T_q: int, T_k: int, device: str | torch.device | None = None
) -> torch.Tensor:
    """Bool (T_q, T_k), True where key s lies after query t; the queries are the last T_q
    positions (T_k − T_q + t), as when new positions attend over a KV cache."""
    if T_q == T_k:
        return causal_mask(T_q, device=device)
    q_pos = torch.arange(T_k - T_q, T_k, device=device)[:, None]  # (T_q, 1)
    k_pos = torch.arange(T_k, device=device)[None, :]  # (1, T_k)
    return k_pos > q_pos


def cache_attention_mask(key_valid: torch.Tensor, query_index: torch.Tensor) -> torch.Tensor:
    """Bool (B, 1, T_q, T_k), True = hidden, for queries attending over a KV cache with padding.

    ``key_valid`` (B, T_k) bool: True where the cached key is a real token (False: left padding,
    a free batch slot). ``query_index`` (B, T_q) long: the cache index each query's own key is
    written at. Query t sees key s when s ≤ its index and s is valid; its own key is never
    hidden, so a padding query still has one key (no empty softmax row, no NaN).
    """
    T_k = key_valid.shape[-1]
    s = torch.arange(T_k, device=key_valid.device)  # (T_k,)
    q = query_index[:, :, None]  # (B, T_q, 1)
    visible = (key_valid[:, None, :] | (s == q)) & (s <= q)  # (B, T_q, T_k)
    return ~visible[:, None]


def check_segment_ids(segment_ids: torch.Tensor, shape: tuple[int, int]) -> None:
    """TypeError / ValueError naming ``segment_ids`` unless it is an integer tensor of ``shape``
    (B, T) — the shape of the ids or of x's first two dimensions."""
    if not isinstance(segment_ids, torch.Tensor):
        raise TypeError(
            f"segment_ids must be a (B, T) integer torch.Tensor, got {type(segment_ids).__name__}"
        )
    if (
        segment_ids.dtype.is_floating_point
        or segment_ids.dtype.is_complex
        or (segment_ids.dtype == torch.bool)
    ):
        raise TypeError(f"segment_ids must be an integer (long) tensor, got {segment_ids.dtype}")
    if tuple(segment_ids.shape) != tuple(shape):
        raise ValueError(
            f"segment_ids must have the shape (B, T) = {tuple(shape)} of the input, got "
            f"{tuple(segment_ids.shape)}"
        )


def _segment_starts(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) → (B, T) bool, True where a segment begins (position 0 or the id changes)."""
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    return starts


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """Position of every token inside its segment: (B, T) ids → (B, T) long, 0 at each start.

    A segment is a run of equal consecutive ids: ``[[7, 7, 7, 2, 2, 9]]`` → ``[[0, 1, 2, 0, 1,
    0]]``. Packed sequences then get the positions they would have on their own.
    """
    B, T = segment_ids.shape
    t = torch.arange(T, device=segment_ids.device).expand(B, T)  # (B, T)
    starts = _segment_starts(segment_ids)
    start_of = torch.where(starts, t, torch.zeros_like(t)).cummax(dim=1).values  # (B, T)
    return t - start_of


def segment_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Bool (B, T, T), True = hidden: query t may see key s only when s <= t and both lie in
    the same segment (a run of equal consecutive ids) — block-diagonal causal attention.

    The diagonal is never hidden, so no softmax row is empty (padding tokens attend to
    themselves).
    """
    seg = _segment_starts(segment_ids).cumsum(dim=1)  # (B, T) running segment number
    other = seg[:, :, None] != seg[:, None, :]  # (B, T, 1) vs (B, 1, T) -> (B, T, T)
    return other | causal_mask(segment_ids.shape[1], device=segment_ids.device)


def rope_at_positions(
    rope: RotaryEmbedding, x: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """RoPE of x (B, H, T, d) at per-token positions (B, T) (packed rows): the same rotation
    as ``rope(x)`` but by each token's own position. Positions must be < rope.max_seq_len."""
    cos = rope.cos[positions].to(x.dtype)[:, None]  # (B, T) -> (B, 1, T, d)
    sin = rope.sin[positions].to(x.dtype)[:, None]
    return x * cos + rotate_half(x) * sin


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    dropout: Dropout | None = None,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The reference scaled dot-product attention: softmax(q kᵀ / √d, masked) v.

    q (..., T_q, d), k and v (..., T_k, d); ``mask`` bool broadcastable to (..., T_q, T_k),
    True = hidden. Returns out (..., T_q, d), and the weights (..., T_q, T_k) when
    ``return_weights``. ``dropout`` (a course Dropout) is applied to the weights.
    """
    d = q.shape[-1]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)  # (..., T_q, d) @ (..., d, T_k)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1
    dropped = dropout(weights) if dropout is not None else weights
    out = dropped @ v  # (..., T_q, T_k) @ (..., T_k, d) -> (..., T_q, d)
    return (out, weights) if return_weights else out


def attend_fused(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Fast path of :func:`attend` (same result within 1e-5): the scale and the mask ride in
    one ``baddbmm`` (scores = bias + q kᵀ / √d, bias −inf where hidden), then torch's softmax
    kernel. q (B, H, T_q, d), k and v (B, H, T_k, d) → (B, H, T_q, d). ``mask`` (T_q, T_k), or
    per row (B, 1, T_q, T_k) for packed sequences."""
    B, H, T_q, d = q.shape
    T_k = k.shape[-2]
    if mask is not None and mask.dim() > 2:  # per-row mask: (B, 1, T_q, T_k) -> (B·H, T_q, T_k)
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(mask, -math.inf)
        bias = bias.expand(B, H, T_q, T_k).reshape(B * H, T_q, T_k)
    else:
        bias = torch.zeros(T_q, T_k, dtype=q.dtype, device=q.device)
        if mask is not None:
            bias = bias.masked_fill(mask, float("-inf"))
        bias = bias.expand(B * H, T_q, T_k)
    scores = torch.baddbmm(
        bias,
        q.reshape(B * H, T_q, d),
        k.reshape(B * H, T_k, d).transpose(1, 2),
        alpha=1.0 / math.sqrt(d),
    )  # (B·H, T_q, T_k)
    weights = torch.softmax(scores, dim=-1)  # rows sum to 1
    if dropout_p:
        weights = F.dropout(weights, dropout_p)
    return (weights @ v.reshape(B * H, T_k, d)).view(B, H, T_q, d)


def attend_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    dropout_p: float = 0.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention by ``F.scaled_dot_product_attention`` (fused kernels; same result as
    :func:`attend` within 1e-5). ``causal`` queries are the last T_q of the T_k positions.
    ``mask`` (bool, True = hidden, broadcastable to (B, H, T_q, T_k)) replaces the causal
    mask — packed rows pass :func:`segment_causal_mask` here."""
    if mask is not None:  # SDPA's bool attn_mask means the opposite: True = may attend
        return F.scaled_dot_product_attention(q, k, v, attn_mask=~mask, dropout_p=dropout_p)
    T_q, T_k = q.shape[-2], k.shape[-2]
    if not causal or T_q == 1:  # one new query sees every cached key
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    if T_q == T_k:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    allowed = ~offset_causal_mask(T_q, T_k, q.device)  # SDPA's bool mask: True = may attend
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)


class SelfAttention(Module):
    """Single-head self-attention with explicit Q/K/V projections (course module 07).

    ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``: course ``Linear(D, D)``.
    ``forward(x)``: (B, T, D) → (B, T, D). ``attention_weights(x)``: (B, T, T), each row a
    softmax (sums to 1) of q·k/√D, zero above the diagonal when ``causal``.
    ``SelfAttention.causal_mask(T, device=None)`` is static. Wrong input rank or width →
    ValueError.
    """

    causal_mask = staticmethod(causal_mask)

    def __init__(
        self,
        embedding_dim: int,
        causal: bool = True,
        *,
        bias: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        if embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        self.embedding_dim = embedding_dim
        self.causal = causal
        D = embedding_dim
        self.q_proj = Linear(D, D, bias=bias, generator=generator)
        self.k_proj = Linear(D, D, bias=bias, generator=generator)
        self.v_proj = Linear(D, D, bias=bias, generator=generator)
        self.out_proj = Linear(D, D, bias=bias, generator=generator)

    def _qkv_attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.embedding_dim:
            raise ValueError(f"x must be (B, T, {self.embedding_dim}), got shape {tuple(x.shape)}")
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # each (B, T, D)
        mask = causal_mask(x.shape[1], device=x.device) if self.causal else None
        return attend(q, k, v, mask, return_weights=True)  # (B, T, D), (B, T, T)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → attention weights (B, T, T); rows sum to 1."""
        return self._qkv_attend(x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D)."""
        out, _ = self._qkv_attend(x)
        return self.out_proj(out)

    def extra_repr(self) -> str:
        """Short description shown by ``repr``."""
        return f"{self.embedding_dim}, causal={self.causal}"


class LayerKVCache:
    """Keys and values of the positions seen so far, for one attention layer.

    ``keys``, ``values``: (B, H, T, head_dim) tensors (H = the layer's key/value heads), or
    None while empty; ``length`` is T (0 when empty). ``LayerKVCache(keys, values)`` starts
    from given tensors. ``append(k, v)`` concatenates (B, H, T_new, head_dim) along time and
    returns the cache. The constructor and every append (the first one too) check that k and
    v are 4-D tensors of equal shape and, once the cache holds something, the same batch,
    heads, head_dim, device and dtype → ValueError otherwise. Caching turns generation of n
    tokens from O(n²) projections into O(n): each step computes q/k/v for the new position
    only.
    """

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None):
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        if keys is not None or values is not None:
            self.append(keys, values)

    @property
    def length(self) -> int:
        """Number of cached positions T."""
        return 0 if self.keys is None else self.keys.shape[-2]

    def _check(self, k: torch.Tensor | None, v: torch.Tensor | None) -> None:
        for name, t in (("keys", k), ("values", v)):
            if not isinstance(t, torch.Tensor) or t.dim() != 4:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a 4-D (B, H, T, head_dim) tensor, got {got}")
        if k.shape != v.shape:
            raise ValueError(
                f"keys {tuple(k.shape)} and values {tuple(v.shape)} must have the same shape"
            )
        if self.keys is None:
            return
        old = self.keys
        if (k.shape[0], k.shape[1], k.shape[3]) != (old.shape[0], old.shape[1], old.shape[3]):
            raise ValueError(
                f"new keys {tuple(k.shape)} do not match the cache {tuple(old.shape)} in batch, "
                "heads or head_dim; call reset() (or start a new cache) for a different batch"
            )
        if k.device != old.device or k.dtype != old.dtype:
            raise ValueError(
                f"new keys on {k.device}/{k.dtype} do not match the cache on "
                f"{old.device}/{old.dtype}"
            )

    def append(self, k: torch.Tensor, v: torch.Tensor) -> LayerKVCache:
        """Add keys/values (B, H, T_new, head_dim) at the end of the time axis; returns self."""
        self._check(k, v)
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            self.keys = torch.cat((self.keys, k), dim=-2)  # (B, H, T + T_new, head_dim)
            self.values = torch.cat((self.values, v), dim=-2)
        return self

    def reorder(self, index: torch.Tensor) -> LayerKVCache:
        """Keep batch rows ``index`` (1-D LongTensor), e.g. to follow surviving beams."""
        if self.keys is not None:
            self.keys, self.values = self.keys[index], self.values[index]
        return self

    def crop(self, length: int) -> LayerKVCache:
        """Keep the first ``length`` positions (0 ≤ length ≤ ``self.length``, else ValueError),
        dropping later ones (e.g. rejected draft tokens in speculative decoding); returns self."""
        if not isinstance(length, int) or not 0 <= length <= self.length:
            raise ValueError(f"length must be an int in [0, {self.length}], got {length!r}")
        if length == 0:
            self.reset()
        elif self.keys is not None:
            self.keys, self.values = self.keys[:, :, :length], self.values[:, :, :length]
        return self

    def reset(self) -> None:
        """Forget every cached position."""
        self.keys = None
        self.values = None

    def __repr__(self) -> str:
        shape = None if self.keys is None else tuple(self.keys.shape)
        return f"LayerKVCache(length={self.length}, keys={shape})"


class _FusedQKV:
    """The concatenated Q/K/V weight (D, D + 2·kv_dim) and bias, kept between no-grad calls.

    Rebuilt when any source tensor is replaced (``to``, ``load_state_dict`` into a new tensor)
    or changed in place (an optimizer step bumps ``_version``), so it never serves stale
    weights. Not a tensor attribute, so ``state_dict``/``parameters`` never see it.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.W: torch.Tensor | None = None
        self.b: torch.Tensor | None = None

    def get(self, projs: tuple[Linear, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if torch.compiler.is_compiling() and self.W is not None:
            return self.W, self.b  # inside a compiled graph: built before tracing, guarded by id
        tensors = [p.W for p in projs] + [p.b for p in projs if p.b is not None]
        key = tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        if key != self.key:
            self.W = torch.cat([p.W.detach() for p in projs], dim=1)
            has_b = projs[0].b is not None
            self.b = torch.cat([p.b.detach() for p in projs]) if has_b else None
            self.key = key
        return self.W, self.b


class MultiHeadAttention(Module):
    """Multi-head (optionally grouped-query) causal self-attention (course module 08).

    One projection each for Q, K, V and the output (8 parameter tensors with biases, whatever
    H); heads come from reshaping D into H × D/H. ``attention_weights(x)`` → (B, H, T, T),
    scaled by 1/√(D/H). ``MultiHeadAttention.causal_mask(T, device=None)`` is static.

    Keyword-only extras: ``num_kv_heads`` (grouped-query attention: H_kv key/value heads,
    H % H_kv == 0; default H), ``rope`` (a RotaryEmbedding over head_dim applied to q and k),
    ``dropout`` (on the attention weights and on the output), ``bias``, ``attention_impl``
    ("explicit" formula, or "sdpa" = F.scaled_dot_product_attention), ``fused`` (default
    True: one Q/K/V matmul, addmm and :func:`attend_sdpa`; False = the reference, course
    ``Linear`` calls and :func:`attend`). Every path equals the reference within 1e-5.
    D % H != 0, H % H_kv != 0 or an unknown impl → ValueError.
    """

    causal_mask = staticmethod(causal_mask)

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        causal: bool = True,
        *,
        num_kv_heads: int | None = None,
        rope: RotaryEmbedding | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        attention_impl: str = "explicit",
        fused: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        if embedding_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"embedding_dim and num_heads must be positive, got {embedding_dim}, {num_heads}"
            )
        if embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim ({embedding_dim}) must be divisible by num_heads ({num_heads})"
            )
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_kv_heads <= 0 or num_heads % num_kv_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must be a positive multiple of num_kv_heads ({num_kv_heads})"
            )
        if attention_impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"attention_impl must be one of {ATTENTION_IMPLS}, got {attention_impl!r}"
            )
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = embedding_dim // num_heads
        if rope is not None and rope.embedding_dim != self.head_dim:
            raise ValueError(
                f"rope must be built for head_dim {self.head_dim}, got {rope.embedding_dim}"
            )
        self.causal = causal
        self.attention_impl = attention_impl
        self.fused = fused
        self.dropout_p = dropout
        D, kv_dim = embedding_dim, num_kv_heads * self.head_dim
        self.q_proj = Linear(D, D, bias=bias, generator=generator)
        self.k_proj = Linear(D, kv_dim, bias=bias, generator=generator)
        self.v_proj = Linear(D, kv_dim, bias=bias, generator=generator)
        self.out_proj = Linear(D, D, bias=bias, generator=generator)
        self.rope = rope
        self.attn_dropout = Dropout(dropout)
        self.resid_dropout = Dropout(dropout)

    # -- the pieces, in data-flow order ------------------------------------------------
    def _project(
        self, x: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D) → q (B, H, T, hd), k and v (B, H_kv, T, hd), RoPE applied at ``offset``
        (or at per-token ``positions`` (B, T) for packed rows)."""
        if x.dim() != 3 or x.shape[-1] != self.embedding_dim:
            raise ValueError(f"x must be (B, T, {self.embedding_dim}), got shape {tuple(x.shape)}")
        B, T, _ = x.shape
        hd = self.head_dim
        plain = all(type(p) is Linear for p in (self.q_proj, self.k_proj, self.v_proj))
        if self.fused and plain:  # fast path: one (D, D + 2·kv_dim) matmul instead of three
            q, k, v = self._fused_qkv(x)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, T, self.num_heads, hd).transpose(1, 2)  # (B, T, D) -> (B, H, T, hd)
        k = k.view(B, T, self.num_kv_heads, hd).transpose(1, 2)  # -> (B, H_kv, T, hd)
        v = v.view(B, T, self.num_kv_heads, hd).transpose(1, 2)
        if self.rope is not None and positions is not None:  # packed rows: positions restart
            q = rope_at_positions(self.rope, q, positions)
            k = rope_at_positions(self.rope, k, positions)
        elif self.rope is not None:
            q = self.rope(q, offset=offset)
            k = self.rope(k, offset=offset)
        return q, k, v

    def _fused_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if torch.is_grad_enabled():  # training: concatenate inside the autograd graph
            W = torch.cat([p.W for p in projs], dim=1)  # (D, D + 2·kv_dim)
            b = torch.cat([p.b for p in projs]) if self.q_proj.b is not None else None
        else:  # inference: reuse the concatenation until a weight changes (see _FusedQKV)
            cache = self.__dict__.get("_qkv_cache")
            if cache is None:
                cache = self.__dict__["_qkv_cache"] = _FusedQKV()
            W, b = cache.get(projs)
        qkv = F.linear(x, W.T, b)  # (B, T, D + 2·kv_dim)
        kv_dim = self.num_kv_heads * self.head_dim
        return qkv.split((self.embedding_dim, kv_dim, kv_dim), dim=-1)

    def _expand_kv(self, t: torch.Tensor) -> torch.Tensor:
        """(B, H_kv, T, hd) → (B, H, T, hd): each key/value head serves H/H_kv query heads."""
        groups = self.num_heads // self.num_kv_heads
        return t if groups == 1 else t.repeat_interleave(groups, dim=1)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """q (B, H, T_q, hd) — the last T_q positions — over k, v (B, H_kv, T_k, hd).

        ``mask`` (B, 1, T_q, T_k) bool, True = hidden, replaces the causal mask (packed rows)."""
        p = self.dropout_p if self.training else 0.0
        groups = self.num_heads // self.num_kv_heads
        if self.fused and groups > 1 and q.shape[-2] == 1 and not p:
            # decode fast path: one query per head, so the H/H_kv query heads sharing a key/value
            # head become H/H_kv "positions" of that head — same scores, no copy of the cache
            B, H, _, hd = q.shape
            qg = q.reshape(B, self.num_kv_heads, groups, hd)  # head h = kv·groups + g
            out = attend_sdpa(qg, k, v, causal=False, mask=mask)  # mask (B,1,1,T_k) broadcasts
            return out.reshape(B, H, 1, hd)
        k, v = self._expand_kv(k), self._expand_kv(v)
        if self.fused or self.attention_impl == "sdpa":  # fast path: torch's fused kernel
            return attend_sdpa(q, k, v, causal=self.causal, dropout_p=p, mask=mask)
        T_q, T_k = q.shape[-2], k.shape[-2]
        if mask is None and self.causal:
            mask = offset_causal_mask(T_q, T_k, q.device)
        return attend(q, k, v, mask, dropout=self.attn_dropout)  # the reference

    def _merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        """(B, H, T, hd) → (B, T, D), then the output projection."""
        B, _, T, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T, self.embedding_dim)  # (B, H, T, hd) -> (B, T, D)
        return self.resid_dropout(linear(self.out_proj, out, self.fused))

    # -- public API -----------------------------------------------------------------------
    def _packing(
        self, x: torch.Tensor, segment_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(positions (B, T), mask (B, 1, T, T)) of packed rows, or (None, None)."""
        if segment_ids is None:
            return None, None
        if not self.causal:
            raise ValueError("segment_ids (sequence packing) needs causal attention")
        check_segment_ids(segment_ids, tuple(x.shape[:2]))
        segment_ids = segment_ids.to(x.device)
        if self.rope is not None and x.shape[1] > self.rope.max_seq_len:
            raise ValueError(f"T={x.shape[1]} exceeds the RoPE table ({self.rope.max_seq_len})")
        return segment_positions(segment_ids), segment_causal_mask(segment_ids)[:, None]

    def forward(self, x: torch.Tensor, *, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) → (B, T, D).

        ``segment_ids`` (B, T) integer (sequence packing): each run of equal ids is its own
        sequence — attention stays inside it and RoPE positions restart at its first token.
        Wrong shape or dtype → ValueError / TypeError; non-causal attention → ValueError.
        """
        positions, mask = self._packing(x, segment_ids)
        q, k, v = self._project(x, positions=positions)
        return self._merge_heads(self._attend(q, k, v, mask))

    def attention_weights(
        self, x: torch.Tensor, *, segment_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, D) → (B, H, T, T) softmax weights (no dropout), scaled by 1/√(D/H).

        Always the explicit formula (:func:`attend`), whatever ``attention_impl``/``fused``;
        ``segment_ids`` as in :meth:`forward` (weights zero across segments)."""
        positions, mask = self._packing(x, segment_ids)
        q, k, v = self._project(x, positions=positions)
        if mask is None and self.causal:
            mask = causal_mask(x.shape[1], device=x.device)
        return attend(q, self._expand_kv(k), self._expand_kv(v), mask, return_weights=True)[1]

    def forward_cached(
        self, x_t: torch.Tensor, cache: LayerKVCache
    ) -> tuple[torch.Tensor, LayerKVCache]:
        """One new position: x_t (B, 1, D) → (out (B, 1, D), cache with one more position).

        Equals the matching row of the full forward within 1e-5. More than one position →
        ValueError (use :meth:`forward_prefill`); non-causal attention → ValueError.
        """
        if x_t.dim() != 3 or x_t.shape[1] != 1:
            raise ValueError(
                f"forward_cached takes one new position x_t (B, 1, D), got {tuple(x_t.shape)}; "
                "use forward_prefill for a prompt"
            )
        return self.forward_prefill(x_t, cache)

    def forward_prefill(
        self,
        x: torch.Tensor,
        cache: LayerKVCache,
        *,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LayerKVCache]:
        """Any number of new positions: x (B, T_new, D) → (out (B, T_new, D), cache).

        New positions continue from ``cache.length`` (RoPE offset, causal mask shifted) and
        their keys/values are appended to the cache (``cache.append``; a pre-allocated cache
        such as ``g2c.inference.StaticKVCache``'s layers writes them in place). Batched
        decoding with padding passes ``positions`` (B, T_new) long, each token's RoPE position,
        and ``mask`` (B, 1, T_new, T_k) bool, True = hidden (:func:`cache_attention_mask`),
        which replaces the causal mask. Non-causal attention → ValueError.
        """
        if not self.causal:
            raise ValueError("a KV cache needs causal attention (causal=True)")
        q, k_new, v_new = self._project(x, offset=cache.length, positions=positions)
        cache.append(k_new, v_new)  # now (B, H_kv, offset + T_new, hd)
        return self._merge_heads(self._attend(q, cache.keys, cache.values, mask)), cache

    def extra_repr(self) -> str:
        """Short description shown by ``repr``."""
        return (
            f"{self.embedding_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
            f"causal={self.causal}, impl={self.attention_impl!r}, fused={self.fused}"
        )
