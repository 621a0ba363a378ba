# %% [markdown]
# # 01B — classic models in NumPy, gradients by hand
#
# (1) The perceptron rule learns AND but never XOR (no line separates XOR). (2) Linear and
# logistic regression with hand-derived gradients, checked by finite differences. (3) A NumPy
# MLP whose layers write their own backward pass solves XOR and two moons.
#
#     .venv/bin/python examples/01b_classic.py                       # plots to docs/modules/img/
#     .venv/bin/python examples/01b_classic.py --smoke --out /tmp/x  # seconds
# %%
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from g2c.artifacts import atomic_write_with  # noqa: E402
from g2c.classic import (  # noqa: E402
    MLP,
    LinearRegression,
    LogisticRegression,
    Perceptron,
    finite_difference_grad,
    relative_error,
    train_classifier,
)
from g2c.data.toy import make_line, make_moons  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def _regions(ax, predict, X, y, title, grid):
    """Shade predict's classes over a grid around X and scatter the labelled points."""
    xs = np.linspace(X[:, 0].min() - 0.5, X[:, 0].max() + 0.5, grid)
    ys = np.linspace(X[:, 1].min() - 0.5, X[:, 1].max() + 0.5, grid)
    gx, gy = np.meshgrid(xs, ys)
    z = predict(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)  # (grid, grid)
    ax.contourf(gx, gy, z, levels=[-0.5, 0.5, 1.5], cmap="coolwarm", alpha=0.35)
    ax.scatter(
        X[:, 0],
        X[:, 1],
        c=y,
        cmap="coolwarm",
        s=30 if len(X) < 10 else 12,
        edgecolors="k",
        linewidths=0.5,
    )
    ax.set_title(title, fontsize=10)


def perceptron_demo(epochs: int) -> tuple[Perceptron, list[int], Perceptron, list[int]]:
    """Train the perceptron on AND and on XOR; return both models and their mistake counts."""
    p_and, p_xor = Perceptron(2), Perceptron(2)
    return (
        p_and,
        p_and.fit(XOR_X, np.array([0, 0, 0, 1]), epochs),
        p_xor,
        p_xor.fit(XOR_X, np.array([0, 1, 1, 0]), epochs),
    )


def gradient_checks() -> dict[str, float]:
    """Relative error between hand-derived and finite-difference gradients for both regressions."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    out = {}
    for name, model, y in (
        ("linear regression (MSE)", LinearRegression(3), rng.normal(size=50)),
        ("logistic regression (BCE)", LogisticRegression(3), rng.integers(0, 2, 50).astype(float)),
    ):
        model.w, model.b = rng.normal(size=3), 0.1
        _, dw, db = model.loss_and_gradients(X, y)

        def loss_of(theta, model=model, y=y):
            model.w, model.b = theta[:3], float(theta[3])
            return model.loss(X, y)

        out[name] = relative_error(
            np.append(dw, db), finite_difference_grad(loss_of, np.append(model.w, model.b))
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the demos; ``--smoke`` makes them tiny; plots go to ``--out``."""
    parser = argparse.ArgumentParser(
        description="01B classic models: perceptron, regressions, MLP by hand"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "modules" / "img")
    args = parser.parse_args(argv)
    epochs, mlp_steps, n_moons, grid = (10, 50, 40, 20) if args.smoke else (100, 1000, 200, 150)

    p_and, m_and, p_xor, m_xor = perceptron_demo(epochs)
    print(f"perceptron AND: mistakes per epoch {m_and} (converged)")
    print(
        f"perceptron XOR: {len(m_xor)} epochs, mistakes never 0 (min {min(m_xor)}), accuracy {(p_xor.predict(XOR_X) == [0, 1, 1, 0]).mean():.0%}"
    )

    x, y = make_line(100, seed=0)
    lin = LinearRegression(1)
    lin.fit(x, y, lr=0.5, epochs=epochs * 3)
    print(f"linear regression: w={lin.w[0]:.3f} b={lin.b:.3f} (data: slope 3, intercept 2)")
    for name, err in gradient_checks().items():
        print(f"gradient check {name}: relative error {err:.1e}")

    mlp_xor = MLP((2, 8, 2), activation="tanh", rng=0)
    xor_losses = train_classifier(mlp_xor, XOR_X, np.array([0, 1, 1, 0]), lr=0.5, steps=mlp_steps)
    print(f"numpy MLP on XOR: loss {xor_losses[0]:.3f} -> {xor_losses[-1]:.4f}")
    Xm, ym = make_moons(n_moons, noise=0.1, seed=0)
    mlp = MLP((2, 32, 32, 2), activation="relu", batchnorm=True, rng=0)
    train_classifier(mlp, Xm, ym, lr=0.5, steps=mlp_steps // 2)
    mlp.eval()
    print(
        f"numpy MLP + BatchNorm on moons: train accuracy {(mlp.forward(Xm).argmax(1) == ym).mean():.1%}"
    )

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5))
    _regions(axes[0], p_and.predict, XOR_X, [0, 0, 0, 1], "perceptron on AND: separable", grid)
    _regions(
        axes[1],
        p_xor.predict,
        XOR_X,
        [0, 1, 1, 0],
        f"perceptron on XOR: fails ({len(m_xor)} epochs)",
        grid,
    )
    _regions(
        axes[2],
        lambda Z: mlp_xor.eval().forward(Z).argmax(1),
        XOR_X,
        [0, 1, 1, 0],
        "2-8-2 tanh MLP on XOR: solved",
        grid,
    )
    fig.tight_layout()
    path = args.out / "01b-perceptron-xor.png"
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    _regions(
        ax,
        lambda Z: mlp.forward(Z).argmax(1),
        Xm,
        ym,
        "NumPy MLP (backprop by hand) on moons",
        grid,
    )
    fig.tight_layout()
    path2 = args.out / "01b-mlp-moons.png"
    atomic_write_with(path2, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)
    print(f"wrote {path} and {path2}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
