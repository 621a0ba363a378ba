"""The word-vector stage behind ``g2c vectors train``: skip-gram (negative sampling) vectors
trained on a corpus or a text file, saved with their analogy accuracy.

``run(config, out, data=..., text_file=...)``: validate the ``SkipGramConfig`` and the data
choice, open the run directory, train (``g2c.embeddings.train_skipgram``), evaluate on the
built-in analogy list, write ``vectors.safetensors`` + ``vocab.json`` + ``manifest.json``
(config, data, metrics), ``metrics.jsonl`` (one line per logged step) and ``stages.json``.
Library code: progress goes to ``on_progress(step, total, info)``; nothing is printed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from g2c.artifacts import append_jsonl
from g2c.data import load_corpus
from g2c.embeddings import (
    SkipGramConfig,
    WordVectors,
    evaluate_analogies,
    save_word_vectors,
    train_skipgram,
)
from g2c.runs.stage import Stage, check


@dataclasses.dataclass
class VectorsResult:
    """What :func:`run` returns: the vectors, the training history of ``train_skipgram``, the
    analogy evaluation (``evaluate_analogies``), the data description and the directory."""

    vectors: WordVectors
    history: dict[str, Any]
    analogies: dict[str, Any]
    data: str
    out: Path


def data_names(data: str | list[str]) -> list[str]:
    """Dataset names from ``"a,b"`` or a list; none → ValueError naming ``--data``."""
    names = [n.strip() for n in (data.split(",") if isinstance(data, str) else data) if n.strip()]
    check(bool(names), "--data", "must name at least one dataset, e.g. --data gutenberg")
    return names


def run(
    config: SkipGramConfig,
    out: str | Path,
    *,
    data: str | list[str] = "gutenberg",
    text_file: str | Path | None = None,
    data_path: str | Path | None = None,
    on_progress: Callable[[int, int, dict], None] | None = None,
    on_event: Callable[[str, dict], None] | None = None,
) -> VectorsResult:
    """Train skip-gram vectors on ``text_file`` (or the ``data`` corpus) into ``out``.

    Bad config, an empty ``data`` or a missing ``text_file`` → ValueError / FileNotFoundError
    before anything is written. The directory is started afresh (no resume).
    """
    config.validate()
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise FileNotFoundError(f"--text-file not found: {path}")
        names, source = [], str(path)
    else:
        names = data_names(data)
        source = ",".join(names)
    stage = Stage(out, "vectors", on_event)
    stage.open(dataclasses.asdict(config), fresh=True)
    rd = stage.rd
    with stage.part("data") as info:
        text = (
            path.read_text(encoding="utf-8")
            if text_file is not None
            else load_corpus(names, data_path)
        )
        info["chars"] = len(text)

    def progress(step: int, total: int, info: dict) -> None:
        append_jsonl(rd.metrics, {"step": step, **info})
        if on_progress is not None:
            on_progress(step, total, info)

    with stage.part("training") as info:
        wv, hist = train_skipgram(text, config, callback=progress, log_every=50)
        info.update(steps=hist["steps"], tokens=hist["tokens"], vocab_size=hist["vocab_size"])
    with stage.part("evaluation") as info:
        res = evaluate_analogies(wv)
        info["analogy_accuracy"] = res["accuracy"]
    save_word_vectors(
        wv, rd.root, config=hist["config"], data=source, stage="vectors", parent=None,
        total_seconds=stage.seconds(),
        metrics={
            "final_loss_per_pair": hist["losses"][-1][1],
            "analogy_accuracy": res["accuracy"],
            "analogy_asked": res["total"],
            "steps": hist["steps"],
            "pairs_seen": hist["pairs_seen"],
            "tokens": hist["tokens"],
            "seconds": hist["seconds"],
        },
    )  # fmt: skip
    return VectorsResult(wv, hist, res, source, rd.root)
