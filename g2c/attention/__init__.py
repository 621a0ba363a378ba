"""07–08 attention — scaled dot-product self-attention, multi-head / grouped-query, KV cache.

Vaswani et al. 2017 ("Attention Is All You Need"); grouped-query attention from Ainslie et al.
2023; rotary positions from Su et al. 2021. Shapes: (B, T, D) in, (B, T, D) out.
"""

from g2c.attention.attention import (
    ATTENTION_IMPLS,
    LayerKVCache,
    MultiHeadAttention,
    SelfAttention,
    attend,
    causal_mask,
    linear,
    softmax,
)

__all__ = [
    "ATTENTION_IMPLS",
    "SelfAttention",
    "MultiHeadAttention",
    "LayerKVCache",
    "attend",
    "causal_mask",
    "linear",
    "softmax",
]
