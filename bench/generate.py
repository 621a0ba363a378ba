"""Generation benchmark: 200 greedy tokens with and without the KV cache.

g2c ``generate`` on a TransformerLM at the shakespeare-char config (6 layers, 6 heads,
width 384, context 256, vocabulary 65, ~10.7M parameters) with ``use_cache=True`` vs
``use_cache=False`` (target: ≥ 4× faster with the cache, identical tokens), and Hugging Face
``GPT2LMHeadModel.generate`` at the same config (``use_cache`` True / False) as the reference a
user would otherwise pick. Alternating repeats, median wall time, 1 thread.

Writes bench/results/generate.json and prints a table.
Usage: .venv/bin/python bench/generate.py [--quick] [--new-tokens 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.sampling import generate
from g2c.transformer import TransformerLM

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"
CONFIG = dict(vocab_size=65, embedding_dim=384, num_layers=6, num_heads=6, max_seq_len=256)


def hf_model():
    """GPT2LMHeadModel at the same config (dropout 0, no eos so it never stops early)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    cfg = GPT2Config(
        n_layer=6, n_head=6, n_embd=384, n_positions=256, vocab_size=65,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=None,
        pad_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 tokens, 1 repeat")
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    n_new = 50 if args.quick else args.new_tokens
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TransformerLM(**CONFIG, init="gpt2").eval()  # the default kernels
    hf = hf_model()
    prompt = torch.randint(0, 65, (16,), generator=torch.Generator().manual_seed(0))

    def hf_generate(use_cache: bool) -> torch.Tensor:
        with torch.no_grad():
            return hf.generate(
                prompt[None], max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                use_cache=use_cache, attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            )[0]  # fmt: skip

    runs = {
        "g2c_cache": lambda: generate(model, prompt, n_new, temperature=0),
        "g2c_no_cache": lambda: generate(model, prompt, n_new, temperature=0, use_cache=False),
        "hf_cache": lambda: hf_generate(True),
        "hf_no_cache": lambda: hf_generate(False),
    }
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, torch.Tensor] = {}
    load_start = os.getloadavg()
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    res: dict = {
        "config": CONFIG,
        "params": model.num_parameters(),
        "prompt_tokens": len(prompt),
        "new_tokens": n_new,
        "repeats": repeats,
        "threads": 1,
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
    }
    for name, ts in times.items():
        s = statistics.median(ts)
        res[name] = {"median_s": s, "tokens_per_s": n_new / s}
    res["g2c_cache_speedup"] = res["g2c_no_cache"]["median_s"] / res["g2c_cache"]["median_s"]
    res["hf_cache_speedup"] = res["hf_no_cache"]["median_s"] / res["hf_cache"]["median_s"]
    res["g2c_cache_over_hf_cache_time"] = res["g2c_cache"]["median_s"] / res["hf_cache"]["median_s"]
    res["g2c_identical_with_and_without_cache"] = bool(
        torch.equal(outputs["g2c_cache"], outputs["g2c_no_cache"])
    )
    atomic_write_json(args.out, res)

    t = Table(title=f"{n_new} greedy tokens, {res['params'] / 1e6:.1f}M params, 1 thread")
    for col in ("run", "median s", "tokens/s"):
        t.add_column(col)
    for name in runs:
        t.add_row(name, f"{res[name]['median_s']:.3f}", f"{res[name]['tokens_per_s']:.0f}")
    Console().print(t)
    print(
        f"g2c cache speedup {res['g2c_cache_speedup']:.1f}x (target >= 4x), identical tokens: "
        f"{res['g2c_identical_with_and_without_cache']}; HF cache speedup "
        f"{res['hf_cache_speedup']:.1f}x; g2c/HF time with cache "
        f"{res['g2c_cache_over_hf_cache_time']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
