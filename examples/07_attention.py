"""Attention by hand, then in a trained model (course modules 07–09).

1. The 3-token hand example: q = k = v = x, scores x_t·x_s/√2, causal softmax, weighted values.
2. A tiny character-level TransformerLM trained on TinyShakespeare (or a built-in text when the
   data is absent); its per-head attention maps are saved as a PNG.
3. The "cheat": the same model without the causal mask, on random tokens, drives its loss to 0
   by reading the next token; the honest model stays at log V. Loss curves saved as a PNG.
4. Architecture variants (course GPT-2 vs Llama-style switches) trained for the same steps.

    .venv/bin/python examples/07_attention.py --smoke            # seconds, writes to --out
    .venv/bin/python examples/07_attention.py --out docs/modules/img   # the docs' pictures
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from g2c.attention import SelfAttention  # noqa: E402
from g2c.training import AdamW  # noqa: E402
from g2c.transformer import TransformerLM  # noqa: E402

FALLBACK_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
) * 40


def hand_example() -> torch.Tensor:
    """Print and return the (3, 3) attention weights of the course's 3-token example."""
    attn = SelfAttention(2)
    with torch.no_grad():
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            lin.W.copy_(torch.eye(2))
            lin.b.zero_()
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    w = attn.attention_weights(x)[0]
    print("3-token example, x = [1,0], [0,1], [1,1], identity projections")
    print("attention weights (row t attends to s <= t):")
    for row in w.tolist():
        print("  " + "  ".join(f"{v:.4f}" for v in row))
    print("outputs:", [[round(v, 4) for v in r] for r in attn(x)[0].tolist()])
    return w


def load_text() -> str:
    root = os.environ.get("G2C_DATA_DIR")
    path = Path(root, "tinyshakespeare", "input.txt") if root else None
    return path.read_text(encoding="utf-8") if path and path.is_file() else FALLBACK_TEXT


def train(model, data, steps, batch=16, lr=3e-3, g=None, causal=True, random_vocab=None):
    """Plain AdamW loop; returns the list of training losses."""
    T = model.max_seq_len
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        if random_vocab:
            xy = torch.randint(0, random_vocab, (batch, T + 1), generator=g)
        else:
            ix = torch.randint(0, len(data) - T - 1, (batch,), generator=g)
            xy = torch.stack([data[i : i + T + 1] for i in ix])
        logits = model(xy[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def plot_attention_maps(model, chars: list[str], ids: torch.Tensor, path: Path) -> None:
    """Per-head attention weights of every layer for one short string."""
    L, H = len(model.blocks), model.config.num_heads
    fig, axes = plt.subplots(L, H, figsize=(2.2 * H, 2.2 * L), squeeze=False)
    x = model.token_embed.weight[ids[None]] + model.pos_embed(seq_len=len(ids))
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            w = block.attn.attention_weights(block.ln1(x))[0]  # (H, T, T)
            for h in range(H):
                ax = axes[layer][h]
                ax.imshow(w[h].numpy(), cmap="viridis", vmin=0, vmax=1)
                ax.set_xticks(range(len(chars)), chars, fontsize=6)
                ax.set_yticks(range(len(chars)), chars, fontsize=6)
                ax.set_title(f"layer {layer} head {h}", fontsize=8)
            x = block(x)
    fig.suptitle("attention weights (row = query position, column = key)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="attention by hand and in a trained model")
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    ap.add_argument("--out", default="runs/07_attention", help="directory for the PNGs")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    steps = 15 if args.smoke else args.steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    hand_example()

    # -- 2. a tiny char model and its attention maps ---------------------------------------
    text = load_text()
    chars = sorted(set(text))
    lut = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([lut[c] for c in text], dtype=torch.long)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    model = TransformerLM(len(chars), 64, 2, 4, 32, init="gpt2", attention_impl="sdpa", fused=True)
    t0 = time.perf_counter()
    losses = train(model, data, steps, g=g)
    print(f"char model: {steps} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f} "
          f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    sample = "First Citizen:\nSpeak, speak."
    ids = torch.tensor([lut[c] for c in sample])
    shown = [repr(c)[1:-1] for c in sample]
    plot_attention_maps(model.eval(), shown, ids, out / "08-attention-heads.png")

    # -- 3. the cheat: no causal mask on random tokens --------------------------------------
    V, curves = 16, {}
    for causal in (True, False):
        torch.manual_seed(args.seed)
        m = TransformerLM(V, 32, 1, 2, 16, init="gpt2", attention_impl="sdpa", fused=True)
        for block in m.blocks:
            block.attn.causal = causal
        curves[causal] = train(m, None, steps, batch=32, lr=1e-2, g=g, random_vocab=V)
    print(f"cheat: causal loss {curves[True][-1]:.3f} (log V = {math.log(V):.3f}), "
          f"without mask {curves[False][-1]:.3f}")  # fmt: skip
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(curves[True], label="causal (honest)")
    ax.plot(curves[False], label="no causal mask (cheat)")
    ax.axhline(math.log(V), color="gray", ls="--", lw=0.8, label="log V (uniform)")
    ax.set_xlabel("step")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title("random tokens: only a model that sees the future can win", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "07-causal-cheat.png", dpi=80)
    plt.close(fig)

    # -- 4. architecture variants on the same data --------------------------------------------
    variants = {
        "course (learned pos, LayerNorm, GELU)": {},
        "rope": {"positional": "rope"},
        "llama-style (rope, RMSNorm, SwiGLU, GQA 4/2)": {
            "positional": "rope",
            "norm": "rmsnorm",
            "mlp": "swiglu",
            "num_kv_heads": 2,
            "bias": False,
        },  # fmt: skip
        "post-norm": {"norm_position": "post"},
    }
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, kw in variants.items():
        torch.manual_seed(args.seed)
        g = torch.Generator().manual_seed(args.seed)
        m = TransformerLM(
            len(chars), 64, 2, 4, 32, init="gpt2", attention_impl="sdpa", fused=True, **kw
        )
        curve = train(m, data, steps, g=g)
        smooth = [sum(curve[max(0, i - 19) : i + 1]) / len(curve[max(0, i - 19) : i + 1])
                  for i in range(len(curve))]  # fmt: skip
        ax.plot(smooth, label=f"{name}: {m.num_parameters():,} params")
        print(f"variant {name}: final loss (20-step mean) {smooth[-1]:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats, 20-step mean)")
    ax.set_title("char-level TinyShakespeare, D=64, L=2, H=4, T=32", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "09-variant-losses.png", dpi=80)
    plt.close(fig)
    print(f"wrote PNGs to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
