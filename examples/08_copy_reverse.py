# %% [markdown]
# # 08 — attention vs recurrence on the copy / reverse-sequence task
#
# A line of L random symbols, a separator, then the same symbols again (copy) or reversed
# (reverse). A small causal transformer (`g2c.transformer.TransformerLM`) and an LSTM
# (`g2c.lm.RNNLanguageModel(cell="lstm")`) with the same number of parameters (within 10 %)
# are trained with the same steps, batches and optimizer for each L, then scored on fresh lines
# (teacher-forced accuracy on the second half). The LSTM must carry every symbol in its
# fixed-size state; attention looks back at it. The task lives in `g2c.lm.copy_task`.
#
# Run: `python examples/08_copy_reverse.py` (a few minutes on 1–2 threads; writes
# `docs/modules/img/08-copy-reverse.{json,png}`) or `--smoke` (seconds).

# %%
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from g2c.artifacts import atomic_write_json
from g2c.lm import (
    COPY_TASKS,
    RNNLanguageModel,
    copy_task_accuracy,
    copy_task_loss,
    make_copy_batch,
)
from g2c.nn import Module
from g2c.training import AdamW
from g2c.transformer import TransformerLM

NUM_SYMBOLS = 8
VOCAB = NUM_SYMBOLS + 1  # + the separator


# %% [markdown]
# ## 1. Two models of equal size
# The transformer's size is fixed; the LSTM's hidden width is the one whose parameter count is
# closest to it (the learned position table is sized for the longest line, so the count does
# not change with L).
def build_models(
    embedding_dim: int, num_layers: int, num_heads: int, max_len: int, seed: int
) -> dict[str, tuple[Module, object]]:
    """``{"attention": (model, forward), "lstm": (model, forward)}``; forward: (B, T) → (B, T, V)."""
    max_seq_len = 2 * max_len
    tf = TransformerLM(
        VOCAB,
        embedding_dim,
        num_layers,
        num_heads,
        max_seq_len,
        generator=torch.Generator().manual_seed(seed),
    )

    def lstm(hidden: int) -> RNNLanguageModel:
        g = torch.Generator().manual_seed(seed)
        return RNNLanguageModel(VOCAB, max_seq_len, embedding_dim, hidden, cell="lstm", generator=g)

    target = tf.num_parameters()
    hidden = min(range(4, 8 * embedding_dim), key=lambda h: abs(lstm(h).num_parameters() - target))
    rnn = lstm(hidden)
    return {"attention": (tf, tf), "lstm": (rnn, rnn.sequence_logits)}


# %% [markdown]
# ## 2. Train one model on one length, score it on fresh lines
def train_and_score(
    model: Module,
    forward,
    task: str,
    length: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> dict:
    """AdamW on random batches, then token / sequence accuracy on 512 unseen lines."""
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        x, y, mask = make_copy_batch(
            batch_size, length, num_symbols=NUM_SYMBOLS, task=task, generator=g
        )
        loss = copy_task_loss(forward(x), y, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    x, y, mask = make_copy_batch(
        512,
        length,
        num_symbols=NUM_SYMBOLS,
        task=task,
        generator=torch.Generator().manual_seed(10_000 + seed),
    )
    model.eval()
    token_acc, seq_acc = copy_task_accuracy(forward(x), y, mask)
    return {
        "final_loss": loss.item(),
        "token_accuracy": token_acc,
        "sequence_accuracy": seq_acc,
        "train_seconds": seconds,
    }


# %% [markdown]
# ## 3. Accuracy vs sequence length, plotted
def plot(results: dict, path: Path) -> None:
    """One panel per task: token accuracy vs L for each model (chance = 1/8)."""
    tasks = list(results["runs"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name, marker in (("attention", "o"), ("lstm", "s")):
            rows = results["runs"][task][name]
            label = f"{name} ({results['parameters'][name]:,} params)"
            ax.plot(
                [r["length"] for r in rows],
                [r["token_accuracy"] for r in rows],
                marker=marker,
                label=label,
            )
        ax.axhline(1 / NUM_SYMBOLS, color="gray", ls=":", label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("token accuracy (second half)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{task}, {results['config']['steps']} steps each")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run every (task, length, model); write ``08-copy-reverse.json`` and the PNG into ``--out``."""
    ap = argparse.ArgumentParser(description="attention vs LSTM on copy / reverse")
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    ap.add_argument("--lengths", default="4,8,16,32", help="comma-separated L values")
    ap.add_argument("--tasks", default=",".join(COPY_TASKS), help="copy,reverse or one of them")
    ap.add_argument("--steps", type=int, default=600, help="training steps per (task, L, model)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--dim", type=int, default=32, help="transformer width = LSTM embedding width")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/modules/img")
    args = ap.parse_args(argv)
    lengths = [int(v) for v in args.lengths.split(",") if v.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not lengths or min(lengths) < 1:
        ap.error(f"--lengths must be positive ints, got {args.lengths!r}")
    if not tasks or any(t not in COPY_TASKS for t in tasks):
        ap.error(f"--tasks must be a subset of {COPY_TASKS}, got {args.tasks!r}")
    if args.smoke:
        lengths, tasks = [2, 4], ["copy"]
        args.steps, args.batch_size, args.dim, args.layers, args.heads = 15, 16, 16, 1, 2
    torch.set_num_threads(args.threads)

    params: dict[str, int] = {}
    runs: dict[str, dict[str, list]] = {}
    t0 = time.perf_counter()
    for task in tasks:
        runs[task] = {"attention": [], "lstm": []}
        for length in lengths:
            models = build_models(args.dim, args.layers, args.heads, max(lengths), args.seed)
            for name, (model, forward) in models.items():
                params[name] = model.num_parameters()
                r = train_and_score(
                    model, forward, task, length, args.steps, args.batch_size, args.lr, args.seed
                )
                runs[task][name].append({"length": length, **r})
                print(
                    f"{task:7s} L={length:3d} {name:9s} token acc {r['token_accuracy']:.3f}  "
                    f"sequence acc {r['sequence_accuracy']:.3f}  ({r['train_seconds']:.1f} s)"
                )
    results = {
        "config": {
            "lengths": lengths,
            "tasks": tasks,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "num_symbols": NUM_SYMBOLS,
            "transformer": {"dim": args.dim, "layers": args.layers, "heads": args.heads},
            "lstm_hidden": models["lstm"][0].hidden_dim,
            "threads": args.threads,
            "seed": args.seed,
            "smoke": args.smoke,
        },
        "parameters": params,
        "runs": runs,
        "seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    atomic_write_json(out / "08-copy-reverse.json", results)
    plot(results, out / "08-copy-reverse.png")
    print(f"parameters: {params}; wrote {out / '08-copy-reverse.json'} and the plot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
