"""RAG benchmark: indexing speed, query latency and memory at 10k and 100k chunks.

Chunks are synthetic sentences (~40 words from a 5,000-word vocabulary), vectors from
``HashEmbedder(384)`` (MiniLM's dimension; the store's cost depends on N x dim, not on the
model). Measured, one thread:

- embedding: HashEmbedder chunks/s (MiniLM's rate is in docs/modules/17-rag.md);
- ``NumpyVectorStore``: add (chunks/s), exact top-10 cosine search p50 with the fast path
  (``argpartition``) and the reference (full ``argsort``), against scikit-learn's
  ``NearestNeighbors(algorithm="brute", metric="cosine")`` — the library a user would pick;
- ``SQLiteIndex`` (a temporary file, FTS5 + float32 BLOBs): writes (chunks/s, 100 chunks per
  document = one transaction), BM25 p50, dense p50 (vectors loaded once from the BLOBs, then
  NumPy brute force), hybrid p50 (the default fusion and plain RRF), the file size;
- BLAS and torch limited to one thread (threadpoolctl);
- peak memory: tracemalloc's peak (NumPy allocations included) in separate untimed passes —
  building the NumPy store + one search; opening the SQLite index + one query per mode — and
  the process's ``ru_maxrss``.

Vectors come from ``HashEmbedder`` so that embedding time stays out of the store figures
(MiniLM's embedding rate is measured separately, in ``g2c rag eval``).

Writes bench/results/rag.json and prints a table. No timing is asserted anywhere.
Usage: .venv/bin/python bench/rag.py [--quick] [--sizes 10000,100000] [--queries 50]
(``--quick``: 10k chunks, 20 queries.)
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.rag import Chunk, HashEmbedder, NumpyVectorStore, SQLiteIndex, index_retriever

RESULTS = Path(__file__).resolve().parent / "results" / "rag.json"
DIM = 384


def synthetic_chunks(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    zipf = 1.0 / np.arange(1, 5001)
    p = zipf / zipf.sum()
    return [" ".join(rng.choice(vocab, size=40, p=p)) for _ in range(n)]


def p50_ms(fn, queries) -> float:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_size(n: int, n_queries: int) -> dict:
    out: dict = {"chunks": n}
    texts = synthetic_chunks(n)
    emb = HashEmbedder(DIM)
    t0 = time.perf_counter()
    vecs = emb.embed(texts)
    out["embed_chunks_per_s"] = n / (time.perf_counter() - t0)
    chunks = [Chunk(t, f"doc{i // 100}", 0, len(t)) for i, t in enumerate(texts)]
    queries = [" ".join(t.split()[:6]) for t in synthetic_chunks(n_queries, seed=1)]
    qvecs = emb.embed(queries)

    t0 = time.perf_counter()
    store = NumpyVectorStore(DIM)
    for i in range(0, n, 1000):
        store.add(chunks[i : i + 1000], vecs[i : i + 1000])
    store.vectors  # noqa: B018 - materialise the matrix (part of adding)
    out["numpy_add_chunks_per_s"] = n / (time.perf_counter() - t0)
    out["numpy_p50_ms"] = p50_ms(lambda q: store.search(q, 10), qvecs)
    out["numpy_sort_p50_ms"] = p50_ms(lambda q: store.search(q, 10, method="sort"), qvecs)
    store = None
    # peak memory in a separate, untimed pass (tracemalloc slows every Python allocation)
    tracemalloc.start()
    store = NumpyVectorStore(DIM)
    for i in range(0, n, 1000):
        store.add(chunks[i : i + 1000], vecs[i : i + 1000])
    store.search(qvecs[0], 10)
    out["numpy_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    try:
        from sklearn.neighbors import NearestNeighbors

        t0 = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=10, algorithm="brute", metric="cosine").fit(vecs)
        out["sklearn_fit_s"] = time.perf_counter() - t0
        out["sklearn_p50_ms"] = p50_ms(lambda q: nn.kneighbors(q[None, :], 10), qvecs)
        # the same top-10 similarities (ids can swap where two chunks tie at rank 10)
        top_g2c = np.array(sorted(s for _, s in store.search(qvecs[0], 10)))
        top_sk = np.sort(1.0 - nn.kneighbors(qvecs[0][None, :], 10)[0][0])
        out["same_top10_as_sklearn"] = bool(np.allclose(top_g2c, top_sk, atol=1e-5))
    except ImportError:
        out["sklearn_p50_ms"] = None
    store = nn = None  # free the matrices before the SQLite phase

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        index = SQLiteIndex(db, emb)
        t0 = time.perf_counter()
        for i in range(0, n, 100):
            index.add_chunks(f"doc{i // 100}", chunks[i : i + 100], vectors=vecs[i : i + 100])
        out["sqlite_write_chunks_per_s"] = n / (time.perf_counter() - t0)
        out["sqlite_file_mib"] = db.stat().st_size / 2**20
        out["sqlite_bm25_p50_ms"] = p50_ms(lambda q: index.search_bm25(q, 10), queries)
        t0 = time.perf_counter()
        index.search(qvecs[0], 10)
        out["sqlite_load_vectors_s"] = time.perf_counter() - t0
        out["sqlite_dense_p50_ms"] = p50_ms(lambda q: index.search(q, 10), qvecs)
        hybrid = index_retriever(index, "hybrid")
        out["sqlite_hybrid_p50_ms"] = p50_ms(lambda q: hybrid.retrieve(q, 10), queries)
        rrf = index_retriever(index, "hybrid", fusion="rrf", alpha=0.5)
        out["sqlite_hybrid_rrf_p50_ms"] = p50_ms(lambda q: rrf.retrieve(q, 10), queries)
        index.close()
        # peak memory of serving queries (untimed): open, load the vectors, one query per mode
        tracemalloc.start()
        with SQLiteIndex(db, emb) as index:
            for mode in ("bm25", "dense", "hybrid"):
                index_retriever(index, mode).retrieve(queries[0], 10)
        out["sqlite_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k chunks, 20 queries")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:  # NumPy's BLAS is multi-threaded by default; 1 thread like torch (and the docs' table)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    n_queries = 20 if args.quick else args.queries
    rows = [bench_size(n, n_queries) for n in sizes]
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"dim": DIM, "threads": 1, "queries": n_queries, "quick": args.quick,
              "maxrss_mib": maxrss, "python": sys.version.split()[0], "sizes": rows}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, result)
    table = Table(title=f"RAG store speed (dim {DIM}, 1 thread, p50 over {n_queries} queries)")
    metrics = [
        ("embed_chunks_per_s", "hash embed chunks/s", "{:,.0f}"),
        ("numpy_add_chunks_per_s", "numpy add chunks/s", "{:,.0f}"),
        ("numpy_p50_ms", "numpy search p50 ms (argpartition)", "{:.2f}"),
        ("numpy_sort_p50_ms", "numpy search p50 ms (argsort ref.)", "{:.2f}"),
        ("sklearn_p50_ms", "sklearn brute cosine p50 ms", "{:.2f}"),
        ("same_top10_as_sklearn", "same top-10 scores as sklearn", "{}"),
        ("numpy_peak_mib", "numpy peak MiB (tracemalloc)", "{:.0f}"),
        ("sqlite_write_chunks_per_s", "sqlite write chunks/s", "{:,.0f}"),
        ("sqlite_file_mib", "sqlite file MiB", "{:.0f}"),
        ("sqlite_bm25_p50_ms", "sqlite bm25 p50 ms", "{:.2f}"),
        ("sqlite_load_vectors_s", "sqlite load vectors s", "{:.2f}"),
        ("sqlite_dense_p50_ms", "sqlite dense p50 ms", "{:.2f}"),
        ("sqlite_hybrid_p50_ms", "sqlite hybrid p50 ms (default fusion)", "{:.2f}"),
        ("sqlite_hybrid_rrf_p50_ms", "sqlite hybrid p50 ms (plain RRF)", "{:.2f}"),
        ("sqlite_peak_mib", "sqlite query peak MiB (tracemalloc)", "{:.0f}"),
    ]
    table.add_column("metric")
    for r in rows:
        table.add_column(f"{r['chunks']:,} chunks", justify="right")
    for key, label, fmt in metrics:
        table.add_row(label, *(fmt.format(r.get(key)) if r.get(key) is not None else "-"
                               for r in rows))  # fmt: skip
    Console().print(table)
    print(f"process peak RSS {maxrss:.0f} MiB; written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
