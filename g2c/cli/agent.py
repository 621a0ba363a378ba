"""`g2c agent run "task" --model MODEL` — a ReAct agent with tools; `g2c agent show TRACE`.

    g2c agent run "What is 4821*37?" --model smollm2
    g2c agent run "Sum numbers.txt into total.txt" --model smollm2 --tools read_file,calculator,write_file --root work/
    g2c agent run "When was X built?" --model http://localhost:8000/v1#g2c --tools web_search --corpus docs/
    g2c agent run "..." --model http://localhost:11434#llama3.2 --native   # native tool calls
    g2c agent show runs/agent/trace-....jsonl

--model: ``smollm2``, a run or model directory (g2c's engine), ``http://HOST:PORT/v1#MODEL``
(any OpenAI-compatible server, ``g2c serve`` included) or ``http://HOST:11434#MODEL`` (Ollama).
web_search searches ``--corpus DIR`` (the .txt/.md files in it, BM25 in memory) or ``--index
FILE`` (a ``g2c rag index`` database, BM25), else it is a stub that says so. Every run writes a
JSON-lines trace (``--trace FILE``, default ``$G2C_HOME/agent/trace-<time>.jsonl``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from rich.panel import Panel
from rich.table import Table

from g2c.cli._common import console, set_threads

DEFAULT_TOOLS = "calculator"


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `agent` sub-command (run, show)."""
    p = sub.add_parser("agent", help="run a tool-using agent on a task; show its trace",
                       description="ReAct agent (Thought / Action / Observation / Final Answer) "
                       "over g2c's tools, with loop detection, argument recovery, a bounded "
                       "scratchpad and a JSON-lines trace of every step.")  # fmt: skip
    actions = p.add_subparsers(dest="agent_command", metavar="ACTION")
    run_p = actions.add_parser("run", help="run the agent on a task")
    run_p.add_argument("task", help="the task, in words")
    run_p.add_argument(
        "--model",
        required=True,
        help="smollm2, a model/run dir, or http://URL#MODEL (OpenAI / Ollama)",
    )
    run_p.add_argument("--tools", default=DEFAULT_TOOLS,
                       help="comma-separated: calculator, read_file, list_dir, write_file, "
                       "run_python, web_search (default: calculator)")  # fmt: skip
    run_p.add_argument("--root", default=None, help="folder the file tools and run_python use")
    run_p.add_argument("--corpus", default=None, help="folder of .txt/.md files for web_search")
    run_p.add_argument("--index", default=None, help="g2c rag index file for web_search")
    run_p.add_argument("--trace", default=None, help="trace file (JSON lines) to write")
    run_p.add_argument(
        "--native",
        action="store_true",
        help="native tool calls (chat_with_tools) instead of ReAct text",
    )
    run_p.add_argument("--max-steps", type=int, default=8)
    run_p.add_argument("--no-plan", action="store_true", help="skip the planning turn")
    run_p.add_argument("--max-new-tokens", type=int, default=192)
    run_p.add_argument("--max-seconds", type=float, default=None, help="time budget of the run")
    run_p.add_argument("--max-tokens", type=int, default=None, help="token budget of the run")
    run_p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run_p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    run_p.set_defaults(func=run)
    show_p = actions.add_parser("show", help="render a trace file")
    show_p.add_argument("trace", help="a trace file written by `g2c agent run`")
    show_p.add_argument("--full", action="store_true", help="do not shorten long texts")
    show_p.set_defaults(func=show)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _search(args: argparse.Namespace):
    tools = importlib.import_module("g2c.tools")
    if args.corpus:
        folder = Path(args.corpus)
        if not folder.is_dir():
            raise ValueError(f"--corpus must be a folder, got {args.corpus!r}")
        docs = {str(p.relative_to(folder)): p.read_text(encoding="utf-8", errors="replace")
                for p in sorted(folder.rglob("*")) if p.suffix in (".txt", ".md")}  # fmt: skip
        if not docs:
            raise ValueError(f"--corpus {args.corpus!r} has no .txt or .md files")
        return tools.keyword_search(docs)
    if args.index:
        try:
            rag = importlib.import_module("g2c.rag")
        except ImportError as e:
            raise ValueError(f"--index needs g2c.rag: {e}") from None
        if not Path(args.index).is_file():
            raise ValueError(f"--index {args.index!r} does not exist (build it with g2c rag index)")
        return rag.make_search(rag.SQLiteIndex(args.index), mode="bm25")
    return None


