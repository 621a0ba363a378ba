"""`g2c speedrun` — the main job: BPE tokenizer → pretraining → eval → samples → SFT → DPO →
report (a chat-ready run directory).

    g2c speedrun                         # ≤ 15 min on a 2-core CPU, into runs/speedrun
    g2c speedrun --budget-minutes 5      # scale the time budget (training gets what is left)
    g2c speedrun --smoke                 # the whole pipeline on a small slice, seconds
    g2c speedrun --device cuda           # on a GPU when there is one
    g2c speedrun --fresh                 # discard runs/speedrun and start over

Interrupting it (Ctrl-C, SIGTERM, or a kill) and running the same command again resumes from
the last checkpoint in the run directory; the tokenizer and token ids are reused.
"""

from __future__ import annotations

import argparse
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
    name = "speedrun-smoke" if getattr(namespace, "smoke", False) else "speedrun"
    return name, get_preset(name)


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `speedrun` sub-command."""
    p = sub.add_parser(
        "speedrun",
        add_help=False,
        help="the main job: tokenizer → pretraining → eval → samples → report (resumable)",
        description="Train a byte-level BPE tokenizer on TinyShakespeare + Gutenberg, pretrain a "
        "small TransformerLM within a time budget, evaluate (val loss, bits per byte), sample, "
        "and write runs/speedrun/report.md. Re-running resumes an interrupted run.",
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
    code = execute(cfg, out, args, fresh=args.fresh)
    if code != 0 or args.no_chat:
        return code
    with stop_on_signals() as stopped:  # SFT then DPO on the pretrained model (resumable)
        results = speedrun.posttrain(
            out, smoke=args.smoke, on_event=ProgressReporter(train_part="training"),
            control=StopControl(stopped, None), command=command_line(),
        )  # fmt: skip
    done = results["dpo"] is not None and results["dpo"].status == "complete"
    ev = results.get("eval")
    done = done and (ev is None or getattr(ev, "status", "complete") == "complete")
    if not done:
        console.print("stopped during post-training; run the same command again to continue")
        return 130
    console.print(f"report: {out / 'report.md'}")
    console.print(f"talk to it: g2c chat {out / 'dpo'}")
    return 0
