"""Pre-tokenization: split text into chunks that BPE merges never cross.

GPT-2 (Radford et al. 2019, ``encoder.py``) first cuts text with a regular expression into
words, numbers, punctuation runs and whitespace, then runs byte-pair merges inside each chunk,
so a merge never glues a word to the space or punctuation after it. GPT-4's ``cl100k_base``
pattern (from ``tiktoken``) also splits digits into groups of at most three and makes
contractions case-insensitive. Both patterns match every character, so the chunks of a text
concatenate back to the text (this is what makes the tokenizer lossless).

Special tokens (``<|endoftext|>`` ...) are cut out *before* the regex runs, so they stay atomic.

Shapes: ``str`` in, ``list[str]`` (chunks, in order, concatenating to the input) out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import regex

#: GPT-2's split pattern (``encoder.py`` in openai/gpt-2, as used by HF ``ByteLevel``).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

#: GPT-4's split pattern (``cl100k_base`` in tiktoken): case-insensitive contractions,
#: digits in groups of 1-3, punctuation runs keep trailing newlines.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

#: SmolLM2's split (its ``tokenizer.json``: ``Digits(individual_digits=True)`` then GPT-2's
#: ``ByteLevel`` regex; llama.cpp's ``smollm`` pre-tokenizer: ``\p{N}`` then the GPT-2 regex) as
#: one regex: every digit is its own chunk, and a whitespace run before a digit stays whole
#: (the digit ends its segment, so ``\s+(?!\S)`` sees the end of the text there).
SMOLLM_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
)

#: Name → pattern table (the CLI offers ``--pattern gpt2|gpt4``).
SPLIT_PATTERNS: dict[str, str] = {
    "gpt2": GPT2_SPLIT_PATTERN,
    "gpt4": GPT4_SPLIT_PATTERN,
    "smollm": SMOLLM_SPLIT_PATTERN,
}


def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile a split ``pattern`` with the ``regex`` package (needed for ``\\p{L}``, ``?+``).

    Raises ValueError naming ``pattern`` when it does not compile or matches the empty string
    (an empty match would make pre-tokenization loop forever or drop text).
    """
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a regex string, got {type(pattern).__name__}")
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"pattern does not compile: {exc}") from exc
    if compiled.fullmatch("") is not None:
        raise ValueError("pattern must not match the empty string; use e.g. GPT4_SPLIT_PATTERN")
    return compiled


def special_splitter(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """A regex that finds any of ``special_tokens`` (longest first), or None when there are none."""
    specials = sorted(set(special_tokens), key=lambda s: (-len(s), s))
    if not specials:
        return None
    return regex.compile("|".join(regex.escape(s) for s in specials))


def split_specials(text: str, splitter: regex.Pattern | None) -> list[str]:
    """Split ``text`` on special tokens: returns ``[plain, special, plain, special, ..., plain]``.

    Even positions hold ordinary text (possibly empty), odd positions the special-token strings.
    """
    if splitter is None:
        return [text]
    out: list[str] = []
    pos = 0
    for m in splitter.finditer(text):
        out.append(text[pos : m.start()])
        out.append(m.group())
        pos = m.end()
    out.append(text[pos:])
    return out


def pretokenize(text: str, compiled: regex.Pattern) -> list[str]:
    """Split ordinary ``text`` (no specials) into chunks with ``compiled``; chunks join to ``text``.

    Raises ValueError when the pattern skips characters (a pattern must match every
    character, as the GPT-2/GPT-4 patterns do), since skipping would lose text.
    """
    pieces = compiled.findall(text)
    if sum(map(len, pieces)) != len(text):
        raise ValueError(
            "pattern leaves some characters unmatched, so encoding would lose text; "
            "add a catch-all alternative such as '|\\s+|.' to the pattern"
        )
    return pieces


def iter_pretokens(
    text: str, compiled: regex.Pattern, chunk_chars: int = 1_000_000
) -> Iterator[list[str]]:
    """Pre-tokenize a long ``text`` window by window (``chunk_chars`` characters each).

    Yields lists of chunks whose concatenation is ``text``, identical to
    ``pretokenize(text, compiled)``: the last match of each window (which the window end may
    have cut short) is dropped and the next window starts where it began. Raises ValueError
    for ``chunk_chars < 1`` or a pattern that skips characters.
    """
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
    n = len(text)
    pos = 0
    window = chunk_chars
    while pos < n:
        end = min(n, pos + window)
        pieces = compiled.findall(text, pos, end)
        if end < n:
            if len(pieces) < 2:  # one chunk fills the window: widen the window and retry
                window *= 2
                continue
            pieces.pop()  # may be cut short by the window end: redo it in the next window
        joined = "".join(pieces)
        if not joined or not text.startswith(joined, pos) or (end == n and pos + len(joined) != n):
            raise ValueError(
                "pattern leaves some characters unmatched, so encoding would lose text; "
                "add a catch-all alternative such as '|\\s+|.' to the pattern"
            )
        pos += len(joined)
        window = chunk_chars
        yield pieces
