"""Module 03B deliverable: learning-rate sweep, SGD vs AdamW, gradient clipping, warmup + cosine.

All on the same 784-128-10 MLP and a 5,000-image MNIST subset (``g2c.runs.mnist``):

1. learning-rate sweep for SGD and AdamW (3 epochs each, cosine schedule): final validation
   loss against the peak learning rate;
2. SGD vs AdamW, each at its best swept rate, on identical data, model init and batch order
   (same seed): training-loss curves;
3. clipping: plain SGD at lr 1.0 (too high) with and without ``clip_grad_norm_(max_norm=1)``:
   loss and pre-clip gradient norm per step;
4. the ``cosine_with_warmup`` schedule for a few warmup lengths.

Writes ``03b-lr-sweep.png``, ``03b-sgd-vs-adamw.png``, ``03b-clipping.png`` and
``03b-schedule.png`` into ``--img-dir`` and ``results.json`` into ``--out``.

    python examples/03b_training.py --threads 1    # full: about a minute of CPU
    python examples/03b_training.py --smoke        # tiny, for the tests
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from g2c.artifacts import atomic_write_json, atomic_write_with  # noqa: E402
from g2c.nn import SGD, CrossEntropyLoss  # noqa: E402
from g2c.runs.mnist import MNISTConfig, build_mlp, load_split, train_mnist  # noqa: E402
from g2c.training import clip_grad_norm_, cosine_with_warmup  # noqa: E402

SGD_LRS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
ADAMW_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)


def _smooth(xs: list[float], k: int) -> list[float]:
    """Trailing moving average over ``k`` values (for noisy per-batch losses)."""
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x - (xs[i - k] if i >= k else 0.0)
        out.append(acc / min(i + 1, k))
    return out


def lr_sweep(base: dict, smoke: bool) -> dict[str, dict[float, object]]:
    """Train once per (optimizer, lr); returns optimizer → lr → MNISTResult."""
    sweeps = {"sgd": SGD_LRS[2:5] if smoke else SGD_LRS,
              "adamw": ADAMW_LRS[1:4] if smoke else ADAMW_LRS}  # fmt: skip
    out: dict[str, dict[float, object]] = {}
    for opt, lrs in sweeps.items():
        out[opt] = {}
        for lr in lrs:
            cfg = MNISTConfig(optimizer=opt, lr=lr, min_lr=0.0, **base)
            out[opt][lr] = train_mnist(cfg)
            r = out[opt][lr]
            print(f"  {opt:5s} lr {lr:<7g} val loss {r.val_loss:.4f}  val acc {r.val_accuracy:.4f}")
    return out


def clipping_demo(data_path: str | None, steps: int, seed: int, lr: float = 1.0) -> dict:
    """SGD at a too-high lr with and without clipping; per-step loss and pre-clip grad norm."""
    x, y = load_split("mnist", "train", data_path)
    x = x[:5000].float().div(255).reshape(-1, 784)  # (N, 784)
    x, y = (x - x.mean()) / x.std(), y[:5000]
    runs = {}
    for name, max_norm in (("no clipping", math.inf), ("clip at 1.0", 1.0)):
        g = torch.Generator().manual_seed(seed)  # same init and batches for both runs
        model = build_mlp(MNISTConfig(), generator=g)
        params = model.parameters()
        opt, loss_fn = SGD(params, lr=lr), CrossEntropyLoss()
        losses, norms = [], []
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=g)
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            norms.append(clip_grad_norm_(params, max_norm))  # max_norm=inf only measures
            opt.step()
            losses.append(loss.item())
        runs[name] = {"loss": losses, "grad_norm": norms}
    return runs


def main(argv: list[str] | None = None) -> dict:
    """Run the four demos, write plots and results.json, print and return the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny subsets and sweeps (seconds)")
    ap.add_argument("--data-path", default=None, help="MNIST IDX directory (default: g2c.data)")
    ap.add_argument("--img-dir", default="docs/modules/img")
    ap.add_argument("--out", default="runs/examples/03b_training")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    img = Path(args.img_dir)
    base = dict(data_path=args.data_path, train_limit=5000, val_size=5000, epochs=3, max_shift=0,
                warmup_steps=10, weight_decay=0.0, seed=args.seed, threads=args.threads)  # fmt: skip
    if args.smoke:
        base.update(train_limit=300, val_size=200, test_limit=200, epochs=1, warmup_steps=2)

    # 1. learning-rate sweep ------------------------------------------------------------------
    print("learning-rate sweep")
    sweep = lr_sweep(base, args.smoke)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    best = {}
    for opt, runs in sweep.items():
        lrs = sorted(runs)
        ax.plot(lrs, [runs[lr].val_loss for lr in lrs], "o-", label=opt)
        best[opt] = min(lrs, key=lambda lr, runs=runs: runs[lr].val_loss)
    ax.set(xscale="log", yscale="log", xlabel="peak learning rate",
           ylabel="val loss after 3 epochs", title="learning-rate sweep")  # fmt: skip
    ax.legend()
    _save(fig, img / "03b-lr-sweep.png")

    # 2. SGD vs AdamW at their best rates, same data / init / batch order ------------------------
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for opt in ("sgd", "adamw"):
        r = sweep[opt][best[opt]]
        ax.plot(r.history["step"], _smooth(r.history["train_loss"], 10),
                label=f"{opt} lr={best[opt]:g} (val acc {r.val_accuracy:.2%})")  # fmt: skip
    first = {opt: sweep[opt][best[opt]].history["train_loss"][0] for opt in sweep}
    ax.set(xlabel="step", ylabel="train loss (10-step mean)", yscale="log",
           title="SGD vs AdamW, same data, init and seed")  # fmt: skip
    ax.legend(fontsize=8)
    _save(fig, img / "03b-sgd-vs-adamw.png")

    # 3. clipping ------------------------------------------------------------------------------
    clip = clipping_demo(args.data_path, 30 if args.smoke else 300, args.seed)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, run in clip.items():
        ax1.plot(run["loss"], lw=0.8, label=name)
        ax2.plot(run["grad_norm"], lw=0.8, label=name)
    ax1.set(xlabel="step", ylabel="train loss", yscale="log", title="SGD lr=1.0")
    ax2.set(xlabel="step", ylabel="global grad norm (before clipping)", yscale="log")
    ax2.axhline(1.0, color="k", ls=":", lw=0.8)
    ax1.legend(fontsize=8)
    _save(fig, img / "03b-clipping.png")

    # 4. schedule ------------------------------------------------------------------------------
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for warmup in (0, 100, 500):
        lrs = [cosine_with_warmup(s, warmup, 2000, 1e-3, 1e-4) for s in range(2200)]
        ax.plot(lrs, label=f"warmup {warmup}")
    ax.set(xlabel="step", ylabel="learning rate",
           title="cosine_with_warmup(max_steps=2000, 1e-3 → 1e-4)")  # fmt: skip
    ax.legend(fontsize=8)
    _save(fig, img / "03b-schedule.png")

    results = {
        "sweep": {opt: {str(lr): {"val_loss": r.val_loss, "val_accuracy": r.val_accuracy}
                        for lr, r in runs.items()} for opt, runs in sweep.items()},
        "best_lr": best,
        "first_batch_loss": first,
        "clipping": {name: {"final_loss_mean20": sum(run["loss"][-20:]) / 20,
                            "max_loss": max(run["loss"]), "max_grad_norm": max(run["grad_norm"])}
                     for name, run in clip.items()},
    }  # fmt: skip
    print(f"best lr: {best}; first-batch loss (identical init/data): {first}")
    for name, c in results["clipping"].items():
        print(f"  {name}: final loss {c['final_loss_mean20']:.4f}, max loss {c['max_loss']:.2f}, "
              f"max grad norm {c['max_grad_norm']:.1f}")  # fmt: skip
    atomic_write_json(Path(args.out) / "results.json", results)
    return results


if __name__ == "__main__":
    main()
