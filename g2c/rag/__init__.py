"""Retrieval-augmented generation (module 17): documents → chunks → vectors and an index →
retrieval (dense, BM25, hybrid) → a prompt with numbered sources → a cited answer.

The path a question takes::

    files ──ingest──► Document ──chunk_document──► Chunk (source, char span, line span)
          ──Embedder.embed──► float32 (N, dim) ──► NumpyVectorStore | SQLiteIndex (+ FTS5)
    question ──DenseRetriever / BM25Retriever / HybridRetriever (RRF | convex)──► [RetrievedChunk]
          ──assemble_rag_prompt──► RAGPrompt ──RAGPipeline(retriever, backend)──► RAGAnswer

Retrieval quality is measured with :mod:`g2c.rag.evaluation` (recall@k, MRR, nDCG@10) on
SciFact (BEIR) and OpenBookQA's open book; see docs/modules/17-rag.md.
"""

from g2c.rag.chunking import Chunk, chunk_document, chunk_text, word_count
from g2c.rag.embedders import (
    MINILM_NAME,
    Embedder,
    HashEmbedder,
    HTTPEmbedder,
    SentenceTransformerEmbedder,
    make_embedder,
    minilm_path,
)
from g2c.rag.evaluation import (
    build_eval_index,
    evaluate_run,
    hybrid_key,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    run_retrieval_eval,
)
from g2c.rag.ingest import (
    SUPPORTED_SUFFIXES,
    Document,
    IngestResult,
    UnsupportedDocument,
    load_document,
    load_documents,
)
from g2c.rag.pipeline import (
    DEFAULT_SYSTEM_PROMPT,
    Citation,
    RAGAnswer,
    RAGPipeline,
    RAGPrompt,
    assemble_rag_prompt,
)
from g2c.rag.retrieval import (
    DEFAULT_ALPHA,
    DEFAULT_FUSION,
    FUSIONS,
    MODES,
    RRF_K,
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    RetrievedChunk,
    Retriever,
    alpha_weights,
    check_alpha,
    convex_fusion,
    fuse,
    hit_dict,
    index_retriever,
    make_search,
    min_max,
    reciprocal_rank_fusion,
)
from g2c.rag.stores import INDEX_FORMAT, NumpyVectorStore, RAGIndexError, SQLiteIndex, top_k

__all__ = [
    "BM25Retriever",
    "Chunk",
    "Citation",
    "DEFAULT_ALPHA",
    "DEFAULT_FUSION",
    "DEFAULT_SYSTEM_PROMPT",
    "DenseRetriever",
    "Document",
    "Embedder",
    "FUSIONS",
    "HTTPEmbedder",
    "HashEmbedder",
    "HybridRetriever",
    "INDEX_FORMAT",
    "IngestResult",
    "MINILM_NAME",
    "MODES",
    "NumpyVectorStore",
    "RAGAnswer",
    "RAGIndexError",
    "RAGPipeline",
    "RAGPrompt",
    "RRF_K",
    "RetrievedChunk",
    "Retriever",
    "SQLiteIndex",
    "SUPPORTED_SUFFIXES",
    "SentenceTransformerEmbedder",
    "UnsupportedDocument",
    "alpha_weights",
    "assemble_rag_prompt",
    "build_eval_index",
    "check_alpha",
    "chunk_document",
    "chunk_text",
    "convex_fusion",
    "evaluate_run",
    "fuse",
    "hit_dict",
    "hybrid_key",
    "index_retriever",
    "load_document",
    "load_documents",
    "make_embedder",
    "make_search",
    "min_max",
    "minilm_path",
    "ndcg_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "reciprocal_rank_fusion",
    "run_retrieval_eval",
    "top_k",
    "word_count",
]
