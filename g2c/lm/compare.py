"""The module-06 deliverable: six character models, one split, one table.

``compare_models`` fits the counts bigram and trains the neural bigram, MLP, RNN, LSTM and
WaveNet with the same optimizer (AdamW), the same number of steps and batch size (so the same
number of training targets), gradient clipping, and scores all of them on the *same* validation
targets: every position from the largest context length on (``perplexity(first_target=...)``).
Validation perplexity is logged every ``eval_every`` steps (on the first ``eval_tokens`` targets)
and measured on the full validation split at the end; bits per character = log2(perplexity).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import atomic_write_with
from g2c.lm.models import MODEL_NAMES, LMConfig, build_model
from g2c.lm.train import LMTrainSettings, bits_per_token, perplexity, sample, train_lm


@dataclass
class CompareConfig(LMTrainSettings):
    """Settings of the comparison: the shared :class:`~g2c.lm.train.LMTrainSettings` (every
    trained model gets the same budget; the neural bigram uses embedding_dim = V, a full-rank
    bigram table) plus ``models``, the names to compare (``MODEL_NAMES`` by default).
    """

    models: tuple[str, ...] = MODEL_NAMES

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        return d


def compare_models(
    train_ids: torch.Tensor,
    val_ids: torch.Tensor,
    vocab_size: int,
    config: CompareConfig | None = None,
    *,
    prompt: Sequence[int] | torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    on_model: Callable[[str], None] | None = None,
    on_step: Callable[[str, int, float], None] | None = None,
    on_log: Callable[[str, dict], None] | None = None,
) -> list[dict[str, Any]]:
    """Train/fit each model of ``config.models`` and score it on ``val_ids``.

    Args:
        train_ids, val_ids: 1-D long token ids (the contiguous train/validation split).
        vocab_size: V. prompt: sampling prompt ids (default: ``val_ids[:1]``).
        on_model(name) before each model; on_step(name, step, loss); on_log(name, record).

    Returns one dict per model: ``model``, ``params``, ``val_ppl``, ``bpc``, ``train_seconds``,
    ``curve_steps``, ``curve_ppl`` (validation perplexity vs step on the first ``eval_tokens``
    targets), ``sample_ids`` (prompt + ``sample_tokens`` ids), ``config`` (the ``LMConfig``).
    An unknown model name → ValueError (raised before any training).
    """
    cfg = config or CompareConfig()
    for name in cfg.models:
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    first_target = max(
        1 if m in ("bigram", "neural-bigram") else cfg.context_length for m in cfg.models
    )
    prompt_ids = val_ids[:1] if prompt is None else prompt
    results = []
    for i, name in enumerate(cfg.models):
        if on_model is not None:
            on_model(name)
        g = torch.Generator().manual_seed(cfg.seed + i)
        lm_cfg = LMConfig(
            model=name,
            vocab_size=vocab_size,
            context_length=1 if name in ("bigram", "neural-bigram") else cfg.context_length,
            embedding_dim=vocab_size if name == "neural-bigram" else cfg.embedding_dim,
            hidden_dim=cfg.hidden_dim,
        )
        model = build_model(lm_cfg, generator=g).to(device)
        t0 = time.perf_counter()
        if name == "bigram":
            model.fit(train_ids)
            ppl0 = perplexity(
                model, val_ids, first_target=first_target, max_targets=cfg.eval_tokens
            )
            curve_steps, curve_ppl = [0, cfg.steps], [ppl0, ppl0]
        else:
            hist = train_lm(
                model,
                train_ids,
                val_ids,
                num_steps=cfg.steps,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                log_every=cfg.eval_every,
                grad_clip=cfg.grad_clip,
                schedule="cosine",
                min_lr=cfg.lr / 10,
                generator=g,
                eval_tokens=cfg.eval_tokens,
                eval_first_target=first_target,
                on_step=None if on_step is None else (lambda s, l, n=name: on_step(n, s, l)),
                on_log=None if on_log is None else (lambda r, n=name: on_log(n, r)),
            )
            curve_steps, curve_ppl = hist["val_steps"], hist["val_perplexities"]
        seconds = time.perf_counter() - t0
        ppl = perplexity(model, val_ids, first_target=first_target)
        ids = sample(
            model,
            prompt_ids,
            cfg.sample_tokens,
            temperature=cfg.temperature,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        results.append(
            {
                "model": name,
                "params": count_parameters(model),
                "val_ppl": ppl,
                "bpc": bits_per_token(ppl),
                "train_seconds": seconds,
                "curve_steps": list(curve_steps),
                "curve_ppl": list(curve_ppl),
                "sample_ids": ids.tolist(),
                "config": lm_cfg.to_dict(),
                "val_targets": int(val_ids.numel() - first_target),
            }
        )
    return results


def count_parameters(model) -> int:
    """Trainable scalars, or for the counts bigram (no parameters) the V·V counts it stores."""
    return model.num_parameters() or sum(t.numel() for t in model.state_dict().values())


def results_markdown(results: list[dict[str, Any]], decode: Callable | None = None) -> str:
    """A markdown table (model, parameters, val perplexity, bits/char, train seconds), followed
    by one fenced sample per model when ``decode`` (ids → str) is given."""
    lines = [
        "| model | parameters | val perplexity | bits/char | train s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['val_ppl']:.3f} | {r['bpc']:.3f} "
            f"| {r['train_seconds']:.1f} |"
        )
    if decode is not None:
        for r in results:
            lines += ["", f"**{r['model']}**", "", "```text", decode(r["sample_ids"]), "```"]
    return "\n".join(lines) + "\n"


def plot_val_curves(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Plot validation perplexity vs step for every model (log y) and save a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for r in results:
        style = "--" if r["model"] == "bigram" else "-"
        ax.plot(r["curve_steps"], r["curve_ppl"], style, label=r["model"], marker=".")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation perplexity (per char)")
    ax.set_yscale("log")
    ax.set_title("TinyShakespeare char models: validation perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = atomic_write_with(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out
