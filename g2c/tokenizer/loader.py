"""One loader for every tokenizer g2c can read: ``load_tokenizer(path)``.

The JSON files g2c writes start with ``{"format": "g2c.<family>", "version": N}``; the format
name picks the class through :data:`TOKENIZER_FORMATS` (a table, so a new family is one line):

    g2c.bpe        BPETokenizer        (also GPT-2's tokenizer once re-saved by g2c)
    g2c.char       CharTokenizer
    g2c.wordpiece  WordPieceTokenizer
    g2c.unigram    UnigramTokenizer

GPT-2's own files (``vocab.json`` + ``merges.txt``, as in a Hugging Face GPT-2 directory, or
``gpt2_vocab.json`` + ``gpt2_merges.txt``) load as a :class:`BPETokenizer` with GPT-2's ids.
A GGUF file (recognised by its ``GGUF`` magic bytes; SmolLM2's) loads its byte-level BPE as a
:class:`BPETokenizer` with the GGUF's ids (:meth:`BPETokenizer.from_gguf`).
g2c writes no tiktoken file (``BPETokenizer.to_tiktoken`` builds an in-memory
``tiktoken.Encoding``), so there is no tiktoken format to read back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from g2c.artifacts import ArtifactError
from g2c.tokenizer.bpe import BPETokenizer
from g2c.tokenizer.char import CharTokenizer
from g2c.tokenizer.formats import TOKENIZER_FILE, TOKENIZER_HINT, read_tokenizer_json
from g2c.tokenizer.gguf import GGUF_MAGIC
from g2c.tokenizer.unigram import UnigramTokenizer
from g2c.tokenizer.wordpiece import WordPieceTokenizer

#: ``format`` name in a g2c tokenizer JSON → the ``from_dict`` that rebuilds it.
TOKENIZER_FORMATS: dict[str, Callable[[dict], Any]] = {
    "g2c.bpe": BPETokenizer.from_dict,
    "g2c.char": CharTokenizer.from_dict,
    "g2c.wordpiece": WordPieceTokenizer.from_dict,
    "g2c.unigram": UnigramTokenizer.from_dict,
}

#: GPT-2 file pairs looked for in a directory: (vocab, merges).
GPT2_FILE_NAMES: tuple[tuple[str, str], ...] = (
    ("vocab.json", "merges.txt"),
    ("gpt2_vocab.json", "gpt2_merges.txt"),
)


def known_formats() -> str:
    """The formats :func:`load_tokenizer` reads, for error messages."""
    pairs = ", ".join(f"{v} + {m}" for v, m in GPT2_FILE_NAMES)
    return (
        f"{', '.join(TOKENIZER_FORMATS)} (tokenizer JSON), GPT-2 files ({pairs}), "
        "a .gguf file (byte-level BPE)"
    )


def _is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def _gpt2_files(path: Path) -> tuple[Path, Path] | None:
    """GPT-2's (vocab.json, merges.txt) for a directory holding them, or for one of the two
    files with its partner beside it; else None."""
    for vocab, merges in GPT2_FILE_NAMES:
        if path.is_dir() and (path / vocab).is_file() and (path / merges).is_file():
            return path / vocab, path / merges
        if path.is_file() and path.name in (vocab, merges):
            pair = path.with_name(vocab), path.with_name(merges)
            if all(p.is_file() for p in pair):
                return pair
    return None


def load_tokenizer(path: str | os.PathLike) -> Any:
    """The tokenizer stored at ``path``, its class chosen by the file's format.

    ``path`` is a g2c tokenizer JSON file, a directory holding ``tokenizer.json`` (a tokenizer
    artifact or a run directory), GPT-2's ``vocab.json``/``merges.txt`` (either file, or their
    directory), or a GGUF file (its byte-level BPE tokenizer, GGUF ids). A g2c JSON wins over GPT-2 files in the same directory; a Hugging Face
    ``tokenizer.json`` (no g2c format) next to GPT-2 files is skipped in their favour.

    Returns a ``BPETokenizer``, ``CharTokenizer``, ``WordPieceTokenizer`` or ``UnigramTokenizer``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ArtifactError: (a ValueError) the file is damaged (not JSON, or its content does not
            rebuild a tokenizer of its format); the message names the file.
        ValueError: an unknown format; the message names the file and the known formats.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer not found: {path}")
    if _is_gguf(path):
        return BPETokenizer.from_gguf(path)
    gpt2 = _gpt2_files(path)
    json_path = path / TOKENIZER_FILE if path.is_dir() else path
    fmt = None
    if json_path.is_file() and (gpt2 is None or json_path not in gpt2):
        try:
            d = read_tokenizer_json(json_path)
        except ArtifactError as exc:  # damaged, or not a tokenizer file at all
            raise ArtifactError(f"{exc} (load_tokenizer reads {known_formats()})") from None
        fmt = d.get("format") if isinstance(d, dict) else None
        if isinstance(fmt, str) and fmt in TOKENIZER_FORMATS:
            try:
                return TOKENIZER_FORMATS[fmt](d)
            except (ValueError, KeyError, TypeError) as exc:
                raise ArtifactError(
                    f"{json_path}: cannot rebuild its {fmt} tokenizer "
                    f"({type(exc).__name__}: {exc}); {TOKENIZER_HINT}"
                ) from None
    if gpt2 is not None:
        return BPETokenizer.from_gpt2_files(*gpt2)
    where = json_path if json_path.is_file() else path
    found = f"format {fmt!r}" if fmt is not None else "no g2c tokenizer format"
    raise ValueError(f"{where}: {found}; load_tokenizer reads {known_formats()}")


__all__ = ["GPT2_FILE_NAMES", "TOKENIZER_FORMATS", "known_formats", "load_tokenizer"]
