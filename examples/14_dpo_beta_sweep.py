"""β sweep for DPO on a tiny model (docs/modules/14-dpo.md). CPU, 1 thread, ~1 minute.

    .venv/bin/python examples/14_dpo_beta_sweep.py [--steps 200] [--betas 0.01,0.1,1.0] [--smoke]


Task: prompt [BOS, a, b, SEP] (digits a, b), answer [max(a, b), END]. The policy starts from a
tiny TransformerLM SFT'd on answers that are half max(a, b), half min(a, b), so it cannot tell
them apart. DPO pairs: chosen = max (correct), rejected = min (a random wrong digit when a = b).
Held-out = 20 (a, b) combinations never seen in SFT or DPO.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

import torch

from g2c.artifacts import atomic_write_json
from g2c.dpo import DPOTrainer, PreferenceExample, pad_and_collate_pref
from g2c.sft import SFTExample, SFTTrainer
from g2c.transformer import TransformerLM

torch.set_num_threads(1)
PAD, BOS, SEP, END = 0, 1, 22, 23
V, L = 24, 8
D = lambda d: 2 + d  # noqa: E731  prompt digit ids
A = lambda d: 12 + d  # noqa: E731  answer digit ids

rng = random.Random(0)
combos = [(a, b) for a in range(10) for b in range(10)]
rng.shuffle(combos)
held, train = combos[:20], combos[20:]


def prompt(a, b):
    return [BOS, D(a), D(b), SEP]


def sft_examples(n):
    out = []
    for _ in range(n):
        a, b = rng.choice(train)
        ans = max(a, b) if rng.random() < 0.5 else min(a, b)  # a confusable wrong answer
        ids = prompt(a, b) + [A(ans), END]
        out.append(SFTExample(ids, [0, 0, 0, 0, 1, 1]))
    return out


def pairs(source, n):
    out = []
    for _ in range(n):
        a, b = rng.choice(source)
        good = max(a, b)
        bad = min(a, b) if a != b else rng.choice([d for d in range(10) if d != good])
        out.append(PreferenceExample(prompt(a, b), [A(good), END], [A(bad), END]))
    return out


@torch.no_grad()
def measure(policy, ref, examples):
    """Greedy answer accuracy, P(END | answer), KL(π‖ref) per response token (exact, over V)."""
    policy.eval()
    (x, y, m), _ = pad_and_collate_pref(examples, L, PAD)
    lp = torch.log_softmax(policy(x), -1)  # (B, T, V)
    lq = torch.log_softmax(ref(x), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)  # (B, T)
    kl = float((kl * m).sum() / m.sum())
    ans_pos = 3  # x[:, 3] = SEP predicts the answer digit
    digits = lp[:, ans_pos, 12:22].argmax(-1) + 12
    acc = float((digits == y[:, ans_pos]).float().mean())
    p_end = float(lp[:, 4, END].exp().mean())  # after the (correct) answer digit
    p_ans = float(lp[:, ans_pos, 12:22].exp().sum(-1).mean())  # mass on digit tokens
    return {"greedy_acc": acc, "p_end": p_end, "p_digit": p_ans, "kl": kl}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DPO beta sweep on a tiny model")
    ap.add_argument("--steps", type=int, default=200, help="DPO steps per beta")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--betas", default="0.01,0.1,1.0")
    ap.add_argument("--smoke", action="store_true", help="a few steps (seconds)")
    ap.add_argument("--plot", default=None, help="write the sweep plot (PNG) here")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.sft_steps = 5, 10
    betas = [float(b) for b in args.betas.split(",")]
    torch.manual_seed(0)
    base = TransformerLM(V, 32, 2, 2, L, generator=torch.Generator().manual_seed(0))
    sft = SFTTrainer(
        base,
        examples=sft_examples(2000),
        max_seq_len=L,
        pad_id=PAD,
        batch_size=32,
        max_steps=args.sft_steps,
        max_lr=3e-3,
        seed=0,
        device="cpu",
    )
    sft.train()
    dpo_train, dpo_held = pairs(train, 512), pairs(held, 200)
    rows = []
    ref = copy.deepcopy(base).eval()
    r = measure(base, ref, dpo_held)
    rows.append(
        (
            "SFT (start)",
            {
                "loss": 0.6931,
                "accuracy": float("nan"),
                "reward_margin": 0.0,
                "chosen_reward": 0.0,
                "rejected_reward": 0.0,
            }
            | r,
        )
    )
    for beta in betas:
        policy = copy.deepcopy(base)
        t0 = time.perf_counter()
        tr = DPOTrainer(
            policy,
            ref_model=copy.deepcopy(base),
            examples=dpo_train,
            max_seq_len=L,
            pad_id=PAD,
            beta=beta,
            batch_size=32,
            max_steps=args.steps,
            max_lr=3e-3,
            seed=0,
            device="cpu",
        )
        tr.train()
        ev = tr.evaluate(dpo_held)
        rows.append((f"DPO β={beta}", ev | measure(policy, ref, dpo_held)))
        print(f"β={beta}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    keys = (
        "accuracy",
        "reward_margin",
        "chosen_reward",
        "rejected_reward",
        "greedy_acc",
        "p_end",
        "p_digit",
        "kl",
    )
    print("| model | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    if args.json:
        record = {"steps": args.steps, "sft_steps": args.sft_steps, "betas": betas,
                  "rows": [{"model": name, **{k: r[k] for k in keys}} for name, r in rows]}  # fmt: skip
        atomic_write_json(args.json, record)
    if args.plot:
        plot_sweep(betas, [r for _, r in rows], args.plot, args.steps)
    return 0


def plot_sweep(betas: list[float], rows: list[dict], path: str, steps: int) -> None:
    """Held-out preference accuracy, greedy answer accuracy, END probability and KL to the
    reference against β (log scale); the SFT start as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, runs = rows[0], rows[1:]
    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label, color in (("accuracy", "preference accuracy (held out)", "C0"),
                              ("greedy_acc", "greedy answer correct", "C1"),
                              ("p_end", "p(END) after the answer (format)", "C2")):  # fmt: skip
        ax.plot(betas, [r[key] for r in runs], "o-", color=color, label=label)
        if key != "accuracy":
            ax.axhline(start[key], color=color, ls="--", lw=1)
    ax.set(xscale="log", xlabel="β", ylabel="fraction", ylim=(0, 1.05),
           title=f"DPO, {steps} steps (dashed: SFT start)")  # fmt: skip
    ax.legend(fontsize=8, loc="lower right")
    ax_kl.plot(betas, [r["kl"] for r in runs], "o-", color="C3")
    ax_kl.set(xscale="log", xlabel="β", ylabel="nats / response token",
              title="KL(policy ‖ reference)")  # fmt: skip
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
