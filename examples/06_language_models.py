# %% [markdown]
# # 06 language models — before the transformer
#
# Six character-level models on the same contiguous 90/10 TinyShakespeare split, scored on the
# same validation targets: counts bigram, neural bigram, Bengio MLP, vanilla RNN, LSTM and a
# WaveNet-style hierarchy (all from `g2c.lm`). The script prints and writes a markdown table of
# validation perplexity and bits per character, a 200-character sample from each model, and a
# plot of validation perplexity vs training step.
#
# Run: `python examples/06_language_models.py` (a few minutes on one CPU thread) or `--smoke`
# (seconds; the first 30,000 characters, 30 steps). Same as `g2c lm compare`.

# %%
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from g2c.artifacts import atomic_write_json, atomic_write_text
from g2c.data import load_text
from g2c.lm import CompareConfig, char_split, compare_models, plot_val_curves, results_markdown

FALLBACK_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. "
    "resolved.\n\n"
) * 40


# %% [markdown]
# ## 1. Data: characters, one contiguous split
def load(smoke: bool) -> tuple[str, str]:
    """TinyShakespeare (first 30k characters in smoke mode); a built-in snippet when absent."""
    try:
        text = load_text("tinyshakespeare", download=not smoke)
        source = "tinyshakespeare"
    except (FileNotFoundError, OSError):
        if not smoke:
            raise
        text, source = FALLBACK_TEXT, "built-in snippet"
    if smoke:
        text = text[:30_000]
    return text, source


# %% [markdown]
# ## 2. Train every model with the same budget, score on the same targets
def main(argv: list[str] | None = None) -> int:
    """Run the comparison; write ``06-table.md``, ``06-results.json`` and the plot."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default="runs/06_language_models")
    ap.add_argument("--plot", default=None, help="PNG path (default: OUT/06-val-ppl.png)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    text, source = load(args.smoke)
    tok, train_ids, val_ids = char_split(text, 0.1)
    if args.smoke:
        cfg = CompareConfig(
            steps=30,
            batch_size=16,
            context_length=8,
            embedding_dim=8,
            hidden_dim=32,
            eval_every=10,
            eval_tokens=500,
            sample_tokens=60,
        )
    else:
        cfg = CompareConfig(steps=args.steps)
    print(
        f"{source}: {len(train_ids):,} train / {len(val_ids):,} val characters, V={tok.vocab_size}"
    )
    t0 = time.perf_counter()
    results = compare_models(
        train_ids,
        val_ids,
        tok.vocab_size,
        cfg,
        prompt=tok.encode("\n"),
        on_model=lambda name: print(f"  {name} ...", flush=True),
    )
    seconds = time.perf_counter() - t0
    md = results_markdown(results, decode=tok.decode)
    print(md)
    print(f"total {seconds:.1f} s on {args.threads} thread(s)")
    out = Path(args.out)
    atomic_write_text(out / "06-table.md", md)
    atomic_write_json(
        out / "06-results.json",
        {
            "data": source,
            "config": cfg.to_dict(),
            "threads": args.threads,
            "seconds": seconds,
            "results": results,
        },
    )
    plot = plot_val_curves(results, args.plot or out / "06-val-ppl.png")
    print(f"wrote {out / '06-table.md'}, {out / '06-results.json'}, {plot}")
    print(json.dumps({r["model"]: round(r["val_ppl"], 3) for r in results}))
    return 0


# %%
if __name__ == "__main__":
    raise SystemExit(main())
