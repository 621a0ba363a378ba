"""The failure-mode catalogue (docs/modules/15-eval.md): 40 probing prompts, labelled answers.

    .venv/bin/python examples/15_failure_modes.py [MODEL ...] [--max-new-tokens 64]
        [--out runs/failure_modes.md] [--smoke]

Each MODEL (a run directory, a run name or ``smollm2``; default: runs/speedrun,
runs/speedrun/sft, runs/speedrun/dpo when present, and smollm2) answers the 40 prompts of
g2c.eval.failures.FAILURE_PROMPTS (adversarial, out-of-distribution, unanswerable,
arithmetic, format-following) greedily, through its chat template when it has one. Every
answer gets a label (fabricated fact, wrong arithmetic, format break, refusal, repetition
loop, empty, off-topic, correct, unlabelled — g2c.eval.failures.label_answer); the script
prints and writes a markdown table of counts with one example per label, and the raw
records next to it as JSON. --smoke: an untrained tiny model, 8 tokens per answer (seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from g2c.artifacts import atomic_write_text
from g2c.eval.failures import FAILURE_PROMPTS, failure_table, run_catalogue
from g2c.eval.generation import model_generator
from g2c.runs.eval import load_evaluated
from g2c.runs.experiment import SMOKE_TEXT
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

torch.set_num_threads(1)
DEFAULT_MODELS = ("runs/speedrun/base", "runs/speedrun/sft", "runs/speedrun/dpo", "smollm2")


def _smoke_generator():
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast(SMOKE_TEXT, 300)
    model = TransformerLM(tok.vocab_size, 16, 1, 2, 128,
                          generator=torch.Generator().manual_seed(0)).eval()  # fmt: skip
    return model_generator(model, tok)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="failure-mode catalogue over models")
    ap.add_argument("models", nargs="*", help="run directories, run names or smollm2")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default="runs/failure_modes.md", help="markdown table to write")
    ap.add_argument("--smoke", action="store_true", help="an untrained tiny model (seconds)")
    args = ap.parse_args(argv)
    records: dict[str, list[dict]] = {}
    if args.smoke:
        records["tiny-untrained"] = run_catalogue(_smoke_generator(), FAILURE_PROMPTS,
                                                  max_new_tokens=8)  # fmt: skip
        out = Path(tempfile.mkdtemp(prefix="g2c-failures-")) / "failure_modes.md"
    else:
        out = Path(args.out)
        for spec in args.models or DEFAULT_MODELS:
            if spec != "smollm2" and "/" in spec and not Path(spec).is_dir():
                print(f"skipping {spec}: no such run directory")
                continue
            try:
                ev = load_evaluated(spec)
            except (FileNotFoundError, ValueError, ImportError) as exc:
                print(f"skipping {spec}: {exc}")
                continue
            t0 = time.perf_counter()
            gen = model_generator(ev.model, ev.tokenizer, ev.template)
            records[spec] = run_catalogue(gen, FAILURE_PROMPTS, max_new_tokens=args.max_new_tokens)
            print(f"{spec}: {len(records[spec])} answers in {time.perf_counter() - t0:.1f} s")
    if not records:
        print("no model could be loaded; pass MODEL arguments")
        return 1
    table = failure_table(records)
    print(table)
    atomic_write_text(out, "# Failure modes\n\n" + table)
    atomic_write_text(out.with_suffix(".json"), json.dumps(records, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
