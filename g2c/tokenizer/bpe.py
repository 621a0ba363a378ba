"""Byte-level byte-pair encoding (BPE): the tokenizer of GPT-2, GPT-4 and most LLMs.

Idea (Gage 1994, "A New Algorithm for Data Compression"; Sennrich et al. 2016 for subwords;
Radford et al. 2019 for the byte-level GPT-2 variant): start from the 256 byte values, then
repeatedly find the most frequent adjacent pair of tokens in the training text and replace it
by a new token. Encoding replays the learned merges in the order they were learned.

Layout of the vocabulary (ids): ``0..255`` are the raw bytes, then the special tokens
(``<|endoftext|>`` ...), then one id per merge in merge order. Text is first cut into
pre-token chunks with a regex (GPT-2 or GPT-4 split pattern, see :mod:`.pretokenize`) and
merges never cross a chunk boundary or touch a special token.

Tie-breaking (identical in :meth:`BPETokenizer.train` and :meth:`BPETokenizer.train_fast`):
among pairs with the highest count, pick the lexicographically greatest pair of byte strings
``(vocab[left], vocab[right])`` (the rule of the CS336 reference trainer); if two pairs have
the same bytes (possible when two token ids spell the same bytes), the smaller ids win.

Two paths, same results (tests prove it):

* clear reference: :meth:`train` recounts every pair of every chunk occurrence after each
  merge (``O(merges × text)``); :meth:`encode_reference` merges each chunk by min-rank pair.
* fast: :meth:`train_fast` counts each *unique* chunk once (weighted by its frequency), keeps
  pair counts incrementally, indexes pair → chunks that contain it, and finds the best pair
  with a lazy-deletion max-heap; :meth:`encode_fast` caches each chunk's ids.

:meth:`encode` is the fast path by default (``impl="fast"``, tested equal); the reference is one
argument away (``encode(text, impl="reference")`` or :meth:`encode_reference`).

``merges`` and ``vocab`` are the source of truth: ``merges`` is a dict that counts its edits, and
every encoder compares that count with the one its rank table and chunk cache were built from,
so a merge added by hand (``tok.merges[(a, b)] = new_id``) takes effect in the next ``encode``
(its ``vocab`` entry, ``vocab[a] + vocab[b]``, is filled in when missing).

Shapes: ``encode``: ``str`` → ``list[int]`` of length T; ``decode``: ``list[int]`` → ``str``.
"""

from __future__ import annotations

import codecs
import heapq
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2c.artifacts import atomic_write_json
from g2c.tokenizer import gguf, interop
from g2c.tokenizer.formats import read_tokenizer_json
from g2c.tokenizer.pretokenize import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    compile_pattern,
    iter_pretokens,
    pretokenize,
    special_splitter,
    split_specials,
)

if TYPE_CHECKING:  # optional interop libraries, imported only when exporting
    import tiktoken
    import tokenizers

#: Special tokens of the course's chat format; ``<|endoftext|>`` is first (id 256).
COURSE_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|system|>",
    "<|pad|>",
    "<|tool|>",  # the turn that carries a tool's result back to the model
    "<|tool_call|>",  # opens a tool call the assistant emits ...
    "<|/tool_call|>",  # ... and closes it
)

BPE_FORMAT = "g2c.bpe"
BPE_FORMAT_VERSION = 2

ProgressCallback = Callable[[int, int, dict], None]


