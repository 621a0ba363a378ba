"""Experiment 09 (positions) — learned vs sinusoidal vs RoPE vs no positions; and the modern
block (RoPE + RMSNorm + SwiGLU, no biases) vs the course block at equal wall-clock.

Part 1: four position schemes, same model otherwise, same steps (character-level
TinyShakespeare). "none" still works somewhat — a causal mask leaks position (a token can
count how many tokens it sees) — but worse.

Part 2: the course block (learned positions, LayerNorm, GELU MLP, biases) and the modern
block (Llama-style) each train for the same number of *seconds*; the number of steps follows
from each model's measured step time. Loss against wall time and tokens/s side by side.

    .venv/bin/python examples/09_positions.py          # full: a few minutes
    .venv/bin/python examples/09_positions.py --smoke  # seconds
"""

from __future__ import annotations

import argparse
import os

import torch

from g2c.runs.experiment import example_text, save_json_result, text_ids, train_for
from g2c.transformer import TransformerLM

POSITIONS = ("learned", "sinusoidal", "rope", "none")
BLOCKS = {
    "course (learned, LayerNorm, GELU)": {},
    "modern (RoPE, RMSNorm, SwiGLU)": {"positional": "rope", "norm": "rmsnorm", "mlp": "swiglu",
                                       "bias": False},
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="per model in part 2")
    ap.add_argument("--out", default="docs/modules/img/exp_positions.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("G2C_THREADS", "1")))
    tok, train, val = text_ids(example_text(args.smoke), "char")
    steps = args.steps or (10 if args.smoke else 600)
    seconds = args.seconds or (1.0 if args.smoke else 60.0)
    D, L, H, T = (16, 1, 2, 16) if args.smoke else (64, 3, 4, 128)
    common = dict(batch_size=16, context_length=T, max_lr=3e-3, eval_iters=5 if args.smoke else 20)

    def model(**kw) -> TransformerLM:
        return TransformerLM(tok.vocab_size, D, L, H, T, init="gpt2", attention_impl="sdpa", fused=True,
                             generator=torch.Generator().manual_seed(0), **kw)  # fmt: skip

    pos = {}
    for p in POSITIONS:
        r = train_for(
            model(positional=p), train, val, steps=steps, eval_every=max(1, steps // 10), **common
        )
        pos[p] = r
        print(f"positional={p:10s} params {r.num_parameters:,}  val loss {r.val_loss:.3f}")
    blocks = {}
    for name, kw in BLOCKS.items():
        r = train_for(model(**kw), train, val, seconds=seconds, **common)
        blocks[name] = r
        print(f"{name:34s} params {r.num_parameters:,}  {r.steps} steps in {r.seconds:.1f} s  "
              f"val loss {r.val_loss:.3f}  {r.tokens_per_s:,.0f} tok/s")  # fmt: skip
    if args.smoke:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for p, r in pos.items():
        axes[0].plot(r.history["val_step"], r.history["val_loss"], "o-", label=p)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("val loss (nats/char)")
    axes[0].set_title(f"positions (D={D}, L={L}, T={T})")
    for name, r in blocks.items():
        t = [e["elapsed_s"] for e in r.events if e["val_loss"] is not None]
        v = [e["val_loss"] for e in r.events if e["val_loss"] is not None]
        axes[1].plot(t, v, "o-", label=name)
    axes[1].set_xlabel("wall-clock seconds")
    axes[1].set_ylabel("val loss")
    axes[1].set_title(f"equal wall-clock ({seconds:.0f} s each)")
    names = list(blocks)
    axes[2].bar(range(len(names)), [blocks[n].tokens_per_s for n in names], color=["C0", "C1"])
    axes[2].set_xticks(range(len(names)), [n.split(" (")[0] for n in names])
    axes[2].set_ylabel("training tokens/s")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    save_json_result("bench/results/exp_positions.json", {
        "config": {"D": D, "L": L, "H": H, "T": T, "steps": steps, "seconds": seconds,
                   "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0]},
        "positions": {p: {"val_loss": r.val_loss, "params": r.num_parameters} for p, r in pos.items()},
        "blocks": {n: {"val_loss": r.val_loss, "params": r.num_parameters, "steps": r.steps,
                       "seconds": r.seconds, "tokens_per_s": r.tokens_per_s}
                   for n, r in blocks.items()},
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
