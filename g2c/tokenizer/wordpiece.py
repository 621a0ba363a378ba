"""WordPiece: BERT's subword tokenizer, trained by likelihood-scored merges.

The idea. Split text into words on whitespace and punctuation (as BERT's ``BasicTokenizer``
does), then cut each word into pieces from a fixed vocabulary. A piece that continues a word
carries the prefix ``##``: ``"tokenizers"`` → ``["token", "##izer", "##s"]``.

Training (Schuster & Nakajima 2012, "Japanese and Korean Voice Search"; the variant described
in the Hugging Face course, chapter 6.6) starts from single characters and, like BPE, merges
adjacent pairs. The difference is which pair wins: not the most frequent pair but the one with
the highest *likelihood score*

    score(a, b) = count(a b) / (count(a) · count(b)),

i.e. the merge that most increases the likelihood of the corpus under a unigram model of the
pieces. It prefers pairs whose parts rarely occur apart ("q" + "##u") over pairs of two common
pieces that merely meet often ("e" + "##s").

Encoding does not replay merges: each word is cut greedily, longest vocabulary match first,
left to right (Wu et al. 2016, "Google's NMT system"; BERT's ``WordpieceTokenizer``). A word
with any part that cannot be matched becomes the single token ``[UNK]``.

Shapes: ``encode(text: str) -> list[int]`` of length n_tokens, ids in ``[0, len(vocab))``.
"""

from __future__ import annotations

import heapq
import os
import string
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2c.artifacts import atomic_write_json
from g2c.tokenizer.formats import check_format, read_tokenizer_json

if TYPE_CHECKING:  # optional interop library, imported only when exporting
    import tokenizers

FORMAT = "g2c.wordpiece"
FORMAT_VERSION = 1
CONTINUATION_PREFIX = "##"
DEFAULT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_NOT_WHITESPACE = frozenset("\x1c\x1d\x1e\x1f")  # str.isspace() says yes, Unicode White_Space no


# --- pre-tokenization -----------------------------------------------------------------------


def _is_whitespace(ch: str) -> bool:
    """Unicode White_Space, as Rust's ``char::is_whitespace`` (used by HF ``tokenizers``)."""
    return ch.isspace() and ch not in _NOT_WHITESPACE


def _is_punctuation(ch: str) -> bool:
    """BERT's rule: any ASCII punctuation (including ``$+<=>^`|~``) or Unicode category P*."""
    return ch in _ASCII_PUNCTUATION or unicodedata.category(ch).startswith("P")


