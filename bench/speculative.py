"""Speculative decoding benchmark: speed-up over plain decoding, with acceptance rates.

SmolLM2-135M-Instruct (``load_model("smollm2")``, fp32) is the target. Drafters: its int8 copy
and its int4 copy (``quantize_model``), and prompt lookup (no draft model; n-gram copy from the
prompt). Two prompts, each with the chat template: one that asks to repeat a passage (lookup
shines: the answer copies the prompt) and one open question. Greedy (temperature 0), so every
speculative run must return exactly the plain tokens (checked). Plain decoding is
``g2c.sampling.generate`` with its KV cache. 1 thread, median of repeats.

Writes bench/results/speculative.json and prints a table.
Usage: .venv/bin/python bench/speculative.py [--quick] [--new-tokens 96] [--k 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.inference.quant import quantize_model
from g2c.inference.speculative import PromptLookup, speculative_generate
from g2c.sampling import generate
from g2c.sft import JinjaChatTemplate
from g2c.transformer import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "speculative.json"
PASSAGE = (
    "The sea was calm that morning. Fishing boats left the harbour one by one, their engines "
    "humming softly, while gulls circled above the old stone pier. By noon the wind had turned, "
    "and the first grey clouds gathered over the hills to the west."
)
PROMPTS = {
    "repeat": f"Repeat the following passage word for word:\n\n{PASSAGE}",
    "open": "Explain in a few sentences why the sky is blue.",
}


def _median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="48 tokens, 1 repeat")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--k", type=int, default=4, help="draft tokens per round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.new_tokens, args.repeats = 48, 1
    torch.set_num_threads(1)
    loaded = load_model("smollm2")
    target, tok = loaded.model.eval(), loaded.tokenizer
    drafts = {
        "int8 copy": quantize_model(target, "int8"),
        "int4 copy": quantize_model(target, "int4", 32),
        "prompt lookup": PromptLookup(max_ngram=3),
    }
    rows = []
    for pname, text in PROMPTS.items():
        prompt = _chat_ids(loaded, tok, text)

        t_plain, ref = _median_time(
            lambda p=prompt, n=args.new_tokens: generate(target, p, n, temperature=0), args.repeats
        )
        rows.append({"prompt": pname, "drafter": "none (plain)", "k": 0,
                     "tok_s": round(args.new_tokens / t_plain, 1), "speedup": 1.0, "acceptance": None,
                     "tokens_per_target_forward": 1.0, "identical": True})  # fmt: skip
        for dname, draft in drafts.items():
            t, r = _median_time(
                lambda p=prompt, d=draft, n=args.new_tokens: speculative_generate(
                    target, p, n, draft=d, num_draft_tokens=args.k, temperature=0
                ),
                args.repeats,
            )
            rows.append(
                {
                    "prompt": pname,
                    "drafter": dname,
                    "k": args.k,
                    "tok_s": round(r.new_tokens / t, 1),
                    "speedup": round(t_plain / t * r.new_tokens / args.new_tokens, 2),
                    "acceptance": round(r.acceptance_rate, 3),
                    "tokens_per_target_forward": round(r.tokens_per_target_forward, 2),
                    "identical": bool(torch.equal(r.tokens, ref)),
                }
            )
            print(rows[-1], flush=True)
    table = Table(title=f"SmolLM2-135M greedy, {args.new_tokens} new tokens, 1 thread")
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    Console(width=200).print(table)
    atomic_write_json(
        Path(args.out),
        {
            "torch": torch.__version__,
            "threads": 1,
            "quick": args.quick,
            "note": "shared, loaded machine: --quick numbers only; re-measure on a quiet machine",
            "new_tokens": args.new_tokens,
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")
    return 0


def _chat_ids(loaded, tok, text: str) -> list[int]:
    """The prompt as one user turn of the model's own chat template (the GGUF's Jinja)."""
    info = loaded.chat_info
    if info is None or not info.template:
        return tok.encode(text)
    tmpl = JinjaChatTemplate(info.template, special_tokens=info.special_tokens,
                             bos_token=info.bos_token, eos_token=info.eos_token)  # fmt: skip
    rendered = tmpl.render([{"role": "user", "content": text}], add_generation_prompt=True)
    return tok.encode(rendered, allowed_special="all")


if __name__ == "__main__":
    raise SystemExit(main())
