# %% [markdown]
# # 01 — scalar autodiff: from one neuron to the two-moons classifier
#
# Every number is a `Value` that remembers its children and the local derivatives; `backward()`
# applies the chain rule in reverse topological order. We (1) trace a single neuron, (2) train
# the 2-2-1 tanh net on XOR, (3) train a 2-16-16-1 ReLU MLP on two moons to 100 % train accuracy
# in 100 SGD steps and plot its decision boundary.
#
#     .venv/bin/python examples/01_autodiff.py            # full run, plots to docs/modules/img/
#     .venv/bin/python examples/01_autodiff.py --smoke --out /tmp/x   # seconds
# %%
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from g2c.artifacts import atomic_write_with  # noqa: E402
from g2c.autodiff import (  # noqa: E402
    ScalarMLP,
    Value,
    draw_text,
    max_margin_loss,
    single_neuron_forward,
    train_moons_step,
    train_xor_step,
    xor_loss,
)
from g2c.data.toy import make_moons  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# %% 1. one neuron, traced
def neuron_trace() -> str:
    """Forward + backward through tanh(w1·x1 + w2·x2 + b) and render the graph as text."""
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2, b = Value(-3.0, label="w1"), Value(1.0, label="w2"), Value(6.88137, label="b")
    out = single_neuron_forward(x1, x2, w1, w2, b)
    out.label = "out"
    out.backward()
    return draw_text(out)


# %% 2. XOR with the 2-2-1 tanh net
def train_xor(steps: int) -> list[float]:
    """Train the default ScalarMLP on XOR; return the loss before each step."""
    model = ScalarMLP(random.Random(0))
    losses = [train_xor_step(model, lr=0.5) for _ in range(steps)]
    losses.append(xor_loss(model).data)
    return losses


# %% 3. two moons with a 2-16-16-1 ReLU MLP (max-margin loss + L2, SGD)
def train_moons(
    n_samples: int, steps: int
) -> tuple[ScalarMLP, np.ndarray, np.ndarray, list[float], list[float]]:
    """The micrograd demo: returns model, X, y (±1), losses, accuracies (one per step)."""
    X, y01 = make_moons(n_samples, noise=0.1, seed=0)
    y = 2.0 * y01 - 1.0  # labels {-1, +1}
    model = ScalarMLP(
        random.Random(1337),
        layer_sizes=(2, 16, 16, 1),
        activation="relu",
        output_activation="linear",
    )
    losses, accs = [], []
    rows, labels = X.tolist(), y.tolist()
    for k in range(steps):
        loss, acc = train_moons_step(model, rows, labels, lr=1.0 - 0.9 * k / 100)
        losses.append(loss)
        accs.append(acc)
    _, final_acc = max_margin_loss(model, rows, labels)
    accs.append(final_acc)
    return model, X, y, losses, accs


def plot_boundary(
    model: ScalarMLP, X: np.ndarray, y: np.ndarray, losses: list[float], path: Path, grid: int
) -> None:
    """Decision regions of ``model`` over ``X`` plus the loss curve, saved as a PNG."""
    xs = np.linspace(X[:, 0].min() - 0.5, X[:, 0].max() + 0.5, grid)
    ys = np.linspace(X[:, 1].min() - 0.5, X[:, 1].max() + 0.5, grid)
    scores = np.array([[model((float(a), float(b))).data for a in xs] for b in ys])  # (grid, grid)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    ax1.contourf(xs, ys, scores > 0, cmap="coolwarm", alpha=0.35)
    ax1.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=14, edgecolors="k", linewidths=0.4)
    ax1.set_title("2-16-16-1 scalar MLP on two moons")
    ax2.plot(losses)
    ax2.set_xlabel("SGD step")
    ax2.set_ylabel("max-margin loss + L2")
    ax2.set_yscale("log")
    ax2.set_title("training loss")
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the three demos; ``--smoke`` shrinks them to seconds; plots go to ``--out``."""
    parser = argparse.ArgumentParser(description="01 autodiff: neuron trace, XOR, two moons")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "modules" / "img")
    args = parser.parse_args(argv)
    n_samples, steps, xor_steps, grid = (20, 5, 50, 8) if args.smoke else (100, 100, 1000, 60)

    print(neuron_trace())
    xor = train_xor(xor_steps)
    print(f"XOR: loss {xor[0]:.4f} -> {xor[-1]:.6f} after {xor_steps} steps")

    t0 = time.perf_counter()
    model, X, y, losses, accs = train_moons(n_samples, steps)
    print(
        f"moons: loss {losses[0]:.4f} -> {losses[-1]:.4f}, train accuracy {accs[-1]:.0%} after {steps} steps ({time.perf_counter() - t0:.1f} s)"
    )
    plot_boundary(model, X, y, losses, args.out / "01-moons-boundary.png", grid)
    print(f"wrote {args.out / '01-moons-boundary.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
