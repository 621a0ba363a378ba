"""GPT-2 124M on one GPU: g2c's ``gpt2-124m`` preset vs nanoGPT's ``train.py`` step, same config.

Both train GPT-2 small (12 layers, 12 heads, width 768, context 1024, vocabulary 50,257, biases,
tied embeddings) with the nanoGPT / llm.c recipe: AdamW (0.9, 0.95), weight decay 0.1, clip 1.0,
bf16 autocast, TF32 matmuls, micro-batch 16 × 1024 tokens and ``--grad-accum`` micro-batches per
step (32 = 524,288 tokens, the preset's ~0.5M). Per case: seconds per optimisation step (after
``--warmup`` untimed steps, ``torch.cuda.synchronize`` around each), tokens/s, MFU (the same
formula for both — g2c's ``model_flops_per_token``, 6·N + the attention term, over the GPU's
dense bf16 peak) and the peak CUDA memory. ``--compile`` compiles both (nanoGPT's default).

- "g2c": ``g2c.runs.pretrain.build_model`` / ``build_trainer`` of the preset (``Trainer``:
  g2c's AdamW, the fused loss), ``compile_model`` for ``--compile``.
- "nanoGPT": ``bench/_nanogpt_model.py`` (nanoGPT's ``model.py``, transcribed) with
  ``train.py``'s step: ``torch.optim.AdamW(fused=True)`` with decay on 2-D parameters only,
  forward under ``torch.autocast(bfloat16)``, ``loss / k`` backward per micro-batch, clip,
  step, ``zero_grad(set_to_none=True)``.

The batches are random token windows of one synthetic stream (throughput does not depend on
the text). Without CUDA the script prints why and exits 0 (nothing is written); ``--device cpu``
runs the harness anyway at a tiny size (2 layers, width 64, context 64) — a check that the
code runs, not a measurement.

    python bench/gpt2_124m.py                    # on a CUDA machine: 10 timed steps, accum 32
    python bench/gpt2_124m.py --quick            # 3 timed steps, accum 2
    python bench/gpt2_124m.py --compile          # torch.compile both
    python bench/gpt2_124m.py --device cpu --quick   # the harness on a CPU, tiny model

Writes bench/results/gpt2_124m.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nanogpt_model import GPT, GPTConfig  # noqa: E402

from g2c.artifacts import atomic_write_json  # noqa: E402
from g2c.pretraining import get_lm_batch  # noqa: E402
from g2c.runs import pretrain  # noqa: E402
from g2c.runs.config import GPT2_VOCAB_SIZE, apply_overrides, get_preset  # noqa: E402
from g2c.training.flops import device_peak_flops  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpt2_124m.json"
TINY = {"embedding_dim": 64, "num_layers": 2, "num_heads": 2, "max_seq_len": 64}
console = Console()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stream(n: int = 2_000_000) -> torch.Tensor:
    return torch.randint(0, GPT2_VOCAB_SIZE, (n,), generator=torch.Generator().manual_seed(0))


def run_g2c(cfg, device: torch.device, steps: int, warmup: int, compile_: bool) -> dict:
    """Seconds per step of the preset's Trainer (its own batch sampling included)."""
    model = pretrain.build_model(cfg, GPT2_VOCAB_SIZE, 0)
    if compile_:
        pretrain.compile_model(model)
    trainer = pretrain.build_trainer(cfg, model)
    ids = _stream()
    for _ in range(warmup):
        trainer.train_step(ids)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, loss = [], None
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = trainer.train_step(ids)["loss"]
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"times": times, "loss": loss, "params": model.num_parameters(),
            "flops_per_token": trainer.flops_per_token}  # fmt: skip


