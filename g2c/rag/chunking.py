"""Chunking: cut a document into retrievable pieces that remember where they came from.

Two chunkers, one :class:`Chunk` type:

- :func:`chunk_text` (the course's reference, API.md): fixed windows of ``chunk_size``
  characters, each starting ``chunk_size - chunk_overlap`` after the previous one.
- :func:`chunk_document` (structure-aware, the default of the index): sections start at
  Markdown headings, sections split at blank lines into paragraphs, consecutive paragraphs are
  packed into a chunk up to ``max_tokens``; a paragraph longer than that falls back to
  overlapping windows of words. Sizes are counted with ``count_tokens`` — the embedder's own
  tokenizer when it has one (MiniLM reads at most 256 word pieces), else words.

Every chunk carries ``source``, its character span ``[start, end)`` in the document's text and,
in ``metadata``, its 1-based inclusive line span ``line_start`` / ``line_end`` (and the heading
it sits under), so an answer can cite "notes.md, lines 12-18".
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable
from typing import Any

_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_WORD = re.compile(r"\S+")


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``text`` (verbatim ``document[start:end]``), ``source`` (file path
    or id), ``start`` / ``end`` (character offsets, end exclusive), ``metadata`` (``line_start``,
    ``line_end``: 1-based inclusive lines; ``heading``; anything a loader adds)."""

    text: str
    source: str
    start: int
    end: int
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def lines(self) -> tuple[int, int] | None:
        """``(line_start, line_end)``, 1-based inclusive, or None when unknown."""
        a, b = self.metadata.get("line_start"), self.metadata.get("line_end")
        return (int(a), int(b)) if a is not None and b is not None else None

    def citation(self) -> str:
        """``"source, lines a-b"`` (``"source"`` alone when the span is unknown)."""
        span = self.lines
        if span is None:
            return self.source
        return f"{self.source}, line {span[0]}" if span[0] == span[1] else (
            f"{self.source}, lines {span[0]}-{span[1]}")  # fmt: skip


class _Lines:
    """Character offset → 1-based line number of one text (binary search on line starts)."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def span(self, start: int, end: int) -> dict[str, int]:
        first = bisect.bisect_right(self.starts, start)
        last = bisect.bisect_right(self.starts, max(start, end - 1))
        return {"line_start": first, "line_end": last}


def _check_source(source: Any) -> str:
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a non-empty string naming the document, got {source!r}")
    return source


def chunk_text(
    text: str, source: str, chunk_size: int = 1000, chunk_overlap: int = 200
) -> list[Chunk]:
    """Fixed windows of ``chunk_size`` characters overlapping by ``chunk_overlap``.

    Window ``i`` covers ``text[i*step : i*step + chunk_size]`` with ``step = chunk_size -
    chunk_overlap``; the last window ends at ``len(text)`` (no window lies wholly inside the
    previous one). Windows that are only whitespace are dropped. Empty text → ``[]``.

    Raises ValueError naming the argument: ``text`` not a string, ``source`` empty,
    ``chunk_size`` < 1, ``chunk_overlap`` outside ``[0, chunk_size)``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    _check_source(source)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if (isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int)
            or not 0 <= chunk_overlap < chunk_size):  # fmt: skip
        raise ValueError(
            f"chunk_overlap must be an integer in [0, chunk_size={chunk_size}), "
            f"got {chunk_overlap!r}"
        )
    lines = _Lines(text)
    step = chunk_size - chunk_overlap
    out = []
    for start in range(0, max(len(text) - chunk_overlap, 1), step):
        end = min(start + chunk_size, len(text))
        piece = text[start:end]
        if piece.strip():
            out.append(Chunk(piece, source, start, end, lines.span(start, end)))
    return out


# -- structure-aware chunking --------------------------------------------------------------------
def word_count(text: str) -> int:
    """Whitespace-separated words: the token count when the embedder has no tokenizer."""
    return len(_WORD.findall(text))


