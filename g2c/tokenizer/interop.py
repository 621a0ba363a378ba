"""Interop with GPT-2's files, tiktoken and HF ``tokenizers``.

GPT-2 (openai/gpt-2 ``encoder.py``) stores tokens as *strings* over a 256-character alphabet
(``bytes_to_unicode``: printable bytes map to themselves, the others to ``chr(256 + k)``, so a
space is ``Ġ``). Loading maps that alphabet back to raw bytes; GPT-2's ids are kept, so the byte
tokens are permuted (id 0 is ``!``) and ``<|endoftext|>`` is 50256.

Exports rebuild the same tokenizer in the libraries a user would otherwise pick:

* tiktoken: ``mergeable_ranks`` = token bytes → id. tiktoken merges the adjacent pair whose
  *concatenated bytes* have the lowest rank; with rank = id = merge order this equals our
  min-rank-pair loop as long as each token's bytes are unique (checked; duplicates → ValueError).
* HF ``tokenizers``: a BPE model with GPT-2 byte alphabet, the split regex as a ``Split``
  pre-tokenizer followed by ``ByteLevel`` (no regex, no prefix space), and special tokens as
  added tokens (HF always matches them, i.e. it behaves like ``allowed_special="all"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2c.tokenizer.pretokenize import GPT2_SPLIT_PATTERN

if TYPE_CHECKING:
    from g2c.tokenizer.bpe import BPETokenizer


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (``encoder.py``): 256 entries, all distinct."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _unicode_to_bytes(token: str, where: str) -> bytes:
    table = {c: b for b, c in bytes_to_unicode().items()}
    try:
        return bytes(table[c] for c in token)
    except KeyError as exc:
        raise ValueError(
            f"{where}: token {token!r} has {exc.args[0]!r}, not a GPT-2 byte character"
        ) from None


def load_gpt2_files(
    cls: type[BPETokenizer], vocab_json_path: str | os.PathLike, merges_txt_path: str | os.PathLike
) -> BPETokenizer:
    """Build ``cls`` from GPT-2's ``vocab.json`` (token string → id) and ``merges.txt``.

    Tokens that are neither a byte nor a merge result are special tokens (``<|endoftext|>``).
    Raises FileNotFoundError for a missing file, ValueError when the files disagree.
    """
    vocab_path, merges_path = Path(vocab_json_path), Path(merges_txt_path)
    for p in (vocab_path, merges_path):
        if not p.is_file():
            raise FileNotFoundError(f"GPT-2 tokenizer file not found: {p}")
    vocab: dict[str, int] = json.loads(vocab_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").split("\n")
    merges = [ln for ln in lines if ln and not ln.startswith("#version")]
    return build_byte_level_bpe(
        cls,
        vocab,
        merges,
        pattern=GPT2_SPLIT_PATTERN,
        vocab_where=str(vocab_path),
        merges_where=str(merges_path),
    )


def build_byte_level_bpe(
    cls: type[BPETokenizer],
    vocab: dict[str, int],
    merges: Sequence[str],
    *,
    pattern: str,
    special_tokens: Sequence[str] | None = None,
    allow_missing_bytes: bool = False,
    vocab_where: str = "vocab",
    merges_where: str = "merges",
) -> BPETokenizer:
    """A ``cls`` tokenizer from a GPT-2-style byte-level vocabulary, keeping its ids.

    The shared path of GPT-2's files and GGUF files (``tokenizer.ggml.model = "gpt2"``):
    ``vocab`` maps token strings in GPT-2's byte alphabet (:func:`bytes_to_unicode`) to ids,
    ``merges`` lists ``"left right"`` strings in merge order (rank = position). The byte tokens
    keep their (permuted) ids through ``_byte_ids``. ``special_tokens`` (strings of ``vocab``)
    default to the tokens that are neither a byte nor a merge result. ``allow_missing_bytes``
    accepts a vocabulary without some of the 256 byte tokens (SmolLM2's GGUF lacks 21): those
    bytes get no id and ``encode`` drops them, as transformers and llama.cpp do.

    Raises ValueError naming ``vocab_where`` / ``merges_where`` when a byte token is missing, a
    merge line is not two tokens or uses an unknown token, or the counts do not add up.
    """
    b2u = bytes_to_unicode()
    byte_ids: list[int | None] = [vocab.get(b2u[b]) for b in range(256)]
    missing = [b2u[b] for b in range(256) if byte_ids[b] is None]
    if missing and not allow_missing_bytes:
        raise ValueError(f"{vocab_where}: byte token {missing[0]!r} is missing")
    pairs = [ln.split(" ") for ln in merges]
    if special_tokens is None:
        merged = {"".join(p) for p in pairs}
        single = set(b2u.values())
        special_tokens = [t for t in vocab if t not in merged and t not in single]
    specials = sorted(special_tokens, key=vocab.__getitem__)
    tok = cls(specials, pattern=pattern)
    tok._byte_ids = byte_ids
    tok.special_to_id = {s: vocab[s] for s in specials}
    tok._reset_merges()
    for k, parts in enumerate(pairs):
        if len(parts) != 2:
            raise ValueError(
                f"{merges_where}: line {k + 1} is not 'left right': {' '.join(parts)!r}"
            )
        a, b = parts
        try:
            tok._add_merge((vocab[a], vocab[b]), vocab[a + b])
        except KeyError as exc:
            raise ValueError(
                f"{merges_where}: merge {a!r} {b!r} uses {exc.args[0]!r}, not in {vocab_where}"
            ) from None
    tok._refresh()
    if tok.vocab_size != len(vocab):
        raise ValueError(
            f"{vocab_where}: {len(vocab)} tokens but merges + bytes + specials give "
            f"{tok.vocab_size}"
        )
    return tok


def _check_exportable(tok: BPETokenizer, target: str) -> None:
    """Exports need merge ids increasing in merge order and unique token bytes."""
    ids = list(tok.merges.values())
    if any(x >= y for x, y in zip(ids, ids[1:])):
        raise ValueError(f"{target} export needs merge ids that increase in merge order")
    seen: dict[bytes, int] = {}
    for i, b in tok.vocab.items():
        if i in tok.id_to_special:
            continue
        if b in seen:
            raise ValueError(
                f"{target} export needs unique token bytes, but ids {seen[b]} and {i} both spell "
                f"{b!r} (two different merges produced the same string)"
            )
        seen[b] = i


def to_tiktoken(tok: BPETokenizer, name: str = "g2c") -> Any:
    """A ``tiktoken.Encoding`` that gives the same ids as ``tok.encode`` (rank = token id).

    Use ``enc.encode(text, allowed_special=..., disallowed_special=())`` to mirror g2c's
    default of encoding special-token strings as plain text. Duplicate token bytes → ValueError.
    """
    import tiktoken

    _check_exportable(tok, "tiktoken")
    if tok.missing_bytes:
        raise ValueError(
            f"tiktoken export needs all 256 byte tokens, but bytes {list(tok.missing_bytes)} have "
            "no id in this vocabulary (tiktoken cannot drop them as this tokenizer does)"
        )
    ranks = {b: i for i, b in tok.vocab.items() if i not in tok.id_to_special}
    return tiktoken.Encoding(
        name=name,
        pat_str=tok.pattern,
        mergeable_ranks=ranks,
        special_tokens=dict(tok.special_to_id),
    )


def to_hf_tokenizer_json(tok: BPETokenizer) -> dict[str, Any]:
    """The HF ``tokenizers`` JSON (as a dict) of a byte-level BPE equal to ``tok``."""
    _check_exportable(tok, "HF tokenizers")
    b2u = bytes_to_unicode()

    def s(i: int) -> str:
        return "".join(b2u[x] for x in tok.vocab[i])

    vocab = {s(i): i for i in tok.vocab if i not in tok.id_to_special}
    for t, i in tok.special_to_id.items():  # HF needs the added tokens' ids in the model vocab
        if vocab.setdefault(t, i) != i:
            raise ValueError(f"HF tokenizers export: special token {t!r} is also an ordinary token")
    added = [
        {
            "id": i,
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for t, i in tok.special_to_id.items()
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": tok.pattern},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": False,
                    "use_regex": False,
                },
            ],
        },
        "post_processor": None,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[s(a), s(b)] for a, b in tok.merges],
        },
    }


def to_hf_tokenizer(tok: BPETokenizer) -> Any:
    """A HF ``tokenizers.Tokenizer`` giving the same ids as ``tok.encode(text, allowed_special="all")``."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(to_hf_tokenizer_json(tok)))
