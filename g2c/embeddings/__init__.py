"""05 embeddings — token tables, learned / sinusoidal / rotary positions, and word vectors."""

from g2c.embeddings.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    TokenEmbedding,
    rotate_half,
    sinusoidal_table,
)

__all__ = [
    "TokenEmbedding",
    "LearnedPositionalEmbedding",
    "SinusoidalPositionalEmbedding",
    "RotaryEmbedding",
    "rotate_half",
    "sinusoidal_table",
]
