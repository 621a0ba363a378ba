"""Retrieval evaluation: recall@k, MRR and nDCG@10 on labelled queries.

Definitions as in trec_eval / pytrec_eval, which BEIR (Thakur et al. 2021) reports with:

- ``recall@k = |relevant ∩ top-k| / |relevant|``;
- ``MRR@k``: 1 / rank of the first relevant document in the top k (0 when none);
- ``nDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{i<=k} grade_i / log2(i + 1)`` (linear gain,
  as trec_eval's ``ndcg_cut``; Järvelin & Kekäläinen 2002) and IDCG the DCG of the ideal
  ordering of the judged documents.

Each is averaged over the queries that have at least one relevant document; a query with no
results scores 0. :func:`run_retrieval_eval` indexes a corpus (one chunk per document, title
and text as BEIR concatenates them) in an in-memory :class:`~g2c.rag.SQLiteIndex` and scores
BM25, dense and hybrid retrieval; ``hybrids=[(fusion, alpha), ...]`` scores a sweep of fusion
weights from the same component rankings (how the default alpha was chosen, on development
queries).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from g2c.rag.chunking import Chunk
from g2c.rag.embedders import Embedder, HashEmbedder
from g2c.rag.retrieval import (
    DEFAULT_ALPHA,
    DEFAULT_FUSION,
    MODES,
    alpha_weights,
    fuse,
    index_retriever,
)
from g2c.rag.stores import SQLiteIndex

DEFAULT_KS = (1, 10, 100)


def _relevant(relevant: Mapping[str, int] | Iterable[str]) -> dict[str, int]:
    if isinstance(relevant, Mapping):
        return {d: int(g) for d, g in relevant.items() if g > 0}
    return dict.fromkeys(relevant, 1)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int] | Iterable[str], k: int
                ) -> float:  # fmt: skip
    """Share of the relevant documents found in the first ``k`` of ``ranked`` (0.0 when
    nothing is relevant)."""
    rel = _relevant(relevant)
    if not rel:
        return 0.0
    return len(set(ranked[: _check_k(k)]) & set(rel)) / len(rel)


def reciprocal_rank(ranked: Sequence[str], relevant: Mapping[str, int] | Iterable[str],
                    k: int | None = None) -> float:  # fmt: skip
    """1 / rank of the first relevant document in ``ranked[:k]`` (all when k is None), or 0."""
    rel = _relevant(relevant)
    for i, d in enumerate(ranked[: _check_k(k)] if k is not None else ranked, start=1):
        if d in rel:
            return 1.0 / i
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int] | Iterable[str], k: int = 10
              ) -> float:  # fmt: skip
    """nDCG@k with linear gains (trec_eval's ``ndcg_cut``); 0.0 when nothing is relevant."""
    rel = _relevant(relevant)
    k = _check_k(k)
    dcg = sum(rel.get(d, 0) / math.log2(i + 1) for i, d in enumerate(ranked[:k], start=1))
    ideal = sorted(rel.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def evaluate_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
                 ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:  # fmt: skip
    """Mean metrics of ``run`` (query id → ranked doc ids) against ``qrels`` (query id →
    {doc id: grade}): ``ndcg@10``, ``mrr@10``, ``recall@k`` for each k in ``ks``, and
    ``queries`` (how many were scored: those with a relevant document)."""
    judged = [q for q, rel in qrels.items() if _relevant(rel)]
    if not judged:
        raise ValueError("qrels hold no query with a relevant document")
    out: dict[str, float] = {"ndcg@10": 0.0, "mrr@10": 0.0}
    out.update({f"recall@{k}": 0.0 for k in ks})
    for q in judged:
        ranked, rel = list(run.get(q, [])), qrels[q]
        out["ndcg@10"] += ndcg_at_k(ranked, rel, 10)
        out["mrr@10"] += reciprocal_rank(ranked, rel, 10)
        for k in ks:
            out[f"recall@{k}"] += recall_at_k(ranked, rel, k)
    out = {m: v / len(judged) for m, v in out.items()}
    out["queries"] = len(judged)
    return out


def build_eval_index(corpus: Mapping[str, Mapping[str, str]], embedder: Embedder, *,
                     batch_size: int = 256,
                     progress: Callable[[int, int], None] | None = None,
                     path: str | os.PathLike = ":memory:") -> SQLiteIndex:  # fmt: skip
    """An index with one chunk per document (``source`` = doc id, text = title + " " + text)
    and its embeddings; ``progress(done, total)`` after each batch.

    ``path``: ":memory:" (default) or an index file used as a cache: when it exists it must
    hold exactly this corpus's documents (same ids and texts, by SHA-256) embedded by
    ``embedder`` and is reused without embedding anything; else it is created. A file built
    from another corpus → ValueError naming it; another embedder → RAGIndexError."""
    ids = list(corpus)
    texts = [(corpus[d].get("title", "") + " " + corpus[d]["text"]).strip() for d in ids]
    shas = {d: hashlib.sha256(t.encode()).hexdigest() for d, t in zip(ids, texts)}
    path = str(path)
    if path != ":memory:" and Path(path).exists():
        index = SQLiteIndex(path, embedder)
        if index.documents() != shas:
            index.close()
            raise ValueError(f"{path} was built from another corpus (or another version of "
                             "it); delete it or give another cache file")  # fmt: skip
        if progress is not None:
            progress(len(ids), len(ids))
        return index
    index = SQLiteIndex(path, embedder)
    for i in range(0, len(ids), batch_size):
        part = texts[i : i + batch_size]
        vectors = embedder.embed(part)
        for d, text, vec in zip(ids[i : i + batch_size], part, vectors):
            index.add_chunks(d, [Chunk(text, d, 0, len(text))], vectors=vec[None, :],
                             sha256=shas[d])  # fmt: skip
        if progress is not None:
            progress(min(i + batch_size, len(ids)), len(ids))
    return index


def hybrid_key(fusion: str, alpha: float) -> str:
    """The result key of a hybrid variant in a sweep: ``"hybrid:convex@0.70"``."""
    return f"hybrid:{fusion}@{alpha:.2f}"


def run_retrieval_eval(
    corpus: Mapping[str, Mapping[str, str]],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    embedder: Embedder | None = None,
    modes: Sequence[str] = MODES,
    depth: int = 100,
    progress: Callable[[str, int, int], None] | None = None,
    alpha: float | None = None,
    fusion: str | None = None,
    hybrids: Sequence[tuple[str, float]] | None = None,
    index_path: str | os.PathLike = ":memory:",
) -> dict[str, dict[str, float]]:
    """Metrics per mode: ``{"bm25": {"ndcg@10", "mrr@10", "recall@1/10/100", "queries",
    "seconds", "index_seconds"}, "dense": ..., "hybrid": ...}``. ``embedder`` is needed for
    dense and hybrid (a bm25-only run indexes with a tiny hash embedder).
    ``progress(stage, done, total)``.

    Hybrid is scored as :func:`~g2c.rag.index_retriever` ranks it (``fusion``, ``alpha``;
    None = the defaults) from the same top-``depth`` dense and BM25 lists. ``hybrids``: a
    sweep, ``[(fusion, alpha), ...]`` each scored under :func:`hybrid_key` (the component
    lists are retrieved once per query and fused for every variant, so a sweep costs little
    more than one run). ``index_path``: see :func:`build_eval_index` (a cache file)."""
    modes = list(modes)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes must be among {', '.join(MODES)}, got {modes!r}")
    fusion = DEFAULT_FUSION if fusion is None else fusion
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    variants: dict[str, tuple[str, tuple[float, float]]] = {}
    if "hybrid" in modes:
        variants["hybrid"] = (fusion, alpha_weights(alpha, fusion))
    for f, a in hybrids or ():
        variants[hybrid_key(f, a)] = (f, alpha_weights(a, f))
    if embedder is None:
        if any(m != "bm25" for m in modes) or hybrids:
            raise ValueError("dense and hybrid modes need an embedder")
        embedder = HashEmbedder(8)
    _check_k(depth)
    t0 = time.perf_counter()
    index = build_eval_index(
        corpus, embedder, path=index_path,
        progress=(lambda d, n: progress("embed corpus", d, n)) if progress else None,
    )  # fmt: skip
    index_seconds = time.perf_counter() - t0
    qids = list(queries)
    needed = [m for m in ("bm25", "dense") if m in modes or variants]
    hits: dict[str, dict[str, list]] = {}
    seconds: dict[str, float] = {}
    for mode in needed:
        retriever = index_retriever(index, mode)
        t0 = time.perf_counter()
        hits[mode] = {}
        for n, q in enumerate(qids, start=1):
            hits[mode][q] = retriever.retrieve(queries[q], depth)
            if progress is not None and (n % 50 == 0 or n == len(qids)):
                progress(mode, n, len(qids))
        seconds[mode] = time.perf_counter() - t0
    results: dict[str, dict[str, float]] = {}

    def score(run: dict[str, list[str]], secs: float) -> dict[str, float]:
        metrics = evaluate_run(run, qrels)
        metrics["seconds"] = secs
        metrics["index_seconds"] = index_seconds
        return metrics

    for mode in modes:
        if mode != "hybrid":
            run = {q: [h.chunk.source for h in hits[mode][q]] for q in qids}
            results[mode] = score(run, seconds[mode])
    for key, (f, weights) in variants.items():
        t0 = time.perf_counter()
        run = {q: [h.chunk.source for h in fuse([hits["dense"][q], hits["bm25"][q]], depth,
                                                  fusion=f, weights=weights)]
               for q in qids}  # fmt: skip
        results[key] = score(run, seconds["dense"] + seconds["bm25"] + time.perf_counter() - t0)
    index.close()
    return results
