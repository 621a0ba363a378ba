"""`g2c eval MODEL --tasks ...` — evaluate a model on benchmarks, write results, check a gate.

    g2c eval smollm2 --tasks openbookqa,arc_easy --limit 100          # log-likelihood MC
    g2c eval runs/speedrun/sft --tasks g2c_tasks,gsm8k --limit 50     # generation tasks
    g2c eval smollm2 --tasks humaneval --limit 20                     # code, run in a sandbox
    g2c eval runs/sft --tasks openbookqa,g2c_tasks --gate gate.toml   # exit 1 below the gate
    g2c eval runs/speedrun --tasks perplexity --limit 20              # bits per byte, held out
    g2c eval smollm2 --tasks refusal,alpaca_eval --limit 20           # safety, judged win rate
    g2c eval runs/sft --tasks alpaca_eval --judge smollm2 --limit 20  # another model judges
    g2c eval smollm2 --tasks assistant --gate g2c/assistant/gate_smollm2.json  # the assistant
    g2c eval http://127.0.0.1:8000/v1 --tasks assistant               # ... on any endpoint
    g2c eval --list                                                   # the known tasks

MODEL is a run directory (``g2c train`` / ``speedrun`` / ``sft`` / ``dpo``, a LoRA run), a run
name under ``$G2C_HOME`` or ``smollm2``. Results go to ``--out`` (default ``MODEL/eval`` for a
run directory, ``$G2C_HOME/eval/<name>`` otherwise): ``results.json`` (per task: metrics,
prompt format, per-example records), ``records.jsonl`` (appended as each example finishes),
``report.md``, ``reliability_<task>.png`` for multiple-choice tasks. Running the same command
again resumes: finished examples are read back, not recomputed (Ctrl-C stops cleanly);
``--fresh`` starts over. ``--gate FILE`` (TOML, ``[task]`` tables of ``metric = minimum``)
exits with status 1 listing every metric below its minimum (lower-is-better metrics such as
``bits_per_byte`` take ``metric = {max = X}``).

``--tasks assistant`` runs the assistant evaluation (:mod:`g2c.assistant.evaluation`: 38
checked conversations — memory, RAG with citations, grounding, each tool, the calculator,
file tasks, refusals, context overflow, formats) against MODEL, which may also be an endpoint
(``http(s)://HOST:PORT/v1[#MODEL]``, ``ollama:NAME``): a table per category, and with
``--out`` ``assistant.json`` (every turn) and ``assistant.md``. Its gate metrics are
``pass_rate``, ``passed`` and each category's pass rate (``[assistant]`` / ``memory = 0.6``);
a gate file may be TOML or JSON (the packaged ``g2c/assistant/gate_smollm2.json``).
``--limit N`` runs the first N cases; ``--max-new-tokens`` sets the answers' budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from g2c.artifacts import atomic_write_text
from g2c.assistant import evaluation as assistant_eval
from g2c.cli._common import console, err_console, make_progress, set_threads
from g2c.cli._run import StopControl, command_line, stop_on_signals
from g2c.runs import eval as eval_stage

#: The task name that runs the assistant evaluation instead of a benchmark.
ASSISTANT = assistant_eval.TASK


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `eval` sub-command."""
    p = sub.add_parser(
        "eval", help="evaluate a model on benchmarks (accuracy, calibration, a gate)",
        description="Evaluate MODEL on --tasks: multiple choice by log-likelihood (acc, "
        "acc_norm, ECE), generation scored by programs (GSM8K, the g2c task family, "
        "IFEval-style instructions, HumanEval in a sandbox, refusals, AlpacaEval judged pairwise), "
        "perplexity / bits per byte on held-out text. Writes results.json, records.jsonl, "
        "report.md and reliability diagrams; a rerun resumes.",
    )  # fmt: skip
    p.add_argument("model", nargs="?",
                   help="run directory, run name, or smollm2 (--tasks assistant: also an "
                   "endpoint, http://HOST:PORT/v1 or ollama:NAME)")  # fmt: skip
    p.add_argument("--tasks", default=None,
                   help="comma-separated task names (g2c eval --list shows them)")  # fmt: skip
    p.add_argument(
        "--limit", type=int, default=None, help="first N examples per task (default: all)"
    )
    p.add_argument("--shots", type=int, default=0,
                   help="in-context examples for tasks that take them (default: 0)")  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="token budget of every generation task (default: each task's)")  # fmt: skip
    p.add_argument("--judge", default=None,
                   help="MODEL judging alpaca_eval (default: the evaluated model)")  # fmt: skip
    p.add_argument("--gate", default=None, help="TOML file of minimums; exit 1 when one fails")
    p.add_argument("--out", default=None, help="results directory (default: MODEL/eval)")
    p.add_argument("--fresh", action="store_true", help="delete earlier results in --out first")
    p.add_argument("--seed", type=int, default=1234, help="seed for the shots (default: 1234)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps (default: cpu)")
    p.add_argument("--no-batch", action="store_true",
                   help="multiple choice on the per-choice reference path")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--list", action="store_true", help="list the known tasks and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--stop-after-examples", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


