"""Retrieval: a question → the chunks most likely to answer it, ranked.

- :class:`DenseRetriever` (API.md): embed the query, nearest vectors in a store (cosine).
- :class:`BM25Retriever`: lexical ranking by Okapi BM25 (Robertson & Zaragoza 2009) as SQLite's
  FTS5 computes it (``bm25()``, k1 = 1.2, b = 0.75) over a :class:`~g2c.rag.SQLiteIndex`.
- :class:`HybridRetriever`: reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009,
  "Reciprocal Rank Fusion outperforms Condorcet and individual Rank Learning Methods"):
  ``score(d) = sum over rankings r of 1 / (k + rank_r(d))`` with k = 60, so a chunk ranked
  high by either retriever rises, without calibrating cosine against BM25 scores.

Every retriever returns ``[RetrievedChunk(chunk, score, rank)]`` (rank 1 = best);
``scores`` keeps each component's score ({"dense": cosine, "bm25": ...}).
:func:`make_search` wraps any retriever (or an index) as the plain ``search(query, k) ->
[dict]`` callable that tools such as ``web_search`` take.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from g2c.rag.chunking import Chunk
from g2c.rag.embedders import Embedder
from g2c.rag.stores import SQLiteIndex, _check_k

RRF_K = 60
MODES = ("bm25", "dense", "hybrid")


@dataclasses.dataclass(frozen=True)
class RetrievedChunk:
    """A ranked hit: ``chunk``, ``score`` (the retriever's: cosine, −bm25 or RRF; higher is
    better), ``rank`` (1 = best), ``scores`` (component scores by retriever name)."""

    chunk: Chunk
    score: float
    rank: int
    scores: dict[str, float] = dataclasses.field(default_factory=dict, compare=False)


class Retriever(Protocol):
    """Anything with ``retrieve(query, k) -> list[RetrievedChunk]``."""

    def retrieve(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        """The ``k`` best chunks for ``query``, best first, ranks from 1."""
        ...


def _check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    return query


def _ranked(hits: list[tuple[Chunk, float]], name: str) -> list[RetrievedChunk]:
    return [RetrievedChunk(c, s, n, {name: s}) for n, (c, s) in enumerate(hits, start=1)]


class DenseRetriever:
    """``DenseRetriever(embedder, store).retrieve(query, k)``: the query's embedding searched
    in ``store`` (a :class:`~g2c.rag.NumpyVectorStore`, a :class:`~g2c.rag.SQLiteIndex`, or
    anything with ``search(query_vec, k) -> [(Chunk, score)]``). A store of another
    dimension → ValueError from the store naming both dimensions."""

    name = "dense"

    def __init__(self, embedder: Embedder, store: Any) -> None:
        if not isinstance(embedder, Embedder):
            raise TypeError(f"embedder must be a g2c.rag Embedder, got {type(embedder).__name__}")
        if not callable(getattr(store, "search", None)):
            raise TypeError(f"store must have search(query_vec, k), got {type(store).__name__}")
        self.embedder, self.store = embedder, store

    def retrieve(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        """The ``k`` best chunks for ``query`` by cosine similarity, best first."""
        _check_k(k)
        q = self.embedder.embed_query(_check_query(query))
        return _ranked(self.store.search(q, k), self.name)


class BM25Retriever:
    """``BM25Retriever(index).retrieve(query, k)``: FTS5 BM25 over a :class:`SQLiteIndex`."""

    name = "bm25"

    def __init__(self, index: SQLiteIndex) -> None:
        if not isinstance(index, SQLiteIndex):
            raise TypeError(f"index must be a SQLiteIndex, got {type(index).__name__}")
        self.index = index

    def retrieve(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        """The ``k`` best chunks for ``query`` by BM25, best first ([] when no word matches)."""
        return _ranked(self.index.search_bm25(_check_query(query), k), self.name)


def _key(chunk: Chunk) -> tuple[str, int, int]:
    return (chunk.source, chunk.start, chunk.end)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Any]], k: int = RRF_K
                           ) -> list[tuple[Any, float]]:  # fmt: skip
    """Fuse ranked lists of hashable keys: ``[(key, sum 1/(k + rank))]``, best first (ties by
    first appearance). ``k`` = 60 as in Cormack et al. (2009); k < 0 → ValueError."""
    if not isinstance(k, (int, float)) or k < 0:
        raise ValueError(f"k must be a number >= 0, got {k!r}")
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


class HybridRetriever:
    """Reciprocal-rank fusion of several retrievers (default: dense + BM25).

    ``HybridRetriever(retrievers, *, rrf_k=60, depth=50)``: each retriever contributes its top
    ``max(depth, k)`` hits; chunks are identified by (source, start, end). ``score`` is the RRF
    score; ``scores`` holds every component's score for the chunk (absent where a component
    did not rank it) plus "rrf".
    """

    name = "hybrid"

    def __init__(self, retrievers: Sequence[Any], *, rrf_k: float = RRF_K, depth: int = 50
                 ) -> None:  # fmt: skip
        retrievers = list(retrievers)
        if len(retrievers) < 2 or not all(callable(getattr(r, "retrieve", None))
                                           for r in retrievers):  # fmt: skip
            raise ValueError("retrievers must be at least two objects with retrieve(query, k)")
        _check_k(depth)
        self.retrievers, self.rrf_k, self.depth = retrievers, rrf_k, depth

    def retrieve(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        """The ``k`` best chunks by fused rank, best first."""
        _check_k(k)
        chunks: dict[tuple, Chunk] = {}
        parts: dict[tuple, dict[str, float]] = {}
        rankings = []
        for r in self.retrievers:
            hits = r.retrieve(_check_query(query), max(self.depth, k))
            rankings.append([_key(h.chunk) for h in hits])
            for h in hits:
                chunks.setdefault(_key(h.chunk), h.chunk)
                parts.setdefault(_key(h.chunk), {}).update(h.scores)
        fused = reciprocal_rank_fusion(rankings, self.rrf_k)[:k]
        return [RetrievedChunk(chunks[key], s, n, {**parts[key], "rrf": s})
                for n, (key, s) in enumerate(fused, start=1)]  # fmt: skip


def index_retriever(index: SQLiteIndex, mode: str = "hybrid", *, rrf_k: float = RRF_K,
                    depth: int = 50) -> Any:  # fmt: skip
    """The retriever of ``mode`` ("bm25", "dense", "hybrid") over ``index``. Dense and hybrid
    need the index opened with its embedder (ValueError otherwise)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "bm25":
        return BM25Retriever(index)
    if index.embedder is None:
        raise ValueError(f"mode {mode!r} needs the index's embedder "
                         f"({index.meta['embedder_spec']}); open the index with it")  # fmt: skip
    dense = DenseRetriever(index.embedder, index)
    if mode == "dense":
        return dense
    return HybridRetriever([dense, BM25Retriever(index)], rrf_k=rrf_k, depth=depth)


