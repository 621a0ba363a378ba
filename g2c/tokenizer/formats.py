"""The JSON file format every g2c tokenizer family writes: a header check and a reader.

Each tokenizer's ``to_dict`` starts with ``{"format": "g2c.<family>", "version": N, ...}``;
``from_dict`` refuses another format or version rather than misreading it. ``save`` writes that
dict atomically (``g2c.artifacts.atomic_write_json``) and ``load`` reads it back as plain JSON,
never by unpickling; a damaged file raises ``g2c.artifacts.ArtifactError`` naming it. No tensors
here: ``import g2c.tokenizer`` stays free of torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from g2c.artifacts import read_json

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_HINT = "re-train or re-save the tokenizer, or delete the directory that holds it"


def check_format(d: Any, fmt: str, version: int) -> None:
    """Raise ValueError unless ``d`` is a dict with ``d["format"] == fmt`` and
    ``d["version"] == version`` (the message shows what was found instead)."""
    if not isinstance(d, dict) or d.get("format") != fmt or d.get("version") != version:
        got = (d.get("format"), d.get("version")) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"expected format {fmt!r} version {version}, got {got}")


def read_tokenizer_json(path: str | os.PathLike) -> Any:
    """Parse the JSON tokenizer file at ``path`` (a directory means ``path/tokenizer.json``).

    A missing file → FileNotFoundError naming the path; a damaged file (not UTF-8 JSON) →
    ``g2c.artifacts.ArtifactError`` (a ValueError) naming it and what to do instead.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return read_json(path, TOKENIZER_HINT)
