"""Experiment 10 — ShakespeareLM: a full `g2c train` run with samples every N steps, and one
controlled scale-up (same data, steps, batch and learning rate; a wider, deeper model).

Runs the library pipeline behind `g2c train --preset shakespeare-char` twice into
``runs/examples/10_base`` and ``runs/examples/10_scaled`` (each a complete run directory with
report.md), then plots both validation curves and prints the samples taken during training.

    .venv/bin/python examples/10_shakespeare.py           # full: several minutes
    .venv/bin/python examples/10_shakespeare.py --smoke   # seconds (in-script text, tiny models)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from g2c.runs import apply_overrides, get_preset, run_pretraining
from g2c.runs.experiment import SMOKE_TEXT, save_json_result
from g2c.runs.rundir import RunDir

SCALE_UP = {"embedding_dim": 192, "num_layers": 6, "num_heads": 6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default="runs/examples")
    ap.add_argument("--plot", default="docs/modules/img/exp_shakespeare.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("G2C_THREADS", "1")))
    steps = args.steps or (20 if args.smoke else 1000)
    base = get_preset("shakespeare-char")
    over = {"train": {"max_steps": steps, "eval_every": max(1, steps // 10), "seed": 1337},
            "run": {"sample_every": max(1, steps // 4), "sample_tokens": 20 if args.smoke else 200}}  # fmt: skip
    tmp = None
    out = Path(args.out)
    if args.smoke:
        tmp = tempfile.TemporaryDirectory()
        out = Path(tmp.name)
        (out / "text.txt").write_text(SMOKE_TEXT, encoding="utf-8")
        over["data"] = {"text_file": str(out / "text.txt")}
        over["model"] = {"embedding_dim": 16, "num_layers": 1, "num_heads": 2}
        over["train"].update(eval_iters=2, log_every=5)
    runs = {
        "base": apply_overrides(base, over),
        "scaled": apply_overrides(base, {**over, "model": {**over.get("model", {}),
                                                           **({} if args.smoke else SCALE_UP)}}),
    }  # fmt: skip
    if args.smoke:
        runs["scaled"] = apply_overrides(runs["scaled"], {"model": {"embedding_dim": 32}})
    results = {}
    for name, cfg in runs.items():
        r = run_pretraining(cfg, out / f"10_{name}", fresh=True)
        results[name] = r
        print(f"{name}: {r.metrics['num_parameters']:,} params, val loss {r.metrics['val_loss']:.3f}, "
              f"{r.metrics['val_bpb']:.3f} bits/byte after {r.step} steps")  # fmt: skip
        for s in RunDir(r.run_dir).read_jsonl(RunDir(r.run_dir).samples):
            print(f"--- {name} step {s['step']} ({s['tag']}):\n{s['text'].strip()[:300]}")
    if tmp is not None:
        tmp.cleanup()
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results.items():
        ax.plot(r.history["val_step"], r.history["val_loss"], "o-",
                label=f"{name} ({r.metrics['num_parameters'] / 1e6:.1f}M params)")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("val loss (nats/char)")
    ax.set_title("ShakespeareLM: base vs scale-up (same data, steps, lr)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(args.plot, dpi=80, bbox_inches="tight")
    save_json_result("bench/results/exp_shakespeare.json", {
        "steps": steps, "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0],
        "runs": {n: {"metrics": r.metrics, "run_dir": str(r.run_dir),
                     "pretraining": RunDir(r.run_dir).load_stages().get("pretraining")}
                 for n, r in results.items()},
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