def run_nanogpt(cfg, device: torch.device, steps: int, warmup: int, compile_: bool) -> dict:
    """nanoGPT's train.py step on the same micro-batch shapes and accumulation."""
    m, t = cfg.model, cfg.train
    torch.manual_seed(0)
    conf = GPTConfig(m["max_seq_len"], GPT2_VOCAB_SIZE, m["num_layers"], m["num_heads"],
                     m["embedding_dim"], bias=True)  # fmt: skip
    model = GPT(conf).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=t.max_lr, betas=tuple(t.betas),
                            fused=device.type == "cuda")  # fmt: skip
    fwd = torch.compile(model) if compile_ else model
    ids, gen = _stream(), torch.Generator().manual_seed(1)
    k, B, T = t.grad_accum_steps, t.batch_size, t.context_length
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def step() -> float:
        x, y = get_lm_batch(ids, k * B, T, gen)
        x = x.contiguous().to(device, non_blocking=True)  # nanoGPT stacks contiguous windows
        y = y.contiguous().to(device, non_blocking=True)
        total = 0.0
        for i in range(k):
            with amp:
                _, loss = fwd(x[i * B : (i + 1) * B], y[i * B : (i + 1) * B])
            (loss / k).backward()
            total += loss.item() / k
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, loss = [], None
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"times": times, "loss": loss, "params": sum(p.numel() for p in params)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 timed steps, 2 micro-batches")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    ap.add_argument("--batch-size", type=int, default=16, help="micro-batch (sequences)")
    ap.add_argument("--grad-accum", type=int, default=32, help="micro-batches per step")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--device", default=None, help="cuda (default when there is one) or cpu")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.device is None and not torch.cuda.is_available():
        print("gpt2_124m: skipped — no CUDA GPU here; this comparison needs one (run it where "
              "the project is lent a GPU; `--device cpu --quick` checks the harness on a CPU)")  # fmt: skip
        return 0
    device = torch.device(args.device or "cuda")
    steps, accum = (3, 2) if args.quick else (args.steps, args.grad_accum)
    train = {"batch_size": args.batch_size, "grad_accum_steps": accum, "device": device.type,
             "seed": 0, "max_steps": 10**6, "warmup_steps": 0}  # fmt: skip
    overrides: dict = {"train": train}
    tiny = device.type == "cpu"
    if tiny:
        torch.set_num_threads(max(1, int(os.environ.get("G2C_BENCH_THREADS", "1"))))
        overrides = {"model": TINY, "train": {**train, "batch_size": 2, "context_length": 64}}
    cfg = apply_overrides(get_preset("gpt2-124m"), overrides)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # train.py's setting, for both
        torch.backends.cudnn.allow_tf32 = True
    peak, estimated = device_peak_flops(device)
    tokens = cfg.train.batch_size * cfg.train.context_length * accum
    rows = {}
    for name, fn in (("g2c", run_g2c), ("nanoGPT", run_nanogpt)):
        r = fn(cfg, device, steps, args.warmup, args.compile)
        step_s = sorted(r["times"])[len(r["times"]) // 2]  # the median step
        fpt = rows.get("g2c", {}).get("flops_per_token") or r.get("flops_per_token")
        rows[name] = {
            "step_s": step_s,
            "tokens_per_s": tokens / step_s,
            "mfu": fpt * tokens / step_s / peak,
            "params": r["params"],
            "flops_per_token": fpt,
            "last_loss": r["loss"],
            "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 1e9
            if device.type == "cuda"
            else None,
        }
        if device.type == "cuda":
            torch.cuda.empty_cache()
    table = Table(title=f"GPT-2 124M step on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU (tiny harness check)'}")  # fmt: skip
    for col in ("case", "step s", "tokens/s", "MFU", "peak GB", "vs nanoGPT"):
        table.add_column(col, justify="right" if col != "case" else "left")
    for name, r in rows.items():
        ratio = rows["nanoGPT"]["step_s"] / r["step_s"]
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "-"
        table.add_row(name, f"{r['step_s']:.3f}", f"{r['tokens_per_s']:,.0f}",
                      f"{100 * r['mfu']:.1f}%", mem, f"{ratio:.2f}x")  # fmt: skip
    console.print(table)
    result = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "compile": args.compile,
        "tiny_harness_check": tiny,
        "tokens_per_step": tokens,
        "micro_batch": cfg.train.batch_size,
        "context": cfg.train.context_length,
        "grad_accum": accum,
        "timed_steps": steps,
        "peak_flops": peak,
        "peak_flops_estimated": estimated,
        "rows": rows,
    }
    if tiny:
        console.print("CPU: a tiny model, to check the harness — not GPT-2 124M numbers")
        return 0  # a harness check is not a result
    atomic_write_json(Path(args.out), result)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
