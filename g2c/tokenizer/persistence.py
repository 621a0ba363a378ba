"""Tokenizer artifacts: a tokenizer, the token ids of a corpus, and a manifest, in one directory.

Layout written by :func:`save_artifact` (all files atomic, via :mod:`g2c.artifacts`)::

    DIR/manifest.json    {"format": "g2c.tokenizer", "format_version": 1, "tokenizer_class": ...,
                          "vocab_size": V, "num_tokens": N, ...caller's fields}
    DIR/tokenizer.json   tok.to_dict()   (BPE: {"format": "g2c.bpe", "version": 2, ...})
    DIR/tokens.bin       the ids, uint16/uint32 little-endian (+ tokens.bin.json sidecar),
                         written by g2c.data's save_token_ids (one format, one place)

Shapes: ids are a 1-D stream of N token ids; :func:`load_artifact` returns them as a (N,)
``torch.long`` tensor (or None when the artifact has no ids).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from g2c.artifacts import read_manifest, write_manifest
from g2c.data import load_token_ids, save_token_ids
from g2c.tokenizer.formats import TOKENIZER_FILE

ARTIFACT_FORMAT = "g2c.tokenizer"
TOKENS_FILE = "tokens.bin"


def save_artifact(
    tok: Any,
    ids: Sequence[int] | Any | None,
    manifest: Mapping[str, Any] | None,
    dir: str | os.PathLike,
) -> Path:
    """Write ``tok`` (needs ``save``/``to_dict``), optional ``ids`` (N,) and ``manifest`` to ``dir``.

    ``manifest`` holds JSON-serialisable fields (data name, config, timings ...); the keys
    ``format``/``format_version`` are reserved (ValueError). Returns ``dir`` as a Path.
    """
    if not callable(getattr(tok, "save", None)) or not callable(getattr(tok, "to_dict", None)):
        raise TypeError(
            f"tok must be a g2c tokenizer with save()/to_dict(), got {type(tok).__name__}"
        )
    fields = dict(manifest or {})
    reserved = {"format", "format_version"} & set(fields)
    if reserved:
        raise ValueError(f"manifest must not set {sorted(reserved)}: save_artifact writes them")
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    tok.save(dir / TOKENIZER_FILE)
    num_tokens = None
    if ids is not None:
        save_token_ids(dir / TOKENS_FILE, ids)
        num_tokens = len(ids)
    write_manifest(
        dir,
        ARTIFACT_FORMAT,
        tokenizer_class=type(tok).__name__,
        tokenizer_format=tok.to_dict().get("format"),
        vocab_size=tok.vocab_size,
        num_tokens=num_tokens,
        tokenizer_file=TOKENIZER_FILE,
        tokens_file=TOKENS_FILE if ids is not None else None,
        **fields,
    )
    return dir


def load_artifact(cls: type, dir: str | os.PathLike) -> tuple[Any, Any, dict]:
    """Read an artifact written by :func:`save_artifact`: returns ``(tok, ids, manifest)``.

    ``cls`` is the tokenizer class (``BPETokenizer`` or ``CharTokenizer``); ``ids`` is a (N,)
    ``torch.long`` tensor or None. Missing directory/manifest → FileNotFoundError; another
    format or version, or a tokenizer of another class → ValueError.
    """
    dir = Path(dir)
    manifest = read_manifest(dir, ARTIFACT_FORMAT)
    tok = cls.load(dir / manifest.get("tokenizer_file", TOKENIZER_FILE))
    ids = None
    if manifest.get("tokens_file"):
        ids = load_token_ids(dir / manifest["tokens_file"])
    return tok, ids, manifest


__all__ = ["load_artifact", "load_token_ids", "save_artifact", "save_token_ids"]
