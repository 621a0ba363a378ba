"""Ingestion: files and folders → :class:`Document` (text + where it came from).

Supported: ``.txt``, ``.md`` / ``.markdown`` (read as UTF-8), ``.html`` / ``.htm`` (visible
text via BeautifulSoup's ``get_text`` on the standard library's ``html.parser``; ``<h1>``..
``<h6>`` become Markdown headings so the structure-aware chunker sees the sections; scripts and
styles are dropped) and ``.pdf`` (page text via ``pypdf``; pages separated by a form feed
line). For HTML and PDF the line spans of chunks refer to this extracted text.

Nothing here raises on one bad file: an unsupported type, undecodable bytes, a damaged PDF or a
file over ``max_bytes`` is *skipped* with a reason (``IngestResult.skipped``), so one odd file
never stops an index run. Bad arguments (a path that does not exist) → FileNotFoundError /
ValueError naming it, before anything is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

try:  # optional dependencies (pip install pypdf beautifulsoup4)
    from bs4 import BeautifulSoup
except ImportError:  # pragma: no cover - exercised only without beautifulsoup4
    BeautifulSoup = None
try:
    from pypdf import PdfReader
except ImportError:  # pragma: no cover - exercised only without pypdf
    PdfReader = None

SUPPORTED_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Document:
    """One ingested file: ``source`` (its resolved path as a string), ``text`` (extracted text),
    ``kind`` ("text", "markdown", "html", "pdf"), ``sha256`` (hex digest of the file's bytes:
    what incremental indexing compares)."""

    source: str
    text: str
    kind: str
    sha256: str


@dataclasses.dataclass
class IngestResult:
    """``documents`` read, ``skipped`` as ``(path, reason)`` pairs, and ``roots``: the folders
    and files that were asked for (resolved), which incremental indexing scans for deletions."""

    documents: list[Document]
    skipped: list[tuple[str, str]]
    roots: list[str]


class UnsupportedDocument(ValueError):
    """A file that cannot be turned into text; the message names the file and why."""


def _html_to_text(raw: bytes) -> str:
    if BeautifulSoup is None:
        raise ImportError("reading .html needs beautifulsoup4: pip install beautifulsoup4")
    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.insert_before("\n\n" + "#" * level + " ")
            h.insert_after("\n\n")
    for tag in soup.find_all(["p", "div", "li", "tr", "br", "section", "article", "pre"]):
        tag.insert_after("\n")
    text = soup.get_text()
    text = re.sub(r"[ \t\r\f\v]+\n", "\n", text)
    text = re.sub(r"\n(#{1,6}) +\n*", r"\n\1 ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _pdf_to_text(raw: bytes) -> str:
    if PdfReader is None:
        raise ImportError("reading .pdf needs pypdf: pip install pypdf")
    reader = PdfReader(io.BytesIO(raw))
    if reader.is_encrypted:
        raise UnsupportedDocument("the PDF is encrypted")
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    return "\n\f\n".join(pages).strip() + "\n"


def _decode(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise UnsupportedDocument("binary content (NUL bytes) in a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnsupportedDocument(f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_document(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Read one file into a :class:`Document`.

    Raises FileNotFoundError when ``path`` is not a file, :class:`UnsupportedDocument`
    (a ValueError naming the file) for an unsupported suffix, undecodable text, a damaged or
    encrypted PDF, or a file larger than ``max_bytes``; ImportError naming the package when
    ``pypdf`` / ``beautifulsoup4`` is needed and missing.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"not a file: {p}")
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedDocument(
            f"{p}: unsupported file type {suffix or '(no suffix)'!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)}"
        )
    size = p.stat().st_size
    if size > max_bytes:
        raise UnsupportedDocument(f"{p}: {size} bytes is over the limit of {max_bytes} bytes")
    raw = p.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        if suffix == ".pdf":
            text, kind = _pdf_to_text(raw), "pdf"
        elif suffix in (".html", ".htm"):
            text, kind = _html_to_text(raw), "html"
        else:
            text = _decode(raw)
            kind = "markdown" if suffix in (".md", ".markdown") else "text"
    except UnsupportedDocument as e:
        raise UnsupportedDocument(f"{p}: {e}") from None
    except ImportError:
        raise
    except Exception as e:  # pypdf / bs4 errors on damaged input
        raise UnsupportedDocument(f"{p}: cannot extract text ({type(e).__name__}: {e})") from e
    return Document(str(p.resolve()), text, kind, digest)


def iter_files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """``(files, roots)``: every file under ``paths`` (folders walked recursively in sorted
    order, hidden files and folders skipped) and the resolved roots. A path that does not exist
    → FileNotFoundError naming it (checked for all paths before any is walked)."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not paths:
        raise ValueError("paths must name at least one file or folder")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    files: list[Path] = []
    for p in paths:
        if p.is_file():
            files.append(p.resolve())
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    files.append(Path(dirpath, name).resolve())
    return list(dict.fromkeys(files)), [p.resolve() for p in paths]


def load_documents(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> IngestResult:
    """Every supported file under ``paths`` as :class:`Document` s; the rest in ``skipped``
    with the reason (unsupported type, not text, damaged PDF, too large). Folders are walked
    recursively. A missing path → FileNotFoundError before anything is read."""
    files, roots = iter_files(paths)
    docs, skipped = [], []
    for f in files:
        try:
            docs.append(load_document(f, max_bytes=max_bytes))
        except UnsupportedDocument as e:
            skipped.append((str(f), str(e)))
    return IngestResult(docs, skipped, [str(r) for r in roots])
