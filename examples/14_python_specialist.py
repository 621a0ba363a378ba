"""The "Specialist": a small language model of Python source, from the machine's own stdlib.

The ``python-code`` preset of ``g2c train`` does the work; this example runs it and then asks
the question the preset cannot: does the model write Python?

1. Corpus (``data.shards = "python-stdlib"``, :mod:`g2c.data.python_code`): the ``.py`` files of
   the running Python's standard library (``sysconfig.get_paths()["stdlib"]``; PSF licence; no
   download), without ``site-packages``, the test suites and generated tables (encodings/,
   pydoc_data/). One document per file.
2. Tokenizer: byte-level BPE (``BPETokenizer.train_fast``) trained on the first files.
3. ``g2c.data.prepare_corpus`` (the pipeline of ``g2c data prepare``): exact + MinHash
   near-duplicate removal, 5 % of the files held out by hash, uint16 shards + manifest, in
   ``RUN/shards``.
4. Training: ``g2c.runs.pretrain.run`` on ``ShardedTokenStream`` memory maps of the shards, for a
   wall-clock budget (``--minutes`` → ``run.budget_minutes``).
5. Report: validation loss (nats/token) and the share of samples that ``ast.parse`` accepts —
   whole (the sample's first non-empty document) and without its last top-level statement
   (the one the token limit interrupted), and whole with at least one statement (comments
   alone parse trivially); an empty sample counts as not parsing.

    .venv/bin/python examples/14_python_specialist.py --smoke          # seconds
    .venv/bin/python examples/14_python_specialist.py --minutes 5      # the measured run
    g2c train --preset python-code --budget-minutes 5                  # the same training
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from g2c.runs import pretrain
from g2c.runs.config import apply_overrides, get_preset
from g2c.sampling import generate
from g2c.transformer import load_model

# The smoke variant: one package (json), a tiny BPE and model, 30 steps.
SMOKE = {
    "data": {"shards": "python-stdlib/json", "vocab_size": 384, "max_chars": 60_000,
             "val_fraction": 0.2},
    "model": {"embedding_dim": 32, "num_layers": 2, "num_heads": 2, "max_seq_len": 32},
    "train": {"batch_size": 8, "context_length": 32, "max_steps": 30, "warmup_steps": 10,
              "eval_every": 10, "eval_iters": 2, "log_every": 10},
    "run": {"sample_every": 0, "sample_tokens": 40},
}  # fmt: skip


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
    ap.add_argument("--minutes", type=float, default=5.0, help="the run's wall-clock budget")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument(
        "--out", default=None, help="the run directory (default: a temp dir); run again to resume"
    )
    ap.add_argument("--json", default=None, help="write the report to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    smoke = args.smoke
    overrides = SMOKE if smoke else {"run": {"budget_minutes": args.minutes}}
    cfg = apply_overrides(get_preset("python-code"), overrides)

    def on_event(kind: str, info: dict) -> None:
        if kind == "log":
            print(f"step {info['step']:5d}  train {info['train_loss']:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "python-code"
        t0 = time.perf_counter()
        fresh = args.out is None  # an --out directory resumes when run again
        result = pretrain.run(cfg, out, fresh=fresh, on_event=on_event, threads=args.threads)
        t_run = time.perf_counter() - t0
        stages = json.loads((out / "stages.json").read_text())
        data = stages["tokenizer"]
        manifest = json.loads((out / "shards" / "manifest.json").read_text())
        loaded = load_model(out)
        model, tok = loaded.model, loaded.tokenizer
    f = manifest["funnel"]
    print(
        f"corpus: {len(manifest['sources'][0]['files'])} files, {f['documents_in']} documents, "
        f"{f['exact_duplicates']} exact + {f['near_duplicates']} near duplicates dropped, "
        f"{data['train_tokens']:,} train / {data['val_tokens']:,} val tokens (BPE "
        f"{tok.vocab_size}; tokenizer + shards in {data['seconds']:.1f}s)"
    )
    val_loss = result.metrics["val_loss"]

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
        "steps": result.step,
        "run_seconds": round(t_run, 1),
        "train_tokens": data["train_tokens"],
        "val_tokens": data["val_tokens"],
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
        f"{result.step} steps, run {t_run:.0f}s; val loss {val_loss:.3f} nats/token; "
        f"samples that parse: {strict}/{n} whole, {trimmed}/{n} without the interrupted last "
        f"statement, {with_code}/{n} whole and with at least one statement (not only comments)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "sample_texts": samples}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    raise SystemExit(main())
