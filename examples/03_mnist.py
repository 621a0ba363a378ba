"""Module 03/03B deliverable: a 784-128-10 MLP on MNIST and Fashion-MNIST with g2c.nn + AdamW.

Three experiments, all through the library job :func:`g2c.runs.mnist.train_mnist`:

1. the main MNIST run (12 epochs, AdamW 2e-3 → cosine → 1e-5, ±2 px random shifts): train and
   validation loss curves, test accuracy, wall time;
2. overfitting: 1,000 training images, no augmentation, 200 epochs, weight decay 0 vs 3.0
   (decoupled, so each step shrinks weights by lr·wd): the train loss goes to ~0 in both, the
   validation loss turns up without decay and stays lower with it;
3. Fashion-MNIST with the main recipe (no shifts: clothes are centred and shifts hurt).

Writes ``03-mnist-curves.png`` and ``03-overfitting.png`` into ``--img-dir`` and
``results.json`` into ``--out``.

    python examples/03_mnist.py --threads 1        # full: ~2-4 min of CPU in total
    python examples/03_mnist.py --smoke            # tiny subsets, for the tests
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from g2c.artifacts import atomic_write_json, atomic_write_with  # noqa: E402
from g2c.runs.mnist import MNISTConfig, MNISTResult, train_mnist  # noqa: E402


def experiments(args: argparse.Namespace) -> dict[str, MNISTConfig]:
    """The configs of the four runs (tiny ones under ``--smoke``)."""
    common = dict(threads=args.threads, seed=args.seed, device="cpu")
    tiny = dict(train_limit=600, test_limit=500, val_size=200, warmup_steps=5) if args.smoke else {}
    overfit_epochs = 4 if args.smoke else 200
    overfit = dict(train_limit=1000, max_shift=0, epochs=overfit_epochs, batch_size=100, lr=1e-3,
                   warmup_steps=10, **common)  # fmt: skip
    if args.smoke:
        overfit.update(train_limit=300, test_limit=500, val_size=200)
    epochs = 2 if args.smoke else 12
    return {
        "mnist": MNISTConfig(data_path=args.data_path, epochs=epochs, **common, **tiny),
        "overfit_wd0": MNISTConfig(data_path=args.data_path, weight_decay=0.0, **overfit),
        "overfit_wd3": MNISTConfig(data_path=args.data_path, weight_decay=3.0, **overfit),
        "fashion": MNISTConfig(
            dataset="fashion-mnist",
            data_path=args.fashion_path,
            max_shift=0,
            epochs=epochs,
            **common,
            **tiny,
        ),  # fmt: skip
    }


def plot_curves(runs: dict[str, MNISTResult], path: Path) -> None:
    """Per-epoch train loss and validation loss for MNIST and Fashion-MNIST, accuracies in titles."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for ax, key, title in ((axes[0], "mnist", "MNIST"), (axes[1], "fashion", "Fashion-MNIST")):
        r = runs[key]
        epochs = range(1, len(r.history["epoch_train_loss"]) + 1)
        ax.plot(epochs, r.history["epoch_train_loss"], "o-", ms=3, label="train (epoch mean)")
        ax.plot(epochs, r.history["val_loss"], "s-", ms=3, label="validation")
        ax.set(xlabel="epoch", ylabel="cross-entropy (nats)", yscale="log",
               title=f"{title}: test acc {r.test_accuracy:.2%}")  # fmt: skip
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)


def plot_overfitting(runs: dict[str, MNISTResult], path: Path) -> None:
    """Train and validation loss per epoch, without and with weight decay."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, color in (("overfit_wd0", "C3"), ("overfit_wd3", "C0")):
        r = runs[key]
        label = f"wd={r.config.weight_decay:g}"
        epochs = range(1, len(r.history["epoch_train_loss"]) + 1)
        ax.plot(epochs, r.history["epoch_train_loss"], "--", color=color, label=f"{label} train")
        ax.plot(epochs, r.history["val_loss"], "-", color=color,
                label=f"{label} val (test acc {r.test_accuracy:.2%})")  # fmt: skip
    ax.set(xlabel="epoch", ylabel="cross-entropy (nats)", yscale="log",
           title="1,000 MNIST images, no augmentation")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the experiments, write plots and results.json, print and return the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny subsets and epochs (seconds)")
    ap.add_argument("--data-path", default=None, help="MNIST IDX directory (default: g2c.data)")
    ap.add_argument("--fashion-path", default=None, help="Fashion-MNIST IDX directory")
    ap.add_argument("--img-dir", default="docs/modules/img")
    ap.add_argument("--out", default="runs/examples/03_mnist")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: unchanged)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    runs: dict[str, MNISTResult] = {}
    for name, cfg in experiments(args).items():
        runs[name] = train_mnist(cfg)
        r = runs[name]
        print(f"{name:12s} test acc {r.test_accuracy:.4f}  test loss {r.test_loss:.4f}  "
              f"final val loss {r.val_loss:.4f}  min val loss {min(r.history['val_loss']):.4f}  "
              f"train {r.train_seconds:.1f}s  threads {r.config.threads}")  # fmt: skip
    img = Path(args.img_dir)
    plot_curves(runs, img / "03-mnist-curves.png")
    plot_overfitting(runs, img / "03-overfitting.png")
    results = {
        name: {**r.metrics(), "min_val_loss": min(r.history["val_loss"]),
               "final_train_loss": r.history["epoch_train_loss"][-1], "config": r.config.to_dict()}
        for name, r in runs.items()
    }  # fmt: skip
    atomic_write_json(Path(args.out) / "results.json", results)
    return results


if __name__ == "__main__":
    main()
