"""Vector stores: where chunks and their vectors live, and brute-force nearest neighbours.

- :class:`NumpyVectorStore` (API.md) — in memory: ``add(chunks, vectors)``,
  ``search(query_vec, k) -> [(Chunk, score)]`` with cosine similarity. Exact top-k by
  ``np.argpartition`` (O(N)) then a sort of the k winners; ``method="sort"`` is the
  reference (a full ``argsort``, O(N log N)); the test checks they agree.
- :class:`SQLiteIndex` — persistent, one SQLite file (standard library ``sqlite3``): tables
  ``documents`` (source, content SHA-256), ``chunks`` (text, character and line spans,
  metadata JSON, the float32 vector as a little-endian BLOB), ``chunks_fts`` (an FTS5 table
  with the Porter stemmer, so ``bm25()`` ranks lexically) and ``meta`` (format version, the
  embedder's name, spec and dimension). Opening it with another embedder → ValueError naming
  both. Each document is written in one transaction (old chunks deleted, new ones inserted,
  FTS rows in step), so a crash or an exception mid-index leaves every document either at its
  previous or at its new version, never half. Dense search loads the vectors once into a
  :class:`NumpyVectorStore`-style matrix (reloaded after a write).

A file that is not a SQLite database, or a database without g2c's tables → :class:`RAGIndexError`
(a ValueError) naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from g2c.rag.chunking import Chunk, chunk_document
from g2c.rag.embedders import Embedder
from g2c.rag.ingest import SUPPORTED_SUFFIXES, UnsupportedDocument, iter_files, load_document

INDEX_FORMAT = "g2c.rag.index"
INDEX_VERSION = 1
_FTS_TOKEN = re.compile(r"\w+", re.UNICODE)


class RAGIndexError(ValueError):
    """A damaged index file, a file that is not a g2c index, or the wrong embedder for it;
    the message names the file and what to do."""


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k


def top_k(scores: np.ndarray, k: int, method: str = "partition") -> np.ndarray:
    """Indices of the ``k`` largest ``scores`` (float ``(N,)``), best first; ties broken by the
    lower index. ``method="partition"`` (default, fast: ``argpartition`` then sort the k) or
    ``"sort"`` (the reference: a stable full sort). Both return the same indices."""
    n = scores.shape[0]
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if method == "sort":
        return np.argsort(-scores, kind="stable")[:k]
    if method != "partition":
        raise ValueError(f"method must be 'partition' or 'sort', got {method!r}")
    if k == n:
        cand = np.arange(n)
    else:
        kth = np.partition(scores, n - k)[n - k]  # the k-th largest value
        cand = np.flatnonzero(scores >= kth)  # ties at the boundary kept, then cut below
    order = np.lexsort((cand, -scores[cand]))
    return cand[order][:k]


def _as_matrix(vectors: Any, dim: int | None, what: str = "vectors") -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (N, dim), got shape {v.shape}")
    if dim is not None and v.shape[1] != dim:
        raise ValueError(f"{what} have dimension {v.shape[1]} but this store holds "
                         f"{dim}-dimensional vectors; use the embedder the store was built "
                         "with")  # fmt: skip
    if not np.isfinite(v).all():
        raise ValueError(f"{what} contain NaN or infinity")
    return v


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class NumpyVectorStore:
    """Chunks and their vectors in memory; exact cosine search.

    ``NumpyVectorStore(dim=None)``: the dimension is fixed by the first ``add`` when not given.
    Vectors are stored L2-normalised (float32 ``(N, dim)``), so a score is the cosine
    similarity in [-1, 1]. Wrong shapes, a dimension mismatch, NaN, or a chunk count that
    differs from the vector count → ValueError naming the argument, nothing added.
    """

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be an integer >= 1 or None, got {dim!r}")
        self.dim = dim
        self.chunks: list[Chunk] = []
        self._parts: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def vectors(self) -> np.ndarray:
        """All stored vectors, float32 ``(N, dim)``, unit rows."""
        if self._matrix is None:
            self._matrix = (np.concatenate(self._parts) if self._parts
                            else np.zeros((0, self.dim or 0), dtype=np.float32))  # fmt: skip
            self._parts = [self._matrix] if self._parts else []
        return self._matrix

    def add(self, chunks: Sequence[Chunk], vectors: Any) -> None:
        """Append ``chunks`` with their ``vectors`` (float ``(len(chunks), dim)``)."""
        chunks = list(chunks)
        if not all(isinstance(c, Chunk) for c in chunks):
            raise TypeError("chunks must be a list of Chunk")
        v = _as_matrix(vectors, self.dim)
        if v.shape[0] != len(chunks):
            raise ValueError(f"got {len(chunks)} chunks but {v.shape[0]} vectors; "
                             "give one vector per chunk")  # fmt: skip
        if not chunks:
            return
        self.dim = v.shape[1]
        self._parts.append(_unit(v).astype(np.float32))
        self._matrix = None
        self.chunks.extend(chunks)

    def scores(self, query_vec: Any) -> np.ndarray:
        """Cosine similarity of ``query_vec`` (``(dim,)``) with every stored vector: ``(N,)``."""
        q = _as_matrix(np.asarray(query_vec, dtype=np.float32).reshape(1, -1), self.dim,
                       "query_vec")[0]  # fmt: skip
        return self.vectors @ _unit(q)

    def search(self, query_vec: Any, k: int = 5, *, method: str = "partition"
               ) -> list[tuple[Chunk, float]]:  # fmt: skip
        """The ``k`` chunks most similar to ``query_vec``, best first, as ``(Chunk, cosine)``.
        Empty store → ``[]``; k < 1 or a dimension mismatch → ValueError."""
        _check_k(k)
        if not self.chunks:
            return []
        s = self.scores(query_vec)
        return [(self.chunks[i], float(s[i])) for i in top_k(s, k, method)]


# -- the persistent index -------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents(
    id INTEGER PRIMARY KEY, source TEXT UNIQUE NOT NULL, sha256 TEXT NOT NULL,
    kind TEXT NOT NULL, n_chunks INTEGER NOT NULL, indexed_at REAL NOT NULL);
CREATE TABLE chunks(
    id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL REFERENCES documents(id),
    ord INTEGER NOT NULL, text TEXT NOT NULL, start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL, metadata TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, tokenize='porter unicode61');
"""
_TABLES = {"meta", "documents", "chunks", "chunks_fts"}


