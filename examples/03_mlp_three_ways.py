"""The week-3 MLP three ways: NumPy with a hand-written backward, g2c.nn, and torch.nn.

One 784-128-10 ReLU network on MNIST, trained by plain minibatch SGD with the *same* initial
weights (drawn once by ``g2c.classic.MLP`` and copied into the other two), the *same* batches in
the same order and the same learning rate:

1. ``g2c.classic.MLP`` — NumPy, float64, every layer's backward written by hand (module 01B);
2. ``g2c.nn`` — ``Sequential(Linear, ReLU, Linear)`` on torch tensors, autograd, ``g2c.nn.SGD``
   and ``g2c.nn.cross_entropy`` (module 03);
3. ``torch.nn`` — ``nn.Sequential(nn.Linear, nn.ReLU, nn.Linear)``, ``F.cross_entropy``,
   ``torch.optim.SGD`` (the reference).

Same math, so the three learning curves nearly coincide (float64 vs float32 rounding); the
table shows what each implementation costs in time. Writes ``03-mlp-three-ways.md`` and
``03-mlp-three-ways.json`` into ``--out``.

    python examples/03_mlp_three_ways.py --threads 1      # full: 60k images, 3 epochs (~1 min)
    python examples/03_mlp_three_ways.py --smoke          # 1,000 images, seconds
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import g2c.nn as gnn
from g2c.artifacts import atomic_write_json, atomic_write_text
from g2c.classic import MLP, SoftmaxCrossEntropy, sgd_step
from g2c.data import load_mnist

try:  # caps NumPy's BLAS threads like torch.set_num_threads (optional dependency)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    threadpool_limits = None

WAYS = ("numpy (g2c.classic)", "g2c.nn", "torch.nn")


# ---- data: MNIST as flat float vectors --------------------------------------------------------
def load_data(n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n_train`` / ``n_test`` MNIST images as (N, 784) float32 in [0, 1], labels (N,)."""
    xs, ys = [], []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = load_mnist(split, download=False)  # uint8 (N, 28, 28), (N,)
        xs.append(images[:n].reshape(-1, 784).numpy().astype(np.float32) / 255.0)
        ys.append(labels[:n].numpy().astype(np.int64))
    return xs[0], ys[0], xs[1], ys[1]


# ---- one training loop per way; each returns (per-epoch mean loss, test accuracy, seconds) ----
def run_numpy(model: MLP, batches, X_test, y_test, lr: float) -> tuple[list[float], float, float]:
    """Forward, the hand-written backward, in-place SGD — all NumPy float64."""
    loss_fn = SoftmaxCrossEntropy()
    losses = []
    t0 = time.perf_counter()
    for epoch in batches:
        total = 0.0
        for xb, yb in epoch:
            total += loss_fn(model.forward(xb), yb)
            model.backward(loss_fn.backward())
            sgd_step(model.parameters(), model.gradients(), lr)
        losses.append(total / len(epoch))
    seconds = time.perf_counter() - t0
    acc = float((model.forward(X_test).argmax(1) == y_test).mean())
    return losses, acc, seconds


def run_torch(model, opt, loss_fn, batches, X_test, y_test) -> tuple[list[float], float, float]:
    """The same loop for g2c.nn and torch.nn: loss, zero_grad, backward, step (float32)."""
    losses = []
    t0 = time.perf_counter()
    for epoch in batches:
        total = 0.0
        for xb, yb in epoch:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / len(epoch))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((model(X_test).argmax(1) == y_test).float().mean())
    return losses, acc, seconds


# ---- the same initial weights in all three -----------------------------------------------------
def _linears(model: MLP) -> list:
    """The Linear layers of a g2c.classic MLP (those with a weight ``W``)."""
    return [layer for layer in model.layers if "W" in layer.params]


def g2c_nn_copy(model: MLP, hidden: int) -> gnn.Sequential:
    """A g2c.nn Sequential holding ``model``'s weights (float32; W stored (in, out) in both)."""
    lin1, lin2 = _linears(model)
    net = gnn.Sequential(gnn.Linear(784, hidden), gnn.ReLU(), gnn.Linear(hidden, 10))
    with torch.no_grad():
        for dst, src in ((net.layers[0], lin1), (net.layers[2], lin2)):
            dst.W.copy_(torch.from_numpy(src.params["W"]))
            dst.b.copy_(torch.from_numpy(src.params["b"]))
    return net


