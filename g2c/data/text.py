"""Text corpora: read a text dataset, concatenate several, split contiguously into train/val.

A text dataset (tinyshakespeare, gutenberg) is the concatenation of its registry files marked
``text=True``, in registry order, gunzipped when gzip, each decoded with its registered encoding, with Windows line
endings normalised to ``\\n``, joined so that exactly one blank line separates two files (the
trailing newlines of a file are replaced by ``"\\n\\n"``; the last file keeps its own ending).
A single-file dataset is therefore exactly its file (tinyshakespeare: 1,115,394 characters).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence

from g2c.data.registry import get_dataset
from g2c.data.resolution import dataset_file

DEFAULT_CORPUS: tuple[str, ...] = ("tinyshakespeare", "gutenberg")
"""The corpus the speedrun trains on by default."""


def _join(parts: Sequence[str]) -> str:
    """Join texts with exactly one blank line between consecutive parts."""
    if not parts:
        return ""
    return "\n\n".join([p.rstrip("\n") for p in parts[:-1]] + [parts[-1]])


def load_text(name: str, path: str | os.PathLike | None = None, *, download: bool = True) -> str:
    """The text of dataset ``name`` (its text files concatenated in registry order).

    ``path`` is an explicit dataset directory (or a data root holding ``<dirname>/``).
    Unknown name → ValueError; a dataset without text files (mnist, gsm8k ...) → ValueError
    naming the text datasets; missing files → FileNotFoundError (see ``resolve``).
    """
    ds = get_dataset(name)
    files = ds.text_files
    if not files:
        from g2c.data.registry import REGISTRY

        text_names = ", ".join(n for n, d in REGISTRY.items() if d.text_files)
        raise ValueError(f"dataset {name!r} has no text files; text datasets are: {text_names}")
    parts = []
    for f in files:
        raw = dataset_file(name, f.name, path, download).read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip (registered .gz, or found under either name)
            raw = gzip.decompress(raw)
        parts.append(raw.decode(f.encoding).replace("\r\n", "\n"))
    return _join(parts)


def load_corpus(
    names: str | Sequence[str] = DEFAULT_CORPUS,
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> str:
    """Concatenate the text datasets ``names`` (in the given order), one blank line between them.

    ``names`` is one name or a list (default ``("tinyshakespeare", "gutenberg")``); an empty
    list or a non-string entry → ValueError/TypeError. ``path`` is a data root holding each
    dataset's ``<dirname>/`` (or, for one name, the dataset directory itself).
    """
    names = _as_names(names)
    return _join([load_text(n, path, download=download) for n in names])


def _as_names(names: str | Sequence[str]) -> list[str]:
    if isinstance(names, str):
        return [names]
    names = list(names)
    if not names:
        raise ValueError("names must list at least one text dataset, e.g. ['tinyshakespeare']")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"names must be dataset names (str), got {type(n).__name__}")
    return names


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split ``text`` contiguously: the first ``1 - val_fraction`` for training, the rest for validation.

    The cut is at character ``int(len(text) * (1 - val_fraction))`` (no shuffling, so no
    leakage of neighbouring lines between the splits). ``val_fraction`` outside (0, 1) →
    ValueError ("between 0 and 1"); a split that would be empty → ValueError ("empty");
    non-str ``text`` → TypeError.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    cut = int(len(text) * (1.0 - val_fraction))
    if cut == 0 or cut == len(text):
        raise ValueError(
            f"split of a {len(text)}-character text with val_fraction={val_fraction} leaves an "
            "empty side; use a longer text or another val_fraction"
        )
    return text[:cut], text[cut:]
