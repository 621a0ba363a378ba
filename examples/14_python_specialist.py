"""The "Specialist": a small language model of Python source, from the machine's own stdlib.

1. Corpus: the ``.py`` files of the running Python's standard library (found at run time with
   ``sysconfig.get_paths()["stdlib"]``; PSF licence; no download), without ``site-packages``
   the test suites and generated tables (encodings/, pydoc_data/). One document per file.
2. Tokenizer: byte-level BPE (``BPETokenizer.train_fast``) trained on the first files.
3. ``g2c.data.prepare_corpus``: exact + MinHash near-duplicate removal, 5 % of the files held
   out by hash, uint16 shards + manifest (the same pipeline as ``g2c data prepare``).
4. Training: ``g2c.pretraining.Trainer`` on ``TokenStream`` memory maps of the shards, for a
   wall-clock budget (``--minutes``).
5. Report: validation loss (nats/token) and the share of samples that ``ast.parse`` accepts —
   whole (the sample's first non-empty document) and without its last top-level statement
   (the one the token limit interrupted), and whole with at least one statement (comments
   alone parse trivially); an empty sample counts as not parsing.

    .venv/bin/python examples/14_python_specialist.py --smoke          # seconds
    .venv/bin/python examples/14_python_specialist.py --minutes 5      # the measured run
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from g2c.data import PrepareConfig, prepare_corpus, resolve_sources, shard_paths
from g2c.data.prepare import iter_documents
from g2c.pretraining import TokenStream, Trainer
from g2c.sampling import generate
from g2c.tokenizer import BPETokenizer
from g2c.training import LoopControl
from g2c.transformer import TransformerLM

# Not the Python a specialist should learn: third-party packages, the test suites, and two
# folders of generated data (codec tables in encodings/, pydoc's topic strings).
EXCLUDE = ["site-packages", "test", "tests", "idle_test", "*_test*", "encodings", "pydoc_data"]


class Deadline(LoopControl):
    """Stop cleanly once ``seconds`` of wall time have passed."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def should_stop(self, step: int) -> bool:
        return time.monotonic() > self.end


def stdlib_inputs(smoke: bool) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [f"python={root / 'json'}"] if smoke else [f"python={root}"]


def train_tokenizer(inputs: list[str], vocab_size: int, chars: int) -> BPETokenizer:
    source = resolve_sources(inputs, ["*.py"], EXCLUDE)[0]
    text, parts = 0, []
    for doc in iter_documents(source):
        parts.append(doc)
        text += len(doc)
        if text >= chars:
            break
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast("<|endoftext|>".join(parts)[:chars], vocab_size)
    return tok


def _statements(src: str) -> int | None:
    """Number of top-level statements ``ast.parse`` finds, or None when it does not parse."""
    try:
        return len(ast.parse(src).body)
    except (SyntaxError, ValueError):
        return None


