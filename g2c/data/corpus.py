"""Encoded-corpus cache: tokenize a corpus once per tokenizer, reuse the ids afterwards.

Encoding 7 MB of text with a from-scratch BPE takes a while; the ids only change when the text
or the tokenizer does. ``encode_corpus_cached`` keys the cache on both:

    <cache_dir>/<corpus-key>[-<split>]-<fingerprint[:16]>.bin        token ids (uint16/uint32)
    <cache_dir>/<corpus-key>[-<split>]-<fingerprint[:16]>.bin.json   manifest (the ids sidecar)

``cache_dir`` defaults to ``<g2c cache>/tokens`` (``$G2C_CACHE_DIR/tokens``, else
``~/.cache/g2c/tokens``). The corpus key is the dataset names joined with ``+``
(``tinyshakespeare+gutenberg``) or ``text-<sha256[:12]>`` for raw text. The manifest holds
``corpus`` (names or None), ``text_sha256`` (of the encoded text), ``tokenizer_fingerprint``
(sha256 of ``json.dumps(tokenizer.to_dict(), sort_keys=True)``), ``split``,
``val_fraction``, plus the id-file fields ``dtype`` and ``count`` (see ``g2c.data.tokens``).
A cache hit needs every one of those to match and the file size to agree with ``count``;
otherwise the text is re-encoded and both files rewritten atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from g2c.data.registry import REGISTRY
from g2c.data.resolution import cache_root
from g2c.data.text import _as_names, load_corpus, split_text
from g2c.data.tokens import load_token_ids, read_token_ids_metadata, save_token_ids

CORPUS_CACHE_FORMAT = "g2c.corpus_cache"


class SupportsEncode(Protocol):
    """What the corpus cache needs from a tokenizer: ``encode`` and ``to_dict``."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ...

    def to_dict(self) -> dict:
        """A JSON-serialisable description that changes whenever the encoding changes."""
        ...


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hex sha256 of ``json.dumps(tokenizer.to_dict(), sort_keys=True)``.

    A tokenizer without ``to_dict`` → TypeError (the cache cannot tell two tokenizers apart).
    """
    to_dict = getattr(tokenizer, "to_dict", None)
    if not callable(to_dict):
        raise TypeError(
            f"tokenizer must have to_dict() for the corpus cache, got {type(tokenizer).__name__}"
        )
    payload = json.dumps(to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _encode(tokenizer: Any, text: str) -> list[int]:
    encode = getattr(tokenizer, "encode_fast", None) or getattr(tokenizer, "encode", None)
    if not callable(encode):
        raise TypeError(f"tokenizer must have encode(text), got {type(tokenizer).__name__}")
    return encode(text)


def _corpus_text(
    text_or_names: str | Sequence[str], path: str | os.PathLike | None
) -> tuple[str, list[str] | None]:
    """(text, dataset names or None for raw text)."""
    if isinstance(text_or_names, str) and text_or_names not in REGISTRY:
        return text_or_names, None
    names = _as_names(text_or_names)
    return load_corpus(names, path), names


def corpus_cache_path(
    corpus_key: str, fingerprint: str, split: str | None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """File path of a cached encoding (see the module docstring for the naming scheme)."""
    directory = Path(cache_dir) if cache_dir is not None else cache_root() / "tokens"
    middle = f"-{split}" if split is not None else ""
    return directory / f"{corpus_key}{middle}-{fingerprint[:16]}.bin"


def encode_corpus_cached(
    text_or_names: str | Sequence[str],
    tokenizer: SupportsEncode,
    cache_dir: str | os.PathLike | None = None,
    split: str | None = None,
    *,
    val_fraction: float = 0.1,
    path: str | os.PathLike | None = None,
    on_event: Callable[[str, Path], None] | None = None,
) -> torch.Tensor:
    """Token ids of a corpus under ``tokenizer``, read from the cache when it is current.

    Args:
        text_or_names: a registered text dataset name, a list of names (concatenated with
            ``load_corpus``), or raw text (any other string).
        tokenizer: object with ``encode(text) -> list[int]`` (``encode_fast`` is used when
            present) and ``to_dict() -> dict`` (fingerprint); missing → TypeError.
        cache_dir: directory of the cache files (default ``<g2c cache>/tokens``).
        split: None for the whole text, or ``"train"`` / ``"val"`` for that side of
            ``split_text(text, val_fraction)`` (the text is split before encoding, so the two
            sides never share a token across the cut); other → ValueError.
        val_fraction: fraction of characters held out for ``"val"``.
        path: explicit data root passed to ``load_corpus``.
        on_event: ``on_event("hit" | "encoded", file_path)`` for logging.

    Returns:
        1-D ``torch.long`` tensor (N,) of token ids.
    """
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be None, 'train' or 'val', got {split!r}")
    fingerprint = tokenizer_fingerprint(tokenizer)
    text, names = _corpus_text(text_or_names, path)
    if split is not None:
        text = split_text(text, val_fraction)[0 if split == "train" else 1]
    text_sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    key = "+".join(names) if names is not None else f"text-{text_sha[:12]}"
    file = corpus_cache_path(key, fingerprint, split, cache_dir)
    expected = {
        "cache_format": CORPUS_CACHE_FORMAT,
        "corpus": names,
        "text_sha256": text_sha,
        "tokenizer_fingerprint": fingerprint,
        "split": split,
        "val_fraction": val_fraction if split is not None else None,
    }
    if file.is_file():
        try:
            meta = read_token_ids_metadata(file)
            if meta is not None and all(meta.get(k) == v for k, v in expected.items()):
                ids = load_token_ids(file)  # checks size against count
                if on_event is not None:
                    on_event("hit", file)
                return ids
        except (ValueError, json.JSONDecodeError):
            pass  # stale or damaged cache entry: re-encode below
    ids = _encode(tokenizer, text)
    save_token_ids(file, ids, metadata={**expected, "text_chars": len(text)})
    if on_event is not None:
        on_event("encoded", file)
    return load_token_ids(file)
