"""Module 03 deliverable: fit y = 3x + 2, then classify moons and circles with g2c.nn.

Everything trainable is g2c: ``Linear``, ``Tanh``, ``Sequential``, ``MSELoss``,
``CrossEntropyLoss`` and ``SGD`` / ``g2c.training.AdamW``; torch supplies tensors and autograd.
Data comes from ``g2c.data.toy`` (make_line, make_moons, make_circles).

Writes ``03-line-fit.png`` and ``03-decision-boundaries.png`` into ``--img-dir`` (default
``docs/modules/img``) and prints the learned slope/intercept and the accuracies.

    python examples/03_regression_classification.py            # full (a few seconds)
    python examples/03_regression_classification.py --smoke    # tiny, for the tests
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from g2c.artifacts import atomic_write_with  # noqa: E402
from g2c.data.toy import make_circles, make_line, make_moons  # noqa: E402
from g2c.nn import SGD, CrossEntropyLoss, Linear, MSELoss, Sequential, Tanh  # noqa: E402
from g2c.training import AdamW  # noqa: E402


def fit_line(n: int, steps: int, seed: int = 0) -> dict:
    """Linear(1, 1) + MSELoss + SGD on y = 3x + 2 + noise; returns slope, intercept, losses."""
    x, y = make_line(n_samples=n, slope=3.0, intercept=2.0, noise=0.1, seed=seed)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)  # (N, 1)
    model = Linear(1, 1, generator=torch.Generator().manual_seed(seed))
    opt, loss_fn = SGD(model.parameters(), lr=0.3), MSELoss()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"x": x, "y": y, "model": model, "losses": losses,
            "slope": model.W.item(), "intercept": model.b.item()}  # fmt: skip


def classify(name: str, n: int, steps: int, seed: int = 0) -> dict:
    """A 2-16-16-2 tanh MLP + CrossEntropyLoss + AdamW on moons or circles."""
    make = make_moons if name == "moons" else make_circles
    X, y = make(n_samples=n, noise=0.15 if name == "moons" else 0.08, seed=seed)
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)  # (N, 2), (N,)
    g = torch.Generator().manual_seed(seed)
    model = Sequential(Linear(2, 16, generator=g), Tanh(), Linear(16, 16, generator=g), Tanh(),
                       Linear(16, 2, generator=g))  # fmt: skip
    opt, loss_fn = AdamW(model.parameters(), lr=0.02, weight_decay=0.0), CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), y)  # full batch
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(X).argmax(-1) == y).float().mean().item()
    return {"X": X, "y": y, "model": model, "loss": loss.item(), "accuracy": accuracy}


def plot_line(fit: dict, path: Path) -> None:
    """Data points, the fitted line and the loss curve."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    ax1.scatter(fit["x"], fit["y"], s=6, alpha=0.6, label="data")
    xs = torch.linspace(-1, 1, 50)[:, None]
    with torch.no_grad():
        ax1.plot(
            xs, fit["model"](xs), "r", label=f"ŷ = {fit['slope']:.3f}x + {fit['intercept']:.3f}"
        )
    ax1.legend(fontsize=8)
    ax1.set(xlabel="x", ylabel="y", title="y = 3x + 2 + noise")
    ax2.plot(fit["losses"])
    ax2.set(xlabel="SGD step", ylabel="MSE", yscale="log", title="loss")
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)


def plot_boundaries(results: dict[str, dict], path: Path) -> None:
    """Predicted class over a grid (decision boundary) with the data on top, one panel each."""
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6))
    for ax, (name, r) in zip(axes, results.items()):
        X = r["X"]
        lo, hi = X.min(0).values - 0.5, X.max(0).values + 0.5
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200),
                                indexing="xy")  # fmt: skip
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (200², 2)
        with torch.no_grad():
            p1 = r["model"](grid).softmax(-1)[:, 1].reshape(200, 200)  # P(class 1)
        ax.contourf(gx, gy, p1, levels=20, cmap="RdBu_r", alpha=0.6)
        ax.contour(gx, gy, p1, levels=[0.5], colors="k", linewidths=1)
        ax.scatter(X[:, 0], X[:, 1], c=r["y"], cmap="RdBu_r", s=8, edgecolors="k", linewidths=0.2)
        ax.set(title=f"{name}: accuracy {r['accuracy']:.1%}", xticks=[], yticks=[])
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the three fits, write the plots, print and return the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, runs in about a second")
    ap.add_argument("--img-dir", default="docs/modules/img")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n, steps = (64, 60) if args.smoke else (200, 200)
    cls_steps = 100 if args.smoke else 1000
    img = Path(args.img_dir)

    line = fit_line(n, steps, args.seed)
    print(f"y = 3x + 2 fit: slope {line['slope']:.4f}, intercept {line['intercept']:.4f}, "
          f"MSE {line['losses'][-1]:.5f}")  # fmt: skip
    plot_line(line, img / "03-line-fit.png")
    results = {name: classify(name, 2 * n, cls_steps, args.seed) for name in ("moons", "circles")}
    for name, r in results.items():
        print(f"{name}: train accuracy {r['accuracy']:.3f}, loss {r['loss']:.4f}")
    plot_boundaries(results, img / "03-decision-boundaries.png")
    return {
        "slope": line["slope"],
        "intercept": line["intercept"],
        "line_mse": line["losses"][-1],
        **{f"{k}_accuracy": r["accuracy"] for k, r in results.items()},
    }


if __name__ == "__main__":
    main()
