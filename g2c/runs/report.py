"""The run report: plots of the training curves, a stage table, samples and the size of the code.

``write_report(run_dir)`` reads what the run left on disk (manifest, stages.json, samples.jsonl,
plots) and writes ``report.md`` — like nanochat's report card, it is regenerated from the
artifacts, so it is the same whether the run finished in one go or was resumed.
``code_size_table()`` counts the lines and files of each g2c subpackage (nanochat measures its
own size the same way).

A speedrun's post-training shows up in the same card when its artifacts are there: the stage
table gets a row for each finished stage directory of :data:`POSTTRAIN_STAGES` (``sft/``,
``dpo/``: time, tokens seen, tokens/s, median MFU, losses) and for each timed part recorded in
:data:`POSTTRAIN_FILE` (per-stage evaluation, transcripts, the evaluation suite), with the
val bits per byte each stage's model scores on the pretraining validation tokens; the caller's
``sections`` (evaluation per stage, chat transcripts, ...) go before the size of the code; and
a run directory whose ``chat.json`` names a stage ends with the two commands that talk to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from g2c.artifacts import atomic_write_text, atomic_write_with
from g2c.runs.rundir import RunDir
from g2c.transformer.loading import CHAT_POINTER_FILE

STAGE_ORDER = ("tokenizer", "pretraining", "evaluation", "sampling", "report")
#: Post-training stage directories inside a speedrun's run directory, in order.
POSTTRAIN_STAGES = ("sft", "dpo")
#: What the speedrun's post-training records in the run directory (``g2c.runs.speedrun``):
#: ``{"budget": {...}, "parts": {name: seconds}, "stages": {"base"|"sft"|"dpo": {"val_bpb",
#: ...}}, "transcripts": [...]}``.
POSTTRAIN_FILE = "posttrain.json"
#: The stage table's held-out loss of each post-training stage (manifest metric, meaning).
_STAGE_VAL_LOSS = {"sft": "heldout_loss", "dpo": "heldout_dpo_loss"}


def code_size_table(package_root: str | Path | None = None) -> list[dict]:
    """``[{"module", "files", "lines"}]`` for each subpackage of g2c (plus the top-level files
    as ``g2c``), in course order of the directory names. Lines = all lines of the .py files."""
    root = Path(package_root) if package_root is not None else Path(__file__).resolve().parents[1]
    rows = []
    top = [p for p in root.glob("*.py")]
    if top:
        rows.append({"module": "g2c", "files": len(top), "lines": _lines(top)})
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = sorted(d.rglob("*.py"))
        if files:
            rows.append({"module": f"g2c.{d.name}", "files": len(files), "lines": _lines(files)})
    return rows


def _lines(files: list[Path]) -> int:
    return sum(len(f.read_text(encoding="utf-8", errors="replace").splitlines()) for f in files)


def _save_fig(fig, path: Path) -> None:
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=80, bbox_inches="tight", format="png"))


def write_plots(rd: RunDir, history: dict) -> list[Path]:
    """``loss.png`` (train every step, smoothed, and val), ``lr.png``, ``grad_norm.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    steps = history["step"]
    if not steps:
        return paths
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, history["train_loss"], alpha=0.3, label="train (per step)")
    k = max(1, len(steps) // 50)
    if k > 1:
        import numpy as np

        sm = np.convolve(history["train_loss"], np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], sm, label=f"train ({k}-step mean)")
    if history["val_step"]:
        ax.plot(history["val_step"], history["val_loss"], "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    _save_fig(fig, rd.root / "loss.png")
    paths.append(rd.root / "loss.png")
    plt.close(fig)
    for key, fname, label in (("lr", "lr.png", "learning rate"),
                              ("grad_norm", "grad_norm.png", "gradient norm (before clipping)")):  # fmt: skip
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.plot(steps, history[key])
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        _save_fig(fig, rd.root / fname)
        paths.append(rd.root / fname)
        plt.close(fig)
    return paths


def _fmt(v, spec: str = ".3f") -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def _quote(text: str) -> str:
    """Generated text verbatim in a fenced block (Markdown would reflow it otherwise)."""
    return "```text\n" + text.replace("```", "` ` `").strip("\n") + "\n```"


def write_report(
    run_dir: str | Path,
    *,
    evaluation: Sequence[Sequence[str]] = (),
    sections: Sequence[Sequence[str]] = (),
) -> Path:
    """Write ``report.md`` of a finished run from its artifacts; returns its path.

    ``evaluation`` and ``sections``: more Markdown sections (each a list of lines starting
    with its "## " heading), placed after the stage table and after the samples (before the
    size of the code). A speedrun's post-training rows and closing commands come from its
    artifacts (module docstring)."""
    rd = RunDir(run_dir)
    manifest = rd.read_json(rd.root / "manifest.json", {}) or {}
    stages = rd.load_stages()
    metrics = manifest.get("metrics", {})
    env = manifest.get("environment", {})
    cfg = manifest.get("run_config", {})
    post = rd.read_json(rd.root / POSTTRAIN_FILE, {}) or {}
    rows, post_s = posttrain_rows(rd.root, post)
    pre_s = float(manifest.get("total_seconds") or 0.0)
    wall = f"{pre_s + post_s:.1f} s (pretrain stage {pre_s:.1f} s + post-training {post_s:.1f} s)"
    lines = [f"# {manifest.get('name', rd.root.name)} — run report", ""]
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(manifest.get("created_unix", 0)))
    lines += [
        f"- run directory: `{rd.root}`; created {created}; code `{manifest.get('code_version')}`",
        f"- data: {', '.join(manifest.get('data', []))}; tokenizer: {cfg.get('data', {}).get('tokenizer')} "
        f"(vocabulary {stages.get('tokenizer', {}).get('vocab_size')})",
        f"- model: {manifest.get('num_parameters', 0):,} parameters "
        f"({metrics.get('num_parameters_non_embedding', 0):,} without embeddings); "
        + ", ".join(f"{k}={v}" for k, v in manifest.get("model_config", {}).items()
                    if k in ("embedding_dim", "num_layers", "num_heads", "max_seq_len")),
        f"- device: {env.get('device')}, threads {env.get('threads')}, torch {env.get('torch')}, "
        f"load average at the end {_fmt(env.get('load_avg_1min'), '.1f')}",
        f"- command: `{env.get('command') or 'library call'}`",
        f"- total wall time: {wall if rows else _fmt(manifest.get('total_seconds'), '.1f') + ' s'}",
        "",
        "## Stages",
        "",
        "| stage | time (s) | tokens seen | tokens/s | MFU | train loss | val loss | val bits/byte | parameters |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name in STAGE_ORDER:
        s = stages.get(name)
        if s is None:
            continue
        tokens = s.get("tokens") if name == "pretraining" else s.get("train_tokens")
        mfu = s.get("mfu")
        mfu_s = f"{100 * mfu:.2f}%{' (est.)' if s.get('mfu_estimated') else ''}" if mfu else ""
        row = [
            name,
            _fmt(s.get("seconds"), ".1f"),
            f"{tokens:,}" if tokens else "",
            f"{s['tokens_per_s']:,.0f}" if s.get("tokens_per_s") else "",
            mfu_s,
            _fmt(s.get("train_loss")),
            _fmt(s.get("val_loss")),
            _fmt(s.get("val_bpb")),
            f"{manifest.get('num_parameters', 0):,}" if name == "pretraining" else "",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += rows
    if rows:
        total = pre_s + post_s
        budget = post.get("budget") or {}
        of = (f" of the {budget['total_minutes']:g}-minute budget ({budget['pretrain_minutes']:g}"
              f" pretraining stage + {budget['posttrain_minutes']:g} post-training)"
              if budget.get("total_minutes") else "")  # fmt: skip
        lines += [
            f"| **speedrun total** | **{total:.1f}** |  |  |  |  |  |  |  |",
            "",
            f"Whole speedrun: {total:.1f} s = {total / 60:.1f} min of stage time{of}. SFT's "
            "val loss is its held-out assistant-token loss, DPO's its held-out DPO loss; val "
            "bits/byte of the SFT and DPO rows: each stage's model on the pretraining validation "
            "tokens (the evaluation row's tokens).",
        ]
    lines += [
        "",
        f"Final: validation loss **{_fmt(metrics.get('val_loss'))}** nats/token "
        f"(perplexity {_fmt(metrics.get('val_perplexity'), '.1f')}), "
        f"**{_fmt(metrics.get('val_bpb'))} bits per byte** over "
        f"{metrics.get('val_tokens_evaluated', 0):,} validation tokens; "
        f"{metrics.get('steps', 0):,} steps, {metrics.get('tokens_seen', 0):,} training tokens.",
        "",
        *_join(evaluation),
        "## Curves",
        "",
        "![loss](loss.png)",
        "",
        "![learning rate](lr.png) ![gradient norm](grad_norm.png)",
        "",
        "## Samples",
        "",
    ]
    samples = rd.read_jsonl(rd.samples)
    during = [s for s in samples if s.get("tag") == "during"]
    final = [s for s in samples if s.get("tag") == "final"]
    run = cfg.get("run", {})
    lines.append(
        f"Temperature {run.get('sample_temperature')}, top-k {run.get('sample_top_k')}, "
        f"{run.get('sample_tokens')} tokens after the prompt {run.get('prompt', '')!r}."
    )
    lines.append("")
    for s in final:
        lines += [f"**Final model (step {s['step']})**", "", _quote(s["text"]), ""]
    if during:
        lines += ["### During training", ""]
        for s in during:
            lines += [f"**Step {s['step']}**", "", _quote(s["text"]), ""]
    lines += _join(sections)
    lines += ["## Size of the code", "", "| module | files | lines |", "|---|---:|---:|"]
    rows = code_size_table()
    for r in rows:
        lines.append(f"| `{r['module']}` | {r['files']} | {r['lines']:,} |")
    lines.append(
        f"| **total** | {sum(r['files'] for r in rows)} | {sum(r['lines'] for r in rows):,} |"
    )
    lines.append("")
    if (rd.root / CHAT_POINTER_FILE).is_file():
        lines += talk_to_it(rd.root)
    return atomic_write_text(rd.report, "\n".join(lines))


def _join(sections: Sequence[Sequence[str]]) -> list[str]:
    lines: list[str] = []
    for section in sections:
        lines += [*section, ""] if section and section[-1] != "" else list(section)
    return lines


def talk_to_it(root: str | Path) -> list[str]:
    """The card's closing lines: the two commands that talk to the chat-ready run ``root``."""
    return [
        "## Talk to it",
        "",
        f"`{root}` is chat-ready: its `{CHAT_POINTER_FILE}` names the final model, so both "
        "commands load it (the pretrained base stays addressable as "
        f"`{Path(root) / 'base'}`):",
        "",
        "```bash",
        f"g2c chat {root}",
        f"g2c serve {root}",
        "```",
        "",
    ]


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def posttrain_rows(root: str | Path, post: dict | None = None) -> tuple[list[str], float]:
    """(stage-table rows, their total seconds) for the post-training of the run in ``root``:
    one row per finished stage directory of :data:`POSTTRAIN_STAGES` (its manifest's total
    time; tokens seen, tokens/s, median MFU from its ``metrics.jsonl``; last train loss; its
    held-out loss; the val bits per byte in ``post["stages"]``) and one per timed part of
    ``post["parts"]``. No post-training → ``([], 0.0)``."""
    root, post = Path(root), post or {}
    rows, total = [], 0.0
    evals = post.get("stages") or {}
    for name in POSTTRAIN_STAGES:
        rd = RunDir(root / name)
        manifest = rd.read_json(rd.root / "manifest.json", {}) or {}
        if manifest.get("status") != "complete":
            continue
        logs = rd.read_jsonl(rd.metrics)
        last = logs[-1] if logs else {}
        tokens, train_s = last.get("tokens_seen"), last.get("elapsed_s")
        mfu = _median([r["mfu"] for r in logs if r.get("mfu") is not None])
        est = " (est.)" if any(r.get("mfu_estimated") for r in logs) else ""
        m = manifest.get("metrics", {})
        seconds = float(manifest.get("total_seconds") or 0.0)
        total += seconds
        row = [
            name.upper(),
            f"{seconds:.1f}",
            f"{tokens:,}" if tokens else "",
            f"{tokens / train_s:,.0f}" if tokens and train_s else "",
            f"{100 * mfu:.2f}%{est}" if mfu else "",
            _fmt(m.get("train_loss")),
            _fmt(m.get(_STAGE_VAL_LOSS[name])),
            _fmt((evals.get(name) or {}).get("val_bpb")),
            f"{manifest.get('trainable_parameters', 0):,} trained",
        ]
        rows.append("| " + " | ".join(row) + " |")
    for part, seconds in (post.get("parts") or {}).items():
        total += float(seconds)
        rows.append(f"| {part} | {float(seconds):.1f} |  |  |  |  |  |  |  |")
    return rows, total