def fts_query(text: str) -> str:
    """A free-text query as an FTS5 expression: its words, each quoted, joined by OR (so
    punctuation and FTS5 operators in the user's text cannot break the query)."""
    return " OR ".join(f'"{w}"' for w in _FTS_TOKEN.findall(text.lower()))


class SQLiteIndex:
    """A persistent RAG index in one SQLite file.

    ``SQLiteIndex(path, embedder=None, *, max_tokens=200, overlap_tokens=30)``:
    a new file needs an ``embedder`` (its name, spec and dimension are recorded); an existing
    one checks that ``embedder`` matches what it was built with (another name or dimension →
    :class:`RAGIndexError` naming both) and can be opened without one for BM25 search and
    listing. ``path=":memory:"`` gives a throw-away index.

    Writing: :meth:`add_chunks` (one document, one transaction), :meth:`index_paths`
    (incremental: unchanged files by SHA-256 are skipped, changed ones re-embedded, deleted
    ones removed). Reading: :meth:`search` (dense, ``(Chunk, cosine)``; the store interface),
    :meth:`search_bm25` (FTS5 ``bm25()``, score = −bm25, higher is better).
    """

    def __init__(self, path: str | os.PathLike, embedder: Embedder | None = None, *,
                 max_tokens: int = 200, overlap_tokens: int = 30) -> None:  # fmt: skip
        if embedder is not None and not isinstance(embedder, Embedder):
            raise TypeError(f"embedder must be a g2c.rag Embedder, got {type(embedder).__name__}")
        self.path = str(path)
        memory = self.path == ":memory:"
        exists = not memory and Path(self.path).exists()
        if exists and Path(self.path).is_dir():
            raise RAGIndexError(f"{self.path} is a folder; give the index FILE (e.g. rag.db)")
        if not exists and embedder is None:
            raise ValueError(f"{self.path} does not exist; creating an index needs an embedder")
        if not memory and not exists and not Path(self.path).parent.is_dir():
            raise FileNotFoundError(f"folder {Path(self.path).parent} does not exist")
        self.embedder = embedder
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        try:
            if exists:
                self.meta = self._read_meta()
            else:
                self.meta = self._create(embedder, max_tokens, overlap_tokens)
        except BaseException:
            self._conn.close()
            raise
        if embedder is not None:
            self._check_embedder(embedder)

    # -- opening -----------------------------------------------------------------------------
    def _damaged(self, detail: str) -> RAGIndexError:
        return RAGIndexError(f"{self.path} is not a usable g2c RAG index ({detail}); delete it "
                             "and re-run `g2c rag index`, or pass another --db")  # fmt: skip

    def _read_meta(self) -> dict[str, str]:
        try:
            names = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}  # fmt: skip
            if not _TABLES <= names:
                raise self._damaged(f"tables missing: {', '.join(sorted(_TABLES - names))}")
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise self._damaged(str(e)) from None
        if meta.get("format") != INDEX_FORMAT:
            raise self._damaged(f"format {meta.get('format')!r}, expected {INDEX_FORMAT!r}")
        if int(meta.get("format_version", -1)) != INDEX_VERSION:
            raise self._damaged(f"format version {meta.get('format_version')}, this g2c reads "
                                f"{INDEX_VERSION}")  # fmt: skip
        return meta

    def _create(self, embedder: Embedder, max_tokens: int, overlap_tokens: int) -> dict:
        chunk_document("", "check", max_tokens=max_tokens, overlap_tokens=overlap_tokens)
        meta = {"format": INDEX_FORMAT, "format_version": str(INDEX_VERSION),
                "embedder": embedder.name, "embedder_spec": embedder.spec,
                "dim": str(embedder.dim), "max_tokens": str(max_tokens),
                "overlap_tokens": str(overlap_tokens), "created": str(time.time())}  # fmt: skip
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise self._damaged(str(e)) from None
        return meta

    def _check_embedder(self, embedder: Embedder) -> None:
        name, dim = self.meta["embedder"], int(self.meta["dim"])
        if embedder.name != name or embedder.dim != dim:
            raise RAGIndexError(
                f"{self.path} was built with embedder {name!r} (dimension {dim}), but the "
                f"embedder given is {embedder.name!r} (dimension {embedder.dim}); use "
                f"--embedder {self.meta.get('embedder_spec', name)} or another --db"
            )

    @property
    def dim(self) -> int:
        """Dimension of the stored vectors."""
        return int(self.meta["dim"])

    @property
    def max_tokens(self) -> int:
        """Chunk size (tokens) recorded in the index at creation."""
        return int(self.meta["max_tokens"])

    @property
    def overlap_tokens(self) -> int:
        """Chunk overlap (tokens) recorded in the index at creation."""
        return int(self.meta["overlap_tokens"])

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> SQLiteIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return self._query("SELECT count(*) FROM chunks")[0][0]

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._damaged(str(e)) from None

    # -- writing -----------------------------------------------------------------------------
    def _need_embedder(self) -> Embedder:
        if self.embedder is None:
            raise ValueError(f"{self.path} was opened without an embedder; pass the one it was "
                             f"built with ({self.meta['embedder_spec']})")  # fmt: skip
        return self.embedder

    def _delete_doc(self, doc_id: int) -> None:
        self._conn.execute("DELETE FROM chunks_fts WHERE rowid IN "
                           "(SELECT id FROM chunks WHERE doc_id = ?)", (doc_id,))  # fmt: skip
        self._conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self._conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def add_chunks(self, source: str, chunks: Sequence[Chunk], *, sha256: str | None = None,
                   kind: str = "text", vectors: np.ndarray | None = None) -> int:  # fmt: skip
        """Store ``chunks`` as the document ``source`` (replacing an earlier version) in one
        transaction; vectors are computed by the embedder first (or given, float
        ``(len(chunks), dim)``). Returns the number of chunks written."""
        if not isinstance(source, str) or not source:
            raise ValueError(f"source must be a non-empty string, got {source!r}")
        chunks = list(chunks)
        if vectors is None:
            vectors = self._need_embedder().embed([c.text for c in chunks])
        v = _as_matrix(vectors, self.dim).astype("<f4")
        if v.shape[0] != len(chunks):
            raise ValueError(f"got {len(chunks)} chunks but {v.shape[0]} vectors")
        if sha256 is None:
            sha256 = hashlib.sha256("\0".join(c.text for c in chunks).encode()).hexdigest()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._write_document(source, chunks, v, sha256, kind)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._damaged(str(e)) from None
        self._cache = None
        return len(chunks)

    def _write_document(self, source: str, chunks: list[Chunk], v: np.ndarray, sha256: str,
                        kind: str) -> None:  # fmt: skip
        old = self._conn.execute("SELECT id FROM documents WHERE source = ?", (source,)).fetchone()
        if old:
            self._delete_doc(old[0])
        cur = self._conn.execute(
            "INSERT INTO documents(source, sha256, kind, n_chunks, indexed_at) VALUES "
            "(?, ?, ?, ?, ?)", (source, sha256, kind, len(chunks), time.time()))  # fmt: skip
        doc_id = cur.lastrowid
        for n, (c, vec) in enumerate(zip(chunks, v)):
            cur = self._conn.execute(
                "INSERT INTO chunks(doc_id, ord, text, start_char, end_char, metadata, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (doc_id, n, c.text, c.start, c.end, json.dumps(c.metadata), vec.tobytes()))  # fmt: skip
            self._conn.execute("INSERT INTO chunks_fts(rowid, text) VALUES (?, ?)",
                               (cur.lastrowid, c.text))  # fmt: skip

    def remove(self, source: str) -> bool:
        """Remove document ``source`` (one transaction); False when it was not indexed."""
        row = self._query("SELECT id FROM documents WHERE source = ?", (source,))
        if not row:
            return False
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._delete_doc(row[0][0])
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        self._cache = None
        return True

    def documents(self) -> dict[str, str]:
        """Indexed documents: source → SHA-256 of the content."""
        return dict(self._query("SELECT source, sha256 FROM documents ORDER BY source"))

    def index_paths(
        self,
        paths: Iterable[str | os.PathLike] | str | os.PathLike,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Index the supported files under ``paths`` incrementally.

        Files whose SHA-256 matches the indexed version are left alone; new and changed ones
        are loaded, chunked (:func:`chunk_document` sized with the embedder's
        ``count_tokens``), embedded, and written one transaction each; indexed documents
        under a given folder (or a given file) that no longer exist are removed. Unsupported
        or unreadable files are skipped with the reason. ``progress`` gets one dict per file.

        Returns ``{"added", "updated", "unchanged", "removed", "skipped" ([(path, reason)]),
        "chunks" (written)}``. No supported file under ``paths`` and nothing indexed there →
        ValueError naming the paths (nothing written); a missing path → FileNotFoundError.
        """
        embedder = self._need_embedder()
        files, roots = iter_files(paths)
        report: dict[str, Any] = {"added": 0, "updated": 0, "unchanged": 0, "removed": 0,
                                  "skipped": [], "chunks": 0}  # fmt: skip
        indexed = self.documents()
        supported = [f for f in files if f.suffix.lower() in SUPPORTED_SUFFIXES]
        report["skipped"] = [
            (str(f), f"{f}: unsupported file type {f.suffix.lower() or '(no suffix)'!r}")
            for f in files if f.suffix.lower() not in SUPPORTED_SUFFIXES
        ]  # fmt: skip
        gone = [s for s in indexed if not Path(s).exists() and any(
            s == str(r) or s.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)]  # fmt: skip
        if not supported and not gone:
            raise ValueError(f"no {'/'.join(SUPPORTED_SUFFIXES)} files under "
                             f"{', '.join(str(r) for r in roots)}"
                             + (f" (skipped: {len(report['skipped'])} other files)"
                                if report["skipped"] else ""))  # fmt: skip
        for source in gone:
            self.remove(source)
            report["removed"] += 1
        for f in supported:
            source = str(f)
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            if indexed.get(source) == digest:
                report["unchanged"] += 1
                continue
            try:
                doc = load_document(f)
            except UnsupportedDocument as e:
                report["skipped"].append((source, str(e)))
                continue
            chunks = chunk_document(doc.text, doc.source, max_tokens=self.max_tokens,
                                    overlap_tokens=self.overlap_tokens,
                                    count_tokens=embedder.count_tokens,
                                    metadata={"kind": doc.kind})  # fmt: skip
            report["chunks"] += self.add_chunks(doc.source, chunks, sha256=doc.sha256,
                                                kind=doc.kind)  # fmt: skip
            report["updated" if source in indexed else "added"] += 1
            if progress is not None:
                progress({"source": source, "chunks": len(chunks)})
        return report

    # -- reading -----------------------------------------------------------------------------
    def _row_chunk(self, row: tuple) -> Chunk:
        text, source, start, end, meta = row
        return Chunk(text, source, start, end, json.loads(meta))

    def get_chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks with these row ids, in the order given."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._query(
            "SELECT c.id, c.text, d.source, c.start_char, c.end_char, c.metadata FROM chunks c "
            f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})", list(ids))  # fmt: skip
        by_id = {r[0]: self._row_chunk(r[1:]) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            rows = self._query("SELECT id, vector FROM chunks ORDER BY id")
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            mat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            if mat.size != len(rows) * self.dim:
                raise self._damaged("stored vectors do not match the recorded dimension")
            self._cache = (ids, _unit(mat.reshape(len(rows), self.dim)).astype(np.float32))
        return self._cache

    def search(self, query_vec: Any, k: int = 5) -> list[tuple[Chunk, float]]:
        """Dense search (brute force over all vectors): the ``k`` nearest chunks to
        ``query_vec`` (``(dim,)``) as ``(Chunk, cosine)``, best first."""
        _check_k(k)
        ids, mat = self._vectors()
        q = _as_matrix(np.asarray(query_vec, dtype=np.float32).reshape(1, -1), self.dim,
                       "query_vec")[0]  # fmt: skip
        if not len(ids):
            return []
        s = mat @ _unit(q)
        best = top_k(s, k)
        chunks = self.get_chunks([int(ids[i]) for i in best])
        return [(c, float(s[i])) for c, i in zip(chunks, best)]

    def search_bm25(self, query: str, k: int = 5) -> list[tuple[Chunk, float]]:
        """Lexical search with FTS5's ``bm25()`` (k1 = 1.2, b = 0.75; Porter-stemmed words):
        ``(Chunk, score)`` with score = −bm25 (higher is better), best first. A query with
        no words → ``[]``."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        _check_k(k)
        expr = fts_query(query)
        if not expr:
            return []
        rows = self._query(
            "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
            "ORDER BY s, rowid LIMIT ?", (expr, k))  # fmt: skip
        chunks = self.get_chunks([r[0] for r in rows])
        return [(c, -float(r[1])) for c, r in zip(chunks, rows)]

    def check(self) -> list[str]:
        """Consistency problems ([] = consistent): SQLite's ``quick_check``, chunk rows vs FTS
        rows, each document's chunk count, vector sizes."""
        problems = [r[0] for r in self._query("PRAGMA quick_check") if r[0] != "ok"]
        n_chunks = len(self)
        n_fts = self._query("SELECT count(*) FROM chunks_fts")[0][0]
        if n_chunks != n_fts:
            problems.append(f"{n_chunks} chunks but {n_fts} full-text rows")
        bad = self._query("SELECT d.source FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id"
                          " GROUP BY d.id HAVING count(c.id) != d.n_chunks")  # fmt: skip
        problems += [f"{r[0]}: chunk count differs from the recorded one" for r in bad]
        orphans = self._query("SELECT count(*) FROM chunks WHERE doc_id NOT IN "
                              "(SELECT id FROM documents)")[0][0]  # fmt: skip
        if orphans:
            problems.append(f"{orphans} chunks without a document")
        wrong = self._query("SELECT count(*) FROM chunks WHERE length(vector) != ?",
                            (4 * self.dim,))[0][0]  # fmt: skip
        if wrong:
            problems.append(f"{wrong} vectors of the wrong size")
        return problems