def torch_nn_copy(model: MLP, hidden: int) -> nn.Sequential:
    """A torch.nn Sequential holding ``model``'s weights (nn.Linear stores W transposed)."""
    lin1, lin2 = _linears(model)
    net = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    with torch.no_grad():
        for dst, src in ((net[0], lin1), (net[2], lin2)):
            dst.weight.copy_(torch.from_numpy(src.params["W"].T))
            dst.bias.copy_(torch.from_numpy(src.params["b"]))
    return net


def markdown(results: dict) -> str:
    """The side-by-side table."""
    c = results["config"]
    lines = [
        f"MLP 784-{c['hidden']}-10, SGD lr {c['lr']}, batch {c['batch_size']}, {c['epochs']} epochs on "
        f"{c['n_train']:,} MNIST images, test on {c['n_test']:,}; {c['threads']} thread(s); same initial "
        "weights and batches.",
        "",
        "| implementation | dtype | train seconds | ms / step | final train loss | test accuracy | vs torch.nn |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    base = results["ways"]["torch.nn"]["seconds"]
    for name, r in results["ways"].items():
        lines.append(
            f"| {name} | {r['dtype']} | {r['seconds']:.2f} | {1000 * r['seconds'] / c['steps']:.2f} | "
            f"{r['losses'][-1]:.4f} | {r['test_accuracy']:.2%} | {r['seconds'] / base:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Train the three ways, print and write the table and the JSON."""
    ap = argparse.ArgumentParser(description="the week-3 MLP: NumPy, g2c.nn, torch.nn")
    ap.add_argument("--smoke", action="store_true", help="1,000 train / 500 test images, 1 epoch")
    ap.add_argument("--n-train", type=int, default=60_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    ap.add_argument("--out", default="runs/03_mlp_three_ways")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n_train, args.n_test, args.epochs = 1000, 500, 1
    for name in ("n_train", "n_test", "epochs", "batch_size", "hidden", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    X, y, X_test, y_test = load_data(args.n_train, args.n_test)

    # the same batches for everyone: one permutation per epoch from one seed
    rng = np.random.default_rng(args.seed)
    orders = [rng.permutation(len(X)) for _ in range(args.epochs)]
    cuts = range(0, len(X), args.batch_size)
    np_batches = [
        [
            (X[o[i : i + args.batch_size]].astype(np.float64), y[o[i : i + args.batch_size]])
            for i in cuts
        ]
        for o in orders
    ]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    t_batches = [
        [(Xt[o[i : i + args.batch_size]], yt[o[i : i + args.batch_size]]) for i in cuts]
        for o in orders
    ]
    steps = sum(len(e) for e in np_batches)

    classic = MLP((784, args.hidden, 10), rng=args.seed)  # draws the weights once
    g2c_net, torch_net = g2c_nn_copy(classic, args.hidden), torch_nn_copy(classic, args.hidden)
    X_test64, Xt_test, yt_test = (
        X_test.astype(np.float64),
        torch.from_numpy(X_test),
        torch.from_numpy(y_test),
    )
    limit = threadpool_limits(limits=args.threads) if threadpool_limits else nullcontext()
    ways: dict[str, dict] = {}
    with limit:
        measured = {
            WAYS[0]: run_numpy(classic, np_batches, X_test64, y_test, args.lr),
            WAYS[1]: run_torch(
                g2c_net,
                gnn.SGD(g2c_net.parameters(), lr=args.lr),
                gnn.cross_entropy,
                t_batches,
                Xt_test,
                yt_test,
            ),
            WAYS[2]: run_torch(
                torch_net,
                torch.optim.SGD(torch_net.parameters(), lr=args.lr),
                F.cross_entropy,
                t_batches,
                Xt_test,
                yt_test,
            ),
        }  # run in this order, one after the other
    for name, (losses, acc, seconds) in measured.items():
        dtype = "float64" if name == WAYS[0] else "float32"
        ways[name] = {"dtype": dtype, "losses": losses, "test_accuracy": acc, "seconds": seconds}
        print(f"{name:20s} {seconds:7.2f} s  loss {losses[-1]:.4f}  test acc {acc:.2%}")
    results = {
        "config": {
            **{k: v for k, v in vars(args).items() if k != "out"},
            "steps": steps,
            "data": "mnist",
        },
        "ways": ways,
    }
    out = Path(args.out)
    table = markdown(results)
    print(table)
    atomic_write_text(out / "03-mlp-three-ways.md", table)
    atomic_write_json(out / "03-mlp-three-ways.json", results)
    print(f"wrote {out / '03-mlp-three-ways.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
