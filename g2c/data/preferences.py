"""Preference-pair loaders: Anthropic HH-RLHF (harmless) and TruthfulQA-derived pairs.

Each loader returns a list of plain dicts ``{"prompt": messages, "chosen": str, "rejected":
str}`` where ``messages`` is a list of ``{"role": "user" | "assistant", "content": str}`` that
ends with the user turn both replies answer — the format chat templates render and
``g2c.dpo`` tokenises. Files are found through the registry (``$G2C_DATA_DIR`` first; see
``g2c.data.resolution``).

- ``load_hh_rlhf``: the "\\n\\nHuman: … \\n\\nAssistant: …" transcripts; the shared prompt is
  everything before the last "\\n\\nAssistant:" of the chosen transcript (the rejected one must
  share it), chosen/rejected are the final assistant replies. Pairs whose transcripts differ
  before that point, whose replies are empty or identical are skipped and counted (``stats``).
- ``load_truthfulqa_pairs``: one pair per (question, incorrect answer): chosen = the best
  answer, rejected = an incorrect one (Lin et al. 2021, TruthfulQA.csv columns).
- ``split_pairs_by_prompt``: a held-out split that keeps every pair of one prompt on one side.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

from g2c.data.chat import parse_hh_transcript
from g2c.data.resolution import dataset_file

HH_FILES = {"harmless-base/test": "harmless-base-test.jsonl.gz"}


def hh_pair(chosen: str, rejected: str) -> dict[str, Any] | str:
    """One HH record → ``{"prompt", "chosen", "rejected"}``, or the reason it is skipped
    ("prefix", "empty", "identical")."""
    cut = chosen.rfind("\n\nAssistant:")
    if cut < 0 or not rejected.startswith(chosen[: cut + len("\n\nAssistant:")]):
        return "prefix"
    head = chosen[:cut]
    start = cut + len("\n\nAssistant:")
    reply_c, reply_r = chosen[start:].strip(), rejected[start:].strip()
    if not reply_c or not reply_r:
        return "empty"
    if reply_c == reply_r:
        return "identical"
    prompt = parse_hh_transcript(head)
    if prompt[-1]["role"] != "user":
        return "prefix"
    return {"prompt": prompt, "chosen": reply_c, "rejected": reply_r}


def load_hh_rlhf(
    path: str | os.PathLike | None = None,
    *,
    subset: str = "harmless-base/test",
    limit: int | None = None,
    stats: dict | None = None,
    download: bool = True,
) -> list[dict[str, Any]]:
    """HH-RLHF preference pairs (registry "hh-rlhf"; MIT; offensive text by design).

    ``path``: the dataset directory or a data root (default: the registry's resolution).
    ``subset``: one of ``HH_FILES``. ``limit``: keep the first ``limit`` usable pairs.
    ``stats`` (a dict, filled in): total, kept, skipped_prefix, skipped_empty,
    skipped_identical. Unknown subset / bad limit → ValueError; missing file →
    FileNotFoundError saying where to put it.
    """
    if subset not in HH_FILES:
        raise ValueError(f"subset must be one of {sorted(HH_FILES)}, got {subset!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
    file = dataset_file("hh-rlhf", HH_FILES[subset], path=path, download=download)
    counts = {"total": 0, "kept": 0, "skipped_prefix": 0, "skipped_empty": 0,
              "skipped_identical": 0}  # fmt: skip
    pairs = []
    opener = gzip.open if Path(file).suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            counts["total"] += 1
            pair = hh_pair(record["chosen"], record["rejected"])
            if isinstance(pair, str):
                counts[f"skipped_{pair}"] += 1
                continue
            pairs.append(pair)
            if limit is not None and len(pairs) >= limit:
                break
    counts["kept"] = len(pairs)
    if stats is not None:
        stats.update(counts)
    return pairs


def load_truthfulqa_pairs(
    path: str | os.PathLike | None = None, *, download: bool = True
) -> list[dict[str, Any]]:
    """TruthfulQA preference pairs (registry "truthfulqa"; Apache-2.0): for each of the 817
    questions and each of its incorrect answers, ``{"prompt": [{"role": "user", "content":
    question}], "chosen": best answer, "rejected": incorrect answer, "category": ...}``.
    Answers in the CSV are "; "-separated. Missing file → FileNotFoundError."""
    file = dataset_file("truthfulqa", "TruthfulQA.csv", path=path, download=download)
    pairs = []
    with open(file, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            best = row["Best Answer"].strip()
            for wrong in row["Incorrect Answers"].split(";"):
                wrong = wrong.strip()
                if wrong and wrong != best:
                    pairs.append({
                        "prompt": [{"role": "user", "content": row["Question"].strip()}],
                        "chosen": best,
                        "rejected": wrong,
                        "category": row["Category"],
                    })  # fmt: skip
    return pairs


def split_pairs_by_prompt(
    pairs: list[dict[str, Any]], held_out_fraction: float = 0.1, *, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held_out): prompts shuffled with ``seed``, about ``held_out_fraction`` of them
    (at least one) held out with all their pairs — no prompt on both sides. Fraction outside
    (0, 1) or fewer than 2 distinct prompts → ValueError."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be between 0 and 1, got {held_out_fraction!r}")
    keys = list(dict.fromkeys(_prompt_key(p) for p in pairs))
    if len(keys) < 2:
        raise ValueError("pairs must hold at least 2 distinct prompts to split")
    random.Random(seed).shuffle(keys)
    held = set(keys[: max(1, round(held_out_fraction * len(keys)))])
    train = [p for p in pairs if _prompt_key(p) not in held]
    return train, [p for p in pairs if _prompt_key(p) in held]


def _prompt_key(pair: dict[str, Any]) -> tuple:
    return tuple((m["role"], m["content"]) for m in pair["prompt"])


__all__ = [
    "HH_FILES",
    "hh_pair",
    "load_hh_rlhf",
    "load_truthfulqa_pairs",
    "parse_hh_transcript",
    "split_pairs_by_prompt",
]
