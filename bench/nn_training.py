"""Benchmark: g2c.nn + g2c.training vs torch.nn + torch.optim on the MNIST MLP training step.

Workload (identical for both, same weights, same batch): the 784-128-10 ReLU MLP, a batch of
B = 128 random images, cross-entropy, backward, AdamW(lr=1e-3, wd=0.01). Three timings, each
the median of ``--repeats`` rounds of ``--steps`` steps, interleaved g2c/torch so machine load
hits both alike:

- ``adamw_step``: the optimizer update alone (g2c foreach vs torch foreach; g2c loop vs torch
  for-loop);
- ``train_step``: zero_grad + forward + loss + backward + AdamW step.

Prints a table and writes ``bench/results/nn_training.json`` with ratios g2c / torch (lower is
better for g2c). Uses ``--threads`` torch threads (default 1).

    .venv/bin/python bench/nn_training.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _g2c_setup(seed: int):
    from g2c.nn import CrossEntropyLoss, Linear, ReLU, Sequential

    g = torch.Generator().manual_seed(seed)
    model = Sequential(Linear(784, 128, generator=g), ReLU(), Linear(128, 10, generator=g))
    return model, CrossEntropyLoss()


def _torch_twin(g2c_model):
    """torch.nn MLP with the same weights (torch stores W transposed)."""
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for layer, ours in ((net[0], g2c_model[0]), (net[2], g2c_model[2])):
            layer.weight.copy_(ours.W.T)
            layer.bias.copy_(ours.b)
    return net


def _time(fn, steps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the JSON; return the results."""
    from g2c.training import AdamW

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "nn_training.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(128, 784)
    y = torch.randint(0, 10, (128,))

    model, loss_fn = _g2c_setup(0)
    net = _torch_twin(model)
    with torch.no_grad():  # same function before any step
        torch.testing.assert_close(model(x), net(x), atol=1e-5, rtol=1e-5)

    cases = {}
    for foreach in (True, False):
        ours = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, foreach=foreach)
        ref = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01, foreach=foreach)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        name = "adamw_step_" + ("foreach" if foreach else "loop")
        cases[name] = (ours.step, ref.step)

    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ref_opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    ref_loss = torch.nn.CrossEntropyLoss()

    def g2c_step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    def torch_step():
        ref_opt.zero_grad()
        ref_loss(net(x), y).backward()
        ref_opt.step()

    cases["train_step"] = (g2c_step, torch_step)

    results = {}
    for name, (ours_fn, ref_fn) in cases.items():
        t_ours, t_ref = [], []
        for _ in range(args.repeats):
            t_ours.append(_time(ours_fn, args.steps))
            t_ref.append(_time(ref_fn, args.steps))
        a, b = statistics.median(t_ours), statistics.median(t_ref)
        results[name] = {"g2c_us": a * 1e6, "torch_us": b * 1e6, "ratio_g2c_over_torch": a / b}

    print(f"{'case':22s} {'g2c µs':>10s} {'torch µs':>10s} {'g2c/torch':>10s}")
    for name, r in results.items():
        print(
            f"{name:22s} {r['g2c_us']:10.1f} {r['torch_us']:10.1f} {r['ratio_g2c_over_torch']:10.2f}"
        )
    meta = {
        "threads": args.threads,
        "steps": args.steps,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
    from g2c.artifacts import atomic_write_json

    atomic_write_json(args.out, {"meta": meta, "results": results})
    print(json.dumps(meta))
    return results


if __name__ == "__main__":
    main()