def _blocks(text: str) -> list[tuple[int, int, str]]:
    """Paragraphs as ``(start, end, heading)``: a heading line starts a new section (and is
    its own block); blank lines separate paragraphs; spans exclude surrounding blank space."""
    blocks: list[tuple[int, int, str]] = []
    heading = ""
    para_start: int | None = None
    para_end = 0
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        m = _HEADING.match(body)
        if m or not body.strip():
            if para_start is not None:
                blocks.append((para_start, para_end, heading))
                para_start = None
            if m:
                heading = m.group(2)
                blocks.append((pos, pos + len(body), heading))
        else:
            if para_start is None:
                para_start = pos + (len(body) - len(body.lstrip()))
            para_end = pos + len(body.rstrip())
        pos += len(line)
    if para_start is not None:
        blocks.append((para_start, para_end, heading))
    return blocks


def _windows(text: str, start: int, end: int, max_tokens: int, overlap: int,
             count: Callable[[str], int]) -> list[tuple[int, int]]:  # fmt: skip
    """Word windows of at most ``max_tokens`` tokens over ``text[start:end]``, the next window
    starting ``overlap`` tokens before the previous one ended (the fallback for long blocks)."""
    words = [(start + m.start(), start + m.end()) for m in _WORD.finditer(text[start:end])]
    sizes = [max(1, count(text[a:b])) for a, b in words]
    spans = []
    i = 0
    while i < len(words):
        j, total = i, 0
        while j < len(words) and (j == i or total + sizes[j] <= max_tokens):
            total += sizes[j]
            j += 1
        spans.append((words[i][0], words[j - 1][1]))
        if j >= len(words):
            break
        back, k = 0, j  # step back ``overlap`` tokens, but always move forward
        while k - 1 > i and back + sizes[k - 1] <= overlap:
            k -= 1
            back += sizes[k]
        i = k
    return spans


def chunk_document(
    text: str,
    source: str,
    *,
    max_tokens: int = 200,
    overlap_tokens: int = 30,
    count_tokens: Callable[[str], int] | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[Chunk]:
    """Structure-aware chunks: headings and paragraphs first, word windows as the fallback.

    Args:
        text: the document's text (Markdown headings ``#``..``######`` start sections).
        source: the document's name (its path), kept on every chunk.
        max_tokens: most tokens in a chunk (counted with ``count_tokens``).
        overlap_tokens: tokens repeated between consecutive windows of a long paragraph.
        count_tokens: ``str -> int``; default :func:`word_count`. Pass the embedder's
            ``count_tokens`` so chunks fit the embedding model's window.
        metadata: copied into every chunk's metadata (e.g. the file kind).

    Paragraphs of one section are packed greedily while the chunk stays within ``max_tokens``;
    a heading line is packed with the paragraphs after it. Returns chunks in document order;
    empty or blank text → ``[]``. Bad sizes → ValueError naming the argument.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    _check_source(source)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if not isinstance(overlap_tokens, int) or not 0 <= overlap_tokens < max_tokens:
        raise ValueError(
            f"overlap_tokens must be an integer in [0, max_tokens={max_tokens}), "
            f"got {overlap_tokens!r}"
        )
    count = count_tokens or word_count
    lines = _Lines(text)
    extra = dict(metadata or {})
    spans: list[tuple[int, int, str]] = []
    cur: list[int] | None = None  # [start, end, tokens] of the chunk being packed
    cur_heading = ""
    for start, end, heading in _blocks(text):
        n = count(text[start:end])
        new_section = cur is not None and heading != cur_heading
        if cur is not None and (new_section or cur[2] + n > max_tokens):
            spans.append((cur[0], cur[1], cur_heading))
            cur = None
        if n > max_tokens:  # the window fallback
            for a, b in _windows(text, start, end, max_tokens, overlap_tokens, count):
                spans.append((a, b, heading))
            continue
        if cur is None:
            cur, cur_heading = [start, end, n], heading
        else:
            cur[1], cur[2] = end, cur[2] + n
    if cur is not None:
        spans.append((cur[0], cur[1], cur_heading))
    out = []
    for a, b, heading in spans:
        meta = {**extra, **lines.span(a, b)}
        if heading:
            meta["heading"] = heading
        out.append(Chunk(text[a:b], source, a, b, meta))
    return out
