"""Data-parallel scaling on this CPU: g2c DDP / FSDP over gloo vs one process, and nanoGPT+DDP.

The classic small config (shakespeare-char: 4 layers, width 128, 4 heads, context 64, global
batch 12, AdamW, clip 1.0, fp32), random token ids (vocabulary 65). Cases, each in its own
process group / process so they do not share threads:

  g2c 1p x 1t     one process, 1 torch thread                  (the baseline)
  g2c 1p x 2t     one process, 2 torch threads                 (what threads alone give)
  g2c 1p x 1t, half batch   one rank's share of the work (for the bound below)
  g2c ddp 2p x 1t torchrun, 2 processes x 1 thread, DDP, 6 windows per rank
  g2c fsdp 2p x 1t  the same with FSDP2 (per-block fully_shard)
  nanoGPT ddp 2p x 1t  nanoGPT's model (torch.nn) under plain torch DDP — what a user would
                  write by hand instead of g2c; the same config, batch and optimizer settings

Per case: ``--warmup`` steps, then ``--steps`` timed steps (rank 0's wall time after a
barrier); tokens/s = global batch tokens per step / mean step time. The issue's target: DDP
2p x 1t >= 1.6x the 1p x 1t tokens/s; FSDP's overhead = DDP tokens/s / FSDP tokens/s - 1.
The bound: with both cores computing, the all-reduce of the gradients cannot overlap the
backward, so a 2-rank step takes at least (one rank's half-batch step + one all-reduce of every
gradient, timed alone in the DDP case) — 1p x 1t step time / that = the best scaling possible.

Writes bench/results/distributed.json (bench/results/distributed_quick.json with --quick)
and prints a table. Usage: .venv/bin/python bench/distributed.py [--quick] [--steps N]
``--quick``: 3 warm-up + 10 timed steps (a smoke test on a shared machine; the real numbers
need a quiet one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
CONFIG = {"vocab": 65, "layers": 4, "width": 128, "heads": 4, "context": 64, "batch": 12}


def g2c_loop(strategy: str | None, threads: int, batch: int | None = None):
    import torch

    torch.set_num_threads(threads)
    from g2c.pretraining import Trainer
    from g2c.transformer import TransformerLM

    c = dict(CONFIG, batch=batch or CONFIG["batch"])
    model = TransformerLM(c["vocab"], c["width"], c["layers"], c["heads"], c["context"],
                          init="gpt2", generator=torch.Generator().manual_seed(0))  # fmt: skip
    trainer = Trainer(model, batch_size=c["batch"], context_length=c["context"], max_steps=10**6,
                      max_lr=1e-3, optimizer="adamw", grad_clip=1.0, seed=0, device="cpu")  # fmt: skip
    if strategy:
        trainer.distribute(strategy)
    ids = torch.randint(0, c["vocab"], (200_000,), generator=torch.Generator().manual_seed(1))
    return lambda: trainer.train_step(ids)


def nanogpt_ddp_step():
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from _nanogpt_model import GPT, GPTConfig

    c = CONFIG
    torch.manual_seed(0)
    model = GPT(GPTConfig(c["context"], c["vocab"], c["layers"], c["heads"], c["width"], bias=True))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    ids = torch.randint(0, c["vocab"], (200_000,), generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    rank, world = dist.get_rank(), dist.get_world_size()
    per = c["batch"] // world

    def step():
        ix = torch.randint(len(ids) - c["context"] - 1, (c["batch"],), generator=gen)
        ix = ix[rank * per : (rank + 1) * per]
        x = torch.stack([ids[i : i + c["context"]] for i in ix])
        y = torch.stack([ids[i + 1 : i + 1 + c["context"]] for i in ix])
        _, loss = ddp(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def worker(case: str, warmup: int, steps: int, out: str) -> None:
    """Run one case in this process (under torchrun for the 2-process cases)."""
    dist_case = case.startswith(("ddp", "fsdp", "nanogpt"))
    barrier = lambda: None  # noqa: E731
    rank = 0
    if dist_case:
        import torch.distributed as dist

        from g2c.training.distributed import init_distributed

        ctx = init_distributed("cpu")
        rank, barrier = ctx.rank, dist.barrier
    if case == "nanogpt_ddp":
        step = nanogpt_ddp_step()
    else:
        strategy = None if case.startswith("single") else case.split("_")[0]
        half = CONFIG["batch"] // 2 if case == "single_half" else None
        step = g2c_loop(strategy, 2 if case == "single_2t" else 1, half)
    for _ in range(warmup):
        step()
    barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    barrier()
    seconds = (time.perf_counter() - t0) / steps
    extra = {}
    if case == "ddp_2p":  # one all-reduce of every gradient, alone: the communication cost
        import torch

        from g2c.transformer import TransformerLM

        c = CONFIG
        model = TransformerLM(c["vocab"], c["width"], c["layers"], c["heads"], c["context"])
        numel = sum(t.numel() for _, t in model.named_parameters())
        flat = torch.ones(numel)
        for _ in range(3):
            dist.all_reduce(flat)
        barrier()
        t1 = time.perf_counter()
        for _ in range(20):
            dist.all_reduce(flat)
        extra = {"allreduce_s": (time.perf_counter() - t1) / 20, "gradient_numel": numel}
    if rank == 0:
        batch = CONFIG["batch"] // 2 if case == "single_half" else CONFIG["batch"]
        tokens = batch * CONFIG["context"]
        Path(out).write_text(json.dumps({"step_s": seconds, "tokens_per_s": tokens / seconds,
                                         **extra}))  # fmt: skip
    if dist_case:
        import torch.distributed as dist

        dist.destroy_process_group()


CASES = {
    "single_1t": ("g2c 1p x 1t", 1),
    "single_2t": ("g2c 1p x 2t", 1),
    "single_half": ("g2c 1p x 1t, half batch", 1),
    "ddp_2p": ("g2c ddp 2p x 1t", 2),
    "fsdp_2p": ("g2c fsdp 2p x 1t", 2),
    "nanogpt_ddp": ("nanoGPT+torch ddp 2p x 1t", 2),
}


def run_case(case: str, warmup: int, steps: int) -> dict:
    nproc = CASES[case][1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        me = [str(Path(__file__).resolve()), "--worker", case, "--warmup", str(warmup),
              "--steps", str(steps), "--out", out]  # fmt: skip
        if nproc == 1:
            cmd = [sys.executable, *me]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node", str(nproc), *me]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{case} failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(out).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 warm-up + 10 timed steps")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 10)
    steps = args.steps if args.steps is not None else (10 if args.quick else 100)
    if args.worker:
        worker(args.worker, warmup, steps, args.out)
        return
    results = {case: run_case(case, warmup, steps) for case in CASES}
    base = results["single_1t"]["tokens_per_s"]
    print(f"{'case':<28}{'step ms':>10}{'tokens/s':>12}{'vs 1p x 1t':>12}")
    for case, r in results.items():
        r["speedup"] = r["tokens_per_s"] / base
        print(f"{CASES[case][0]:<28}{r['step_s'] * 1e3:>10.1f}{r['tokens_per_s']:>12,.0f}"
              f"{r['speedup']:>11.2f}x")  # fmt: skip
    fsdp_overhead = results["ddp_2p"]["tokens_per_s"] / results["fsdp_2p"]["tokens_per_s"] - 1
    print(f"FSDP overhead vs DDP (2p x 1t): {fsdp_overhead * 100:+.1f} %")
    # the best a 2-rank data-parallel step can do here: each rank's half batch, then one
    # all-reduce of every gradient that cannot overlap (both cores are computing)
    half_s = results["single_half"]["step_s"]
    allreduce_s = results["ddp_2p"]["allreduce_s"]
    bound = results["single_1t"]["step_s"] / (half_s + allreduce_s)
    print(
        f"bound: 1p x 1t step / (half-batch step {half_s * 1e3:.1f} ms + all-reduce of the "
        f"gradients {allreduce_s * 1e3:.1f} ms) = {bound:.2f}x"
    )
    print(f"target: ddp 2p x 1t >= 1.6x 1p x 1t -> {results['ddp_2p']['speedup']:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    name = "distributed_quick.json" if args.quick else "distributed.json"
    payload = {
        "config": CONFIG, "warmup": warmup, "steps": steps, "quick": args.quick,
        "cores": os.cpu_count(), "platform": platform.platform(), "results": results,
        "fsdp_overhead": fsdp_overhead, "scaling_bound": bound,
        "note": "shared machine" if args.quick else "",
    }  # fmt: skip
    (RESULTS / name).write_text(json.dumps(payload, indent=2))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
