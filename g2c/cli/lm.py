"""`g2c lm` — train one pre-transformer character LM, or run the six-model comparison.

g2c lm train --model lstm --data tinyshakespeare --steps 2000 --out runs/lstm
g2c lm compare --steps 2000 --out runs/lm-compare

Flags → ``LMTrainConfig`` / ``CompareConfig`` + ``LMData`` → ``g2c.runs.lm.train`` /
``compare`` → tables.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.table import Table

from g2c.artifacts import g2c_home
from g2c.cli._common import add_runtime_flags, console, make_progress, set_threads
from g2c.lm import MODEL_NAMES, CompareConfig
from g2c.runs import lm as lm_stage


def register(sub: argparse._SubParsersAction) -> None:
    """Register `g2c lm train` and `g2c lm compare`."""
    p = sub.add_parser("lm", help="06: bigram / MLP / RNN / LSTM / WaveNet character models")
    lm_sub = p.add_subparsers(dest="lm_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    t = lm_sub.add_parser("train", help="train one model and save it (safetensors + manifest)")
    t.add_argument("--model", choices=MODEL_NAMES, default="lstm")
    _add_data_flags(t)
    _add_train_flags(t, steps=2000)
    t.add_argument("--sample-tokens", type=int, default=200, help="characters to sample at the end")
    t.add_argument("--temperature", type=float, default=1.0)
    t.add_argument("--out", default=None, help="run directory (default: $G2C_HOME/lm-<model>)")
    add_runtime_flags(t)
    t.set_defaults(func=_train)

    c = lm_sub.add_parser("compare", help="the six-model validation-perplexity table and plot")
    c.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated subset")
    _add_data_flags(c)
    _add_train_flags(c, steps=2000)
    c.add_argument("--sample-tokens", type=int, default=200)
    c.add_argument("--out", default=None, help="output directory (default: $G2C_HOME/lm-compare)")
    add_runtime_flags(c)
    c.set_defaults(func=_compare)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="tinyshakespeare", help="text dataset name")
    p.add_argument("--text-file", default=None, help="train on this UTF-8 text file instead")
    p.add_argument("--max-chars", type=int, default=None, help="use only the first N characters")
    p.add_argument("--val-fraction", type=float, default=0.1)


def _add_train_flags(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--context-length", type=int, default=16)
    p.add_argument("--embedding-dim", type=int, default=24)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument(
        "--eval-tokens",
        type=int,
        default=10_000,
        help="validation targets per intermediate evaluation (final: all)",
    )


def _data(args: argparse.Namespace) -> lm_stage.LMData:
    return lm_stage.LMData(data=args.data, text_file=args.text_file, max_chars=args.max_chars,
                           val_fraction=args.val_fraction)  # fmt: skip


def _from_flags(cls, args: argparse.Namespace, **fields):
    """``cls`` (a settings dataclass) with every field that has a flag of the same name."""
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)
    }
    return cls(**{**values, **fields})


def _train(args: argparse.Namespace) -> int:
    """Flags → ``LMTrainConfig`` → ``runs.lm.train`` → a table and the sample."""
    threads = set_threads(args.threads)
    config = _from_flags(lm_stage.LMTrainConfig, args)
    data = _data(args)
    out = Path(args.out) if args.out else g2c_home() / f"lm-{args.model}"
    console.print(f"[bold]{args.model}[/] on {args.text_file or args.data}, device "
                  f"{args.device}, {threads} threads → {out}")  # fmt: skip
    with make_progress() as progress:
        task = progress.add_task(f"train {args.model}", total=args.steps, info="")

        def on_step(step: int, loss: float) -> None:
            progress.update(task, completed=step, info=f"loss {loss:.3f}")

        def on_log(rec: dict) -> None:
            if rec["val_ppl"] is not None:
                progress.console.print(f"step {rec['step']:>6}  train loss "
                                       f"{rec['train_loss']:.4f}  val ppl {rec['val_ppl']:.3f}")  # fmt: skip

        result = lm_stage.train(config, out, data, on_step=on_step, on_log=on_log)
    m = result.metrics
    table = Table(title=f"{args.model} on {result.source}")
    for col in ("parameters", "val perplexity", "bits/char", "train s"):
        table.add_column(col, justify="right")
    table.add_row(f"{m['params']:,}", f"{m['val_ppl']:.3f}", f"{m['bpc']:.3f}",
                  f"{m['train_seconds']:.1f}")  # fmt: skip
    console.print(table)
    console.print(result.sample, markup=False, highlight=False)
    console.print(f"saved to {result.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Flags → ``CompareConfig`` → ``runs.lm.compare`` → the perplexity table and samples."""
    threads = set_threads(args.threads)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    cfg = _from_flags(CompareConfig, args, models=models)
    out = Path(args.out) if args.out else g2c_home() / "lm-compare"
    console.print(f"comparing {', '.join(models)} on {args.text_file or args.data}, "
                  f"{args.steps} steps × {args.batch_size}, device {args.device}, "
                  f"{threads} threads")  # fmt: skip
    with make_progress() as progress:
        tasks: dict[str, int] = {}

        def on_model(name: str) -> None:
            tasks[name] = progress.add_task(name, total=0 if name == "bigram" else args.steps,
                                            info="")  # fmt: skip

        def on_step(name: str, step: int, loss: float) -> None:
            progress.update(tasks[name], completed=step, info=f"loss {loss:.3f}")

        result = lm_stage.compare(cfg, out, _data(args), device=args.device, on_model=on_model,
                                  on_step=on_step)  # fmt: skip
    results = result.results
    table = Table(
        title=f"validation perplexity on {result.source} "
        f"(same {results[0]['val_targets']:,} targets)"
    )
    for col, just in (("model", "left"), ("parameters", "right"), ("val ppl", "right"),
                      ("bits/char", "right"), ("train s", "right")):  # fmt: skip
        table.add_column(col, justify=just)
    for r in results:
        table.add_row(r["model"], f"{r['params']:,}", f"{r['val_ppl']:.3f}", f"{r['bpc']:.3f}",
                      f"{r['train_seconds']:.1f}")  # fmt: skip
    console.print(table)
    for r in results:
        console.rule(r["model"])
        console.print(result.tokenizer.decode(r["sample_ids"]), markup=False, highlight=False)
    out = result.out
    console.print(f"wrote {out / 'table.md'}, {out / 'results.json'}, {out / 'val-ppl.png'}")
    return 0
