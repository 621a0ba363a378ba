"""Cleaning stages for a pretraining corpus: exact dedupe, near-duplicate removal, quality rules.

* Exact de-duplication: a document's key is the first 16 bytes of the SHA-256 of its UTF-8 text
  with leading/trailing whitespace stripped (:func:`document_digest`); the second copy of a key
  is dropped (:class:`ExactDeduplicator`).
* Near duplicates: MinHash signatures of word 5-gram shingles and an LSH index, from
  ``datasketch`` (Broder 1997; Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*,
  ch. 3). A candidate that LSH returns is confirmed by its estimated Jaccard similarity against
  the stored signature (>= ``threshold``), so a banding false positive is not dropped
  (:class:`NearDuplicateIndex`). ``datasketch`` is an optional dependency, imported when a
  signature is first computed (ImportError names the package to install).
* Quality: the Gopher rules of Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
  Insights from Training Gopher", Appendix A.1.1 (quality filters of MassiveWeb) and Table A1
  (repetition removal), with the published thresholds in :data:`GOPHER_THRESHOLDS`
  (:func:`gopher_failures` lists every rule a text fails).

All three work on plain ``str`` documents and are deterministic (fixed MinHash seed).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

# --- exact -------------------------------------------------------------------------------


def document_digest(text: str) -> bytes:
    """16-byte key of a document: ``sha256(text.strip().encode("utf-8"))[:16]``."""
    return hashlib.sha256(text.strip().encode("utf-8", "surrogatepass")).digest()[:16]


class ExactDeduplicator:
    """A set of document digests; :meth:`seen` adds a digest and says whether it was there."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, digest: bytes) -> bool:
        """True when ``digest`` was added before (a duplicate); otherwise add it, return False."""
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False


# --- near duplicates (MinHash LSH) -------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, n: int = 5) -> list[bytes]:
    """Word ``n``-grams of ``text`` (lower-cased ``\\w+`` words joined by one space), UTF-8.

    A text of fewer than ``n`` words is one shingle (all its words); an empty text → ``[]``.
    """
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return [" ".join(words).encode("utf-8")] if words else []
    return [" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


def _datasketch() -> Any:
    try:
        import datasketch  # optional dependency, only needed for near-duplicate removal
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "near-duplicate removal needs datasketch: pip install datasketch==2.0.0"
        ) from None
    return datasketch


_TEMPLATES: dict[tuple[int, int], Any] = {}


def minhash_signature(
    text: str, *, num_perm: int = 128, seed: int = 1, ngram: int = 5
) -> np.ndarray:
    """MinHash signature of ``text``'s word ``ngram`` shingles (``datasketch.MinHash``).

    Returns a ``uint32`` array of shape (num_perm,). Same text, ``num_perm`` and ``seed`` →
    same signature (in every process). An empty text gets datasketch's empty signature (all
    ``2**32 - 1``).
    """
    template = _TEMPLATES.get((num_perm, seed))
    if template is None:  # the permutations cost more than hashing a paragraph: make them once
        template = _TEMPLATES[(num_perm, seed)] = _datasketch().MinHash(
            num_perm=num_perm, seed=seed
        )
    m = _datasketch().MinHash(
        num_perm=num_perm, seed=seed, permutations=template.permutations, scheme=template.scheme
    )
    grams = shingles(text, ngram)
    if grams:
        m.update_batch(grams)
    return np.asarray(m.hashvalues, dtype=np.uint32)


class NearDuplicateIndex:
    """MinHash LSH index (``datasketch.MinHashLSH``) over signatures from :func:`minhash_signature`.

    :meth:`check_insert` returns True when the signature has an estimated Jaccard similarity
    >= ``threshold`` with one already indexed (a near duplicate; not inserted), else inserts
    it and returns False. ``threshold`` outside (0, 1) → ValueError.
    """

    def __init__(self, threshold: float = 0.8, *, num_perm: int = 128, seed: int = 1) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self._lsh = _datasketch().MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._signatures)

    def _minhash(self, signature: np.ndarray) -> Any:
        hv = np.asarray(signature, dtype=np.uint64)  # datasketch 2's default scheme: "affine32"
        return _datasketch().LeanMinHash(seed=self.seed, hashvalues=hv, scheme="affine32")

    def check_insert(self, signature: np.ndarray) -> bool:
        """True (near duplicate) or False (new; inserted)."""
        m = self._minhash(signature)
        for key in self._lsh.query(m):
            if float(np.mean(self._signatures[key] == signature)) >= self.threshold:
                return True
        self._lsh.insert(len(self._signatures), m)
        self._signatures.append(np.asarray(signature, dtype=np.uint32))
        return False


# --- quality: the Gopher rules -----------------------------------------------------------

