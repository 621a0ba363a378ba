"""`g2c mnist`: train the 784-128-10 MLP of modules 03/03B on MNIST or Fashion-MNIST.

Flags map one-to-one onto :class:`g2c.runs.mnist.MNISTConfig`; the stage
``g2c.runs.mnist.run`` does the work. The run directory (default ``$G2C_HOME/mnist``) receives ``model.safetensors``, ``manifest.json``
(config, metrics, normalisation constants), ``history.json``, ``metrics.jsonl`` (one line per
evaluation), ``stages.json``, ``curves.png`` and ``report.md``. ``--smoke`` trains on a tiny subset in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from g2c.artifacts import g2c_home
from g2c.cli._common import add_runtime_flags, console, make_progress, set_threads
from g2c.cli._run import command_line
from g2c.runs import mnist as stage


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `mnist` sub-command."""
    p = sub.add_parser(
        "mnist",
        help="train a 784-128-10 MLP (g2c.nn + AdamW) on MNIST / Fashion-MNIST",
        description="Train the module-03 MLP with g2c.training.AdamW and a warmup + cosine "
        "schedule; save safetensors weights and a JSON manifest into --out.",
    )
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    p.add_argument("--data-path", default=None, help="directory with the four IDX .gz files")
    p.add_argument(
        "--out", default=None, help="run directory (default: $G2C_HOME/mnist or runs/mnist)"
    )
    p.add_argument("--hidden", type=int, default=128, help="hidden width (default 128)")
    p.add_argument("--activation", choices=["relu", "gelu"], default="relu")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=1e-5, help="final learning rate of the cosine")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--grad-clip", type=float, default=None, help="global-norm clip (default off)")
    p.add_argument(
        "--max-shift",
        type=int,
        default=None,
        help="random translation in pixels (default: 2 for mnist, 0 for fashion-mnist)",
    )
    p.add_argument("--val-size", type=int, default=5000, help="last N train images for validation")
    p.add_argument("--train-limit", type=int, default=None, help="use only N training images")
    p.add_argument("--test-limit", type=int, default=None, help="use only N test images")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evals (0: per epoch)")
    p.add_argument("--smoke", action="store_true", help="tiny subset, 2 epochs: runs in seconds")
    add_runtime_flags(p)
    for action in p._actions:  # this job's tensors are small: one thread is the safe default
        if action.dest == "threads":
            action.default = 1
            action.help = (
                "torch CPU threads (default 1: a 128×784 batch gains little from a second "
                "thread, and on a busy 2-core machine 2 threads ran 13× slower)"
            )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> stage.MNISTConfig:
    """Map parsed flags onto an ``MNISTConfig`` (``--smoke`` overrides sizes)."""
    max_shift = args.max_shift
    if max_shift is None:
        max_shift = 2 if args.dataset == "mnist" else 0
    fields = dict(
        dataset=args.dataset,
        data_path=args.data_path,
        hidden=args.hidden,
        activation=args.activation,
        dropout=args.dropout,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        max_shift=max_shift,
        val_size=args.val_size,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        eval_every=args.eval_every,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    if args.smoke:
        fields.update(stage.SMOKE)
    return stage.MNISTConfig(**fields)


def run(args: argparse.Namespace) -> int:
    """Flags → ``MNISTConfig`` → ``runs.mnist.run`` → a summary table. Returns 0."""
    args.threads = set_threads(args.threads)
    config = config_from_args(args)  # validated here: a bad flag fails before any write
    out = Path(args.out) if args.out else g2c_home() / "mnist"
    console.print(
        f"[bold]g2c mnist[/bold] dataset={config.dataset} epochs={config.epochs} "
        f"optimizer={config.optimizer} lr={config.lr} threads={args.threads} → {out}"
    )
    with make_progress() as progress:
        task = progress.add_task("loading data", total=None, info="")

        def on_log(event: dict) -> None:
            kind = event["event"]
            if kind == "start":
                progress.update(task, description="training", total=event["total_steps"])
            elif kind == "step" and event["step"] % 10 == 0:
                info = f"epoch {event['epoch'] + 1} loss {event['loss']:.4f} lr {event['lr']:.2e}"
                progress.update(task, completed=event["step"], info=info)
            elif kind == "eval":
                info = f"val loss {event['val_loss']:.4f} acc {event['val_accuracy']:.2%}"
                progress.update(task, completed=event["step"], info=info)

        result = stage.run(config, out, on_log=on_log, command=command_line())
    m = result.metrics()
    table = Table(title=f"{config.dataset} — 784-{config.hidden}-10 MLP")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("test accuracy", f"{m['test_accuracy']:.2%}")
    table.add_row("test loss", f"{m['test_loss']:.4f}")
    table.add_row("val accuracy", f"{m['val_accuracy']:.2%}")
    table.add_row("train time", f"{m['train_seconds']:.1f} s ({args.threads} threads)")
    table.add_row("steps", str(m["steps"]))
    table.add_row("parameters", f"{m['num_parameters']:,}")
    console.print(table)
    console.print(f"saved model.safetensors + manifest.json in {out}")
    return 0
