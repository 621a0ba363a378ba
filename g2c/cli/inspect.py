"""`g2c inspect attention RUN --text "..."` — the attention inspector.

Writes one heatmap PNG per layer (a panel per head) for the passage into ``--out`` (default
``RUN/attention/``) and prints a table of per-head scores — previous-token, first-token and
induction (on a repeated random sequence) — flagging heads whose score passes ``--threshold``.
See ``g2c.runs.heads`` for the definitions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from g2c.cli._common import add_runtime_flags, console, set_threads


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


def _attention(args: argparse.Namespace) -> int:
    import torch

    from g2c.artifacts import atomic_write_json
    from g2c.runs import load_run, resolve_model
    from g2c.runs.heads import attention_maps, head_table, plot_attention

    set_threads(args.threads)
    path = resolve_model(args.run)
    model, tok, _ = load_run(path)
    ids = tok.encode(args.text)
    if len(ids) < 2:
        raise ValueError("--text must encode to at least 2 tokens")
    ids = ids[: model.max_seq_len]
    idx = torch.tensor(ids, dtype=torch.long)
    out = Path(args.out) if args.out else path / "attention"
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
