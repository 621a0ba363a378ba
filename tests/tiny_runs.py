"""Saving a tiny in-process model as a g2c run directory, for the tests that load one the way
a user does (``load_model(run)``, ``g2c chat RUN``, ``g2c serve RUN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import RUN_FORMAT, write_manifest


def save_tiny_run(
    run: Path, model: Any, tok: Any, *, name: str, family: str = "Tiny",
    never_end: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    """Write ``model`` (weights), ``tok`` (tokenizer.json) and a run manifest to ``run``;
    ``never_end`` special tokens get a -1e4 head bias first, so replies never stop by
    themselves (they run to max_new_tokens). Returns ``run``."""
    with torch.no_grad():
        for token in never_end:
            model.head_bias[tok.special_to_id[token]] = -1e4
    model.save_pretrained(run)
    tok.save(run / "tokenizer.json")
    write_manifest(run, RUN_FORMAT, name=name, family=family, num_parameters=1)
    return run
