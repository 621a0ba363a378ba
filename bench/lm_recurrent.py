"""Benchmark: one training step (forward + backward) of the g2c LSTM/RNN language models against
``torch.nn.LSTM`` / ``torch.nn.RNN`` (the layers a user would otherwise pick), same sizes, same
batch, in the same run. Also times g2c's reference loop (``fused_input=False``) against its
fast path (input projection of all steps in one matmul).

Prints a table and writes ``bench/results/lm_recurrent.json``. Times are medians over
``--repeats`` rounds of ``--steps`` steps, interleaved so load changes hit every variant.

Run: ``.venv/bin/python bench/lm_recurrent.py --threads 1``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from g2c.lm import RNNLanguageModel
from g2c.nn import cross_entropy


class TorchLM(torch.nn.Module):
    """Embedding → torch.nn.LSTM/RNN → Linear on the last hidden state (the baseline)."""

    def __init__(self, cell: str, V: int, D: int, H: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(V, D)
        self.rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.RNN)(D, H, batch_first=True)
        self.head = torch.nn.Linear(H, V)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.emb(x))  # (B, T, H)
        return self.head(out[:, -1])  # (B, V)


def step_fn(model, params, x, y):
    """One forward + backward; returns a closure."""

    def run() -> None:
        for p in params:
            p.grad = None
        loss = cross_entropy(model(x), y)
        loss.backward()

    return run


def main() -> None:
    """Time every variant and write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--context-length", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    V, D, H, B, T = 65, 24, 128, args.batch_size, args.context_length
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B,))
    rows = []
    for cell in ("rnn", "lstm"):
        ours = RNNLanguageModel(V, T, D, H, cell=cell)
        ref = RNNLanguageModel(V, T, D, H, cell=cell, fused_input=False)
        tm = TorchLM(cell, V, D, H)
        variants = {
            f"g2c {cell} (fused input)": step_fn(ours, ours.parameters(), x, y),
            f"g2c {cell} (reference loop)": step_fn(ref, ref.parameters(), x, y),
            f"torch.nn.{cell.upper()}": step_fn(tm, list(tm.parameters()), x, y),
        }
        times: dict[str, list[float]] = {k: [] for k in variants}
        for fn in variants.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in variants.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                times[name].append((time.perf_counter() - t0) / args.steps)
        base = statistics.median(times[f"torch.nn.{cell.upper()}"])
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append({"variant": name, "ms_per_step": med * 1e3, "ratio_vs_torch": med / base})
    print(
        f"forward+backward, B={B}, T={T}, D={D}, H={H}, V={V}, threads={args.threads}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'variant':32s} {'ms/step':>10s} {'× torch':>9s}")
    for r in rows:
        print(f"{r['variant']:32s} {r['ms_per_step']:10.2f} {r['ratio_vs_torch']:9.2f}")
    out = Path(__file__).resolve().parent / "results" / "lm_recurrent.json"
    from g2c.artifacts import atomic_write_json

    atomic_write_json(
        out,
        {
            "config": {
                "B": B,
                "T": T,
                "D": D,
                "H": H,
                "V": V,
                "threads": args.threads,
                "steps": args.steps,
                "repeats": args.repeats,
            },
            "load_avg_1min": os.getloadavg()[0],
            "torch": torch.__version__,
            "machine": platform.machine(),
            "rows": rows,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