class EvalProgress:
    """``on_event`` for the stage: one progress bar per task (plain lines when piped)."""

    def __init__(self) -> None:
        self.progress = make_progress()
        self.bars: dict[str, int] = {}
        self.started = False

    def __call__(self, kind: str, info: dict) -> None:
        if kind == "task":
            if not self.started:
                self.progress.start()
                self.started = True
            self.bars[info["name"]] = self.progress.add_task(
                info["name"], total=info["total"], completed=info["done"], info=info["kind"]
            )
        elif kind == "example" and info["task"] in self.bars:
            self.progress.update(self.bars[info["task"]], completed=info["done"])

    def stop(self) -> None:
        """Close the bars."""
        if self.started:
            self.progress.stop()


def _print_results(result: eval_stage.EvalRunResult) -> None:
    table = Table(title=f"evaluation ({result.status})")
    for col in ("task", "n", "metrics"):
        table.add_column(col)
    for task, r in result.results.items():
        m = r["metrics"]
        shown = ", ".join(f"{k}={v:.3f}" for k, v in m.items()
                          if k not in ("n", "accuracy", "mean_confidence"))  # fmt: skip
        table.add_row(task, str(r["n"]), shown)
    console.print(table)
    console.print(f"results: {result.out / eval_stage.RESULTS}")


def run(args: argparse.Namespace) -> int:
    """Validate, evaluate with progress bars, print the table, apply the gate."""
    if args.list:
        for name in eval_stage.known_tasks():
            lower = eval_stage.task_lower_is_better(name)
            gated = ", ".join(f"{m} (max)" if m in lower else m
                              for m in eval_stage.task_metric_names(name))  # fmt: skip
            console.print(f"{name:16s} gate metrics: {gated}")
        console.print(f"{ASSISTANT:16s} gate metrics: "
                      f"{', '.join(assistant_eval.known_metrics())}")  # fmt: skip
        return 0
    if not args.model:
        raise ValueError("MODEL is required (a run directory, a run name, or smollm2)")
    if not args.tasks:
        raise ValueError(f"--tasks is required; known tasks: "
                         f"{', '.join([*eval_stage.known_tasks(), ASSISTANT])}")  # fmt: skip
    tasks = eval_stage.parse_tasks(args.tasks)
    if ASSISTANT not in tasks:
        code, _ = _run_stage(args, tasks, gate=args.gate)
        return code
    return _run_with_assistant(args, tasks)


def _stage_config(args: argparse.Namespace, tasks: list[str]) -> eval_stage.EvalConfig:
    try:
        return eval_stage.EvalConfig(
            model=args.model, tasks=tasks, limit=args.limit,
            shots=args.shots, seed=args.seed, max_new_tokens=args.max_new_tokens,
            batched=not args.no_batch, device=args.device, judge=args.judge,
        )  # fmt: skip
    except ValueError as e:
        if "unknown task" in str(e):  # the assistant task is known here too
            raise ValueError(f"{e}, {ASSISTANT}") from None
        raise


