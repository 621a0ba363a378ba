"""`g2c train` — pretrain a TransformerLM from a named preset, a config file and flags.

    g2c train --preset shakespeare-char                       # the classic small CPU config
    g2c train --preset gutenberg-1m --max-steps 500 --out runs/g1m
    g2c train --config my_run.toml --embedding-dim 192        # flags override the file
    g2c train --preset shakespeare-bpe --out runs/sb --resume # continue from checkpoint.pt
    g2c train --preset gutenberg-5m --show-config             # print the resolved config
    g2c train --preset shakespeare-char --nproc 2             # data-parallel (DDP), 2 processes
    g2c train --preset gutenberg-5m --nproc 2 --strategy fsdp # FSDP2: sharded weights and states
    torchrun --nproc-per-node 2 -m g2c train --preset ...     # the same, launched by hand
    g2c train --preset gutenberg-5m --plan-memory --nproc 8   # ZeRO memory plan, then exit
    g2c train --preset gutenberg-5m --checkpointing every:2   # recompute every 2nd block
    g2c train --preset python-code                            # the stdlib, prepared into shards
    g2c train --shards data/tsg --tokenizer gpt2 ...          # a `g2c data prepare` directory
    g2c train --preset gpt2-124m --plan-memory                # GPT-2 small's memory plan
    g2c train --preset gpt2-124m --compile                    # torch.compile (on a GPU)

Every field of the run's config dataclasses has a flag (see ``g2c train --help``). The run
directory gets the tokenizer, ``model.safetensors``, ``manifest.json``, ``metrics.jsonl``,
plots, samples and ``report.md`` (see ``g2c.runs``). Ctrl-C / SIGTERM writes a checkpoint and
exits; ``--resume`` continues from it.

``--nproc N`` (N > 1) checks the config (the batch must split evenly over N processes, N at most
the CPU cores) and re-runs the same command under ``torch.distributed.run`` (torchrun) with N
processes; each joins the process group (gloo on CPU, NCCL on CUDA) and trains its slice of
every batch (see ``g2c.runs.pretrain``, ``g2c.training.distributed``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from g2c.artifacts import g2c_home
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
from g2c.data import is_python_stdlib, load_prepared, prepared_dir
from g2c.runs import pretrain
from g2c.runs.config import GPT2_VOCAB_SIZE, PRESETS, RunConfig, get_preset
from g2c.training.distributed import (
    STRATEGIES,
    check_nproc,
    check_world_divides,
    cleanup_distributed,
    env_world_size,
    init_distributed,
    launched_by_torchrun,
)
from g2c.training.memory_plan import plan_for_model
from g2c.transformer import TransformerLM


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
    g = p.add_argument_group("scale (distributed training, memory)")
    g.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes: runs this command under torchrun (default 1)")  # fmt: skip
    g.add_argument("--strategy", default="ddp", choices=STRATEGIES,
                   help="ddp (replicated weights) or fsdp (FSDP2: sharded weights, grads and "
                   "optimizer states); default ddp")  # fmt: skip
    g.add_argument("--checkpointing", default="none", metavar="none|all|every:K",
                   help="activation checkpointing: recompute no block, every block or every "
                   "K-th block in backward (default none)")  # fmt: skip
    g.add_argument("--plan-memory", action="store_true",
                   help="print the ZeRO memory plan for this config and --nproc, then exit")  # fmt: skip
    add_config_flags(p, _preset)
    for action in p._actions:  # run.compile: `--compile` alone means true (or --compile false)
        if "--compile" in action.option_strings:
            action.nargs, action.const, action.metavar = "?", True, "BOOL"
            action.help = "torch.compile the model (run.compile; worth it on GPUs)"
    add_runtime_flags(p)
    p.set_defaults(func=run)


def parse_checkpointing(text: str) -> bool | int:
    """``none`` → False, ``all`` → True, ``every:K`` → K (an int >= 1); anything else →
    ValueError naming --checkpointing."""
    if text == "none":
        return False
    if text == "all":
        return True
    head, _, k = text.partition(":")
    if head == "every" and k.isdigit() and int(k) >= 1:
        return int(k)
    raise ValueError(f"--checkpointing must be none, all or every:K (K >= 1), got {text!r}")


def memory_plan_text(cfg: RunConfig, world_size: int, checkpointing: bool | int) -> str:
    """The ZeRO memory plan of ``cfg`` on ``world_size`` devices (parameters counted on the
    meta device, no memory allocated). The states as g2c keeps them — fp32 weights, gradients
    and AdamW moments, also under bf16 autocast (4 + 4 + 8 bytes per parameter); autocast
    halves the activations. A char tokenizer's vocabulary is assumed to be 256; GPT-2's is
    50,257; a prepared corpus (``data.shards``) has its manifest's."""
    vocab = _plan_vocab(cfg)
    mcfg = cfg.model_config(vocab)
    with torch.device("meta"):
        n = TransformerLM.from_config(mcfg).num_parameters()
    every = 1 if checkpointing is True else int(checkpointing)
    bf16 = cfg.train.autocast_dtype is not None
    text = plan_for_model(
        mcfg, num_params=n, world_size=world_size, batch_size=cfg.train.batch_size,
        context_length=cfg.train.context_length, checkpoint_every=every,
        activation_bytes=2 if bf16 else 4,
    )  # fmt: skip
    notes = [f"model: {mcfg.num_layers} layers, width {mcfg.embedding_dim}, vocabulary {vocab}"]
    if cfg.data.tokenizer == "char":
        notes.append("char tokenizer: vocabulary assumed 256 (known once the data is read)")
    if bf16:
        notes.append("bf16 autocast: weights, gradients and moments stay fp32; activations bf16")
    return text + "\n" + "\n".join(notes)