def pre_tokenize(text: str) -> list[str]:
    """Split ``text`` into words the way BERT's ``BertPreTokenizer`` does.

    Whitespace (Unicode White_Space) separates words and is dropped; every punctuation
    character (ASCII punctuation or Unicode category P*) becomes a word of its own; all other
    characters (letters, digits, symbols such as ``£``) stay glued together. No lowercasing
    or accent stripping is applied (that is BERT-uncased's *normalizer*, a separate step).

    Example: ``"Hello, world!"`` → ``["Hello", ",", "world", "!"]``. Raises ``TypeError``
    if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if _is_whitespace(ch) or _is_punctuation(ch):
            if current:
                words.append("".join(current))
                current = []
            if not _is_whitespace(ch):
                words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


# --- training helpers -------------------------------------------------------------------------


def _word_to_chars(word: str) -> list[str]:
    """``"cat"`` → ``["c", "##a", "##t"]``: the starting segmentation of a word."""
    return [word[0]] + [CONTINUATION_PREFIX + ch for ch in word[1:]]


def _join_pair(a: str, b: str) -> str:
    """The token made by merging ``a`` and ``b``: ``("th", "##e")`` → ``"the"``."""
    return a + b[len(CONTINUATION_PREFIX) :]


def _merge_word(pieces: list[str], a: str, b: str, new: str) -> list[str]:
    """Replace each adjacent ``(a, b)`` in ``pieces`` by ``new`` (left to right, no overlap)."""
    out, i = [], 0
    while i < len(pieces):
        if i + 1 < len(pieces) and pieces[i] == a and pieces[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(pieces[i])
            i += 1
    return out


def _rank(pair: tuple[str, str], pair_count: int, piece_count: Counter) -> tuple:
    """Heap key for a pair: smaller is better.

    Order: highest score first; ties → higher pair count; then the lexicographically
    smallest ``(a, b)``. This makes training deterministic.
    """
    a, b = pair
    score = pair_count / (piece_count[a] * piece_count[b])
    return (-score, -pair_count, a, b)


def _count_all(words: Sequence[list[str]], freqs: Sequence[int]) -> tuple[Counter, Counter]:
    """Piece counts and adjacent-pair counts over all words, weighted by word frequency."""
    piece_count: Counter = Counter()
    pair_count: Counter = Counter()
    for pieces, f in zip(words, freqs):
        for p in pieces:
            piece_count[p] += f
        for pair in zip(pieces, pieces[1:]):
            pair_count[pair] += f
    return piece_count, pair_count


# --- the tokenizer ---------------------------------------------------------------------------


class WordPieceTokenizer:
    """A BERT-style WordPiece tokenizer: likelihood-scored training, greedy longest-match encoding.

    Args:
        special_tokens: tokens that take the first ids, in order (default BERT's
            ``[PAD] [UNK] [CLS] [SEP] [MASK]`` → ids 0..4). Duplicates → ``ValueError``.
        unk_token: the token a word becomes when it cannot be cut into vocabulary pieces; must
            be one of ``special_tokens`` (else ``ValueError``).
        max_input_chars_per_word: longer words become ``unk_token`` (BERT and HF use 100).

    Attributes: ``vocab`` (token → id), ``id_to_token`` (list, id → token), ``merges`` (the
    training history: ``(a, b, score, pair_count)`` in merge order), ``special_tokens``.
    Special tokens are never parsed out of text; ``encode`` treats its input as plain text.
    """

    def __init__(
        self,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        *,
        unk_token: str = "[UNK]",
        max_input_chars_per_word: int = 100,
    ) -> None:
        special_tokens = tuple(special_tokens)
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special_tokens has duplicates: {special_tokens}; list each once")
        if unk_token not in special_tokens:
            raise ValueError(
                f"unk_token {unk_token!r} must be one of special_tokens {special_tokens}"
            )
        if max_input_chars_per_word < 1:
            raise ValueError(
                f"max_input_chars_per_word must be >= 1, got {max_input_chars_per_word}"
            )
        self.special_tokens = special_tokens
        self.unk_token = unk_token
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.merges: list[tuple[str, str, float, int]] = []
        self._set_vocab(list(special_tokens))

    def _set_vocab(self, tokens: list[str]) -> None:
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocab has duplicate tokens; each token must appear once")
        self.id_to_token = list(tokens)
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.unk_id = self.vocab[self.unk_token]
        bare = [
            t[len(CONTINUATION_PREFIX) :] if t.startswith(CONTINUATION_PREFIX) else t
            for t in tokens
        ]
        self._max_piece_chars = max((len(t) for t in bare), default=1)
        self._cache: dict[str, list[str]] = {}

    # --- training ----------------------------------------------------------------------------

    def train(
        self,
        text: str,
        vocab_size: int,
        min_frequency: int = 2,
        *,
        fast: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> WordPieceTokenizer:
        """Learn a vocabulary of ``vocab_size`` tokens from ``text``; returns ``self``.

        The vocabulary is: the special tokens, then every character of the training words in
        both forms (``c`` and ``##c``, so any seen character can be encoded at any position of
        a word), then merged tokens in merge order. Each step merges the adjacent pair with the
        highest ``count(ab) / (count(a) count(b))`` (ties: higher pair count, then the
        lexicographically smallest pair). Pairs seen fewer than ``min_frequency`` times are
        never merged, so training may stop before ``vocab_size`` on a small text. Note that
        the winning score is *not* monotone over training: a merge lowers ``count(a)`` and
        ``count(b)``, which raises the score of other pairs that contain ``a`` or ``b``.

        ``fast=True`` (default) updates counts incrementally (only words containing the pair
        are touched; only pairs containing ``a``, ``b`` or ``ab`` change score) and keeps
        candidates in a lazy heap; ``fast=False`` recounts everything each step (the clear
        reference). Both give identical merges. ``progress_callback(done, total)`` is called
        after each merge. Raises ``ValueError`` if ``vocab_size`` is smaller than the special
        tokens plus the character alphabet, or ``min_frequency < 1``; ``TypeError`` for a
        non-str ``text``.
        """
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        word_freqs = Counter(
            w for w in pre_tokenize(text) if len(w) <= self.max_input_chars_per_word
        )
        alphabet = sorted({ch for w in word_freqs for ch in w})
        base = list(self.special_tokens)
        base += [t for ch in alphabet for t in (ch, CONTINUATION_PREFIX + ch) if t not in base]
        if vocab_size < len(base):
            raise ValueError(
                f"vocab_size={vocab_size} is too small: the specials plus the {len(alphabet)}-"
                f"character alphabet (both c and ##c forms) already need {len(base)}; "
                f"pass vocab_size >= {len(base)}"
            )
        words = [_word_to_chars(w) for w in word_freqs]  # unique words, first-seen order
        freqs = list(word_freqs.values())
        tokens = list(base)
        step = self._train_fast if fast else self._train_reference
        merges = step(words, freqs, tokens, vocab_size, min_frequency, progress_callback)
        self.merges = merges
        self._set_vocab(tokens)
        return self

    @staticmethod
    def _train_reference(words, freqs, tokens, vocab_size, min_frequency, progress_callback):
        """Clear version: recount every piece and pair over all words before each merge."""
        known, merges = set(tokens), []
        while len(tokens) < vocab_size:
            piece_count, pair_count = _count_all(words, freqs)
            eligible = [p for p, c in pair_count.items() if c >= min_frequency]
            if not eligible:
                break
            a, b = min(eligible, key=lambda p: _rank(p, pair_count[p], piece_count))
            new = _join_pair(a, b)
            merges.append(
                (a, b, pair_count[a, b] / (piece_count[a] * piece_count[b]), pair_count[a, b])
            )
            words[:] = [_merge_word(w, a, b, new) if a in w else w for w in words]
            if new not in known:  # two different merges can spell the same token
                known.add(new)
                tokens.append(new)
            if progress_callback is not None:
                progress_callback(len(tokens), vocab_size)
        return merges

    @staticmethod
    def _train_fast(words, freqs, tokens, vocab_size, min_frequency, progress_callback):
        """Fast version: incremental counts, an index pair → words, and a lazy max-heap.

        A heap entry is valid only if it equals the pair's current rank; whenever a pair's
        counts may have changed (it contains ``a``, ``b`` or the new token) a fresh entry is
        pushed, so the best valid entry is always present. Stale entries are skipped on pop.
        """
        piece_count, pair_count = _count_all(words, freqs)
        where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)  # pair -> word indices
        by_piece: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)  # piece -> pairs
        for w, pieces in enumerate(words):
            for pair in zip(pieces, pieces[1:]):
                where[pair].add(w)
                by_piece[pair[0]].add(pair)
                by_piece[pair[1]].add(pair)
        heap = [_rank(p, c, piece_count) for p, c in pair_count.items()]
        heapq.heapify(heap)
        known, merges = set(tokens), []

        def add(w: int, sign: int) -> None:  # add (+1) or remove (-1) word w's counts
            pieces, f = words[w], freqs[w] * sign
            for p in pieces:
                piece_count[p] += f
            for pair in zip(pieces, pieces[1:]):
                pair_count[pair] += f
                if sign > 0:
                    where[pair].add(w)
                    by_piece[pair[0]].add(pair)
                    by_piece[pair[1]].add(pair)
                elif pair_count[pair] == 0:
                    del pair_count[pair]
                    where.pop(pair, None)
                    by_piece[pair[0]].discard(pair)
                    by_piece[pair[1]].discard(pair)
                else:
                    where[pair].discard(w)

        while len(tokens) < vocab_size and heap:
            entry = heapq.heappop(heap)
            pair = (entry[2], entry[3])
            count = pair_count.get(pair, 0)
            if count < min_frequency or entry != _rank(pair, count, piece_count):
                continue  # stale or ineligible; a current entry exists elsewhere if needed
            a, b = pair
            new = _join_pair(a, b)
            merges.append((a, b, -entry[0], count))
            for w in sorted(where[pair]):  # a sorted copy: where[pair] changes while we loop
                add(w, -1)
                words[w] = _merge_word(words[w], a, b, new)
                add(w, +1)
            for p in (a, b, new):
                if piece_count.get(p) == 0:
                    del piece_count[p]
            touched = by_piece[a] | by_piece[b] | by_piece[new]
            for p in touched:
                heapq.heappush(heap, _rank(p, pair_count[p], piece_count))
            if len(heap) > 4 * len(pair_count) + 1024:  # drop stale entries now and then
                heap = [_rank(p, c, piece_count) for p, c in pair_count.items()]
                heapq.heapify(heap)
            if new not in known:
                known.add(new)
                tokens.append(new)
            if progress_callback is not None:
                progress_callback(len(tokens), vocab_size)
        return merges

    # --- encoding ----------------------------------------------------------------------------

    def _tokenize_word(self, word: str) -> list[str]:
        """Greedy longest-match-first (BERT ``WordpieceTokenizer``); unmatched word → [UNK]."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = min(len(word), start + self._max_piece_chars)
            while end > start:
                piece = word[start:end] if start == 0 else CONTINUATION_PREFIX + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            else:  # no piece matched at `start`: the whole word is unknown
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into WordPiece token strings (``"##"`` marks continuations).

        Raises ``TypeError`` if ``text`` is not a ``str``.
        """
        out: list[str] = []
        for word in pre_tokenize(text):
            pieces = self._cache.get(word)
            if pieces is None:
                pieces = self._cache[word] = self._tokenize_word(word)
            out.extend(pieces)
        return out

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Encode ``text`` to token ids, shape ``(n_tokens,)`` as a list of int.

        ``add_special_tokens=True`` wraps the ids as BERT does: ``[CLS] ... [SEP]`` (requires
        both in ``special_tokens``, else ``ValueError``). Raises ``TypeError`` for non-str text.
        """
        ids = [self.vocab[t] for t in self.tokenize(text)]
        if add_special_tokens:
            missing = [t for t in ("[CLS]", "[SEP]") if t not in self.vocab]
            if missing:
                raise ValueError(f"add_special_tokens=True needs {missing} in special_tokens")
            ids = [self.vocab["[CLS]"], *ids, self.vocab["[SEP]"]]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Turn ids back into text: words joined by single spaces, ``##`` pieces glued on.

        WordPiece decoding is *lossy*: the original whitespace is gone, and punctuation comes
        back as a separate word (``"Hi, you"`` → ``"Hi , you"``). Raises ``ValueError`` for an
        id outside ``[0, len(vocab))`` and ``TypeError`` for a non-int id.
        """
        parts: list[str] = []
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool):
                raise TypeError(f"ids must be ints, got {type(i).__name__}")
            if not 0 <= i < len(self.id_to_token):
                raise ValueError(
                    f"id {i} out of range [0, {len(self.id_to_token)}); was it encoded by this tokenizer?"
                )
            tok = self.id_to_token[i]
            if tok.startswith(CONTINUATION_PREFIX) and parts:
                parts.append(tok[len(CONTINUATION_PREFIX) :])
            else:
                parts.append((" " if parts else "") + tok)
        return "".join(parts)

    # --- persistence and interop -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: ``{"format": "g2c.wordpiece", "version": 1, "vocab": [...], ...}``."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "special_tokens": list(self.special_tokens),
            "unk_token": self.unk_token,
            "continuation_prefix": CONTINUATION_PREFIX,
            "max_input_chars_per_word": self.max_input_chars_per_word,
            "vocab": list(self.id_to_token),
            "merges": [list(m) for m in self.merges],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordPieceTokenizer:
        """Rebuild from :meth:`to_dict` output. Another format or version → ``ValueError``."""
        check_format(d, FORMAT, FORMAT_VERSION)
        tok = cls(
            d["special_tokens"],
            unk_token=d["unk_token"],
            max_input_chars_per_word=d["max_input_chars_per_word"],
        )
        vocab = list(d["vocab"])
        if vocab[: len(tok.special_tokens)] != list(tok.special_tokens):
            raise ValueError("vocab must start with special_tokens in order")
        tok._set_vocab(vocab)
        tok.merges = [(a, b, float(s), int(c)) for a, b, s, c in d.get("merges", [])]
        return tok

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically; returns the path."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> WordPieceTokenizer:
        """Read a tokenizer written by :meth:`save` (plain JSON, nothing executed)."""
        return cls.from_dict(read_tokenizer_json(path))

    def to_hf_tokenizer(self) -> tokenizers.Tokenizer:
        """The same tokenizer as an HF ``tokenizers.Tokenizer`` (WordPiece model,
        ``BertPreTokenizer``, WordPiece decoder, no normalizer): identical tokens and ids.

        Needs the optional ``tokenizers`` package (``ImportError`` otherwise).
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        model = models.WordPiece(
            vocab=dict(self.vocab),
            unk_token=self.unk_token,
            max_input_chars_per_word=self.max_input_chars_per_word,
        )
        hf = Tokenizer(model)
        hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        hf.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
        return hf
