"""Unigram language-model tokenizer (SentencePiece-style), trained by EM and pruning.

The idea (Kudo 2018, "Subword Regularization", arXiv:1804.10959; Kudo & Richardson 2018,
"SentencePiece"). A vocabulary of pieces ``x`` with probabilities ``p(x)`` defines a unigram
language model: a segmentation ``x_1 .. x_m`` of a word has probability ``prod p(x_i)``.
Encoding picks the most probable segmentation with the Viterbi algorithm over the *lattice* of
all ways to cut the word into vocabulary pieces. Training goes the other way round from BPE:
start with a large seed vocabulary (frequent substrings), then repeat

1. EM: the E-step runs forward-backward on each word's lattice to get the *expected* number of
   times each piece is used; the M-step turns expected counts into new log-probabilities;
2. prune: for each piece, estimate how much the corpus log-likelihood would drop if it were
   removed (its uses re-segmented by the next-best split) and drop the pieces that cost least,

until the vocabulary has the requested size. Single characters are never pruned.

Whitespace is a character like any other: as in SentencePiece, a space becomes ``"▁"``
(U+2581), a ``"▁"`` is put in front of the text, and the text is split *before* every ``"▁"``
(pieces never cross a word start). So ``"Hello world"`` → words ``"▁Hello"``, ``"▁world"``,
and decoding is lossless: ``decode(encode(s)) == s`` whenever every character of ``s`` was seen
in training and ``s`` contains no literal ``"▁"``. Unseen characters become ``<unk>`` (id 0;
a run of them becomes one ``<unk>``), decoded as ``"⁇"``; there is no byte fallback.

Shapes: ``encode(text: str) -> list[int]`` of length n_tokens, ids in ``[0, len(vocab))``.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2c.artifacts import atomic_write_json
from g2c.tokenizer.formats import check_format, read_tokenizer_json

if TYPE_CHECKING:  # optional interop library, imported only when exporting
    import tokenizers

FORMAT = "g2c.unigram"
FORMAT_VERSION = 1
SPACE = "\u2581"  # "▁", SentencePiece's visible space
UNK_SURFACE = "\u2047"  # "⁇", what <unk> decodes to (SentencePiece's choice)
UNK_PENALTY = 10.0  # an unknown character scores min_score - 10 (SentencePiece, HF tokenizers)
_EXPECTED_FREQUENCY_THRESHOLD = 0.5  # M-step drops pieces used less than this (SentencePiece)
_WORD_RE = re.compile(f"{SPACE}[^{SPACE}]*")


def pre_tokenize(text: str) -> list[str]:
    """Replace spaces by ``"▁"``, prepend one ``"▁"``, split before every ``"▁"``.

    ``"a  b\\nc"`` → ``["▁a", "▁", "▁b\\nc"]`` (only U+0020 is a space; newlines stay inside
    words, as in HF's ``Metaspace(prepend_scheme="always", split=True)``). Unlike HF, the
    ``"▁"`` is prepended even when the text starts with a space, so no space is ever lost.
    Raises ``TypeError`` if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text:
        return []
    return _WORD_RE.findall(SPACE + text.replace(" ", SPACE))


# --- the lattice: every way to cut a word into vocabulary pieces -----------------------------


def _prefixes(pieces: Iterable[str]) -> set[str]:
    """Every non-empty prefix of every piece. A lattice scan from position i stops at the first
    ``word[i:j]`` that is not in this set: no piece can start with it, nor with anything longer."""
    return {p[:k] for p in pieces for k in range(1, len(p) + 1)}


def _lattice(
    word: str, scores: dict[str, float], prefixes: set[str]
) -> list[list[tuple[int, str, float]]]:
    """``edges[i]`` = the pieces ``(end, piece, log_prob)`` that start at character ``i``."""
    n = len(word)
    edges: list[list[tuple[int, str, float]]] = []
    for i in range(n):
        here = []
        for j in range(i + 1, n + 1):
            sub = word[i:j]
            if sub not in prefixes:
                break
            s = scores.get(sub)
            if s is not None:
                here.append((j, sub, s))
        edges.append(here)
    return edges


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def _forward_backward(
    word: str, scores: dict[str, float], prefixes: set[str]
) -> tuple[float, dict[str, float]]:
    """Log-likelihood ``log Z`` of ``word`` (sum over segmentations) and each piece's expected count.

    alpha[j] = log-sum of all paths from 0 to j, beta[i] = from i to the end; an edge
    ``(i, j, x)`` is used with posterior ``exp(alpha[i] + log p(x) + beta[j] - log Z)``.
    """
    n = len(word)
    edges = _lattice(word, scores, prefixes)
    alpha = [-math.inf] * (n + 1)
    alpha[0] = 0.0
    for i in range(n):
        for j, _, s in edges[i]:
            alpha[j] = _logaddexp(alpha[j], alpha[i] + s)
    beta = [-math.inf] * (n + 1)
    beta[n] = 0.0
    for i in range(n - 1, -1, -1):
        for j, _, s in edges[i]:
            beta[i] = _logaddexp(beta[i], s + beta[j])
    log_z = alpha[n]
    expected: dict[str, float] = {}
    for i in range(n):
        for j, piece, s in edges[i]:
            expected[piece] = expected.get(piece, 0.0) + math.exp(alpha[i] + s + beta[j] - log_z)
    return log_z, expected


def _viterbi(
    word: str,
    scores: dict[str, float],
    prefixes: set[str],
    unk_score: float,
    exclude: str | None = None,
) -> list[str | None]:
    """The most probable segmentation of ``word``; ``None`` marks an unknown character.

    Ties go to the path found first (start positions in increasing order, strict ``>``), the
    rule HF ``tokenizers`` uses, so both give the same pieces. ``exclude`` removes one piece
    from the vocabulary (used by pruning to find a piece's best alternative split).
    """
    n = len(word)
    best = [-math.inf] * (n + 1)
    back: list[tuple[int, str | None]] = [(0, None)] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        has_single = False
        for j in range(i + 1, n + 1):
            piece = word[i:j]
            if piece not in prefixes:
                break
            s = scores.get(piece)
            if s is None or piece == exclude:
                continue
            has_single |= j == i + 1
            if best[i] + s > best[j]:
                best[j], back[j] = best[i] + s, (i, piece)
        if not has_single and best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (i, None)
    pieces: list[str | None] = []
    j = n
    while j > 0:
        i, piece = back[j]
        pieces.append(piece)
        j = i
    return pieces[::-1]


def _digamma(x: float) -> float:
    """psi(x) = d/dx log Gamma(x), by recurrence up to x >= 6 and the asymptotic series."""
    result = 0.0
    while x < 6.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return (
        result
        + math.log(x)
        - 0.5 / x
        - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))
    )