def _run_stage(
    args: argparse.Namespace, tasks: list[str], *, gate: str | None
) -> tuple[int, eval_stage.EvalRunResult]:
    """The benchmark tasks through :mod:`g2c.runs.eval`; (exit status, result)."""
    set_threads(args.threads)
    cfg = _stage_config(args, tasks)
    reporter = EvalProgress()
    try:
        with stop_on_signals() as stopped:
            result = eval_stage.run(
                cfg, args.out, gate=gate, fresh=args.fresh, on_event=reporter,
                control=StopControl(stopped, args.stop_after_examples), command=command_line(),
            )  # fmt: skip
    finally:
        reporter.stop()
    _print_results(result)
    if result.status != "complete":
        err_console.print("[yellow]interrupted: run the same command again to resume")
        return 130, result
    if result.gate_failures:
        err_console.print(f"[red]gate {gate} failed:")
        for f in result.gate_failures:
            err_console.print(f"  {f}")
        return 1, result
    if result.gate_failures is not None:
        console.print(f"gate {gate}: passed")
    return 0, result


def _run_with_assistant(args: argparse.Namespace, tasks: list[str]) -> int:
    """``--tasks`` with ``assistant`` (and maybe benchmarks): everything is checked first (the
    other tasks' names, the gate file against every task's metrics), then the benchmarks run,
    then the assistant cases; the gate is applied to all metrics together."""
    others = [t for t in tasks if t != ASSISTANT]
    if len(others) != len(tasks) - 1:
        raise ValueError(f"--tasks names {ASSISTANT} twice")
    if args.limit is not None and (isinstance(args.limit, bool) or args.limit < 1):
        raise ValueError(f"--limit must be an integer >= 1, got {args.limit}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be an integer >= 1, got {args.max_new_tokens}")
    if others:
        _stage_config(args, others)  # unknown task names → ValueError before any work
    cases = assistant_eval.assistant_cases()[: args.limit]
    known = {ASSISTANT: assistant_eval.known_metrics(cases)}
    known.update({t: eval_stage.task_metric_names(t) for t in others})
    lower = {t: eval_stage.task_lower_is_better(t) for t in others}
    if args.gate:
        assistant_eval.read_gate(args.gate, known, lower_is_better=lower)
    metrics: dict[str, dict[str, float]] = {}
    if others:
        code, result = _run_stage(args, others, gate=None)
        if code:
            return code
        metrics.update({t: r["metrics"] for t, r in result.results.items()})
    report = _run_assistant(args, cases)
    metrics[ASSISTANT] = report.metrics()
    if not args.gate:
        return 0
    failures = assistant_eval.check_metrics(metrics, args.gate, lower_is_better=lower)
    if failures:
        err_console.print(f"[red]gate {args.gate} failed:")
        for f in failures:
            err_console.print(f"  {f}")
        return 1
    console.print(f"gate {args.gate}: passed")
    return 0


def _run_assistant(args: argparse.Namespace, cases: list) -> assistant_eval.EvalReport:
    """The assistant cases against MODEL: one line per case, the table, files with --out."""
    set_threads(args.threads)
    config = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    console.print(f"assistant: {len(cases)} cases on {args.model}")
    make = assistant_eval.assistant_factory(args.model, config=config, device=args.device)

    def show(r: assistant_eval.EvalCaseResult) -> None:
        mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        console.print(f"  {mark} {r.category:10s} {r.name:24s} {r.seconds:6.1f}s  "
                      f"{escape(r.detail)}", soft_wrap=True)  # fmt: skip

    out = Path(args.out) if args.out else None
    report = assistant_eval.run_evaluation(
        make, cases, on_result=show, workdir=out / "assistant_cases" if out else None
    )
    table = Table(title=f"assistant on {args.model} ({report.seconds:.0f} s)")
    for col in ("category", "passed", "cases", "pass rate"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, v in report.by_category.items():
        table.add_row(cat, str(v["passed"]), str(v["n"]), f"{v['pass_rate']:.2f}")
    table.add_row("all", str(report.passed), str(report.n), f"{report.pass_rate:.2f}")
    console.print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "assistant.json", json.dumps(report.to_dict(), indent=1))
        lines = [f"# assistant evaluation: {args.model}", "", report.table(), "",
                 "| case | category | passed | seconds | detail |", "|---|---|---|---:|---|"]  # fmt: skip
        lines += [f"| {r.name} | {r.category} | {'yes' if r.passed else 'no'} | "
                  f"{r.seconds:.1f} | {r.detail.replace('|', '/')} |" for r in report.results]  # fmt: skip
        atomic_write_text(out / "assistant.md", "\n".join(lines) + "\n")
        console.print(f"results: {out / 'assistant.json'}")
    return report
