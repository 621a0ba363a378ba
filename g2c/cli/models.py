"""`g2c models list` — the trained models found on disk, named by family and size.

    g2c models list                 # runs under $G2C_HOME (default ./runs)
    g2c models list --root DIR
    g2c models show NAME|PATH       # load it (g2c.transformer.loading.load_model) and describe it

Names are ``<family>-<size>`` (``ShakespeareLM-0.8M``); ``g2c sample GutenbergLM`` (no size)
picks the family's largest model. ``show`` also reads a save_pretrained directory, a GGUF file
(or the name ``smollm2``) and a Hugging Face GPT-2 directory; a damaged file is named in a
one-line error (exit code 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich import box
from rich.table import Table

from g2c.artifacts import g2c_home
from g2c.cli._common import console
from g2c.cli.inspect import load_for_cli
from g2c.runs import find_models


def register(sub: argparse._SubParsersAction) -> None:
    """Register `g2c models list`."""
    p = sub.add_parser("models", help="list trained models (family-size names)")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    actions = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = actions.add_parser("list", help="models found under $G2C_HOME (default ./runs)")
    ls.add_argument(
        "--root", default=None, help="directory to search (default: $G2C_HOME or ./runs)"
    )
    ls.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    ls.set_defaults(func=_list)
    sh = actions.add_parser("show", help="load a model and print its kind, size and tokenizer")
    sh.add_argument("model", help="model name, run directory, save_pretrained dir, .gguf, smollm2")
    sh.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sh.set_defaults(func=_show)


def _relative(path, root) -> str:
    """``path`` relative to ``root`` when inside it (keeps the table narrow), else as is."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve())) or "."
    except ValueError:
        return str(path)


def _list(args: argparse.Namespace) -> int:
    root = args.root or g2c_home()
    models = find_models(root)
    if not models:
        console.print(f"no models under {root}; train one with `g2c speedrun` or `g2c train`")
        return 0
    largest = {}
    for e in models:
        if e.family not in largest or e.num_parameters >= largest[e.family].num_parameters:
            largest[e.family] = e
    table = Table(title=f"models under {root}", box=box.SIMPLE)
    width = max(len(e.name) for e in models)
    table.add_column("name", no_wrap=True, min_width=width)
    for col in ("parameters", "val loss", "bits/byte"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("*", no_wrap=True)
    table.add_column("run", overflow="fold")
    for e in models:
        m = e.metrics
        table.add_row(
            e.name, f"{e.num_parameters:,}",
            f"{m['val_loss']:.3f}" if m.get("val_loss") is not None else "",
            f"{m['val_bpb']:.3f}" if m.get("val_bpb") is not None else "",
            "*" if largest[e.family] is e else "", _relative(e.path, root),
        )  # fmt: skip
    console.print(table)
    console.print("* = the model a family name without size resolves to (its largest)")
    return 0


def _show(args: argparse.Namespace) -> int:
    model, tok, path = load_for_cli(args.model, allow_no_tokenizer=True)
    c = model.config
    table = Table(title=f"model {path}", box=box.SIMPLE)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for k, v in [
        ("parameters", f"{model.num_parameters():,}"),
        ("vocab / context", f"{c.vocab_size} / {c.max_seq_len}"),
        ("layers × heads × dim", f"{c.num_layers} × {c.num_heads} × {c.embedding_dim}"),
        ("architecture", f"{c.positional}, {c.norm}, {c.mlp}"),
        ("tokenizer", repr(tok) if tok is not None else "none (not read for this kind)"),
    ]:
        table.add_row(k, v)
    console.print(table)
    return 0