# --- the tokenizer ---------------------------------------------------------------------------


class UnigramTokenizer:
    """A SentencePiece-style unigram tokenizer: ``vocab[0] = "<unk>"``, then pieces by score.

    Args:
        pieces: optional ``(piece, log_prob)`` pairs to start from (a trained vocabulary);
            pieces must be unique non-empty strings (else ``ValueError``).
        unk_token: the name of id 0, the unknown token (never matched inside text).

    Attributes: ``vocab`` (id → piece), ``scores`` (id → log-probability; 0.0 for ``<unk>``),
    ``piece_to_id``, ``max_piece_length`` (longest piece, in characters).
    """

    def __init__(
        self, pieces: Sequence[tuple[str, float]] = (), *, unk_token: str = "<unk>"
    ) -> None:
        self.unk_token = unk_token
        self._set_pieces(list(pieces))

    def _set_pieces(self, pieces: list[tuple[str, float]]) -> None:
        names = [p for p, _ in pieces]
        if any(not isinstance(p, str) or not p for p in names) or len(set(names)) != len(names):
            raise ValueError("pieces must be unique non-empty strings")
        if self.unk_token in names:
            raise ValueError(
                f"pieces must not contain unk_token {self.unk_token!r}; it is added as id 0"
            )
        self.vocab = [self.unk_token] + names
        self.scores = [0.0] + [float(s) for _, s in pieces]
        self.piece_to_id = {p: i for i, p in enumerate(self.vocab)}
        self._score_of = {p: float(s) for p, s in pieces}  # the lattice: pieces only, no <unk>
        self.max_piece_length = max((len(p) for p in names), default=1)
        self._prefixes = _prefixes(names)
        self._unk_score = min(self._score_of.values(), default=0.0) - UNK_PENALTY
        self._cache: dict[str, list[str]] = {}

    # --- training ----------------------------------------------------------------------------

    def train(
        self,
        text: str,
        vocab_size: int,
        *,
        max_piece_length: int = 16,
        seed_size: int | None = None,
        shrinking_factor: float = 0.75,
        num_sub_iterations: int = 2,
        progress_callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> UnigramTokenizer:
        """Learn ``vocab_size`` pieces (``<unk>`` included) from ``text``; returns ``self``.

        Seed: every character of the text, plus the ``seed_size`` substrings (2 to
        ``max_piece_length`` characters, seen at least twice, within one word) with the largest
        ``count × length`` (SentencePiece's seed ranking; default ``seed_size`` =
        ``10 × vocab_size``). Then rounds of ``num_sub_iterations`` EM steps and one pruning
        step that keeps ``max(1.1 × vocab_size, shrinking_factor × current size)`` pieces,
        until at most ``1.1 × vocab_size`` remain; last, all characters plus the best-scoring
        other pieces fill ``vocab_size``. The M-step uses SentencePiece's Bayesian update
        ``log p(x) = digamma(count(x)) - digamma(total)``, which pushes rare pieces out.
        ``progress_callback`` receives ``{"round", "size", "log_likelihood"}`` after each EM
        step. Raises ``ValueError`` if ``vocab_size`` < 1 + number of distinct characters, or
        on a bad ``max_piece_length``/``shrinking_factor``; ``TypeError`` for non-str text.
        """
        if max_piece_length < 1:
            raise ValueError(f"max_piece_length must be >= 1, got {max_piece_length}")
        if not 0.0 < shrinking_factor < 1.0:
            raise ValueError(f"shrinking_factor must be in (0, 1), got {shrinking_factor}")
        words = Counter(pre_tokenize(text))
        chars = Counter()
        for w, f in words.items():
            for ch in w:
                chars[ch] += f
        if vocab_size < len(chars) + 1:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: <unk> plus the {len(chars)} distinct "
                f"characters of the text need {len(chars) + 1}; pass vocab_size >= {len(chars) + 1}"
            )
        seed_size = 10 * vocab_size if seed_size is None else seed_size
        scores = self._seed(words, chars, max_piece_length, seed_size)
        desired = int(1.1 * vocab_size)
        round_ = 0
        while True:
            prefixes = _prefixes(scores)  # stays valid while EM only drops pieces
            for _ in range(num_sub_iterations):
                expected, log_likelihood = self._e_step(scores, words, prefixes)
                scores = self._m_step(expected, chars)
                if progress_callback is not None:
                    progress_callback(
                        {"round": round_, "size": len(scores), "log_likelihood": log_likelihood}
                    )
            if len(scores) <= desired:
                break
            scores = self._prune(
                scores,
                words,
                chars,
                max(desired, int(shrinking_factor * len(scores))),
                _prefixes(scores),
            )
            round_ += 1
        self._set_pieces(self._finalize(scores, chars, vocab_size - 1))
        return self

    @staticmethod
    def _seed(words: Counter, chars: Counter, max_len: int, seed_size: int) -> dict[str, float]:
        """Initial log-probabilities: all characters plus the most frequent × longest substrings."""
        subs: Counter = Counter()
        for w, f in words.items():
            for i in range(len(w)):
                for j in range(i + 2, min(len(w), i + max_len) + 1):
                    subs[w[i:j]] += f
        ranked = sorted(
            (s for s, c in subs.items() if c >= 2), key=lambda s: (-subs[s] * len(s), s)
        )
        counts = dict(chars) | {s: subs[s] for s in ranked[:seed_size]}
        log_total = math.log(sum(counts.values()))
        return {s: math.log(c) - log_total for s, c in counts.items()}

    @staticmethod
    def _e_step(
        scores: dict[str, float], words: Counter, prefixes: set[str]
    ) -> tuple[dict[str, float], float]:
        """Expected piece counts over the corpus and its log-likelihood (sum of freq × log Z)."""
        expected: dict[str, float] = dict.fromkeys(scores, 0.0)
        log_likelihood = 0.0
        for w, f in words.items():
            log_z, counts = _forward_backward(w, scores, prefixes)
            log_likelihood += f * log_z
            for piece, c in counts.items():
                expected[piece] += f * c
        return expected, log_likelihood

    @staticmethod
    def _m_step(expected: dict[str, float], chars: Counter) -> dict[str, float]:
        """New log-probabilities ``digamma(c) - digamma(sum c)``; drops pieces used < 0.5 times
        (single characters are kept, their count floored at 0.5, so every word stays segmentable)."""
        kept = {
            p: max(c, _EXPECTED_FREQUENCY_THRESHOLD)
            for p, c in expected.items()
            if c >= _EXPECTED_FREQUENCY_THRESHOLD or p in chars
        }
        log_total = _digamma(sum(kept.values()))
        return {p: _digamma(c) - log_total for p, c in kept.items()}

    @staticmethod
    def _prune(
        scores: dict[str, float], words: Counter, chars: Counter, target: int, prefixes: set[str]
    ) -> dict[str, float]:
        """Keep the ``target`` pieces whose removal would cost the most likelihood.

        For piece x used ``c(x)`` times on the corpus' Viterbi paths, removing it re-segments
        each use into x's best split without x (its *alternative*); the loss is
        ``F(x) · (log p(x) - sum log p'(alt))``, with p' the probabilities after moving x's
        count to the alternative pieces and F(x) the share of words that use x (SentencePiece).
        A piece whose own best segmentation is a split is never on a Viterbi path: dropped.
        """
        unk = min(scores.values()) - UNK_PENALTY
        alternatives: dict[str, list[str]] = {}
        for piece in scores:
            if piece in chars and len(piece) == 1:
                continue  # characters are always kept
            if _viterbi(piece, scores, prefixes, unk) == [piece]:
                alternatives[piece] = _viterbi(piece, scores, prefixes, unk, exclude=piece)
        freq: Counter = Counter()
        users: Counter = Counter()  # piece -> total frequency of the words that use it
        for w, f in words.items():
            path = _viterbi(w, scores, prefixes, unk)
            for piece in path:
                freq[piece] += f
            for piece in set(path):
                users[piece] += f
        total, n_words = sum(freq.values()), sum(words.values())
        losses = []
        for piece, alt in alternatives.items():
            if freq[piece] == 0:
                continue  # unused on any Viterbi path: removing it costs nothing
            new_total = total + freq[piece] * (len(alt) - 1)
            logp_alt = sum(math.log(freq[a] + freq[piece]) - math.log(new_total) for a in alt)
            loss = users[piece] / n_words * (math.log(freq[piece]) - math.log(total) - logp_alt)
            losses.append((-loss, piece))
        kept = {p: s for p, s in scores.items() if len(p) == 1 and p in chars}
        for _, piece in sorted(losses):
            if len(kept) >= target:
                break
            kept[piece] = scores[piece]
        return kept

    @staticmethod
    def _finalize(
        scores: dict[str, float], chars: Counter, n_pieces: int
    ) -> list[tuple[str, float]]:
        """All characters (missing ones get min score minus a small rank penalty), then the
        best-scoring other pieces up to ``n_pieces``; sorted by score, ties by piece."""
        min_score = min(scores.values())
        final: dict[str, float] = {}
        for rank, (ch, _) in enumerate(sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))):
            final[ch] = scores.get(ch, min_score - 1e-4 * (rank + 1))
        for piece, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(final) >= n_pieces:
                break
            final.setdefault(piece, s)
        return sorted(final.items(), key=lambda kv: (-kv[1], kv[0]))

    # --- encoding ----------------------------------------------------------------------------

    def _tokenize_word(self, word: str) -> list[str]:
        path = _viterbi(word, self._score_of, self._prefixes, self._unk_score)
        out: list[str] = []
        for piece in path:  # fuse runs of unknown characters into one <unk>
            if piece is None:
                if not out or out[-1] != self.unk_token:
                    out.append(self.unk_token)
            else:
                out.append(piece)
        return out

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into pieces by Viterbi (most probable segmentation) per word.

        Unknown characters appear as ``"<unk>"``. Raises ``TypeError`` for non-str ``text``.
        """
        out: list[str] = []
        for word in pre_tokenize(text):
            pieces = self._cache.get(word)
            if pieces is None:
                pieces = self._cache[word] = self._tokenize_word(word)
            out.extend(pieces)
        return out

    def encode(self, text: str) -> list[int]:
        """Encode ``text`` to ids, shape ``(n_tokens,)`` as a list of int (``<unk>`` = 0)."""
        return [self.piece_to_id[p] for p in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Join the pieces, turn ``"▁"`` back into spaces and drop the one prepended space.

        ``<unk>`` decodes to ``"⁇"``. Raises ``ValueError`` for an id outside
        ``[0, len(vocab))`` and ``TypeError`` for a non-int id.
        """
        parts = []
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool):
                raise TypeError(f"ids must be ints, got {type(i).__name__}")
            if not 0 <= i < len(self.vocab):
                raise ValueError(
                    f"id {i} out of range [0, {len(self.vocab)}); was it encoded by this tokenizer?"
                )
            parts.append(UNK_SURFACE if i == 0 else self.vocab[i])
        text = "".join(parts).replace(SPACE, " ")
        return text[1:] if text.startswith(" ") else text

    # --- persistence and interop -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: ``{"format": "g2c.unigram", "version": 1, "unk_token", "pieces":
        [[piece, log_prob], ...]}`` (``<unk>`` not listed; it is always id 0)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "unk_token": self.unk_token,
            "pieces": [[p, s] for p, s in zip(self.vocab[1:], self.scores[1:])],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnigramTokenizer:
        """Rebuild from :meth:`to_dict` output. Another format or version → ``ValueError``."""
        check_format(d, FORMAT, FORMAT_VERSION)
        return cls([(p, s) for p, s in d["pieces"]], unk_token=d["unk_token"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically; returns the path."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> UnigramTokenizer:
        """Read a tokenizer written by :meth:`save` (plain JSON, nothing executed)."""
        return cls.from_dict(read_tokenizer_json(path))

    def to_hf_tokenizer(self) -> tokenizers.Tokenizer:
        """The same model as an HF ``tokenizers.Tokenizer`` (``Unigram`` model, ``Metaspace``
        pre-tokenizer and decoder). Same pieces and ids for text that does not start with a
        space (HF's Metaspace skips the prepended ``"▁"`` then) and does not contain the literal
        string ``"<unk>"`` (HF matches it as a piece). Needs the optional ``tokenizers`` package.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        hf = Tokenizer(
            models.Unigram(list(zip(self.vocab, self.scores)), unk_id=0, byte_fallback=False)
        )
        hf.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SPACE, prepend_scheme="always", split=True
        )
        hf.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always", split=True)
        return hf
