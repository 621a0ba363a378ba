"""Retrieval: a question → the chunks most likely to answer it, ranked.

- :class:`DenseRetriever` (API.md): embed the query, nearest vectors in a store (cosine).
- :class:`BM25Retriever`: lexical ranking by Okapi BM25 (Robertson & Zaragoza 2009) as SQLite's
  FTS5 computes it (``bm25()``, k1 = 1.2, b = 0.75) over a :class:`~g2c.rag.SQLiteIndex`.
- :class:`HybridRetriever`: fusion of several rankings (:func:`fuse`), two standard ways:

  * ``fusion="rrf"`` — (weighted) reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009,
    "Reciprocal Rank Fusion outperforms Condorcet and individual Rank Learning Methods"):
    ``score(d) = sum over rankings r of w_r / (k + rank_r(d))`` with k = 60 and w_r = 1
    (plain RRF), so a chunk ranked high by either retriever rises, without calibrating
    cosine against BM25 scores;
  * ``fusion="convex"`` — a convex combination of min-max normalised scores (Bruch, Gai &
    Ingber 2023, "An Analysis of Fusion Functions for Hybrid Retrieval", ACM TOIS 42(1),
    arXiv:2210.11934): ``score(d) = alpha * mm(cos(q, d)) + (1 - alpha) * mm(bm25(q, d))``,
    ``mm(s) = (s - min) / (max - min)`` over the retriever's top-``depth`` list for this
    query, and 0 where the retriever did not return ``d``. Unlike RRF it keeps *how much*
    better one hit is than the next, and ``alpha`` says how far to trust each retriever.

  :func:`index_retriever`'s hybrid mode takes ``alpha`` = the weight of the dense retriever
  (BM25 gets 1 - alpha); the default (:data:`DEFAULT_FUSION`, :data:`DEFAULT_ALPHA`) was
  chosen on development queries only (SciFact train, OpenBookQA validation): see
  docs/modules/17-rag.md.

Every retriever returns ``[RetrievedChunk(chunk, score, rank)]`` (rank 1 = best);
``scores`` keeps each component's score ({"dense": cosine, "bm25": ...}).
:func:`make_search` wraps any retriever (or an index) as the plain ``search(query, k) ->
[dict]`` callable that tools such as ``web_search`` take.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from g2c.rag.chunking import Chunk
from g2c.rag.embedders import Embedder
from g2c.rag.stores import SQLiteIndex, _check_k

RRF_K = 60
MODES = ("bm25", "dense", "hybrid")
#: Fusion functions of :class:`HybridRetriever`: reciprocal-rank and convex (min-max scores).
FUSIONS = ("rrf", "convex")
#: Hybrid defaults of :func:`index_retriever` and ``g2c rag``: chosen on development queries
#: only (SciFact train qrels, OpenBookQA validation), see docs/modules/17-rag.md.
DEFAULT_FUSION = "convex"
DEFAULT_ALPHA = 0.7


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


def _check_weights(weights: Any, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    try:
        w = [float(x) for x in weights]
    except (TypeError, ValueError):
        raise TypeError(f"weights must be a sequence of numbers, got {weights!r}") from None
    if len(w) != n:
        raise ValueError(f"weights must hold one number per retriever ({n}), got {len(w)}")
    if any(not math.isfinite(x) or x < 0 for x in w) or not any(w):
        raise ValueError(f"weights must be finite numbers >= 0, not all 0, got {weights!r}")
    return w


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a float in [0, 1] (the dense retriever's weight); else ValueError/TypeError
    naming ``alpha``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (the dense weight; BM25 gets 1 - alpha), "
                         f"got {alpha!r}")  # fmt: skip
    return float(alpha)


def _check_fusion(fusion: Any) -> str:
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    return fusion


def alpha_weights(alpha: float, fusion: str) -> tuple[float, float]:
    """(dense weight, BM25 weight) for ``alpha``: ``(alpha, 1 - alpha)`` for "convex";
    ``(2 alpha, 2 (1 - alpha))`` for "rrf", so that alpha = 0.5 is plain RRF, scores included."""
    alpha = check_alpha(alpha)
    scale = 2.0 if _check_fusion(fusion) == "rrf" else 1.0
    return (scale * alpha, scale * (1.0 - alpha))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Any]], k: float = RRF_K,
                           weights: Sequence[float] | None = None
                           ) -> list[tuple[Any, float]]:  # fmt: skip
    """Fuse ranked lists of hashable keys: ``[(key, sum w_r/(k + rank_r))]``, best first (ties
    by first appearance). ``k`` = 60 as in Cormack et al. (2009); ``weights`` (one number >= 0
    per ranking, default all 1 = plain RRF). k < 0 or bad weights → ValueError."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0:
        raise ValueError(f"k must be a number >= 0, got {k!r}")
    w = _check_weights(weights, len(rankings))
    scores: dict[Any, float] = {}
    for wr, ranking in zip(w, rankings):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + wr / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def min_max(scores: Sequence[float]) -> list[float]:
    """Min-max normalisation ``(s - min) / (max - min)`` → [0, 1]; all 1.0 when every score is
    equal (one hit, or ties), [] for []."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def convex_fusion(scored: Sequence[Sequence[tuple[Any, float]]],
                  weights: Sequence[float] | None = None) -> list[tuple[Any, float]]:  # fmt: skip
    """Convex combination of min-max normalised scores (Bruch et al. 2023): each list
    ``[(key, score)]`` (higher = better) is normalised to [0, 1] by :func:`min_max`; a key
    absent from a list counts 0 there; ``score(key) = sum_r w_r * mm_r(key)``. Best first; ties
    (a list's last hit also normalises to 0) go to the key returned by the greater total weight
    of lists, then to the first seen. ``weights``: one number >= 0 per list (default all 1)."""
    w = _check_weights(weights, len(scored))
    fused: dict[Any, float] = {}
    support: dict[Any, float] = {}
    for wr, hits in zip(w, scored):
        for (key, _), norm in zip(hits, min_max([float(s) for _, s in hits])):
            fused[key] = fused.get(key, 0.0) + wr * norm
            support[key] = support.get(key, 0.0) + wr
    order = {key: i for i, key in enumerate(fused)}
    return sorted(fused.items(), key=lambda kv: (-kv[1], -support[kv[0]], order[kv[0]]))


def fuse(hit_lists: Sequence[Sequence[RetrievedChunk]], k: int, *, fusion: str = "rrf",
         weights: Sequence[float] | None = None, rrf_k: float = RRF_K
         ) -> list[RetrievedChunk]:  # fmt: skip
    """Fuse the ranked hits of several retrievers into the ``k`` best, best first.

    ``fusion``: "rrf" (:func:`reciprocal_rank_fusion`, uses ranks) or "convex"
    (:func:`convex_fusion`, uses min-max normalised scores). Chunks are identified by
    (source, start, end). Each fused hit's ``scores`` holds every component's score where that
    component returned the chunk, plus the fused score under the name of ``fusion``.
    Bad ``fusion``, ``weights`` or ``k`` → ValueError."""
    _check_k(k)
    _check_fusion(fusion)
    chunks: dict[tuple, Chunk] = {}
    parts: dict[tuple, dict[str, float]] = {}
    for hits in hit_lists:
        for h in hits:
            chunks.setdefault(_key(h.chunk), h.chunk)
            parts.setdefault(_key(h.chunk), {}).update(h.scores)
    if fusion == "rrf":
        fused = reciprocal_rank_fusion([[_key(h.chunk) for h in hits] for hits in hit_lists],
                                       rrf_k, weights)  # fmt: skip
    else:
        fused = convex_fusion([[(_key(h.chunk), h.score) for h in hits] for hits in hit_lists],
                              weights)  # fmt: skip
    return [RetrievedChunk(chunks[key], s, n, {**parts[key], fusion: s})
            for n, (key, s) in enumerate(fused[:k], start=1)]  # fmt: skip


class HybridRetriever:
    """Fusion of several retrievers (default: plain reciprocal-rank fusion).

    ``HybridRetriever(retrievers, *, rrf_k=60, depth=50, fusion="rrf", weights=None)``: each
    retriever contributes its top ``max(depth, k)`` hits, fused by :func:`fuse`: ``fusion``
    "rrf" (ranks, Cormack et al. 2009) or "convex" (min-max normalised scores, Bruch et al.
    2023); ``weights`` one number >= 0 per retriever (default all 1: plain RRF / an unweighted
    sum). ``score`` is the fused score; ``scores`` holds every component's score for the chunk
    (absent where a component did not rank it) plus the fused one ("rrf" or "convex").
    :func:`index_retriever` builds the usual dense + BM25 pair from one ``alpha``.
    """

    name = "hybrid"

    def __init__(self, retrievers: Sequence[Any], *, rrf_k: float = RRF_K, depth: int = 50,
                 fusion: str = "rrf", weights: Sequence[float] | None = None
                 ) -> None:  # fmt: skip
        retrievers = list(retrievers)
        if len(retrievers) < 2 or not all(callable(getattr(r, "retrieve", None))
                                           for r in retrievers):  # fmt: skip
            raise ValueError("retrievers must be at least two objects with retrieve(query, k)")
        _check_k(depth)
        self.retrievers, self.rrf_k, self.depth = retrievers, rrf_k, depth
        self.fusion = _check_fusion(fusion)
        self.weights = None if weights is None else _check_weights(weights, len(retrievers))

    def retrieve(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        """The ``k`` best chunks by fused score, best first."""
        _check_k(k)
        query = _check_query(query)
        hit_lists = [r.retrieve(query, max(self.depth, k)) for r in self.retrievers]
        return fuse(hit_lists, k, fusion=self.fusion, weights=self.weights, rrf_k=self.rrf_k)


def index_retriever(index: SQLiteIndex, mode: str = "hybrid", *, rrf_k: float = RRF_K,
                    depth: int = 50, alpha: float | None = None, fusion: str | None = None
                    ) -> Any:  # fmt: skip
    """The retriever of ``mode`` ("bm25", "dense", "hybrid") over ``index``. Dense and hybrid
    need the index opened with its embedder (ValueError otherwise).

    Hybrid = dense + BM25 fused by ``fusion`` ("convex" or "rrf"; None = :data:`DEFAULT_FUSION`)
    with ``alpha`` = the dense weight in [0, 1], BM25 getting 1 - alpha (None =
    :data:`DEFAULT_ALPHA`; see :func:`alpha_weights`). Plain RRF: ``fusion="rrf", alpha=0.5``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    fusion = DEFAULT_FUSION if fusion is None else _check_fusion(fusion)
    weights = alpha_weights(DEFAULT_ALPHA if alpha is None else alpha, fusion)
    if mode == "bm25":
        return BM25Retriever(index)
    if index.embedder is None:
        raise ValueError(f"mode {mode!r} needs the index's embedder "
                         f"({index.meta['embedder_spec']}); open the index with it")  # fmt: skip
    dense = DenseRetriever(index.embedder, index)
    if mode == "dense":
        return dense
    return HybridRetriever([dense, BM25Retriever(index)], rrf_k=rrf_k, depth=depth,
                           fusion=fusion, weights=weights)  # fmt: skip


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