def run(args: argparse.Namespace) -> int:
    """Build the tools and the backend, run the agent, print the steps and the answer."""
    tools = importlib.import_module("g2c.tools")
    agent_mod = importlib.import_module("g2c.agent")
    artifacts = importlib.import_module("g2c.artifacts")
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    if args.root is not None and not Path(args.root).is_dir():
        raise ValueError(f"--root must be an existing folder, got {args.root!r}")
    registry = tools.ToolRegistry(tools.default_registry_tools(
        names, root=args.root, search=_search(args)))  # fmt: skip
    trace = (
        Path(args.trace)
        if args.trace
        else (artifacts.g2c_home() / "agent" / f"trace-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    )
    cls = agent_mod.NativeAgent if args.native else agent_mod.Agent
    kwargs = dict(max_steps=args.max_steps, plan=not args.no_plan,
                  max_new_tokens=args.max_new_tokens, max_seconds=args.max_seconds,
                  max_tokens=args.max_tokens, trace_path=trace)  # fmt: skip
    if args.native:
        kwargs.pop("plan")
    agent = cls(_NotLoaded(), registry, **kwargs)  # every setting checked before the model loads
    set_threads(args.threads)
    backend = agent.backend = tools.open_backend(args.model)
    console.print(f"[bold]agent[/] {backend.info.name}:{backend.info.model_id}  tools: "
                  f"{', '.join(registry.names)}")  # fmt: skip
    result = agent.run(args.task)
    _print_records(agent_mod.load_trace(result.metadata["trace"]), full=False)
    return 0 if result.stopped_reason == "final_answer" else 1


class _NotLoaded:
    """Stands in for the backend while the agent's settings are checked."""

    def chat(self, *args, **kwargs):  # pragma: no cover - replaced before any run
        raise RuntimeError("the model is not loaded yet")


def _short(text: str, full: bool, limit: int = 600) -> str:
    text = str(text or "")
    return text if full or len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more]"


def _print_records(records: list[dict], full: bool) -> None:
    for rec in records:
        kind = rec.get("type")
        if kind == "run_start":
            table = Table(show_header=False, box=None)
            for key in ("task", "agent", "backend", "model", "tools", "max_steps", "plan",
                        "loop_detection", "recover_arguments", "no_progress_steps",
                        "scratchpad_chars"):  # fmt: skip
                if key in rec:
                    table.add_row(key, _short(json.dumps(rec[key]) if not isinstance(
                        rec[key], str) else rec[key], full))  # fmt: skip
            console.print(Panel(table, title="run", border_style="blue"))
        elif kind == "plan":
            body = "\n".join(f"{n}. {s}" for n, s in enumerate(rec.get("steps") or [], 1))
            console.print(Panel(body or rec.get("error", "(no plan)"), title="plan",
                                border_style="cyan"))  # fmt: skip
        elif kind == "step":
            lines = [
                f"[dim]prompt {rec.get('prompt_chars', '?')} chars / "
                f"{rec.get('prompt_tokens', '?')} tokens, completion "
                f"{rec.get('completion_tokens', '?')} tokens, {rec.get('seconds', '?')} s[/]"
            ]
            if rec.get("error"):
                lines.append(f"[red]backend error:[/] {rec['error']}")
            if rec.get("model_output") is not None:
                lines.append("[bold]model:[/] " + _short(rec["model_output"], full).strip())
            if rec.get("parse_error"):
                lines.append(f"[yellow]parse:[/] {rec['parse_error']}")
            if rec.get("action"):
                lines.append(f"[bold]action:[/] {rec['action']['tool']} "
                             f"{json.dumps(rec['action']['arguments'])}")  # fmt: skip
            obs = rec.get("observation")
            if obs:
                style = "red" if obs.get("is_error") else "green"
                guard = f" (guard: {obs['guard']})" if obs.get("guard") else ""
                lines.append(f"[{style}]observation{guard}:[/] " + _short(obs["output"], full))
            if rec.get("final_answer") is not None:
                lines.append(f"[bold green]final answer:[/] {rec['final_answer']}")
            console.print(Panel("\n".join(lines), title=f"step {rec.get('index')}",
                                border_style="white"))  # fmt: skip
        elif kind == "run_end":
            console.print(f"[bold]stopped:[/] {rec.get('stopped_reason')}  steps "
                          f"{rec.get('steps')}  {rec.get('seconds')} s  tokens "
                          f"{rec.get('tokens')}  guards {rec.get('guards') or {}}")  # fmt: skip
            if rec.get("final_answer"):
                console.print(f"[bold green]answer:[/] {rec['final_answer']}")


def show(args: argparse.Namespace) -> int:
    """Render a trace file."""
    agent_mod = importlib.import_module("g2c.agent")
    try:
        records = agent_mod.load_trace(args.trace)
    except agent_mod.AgentError as e:
        raise ValueError(str(e)) from None
    _print_records(records, args.full)
    return 0
