"""Character-level tokenizer: one token per distinct character (char-RNN / nanoGPT char models).

The vocabulary is the sorted set of characters of a training text (Karpathy's char-rnn,
nanoGPT ``shakespeare_char``); ``encode`` maps ``str`` → ``list[int]`` (length T = len(text)),
``decode`` maps back. There is no unknown token: a character outside the vocabulary raises.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from g2c.artifacts import atomic_write_json
from g2c.tokenizer.formats import read_tokenizer_json

CHAR_FORMAT = "g2c.char"
CHAR_FORMAT_VERSION = 1


class CharTokenizer:
    """Map each distinct character of a text to an id (sorted order).

    Args:
        text: the text whose characters form the vocabulary (``CharTokenizer(text)``), or
            ``None`` together with ``chars=`` (an explicit ordered vocabulary).
        chars: explicit vocabulary (distinct characters, in id order); duplicates → ValueError.

    Attributes: ``chars`` (list[str]), ``stoi`` (char → id), ``itos`` (id → char),
    ``vocab_size`` (number of characters).
    """

    def __init__(self, text: str | None = None, *, chars: Iterable[str] | None = None):
        if (text is None) == (chars is None):
            raise ValueError(
                "pass exactly one of text (a training string) or chars= (a vocabulary)"
            )
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"text must be a str, got {type(text).__name__}")
            chars = sorted(set(text))
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("chars must be single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("chars contains duplicates")
        if not chars:
            raise ValueError("the vocabulary is empty: text must contain at least one character")
        self.chars: list[str] = chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}
        self.itos: dict[int, str] = dict(enumerate(chars))

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Vocabulary = sorted unique characters of ``text``."""
        return cls(text)

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters V."""
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """``str`` → ``list[int]`` (length ``len(text)``). Unknown character → ValueError."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise ValueError(
                f"text contains {exc.args[0]!r}, which is not in this CharTokenizer's vocabulary "
                f"of {self.vocab_size} characters; build it from a text that contains it"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """``list[int]`` (or any iterable of ints) → ``str``. Unknown id → ValueError."""
        try:
            return "".join(self.itos[int(i)] for i in ids)
        except KeyError as exc:
            raise ValueError(f"id {exc.args[0]} is outside [0, {self.vocab_size})") from None

    def to_dict(self) -> dict[str, Any]:
        """``{"format": "g2c.char", "version": 1, "chars": [...]}``."""
        return {"format": CHAR_FORMAT, "version": CHAR_FORMAT_VERSION, "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """Inverse of :meth:`to_dict`; another format or version → ValueError."""
        if not isinstance(d, dict) or d.get("format") != CHAR_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(
                f"not a char tokenizer dict: format is {got!r}, expected {CHAR_FORMAT!r}"
            )
        if d.get("version") != CHAR_FORMAT_VERSION:
            raise ValueError(f"{CHAR_FORMAT} version {d.get('version')!r} is not supported")
        return cls(chars=d["chars"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Read a file written by :meth:`save` (a directory means ``path/tokenizer.json``)."""
        return cls.from_dict(read_tokenizer_json(path))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