def _plan_vocab(cfg: RunConfig) -> int:
    if cfg.data.shards and not is_python_stdlib(cfg.data.shards):
        try:
            return int(load_prepared(prepared_dir(cfg.data.shards))["tokenizer"]["vocab_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not prepared yet: the tokenizer setting's size below
    if cfg.data.tokenizer == "gpt2":
        return GPT2_VOCAB_SIZE
    return cfg.data.vocab_size if cfg.data.tokenizer == "bpe" else 256


def run(args: argparse.Namespace) -> int:
    """Resolve the config, then run (or resume) the stage; exit code 130 when interrupted.
    ``--nproc N`` > 1 (outside torchrun) re-launches this command under torchrun."""
    cfg = resolve_config(args, get_preset(args.preset))
    if args.show_config:
        console.print_json(json.dumps(cfg.to_dict()))
        return 0
    checkpointing = parse_checkpointing(args.checkpointing)
    world = env_world_size() if launched_by_torchrun() else args.nproc
    if args.plan_memory:
        console.print(memory_plan_text(cfg, world, checkpointing), markup=False, highlight=False)
        return 0
    if not launched_by_torchrun():
        on_gpu = torch.cuda.is_available() and cfg.train.device in ("auto", "cuda")
        check_nproc(args.nproc, gpus=torch.cuda.device_count() if on_gpu else None)
    check_world_divides(cfg.train.batch_size, world, "train.batch_size")
    # rank 0 checks the run directory (resume / fresh); the others only need its path
    out = run_directory(args) if _rank() == 0 else follower_directory(args)
    if args.nproc > 1 and not launched_by_torchrun():
        return launch_torchrun(args.nproc)
    return execute(cfg, out, args, fresh=args.fresh)


def follower_directory(args: argparse.Namespace) -> Path:
    """A rank > 0's run directory: ``--out`` or ``$G2C_HOME/<preset>``, unchecked (rank 0
    checks it and owns every file in it)."""
    return Path(args.out) if args.out else g2c_home() / args.preset


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def torchrun_argv(nproc: int, argv: list[str]) -> list[str]:
    """torchrun's arguments to run ``g2c <argv>`` (``--nproc`` removed) on ``nproc`` local
    processes (``--standalone``: a local rendezvous on a free port)."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    return ["--standalone", "--nproc-per-node", str(nproc), "-m", "g2c", *rest]


def launch_torchrun(nproc: int) -> int:
    """Run this command under ``torch.distributed.run`` with ``nproc`` processes; the exit
    code is 0 when every process succeeded, 1 otherwise (torchrun stops the others when one
    fails and prints which)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    console.print(f"launching {nproc} processes with torchrun", highlight=False)
    try:
        torchrun_main(torchrun_argv(nproc, sys.argv[1:]))
    except ChildFailedError as exc:
        codes = {f.exitcode for f in exc.failures.values()}
        # 130: stopped (Ctrl-C / --stop-after-steps), resumable; torchrun SIGTERMs the others
        return 130 if 130 in codes and codes <= {130, -15} else 1
    return 0


def execute(cfg: RunConfig, out: Path, args: argparse.Namespace, *, fresh: bool) -> int:
    """Run the pretrain stage with signals, progress and a summary (shared with `g2c speedrun`).
    Under torchrun: joins the process group first; only rank 0 reports."""
    ctx = init_distributed(getattr(args, "device", "auto")) if launched_by_torchrun() else None
    distributed = ctx is not None and ctx.world_size > 1
    if distributed:  # one thread per process unless --threads says otherwise
        threads = set_threads(args.threads or max(1, (os.cpu_count() or 1) // ctx.world_size))
    else:
        threads = set_threads(args.threads)
    main = ctx is None or ctx.is_main
    parallel = pretrain.Parallel(
        ctx, getattr(args, "strategy", "ddp"),
        parse_checkpointing(getattr(args, "checkpointing", "none")),
    )  # fmt: skip
    limit = getattr(args, "stop_after_steps", None)
    try:
        with stop_on_signals() as stopped:

            def should_stop(step: int) -> bool:
                return stopped(step) or (limit is not None and step >= limit)

            result = pretrain.run(
                cfg, out, fresh=fresh and main, on_event=ProgressReporter() if main else None,
                should_stop=should_stop, data_path=getattr(args, "data_path", None),
                threads=threads, command=command_line(), parallel=parallel,
            )  # fmt: skip
    finally:
        cleanup_distributed()
    if not main:
        return 130 if result.status == "interrupted" else 0
    if result.status == "interrupted":
        console.print(
            f"stopped at step {result.step:,} of {result.max_steps:,}; run the same command "
            f"again (with --resume for `g2c train`) to continue from {out / 'checkpoint.pt'}"
        )
        return 130
    print_summary(result, out)
    return 0
