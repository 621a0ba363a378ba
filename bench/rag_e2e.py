"""End-to-end RAG: OpenBookQA accuracy of SmolLM2-135M with and without retrieved open-book facts.

The QA set and the corpus belong together: OpenBookQA's test questions (500) were written
from the 1,326 science facts of its open book, and each question names the fact it rests on
(``fact1``). Every question is scored by log-likelihood multiple choice — g2c.eval's
lm-evaluation-harness path (:func:`g2c.eval.run_multiple_choice_eval`, lm-eval's openbookqa
prompt: the question stem, the four answers as continuations; ``acc`` and ``acc_norm``) —
under these prompts:

- ``none``: the stem alone (exactly ``g2c eval smollm2 --tasks openbookqa``);
- ``bm25`` / ``dense`` / ``hybrid``: the top ``--k`` facts retrieved from the open book with
  the *stem only* as the query (never the answers), one ``Fact: ...`` line each, best
  first, then the stem;
- ``gold``: the question's own ``fact1`` in the same format (the upper bound: perfect
  retrieval of the one fact the question was written from).

The retrieval index is an in-memory :class:`g2c.rag.SQLiteIndex` of the open book (one
chunk per fact) embedded with all-MiniLM-L6-v2 (``--embedder``); hybrid uses g2c.rag's
default fusion. Reported per condition: acc, acc_norm, fact recall@k (questions whose
``fact1`` is among the facts in the prompt) and seconds. One process, ``--threads`` (1).
Writes bench/results/rag_e2e.json (``--out``) and prints a table.

Usage: .venv/bin/python bench/rag_e2e.py [--limit N] [--k 3] [--conditions none,gold,dense]
``--smoke``: 5 questions, a tiny random model and the hash embedder (no SmolLM2, no MiniLM):
checks the plumbing in seconds (tests/test_rag_e2e.py runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.data.retrieval import load_openbook_retrieval
from g2c.eval import MultipleChoiceExample, get_task, run_multiple_choice_eval
from g2c.rag import DEFAULT_ALPHA, DEFAULT_FUSION, build_eval_index, index_retriever, make_embedder

RESULTS = Path(__file__).resolve().parent / "results" / "rag_e2e.json"
CONDITIONS = ("none", "bm25", "dense", "hybrid", "gold")


def with_facts(stem: str, facts: list[str]) -> str:
    """The prompt with facts: one ``Fact: ...`` line per fact (best first), then the stem."""
    return "".join(f"Fact: {f.strip()}\n" for f in facts) + stem


@functools.lru_cache(maxsize=2)
def load(spec: str) -> Any:
    """``g2c.transformer.load_model(spec)``, cached (a test reuses the model the run loaded)."""
    from g2c.transformer import load_model

    return load_model(spec)


def tiny_model() -> tuple[Any, Any]:
    """A 2-layer random TransformerLM with a BPE tokenizer trained on a few sentences (--smoke)."""
    from g2c.tokenizer import BPETokenizer
    from g2c.transformer import TransformerLM

    torch.manual_seed(0)
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast("fog is formed by water vapor. the sun is a star. plants need light. " * 20,
                   tok.base_vocab_size + 40)  # fmt: skip
    model = TransformerLM(tok.vocab_size, 32, 2, 4, 1024, positional="rope", norm="rmsnorm",
                          mlp="swiglu", num_kv_heads=2)  # fmt: skip
    return model.eval(), tok


def prompts(examples: list[MultipleChoiceExample], corpus: dict, queries: dict, qrels: dict,
            conditions: list[str], k: int, embedder_spec: str) -> tuple[dict, dict]:  # fmt: skip
    """Per condition: the examples with their prompts, and the fact recall@k."""
    ids = [ex.metadata["id"] for ex in examples]
    out: dict[str, list[MultipleChoiceExample]] = {}
    recall: dict[str, float | None] = {}
    retrieval_modes = [c for c in conditions if c in ("bm25", "dense", "hybrid")]
    index = None
    if retrieval_modes:
        embedder = make_embedder(embedder_spec if retrieval_modes != ["bm25"] else "hash:8")
        index = build_eval_index(corpus, embedder)
    for cond in conditions:
        if cond == "none":
            out[cond], recall[cond] = list(examples), None
            continue
        if cond == "gold":
            facts = {q: [corpus[next(iter(qrels[q]))]["text"]] for q in ids}
        else:
            retriever = index_retriever(index, cond)
            hits = {q: retriever.retrieve(queries[q], k) for q in ids}
            facts = {q: [corpus[h.chunk.source]["text"] for h in hits[q]] for q in ids}
        found = [any(f.lower() == corpus[d]["text"].lower() for d in qrels[q] for f in facts[q])
                 for q in ids]  # fmt: skip
        recall[cond] = sum(found) / len(ids)
        out[cond] = [dataclasses.replace(ex, prompt=with_facts(ex.prompt, facts[q]))
                     for ex, q in zip(examples, ids)]  # fmt: skip
    if index is not None:
        index.close()
    return out, recall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="first N test questions (all: 500)")
    ap.add_argument("--k", type=int, default=3, help="retrieved facts in the prompt (default 3)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help=f"comma-separated, of {','.join(CONDITIONS)} (default: all)")  # fmt: skip
    ap.add_argument("--model", default="smollm2", help="anything g2c.transformer.load_model reads")
    ap.add_argument("--embedder", default="minilm", help="as `g2c rag index --embedder`")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true",
                    help="5 questions, tiny random model, hash embedder: plumbing only")  # fmt: skip
    ap.add_argument("--out", default=None, help=f"JSON file (default: {RESULTS})")
    args = ap.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if not conditions or any(c not in CONDITIONS for c in conditions):
        ap.error(f"--conditions must be a comma-separated subset of {','.join(CONDITIONS)}")
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be >= 1, got {args.limit}")
    if args.k < 1:
        ap.error(f"--k must be >= 1, got {args.k}")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    limit = 5 if args.smoke and args.limit is None else args.limit
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    examples = get_task("openbookqa").examples(limit)
    corpus, queries, qrels = load_openbook_retrieval("test", query="question")
    missing = [ex.metadata["id"] for ex in examples if ex.metadata["id"] not in qrels]
    if missing:
        raise SystemExit(f"questions without a fact1 in test_complete.jsonl: {missing[:5]}")
    if args.smoke:
        model, tokenizer = tiny_model()
        model_name, embedder_spec = "tiny random TransformerLM (smoke)", "hash:64"
    else:
        loaded = load(args.model)
        model, tokenizer = loaded.model.eval(), loaded.tokenizer
        model_name, embedder_spec = args.model, args.embedder
    t0 = time.perf_counter()
    by_condition, recall = prompts(examples, corpus, queries, qrels, conditions, args.k,
                                   embedder_spec)  # fmt: skip
    retrieval_s = time.perf_counter() - t0

    rows: dict[str, dict[str, Any]] = {}
    for cond in conditions:
        t0 = time.perf_counter()
        report = run_multiple_choice_eval(model, tokenizer, by_condition[cond],
                                          task_name=f"openbookqa+{cond}")  # fmt: skip
        rows[cond] = {
            "acc": report.metrics["acc"],
            "acc_norm": report.metrics["acc_norm"],
            "fact_recall": recall[cond],
            "n": report.n,
            "seconds": time.perf_counter() - t0,
            "mean_prompt_chars": sum(len(e.prompt) for e in by_condition[cond]) / report.n,
            "correct_norm": [bool(r.metadata["acc_norm"]) for r in report.results],
        }
        print(f"  {cond}: acc {rows[cond]['acc']:.3f} acc_norm {rows[cond]['acc_norm']:.3f} "
              f"({rows[cond]['seconds']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    total_s = time.perf_counter() - t_start
    result = {
        "model": model_name, "embedder": embedder_spec, "k": args.k, "questions": len(examples),
        "hybrid": {"fusion": DEFAULT_FUSION, "alpha": DEFAULT_ALPHA},
        "query": "question stem only", "prompt": "Fact: <fact>\\n ... <question stem>",
        "threads": args.threads, "smoke": args.smoke, "retrieval_seconds": retrieval_s,
        "total_seconds": total_s, "python": sys.version.split()[0],
        "torch": torch.__version__, "machine": platform.machine(), "conditions": rows,
    }  # fmt: skip
    out = Path(args.out) if args.out else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    table = Table(title=f"OpenBookQA test ({len(examples)} questions), {model_name}, "
                        f"top-{args.k} facts, log-likelihood MC")  # fmt: skip
    for col in ("prompt", "acc", "acc_norm", f"fact in prompt (recall@{args.k})", "seconds"):
        table.add_column(col, justify="left" if col == "prompt" else "right")
    for cond, r in rows.items():
        fr = "-" if r["fact_recall"] is None else f"{r['fact_recall']:.3f}"
        table.add_row(cond, f"{r['acc']:.3f}", f"{r['acc_norm']:.3f}", fr, f"{r['seconds']:.0f}")
    Console().print(table)
    print(f"total {total_s:.0f} s (retrieval {retrieval_s:.0f} s); written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
