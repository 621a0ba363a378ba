"""Experiment 12 — scaling: three model sizes (about 0.25M, 1M and 5M parameters) trained on
the Gutenberg corpus with the same BPE tokenizer and the same number of tokens.

Validation loss against parameters and against training FLOPs (C = 6·N·D, N non-embedding
parameters, D tokens; Kaplan et al. 2020), each with a fitted power law L = a·x^b, and the
three models' samples side by side.

    .venv/bin/python examples/12_scaling.py           # full: ~10 minutes on a loaded 2-core CPU
    .venv/bin/python examples/12_scaling.py --smoke   # seconds
"""

from __future__ import annotations

import argparse
import os

import torch

from g2c.runs.experiment import (
    example_text,
    fit_power_law,
    save_json_result,
    text_ids,
    train_for,
)
from g2c.sampling import generate
from g2c.transformer import TransformerLM

SIZES = {  # name: (D, L, H) at vocabulary 2048 → about 0.23M, 1.05M, 5.2M parameters
    "0.25M": (64, 2, 4),
    "1M": (128, 4, 4),
    "5M": (256, 6, 8),
}
SMOKE_SIZES = {"tiny": (16, 1, 2), "small": (24, 1, 2), "medium": (32, 2, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--max-chars", type=int, default=3_000_000, help="Gutenberg characters used")
    ap.add_argument("--out", default="docs/modules/img/exp_scaling.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("G2C_THREADS", "1")))
    text = example_text(args.smoke, "gutenberg", None if args.smoke else args.max_chars)
    vocab = 300 if args.smoke else 2048
    tok, train, val = text_ids(text, "bpe", vocab_size=vocab, val_fraction=0.05)
    steps = args.steps or (10 if args.smoke else 1500)
    B, T = 8, (16 if args.smoke else 64)
    sizes = SMOKE_SIZES if args.smoke else SIZES
    results, samples = {}, {}
    prompt = tok.encode("The ")
    for name, (D, L, H) in sizes.items():
        model = TransformerLM(tok.vocab_size, D, L, H, T, init="gpt2", attention_impl="sdpa", fused=True,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
        r = train_for(model, train, val, steps=steps, batch_size=B, context_length=T,
                      max_lr=2e-3 if D <= 128 else 1e-3, eval_every=max(1, steps // 5),
                      eval_iters=4 if args.smoke else 40)  # fmt: skip
        results[name] = r
        out = generate(model, prompt, 8 if args.smoke else 60, temperature=0.8, top_k=40,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
        samples[name] = tok.decode(out.tolist())
        n_non_emb = model.num_parameters(exclude_embeddings=True)
        print(f"{name:>6}: {r.num_parameters:,} params ({n_non_emb:,} non-embedding), "
              f"{r.tokens:,} tokens, {r.train_flops:.2e} FLOPs, val loss {r.val_loss:.3f}, "
              f"{r.seconds:.0f} s")  # fmt: skip
    params = [r.num_parameters for r in results.values()]
    flops = [r.train_flops for r in results.values()]
    losses = [r.val_loss for r in results.values()]
    a_n, b_n = fit_power_law(params, losses)
    a_c, b_c = fit_power_law(flops, losses)
    print(f"fit: L = {a_n:.3g}·N^{b_n:.3f};  L = {a_c:.3g}·C^{b_c:.3f}")
    for name, s in samples.items():
        print(f"--- {name}:\n{s}\n")
    if args.smoke:
        return 0
    save_json_result("bench/results/exp_scaling.json", {
        "vocab_size": vocab, "steps": steps, "batch_size": B, "context_length": T,
        "max_chars": args.max_chars, "threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
        "models": {n: {"params": r.num_parameters, "tokens": r.tokens, "flops": r.train_flops,
                       "val_loss": r.val_loss, "seconds": r.seconds, "tokens_per_s": r.tokens_per_s,
                       "sample": samples[n]} for n, r in results.items()},
        "fit_params": {"a": a_n, "b": b_n}, "fit_flops": {"a": a_c, "b": b_c},
    })  # fmt: skip
    plot("bench/results/exp_scaling.json", args.out)
    return 0


def plot(results_json: str, out: str) -> None:
    """Loss vs N and vs C with the fitted power laws, drawn from the results JSON."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    with open(results_json, encoding="utf-8") as f:
        d = json.load(f)
    names = list(d["models"])
    params = [d["models"][n]["params"] for n in names]
    flops = [d["models"][n]["flops"] for n in names]
    losses = [d["models"][n]["val_loss"] for n in names]
    fits = (
        (d["fit_params"]["a"], d["fit_params"]["b"]),
        (d["fit_flops"]["a"], d["fit_flops"]["b"]),
    )
    labels = ("parameters N", "training FLOPs C = 6·N·D")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, xs, (a, b), label in zip(axes, (params, flops), fits, labels):
        ax.loglog(xs, losses, "o", ms=8)
        grid = np.geomspace(min(xs) / 1.5, max(xs) * 1.5, 50)
        ax.loglog(grid, a * grid**b, "--", label=f"L = {a:.3g}·x^{b:.3f}")
        for name, x, y in zip(names, xs, losses):
            ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
        ax.set_xlabel(label)
        ax.set_ylabel("val loss (nats/token)")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    first = d["models"][names[0]]
    fig.suptitle(f"Gutenberg, BPE {d['vocab_size']}, {first['tokens']:,} tokens per model")
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
