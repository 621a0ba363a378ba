"""Streaming text: turn generated token ids into text as they arrive, safely for UTF-8.

A byte-level BPE token is a run of bytes, not of characters: "é" (C3 A9) or "😀" (F0 9F 98 80)
may be split across tokens, so decoding each token on its own prints U+FFFD garbage, and
re-decoding the whole sequence at every step costs O(n) per token (O(n²) in all).
:class:`StreamingDetokenizer` keeps only the bytes of a character not yet complete (at most 3)
and decodes the rest: O(new tokens) per step, and the concatenated output equals
``tokenizer.decode(all_ids)`` exactly — invalid bytes become U+FFFD just as a one-shot decode
would make them, because text is only cut before a byte that starts a new character, where the
one-shot decoder starts a new character too.
"""

from __future__ import annotations

from typing import Any

from g2c.tokenizer import CharTokenizer, UnigramTokenizer, WordPieceTokenizer
from g2c.tokenizer.unigram import SPACE, UNK_SURFACE
from g2c.tokenizer.wordpiece import CONTINUATION_PREFIX

# The error handler BPETokenizer.decode uses (registered by g2c.tokenizer): UTF-8-encoded lone
# surrogates come back, other invalid bytes become U+FFFD.
BYTE_DECODE_ERRORS = "g2c.surrogatepass_replace"


def complete_prefix_length(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that can be decoded now: everything except a
    trailing character whose lead byte has arrived but not all its continuation bytes.

    Looks at the last 4 bytes at most (a UTF-8 character is 1–4 bytes), so O(1).
    """
    n = len(data)
    for i in range(n - 1, max(n - 4, 0) - 1, -1):
        b = data[i]
        if b < 0x80:  # ASCII: nothing after it can belong to an open character
            return n
        if b >= 0xC0:  # a lead byte: 110xxxxx, 1110xxxx or 11110xxx
            if b in (0xC0, 0xC1) or b > 0xF4:  # never valid: cannot be completed
                return n
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return i if n - i < need else n
        # 10xxxxxx: a continuation byte, keep looking for its lead
    return n


class StreamingDetokenizer:
    """Incremental detokenizer: ``push(token_id) -> str`` returns the newly completed text,
    ``flush() -> str`` the rest at the end; ``"".join(pushes) + flush() ==
    tokenizer.decode(ids)``.

    Works from each token's own text, never re-decoding the sequence: the token bytes of a
    byte-level tokenizer (``tokenizer.vocab``: id → bytes, e.g. :class:`BPETokenizer`; special
    ids decode to their string) with an incomplete UTF-8 character held back until it
    completes; the characters of a :class:`CharTokenizer` (``itos``); the pieces of a
    :class:`WordPieceTokenizer` / :class:`UnigramTokenizer` joined as their ``decode`` joins
    them. An id the tokenizer does not know → ValueError; a non-int id → TypeError; another
    tokenizer type → TypeError. ``reset()`` starts a new text.
    """

    def __init__(self, tokenizer: Any) -> None:
        vocab = getattr(tokenizer, "vocab", None)
        if isinstance(vocab, dict) and all(isinstance(b, bytes) for b in vocab.values()):
            self._kind = "bytes"
        elif isinstance(tokenizer, CharTokenizer):
            self._kind = "char"
        elif isinstance(tokenizer, WordPieceTokenizer):
            self._kind = "wordpiece"
        elif isinstance(tokenizer, UnigramTokenizer):
            self._kind = "unigram"
        else:
            raise TypeError(
                f"StreamingDetokenizer needs a byte-level tokenizer (vocab: id -> bytes, e.g. "
                f"BPETokenizer), a CharTokenizer, WordPieceTokenizer or UnigramTokenizer; got "
                f"{type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self.reset()

    def reset(self) -> None:
        """Forget the text so far (and any held-back bytes)."""
        self._pending = b""
        self._count = 0  # tokens pushed

    @property
    def pending_bytes(self) -> bytes:
        """Bytes of a character still waiting for its continuation bytes (at most 3)."""
        return self._pending

    def _check_id(self, token_id: Any, size: int | None = None) -> int:
        if hasattr(token_id, "item"):  # a 0-d tensor / NumPy scalar
            token_id = token_id.item()
        if not isinstance(token_id, int) or isinstance(token_id, bool):
            raise TypeError(f"token_id must be an int, got {type(token_id).__name__}")
        if size is not None and not 0 <= token_id < size:
            raise ValueError(f"token id {token_id} is outside [0, {size}) for this tokenizer")
        return token_id

    def push(self, token_id: int) -> str:
        """Add one token id; return the text it completes ("" while a character is open)."""
        tok = self.tokenizer
        if self._kind == "bytes":
            i = self._check_id(token_id)
            piece = tok.vocab.get(i)
            if piece is None:
                raise ValueError(f"token id {i} is not in this tokenizer's vocab")
            data = self._pending + piece
            cut = complete_prefix_length(data)
            self._pending = data[cut:]
            text = data[:cut].decode("utf-8", BYTE_DECODE_ERRORS)
        elif self._kind == "char":
            text = tok.itos[self._check_id(token_id, tok.vocab_size)]
        elif self._kind == "wordpiece":
            piece = tok.id_to_token[self._check_id(token_id, len(tok.id_to_token))]
            if piece.startswith(CONTINUATION_PREFIX) and self._count:
                text = piece[len(CONTINUATION_PREFIX) :]
            else:
                text = (" " if self._count else "") + piece
        else:  # unigram: "▁" is a space; decode drops the one space the encoder prepended
            i = self._check_id(token_id, len(tok.vocab))
            text = (UNK_SURFACE if i == 0 else tok.vocab[i]).replace(SPACE, " ")
            if self._count == 0 and text.startswith(" "):
                text = text[1:]
        self._count += 1
        return text

    def flush(self) -> str:
        """The held-back bytes, decoded as a one-shot decode would (U+FFFD if incomplete)."""
        text = self._pending.decode("utf-8", BYTE_DECODE_ERRORS) if self._pending else ""
        self._pending = b""
        return text
