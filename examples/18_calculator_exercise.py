"""Module 18's measurements: valid tool calls with and without constrained decoding, and the
course exercise — multi-digit arithmetic with and without the calculator.

    .venv/bin/python examples/18_calculator_exercise.py [--model smollm2] [--n 100]
        [--part all|validity|arithmetic] [--threads 1] [--out runs/tools] [--smoke]

--model: ``smollm2`` (default), a run or model directory (g2c's engine), or an endpoint:
``http://localhost:8000/v1#MODEL`` (OpenAI-compatible, e.g. ``g2c serve``) or
``http://localhost:11434#MODEL`` (Ollama).

validity: the 20 fixed prompts of g2c.tools.TOOL_CALL_PROMPTS (each needs a call to one of
calculator / web_search / read_file / write_file), greedy; "plain" = the tools described in the
system prompt + ordinary decoding + parse_tool_calls; "constrained" = chat_with_tools (g2c's
engine decodes under the tools' JSON schemas; the model may still answer in text);
"required" = a call is forced. A call is valid when it parses, names a real tool and its
arguments pass jsonschema.

arithmetic: --n generated questions (g2c.tools.arithmetic_questions, seed 0); "alone" = one chat
turn; "calculator" = run_with_tools with the calculator (on g2c's engine the first turn must
call it). Prints tables and writes results.json (with every reply) under --out.
--smoke: an untrained tiny byte-level model, 2 prompts and 2 questions (seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from g2c.artifacts import atomic_write_json
from g2c.inference import LocalTransformerBackend
from g2c.sft import ChatTemplate
from g2c.tokenizer import BPETokenizer
from g2c.tools import (
    TOOL_CALL_PROMPTS,
    ToolRegistry,
    arithmetic_accuracy,
    arithmetic_questions,
    keyword_search,
    make_calculator,
    make_read_file,
    make_web_search,
    make_write_file,
    open_backend,
    tool_call_validity,
)
from g2c.transformer import TransformerLM


def _smoke_backend() -> LocalTransformerBackend:
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(len(tok.vocab), 16, 1, 2, 4096, positional="rope",
                          generator=torch.Generator().manual_seed(0)).eval()  # fmt: skip
    return LocalTransformerBackend(model, tok, chat_template=ChatTemplate(), model_id="tiny")


def _registry(root: Path) -> ToolRegistry:
    search = keyword_search({"water.txt": "Water boils at 100 degrees Celsius at sea level."})
    return ToolRegistry([make_calculator(), make_web_search(search), make_read_file(root),
                         make_write_file(root)])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="valid-call rate and the calculator exercise")
    ap.add_argument("--model", default="smollm2", help="smollm2, a model dir, or http://URL#MODEL")
    ap.add_argument("--n", type=int, default=100, help="arithmetic questions (default 100)")
    ap.add_argument("--part", default="all", choices=("all", "validity", "arithmetic"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--out", default="runs/tools", help="folder for results.json")
    ap.add_argument("--smoke", action="store_true", help="an untrained tiny model (seconds)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        backend, prompts, n, out = _smoke_backend(), TOOL_CALL_PROMPTS[::10], 2, None
    else:
        backend, prompts, n, out = open_backend(args.model), TOOL_CALL_PROMPTS, args.n, args.out
    out = Path(out or tempfile.mkdtemp(prefix="g2c-tools-"))
    results: dict = {"model": backend.info.model_id, "backend": backend.info.name}
    with tempfile.TemporaryDirectory() as root:
        registry = _registry(Path(root))
        if args.part in ("all", "validity"):
            print(f"valid tool calls on {len(prompts)} prompts ({backend.info.model_id})")
            print(f"{'mode':12s} {'parsed':>7s} {'valid':>7s} {'right tool':>11s} {'s':>7s}")
            modes = ["plain", "constrained"]  # constrained = the backend's native tool calls
            if isinstance(backend, LocalTransformerBackend):
                modes.append("required")
            for mode in modes:
                r = tool_call_validity(backend, registry, prompts, mode=mode,
                                       max_new_tokens=160)  # fmt: skip
                print(f"{mode:12s} {r.parsed:4d}/{r.n:<2d} {r.valid:4d}/{r.n:<2d} "
                      f"{r.right_tool:8d}/{r.n:<2d} {r.seconds:7.1f}", flush=True)  # fmt: skip
                results[f"validity_{mode}"] = {k: v for k, v in vars(r).items()}
        if args.part in ("all", "arithmetic"):
            questions = arithmetic_questions(n, seed=0)
            calc = ToolRegistry([make_calculator()])
            print(f"\narithmetic: {n} questions ({backend.info.model_id})")
            print(f"{'mode':12s} {'correct':>9s} {'accuracy':>9s} {'calls':>6s} {'s':>7s}")
            # 32 tokens hold any answer's first line; a forced calculator call needs ~75
            for mode, reg, budget in (("alone", None, 32), ("calculator", calc, 80)):
                t0 = time.perf_counter()
                r = arithmetic_accuracy(backend, questions, registry=reg, max_new_tokens=budget)
                print(f"{mode:12s} {r.correct:5d}/{r.n:<3d} {r.accuracy:9.2f} {r.tool_calls:6d} "
                      f"{time.perf_counter() - t0:7.1f}", flush=True)  # fmt: skip
                results[f"arithmetic_{mode}"] = {k: v for k, v in vars(r).items()}
    atomic_write_json(out / "results.json", json.loads(json.dumps(results, default=str)))
    print(f"\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
