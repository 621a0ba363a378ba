"""16B synthetic instruction data — any backend as the teacher (self-instruct).

- :mod:`g2c.synth.data`: the pieces — :func:`build_instruction_prompt`,
  :func:`parse_numbered_list`, :func:`build_response_prompt`, :func:`validate_pair`,
  :func:`ngram_overlap`, :func:`dedupe_pairs` (against the seeds and each other).
- :mod:`g2c.synth.pipeline`: :func:`synthesize_dataset` (rounds of propose → dedupe →
  answer → validate, with a funnel count), :func:`load_teacher` (a MODEL string → a
  :class:`g2c.inference.Backend`), chat-JSONL storage (:func:`write_pairs_jsonl`,
  :func:`read_pairs_jsonl`); :func:`seed_tasks` — the 175 self-instruct seed tasks.
"""

from g2c.data import load_self_instruct
from g2c.synth.data import (
    MAX_CHARS,
    MIN_INSTRUCTION_WORDS,
    UNDOABLE_WORDS,
    NgramIndex,
    as_pair,
    build_instruction_prompt,
    build_response_prompt,
    dedupe_pairs,
    ngram_overlap,
    parse_numbered_list,
    validate_pair,
)
from g2c.synth.pipeline import (
    APIS,
    FUNNEL_KEYS,
    load_teacher,
    pair_record,
    read_pairs_jsonl,
    served_model,
    synthesize_dataset,
    write_pairs_jsonl,
)


def seed_tasks(part: str = "seed") -> list[dict[str, str]]:
    """The self-instruct seed tasks (``part`` "seed": 175, "user_oriented": 252) as
    ``{"user", "assistant"}`` pairs (through :func:`g2c.data.load_self_instruct`)."""
    return [as_pair(c) for c in load_self_instruct(part)]


__all__ = [
    "APIS",
    "FUNNEL_KEYS",
    "MAX_CHARS",
    "MIN_INSTRUCTION_WORDS",
    "UNDOABLE_WORDS",
    "NgramIndex",
    "as_pair",
    "build_instruction_prompt",
    "build_response_prompt",
    "dedupe_pairs",
    "load_teacher",
    "ngram_overlap",
    "pair_record",
    "parse_numbered_list",
    "read_pairs_jsonl",
    "seed_tasks",
    "served_model",
    "synthesize_dataset",
    "validate_pair",
    "write_pairs_jsonl",
]
