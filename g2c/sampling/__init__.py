"""11 sampling — turning next-token logits into text.

- Filters: ``apply_temperature``, ``top_k_filter``, ``top_p_filter`` (nucleus),
  ``apply_repetition_penalty`` (CTRL).
- ``generate`` / ``stream_generate``: autoregressive decoding with the KV cache, context
  cropping, eos and stop strings. ``beam_search`` with a length penalty.
- ``generate_cached``: the KV-cached loop written out (prefill, then one token at a time).
- ``StreamingDetokenizer``: ids → text as they arrive, UTF-8-safe, O(new tokens) per step.
- JSON-constrained decoding: ``JsonPrefixAutomaton`` (byte-level pushdown automaton),
  ``allowed_token_mask``, ``generate_json``.
"""

from g2c.sampling.beam import beam_search
from g2c.sampling.filters import (
    apply_repetition_penalty,
    apply_temperature,
    top_k_filter,
    top_p_filter,
)
from g2c.sampling.generate import (
    Decoder,
    generate,
    generate_cached,
    sample_next_token,
    stream_generate,
)
from g2c.sampling.json_constrained import (
    JsonPrefixAutomaton,
    allowed_token_mask,
    generate_json,
    token_vocab_bytes,
)
from g2c.sampling.streaming import StreamingDetokenizer

__all__ = [
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "apply_repetition_penalty",
    "generate",
    "generate_cached",
    "stream_generate",
    "StreamingDetokenizer",
    "sample_next_token",
    "Decoder",
    "beam_search",
    "JsonPrefixAutomaton",
    "allowed_token_mask",
    "generate_json",
    "token_vocab_bytes",
]
