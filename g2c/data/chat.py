"""Instruction data as conversations: lists of ``{"role", "content"}`` turns (module 13).

Each loader reads a registered dataset through :func:`g2c.data.dataset_file` (explicit path →
``$G2C_DATA_DIR`` → cache → verified download) and returns a list of conversations ready for
``g2c.sft.render_with_mask``:

- ``load_self_instruct(part)`` — Wang et al. 2023 (Apache-2.0): the 175 seed tasks and the 252
  user-oriented instructions. Instruction (+ the instance input, after a blank line) → user;
  the instance output → assistant. Both files carry one instance with an output per task (the
  user-oriented file holds the authors' reference outputs), so every task becomes one
  conversation; a task whose output is empty would be skipped (none is).
- ``load_gsm8k(split)`` — Cobbe et al. 2021 (MIT): question → user, worked answer (ending
  ``#### <number>``) → assistant.
- ``load_hh_rlhf_chosen()`` — Bai et al. 2022, harmless-base (MIT; offensive content by design):
  the *chosen* transcript ``"\\n\\nHuman: … \\n\\nAssistant: …"`` parsed into alternating turns.
  Only the test file of harmless-base is registered, so that is what is read.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

from g2c.data.resolution import dataset_file

Conversation = list[dict[str, str]]

SELF_INSTRUCT_FILES = {
    "seed": "self_instruct_seed_tasks_175.jsonl",
    "user_oriented": "self_instruct_user_oriented_252.jsonl",
}


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _user_turn(instruction: str, extra: str) -> str:
    instruction, extra = instruction.strip(), extra.strip()
    return f"{instruction}\n\n{extra}" if extra else instruction


def load_self_instruct(
    part: str = "seed", *, path: str | os.PathLike | None = None, download: bool = True
) -> list[Conversation]:
    """Self-instruct tasks as one-turn conversations; ``part`` "seed" (175) or
    "user_oriented" (252). Each instance → [user: instruction (+ "\\n\\n" + input), assistant:
    output]; instances with an empty output are skipped. Unknown part → ValueError; file
    missing and not downloadable → FileNotFoundError (from the registry)."""
    if part not in SELF_INSTRUCT_FILES:
        raise ValueError(f"part must be one of {list(SELF_INSTRUCT_FILES)}, got {part!r}")
    rows = _read_jsonl(dataset_file("self-instruct", SELF_INSTRUCT_FILES[part], path, download))
    out = []
    for row in rows:
        for inst in row.get("instances", []):
            output = inst.get("output", "").strip()
            if not output:
                continue
            out.append(
                [
                    {
                        "role": "user",
                        "content": _user_turn(row["instruction"], inst.get("input", "")),
                    },
                    {"role": "assistant", "content": output},
                ]
            )
    return out


def load_gsm8k(
    split: str = "train", *, path: str | os.PathLike | None = None, download: bool = True
) -> list[Conversation]:
    """GSM8K problems as [user: question, assistant: worked answer ending "#### N"];
    ``split`` "train" (7,473) or "test" (1,319). Unknown split → ValueError."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rows = _read_jsonl(dataset_file("gsm8k", f"{split}.jsonl", path, download))
    return [
        [
            {"role": "user", "content": r["question"].strip()},
            {"role": "assistant", "content": r["answer"].strip()},
        ]
        for r in rows
    ]


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_transcript(text: str) -> Conversation:
    """An hh-rlhf transcript ``"\\n\\nHuman: …\\n\\nAssistant: …"`` → alternating user /
    assistant turns (contents stripped; consecutive turns of one speaker merged with a blank
    line). Text before the first marker, or no marker at all → ValueError naming text."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError(f"text is not an hh-rlhf transcript ('\\n\\nHuman: ...'): {text[:60]!r}")
    turns: Conversation = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content.strip()
        else:
            turns.append({"role": role, "content": content.strip()})
    return turns


def load_hh_rlhf_chosen(
    *, path: str | os.PathLike | None = None, download: bool = True
) -> list[Conversation]:
    """The chosen side of hh-rlhf harmless-base (the registered test file, 2,312 pairs) as
    conversations; transcripts that end on a user turn or whose last assistant reply is empty
    are dropped (nothing to train on)."""
    rows = _read_jsonl(dataset_file("hh-rlhf", "harmless-base-test.jsonl.gz", path, download))
    out = []
    for r in rows:
        turns = parse_hh_transcript(r["chosen"])
        if turns and turns[-1]["role"] == "assistant" and turns[-1]["content"]:
            out.append(turns)
    return out


__all__ = ["load_gsm8k", "load_hh_rlhf_chosen", "load_self_instruct", "parse_hh_transcript"]
