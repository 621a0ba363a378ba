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
    attend_fused,
    attend_sdpa,
    cache_attention_mask,
    causal_mask,
    check_segment_ids,
    linear,
    offset_causal_mask,
    rope_at_positions,
    segment_causal_mask,
    segment_positions,
    softmax,
)

__all__ = [
    "ATTENTION_IMPLS",
    "SelfAttention",
    "MultiHeadAttention",
    "LayerKVCache",
    "attend",
    "attend_fused",
    "attend_sdpa",
    "causal_mask",
    "cache_attention_mask",
    "offset_causal_mask",
    "segment_causal_mask",
    "segment_positions",
    "check_segment_ids",
    "rope_at_positions",
    "linear",
    "softmax",
]
