"""`g2c speedrun` — the main job: BPE tokenizer → pretraining → eval → samples → SFT → DPO →
evaluation → report card, and a chat-ready run directory.

    g2c speedrun                         # ≤ 15 min on a 2-core CPU, into runs/speedrun
    g2c speedrun --budget-minutes 5      # the whole run's budget (pretraining gets 5 − 1.5)
    g2c speedrun --smoke                 # the whole pipeline on a small slice, seconds
    g2c speedrun --device cuda           # on a GPU when there is one
    g2c speedrun --fresh                 # discard runs/speedrun and start over
    g2c chat runs/speedrun               # then: talk to the final (DPO) model
    g2c serve runs/speedrun              # or serve it (OpenAI/Ollama API + web chat)

``--budget-minutes`` (default 15) is the whole speedrun's budget: the post-training keeps a
fixed 1.5 minutes and the pretrain stage's planner gets the rest (``g2c.runs.speedrun.
split_budget``; ``--show-config`` shows the total, the pretrain run's ``run_config.json`` its
share). Interrupting it (Ctrl-C, SIGTERM, or a kill) and running the same command again
resumes from the last checkpoint in the run directory; the tokenizer and token ids are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from g2c.artifacts import g2c_home
from g2c.cli._common import add_runtime_flags, console
from g2c.cli._run import (
    ProgressReporter,
    StopControl,
    add_config_flags,
    command_line,
    resolve_config,
    stop_on_signals,
)
from g2c.cli.train import execute
from g2c.runs import speedrun
from g2c.runs.config import RunConfig, get_preset


def _preset(namespace: argparse.Namespace) -> tuple[str, RunConfig]:
    """The pretrain preset with ``run.budget_minutes`` = the whole speedrun's budget (15 min;
    none for the smoke run), split by :func:`g2c.runs.speedrun.split_budget` in :func:`run`."""
    name = "speedrun-smoke" if getattr(namespace, "smoke", False) else "speedrun"
    cfg = get_preset(name)
    if cfg.run.budget_minutes is not None:
        cfg = dataclasses.replace(
            cfg, run=dataclasses.replace(cfg.run, budget_minutes=speedrun.BUDGET_MINUTES)
        )
    return name, cfg


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `speedrun` sub-command."""
    p = sub.add_parser(
        "speedrun",
        add_help=False,
        help="the main job: tokenizer → pretraining → SFT → DPO → evaluation → a chat-ready run",
        description="Train a byte-level BPE tokenizer on TinyShakespeare + Gutenberg, pretrain a "
        "small TransformerLM within a time budget, evaluate (val loss, bits per byte), sample, "
        "fine-tune it to chat (SFT) and on preferences (DPO), evaluate every stage, and write "
        "the report card runs/speedrun/report.md; `g2c chat runs/speedrun` then talks to the "
        "final model. --budget-minutes is the whole run's (pretraining gets it minus 1.5 min "
        "for post-training). Re-running resumes an interrupted run.",
    )
    p.add_argument("--smoke", action="store_true",
                   help="tiny run on a 60k-character slice (CI; seconds)")  # fmt: skip
    p.add_argument("--out", default=None,
                   help="run directory (default: $G2C_HOME/speedrun, or speedrun-smoke)")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="delete the run in --out and start over")
    p.add_argument("--data-path", default=None, help="explicit data root for the corpus")
    p.add_argument("--stop-after-steps", type=int, default=None,
                   help="test hook: checkpoint and stop after this many steps")  # fmt: skip
    p.add_argument("--no-chat", action="store_true",
                   help="stop after pretraining (skip the SFT and DPO stages)")  # fmt: skip
    add_config_flags(p, _preset)
    add_runtime_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the speedrun config and execute it (resuming when the run directory has one)."""
    preset, base = _preset(args)
    cfg = resolve_config(args, base)  # --budget-minutes is run.budget_minutes
    if args.show_config:
        console.print_json(json.dumps(cfg.to_dict()))
        return 0
    out = Path(args.out) if args.out else g2c_home() / preset
    try:
        budget = speedrun.split_budget(cfg.run.budget_minutes, smoke=args.smoke)
    except ValueError as exc:
        console.print(f"error: {exc}")
        return 2
    if budget is not None:  # the pretrain stage plans with its share of the budget
        run_cfg = dataclasses.replace(cfg.run, budget_minutes=budget["pretrain_minutes"])
        cfg = dataclasses.replace(cfg, run=run_cfg)
    if args.fresh:
        speedrun.reset_chat(out)  # no pointer to a stale DPO model while the new run trains
    code = execute(cfg, out, args, fresh=args.fresh)
    if code != 0 or args.no_chat:
        return code
    with stop_on_signals() as stopped:  # SFT, DPO, evaluation, the chat-ready root (resumable)
        results = speedrun.posttrain(
            out, smoke=args.smoke, fresh=args.fresh, budget=budget,
            on_event=ProgressReporter(train_part="training"),
            control=StopControl(stopped, None), command=command_line(),
        )  # fmt: skip
    if results["chat"] is None:
        console.print("stopped during post-training; run the same command again to continue")
        return 130
    plain = {"soft_wrap": True, "markup": False, "highlight": False}  # copy-paste-able lines
    console.print(f"report: {out / 'report.md'}", **plain)
    console.print("talk to it:", **plain)
    console.print(f"  g2c chat {out}", **plain)
    console.print(f"  g2c serve {out}", **plain)
    return 0
