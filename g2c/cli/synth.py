"""`g2c synth --teacher MODEL --target N --out FILE.jsonl` — synthetic instruction data.

    g2c synth --teacher smollm2 --target 20 --out runs/synth/smollm2.jsonl --threads 1
    g2c synth --teacher runs/speedrun/sft --target 50 --out synth.jsonl
    g2c synth --teacher http://127.0.0.1:8000/v1 --target 200 --out synth.jsonl   # g2c serve
    g2c synth --teacher http://localhost:11434 --teacher-model llama3.2 --target 200 --out s.jsonl

The teacher (g2c's engine on a run directory or ``smollm2``, or an OpenAI- / Ollama-compatible
server) proposes new tasks in the style of the self-instruct seed tasks (or ``--seeds
FILE.jsonl``), answers them, and the funnel keeps pairs that are neither near-duplicates
(word 3-gram Jaccard ≥ ``--threshold`` with a seed or an accepted task) nor bad
(``g2c.synth.validate_pair``). Output: chat JSONL (``{"messages": [user, assistant],
"teacher": ...}`` per line), the funnel next to it (``FILE.funnel.json``) and the rejected
instructions with their reasons (``FILE.rejected.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.table import Table

from g2c.artifacts import atomic_write_json, atomic_write_text
from g2c.cli._common import console, err_console, make_progress, set_threads
from g2c.inference import BackendError
from g2c.synth import (
    APIS,
    load_teacher,
    read_pairs_jsonl,
    seed_tasks,
    synthesize_dataset,
    write_pairs_jsonl,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `synth` sub-command."""
    p = sub.add_parser(
        "synth",
        help="synthetic instruction data from a teacher model (self-instruct)",
        description="A teacher model proposes new tasks from seed tasks and answers them; "
        "near-duplicates and bad pairs are filtered out. Writes chat JSONL and a funnel count.",
    )
    p.add_argument(
        "--teacher",
        required=True,
        help="smollm2, a run directory, or an http(s):// URL of an OpenAI- or "
        "Ollama-compatible server",
    )
    p.add_argument("--target", type=int, required=True, help="pairs wanted")
    p.add_argument("--out", required=True, help="output file (.jsonl)")
    p.add_argument(
        "--seeds",
        default=None,
        help="seed tasks as chat JSONL (default: the 175 self-instruct seeds)",
    )
    p.add_argument("--batch-count", type=int, default=8, help="tasks asked for per round")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.7,
        help="3-gram overlap at or above which a task is a duplicate (default 0.7)",
    )
    p.add_argument(
        "--max-rounds",
        type=int,
        default=None,
        help="instruction prompts at most (default: 4 x target / batch-count + 4)",
    )
    p.add_argument("--max-chars", type=int, default=2000, help="longest text per side")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per teacher call")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.7,
        help="sampling temperature for proposing tasks (answers are greedy)",
    )
    p.add_argument(
        "--api",
        choices=APIS,
        default=None,
        help="protocol of an http teacher (default: ollama on port 11434, else openai)",
    )
    p.add_argument("--teacher-model", default=None, help="model name asked of an http server")
    p.add_argument("--api-key", default=None, help="bearer token for an OpenAI-compatible server")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps for a local teacher")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> int:
    for name in ("target", "batch_count", "max_chars", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name such as synth.jsonl")
    rounds = args.max_rounds
    if rounds is None:
        rounds = 4 * args.target // args.batch_count + 4
    if rounds < 1:
        raise ValueError(f"--max-rounds must be >= 1, got {rounds}")
    return rounds


def run(args: argparse.Namespace) -> int:
    """Validate, load the seeds and the teacher, synthesise with a progress bar, write."""
    max_rounds = _check(args)
    seeds = read_pairs_jsonl(args.seeds) if args.seeds else seed_tasks()
    set_threads(args.threads)
    try:
        teacher = load_teacher(
            args.teacher,
            api=args.api,
            model_id=args.teacher_model,
            api_key=args.api_key,
            device=args.device,
        )
    except BackendError as exc:
        err_console.print(f"g2c synth: error: {exc}")
        return 1
    progress = make_progress()
    bar = progress.add_task("synth", total=args.target, info="")
    counts = {"round": 0, "seen": 0}
    rejected: list[dict] = []
    seen: list[dict] = []

    def on_event(kind: str, info: dict) -> None:
        if kind == "round":
            counts["round"] = info["round"]
        else:
            counts["seen"] += 1
            seen.append(info)
            if info["status"] != "accepted":
                rejected.append(
                    {
                        "round": counts["round"],
                        "status": info["status"],
                        "instruction": info["instruction"],
                        "problems": info["problems"],
                    }
                )
            progress.update(
                bar,
                advance=info["status"] == "accepted",
                info=f"round {counts['round']}, {counts['seen']} proposed",
            )

    t0 = time.perf_counter()
    stopped = None
    try:
        with progress:
            pairs, funnel = synthesize_dataset(
                teacher,
                seeds,
                args.target,
                args.batch_count,
                args.threshold,
                max_rounds=max_rounds,
                seed=args.seed,
                max_chars=args.max_chars,
                temperature=args.temperature,
                max_new_tokens=args.max_new_tokens,
                on_event=on_event,
            )
    except (BackendError, KeyboardInterrupt) as exc:  # keep what was accepted so far
        stopped = exc
        pairs = [r["pair"] for r in seen if r["pair"] is not None]
        funnel = seen[-1]["funnel"] if seen else {}
    seconds = time.perf_counter() - t0
    out = write_pairs_jsonl(args.out, pairs, teacher=teacher.info.model_id)
    stem = out.name.removesuffix(".jsonl")
    funnel_path = out.with_name(stem + ".funnel.json")
    atomic_write_text(
        out.with_name(stem + ".rejected.jsonl"),
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected),
    )
    atomic_write_json(
        funnel_path,
        {
            **funnel,
            "seconds": round(seconds, 1),
            "teacher": teacher.info.model_id,
            "target": args.target,
            "threshold": args.threshold,
            "seed": args.seed,
        },
    )
    if stopped is not None:
        why = (
            "interrupted"
            if isinstance(stopped, KeyboardInterrupt)
            else f"teacher failed: {stopped}"
        )
        err_console.print(f"[red]{why}; wrote the {len(pairs)} pairs accepted so far to {out}")
        return 130 if isinstance(stopped, KeyboardInterrupt) else 1
    table = Table(title=f"synthetic data funnel ({seconds:.0f} s)")
    for key in ("rounds", "proposed", "duplicate", "bad_pair", "surplus", "accepted"):
        table.add_column(key, justify="right")
    table.add_row(
        *(
            str(funnel[k])
            for k in ("rounds", "proposed", "duplicate", "bad_pair", "surplus", "accepted")
        )
    )
    console.print(table)
    console.print(f"wrote {len(pairs)} pairs to {out} (funnel: {funnel_path})")
    if pairs:
        console.print(json.dumps(pairs[0], ensure_ascii=False)[:300])
    if len(pairs) < args.target:
        console.print(
            f"[yellow]only {len(pairs)} of {args.target} pairs after {max_rounds} "
            "rounds: raise --max-rounds or --threshold, or use a stronger teacher"
        )
        return 1
    return 0
