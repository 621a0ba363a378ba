"""Experiment 11 — sampling trade-offs: temperature, top-k and top-p.

1. Samples at temperature 0.1 / 0.7 / 1.0 / 1.5 from one prompt.
2. Diversity vs quality: for several top-k and top-p values, draw a few samples and measure
   diversity as distinct-2 (unique bigrams / bigrams, Li et al. 2016) and quality as the
   model's own perplexity of what it generated (temperature 1). Lower temperature, smaller k
   and smaller p give safer, more repetitive text (low perplexity, low distinct-2); the plot
   shows the frontier each filter traces.

Uses the ShakespeareLM of examples/10_shakespeare.py (``runs/examples/10_base``) when present,
else trains a small one first.

    .venv/bin/python examples/11_sampling_tradeoffs.py           # full: a minute or two
    .venv/bin/python examples/11_sampling_tradeoffs.py --smoke   # seconds
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from g2c.runs.experiment import (
    distinct_n,
    example_text,
    save_json_result,
    sequence_perplexity,
    text_ids,
    train_for,
)
from g2c.sampling import generate
from g2c.transformer import TransformerLM

TEMPERATURES = (0.1, 0.7, 1.0, 1.5)


def get_model(smoke: bool, run_dir: str):
    """(model, tokenizer): the trained example run, or a freshly trained small model."""
    if not smoke and (Path(run_dir) / "model.safetensors").is_file():
        from g2c.runs import load_run

        model, tok, _ = load_run(run_dir)
        return model, tok
    tok, train, val = text_ids(example_text(smoke), "char")
    D, L, T, steps = (16, 1, 16, 30) if smoke else (128, 4, 64, 1500)
    model = TransformerLM(tok.vocab_size, D, L, 4 if not smoke else 2, T, init="gpt2", attention_impl="sdpa",
                          fused=True, generator=torch.Generator().manual_seed(0))  # fmt: skip
    train_for(model, train, val, steps=steps, batch_size=12, context_length=T, max_lr=1e-3,
              eval_iters=2 if smoke else 10)  # fmt: skip
    return model, tok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--run", default="runs/examples/10_base")
    ap.add_argument("--prompt", default="First Citizen:\n")
    ap.add_argument("--out", default="docs/modules/img/exp_sampling.png")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("G2C_THREADS", "1")))
    model, tok = get_model(args.smoke, args.run)
    model.eval()
    prompt = tok.encode(args.prompt)
    n_tokens, n_samples = (12, 2) if args.smoke else (150, 6)

    def draw(seed: int, **kw) -> list[int]:
        out = generate(model, prompt, n_tokens, generator=torch.Generator().manual_seed(seed), **kw)
        return out.tolist()[len(prompt) :]

    temps = {}
    for t in TEMPERATURES:
        text = tok.decode(draw(0, temperature=t))
        temps[str(t)] = text
        print(f"=== temperature {t}\n{args.prompt}{text}\n")
    V = model.vocab_size
    settings = [("top-k", k, {"top_k": k}) for k in (1, 3, 10, 30, V)]
    settings += [("top-p", p, {"top_p": p}) for p in (0.3, 0.6, 0.8, 0.9, 0.95, 1.0)]
    rows = []
    for family, value, kw in settings:
        samples = [draw(s, temperature=1.0, **kw) for s in range(n_samples)]
        ppl = sum(sequence_perplexity(model, prompt, s) for s in samples) / n_samples
        rows.append(
            {
                "filter": family,
                "value": value,
                "distinct_2": distinct_n(samples, 2),
                "perplexity": ppl,
            }
        )
        print(
            f"{family} {value:>6}: distinct-2 {rows[-1]['distinct_2']:.3f}  own perplexity {ppl:.2f}"
        )
    if args.smoke:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for family, marker in (("top-k", "o-"), ("top-p", "s-")):
        rs = [r for r in rows if r["filter"] == family]
        ax.plot([r["perplexity"] for r in rs], [r["distinct_2"] for r in rs], marker, label=family)
        for r in rs:
            label = "all" if family == "top-k" and r["value"] == V else r["value"]
            ax.annotate(str(label), (r["perplexity"], r["distinct_2"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("model's own perplexity of the samples (lower = safer)")
    ax.set_ylabel("distinct-2 (higher = more diverse)")
    ax.set_title("diversity vs quality, temperature 1")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    save_json_result("bench/results/exp_sampling.json", {
        "model": args.run, "prompt": args.prompt, "tokens_per_sample": n_tokens,
        "samples_per_setting": n_samples, "temperatures": temps, "tradeoff": rows,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