def hit_dict(hit: RetrievedChunk) -> dict[str, Any]:
    """A hit as plain JSON-able data: rank, score, source, text, start, end (characters),
    line_start, line_end."""
    c = hit.chunk
    return {"rank": hit.rank, "score": hit.score, "source": c.source, "text": c.text,
            "start": c.start, "end": c.end, "line_start": c.metadata.get("line_start"),
            "line_end": c.metadata.get("line_end")}  # fmt: skip


def make_search(index_or_retriever: Any, mode: str = "hybrid"
                ) -> Callable[[str, int], list[dict[str, Any]]]:  # fmt: skip
    """``search(query, k) -> [{"rank", "score", "source", "text", "start", "end",
    "line_start", "line_end"}]`` over a retriever (anything with ``retrieve``) or a
    :class:`SQLiteIndex` (searched in ``mode``): the plain callable a ``web_search`` tool
    takes. Bad query or k → TypeError / ValueError from the retriever."""
    if isinstance(index_or_retriever, SQLiteIndex):
        retriever = index_retriever(index_or_retriever, mode)
    elif callable(getattr(index_or_retriever, "retrieve", None)):
        retriever = index_or_retriever
    else:
        raise TypeError("index_or_retriever must be a SQLiteIndex or have retrieve(query, k), "
                        f"got {type(index_or_retriever).__name__}")  # fmt: skip

    def search(query: str, k: int = 5) -> list[dict[str, Any]]:
        return [hit_dict(h) for h in retriever.retrieve(query, k)]

    return search
