"""Constrained-decoding benchmark: per-token decode time unconstrained vs constrained, old path
(``method="scan"``: every token stepped per new automaton state, memo per request) vs new
(``method="trie"``: the vocabulary trie, masks shared across requests).

SmolLM2-135M-Instruct (``load_model("smollm2")``, fp32, 49,152 tokens) on g2c's engine, greedy,
the tool-calling prompt that ``LocalTransformerBackend.chat_with_tools`` builds (tool list in
the system turn). Phases:

- **free text**: tools offered (``ToolCallConstraint``, tool_choice "auto"), the model answers in
  text — the constraint is consulted until the reply cannot be ``<tool_call>`` any more;
- **tool call**: tool_choice "required", "What is 17*23? use the calculator" — every token of the
  call is masked; the row's ``latency_ms`` is the forced call's latency (prefill included).
  "trie, cold" starts from an empty vocabulary index (trie built and timed separately);
  "trie, warm" repeats the call (the next request of the same tools, e.g. the next eval case).

The unconstrained rows decode the same prompt for as many tokens with no constraint. Ratios are
constrained ÷ unconstrained ms/token (decode: time after the first token ÷ tokens after it);
``constraint_ms_per_token`` is the time inside the constraint's ``allowed``/``advance`` alone
(the first mask included), so ``overhead`` = 1 + that ÷ the unconstrained decode ms/token is
the ratio with the machine's load noise taken out.
No other library is compared: outlines / lm-format-enforcer are not installed here (the same
trie-walk idea underlies both).

Writes bench/results/constrained.json and prints a table.
Usage: .venv/bin/python bench/constrained.py [--quick] [--threads 1] [--new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.inference import LocalTransformerBackend, Request
from g2c.inference._vocab_trie import clear_vocab_indexes, vocab_index
from g2c.inference.backends import TOOL_PROMPT
from g2c.inference.constrained import ToolCallConstraint
from g2c.transformer import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "constrained.json"
CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression exactly, e.g. 1234*5678",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}  # fmt: skip
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                   "unit": {"enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}},
                   "required": ["city", "unit", "days"]}}}  # fmt: skip
TOOLS = [CALCULATOR, WEATHER]
CALL_PROMPT = "What is 17*23? use the calculator"
TEXT_PROMPT = "Write two sentences about the sea."


def _prompt_ids(backend: LocalTransformerBackend, question: str) -> list[int]:
    """The prompt ``chat_with_tools`` sends: the tool list in a system turn, then the question."""
    listing = "\n".join(json.dumps({k: t["function"].get(k) for k in ("name", "description",
                                    "parameters")}) for t in TOOLS)  # fmt: skip
    return backend._chat_ids([{"role": "system", "content": TOOL_PROMPT.format(functions=listing)},
                              {"role": "user", "content": question}])  # fmt: skip


class Timed:
    """Wraps a constraint and adds up the seconds spent in ``allowed`` and ``advance`` — the
    constraint's own cost per token, which a loaded machine inflates less than the model's."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds = inner, 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def allowed(self, remaining: int):
        t0 = time.perf_counter()
        out = self.inner.allowed(remaining)
        self.seconds += time.perf_counter() - t0
        return out

    def advance(self, token_id: int) -> None:
        t0 = time.perf_counter()
        self.inner.advance(token_id)
        self.seconds += time.perf_counter() - t0


def _run(engine, ids: list[int], n: int, constraint=None, eos: bool = True) -> dict:
    constraint = None if constraint is None else Timed(constraint)
    t0 = time.perf_counter()
    h = engine.submit(Request(ids, max_new_tokens=n, temperature=0, constraint=constraint,
                              eos_ids=None if eos else []))  # fmt: skip
    h.result()
    k = len(h.token_ids)
    decode = (h.finished_at - h.first_token_at) / max(k - 1, 1)
    return {"tokens": k, "ttft_ms": round((h.first_token_at - t0) * 1000, 1),
            "decode_ms_per_token": round(decode * 1000, 2),
            "latency_ms": round((h.finished_at - t0) * 1000, 1),
            "constraint_ms_per_token": round(constraint.seconds * 1000 / k, 2) if constraint else 0.0,
            "text": h.text}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="24 free-text tokens, no repeats")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=48, help="free-text tokens")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.new_tokens = 24
    torch.set_num_threads(args.threads)
    backend = LocalTransformerBackend.from_loaded(load_model("smollm2"))
    engine = backend.engine
    vb = engine.vocab_bytes()
    call_ids, text_ids = _prompt_ids(backend, CALL_PROMPT), _prompt_ids(backend, TEXT_PROMPT)
    _run(engine, text_ids, 4)  # warm-up
    rows = []

    def add(phase, method, r, base=None):
        b = (base or r)["decode_ms_per_token"]
        ratio = round(r["decode_ms_per_token"] / b, 2)
        overhead = round(1 + r["constraint_ms_per_token"] / b, 3)
        rows.append({"phase": phase, "method": method, **{k: v for k, v in r.items()
                     if k != "text"}, "ratio": ratio, "overhead": overhead,
                     "text": r["text"][:60]})  # fmt: skip
        print(rows[-1], flush=True)

    free_base = _run(engine, text_ids, args.new_tokens, eos=False)
    add("free text", "unconstrained", free_base)
    for method in ("scan", "trie"):
        c = ToolCallConstraint(TOOLS, vb, method=method)
        add("free text", method, _run(engine, text_ids, args.new_tokens, c, eos=False), free_base)

    clear_vocab_indexes()
    t0 = time.perf_counter()
    vocab_index(vb)
    build_s = time.perf_counter() - t0
    clear_vocab_indexes()
    calls = {}
    for label, method in (("scan", "scan"), ("trie, cold", "trie"), ("trie, warm", "trie")):
        c = ToolCallConstraint(TOOLS, vb, required=True, method=method)
        calls[label] = _run(engine, call_ids, 160, c)
    n_call = calls["trie, warm"]["tokens"]
    call_base = _run(engine, call_ids, n_call, eos=False)
    add("tool call", "unconstrained", call_base)
    for label, r in calls.items():
        add("tool call", label, r, call_base)
    same = len({r["text"] for r in calls.values()}) == 1

    table = Table(title=f"SmolLM2-135M constrained decoding, {args.threads} thread(s), greedy")
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    Console(width=220).print(table)
    print(f"vocabulary trie + index built in {build_s:.2f} s (once per vocabulary); "
          f"scan and trie wrote the same call: {same}")  # fmt: skip
    atomic_write_json(Path(args.out), {
        "torch": torch.__version__, "threads": args.threads, "quick": args.quick,
        "note": "shared, loaded machine (2 cores, other jobs running): --quick numbers only; "
                "re-measure on a quiet machine",
        "index_build_s": round(build_s, 3), "same_call_text": same, "rows": rows,
    })  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
