"""A run directory: where every file of one training run lives, and how it is read back.

    RUN/run_config.json     the RunConfig actually used (max_steps resolved from the budget)
    RUN/tokenizer.json      the tokenizer (BPE: {"format": "g2c.bpe", ...}; char: g2c.char)
    RUN/train.bin, val.bin  token ids of the two splits (uint16/uint32 + .json sidecars)
    RUN/checkpoint.pt       trainer checkpoint (atomic; weights_only-loadable) for resume
    RUN/metrics.jsonl       one line per logged step (the Trainer's log events)
    RUN/samples.jsonl       samples taken every N steps and at the end
    RUN/stages.json         per-stage wall time and results (accumulated across resumes)
    RUN/model.safetensors   final weights (+ config.json), TransformerLM.save_pretrained
    RUN/manifest.json       format "g2c.run": name, family, parameters, metrics, configs
    RUN/loss.png, lr.png, grad_norm.png, report.md

All writes go through :mod:`g2c.artifacts` (temp file + rename).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from g2c.artifacts import RUN_FORMAT as RUN_FORMAT  # re-exported: the run manifest format
from g2c.artifacts import atomic_write_json, atomic_write_text

FILES = {
    "run_config": "run_config.json",
    "tokenizer": "tokenizer.json",
    "train_ids": "train.bin",
    "val_ids": "val.bin",
    "checkpoint": "checkpoint.pt",
    "metrics": "metrics.jsonl",
    "samples": "samples.jsonl",
    "stages": "stages.json",
    "weights": "model.safetensors",
    "report": "report.md",
}


class RunDir:
    """Paths and small read/write helpers for one run directory ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __getattr__(self, name: str) -> Path:
        if name in FILES:
            return self.root / FILES[name]
        raise AttributeError(name)

    def exists(self) -> bool:
        """True when the directory holds a run (its ``run_config.json``)."""
        return self.run_config.is_file()

    def read_json(self, path: Path, default: Any = None) -> Any:
        """Parse a JSON file of the run, or ``default`` when absent."""
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default

    def read_jsonl(self, path: Path) -> list[dict]:
        """All records of a JSON-lines file (skips a torn last line after a hard kill)."""
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_jsonl(self, path: Path, max_step: int) -> None:
        """Drop records with ``step > max_step`` (they came after the checkpoint we resume)."""
        records = [r for r in self.read_jsonl(path) if int(r.get("step", 0)) <= max_step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))

    def load_stages(self) -> dict[str, dict]:
        """``stages.json`` as a dict (empty when absent)."""
        return self.read_json(self.stages, {}) or {}

    def update_stage(self, name: str, **fields: Any) -> dict:
        """Merge ``fields`` into stage ``name`` of ``stages.json`` (atomic)."""
        stages = self.load_stages()
        stages.setdefault(name, {}).update(fields)
        atomic_write_json(self.stages, stages)
        return stages

    def clear(self) -> None:
        """Delete the run's own files (the files listed in :data:`FILES`, plots, manifest)."""
        for name in (*FILES.values(), "manifest.json", "config.json", "loss.png", "lr.png",
                     "grad_norm.png", "train.bin.json", "val.bin.json"):  # fmt: skip
            (self.root / name).unlink(missing_ok=True)
