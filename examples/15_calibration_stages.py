"""Calibration before and after post-training: does SFT / DPO hurt calibration?

    .venv/bin/python examples/15_calibration_stages.py [MODEL ...] [--tasks openbookqa,arc_easy]
        [--limit 200] [--out-dir runs/calibration]
        [--png docs/modules/img/15_calibration_stages.png] [--threads 1] [--smoke]

Each MODEL (a run directory, a run name or ``smollm2``; default: runs/speedrun,
runs/speedrun/sft, runs/speedrun/dpo — those present — and smollm2) answers the first
``--limit`` questions of each multiple-choice task zero-shot by log-likelihood
(:mod:`g2c.runs.eval`, lm-evaluation-harness prompts). A prediction's confidence is the
softmax over the choices' summed log-likelihoods (the probability the model gives its own
pick), so ECE (Guo et al. 2017, 10 equal-width bins) compares that confidence with accuracy.
The script prints a table (accuracy, mean confidence, overconfidence = confidence − accuracy,
ECE) and draws one reliability diagram per task with every model on it. Per-example records
go to ``--out-dir/<model>/records.jsonl`` (a rerun resumes; ``--fresh`` starts over) and the
table to ``--out-dir/calibration.json``. --smoke: two untrained tiny models, 8 questions.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from g2c.artifacts import atomic_write_json, atomic_write_with
from g2c.eval.core import expected_calibration_error, reliability_curve
from g2c.runs.eval import EvalConfig, Evaluated, evaluate_task, load_evaluated, prepare_task
from g2c.runs.experiment import SMOKE_TEXT
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

DEFAULT_MODELS = ("runs/speedrun/base", "runs/speedrun/sft", "runs/speedrun/dpo", "smollm2")
LABELS = {
    "runs/speedrun/base": "speedrun base",
    "runs/speedrun/sft": "speedrun SFT",
    "runs/speedrun/dpo": "speedrun DPO",
    "smollm2": "SmolLM2-135M-Instruct",
}


def _smoke_models() -> list[tuple[str, Evaluated]]:
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast(SMOKE_TEXT, 300)
    out = []
    for seed in (0, 1):
        model = TransformerLM(
            tok.vocab_size, 16, 1, 2, 128, generator=torch.Generator().manual_seed(seed)
        ).eval()
        name = f"tiny-untrained-{seed}"
        out.append((name, Evaluated(model, tok, None, name, name)))
    return out


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.strip("/")) or "model"


def evaluate_model(name: str, ev: Evaluated, tasks: list[str], limit: int, out: Path) -> dict:
    """task → {"metrics", "confidences", "correct"} for one model (records resumed)."""
    cfg = EvalConfig(model=name, tasks=tasks, limit=limit)
    out.mkdir(parents=True, exist_ok=True)
    res = {}
    for task in tasks:
        entry = evaluate_task(
            prepare_task(task, cfg), ev, cfg, out / "records.jsonl", emit=lambda kind, info: None
        )
        recs = entry["records"]
        res[task] = {
            "metrics": entry["metrics"],
            "n": entry["n"],
            "confidences": [r["confidence"] for r in recs],
            "correct": [bool(r["correct"]) for r in recs],
        }
    return res


def draw(results: dict[str, dict], tasks: list[str], path: Path) -> Path:
    """One reliability diagram per task (accuracy per confidence bin, every model a line,
    point size ∝ examples in the bin) beside the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        for name, res in results.items():
            r = res[task]
            bins = [b for b in reliability_curve(r["confidences"], r["correct"]) if b["count"]]
            ece = expected_calibration_error(r["confidences"], r["correct"])
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                "-",
                alpha=0.6,
                label=f"{name} (ECE {ece:.2f})",
            )
            ax.scatter(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                s=[8 + 300 * b["count"] / r["n"] for b in bins],
                alpha=0.8,
            )
        ax.axhline(0.25, color="gray", linewidth=0.8, linestyle=":")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence (probability of the chosen answer)",
            ylabel="accuracy",
            title=f"{task} (first {r['n']}, zero-shot)",
        )
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    try:
        return atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=100))
    finally:
        plt.close(fig)


def table(results: dict[str, dict], tasks: list[str]) -> list[str]:
    """Markdown rows: model, task, n, acc, acc_norm, mean confidence, overconfidence, ECE."""
    lines = [
        "| model | task | n | acc | acc_norm | mean confidence | overconfidence | ECE |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        for task in tasks:
            r = res[task]
            acc = r["metrics"]["acc"]
            conf = sum(r["confidences"]) / r["n"]
            ece = expected_calibration_error(r["confidences"], r["correct"])
            lines.append(
                f"| {name} | {task} | {r['n']} | {acc:.3f} | "
                f"{r['metrics']['acc_norm']:.3f} | {conf:.3f} | {conf - acc:+.3f} | "
                f"{ece:.3f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="calibration across post-training stages")
    ap.add_argument("models", nargs="*", help="run directories, run names or smollm2")
    ap.add_argument("--tasks", default="openbookqa,arc_easy")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--out-dir", default="runs/calibration")
    ap.add_argument("--png", default="docs/modules/img/15_calibration_stages.png")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fresh", action="store_true", help="discard earlier records first")
    ap.add_argument("--smoke", action="store_true", help="two untrained tiny models (seconds)")
    args = ap.parse_args(argv)
    if args.limit < 1 or args.threads < 1:
        ap.error("--limit and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    EvalConfig(model="check", tasks=tasks, limit=args.limit)  # unknown task names → error
    if args.smoke:
        models, limit = _smoke_models(), min(args.limit, 8)
        out_dir = Path(tempfile.mkdtemp(prefix="g2c-calibration-"))
        png = out_dir / "calibration_stages.png"
    else:
        specs = args.models or [m for m in DEFAULT_MODELS if m == "smollm2" or Path(m).is_dir()]
        models, limit = [], args.limit
        out_dir, png = Path(args.out_dir), Path(args.png)
        for spec in specs:
            models.append((LABELS.get(spec.rstrip("/"), spec), spec))
    results: dict[str, dict] = {}
    for name, model in models:
        t0 = time.perf_counter()
        ev = model if isinstance(model, Evaluated) else load_evaluated(model)
        slug_dir = out_dir / _slug(name)
        if args.fresh:
            (slug_dir / "records.jsonl").unlink(missing_ok=True)
        try:
            results[name] = evaluate_model(name, ev, tasks, limit, slug_dir)
        except FileNotFoundError as exc:  # the benchmark files are not here
            print(f"skipped: {exc}")
            return 0 if args.smoke else 1
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    lines = table(results, tasks)
    print("\n".join(lines))
    summary = {
        name: {t: {"n": r[t]["n"], **r[t]["metrics"]} for t in tasks} for name, r in results.items()
    }
    atomic_write_json(out_dir / "calibration.json", summary)
    print(f"plot: {draw(results, tasks, png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