# --- decoding errors: keep lone surrogates, replace other invalid UTF-8 -----------------------
def _surrogatepass_then_replace(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode UTF-8-encoded lone surrogates, else emit U+FFFD."""
    try:
        return codecs.lookup_error("surrogatepass")(exc)
    except UnicodeError:
        return codecs.lookup_error("replace")(exc)


codecs.register_error("g2c.surrogatepass_replace", _surrogatepass_then_replace)
_DECODE_ERRORS = "g2c.surrogatepass_replace"


def _to_bytes(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates are kept (``surrogatepass``) so nothing is lost."""
    return text.encode("utf-8", "surrogatepass")


# --- teaching helpers -------------------------------------------------------------------------
def _get_pair_counts(ids: Sequence[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs: ``[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``.

    ``counts`` (optional) is updated in place and returned, to accumulate over many chunks.
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right, no overlap.

    ``_merge([1, 1, 1], (1, 1), 9) == [9, 1]``.
    """
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class _CountingDict(dict):
    """A dict that counts its edits in ``version`` (so caches derived from it can tell they are
    stale). Reads are plain ``dict`` reads, at C speed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.version += 1

    def __ior__(self, other: Any) -> _CountingDict:
        self.update(other)
        return self

    def pop(self, *args: Any) -> Any:
        """``dict.pop``, counted as an edit."""
        self.version += 1
        return super().pop(*args)

    def popitem(self) -> tuple[Any, Any]:
        """``dict.popitem``, counted as an edit."""
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        """``dict.clear``, counted as an edit."""
        self.version += 1
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, counted as an edit."""
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``dict.setdefault``, counted as an edit."""
        self.version += 1
        return super().setdefault(key, default)


def _tie_key(token: bytes) -> tuple[int, ...]:
    """A key whose *ascending* order is the *descending* lexicographic order of ``token``.

    Each byte is complemented and a terminator (256) larger than any complemented byte is
    appended, so a prefix sorts after its extensions (``b"ab" > b"a"`` ⇔ key(ab) < key(a)).
    The fast trainer's min-heap uses it to pop the lexicographically greatest pair first.
    """
    return tuple(255 - x for x in token) + (256,)


def _resolve_specials(
    name: str, value: str | Iterable[str], known: dict[str, int]
) -> frozenset[str]:
    """Turn ``"all"`` / ``"none"`` / an iterable of special strings into a set; check names."""
    if value == "all":
        return frozenset(known)
    if value == "none" or value is None:
        return frozenset()
    if isinstance(value, str):
        raise TypeError(
            f'{name} must be "all", "none" or a set of special-token strings, got {value!r}'
        )
    chosen = frozenset(value)
    unknown = sorted(chosen - set(known))
    if unknown:
        raise ValueError(
            f"{name} names {unknown}, which are not special tokens of this tokenizer "
            f"(known: {sorted(known)})"
        )
    return chosen


class BPETokenizer:
    """Byte-level BPE tokenizer (GPT-2 style) with atomic special tokens.

    Attributes:
        vocab: ``dict[int, bytes]``, id → bytes; ids ``0..255`` are the single bytes, specials
            map to their UTF-8 bytes.
        merges: ``dict[(left, right), new_id]`` in merge order (rank = position).
        special_tokens: tuple of special-token strings; ``special_to_id`` / ``id_to_special``
            map them; ``special_token_ids`` lists their ids.
        base_vocab_size: ``256 + len(special_tokens)``; ``vocab_size``: ``len(vocab)``.
        pattern: the pre-tokenization regex (default :data:`GPT4_SPLIT_PATTERN`).

    Args:
        special_tokens: strings kept atomic, with ids ``256, 257, ...``. Repeated ("must be
            unique") or empty strings → ValueError.
        pattern: split regex; must match every character (the GPT-2/GPT-4 patterns do).
    """

    def __init__(self, special_tokens: Sequence[str] = (), *, pattern: str = GPT4_SPLIT_PATTERN):
        if isinstance(special_tokens, str):
            raise TypeError("special_tokens must be a sequence of strings, not one string")
        special_tokens = tuple(special_tokens)
        for s in special_tokens:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special_tokens must be non-empty strings, got {s!r}")
        dupes = sorted({s for s in special_tokens if special_tokens.count(s) > 1})
        if dupes:
            raise ValueError(
                f"special_tokens must be unique, but contains duplicates: {dupes}; "
                "list each special token once"
            )
        self.pattern = pattern
        self._compiled = compile_pattern(pattern)
        self.special_tokens: tuple[str, ...] = special_tokens
        self.special_to_id: dict[str, int] = {s: 256 + i for i, s in enumerate(special_tokens)}
        # byte value -> token id (GPT-2 permutes it; None: a byte the vocabulary lacks, which
        # encoding drops, as transformers and llama.cpp do for SmolLM2's GGUF)
        self._byte_ids: list[int | None] = list(range(256))
        self._reset_merges()

    # --- construction helpers ------------------------------------------------------------------
    @classmethod
    def with_course_special_tokens(cls, *, pattern: str = GPT4_SPLIT_PATTERN) -> BPETokenizer:
        """A tokenizer with :data:`COURSE_SPECIAL_TOKENS` (``<|endoftext|>`` is id 256)."""
        return cls(COURSE_SPECIAL_TOKENS, pattern=pattern)

    def _reset_merges(self) -> None:
        """Forget all merges: vocab = bytes + specials."""
        self.vocab: dict[int, bytes] = {
            tid: bytes([b]) for b, tid in enumerate(self._byte_ids) if tid is not None
        }
        for s, tid in self.special_to_id.items():
            self.vocab[tid] = s.encode("utf-8")
        self.merges = {}
        self._refresh()

    @property
    def merges(self) -> dict[tuple[int, int], int]:
        """``(left, right) → new_id`` in merge order (rank = position); the source of truth.

        Editing it (or assigning a new dict) takes effect in every encoder at the next call."""
        return self._merges

    @merges.setter
    def merges(self, value: dict[tuple[int, int], int]) -> None:
        """Replace the merges; the dict is wrapped so later edits are counted and take effect at the next encode."""
        self._merges = _CountingDict(value)

    def _sync(self) -> None:
        """Rebuild the rank table and drop cached encodings when ``merges`` was edited since
        they were built (cheap check: the dict's identity and edit count)."""
        m = self._merges
        if self._synced_merges is m and self._synced_version == m.version:
            return
        for (a, b), i in m.items():  # a merge added by hand: derive its vocab entry
            if i not in self.vocab and a in self.vocab and b in self.vocab:
                self.vocab[i] = self.vocab[a] + self.vocab[b]
        self._refresh()

    def _refresh(self) -> None:
        """Rebuild derived tables after vocab/merges/specials change."""
        self._synced_merges = self._merges
        self._synced_version = self._merges.version
        self.id_to_special: dict[int, str] = {i: s for s, i in self.special_to_id.items()}
        self.special_token_ids: tuple[int, ...] = tuple(self.special_to_id.values())
        self._ranks: dict[tuple[int, int], int] = {p: r for r, p in enumerate(self.merges)}
        self._splitter = special_splitter(self.special_tokens)
        self._cache: dict[str, list[int]] = {}
        self._prefix_tokenizers: dict[int, BPETokenizer] = {}

    def _add_merge(self, pair: tuple[int, int], new_id: int) -> None:
        self.merges[pair] = new_id
        self._ranks[pair] = len(self._ranks)
        self.vocab[new_id] = self.vocab[pair[0]] + self.vocab[pair[1]]

    @property
    def base_vocab_size(self) -> int:
        """``256 + len(special_tokens)``: the vocabulary before any merge."""
        return 256 + len(self.special_tokens)

    @property
    def missing_bytes(self) -> tuple[int, ...]:
        """Byte values with no token id (empty for g2c and GPT-2 tokenizers; SmolLM2's GGUF
        lacks 21, e.g. ``0x04``). ``encode`` drops them, as transformers and llama.cpp do."""
        return tuple(b for b, i in enumerate(self._byte_ids) if i is None)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, specials included (``len(vocab)``)."""
        return len(self.vocab)

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )

    # --- pre-tokenization --------------------------------------------------------------------
    def _segments(self, text: str, allowed: frozenset[str]) -> list[str]:
        """``[plain, special, plain, ...]`` splitting only on ``allowed`` specials."""
        if not allowed:
            return [text]
        if allowed == frozenset(self.special_tokens):
            return split_specials(text, self._splitter)
        return split_specials(text, special_splitter(allowed))

    def _check_specials(
        self, text: str, allowed_special: Any, disallowed_special: Any
    ) -> frozenset[str]:
        """Resolve tiktoken-style special handling; raise if a disallowed special is in text."""
        allowed = _resolve_specials("allowed_special", allowed_special, self.special_to_id)
        disallowed = _resolve_specials("disallowed_special", disallowed_special, self.special_to_id)
        disallowed = disallowed - allowed
        if disallowed:
            m = special_splitter(disallowed).search(text)
            if m:
                raise ValueError(
                    f"text contains the special token {m.group()!r}, which disallowed_special "
                    f"forbids; pass allowed_special={{{m.group()!r}}} to encode it as a special "
                    "token, or disallowed_special=() to encode it as plain text"
                )
        return allowed

    def _chunk_base_ids(self, chunk: str) -> list[int]:
        """Byte-level ids of one chunk, before merges."""
        data = _to_bytes(chunk)
        if self._byte_ids[255] == 255 and self._byte_ids[0] == 0:
            return list(data)
        b2i = self._byte_ids
        ids = [b2i[b] for b in data]
        return [i for i in ids if i is not None] if None in ids else ids

    # --- teaching API --------------------------------------------------------------------------
    @staticmethod
    def _get_pair_counts(ids: Sequence[int]) -> dict[tuple[int, int], int]:
        """Adjacent pair counts of ``ids`` (see module-level :func:`_get_pair_counts`);
        callable on the class: ``BPETokenizer._get_pair_counts([1, 2, 1, 2])``."""
        return _get_pair_counts(ids)

    @staticmethod
    def _merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
        """Left-to-right, non-overlapping merge (see module-level :func:`_merge`); callable on
        the class: ``BPETokenizer._merge([1, 1, 1], (1, 1), 9) == [9, 1]``."""
        return _merge(ids, pair, new_id)

    def _best_pair(self, counts: dict[tuple[int, int], int]) -> tuple[tuple[int, int], int]:
        """The pair to merge: highest count, then greatest ``(vocab[l], vocab[r])``, then smaller ids."""
        v = self.vocab
        pair = max(counts, key=lambda p: (counts[p], v[p[0]], v[p[1]], -p[0], -p[1]))
        return pair, counts[pair]

    def train_step(
        self, ids: Sequence[int] | Sequence[Sequence[int]], new_id: int | None = None
    ) -> tuple[list, tuple[int, int], int] | None:
        """One BPE training step: count pairs, pick the best, merge it everywhere.

        Args:
            ids: a flat list of ids (pairs touching a special id are never counted), or a list
                of chunks (lists of ids; pairs never cross chunks).
            new_id: id of the merged token (default: ``vocab_size``, the next free id).

        Returns:
            ``(new_ids, pair, count)`` with ``new_ids`` shaped like ``ids``, or ``None`` when no
            pair is left. The tokenizer itself is not modified (``train`` records the merge).
        """
        new_id = self.vocab_size if new_id is None else new_id
        if not isinstance(new_id, int) or new_id in self.vocab:
            raise ValueError(
                f"new_id must be an unused token id (>= {self.vocab_size}), got {new_id}"
            )
        nested = len(ids) > 0 and not isinstance(ids[0], int)
        chunks = ids if nested else [ids]
        specials = set(self.special_token_ids)
        counts: dict[tuple[int, int], int] = {}
        for chunk in chunks:
            _get_pair_counts(chunk, counts)
        if specials:
            counts = {
                p: c for p, c in counts.items() if p[0] not in specials and p[1] not in specials
            }
        if not counts:
            return None
        pair, count = self._best_pair(counts)
        merged = [_merge(chunk, pair, new_id) for chunk in chunks]
        return (merged if nested else merged[0]), pair, count

    def _check_train_args(self, text: str, vocab_size: int) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not isinstance(vocab_size, int) or vocab_size < self.base_vocab_size:
            raise ValueError(
                f"vocab_size must be an int >= base_vocab_size = {self.base_vocab_size} "
                f"(256 bytes + {len(self.special_tokens)} specials), got {vocab_size!r}"
            )
        if self._byte_ids != list(range(256)) or any(
            self.special_to_id[s] != 256 + i for i, s in enumerate(self.special_tokens)
        ):
            raise ValueError(
                "this tokenizer uses a foreign id layout (e.g. loaded from GPT-2 files); "
                "train a fresh BPETokenizer(special_tokens=...) instead"
            )

    def train(
        self,
        text: str,
        vocab_size: int,
        progress_callback: ProgressCallback | None = None,
        progress_every: int = 100,
        *,
        allowed_special: str | Iterable[str] = "all",
    ) -> list[int]:
        """Learn ``vocab_size - base_vocab_size`` merges from ``text`` (clear reference trainer).

        Every step recounts all pairs of all chunk occurrences (:meth:`train_step`), so it is
        ``O(merges × len(text))``: use it to learn and to check :meth:`train_fast`. Existing
        merges are discarded. Special-token strings in ``text`` (``allowed_special``, default
        all) are atomic boundaries. Training stops early when no pair is left.

        Args:
            text: training text.
            vocab_size: final vocabulary size including bytes and specials;
                ``< base_vocab_size`` → ValueError.
            progress_callback: called as ``cb(merges_done, merges_total, info)`` every
                ``progress_every`` merges and at the end; ``info`` has ``pair``, ``count``,
                ``token`` (bytes).

        Returns:
            the ids of ``text`` under the trained vocabulary (``list[int]``).
        """
        self._check_train_args(text, vocab_size)
        self._reset_merges()
        allowed = _resolve_specials("allowed_special", allowed_special, self.special_to_id)
        segments = self._segments(text, allowed)
        chunks: list[list[int]] = []  # one list of ids per chunk occurrence
        layout: list[int | tuple[int, int]] = []  # special id, or (first chunk, end chunk)
        for k, seg in enumerate(segments):
            if k % 2:
                layout.append(self.special_to_id[seg])
                continue
            start = len(chunks)
            chunks.extend(list(_to_bytes(c)) for c in pretokenize(seg, self._compiled))
            layout.append((start, len(chunks)))
        total = vocab_size - self.base_vocab_size
        for step in range(total):
            result = self.train_step(chunks, new_id=self.vocab_size)
            if result is None:
                break
            chunks, pair, count = result
            self._add_merge(pair, self.vocab_size)
            done = step + 1
            if progress_callback and (done % progress_every == 0 or done == total):
                progress_callback(
                    done,
                    total,
                    {"pair": pair, "count": count, "token": self.vocab[self.vocab_size - 1]},
                )
        self._refresh()
        out: list[int] = []
        for item in layout:
            if isinstance(item, int):
                out.append(item)
            else:
                for chunk in chunks[item[0] : item[1]]:
                    out.extend(chunk)
        return out

    # --- encoding (reference) ----------------------------------------------------------------
    def _encode_chunk(self, ids: list[int]) -> list[int]:
        """Apply merges to one chunk: repeatedly merge the adjacent pair of lowest rank."""
        ranks = self._ranks
        while len(ids) >= 2:
            counts = _get_pair_counts(ids)
            pair = min(counts, key=lambda p: ranks.get(p, float("inf")))
            if pair not in ranks:
                break  # nothing left to merge
            ids = _merge(ids, pair, self.merges[pair])
        return ids

    ENCODE_IMPLS: tuple[str, ...] = ("fast", "reference")

    def encode(
        self,
        text: str,
        *,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = (),
        impl: str = "fast",
    ) -> list[int]:
        """Encode ``text`` to token ids.

        Special tokens follow tiktoken's rules, but with a lossless default: a special-token
        string in ``text`` is encoded as *plain text* unless it is in ``allowed_special``
        (``"all"`` or a set of strings), in which case it becomes its special id. If it is in
        ``disallowed_special`` (``"all"`` or a set) and not allowed, ValueError is raised.

        Args:
            impl: ``"fast"`` (default; :meth:`encode_fast`, each distinct chunk merged once and
                cached) or ``"reference"`` (:meth:`encode_reference`, the clear min-rank loop).
                Both give identical ids (tested). Another value → ValueError.

        Returns:
            ``list[int]`` of length T.
        """
        encoders = {"fast": self.encode_fast, "reference": self.encode_reference}
        if impl not in encoders:
            raise ValueError(f"impl must be one of {sorted(encoders)}, got {impl!r}")
        return encoders[impl](
            text, allowed_special=allowed_special, disallowed_special=disallowed_special
        )

    def encode_reference(
        self,
        text: str,
        *,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = (),
    ) -> list[int]:
        """Encode ``text`` with the clear reference path (what the course walks through).

        Cut ``text`` at the allowed special tokens, split each plain segment into pre-token
        chunks, turn each chunk into byte ids and apply merges (:meth:`_encode_chunk`).
        Special handling as in :meth:`encode`. Returns ``list[int]`` of length T.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        allowed = self._check_specials(text, allowed_special, disallowed_special)
        self._sync()
        out: list[int] = []
        for k, seg in enumerate(self._segments(text, allowed)):
            if k % 2:
                out.append(self.special_to_id[seg])
                continue
            for chunk in pretokenize(seg, self._compiled):
                out.extend(self._encode_chunk(self._chunk_base_ids(chunk)))
        return out

    def encode_base(self, text: str, *, allowed_special: str | Iterable[str] = "all") -> list[int]:
        """Byte ids of ``text`` with specials (``allowed_special``, default all) atomic; no merges.

        This is what training starts from. Returns ``list[int]``.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        allowed = _resolve_specials("allowed_special", allowed_special, self.special_to_id)
        out: list[int] = []
        for k, seg in enumerate(self._segments(text, allowed)):
            if k % 2:
                out.append(self.special_to_id[seg])
            else:
                out.extend(self._chunk_base_ids(seg))
        return out

    def decode(self, ids: Iterable[int], *, errors: str = _DECODE_ERRORS) -> str:
        """Decode token ids to text.

        Byte sequences that are not valid UTF-8 (e.g. a prefix of a multi-byte character)
        become U+FFFD; UTF-8-encoded lone surrogates are restored (``errors`` overrides).
        Unknown ids → ValueError. Accepts any iterable of ints (lists, tensors via ``.tolist()``).
        """
        return self.decode_bytes(ids).decode("utf-8", errors)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of ``ids`` (no UTF-8 decoding). Unknown ids → ValueError."""
        vocab = self.vocab
        if hasattr(ids, "tolist"):  # torch tensor / NumPy array of shape (T,)
            ids = ids.tolist()
        try:
            return b"".join([vocab[i] for i in ids])
        except KeyError as exc:
            raise ValueError(
                f"ids contains {exc.args[0]!r}, not a token id of this tokenizer "
                f"(vocab_size={self.vocab_size})"
            ) from None
        except TypeError as exc:
            raise TypeError(f"ids must be an iterable of ints: {exc}") from None

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """Each token's bytes (for visualising how a text splits)."""
        return [self.vocab[i] for i in ids]

    # --- fast paths --------------------------------------------------------------------------
    def train_fast(
        self,
        text: str,
        vocab_size: int,
        show_progress: bool = False,
        chunk_chars: int = 1_000_000,
        progress_callback: ProgressCallback | None = None,
        *,
        allowed_special: str | Iterable[str] = "all",
        progress_every: int = 100,
    ) -> list[int]:
        """Learn the same merges as :meth:`train`, fast (tested equal on several corpora).

        What it caches: (1) each unique pre-token chunk is stored once with its count;
        (2) pair counts are kept up to date incrementally (a merge only touches the chunks
        that contain the pair, found through a pair → chunk-index map); (3) the best pair comes
        from a lazy-deletion heap keyed by ``(-count, tie-break key)`` — counts of old pairs
        only go down, so a popped entry whose count is stale is pushed back with its true count.

        Args:
            text: training text (pre-tokenized ``chunk_chars`` characters at a time, with
                results identical to one pass).
            vocab_size: final size incl. bytes and specials; ``< base_vocab_size`` → ValueError.
            show_progress: draw a rich progress bar on stderr.
            progress_callback: ``cb(merges_done, merges_total, info)`` as in :meth:`train`.

        Returns:
            the ids of ``text`` under the trained vocabulary (``list[int]``), equal to
            ``encode_fast(text, allowed_special=allowed_special)``.
        """
        self._check_train_args(text, vocab_size)
        self._reset_merges()
        allowed = _resolve_specials("allowed_special", allowed_special, self.special_to_id)
        if show_progress:
            return self._train_fast_with_bar(
                text, vocab_size, chunk_chars, progress_callback, allowed
            )
        return self._train_fast(
            text, vocab_size, chunk_chars, progress_callback, allowed, progress_every
        )

    def _train_fast_with_bar(self, text, vocab_size, chunk_chars, callback, allowed) -> list[int]:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("BPE merges", total=max(1, vocab_size - self.base_vocab_size))

            def cb(done: int, total: int, info: dict) -> None:
                bar.update(task, completed=done)
                if callback:
                    callback(done, total, info)

            return self._train_fast(text, vocab_size, chunk_chars, cb, allowed, 100)

    def _train_fast(
        self,
        text: str,
        vocab_size: int,
        chunk_chars: int,
        progress_callback: ProgressCallback | None,
        allowed: frozenset[str],
        progress_every: int,
    ) -> list[int]:
        # 1. unique chunks and their counts; remember the text's layout to return its ids
        counter: Counter[str] = Counter()
        layout: list[int | list[str]] = []  # special id or a list of chunk strings
        for k, seg in enumerate(self._segments(text, allowed)):
            if k % 2:
                layout.append(self.special_to_id[seg])
                continue
            for pieces in iter_pretokens(seg, self._compiled, chunk_chars):
                counter.update(pieces)
                layout.append(pieces)
        strings = list(counter)
        words: list[list[int]] = [list(_to_bytes(s)) for s in strings]
        wcounts: list[int] = [counter[s] for s in strings]
        del counter

        # 2. initial pair counts and pair -> indices of words containing it
        pair_counts: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = {}
        for i, w in enumerate(words):
            c = wcounts[i]
            for p in zip(w, w[1:]):
                pair_counts[p] = pair_counts.get(p, 0) + c
                s = where.get(p)
                if s is None:
                    where[p] = {i}
                else:
                    s.add(i)
        keys: dict[int, tuple[int, ...]] = {i: _tie_key(b) for i, b in self.vocab.items()}
        heap = [(-c, keys[a], keys[b], a, b) for (a, b), c in pair_counts.items()]
        heapq.heapify(heap)

        # 3. merge loop
        total = vocab_size - self.base_vocab_size
        done = 0
        while done < total and heap:
            negc, _, _, a, b = heapq.heappop(heap)
            count = pair_counts.get((a, b), 0)
            if count != -negc:  # stale entry: counts only decrease, re-queue with the true count
                if count > 0:
                    heapq.heappush(heap, (-count, keys[a], keys[b], a, b))
                continue
            new_id = self.vocab_size
            self._add_merge((a, b), new_id)
            keys[new_id] = _tie_key(self.vocab[new_id])
            new_pairs: set[tuple[int, int]] = set()
            for i in where.pop((a, b)):
                w = words[i]
                n = len(w)
                out: list[int] = []
                j = 0
                while j < n:
                    if j < n - 1 and w[j] == a and w[j + 1] == b:
                        out.append(new_id)
                        j += 2
                    else:
                        out.append(w[j])
                        j += 1
                if len(out) == n:  # stale index: the pair was already merged away here
                    continue
                c = wcounts[i]
                for p in zip(w, w[1:]):
                    pair_counts[p] -= c
                for p in zip(out, out[1:]):
                    pair_counts[p] = pair_counts.get(p, 0) + c
                    if p[0] == new_id or p[1] == new_id:
                        new_pairs.add(p)
                        s = where.get(p)
                        if s is None:
                            where[p] = {i}
                        else:
                            s.add(i)
                words[i] = out
            pair_counts.pop((a, b), None)
            for p in new_pairs:
                c = pair_counts[p]
                if c > 0:
                    heapq.heappush(heap, (-c, keys[p[0]], keys[p[1]], p[0], p[1]))
            done += 1
            if progress_callback and (done % progress_every == 0 or done == total):
                progress_callback(
                    done, total, {"pair": (a, b), "count": count, "token": self.vocab[new_id]}
                )
        self._refresh()

        # 4. ids of the text: each chunk's final ids, in text order; fill the encode cache
        final = dict(zip(strings, words))
        self._cache = final if len(final) <= self._CACHE_LIMIT else {}
        out_ids: list[int] = []
        for item in layout:
            if isinstance(item, int):
                out_ids.append(item)
            else:
                for piece in item:
                    out_ids.extend(final[piece])
        return out_ids

    _CACHE_LIMIT = 1 << 18  # chunks cached by encode_fast before the cache is cleared

    def _encode_chunk_fast(self, ids: list[int]) -> list[int]:
        """Min-rank merge loop on one chunk without building pair-count dicts."""
        ranks = self._ranks
        merges = self.merges
        inf = 1 << 62
        while len(ids) >= 2:
            best = inf
            pair = None
            for p in zip(ids, ids[1:]):
                r = ranks.get(p, inf)
                if r < best:
                    best, pair = r, p
            if pair is None:
                break
            ids = _merge(ids, pair, merges[pair])
        return ids

    def encode_fast(
        self,
        text: str,
        *,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = (),
    ) -> list[int]:
        """The fast encoder (what :meth:`encode` uses by default): same ids as
        :meth:`encode_reference`, each distinct chunk merged once and cached.

        Special handling as in :meth:`encode`. Returns ``list[int]`` of length T.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        allowed = self._check_specials(text, allowed_special, disallowed_special)
        self._sync()
        cache = self._cache
        out: list[int] = []
        extend = out.extend
        for k, seg in enumerate(self._segments(text, allowed)):
            if k % 2:
                out.append(self.special_to_id[seg])
                continue
            for pieces in iter_pretokens(seg, self._compiled):
                for piece in pieces:
                    ids = cache.get(piece)
                    if ids is None:
                        ids = self._encode_chunk_fast(self._chunk_base_ids(piece))
                        if len(cache) >= self._CACHE_LIMIT:
                            cache.clear()
                        cache[piece] = ids
                    extend(ids)
        return out

    def encode_at_vocab(
        self,
        text: str,
        vocab_size: int,
        *,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = (),
    ) -> list[int]:
        """Encode with only the merges whose ids are below ``vocab_size``.

        Equals the encoding by a tokenizer trained to ``vocab_size`` on the same data (BPE
        merges are learned greedily, so the first merges of a big vocab *are* the small vocab).
        A ``vocab_size`` at or above the learned size uses every merge (e.g. a training that
        stopped early); below ``base_vocab_size`` (256 bytes + specials) → ValueError.
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
        if vocab_size < self.base_vocab_size:
            raise ValueError(
                f"vocab_size must be >= base_vocab_size = {self.base_vocab_size} "
                f"(256 bytes + {len(self.special_tokens)} specials), got {vocab_size}"
            )
        return self.truncated(vocab_size).encode_fast(
            text, allowed_special=allowed_special, disallowed_special=disallowed_special
        )

    def truncated(self, vocab_size: int) -> BPETokenizer:
        """A copy that keeps only the merges with new id below ``vocab_size`` (cached)."""
        self._sync()
        if vocab_size >= self.vocab_size:
            return self
        tok = self._prefix_tokenizers.get(vocab_size)
        if tok is None:
            d = self.to_dict()
            d["merges"] = [m for m in d["merges"] if m[2] < vocab_size]
            tok = type(self).from_dict(d)
            self._prefix_tokenizers[vocab_size] = tok
        return tok

    # --- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"format": "g2c.bpe", "version": 2, "special_tokens": [...],
        "merges": [[left, right, id], ...], "pattern": ...}`` (+ ``byte_ids`` / ``special_ids``
        for a foreign id layout such as GPT-2's)."""
        d: dict[str, Any] = {
            "format": BPE_FORMAT,
            "version": BPE_FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": list(self.special_tokens),
            "merges": [[a, b, i] for (a, b), i in self.merges.items()],
        }
        if self._byte_ids != list(range(256)):
            d["byte_ids"] = list(self._byte_ids)
        ids = [self.special_to_id[s] for s in self.special_tokens]
        if ids != list(range(256, 256 + len(ids))):
            d["special_ids"] = ids
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BPETokenizer:
        """Rebuild from :meth:`to_dict` output. Another format or version → ValueError."""
        if not isinstance(d, dict) or d.get("format") != BPE_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(
                f"not a BPE tokenizer dict: format is {got!r}, expected {BPE_FORMAT!r}"
            )
        if d.get("version") != BPE_FORMAT_VERSION:
            raise ValueError(
                f"{BPE_FORMAT} version {d.get('version')!r} is not supported "
                f"(expected {BPE_FORMAT_VERSION})"
            )
        tok = cls(d.get("special_tokens", ()), pattern=d.get("pattern", GPT4_SPLIT_PATTERN))
        if "byte_ids" in d or "special_ids" in d:
            byte_ids = list(d.get("byte_ids", range(256)))
            special_ids = list(d.get("special_ids", range(256, 256 + len(tok.special_tokens))))
            present = [i for i in byte_ids if i is not None]
            if len(present) != len(set(present)) or len(byte_ids) != 256:
                raise ValueError(
                    "byte_ids must list 256 entries: distinct ids, or null for a byte the "
                    "vocabulary lacks"
                )
            tok._byte_ids = byte_ids
            tok.special_to_id = dict(zip(tok.special_tokens, special_ids))
            tok._reset_merges()
        for a, b, i in d.get("merges", []):
            if a not in tok.vocab or b not in tok.vocab or i in tok.vocab:
                raise ValueError(
                    f"bad merge [{a}, {b}, {i}]: ids must exist and the new id be unused"
                )
            tok._add_merge((a, b), i)
        tok._refresh()
        return tok

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically. Returns the path."""
        return atomic_write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer saved by :meth:`save` (a directory means ``path/tokenizer.json``)."""
        return cls.from_dict(read_tokenizer_json(path))

    # --- interop (implemented in g2c.tokenizer.interop) ---------------------------------------
    @classmethod
    def from_gpt2_files(
        cls, vocab_json_path: str | os.PathLike, merges_txt_path: str | os.PathLike
    ) -> BPETokenizer:
        """Load GPT-2's ``vocab.json`` + ``merges.txt``; encodes exactly like GPT-2.

        GPT-2 split pattern, GPT-2 ids (``<|endoftext|>`` = 50256). Bad files → ValueError.
        """
        return interop.load_gpt2_files(cls, vocab_json_path, merges_txt_path)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike, *, pattern: str | None = None) -> BPETokenizer:
        """Load the byte-level BPE tokenizer stored in a GGUF file (SmolLM2, ...), GGUF ids kept.

        Tokens, merges and control tokens (as special tokens) come from the ``tokenizer.ggml.*``
        metadata; the split regex from ``tokenizer.ggml.pre`` (SmolLM2: digits one by one, then
        GPT-2's regex), or ``pattern`` when given. Encodes like llama.cpp / the model's own
        ``tokenizer.json`` (see :mod:`g2c.tokenizer.gguf`). Missing file → FileNotFoundError;
        not a byte-level BPE GGUF, an unknown ``pre`` or a damaged file → ValueError.
        """
        return gguf.load_gguf_tokenizer(cls, path, pattern=pattern)

    def to_tiktoken(self, name: str = "g2c") -> tiktoken.Encoding:
        """Export to a ``tiktoken.Encoding`` with identical ids (see :mod:`.interop`)."""
        self._sync()
        return interop.to_tiktoken(self, name)

    def to_hf_tokenizer(self) -> tokenizers.Tokenizer:
        """Export to a HF ``tokenizers.Tokenizer`` with identical ids (see :mod:`.interop`)."""
        self._sync()
        return interop.to_hf_tokenizer(self)


__all__ = [
    "BPETokenizer",
    "COURSE_SPECIAL_TOKENS",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "_get_pair_counts",
    "_merge",
]
