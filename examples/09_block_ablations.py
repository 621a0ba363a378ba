"""Experiment 09 — the transformer block, taken apart: pre-norm vs post-norm, no residual
connections, no layer norm.

Four models of the same width and depth trained on the same data for the same steps:

- ``pre-norm``  (GPT-2): x + f(LN(x));
- ``post-norm`` (2017 Transformer): LN(x + f(x));
- ``no-residual``: x ← f(LN(x)) — every block must re-create the whole signal; the gradient
  has no identity path, so a deep stack trains slowly or not at all;
- ``no-layernorm``: x + f(x) with every LayerNorm (and the final one) replaced by the
  identity — the residual stream grows without bound; at a learning rate the normalised
  models take comfortably, it trains worse or diverges (NaN → reported as ∞).

The ablations are built here, in the experiment (not in the library): a block's ``forward`` is
replaced (no residual), or its norms are swapped for :class:`Identity` (no layer norm).

    .venv/bin/python examples/09_block_ablations.py          # full: a few minutes
    .venv/bin/python examples/09_block_ablations.py --smoke  # seconds
"""

from __future__ import annotations

import argparse
import os
import types

import torch

from g2c.nn import Module
from g2c.runs.experiment import example_text, save_json_result, text_ids, train_for
from g2c.transformer import TransformerLM


class Identity(Module):
    """x → x (stands in for a removed LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) → (..., D) unchanged."""
        return x


def _no_residual_forward(self, x: torch.Tensor) -> torch.Tensor:
    """Pre-norm block without its two residual connections: x ← ffn(ln2(attn(ln1(x))))."""
    x = self.attn(self.ln1(x))
    return self.ffn(self.ln2(x))


def build(variant: str, vocab_size: int, D: int, L: int, H: int, T: int) -> TransformerLM:
    """The course model with one ablation applied (``pre-norm`` = the unmodified model)."""
    norm_position = "post" if variant == "post-norm" else "pre"
    model = TransformerLM(vocab_size, D, L, H, T, init="gpt2", norm_position=norm_position,
                          attention_impl="sdpa", fused=True,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    if variant == "no-residual":
        for block in model.blocks:
            block.forward = types.MethodType(_no_residual_forward, block)
    elif variant == "no-layernorm":
        for block in model.blocks:
            block.ln1, block.ln2 = Identity(), Identity()
        model.ln_final = Identity()
    return model


VARIANTS = ("pre-norm", "post-norm", "no-residual", "no-layernorm")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default="docs/modules/img/exp_block_ablations.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("G2C_THREADS", "1")))
    tok, train, val = text_ids(example_text(args.smoke), "char")
    steps = args.steps or (10 if args.smoke else 600)
    D, L, H, T = (16, 2, 2, 16) if args.smoke else (64, 6, 4, 64)
    results = {}
    for v in VARIANTS:
        model = build(v, tok.vocab_size, D, L, H, T)
        r = train_for(model, train, val, steps=steps, batch_size=16, context_length=T,
                      max_lr=args.lr, grad_clip=None, eval_every=max(1, steps // 10),
                      eval_iters=5 if args.smoke else 20)  # fmt: skip
        results[v] = r
        print(f"{v:13s} params {r.num_parameters:,}  val loss {r.val_loss:.3f}  "
              f"final train {r.history['train_loss'][-1]:.3f}  {r.seconds:.1f} s")  # fmt: skip
    if args.smoke:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for v, r in results.items():
        axes[0].plot(r.history["step"], r.history["train_loss"], label=v, alpha=0.8)
        axes[1].plot(r.history["val_step"], r.history["val_loss"], "o-", label=v)
    axes[0].set_ylabel("train loss (nats/char)")
    axes[1].set_ylabel("val loss (nats/char)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylim(1.2, 4.5)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"block ablations: D={D}, L={L}, lr={args.lr}, no clipping")
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    save_json_result("bench/results/exp_block_ablations.json", {
        "config": {"D": D, "L": L, "H": H, "T": T, "steps": steps, "lr": args.lr,
                   "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0]},
        "results": {v: {"val_loss": r.val_loss, "final_train_loss": r.history["train_loss"][-1],
                        "max_grad_norm": max(r.history["grad_norm"]) if r.history["grad_norm"] else None,
                        "params": r.num_parameters, "steps_done": r.steps, "seconds": r.seconds}
                    for v, r in results.items()},
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
