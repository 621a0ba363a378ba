"""09 transformer — norms, feed-forwards, the transformer block and TransformerLM.

GPT-2 (Radford et al. 2019) by default; RoPE / RMSNorm / SwiGLU / grouped-query switches give a
Llama-style model (Touvron et al. 2023) that loads SmolLM2 exactly. Shapes: (B, T) ids →
(B, T, V) logits.
"""

from g2c.attention import LayerKVCache
from g2c.transformer.layers import (
    Block,
    FeedForward,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    make_norm,
    swiglu_hidden_dim,
)
from g2c.transformer.model import POSITIONALS, TransformerConfig, TransformerLM

__all__ = [
    "LayerNorm",
    "RMSNorm",
    "FeedForward",
    "SwiGLU",
    "Block",
    "TransformerConfig",
    "TransformerLM",
    "LayerKVCache",
    "POSITIONALS",
    "make_norm",
    "swiglu_hidden_dim",
]
