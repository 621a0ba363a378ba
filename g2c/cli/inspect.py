"""`g2c inspect attention RUN --text "..."` — the attention inspector.

Writes one heatmap PNG per layer (a panel per head) for the passage into ``--out`` (default
``RUN/attention/``) and prints a table of per-head scores — previous-token, first-token and
induction (on a repeated random sequence) — flagging heads whose score passes ``--threshold``.
See ``g2c.runs.heads`` for the definitions. RUN is a run directory or model name (see
``g2c models list``), or anything ``g2c.transformer.loading.load_model`` reads that has a
tokenizer (a save_pretrained directory with tokenizer.json, an HF GPT-2 directory). A damaged
file is reported by name (exit code 2), never as a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.cli._common import add_runtime_flags, console, set_threads
from g2c.runs import load_run, resolve_model
from g2c.runs.heads import attention_maps, head_table, plot_attention
from g2c.transformer.loading import MODEL_NAMES, load_model


def register(sub: argparse._SubParsersAction) -> None:
    """Register `g2c inspect attention`."""
    p = sub.add_parser("inspect", help="inspect a trained model (attention heatmaps, head types)")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    actions = p.add_subparsers(dest="inspect_command", metavar="WHAT")
    a = actions.add_parser("attention", help="per-layer/per-head heatmaps and head-type scores")
    a.add_argument("run", help="run directory or model name (see `g2c models list`)")
    a.add_argument("--text", required=True, help="the passage to look at")
    a.add_argument("--out", default=None, help="PNG directory (default: RUN/attention)")
    a.add_argument("--threshold", type=float, default=0.4, help="score that flags a head")
    add_runtime_flags(a)
    a.set_defaults(func=_attention)


def load_for_cli(
    name_or_path: str, device: str = "cpu", *, allow_no_tokenizer: bool = False
) -> tuple[Any, Any, Path]:
    """``(model, tokenizer, source)`` for a CLI argument: a run (directory or model name, via
    ``load_run``, which also reads interrupted runs), else any path or name ``load_model``
    reads. Not found → FileNotFoundError listing the models; no tokenizer (unless
    ``allow_no_tokenizer``) → ValueError."""
    try:
        path = resolve_model(name_or_path)
    except FileNotFoundError:
        if not (Path(name_or_path).exists() or name_or_path.lower() in MODEL_NAMES):
            raise
        loaded = load_model(name_or_path, device=device)
        model, tok, path = loaded.model, loaded.tokenizer, loaded.source
    else:
        model, tok, _ = load_run(path, device=device)
    if tok is None and not allow_no_tokenizer:
        raise ValueError(f"{path} has no tokenizer g2c reads, so its text cannot be encoded")
    return model, tok, path


def _attention(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    model, tok, path = load_for_cli(args.run)  # on CPU: the maps are small and plotted here
    ids = tok.encode(args.text)
    if len(ids) < 2:
        raise ValueError("--text must encode to at least 2 tokens")
    ids = ids[: model.max_seq_len]
    idx = torch.tensor(ids, dtype=torch.long)
    out = Path(args.out) if args.out else (path if path.is_dir() else path.parent) / "attention"
    labels = [tok.decode([i]).replace("\n", "⏎") for i in ids]
    paths = plot_attention(attention_maps(model, idx), labels, out)
    rows = head_table(model, idx, threshold=args.threshold)
    atomic_write_json(out / "heads.json", rows)
    table = Table(title=f"heads of {path} ({len(ids)} tokens)")
    for col in ("layer", "head", "previous-token", "first-token", "induction", "flags"):
        table.add_column(col, justify="left" if col == "flags" else "right")
    for r in rows:
        table.add_row(str(r["layer"]), str(r["head"]), f"{r['previous']:.2f}",
                      f"{r['first']:.2f}", f"{r['induction']:.2f}", ", ".join(r["kinds"]))  # fmt: skip
    console.print(table)
    console.print(f"heatmaps: {', '.join(str(p) for p in paths)}")
    console.print(f"scores: {out / 'heads.json'}")
    return 0
