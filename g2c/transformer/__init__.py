"""09 transformer — norms, feed-forwards, the transformer block and TransformerLM.

GPT-2 (Radford et al. 2019) by default; RoPE / RMSNorm / SwiGLU / grouped-query switches give a
Llama-style model (Touvron et al. 2023) that loads SmolLM2 exactly. Shapes: (B, T) ids →
(B, T, V) logits. One :class:`TransformerConfig` describes a model and is handed down to every
layer; ``fused=True`` (default) runs the fast kernels, ``fused=False`` the reference.
"""

from g2c.attention import LayerKVCache
from g2c.transformer.config import POSITIONALS, TransformerConfig
from g2c.transformer.layers import (
    FEED_FORWARDS,
    NORMS,
    Block,
    FeedForward,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    make_feed_forward,
    make_norm,
    swiglu_hidden_dim,
)
from g2c.transformer.loading import LoadedModel, load_model
from g2c.transformer.model import (
    INITS,
    POSITIONAL_EMBEDDINGS,
    KVCache,
    TransformerLM,
    course_init,
    gpt2_init,
)

__all__ = [
    "LayerNorm",
    "RMSNorm",
    "FeedForward",
    "SwiGLU",
    "Block",
    "TransformerConfig",
    "TransformerLM",
    "LayerKVCache",
    "KVCache",
    "POSITIONALS",
    "POSITIONAL_EMBEDDINGS",
    "NORMS",
    "FEED_FORWARDS",
    "INITS",
    "make_norm",
    "make_feed_forward",
    "course_init",
    "gpt2_init",
    "swiglu_hidden_dim",
    "load_model",
    "LoadedModel",
]
