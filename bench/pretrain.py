"""Pretraining benchmark: g2c TransformerLM + Trainer vs Hugging Face GPT-2 + torch AdamW.

Parts (``--part``, default all):
  speed    step time at the classic small CPU config (4 layers, 4 heads, width 128, context
           64, batch 12, char-level TinyShakespeare, AdamW, clip 1.0), "g2c (default)" — the
           default TransformerLM kernels and Trainer loss (only init="gpt2" selected, as
           nanoGPT/HF) — vs GPT2LMHeadModel at the identical config + torch.optim.AdamW,
           measured alternately on the same batches with 1 thread (and 2 threads when the
           load average is low or --two-threads); the g2c reference path (fused=False,
           loss_impl="reference") is timed too.
  quality  2000 iterations, lr 1e-3 → 1e-4 cosine (warmup 100), betas (0.9, 0.99), dropout 0,
           90/10 char split; validation loss on 200 batches. Target ≤ 1.89.
  modern   RoPE + RMSNorm + SwiGLU at the same wall-clock budget as the quality run.
  memory   peak RSS (subprocess) of a ~10M-parameter model training a few steps. Target < 2 GB.

Writes bench/results/pretrain.json (parts merged into what is there) and prints a table.
Usage: .venv/bin/python bench/pretrain.py [--part speed|quality|modern|memory] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.pretraining import Trainer, get_lm_batch, split_token_stream
from g2c.transformer import TransformerLM

RESULTS = Path(__file__).resolve().parent / "results" / "pretrain.json"
CLASSIC = dict(vocab_size=65, embedding_dim=128, num_layers=4, num_heads=4, max_seq_len=64)
B, T = 12, 64
console = Console()


def load_char_data() -> tuple[torch.Tensor, torch.Tensor, int]:
    """TinyShakespeare as char ids, split 90/10 (nanoGPT's shakespeare_char)."""
    from g2c.data import load_text  # $G2C_DATA_DIR, the cache, or a checksummed download

    text = load_text("tinyshakespeare")
    from g2c.tokenizer import CharTokenizer

    tok = CharTokenizer(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train, val = split_token_stream(ids, 0.9)
    return train, val, tok.vocab_size


def g2c_trainer(model, max_steps: int, **kw) -> Trainer:
    """The Trainer used in every part (AdamW, clip 1.0, the default loss kernel)."""
    args = dict(
        batch_size=B,
        context_length=T,
        max_steps=max_steps,
        max_lr=1e-3,
        min_lr=1e-4,
        warmup_steps=min(100, max_steps),
        grad_clip=1.0,
        optimizer="adamw",
        betas=(0.9, 0.99),
        device="cpu",
        seed=1337,
        eval_iters=200,
        eval_every=max_steps,
        log_every=max(1, max_steps // 10),
    )
    args.update(kw)
    return Trainer(model, **args)


def hf_gpt2():
    """GPT2LMHeadModel at the classic config, dropout 0."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    cfg = GPT2Config(
        n_layer=4, n_head=4, n_embd=128, n_positions=T, vocab_size=65,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg).train()


# -- speed ---------------------------------------------------------------------------------------
def _time_one_thread_count(train: torch.Tensor, n_threads: int, steps: int, warm: int) -> dict:
    """Alternate one step each of g2c default, g2c reference and HF GPT-2; median ms per step."""
    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    default = g2c_trainer(TransformerLM(**CLASSIC, init="gpt2"), 10**6)  # g2c (default)
    torch.manual_seed(0)
    ref = g2c_trainer(TransformerLM(**CLASSIC, init="gpt2", fused=False), 10**6,
                      loss_impl="reference")  # fmt: skip
    hf = hf_gpt2()
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(1337)  # the same batch stream as the g2c trainers

    def hf_step() -> None:
        x, y = get_lm_batch(train, B, T, gen)
        opt.zero_grad(set_to_none=True)
        logits = hf(input_ids=x).logits  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, 65), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()

    runs = {
        "g2c_default": lambda: default.train_step(train),
        "g2c_reference": lambda: ref.train_step(train),
        "hf_gpt2": hf_step,
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    load_before = os.getloadavg()[0]
    for i in range(steps + warm):
        for name, fn in runs.items():  # alternate: one step of each, in turn
            t0 = time.perf_counter()
            fn()
            if i >= warm:
                times[name].append(time.perf_counter() - t0)
    res = {"threads": n_threads, "steps": steps, "load_avg_1min": load_before}
    for name, ts in times.items():
        ms = statistics.median(ts) * 1e3
        res[name] = {"median_ms": ms, "tokens_per_s": B * T / (ms / 1e3)}
    res["ratio_g2c_default_over_hf"] = res["g2c_default"]["median_ms"] / res["hf_gpt2"]["median_ms"]
    res["mfu_g2c_default"] = (
        res["g2c_default"]["tokens_per_s"] * default.flops_per_token / default.peak_flops
    )
    res["load_avg_1min_end"] = os.getloadavg()[0]
    return res


def part_speed(train: torch.Tensor, quick: bool, threads: list[int]) -> dict:
    """Step-time comparison for each thread count in ``threads``."""
    steps, warm = (15, 5) if quick else (60, 10)
    out = {f"{n}_threads": _time_one_thread_count(train, n, steps, warm) for n in threads}
    torch.set_num_threads(1)
    return out


# -- quality / modern ----------------------------------------------------------------------------
def _train_run(model, train, val, max_steps: int) -> dict:
    trainer = g2c_trainer(model, max_steps)
    events: list[dict] = []
    t0 = time.perf_counter()
    hist = trainer.train(train, val, on_log=events.append)
    wall = time.perf_counter() - t0
    last = events[-1]
    return {
        "steps": max_steps,
        "val_loss": hist["val_loss"][-1],
        "train_loss_last": hist["train_loss"][-1],
        "wall_s": wall,
        "tokens_per_s": last["tokens_per_s"],
        "mfu": last["mfu"],
        "params": model.num_parameters(),
        "load_avg_1min_end": os.getloadavg()[0],
    }


def part_quality(train, val, quick: bool) -> dict:
    torch.manual_seed(1337)
    model = TransformerLM(**CLASSIC, init="gpt2")
    return _train_run(model, train, val, 200 if quick else 2000)


def part_modern(train, val, quick: bool, classic_wall_s: float | None) -> dict:
    """RoPE + RMSNorm + SwiGLU trained for the wall-clock budget of the classic run.

    The budget is set load-independently: classic and modern steps are timed alternately in
    this process, and the modern run gets ``classic_steps × t_classic / t_modern`` steps.
    """

    def build(modern: bool) -> TransformerLM:
        torch.manual_seed(1337)
        extra = dict(positional="rope", norm="rmsnorm", mlp="swiglu") if modern else {}
        return TransformerLM(**CLASSIC, **extra, init="gpt2")

    classic_steps = 200 if quick else 2000
    probes = {m: g2c_trainer(build(m), 10**6) for m in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(30):
        for m, tr in probes.items():
            t0 = time.perf_counter()
            tr.train_step(train)
            if i >= 5:
                times[m].append(time.perf_counter() - t0)
    t_classic, t_modern = (statistics.median(times[m]) for m in (False, True))
    steps = int(classic_steps * t_classic / t_modern)
    res = _train_run(build(True), train, val, steps)
    res["classic_steps"] = classic_steps
    res["step_time_ratio_modern_over_classic"] = t_modern / t_classic
    res["classic_wall_s"] = classic_wall_s
    return res


# -- memory --------------------------------------------------------------------------------------
MEMORY_CHILD = r"""
import resource, sys, torch
torch.set_num_threads(1)
from g2c.pretraining import Trainer
from g2c.transformer import TransformerLM
model = TransformerLM(65, 384, 6, 6, 256, init="gpt2")
n = model.num_parameters()
t = Trainer(model, batch_size=16, context_length=256, max_steps=3, max_lr=1e-3,
            optimizer="adamw", grad_clip=1.0, device="cpu", seed=0)
ids = torch.randint(0, 65, (100_000,))
losses = [t.train_step(ids)["loss"] for _ in range(3)]
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, losses[-1])
"""


def part_memory() -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD], capture_output=True, text=True, check=True
    )
    n, rss_kb, loss = proc.stdout.split()
    return {
        "params": int(n),
        "batch_size": 16,
        "context_length": 256,
        "peak_rss_mb": int(rss_kb) / 1024,
        "within_2gb": int(rss_kb) / 1024 < 2048,
        "last_loss": float(loss),
    }


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--part", choices=["all", "speed", "quality", "modern", "memory"], default="all"
    )
    ap.add_argument("--quick", action="store_true", help="fewer steps (smoke run)")
    ap.add_argument("--two-threads", action="store_true", help="also time 2 threads")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results["machine"] = {
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "load_avg_start": os.getloadavg(),
        "quick": args.quick,
    }
    parts = ["speed", "quality", "modern", "memory"] if args.part == "all" else [args.part]
    train, val, V = load_char_data()
    assert V == 65, V
    if "speed" in parts:
        threads = [1] + ([2] if args.two_threads or os.getloadavg()[0] < 0.5 else [])
        results["speed"] = part_speed(train, args.quick, threads)
    if "quality" in parts:
        results["quality"] = part_quality(train, val, args.quick)
    if "modern" in parts:
        q = results.get("quality")
        results["modern"] = part_modern(train, val, args.quick, q["wall_s"] if q else None)
    if "memory" in parts:
        results["memory"] = part_memory()
    results["machine"]["load_avg_end"] = os.getloadavg()
    atomic_write_json(out_path, results)
    print_table(results)
    return 0


def print_table(r: dict) -> None:
    """Print the results as rich tables."""
    if "speed" in r:
        t = Table(title="Training step time, classic config (B=12, T=64, 4L/4H/128D)")
        for col in ("threads", "g2c (default) ms", "g2c ref ms", "HF GPT-2 ms", "g2c/HF",
                    "g2c tok/s", "HF tok/s", "load"):  # fmt: skip
            t.add_column(col)
        for s in r["speed"].values():
            d = s.get("g2c_default", s.get("g2c_fast"))  # results written before the rename
            ratio = s.get("ratio_g2c_default_over_hf", s.get("ratio_g2c_fast_over_hf"))
            t.add_row(
                str(s["threads"]),
                f"{d['median_ms']:.1f}",
                f"{s['g2c_reference']['median_ms']:.1f}",
                f"{s['hf_gpt2']['median_ms']:.1f}",
                f"{ratio:.2f}×",
                f"{d['tokens_per_s']:.0f}",
                f"{s['hf_gpt2']['tokens_per_s']:.0f}",
                f"{s['load_avg_1min']:.2f}",
            )
        console.print(t)
    if not {"quality", "modern", "memory"} & set(r):
        return
    t = Table(title="Quality / modern / memory")
    t.add_column("run")
    t.add_column("result")
    if "quality" in r:
        q = r["quality"]
        t.add_row("classic GPT-2 style", f"val {q['val_loss']:.4f} after {q['steps']} steps, "
                  f"{q['wall_s']:.0f} s (target ≤ 1.89)")  # fmt: skip
    if "modern" in r:
        m = r["modern"]
        t.add_row("RoPE+RMSNorm+SwiGLU", f"val {m['val_loss']:.4f} after {m['steps']} steps, "
                  f"{m['wall_s']:.0f} s (same budget as {m['classic_steps']} classic steps; "
                  f"step time ×{m['step_time_ratio_modern_over_classic']:.2f})")  # fmt: skip
    if "memory" in r:
        m = r["memory"]
        t.add_row("memory", f"{m['params'] / 1e6:.1f}M params: peak RSS {m['peak_rss_mb']:.0f} MB")
    console.print(t)


if __name__ == "__main__":
    raise SystemExit(main())
