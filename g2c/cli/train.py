"""`g2c train` — pretrain a TransformerLM from a named preset, a config file and flags.

    g2c train --preset shakespeare-char                       # the classic small CPU config
    g2c train --preset gutenberg-1m --max-steps 500 --out runs/g1m
    g2c train --config my_run.toml --embedding-dim 192        # flags override the file
    g2c train --preset shakespeare-bpe --out runs/sb --resume # continue from checkpoint.pt
    g2c train --preset gutenberg-5m --show-config             # print the resolved config

Every field of the run's config dataclasses has a flag (see ``g2c train --help``). The run
directory gets the tokenizer, ``model.safetensors``, ``manifest.json``, ``metrics.jsonl``,
plots, samples and ``report.md`` (see ``g2c.runs``). Ctrl-C / SIGTERM writes a checkpoint and
exits; ``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from g2c.cli._common import add_runtime_flags, console, set_threads
from g2c.cli._run import (
    ProgressReporter,
    add_config_flags,
    command_line,
    print_summary,
    resolve_config,
    run_directory,
    stop_on_signals,
)
from g2c.runs import pretrain
from g2c.runs.config import PRESETS, RunConfig, get_preset


def _preset(namespace: argparse.Namespace) -> tuple[str, RunConfig]:
    name = getattr(namespace, "preset", None) or "shakespeare-char"
    return name, get_preset(name)


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `train` sub-command."""
    p = sub.add_parser(
        "train",
        add_help=False,
        help="pretrain a TransformerLM (presets: " + ", ".join(PRESETS) + ")",
        description="Pretrain a TransformerLM: tokenizer → training → evaluation → samples → "
        "report, in one run directory. Precedence: --preset < --config < flags. "
        "`g2c train --preset NAME --help` shows that preset's values as the defaults.",
    )
    p.add_argument("--preset", default="shakespeare-char", choices=tuple(PRESETS),
                   help="named configuration (default: shakespeare-char)")  # fmt: skip
    p.add_argument("--out", default=None, help="run directory (default: $G2C_HOME/<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="delete the run in --out and start over")
    p.add_argument("--data-path", default=None, help="explicit data root for the corpus")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)
    add_config_flags(p, _preset)
    add_runtime_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, then run (or resume) the stage; exit code 130 when interrupted."""
    cfg = resolve_config(args, get_preset(args.preset))
    if args.show_config:
        console.print_json(json.dumps(cfg.to_dict()))
        return 0
    return execute(cfg, run_directory(args), args, fresh=args.fresh)


def execute(cfg: RunConfig, out: Path, args: argparse.Namespace, *, fresh: bool) -> int:
    """Run the pretrain stage with signals, progress and a summary (shared with `g2c speedrun`)."""
    threads = set_threads(args.threads)
    limit = getattr(args, "stop_after_steps", None)
    with stop_on_signals() as stopped:

        def should_stop(step: int) -> bool:
            return stopped(step) or (limit is not None and step >= limit)

        result = pretrain.run(
            cfg, out, fresh=fresh, on_event=ProgressReporter(), should_stop=should_stop,
            data_path=getattr(args, "data_path", None), threads=threads, command=command_line(),
        )  # fmt: skip
    if result.status == "interrupted":
        console.print(
            f"stopped at step {result.step:,} of {result.max_steps:,}; run the same command "
            f"again (with --resume for `g2c train`) to continue from {out / 'checkpoint.pt'}"
        )
        return 130
    print_summary(result, out)
    return 0
