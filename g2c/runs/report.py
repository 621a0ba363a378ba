"""The run report: plots of the training curves, a stage table, samples and the size of the code.

``write_report(run_dir)`` reads what the run left on disk (manifest, stages.json, samples.jsonl,
plots) and writes ``report.md`` — like nanochat's report card, it is regenerated from the
artifacts, so it is the same whether the run finished in one go or was resumed.
``code_size_table()`` counts the lines and files of each g2c subpackage (nanochat measures its
own size the same way).
"""

from __future__ import annotations

import time
from pathlib import Path

from g2c.artifacts import atomic_write_text, atomic_write_with
from g2c.runs.rundir import RunDir

STAGE_ORDER = ("tokenizer", "pretraining", "evaluation", "sampling", "report")


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


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` of a finished run from its artifacts; returns its path."""
    rd = RunDir(run_dir)
    manifest = rd.read_json(rd.root / "manifest.json", {}) or {}
    stages = rd.load_stages()
    metrics = manifest.get("metrics", {})
    env = manifest.get("environment", {})
    cfg = manifest.get("run_config", {})
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
        f"- total wall time: {_fmt(manifest.get('total_seconds'), '.1f')} s",
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
    lines += [
        "",
        f"Final: validation loss **{_fmt(metrics.get('val_loss'))}** nats/token "
        f"(perplexity {_fmt(metrics.get('val_perplexity'), '.1f')}), "
        f"**{_fmt(metrics.get('val_bpb'))} bits per byte** over "
        f"{metrics.get('val_tokens_evaluated', 0):,} validation tokens; "
        f"{metrics.get('steps', 0):,} steps, {metrics.get('tokens_seen', 0):,} training tokens.",
        "",
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
    lines += ["## Size of the code", "", "| module | files | lines |", "|---|---:|---:|"]
    rows = code_size_table()
    for r in rows:
        lines.append(f"| `{r['module']}` | {r['files']} | {r['lines']:,} |")
    lines.append(
        f"| **total** | {sum(r['files'] for r in rows)} | {sum(r['lines'] for r in rows):,} |"
    )
    lines.append("")
    return atomic_write_text(rd.report, "\n".join(lines))