def parses(code: str) -> tuple[bool, bool, bool]:
    """(whole, trimmed, with_code) for a sample; an empty sample fails all three.

    whole: ``ast.parse`` accepts the sample. trimmed: it accepts the sample cut before its last
    top-level line (a line at column 0 that does not close a bracket), i.e. without the
    statement the token limit interrupted. with_code: whole, and at least one statement — a
    sample of comments only parses trivially, so this is the number that says "Python".
    """
    if not code.strip():
        return False, False, False
    lines = code.split("\n")
    starts = [i for i, ln in enumerate(lines) if i and ln[:1].strip() and ln[0] not in ")]}"]
    trimmed = "\n".join(lines[: starts[-1]]) if starts else code
    whole = _statements(code)
    return (
        whole is not None,
        bool(trimmed.strip()) and _statements(trimmed) is not None,
        bool(whole),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="a Python-source specialist LM on the stdlib")
    ap.add_argument("--smoke", action="store_true", help="seconds: the json package, tiny model")
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="tokenizing processes")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--out", default=None, help="where the shards go (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write the report to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    smoke = args.smoke
    inputs = stdlib_inputs(smoke)

    t0 = time.perf_counter()
    tok = train_tokenizer(inputs, 384 if smoke else 2048, 60_000 if smoke else 2_000_000)
    t_tok = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "python-code"
        cfg = PrepareConfig(
            inputs=inputs,
            tokenizer="bpe-stdlib",
            shard_tokens=50_000_000,  # one shard per split: a TokenStream each
            workers=args.workers,
            dedupe=["exact", "minhash"],
            val_fraction=0.2 if smoke else 0.05,
            include=["*.py"],
            exclude=EXCLUDE,
        )
        t0 = time.perf_counter()
        manifest = prepare_corpus(cfg, tok, out)
        t_prep = time.perf_counter() - t0
        train = TokenStream(shard_paths(out, "train")[0])
        val = TokenStream(shard_paths(out, "val")[0])
        f = manifest["funnel"]
        print(
            f"corpus: {len(manifest['sources'][0]['files'])} files, {f['documents_in']} documents, "
            f"{f['exact_duplicates']} exact + {f['near_duplicates']} near duplicates dropped, "
            f"{len(train):,} train / {len(val):,} val tokens (BPE {tok.vocab_size}, trained in "
            f"{t_tok:.1f}s; prepared in {t_prep:.1f}s)"
        )

        torch.manual_seed(1337)
        D, L, H, T = (32, 2, 2, 32) if smoke else (128, 4, 4, 128)
        model = TransformerLM(
            tok.vocab_size, D, L, H, T, init="gpt2", attention_impl="sdpa", fused=True
        )
        budget = 5.0 if smoke else 60.0 * args.minutes
        trainer = Trainer(
            model, batch_size=8 if smoke else 16, context_length=T, max_steps=10**6 if not smoke else 30,
            max_lr=2e-3, min_lr=2e-4, warmup_steps=10 if smoke else 100, grad_clip=1.0,
            optimizer="adamw", betas=(0.9, 0.99), device="cpu", seed=1337,
            eval_every=10**9, eval_iters=2 if smoke else 20, log_every=10 if smoke else 100,
        )  # fmt: skip
        t0 = time.perf_counter()
        trainer.train(
            train,
            val,
            on_log=lambda e: print(f"step {e['step']:5d}  train {e['train_loss']:.3f}"),
            control=Deadline(budget),
        )
        t_train = time.perf_counter() - t0
        val_loss = trainer.evaluate(val)

    eot = tok.special_to_id["<|endoftext|>"]
    n = args.samples or (3 if smoke else 20)
    gen = torch.Generator().manual_seed(0)
    strict = trimmed = with_code = 0
    samples = []
    for _ in range(n):
        ids = generate(
            model, torch.tensor([eot]), 40 if smoke else 256, temperature=0.8, top_k=40,
            generator=gen,
        )[1:].tolist()  # fmt: skip
        # the first non-empty document of the sample (the model may emit <|endoftext|> first)
        docs = tok.decode(ids).split("<|endoftext|>")
        code = next((d for d in docs if d.strip()), "")
        ok_strict, ok_trimmed, ok_code = parses(code)
        strict += ok_strict
        trimmed += ok_trimmed
        with_code += ok_code
        samples.append(code)
    report = {
        "steps": trainer.step,
        "train_seconds": round(t_train, 1),
        "train_tokens": len(train),
        "val_tokens": len(val),
        "val_loss": round(val_loss, 4),
        "samples": n,
        "parse_strict": strict / n,
        "parse_trimmed": trimmed / n,
        "parse_with_code": with_code / n,
        "funnel": manifest["funnel"],
        "threads": args.threads,
    }
    print(f"--- sample 1 ---\n{samples[0]}\n---")
    print(
        f"{trainer.step} steps in {t_train:.0f}s; val loss {val_loss:.3f} nats/token; "
        f"samples that parse: {strict}/{n} whole, {trimmed}/{n} without the interrupted last "
        f"statement, {with_code}/{n} whole and with at least one statement (not only comments)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "sample_texts": samples}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    raise SystemExit(main())
