"""Attention inspector: per-layer, per-head attention maps and simple head-type scores.

For a passage, ``attention_maps(model, idx)`` runs the model block by block and returns each
block's attention weights (B, H, T, T) — the softmax(QKᵀ/√d) the block actually uses on its
normalised input. Three scores (Olsson et al. 2022, "In-context Learning and Induction Heads";
Clark et al. 2019, "What Does BERT Look At?") flag head types:

- previous-token score: mean weight from position t to t−1 (t ≥ 1);
- first-token score: mean weight from position t to position 0 (t ≥ 1; "attention sink");
- induction score: on a random token sequence repeated twice, mean weight from each position
  of the second copy to the token right after the same token's earlier occurrence
  (position t − L + 1 for period L).

A head is flagged when its score is ≥ ``threshold`` (0.4 by default; a uniform head over T
positions scores about 1/T).
"""

from __future__ import annotations

import torch

from g2c.artifacts import atomic_write_with


@torch.no_grad()
def attention_maps(model, idx: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of every block of a TransformerLM for ids ``idx`` (1, T) or (T,).

    Returns a list of L tensors (H, T, T) (batch row 0), rows summing to 1. T > max_seq_len →
    ValueError (from the model).
    """
    if idx.dim() == 1:
        idx = idx[None]  # (T,) -> (1, T)
    return [w[0] for w in model.attention_weights(idx)]  # L × (1, H, T, T) -> L × (H, T, T)


def previous_token_score(w: torch.Tensor) -> torch.Tensor:
    """(H, T, T) weights → (H,) mean weight on the previous position (rows t ≥ 1)."""
    T = w.shape[-1]
    t = torch.arange(1, T)
    return w[:, t, t - 1].mean(dim=-1)


def first_token_score(w: torch.Tensor) -> torch.Tensor:
    """(H, T, T) weights → (H,) mean weight on position 0 (rows t ≥ 1)."""
    return w[:, 1:, 0].mean(dim=-1)


def induction_scores(model, period: int = 24, seed: int = 0) -> list[torch.Tensor]:
    """Per layer (H,) induction scores on a random sequence of ``period`` ids repeated twice.

    ``2·period`` must fit ``model.max_seq_len`` (else ``period`` is reduced to fit).
    """
    L = min(period, model.max_seq_len // 2)
    gen = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, model.vocab_size, (L,), generator=gen)
    idx = torch.cat([seq, seq])  # (2L,)
    out = []
    for w in attention_maps(model, idx):
        t = torch.arange(L, 2 * L)  # second copy
        out.append(w[:, t, t - L + 1].mean(dim=-1))  # (H,)
    return out


def head_table(model, idx: torch.Tensor, threshold: float = 0.4) -> list[dict]:
    """One dict per (layer, head): ``layer``, ``head``, ``previous``, ``first``, ``induction``
    scores and ``kinds`` (the names of the scores ≥ ``threshold``)."""
    maps = attention_maps(model, idx)
    ind = induction_scores(model)
    rows = []
    for layer, w in enumerate(maps):
        prev, first = previous_token_score(w), first_token_score(w)
        for h in range(w.shape[0]):
            scores = {"previous": float(prev[h]), "first": float(first[h]),
                      "induction": float(ind[layer][h])}  # fmt: skip
            kinds = [k for k, v in scores.items() if v >= threshold]
            rows.append({"layer": layer, "head": h, **scores, "kinds": kinds})
    return rows


def plot_attention(maps: list[torch.Tensor], tokens: list[str], out_dir, max_labels: int = 48):
    """One PNG per layer (``layer<i>.png``) with a heatmap per head; returns the paths."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    T = len(tokens)
    show = T <= max_labels
    for layer, w in enumerate(maps):
        H = w.shape[0]
        cols = min(H, 4)
        rows = (H + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
        for h in range(rows * cols):
            ax = axes[h // cols][h % cols]
            if h >= H:
                ax.axis("off")
                continue
            ax.imshow(w[h].cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {layer} head {h}", fontsize=8)
            if show:
                ax.set_xticks(range(T), tokens, rotation=90, fontsize=5)
                ax.set_yticks(range(T), tokens, fontsize=5)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.tight_layout()
        path = out_dir / f"layer{layer}.png"
        atomic_write_with(path, lambda p, f=fig: f.savefig(p, dpi=90, format="png"))
        plt.close(fig)
        paths.append(path)
    return paths
