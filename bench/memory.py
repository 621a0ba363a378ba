"""Activation checkpointing and bf16 autocast: peak memory and step time of one training step.

A GPT-style TransformerLM of ~50M parameters (8 blocks, width 704, 11 heads, vocabulary
8192, learned positions) at context 512, batch 8, AdamW, trained by ``g2c.pretraining.Trainer``
on random ids, with each activation-checkpointing policy (``model.activation_checkpointing``:
none, every 2nd block, every block) in fp32 and under bf16 ``torch.autocast``. Each case runs
in its own process: one warm-up step, then ``--steps`` timed steps. Memory: the peak
resident set of those steps above the resident set before the first one (Linux ``VmHWM``
after ``clear_refs``; CPU allocations, glibc's mmap threshold pinned with
``g2c.training.pin_malloc_mmap_threshold`` so freed activations leave the resident set), i.e. activations + gradients + optimizer temporaries — the part checkpointing
trades for recomputation. The model's states (weights 4 B, AdamW moments 8 B per parameter)
are resident before the step and are listed too. Beside each measured row: the activation
estimate of ``g2c.training.memory_plan.activation_memory`` for the same policy.

Writes bench/results/memory.json (memory_quick.json with --quick) and prints a table.
Usage: .venv/bin/python bench/memory.py [--quick] [--steps N]
``--quick``: a ~8M-parameter model (4 blocks, width 384, vocabulary 2048), batch 4, 1 timed step — a smoke
test on a shared machine; the 50M figures need a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
FULL = {"layers": 8, "width": 704, "heads": 11, "vocab": 8192, "context": 512, "batch": 8}
QUICK = {"layers": 4, "width": 384, "heads": 6, "vocab": 2048, "context": 512, "batch": 4}
POLICIES = {"none": False, "every:2": 2, "all": True}


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def worker(cfg: dict, policy: str, bf16: bool, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from g2c.pretraining import Trainer
    from g2c.training import pin_malloc_mmap_threshold
    from g2c.transformer import TransformerLM

    pin_malloc_mmap_threshold()  # freed activations go back to the OS: RSS tracks live memory
    model = TransformerLM(cfg["vocab"], cfg["width"], cfg["layers"], cfg["heads"],
                          cfg["context"], init="gpt2", attention_impl="sdpa",
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    model.activation_checkpointing = POLICIES[policy]
    trainer = Trainer(model, batch_size=cfg["batch"], context_length=cfg["context"],
                      max_steps=10**6, max_lr=1e-4, optimizer="adamw", grad_clip=1.0, seed=0,
                      device="cpu", autocast_dtype="bfloat16" if bf16 else None)  # fmt: skip
    ids = torch.randint(0, cfg["vocab"], (100_000,), generator=torch.Generator().manual_seed(1))
    before_kb = _status_kb("VmRSS")  # weights + AdamW moments (allocated by the Trainer)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    trainer.train_step(ids)  # warm-up (its peak counts: the first step grows the heap)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(ids)
    step_s = (time.perf_counter() - t0) / steps
    peak_kb = _status_kb("VmHWM")
    return {
        "params": model.num_parameters(), "step_s": step_s,
        "step_peak_mb": (peak_kb - before_kb) / 1024, "rss_before_mb": before_kb / 1024,
        "tokens_per_s": cfg["batch"] * cfg["context"] / step_s,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    steps = args.steps or (1 if args.quick else 3)
    if args.worker:
        policy, precision = args.worker
        print(json.dumps(worker(cfg, policy, precision == "bf16", steps)))
        return
    sys.path.insert(0, str(REPO))
    from g2c.training.memory_plan import activation_memory

    rows = []
    print(f"{'policy':<10}{'precision':<10}{'step s':>8}{'tokens/s':>10}{'step peak MB':>14}"
          f"{'estimate MB':>13}")  # fmt: skip
    for precision in ("fp32", "bf16"):
        for policy in POLICIES:
            cmd = [sys.executable, __file__, "--worker", policy, precision, "--steps", str(steps)]
            if args.quick:
                cmd.append("--quick")
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            every = {"none": 0, "every:2": 2, "all": 1}[policy]
            est = activation_memory(
                num_layers=cfg["layers"], embedding_dim=cfg["width"], num_heads=cfg["heads"],
                vocab_size=cfg["vocab"], context_length=cfg["context"], batch_size=cfg["batch"],
                checkpoint_every=every, bytes_per_value=2 if precision == "bf16" else 4,
            )  # fmt: skip
            r.update(policy=policy, precision=precision, estimate_mb=est / 2**20)
            rows.append(r)
            print(f"{policy:<10}{precision:<10}{r['step_s']:>8.2f}{r['tokens_per_s']:>10,.0f}"
                  f"{r['step_peak_mb']:>14,.0f}{r['estimate_mb']:>13,.0f}")  # fmt: skip
    params = rows[0]["params"]
    print(
        f"model: {params / 1e6:.1f}M parameters; states before the step: weights "
        f"{params * 4 / 2**20:,.0f} MB + AdamW moments {params * 8 / 2**20:,.0f} MB"
    )
    RESULTS.mkdir(exist_ok=True)
    name = "memory_quick.json" if args.quick else "memory.json"
    payload = {"config": cfg, "steps": steps, "quick": args.quick, "platform": platform.platform(),
               "rows": rows}  # fmt: skip
    (RESULTS / name).write_text(json.dumps(payload, indent=2))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
