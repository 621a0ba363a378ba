"""TransformerConfig: every hyper-parameter of a TransformerLM, validated once, JSON round-trip.

The one object handed down to the blocks, the norms and the feed-forwards (as nanoGPT's
``GPTConfig``): each layer reads the fields it needs. The name tuples below are the choices
each switch accepts; ``layers.py`` / ``model.py`` hold the matching name → class tables.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from g2c.attention import ATTENTION_IMPLS

POSITIONALS = ("learned", "sinusoidal", "rope", "none")
NORM_NAMES = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
MLP_NAMES = ("gelu", "swiglu")
GELU_APPROXIMATIONS = ("none", "tanh")
INIT_NAMES = ("course", "gpt2")

_POSITIVE_INTS = ("vocab_size", "embedding_dim", "num_layers", "num_heads", "max_seq_len")
_CHOICES = {
    "positional": POSITIONALS,
    "norm": NORM_NAMES,
    "norm_position": NORM_POSITIONS,
    "mlp": MLP_NAMES,
    "attention_impl": ATTENTION_IMPLS,
    "gelu_approximate": GELU_APPROXIMATIONS,
    "init": INIT_NAMES,
}


@dataclass
class TransformerConfig:
    """Every hyper-parameter of a TransformerLM; ``to_dict``/``from_dict`` round-trip via JSON.

    Fields mirror :class:`~g2c.transformer.TransformerLM`'s arguments. Architecture:
    ``positional``, ``norm``, ``norm_position``, ``mlp``, ``num_kv_heads``, ``bias``,
    ``tie_embeddings``, ``rope_base``, ``norm_eps``, ``gelu_approximate`` ("none" = erf,
    "tanh" = GPT-2). Kernels (same numbers, different speed): ``fused`` (default True: torch's
    fused kernels for norms, GELU/SiLU, linears, the embedding lookup, the output layer and
    the attention formula; False = the from-scratch reference) and ``attention_impl``
    ("explicit" formula or "sdpa"). ``init``: "course" (default; every matrix N(0, 1/fan_in),
    the scale of the course's ``Linear``, so tiny models learn with plain SGD) or "gpt2"
    (N(0, 0.02), residual projections N(0, 0.02/√(2L))).

    Every field is checked here, once; a bad value → ValueError naming the field.
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
    fused: bool = True
    init: str = "course"

    def __post_init__(self) -> None:
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"embedding_dim ({self.embedding_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
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
        kv = self.kv_heads
        if not isinstance(kv, int) or kv <= 0 or self.num_heads % kv:
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

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``num_kv_heads``, or H when None."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @classmethod
    def for_block(
        cls, embedding_dim: int, num_heads: int, hidden_dim: int | None = None, **switches
    ) -> TransformerConfig:
        """Config of a lone :class:`~g2c.transformer.Block`: the block fields, with 1 for the
        model-level sizes (vocab_size, num_layers, max_seq_len) a block does not use."""
        return cls(1, embedding_dim, 1, num_heads, 1, hidden_dim, **switches)

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
