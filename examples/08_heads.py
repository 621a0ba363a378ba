"""Experiment 08 — 1, 4 and 8 attention heads at a fixed width: loss curves compared.

Same width D, same depth, same data, same steps, same seed; only the number of heads changes
(head size D/H shrinks as H grows, so the parameter count is identical). Character-level
TinyShakespeare.

    .venv/bin/python examples/08_heads.py            # full: a few minutes on 1 CPU thread
    .venv/bin/python examples/08_heads.py --smoke    # seconds

Writes docs/modules/img/exp_heads.png and bench/results/exp_heads.json (full run only).
"""

from __future__ import annotations

import argparse
import os

import torch

from g2c.runs.experiment import example_text, save_json_result, text_ids, train_for
from g2c.transformer import TransformerLM


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default="docs/modules/img/exp_heads.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("G2C_THREADS", "1")))
    tok, train, val = text_ids(example_text(args.smoke), "char")
    steps = args.steps or (12 if args.smoke else 800)
    D, L, T = (16, 1, 16) if args.smoke else (64, 2, 64)
    results = {}
    for H in (1, 4, 8) if not args.smoke else (1, 4, 8):
        if D % H:
            continue
        model = TransformerLM(tok.vocab_size, D, L, H, T, init="gpt2", attention_impl="sdpa", fused=True,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
        r = train_for(model, train, val, steps=steps, batch_size=16, context_length=T,
                      max_lr=3e-3, eval_every=max(1, steps // 8), eval_iters=5 if args.smoke else 20)  # fmt: skip
        results[H] = r
        print(f"heads {H}: params {r.num_parameters:,}  val loss {r.val_loss:.3f}  "
              f"{r.tokens_per_s:,.0f} tok/s  {r.seconds:.1f} s")  # fmt: skip
    if args.smoke:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for H, r in results.items():
        ax.plot(
            r.history["val_step"], r.history["val_loss"], "o-", label=f"{H} head(s), hd={D // H}"
        )
    ax.set_xlabel("step")
    ax.set_ylabel("val loss (nats/char)")
    ax.set_title(f"heads at fixed width D={D}, L={L}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    save_json_result("bench/results/exp_heads.json", {
        "config": {"D": D, "L": L, "T": T, "steps": steps, "batch_size": 16, "threads": torch.get_num_threads(),
                   "load_avg_1min": os.getloadavg()[0]},
        "results": {str(H): {"val_loss": r.val_loss, "params": r.num_parameters,
                             "tokens_per_s": r.tokens_per_s, "seconds": r.seconds,
                             "val_curve": list(zip(r.history["val_step"], r.history["val_loss"]))}
                    for H, r in results.items()},
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
