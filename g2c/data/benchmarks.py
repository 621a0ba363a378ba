"""Loaders for the multiple-choice benchmark files: plain dicts, one per question, file order.

Files are found through the registry (``$G2C_DATA_DIR`` first; see ``g2c.data.resolution``);
``path=`` names an explicit dataset directory. ``g2c.eval.tasks`` turns these dicts into prompts.

- ``load_openbookqa(split)``: ``{"id", "question_stem", "choices", "labels", "answerKey"}``
  (test: evals/openbookqa.jsonl; validation: openbookqa/dev_complete.jsonl, with ``fact1``).
- ``load_arc(subset, split)``: ``{"id", "question", "choices", "labels", "answerKey"}``.
- ``load_mmlu(subject, split)``: ``{"question", "choices" (4), "answer" (0-3), "subject"}``.
- ``load_hellaswag()``: ``{"query", "choices" (4), "label"}`` — the file's text form is already
  preprocessed ("activity_label: context"; see SOURCES.md).
- ``load_piqa()``: ``{"goal", "sol1", "sol2", "label"}`` (dev split).
- ``load_truthfulqa_mc()``: ``{"question", "best_answer", "correct_answers",
  "incorrect_answers"}`` from TruthfulQA.csv ("; "-separated answer lists).

A malformed file (bad JSON, a missing field, a wrong column count, a label out of range) →
ValueError naming the file and line; an empty file → ValueError naming the file.
"""

from __future__ import annotations

import bz2
import csv
import json
import os
from pathlib import Path
from typing import Any

from g2c.data.registry import get_dataset
from g2c.data.resolution import dataset_file

#: The 57 MMLU subjects, in the registry's (alphabetical) order.
MMLU_SUBJECTS: tuple[str, ...] = tuple(
    f.name[len("test/") : -len("_test.csv")]
    for f in get_dataset("mmlu").files
    if f.name.startswith("test/")
)


