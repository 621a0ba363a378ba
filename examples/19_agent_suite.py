"""Module 19: the agent task suite (22 tasks checked by code) and the guard exercise.

    .venv/bin/python examples/19_agent_suite.py [--model smollm2] [--native] [--part all|suite|guards]
        [--tasks calc_product,file_total,...] [--max-steps 6] [--threads 1] [--out runs/agent-suite]
        [--smoke]

--model: ``smollm2`` (default; g2c's engine, context 2048), a run or model directory, or any
endpoint: ``http://localhost:8000/v1#MODEL`` (OpenAI-compatible: ``g2c serve``, vLLM,
llama.cpp's server) or ``http://localhost:11434#MODEL`` (Ollama). --native uses the backend's
native tool calls (NativeAgent) instead of ReAct text; --require-first-call forces the first
turn to call a tool (tool_choice="required", g2c's engine).

suite: every task in a fresh temporary folder, greedy decoding, no planning turn; prints
success rate, mean steps, solved per category and failure categories (the stop reason, or
wrong_answer when the final answer fails the checker).
guards (the course exercise): the four failure-mode tasks with one guard off ("before") and
all guards on ("after"): repeated action ↔ loop detection, invalid arguments ↔ argument
validation + recovery message, context overflow ↔ scratchpad bound; counts of repeated steps,
rejected calls, context errors and solved tasks.
Traces go to --out/traces*/<task>.jsonl (g2c agent show FILE), the numbers to --out/results.json.
--smoke: scripted models (the oracle replies and the scripted failure modes; seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from g2c.agent import (
    GUARDS,
    ScriptedBackend,
    build_tasks,
    failure_script,
    guard_ablation,
    run_suite,
)
from g2c.artifacts import atomic_write_json
from g2c.tools import open_backend


def _print_suite(rep, label: str) -> dict:
    print(f"\nsuite ({label}): {sum(o.success for o in rep.outcomes)}/{len(rep.outcomes)} solved"
          f" = {rep.success_rate:.0%}, mean steps {rep.mean_steps:.1f}")  # fmt: skip
    print(f"{'task':20s} {'ok':3s} {'stop':17s} {'steps':>5s}  answer")
    for o in rep.outcomes:
        print(f"{o.name:20s} {'yes' if o.success else 'no':3s} {o.stopped_reason:17s} "
              f"{o.steps:5d}  {' '.join(o.final_answer.split())[:60]}")  # fmt: skip
    cats = rep.by_category()
    print("by category: " + ", ".join(f"{k} {a}/{b}" for k, a, b in
                                      ((k, *v) for k, v in cats.items())))  # fmt: skip
    print("failure categories: " + (", ".join(f"{k} {v}" for k, v in rep.failures().items())
                                    or "none"))  # fmt: skip
    return {"success_rate": rep.success_rate, "mean_steps": rep.mean_steps,
            "by_category": cats, "failures": dict(rep.failures()),
            "outcomes": [vars(o) for o in rep.outcomes]}  # fmt: skip


def _print_guards(table: dict, label: str) -> None:
    print(f"\nguards ({label}): before = that guard off, after = all guards on")
    print(f"{'failure mode':18s} {'guard':40s} {'metric':24s} {'before':>6s} {'after':>6s}")
    metric = {"repeated action": "repeated_steps", "invalid arguments": "invalid_argument_calls",
              "context overflow": "context_errors"}  # fmt: skip
    for mode, row in table.items():
        for m in (metric[mode], "solved", "steps"):
            print(f"{mode:18s} {GUARDS[mode][0]:40s} {m:24s} {row['before'][m]:6d} "
                  f"{row['after'][m]:6d}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="agent task suite and guard ablation")
    ap.add_argument("--model", default="smollm2", help="smollm2, a model dir, or http://URL#MODEL")
    ap.add_argument("--native", action="store_true", help="NativeAgent (native tool calls)")
    ap.add_argument(
        "--require-first-call",
        action="store_true",
        help="with --native: force a call on the first turn (g2c's engine)",
    )
    ap.add_argument("--part", default="all", choices=("all", "suite", "guards"))
    ap.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    ap.add_argument("--max-steps", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/agent-suite")
    ap.add_argument("--smoke", action="store_true", help="scripted models (seconds)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = build_tasks()
    if args.tasks:
        wanted = set(args.tasks.split(","))
        unknown = wanted - {t.name for t in tasks}
        if unknown:
            ap.error(f"unknown tasks: {', '.join(sorted(unknown))}")
        tasks = [t for t in tasks if t.name in wanted]
    tasks = [t.__class__(**{**vars(t), "max_steps": args.max_steps}) for t in tasks]
    failure_tasks = [t for t in tasks if t.failure_mode]
    out = Path(tempfile.mkdtemp(prefix="g2c-agent-suite-") if args.smoke else args.out)
    kw = {"max_new_tokens": args.max_new_tokens, "scratchpad_chars": 3000}
    if args.native and args.require_first_call:
        kw["require_first_call"] = True
    results: dict = {}
    if args.smoke:
        label = "scripted oracle"
        if args.part in ("all", "suite"):
            rep = run_suite(None, tasks, backend_for=lambda t: ScriptedBackend(list(t.oracle)),
                            trace_dir=out / "traces", **kw)  # fmt: skip
            results["suite"] = _print_suite(rep, label)
        if args.part in ("all", "guards"):
            table = guard_ablation(None, failure_tasks, backend_for=lambda t, m: ScriptedBackend(
                failure_script(t, m), context_chars=8000), **kw)  # fmt: skip
            results["guards"] = table
            _print_guards(table, "scripted weak model, context 8000 characters")
    else:
        backend = open_backend(args.model)
        label = f"{backend.info.name}:{Path(backend.info.model_id).name}"
        results["model"] = backend.info.model_id
        if args.part in ("all", "suite"):
            rep = run_suite(
                backend,
                tasks,
                native=args.native,
                trace_dir=out / "traces",
                **kw,
                on_outcome=lambda o: print(
                    f"  {o.name}: {'ok' if o.success else 'x'} ({o.stopped_reason})", flush=True
                ),
            )
            results["suite"] = _print_suite(rep, label)
        if args.part in ("all", "guards") and failure_tasks:
            table = guard_ablation(backend, failure_tasks, native=args.native, **kw)
            results["guards"] = table
            _print_guards(table, label)
    atomic_write_json(out / "results.json", json.loads(json.dumps(results, default=str)))
    print(f"\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