GOPHER_THRESHOLDS: dict[str, Any] = {
    # Rae et al. 2021, Appendix A.1.1, quality filters:
    "min_words": 50,  # "contain between 50 and 100,000 words"
    "max_words": 100_000,
    "min_mean_word_length": 3.0,  # "mean word length is outside the range of 3 to 10 characters"
    "max_mean_word_length": 10.0,
    "max_symbol_word_ratio": 0.1,  # "symbol-to-word ratio greater than 0.1 (hash or ellipsis)"
    "max_bullet_lines": 0.9,  # "more than 90% of lines starting with a bullet point"
    "max_ellipsis_lines": 0.3,  # "more than 30% ending with an ellipsis"
    "min_alpha_words": 0.8,  # "80% of words in a document contain at least one alphabetic char"
    "min_stop_words": 2,  # "at least two of: the, be, to, of, and, that, have, with"
    # Table A1, repetition removal:
    "max_dup_line_fraction": 0.30,
    "max_dup_paragraph_fraction": 0.30,
    "max_dup_line_char_fraction": 0.20,
    "max_dup_paragraph_char_fraction": 0.20,
    "max_top_ngram_char_fraction": {2: 0.20, 3: 0.18, 4: 0.16},
    "max_dup_ngram_char_fraction": {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
}
"""The published thresholds (Rae et al. 2021, App. A.1.1 and Table A1)."""

GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_BULLETS = ("•", "●", "○", "▪", "‣", "⁃", "◦", "-", "*")  # noqa: RUF001 - bullet glyphs
_ELLIPSES = ("...", "…")  # noqa: RUF001
_PUNCT = re.compile(r"^\W+|\W+$")


def _dup_fractions(items: list[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier one, fraction of characters in those items)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        seen.add(item)
    total_chars = sum(len(i) for i in items)
    return dup_items / len(items), (dup_chars / total_chars if total_chars else 0.0)


def _top_ngram_char_fraction(words: list[str], n: int) -> float:
    """Characters in the most frequent word n-gram (times its count) / characters in words."""
    total = sum(len(w) for w in words)
    if len(words) < n or not total:
        return 0.0
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, count = counts.most_common(1)[0]
    if count < 2:
        return 0.0
    return sum(len(w) for w in gram) * count / total


def _dup_ngram_char_fraction(words: list[str], n: int) -> float:
    """Characters of words covered by any n-gram that occurs more than once (each word once)."""
    total = sum(len(w) for w in words)
    if len(words) < n or not total:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = np.zeros(len(words), dtype=bool)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i : i + n] = True
    return sum(len(w) for w, c in zip(words, covered, strict=True) if c) / total


def _gopher_checks(text: str, t: dict[str, Any]) -> Iterator[str]:
    """Yield the name of each failed rule, cheap rules first."""
    words = text.split()
    n_words = len(words)
    if not t["min_words"] <= n_words <= t["max_words"]:
        yield "word_count"
    if n_words:
        mean_len = sum(len(w) for w in words) / n_words
        if not t["min_mean_word_length"] <= mean_len <= t["max_mean_word_length"]:
            yield "mean_word_length"
        symbols = text.count("#") + sum(text.count(e) for e in _ELLIPSES)
        if symbols / n_words > t["max_symbol_word_ratio"]:
            yield "symbol_word_ratio"
        if sum(any(c.isalpha() for c in w) for w in words) / n_words < t["min_alpha_words"]:
            yield "alpha_words"
    stripped = {_PUNCT.sub("", w.lower()) for w in words}
    if len(stripped & GOPHER_STOP_WORDS) < t["min_stop_words"]:
        yield "stop_words"
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if lines:
        if sum(line.startswith(_BULLETS) for line in lines) / len(lines) > t["max_bullet_lines"]:
            yield "bullet_lines"
        if sum(line.endswith(_ELLIPSES) for line in lines) / len(lines) > t["max_ellipsis_lines"]:
            yield "ellipsis_lines"
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    line_frac, line_chars = _dup_fractions(lines)
    para_frac, para_chars = _dup_fractions(paragraphs)
    if line_frac > t["max_dup_line_fraction"]:
        yield "dup_lines"
    if para_frac > t["max_dup_paragraph_fraction"]:
        yield "dup_paragraphs"
    if line_chars > t["max_dup_line_char_fraction"]:
        yield "dup_line_chars"
    if para_chars > t["max_dup_paragraph_char_fraction"]:
        yield "dup_paragraph_chars"
    lowered = [w.lower() for w in words]
    for n, limit in t["max_top_ngram_char_fraction"].items():
        if _top_ngram_char_fraction(lowered, int(n)) > limit:
            yield f"top_{n}gram"
    for n, limit in t["max_dup_ngram_char_fraction"].items():
        if _dup_ngram_char_fraction(lowered, int(n)) > limit:
            yield f"dup_{n}gram"


def gopher_failures(
    text: str, thresholds: dict[str, Any] | None = None, *, first: bool = False
) -> list[str]:
    """Names of the Gopher rules ``text`` fails (empty list = the document is kept).

    Words are whitespace-separated tokens; lines are ``text.split("\\n")`` without blank ones;
    paragraphs are blocks separated by blank lines. Rule names: ``word_count``,
    ``mean_word_length``, ``symbol_word_ratio``, ``bullet_lines``, ``ellipsis_lines``,
    ``alpha_words``, ``stop_words``, ``dup_lines``, ``dup_paragraphs``, ``dup_line_chars``,
    ``dup_paragraph_chars``, ``top_{n}gram`` (n = 2..4), ``dup_{n}gram`` (n = 5..10).
    ``thresholds`` overrides :data:`GOPHER_THRESHOLDS` key by key. ``first=True`` returns as
    soon as one rule fails (the filter's fast path: the cheap length rules run first, so most
    short documents never reach the n-gram statistics); the first entry is the same either way.
    """
    t = {**GOPHER_THRESHOLDS, **(thresholds or {})}
    checks = _gopher_checks(text, t)
    if first:
        failed = next(checks, None)
        return [] if failed is None else [failed]
    return list(checks)


QUALITY_FILTERS = ("gopher",)
"""Names accepted for ``quality`` in :class:`g2c.data.prepare.PrepareConfig`."""


def quality_reason(text: str, quality: str | None) -> str | None:
    """The first failed rule of filter ``quality`` (``"gopher"``), or None when kept / no filter."""
    if quality is None:
        return None
    if quality != "gopher":
        raise ValueError(f"quality must be one of {QUALITY_FILTERS} or None, got {quality!r}")
    fails = gopher_failures(text, first=True)
    return fails[0] if fails else None