def _bad(path: Path, line: int, what: str) -> ValueError:
    return ValueError(f"{path}: line {line}: {what}")


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _bad(path, n, f"not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise _bad(path, n, "expected a JSON object")
            missing = [k for k in required if k not in row]
            if missing:
                raise _bad(path, n, f"missing field(s) {', '.join(missing)}")
            rows.append((n, row))
    if not rows:
        raise ValueError(f"{path}: the file holds no records")
    return rows


def _check_key(path: Path, n: int, labels: list[str], key: str) -> None:
    if key.strip() not in [lab.strip() for lab in labels]:
        raise _bad(path, n, f"answerKey {key!r} is not one of the labels {labels}")


def _choices(path: Path, n: int, value: Any) -> tuple[list[str], list[str]]:
    """OpenBookQA's list of {text, label} or ARC's {text: [...], label: [...]}."""
    if isinstance(value, list) and all(isinstance(c, dict) for c in value):
        try:
            return [c["text"] for c in value], [c["label"] for c in value]
        except KeyError as exc:
            raise _bad(path, n, f"choice without {exc.args[0]!r}") from None
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        texts, labels = value["text"], value.get("label")
        if isinstance(labels, list) and len(labels) == len(texts):
            return list(texts), list(labels)
    raise _bad(path, n, "choices must be [{text, label}, ...] or {text: [...], label: [...]}")


def load_openbookqa(
    split: str = "test", *, path: str | os.PathLike | None = None, download: bool = True
) -> list[dict[str, Any]]:
    """OpenBookQA ``split`` ("test": 500 questions; "validation": 500, with ``fact1``)."""
    files = {
        "test": ("openbookqa", "openbookqa.jsonl"),
        "validation": ("openbookqa-additional", "dev_complete.jsonl"),
    }
    if split not in files:
        raise ValueError(f"split must be one of {', '.join(files)}, got {split!r}")
    file = dataset_file(*files[split], path=path, download=download)
    out = []
    for n, row in _read_jsonl(file, ("id", "question", "answerKey")):
        q = row["question"]
        if not isinstance(q, dict) or "stem" not in q or "choices" not in q:
            raise _bad(file, n, "question must be an object with stem and choices")
        texts, labels = _choices(file, n, q["choices"])
        _check_key(file, n, labels, row["answerKey"])
        rec = {"id": row["id"], "question_stem": q["stem"], "choices": texts, "labels": labels}
        rec["answerKey"] = row["answerKey"]
        if "fact1" in row:
            rec["fact1"] = row["fact1"]
        out.append(rec)
    return out


def load_arc(
    subset: str = "easy",
    split: str = "test",
    *,
    path: str | os.PathLike | None = None,
    download: bool = True,
) -> list[dict[str, Any]]:
    """ARC ``subset`` ("easy" | "challenge"), ``split`` ("test" | "validation")."""
    names = {"easy": "ARC-Easy", "challenge": "ARC-Challenge"}
    if subset not in names:
        raise ValueError(f"subset must be 'easy' or 'challenge', got {subset!r}")
    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    file = dataset_file("arc", f"{names[subset]}-{split}.jsonl", path=path, download=download)
    out = []
    for n, row in _read_jsonl(file, ("id", "question", "choices", "answerKey")):
        texts, labels = _choices(file, n, row["choices"])
        _check_key(file, n, labels, row["answerKey"])
        out.append(
            {
                "id": row["id"],
                "question": row["question"],
                "choices": texts,
                "labels": labels,
                "answerKey": row["answerKey"],
            }
        )
    return out


def load_mmlu(
    subject: str,
    split: str = "test",
    *,
    path: str | os.PathLike | None = None,
    download: bool = True,
) -> list[dict[str, Any]]:
    """MMLU ``subject`` (one of :data:`MMLU_SUBJECTS`), ``split`` ("test" | "dev")."""
    if subject not in MMLU_SUBJECTS:
        raise ValueError(f"unknown MMLU subject {subject!r}; known: {', '.join(MMLU_SUBJECTS)}")
    if split not in ("test", "dev"):
        raise ValueError(f"split must be 'test' or 'dev', got {split!r}")
    file = dataset_file("mmlu", f"{split}/{subject}_{split}.csv", path=path, download=download)
    out = []
    with open(file, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        expected = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
        if header != expected:
            raise _bad(file, 1, f"header must be {','.join(expected)}, got {header}")
        for row in reader:
            n = reader.line_num
            if len(row) != 6:
                raise _bad(file, n, f"expected 6 columns, got {len(row)}")
            if row[5].strip() not in ("0", "1", "2", "3"):
                raise _bad(file, n, f"answer must be 0-3, got {row[5]!r}")
            out.append(
                {
                    "question": row[0],
                    "choices": row[1:5],
                    "answer": int(row[5]),
                    "subject": subject,
                }
            )
    if not out:
        raise ValueError(f"{file}: the file holds no records")
    return out


def load_hellaswag(
    *, path: str | os.PathLike | None = None, download: bool = True
) -> list[dict[str, Any]]:
    """HellaSwag validation (10,042 items) from the 6-lines-per-item text form."""
    file = dataset_file("hellaswag", "hellaswag_val_full.txt.bz2", path=path, download=download)
    with bz2.open(file, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{file}: the file holds no records")
    if len(lines) % 6:
        raise _bad(file, len(lines), f"{len(lines)} lines is not a multiple of 6 (one item = 6)")
    out = []
    for i in range(0, len(lines), 6):
        label = lines[i + 1].strip()
        if label not in ("0", "1", "2", "3"):
            raise _bad(file, i + 2, f"label must be 0-3, got {label!r}")
        out.append({"query": lines[i], "choices": lines[i + 2 : i + 6], "label": int(label)})
    return out


def load_piqa(*, path: str | os.PathLike | None = None, download: bool = True) -> list[dict]:
    """PIQA dev (1,838 items) with labels from dev-labels.lst (line i ↔ record i)."""
    file = dataset_file("piqa", "dev.jsonl", path=path, download=download)
    labels_file = dataset_file("piqa", "dev-labels.lst", path=path, download=download)
    rows = _read_jsonl(file, ("goal", "sol1", "sol2"))
    labels = Path(labels_file).read_text(encoding="utf-8").split()
    if len(labels) != len(rows):
        raise ValueError(f"{labels_file}: {len(labels)} labels for {len(rows)} items in {file}")
    out = []
    for k, ((_, row), label) in enumerate(zip(rows, labels), start=1):
        if label not in ("0", "1"):
            raise _bad(labels_file, k, f"label must be 0 or 1, got {label!r}")
        out.append({"goal": row["goal"], "sol1": row["sol1"], "sol2": row["sol2"]})
        out[-1]["label"] = int(label)
    return out


def _split_answers(text: str) -> list[str]:
    return [a.strip() for a in text.split(";") if a.strip()]


def load_truthfulqa_mc(
    *, path: str | os.PathLike | None = None, download: bool = True
) -> list[dict[str, Any]]:
    """TruthfulQA.csv (817 questions) as answer lists for the MC1/MC2 tasks."""
    file = dataset_file("truthfulqa", "TruthfulQA.csv", path=path, download=download)
    cols = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")
    out = []
    with open(file, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise _bad(file, 1, f"missing column(s) {', '.join(missing)}")
        for row in reader:
            n = reader.line_num
            if any(row.get(c) is None for c in cols):
                raise _bad(file, n, "too few columns")
            incorrect = _split_answers(row["Incorrect Answers"])
            if not row["Question"].strip() or not row["Best Answer"].strip() or not incorrect:
                raise _bad(file, n, "question, best answer and incorrect answers must be non-empty")
            out.append(
                {
                    "question": row["Question"].strip(),
                    "best_answer": row["Best Answer"].strip(),
                    "correct_answers": _split_answers(row["Correct Answers"]),
                    "incorrect_answers": incorrect,
                }
            )
    if not out:
        raise ValueError(f"{file}: the file holds no records")
    return out
