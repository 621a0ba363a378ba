"""The one training loop the Phase III experiments share: train a model for N steps or S seconds.

``train_for(model, train_ids, val_ids, steps=... | seconds=...)`` wraps
``g2c.pretraining.Trainer`` (AdamW, warmup + cosine, clipping) and returns an
:class:`ExperimentResult` with the per-step history, the log events (with wall time, so curves
can be drawn against seconds), the final validation loss, the median tokens/s and the
training FLOPs (6·N·tokens, Kaplan et al. 2020, N = non-embedding parameters when the model
can tell). With ``seconds=S`` the number of steps is chosen from a measured step time (a
throw-away copy of the model runs two steps), so every run of an equal-wall-clock comparison
gets a complete cosine schedule; a loss that turns NaN/inf stops the shared loop through a
``LoopControl`` (no exception). ``sequence_perplexity`` is ``g2c.training``'s. ``text_ids`` builds (tokenizer, train ids, val ids) from
text with a character or byte-level BPE tokenizer.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from g2c.artifacts import atomic_write_json
from g2c.data import load_corpus, split_text
from g2c.pretraining import Trainer, empty_training_history
from g2c.tokenizer import BPETokenizer, CharTokenizer
from g2c.training import LoopControl
from g2c.training import sequence_perplexity as sequence_perplexity  # the one home of evaluation


@dataclasses.dataclass
class ExperimentResult:
    """``history`` (Trainer history), ``events`` (log events), ``val_loss`` (final, nats/token),
    ``tokens_per_s`` (median of the log events), ``seconds`` (wall time of the loop),
    ``steps``, ``tokens`` (seen), ``num_parameters``, ``train_flops`` (6·N·tokens)."""

    history: dict
    events: list[dict]
    val_loss: float
    tokens_per_s: float
    seconds: float
    steps: int
    tokens: int
    num_parameters: int
    train_flops: float


def text_ids(text: str, tokenizer: str = "char", vocab_size: int = 1024,
             val_fraction: float = 0.1) -> tuple:  # fmt: skip
    """``(tokenizer, train_ids (N,), val_ids (M,))`` for ``text`` split contiguously.

    ``tokenizer``: "char" (CharTokenizer over the whole text) or "bpe" (byte-level BPE with
    ``vocab_size`` ids trained on the training split). Other → ValueError.
    """
    train, val = split_text(text, val_fraction)
    if tokenizer == "char":
        tok = CharTokenizer(text)
        tr, va = tok.encode(train), tok.encode(val)
    elif tokenizer == "bpe":
        tok = BPETokenizer.with_course_special_tokens()
        tr = tok.train_fast(train, vocab_size)
        va = tok.encode_fast(val)
    else:
        raise ValueError(f"tokenizer must be 'char' or 'bpe', got {tokenizer!r}")
    return tok, torch.tensor(tr, dtype=torch.long), torch.tensor(va, dtype=torch.long)


def train_for(
    model,
    train_ids: torch.Tensor,
    val_ids: torch.Tensor | None = None,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    batch_size: int = 16,
    context_length: int = 64,
    max_lr: float = 1e-3,
    min_lr: float | None = None,
    warmup_steps: int | None = None,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    eval_every: int | None = None,
    eval_iters: int = 10,
    seed: int = 0,
    device: str = "cpu",
    on_log: Callable[[dict], None] | None = None,
) -> ExperimentResult:
    """Train ``model`` for ``steps`` steps or about ``seconds`` seconds (exactly one of them).

    ``min_lr`` defaults to max_lr/10, ``warmup_steps`` to 5% of the steps, ``eval_every`` to
    a tenth of the steps. A loss that turns NaN/inf stops the run early (the result then
    reports ``val_loss = inf``): the ablations that fail show it instead of crashing.
    Neither or both of steps/seconds → ValueError.
    """
    if (steps is None) == (seconds is None):
        raise ValueError("give exactly one of steps= or seconds=")
    if seconds is not None:
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        probe = Trainer(copy.deepcopy(model), batch_size=batch_size, context_length=context_length,
                        max_steps=3, max_lr=max_lr, optimizer="adamw", device=device, seed=seed,
                        loss_impl="fused")  # fmt: skip
        probe.train_step(train_ids)
        t0 = time.perf_counter()
        probe.train_step(train_ids)
        probe.train_step(train_ids)
        step_s = (time.perf_counter() - t0) / 2
        steps = max(2, int(seconds / (step_s * (1 + eval_iters / 30))))
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    eval_every = eval_every or max(1, steps // 10)
    trainer = Trainer(
        model, batch_size=batch_size, context_length=context_length, max_steps=steps,
        max_lr=max_lr, min_lr=max_lr / 10 if min_lr is None else min_lr,
        warmup_steps=max(0, steps // 20) if warmup_steps is None else min(warmup_steps, steps),
        weight_decay=weight_decay, grad_clip=grad_clip, eval_every=eval_every,
        eval_iters=eval_iters, log_every=max(1, min(eval_every, 10)), optimizer="adamw",
        betas=(0.9, 0.99), device=device, loss_impl="fused", seed=seed,
    )  # fmt: skip
    events: list[dict] = []

    def log(e: dict) -> None:
        events.append(e)
        if on_log is not None:
            on_log(e)

    t0 = time.perf_counter()
    history = empty_training_history()
    trainer.train(
        train_ids, val_ids, on_log=log, history=history, control=_StopOnDivergence(history)
    )
    diverged = trainer.stop_reason == "stopped"
    elapsed = time.perf_counter() - t0
    val = (
        float("inf")
        if diverged
        else (history["val_loss"][-1] if history["val_loss"] else float("nan"))
    )
    tps = sorted(e["tokens_per_s"] for e in events if e["tokens_per_s"] > 0) or [0.0]
    tokens = trainer.step * batch_size * context_length
    return ExperimentResult(
        history=history, events=events, val_loss=val, tokens_per_s=tps[len(tps) // 2],
        seconds=elapsed, steps=trainer.step, tokens=tokens,
        num_parameters=int(model.num_parameters()),
        train_flops=6.0 * model.num_parameters(exclude_embeddings=True) * tokens,
    )  # fmt: skip


class _StopOnDivergence(LoopControl):
    """Stop the loop after a step whose training loss is NaN/inf (an ablation that fails)."""

    def __init__(self, history: dict) -> None:
        self.history = history

    def should_stop(self, step: int) -> bool:
        """True when the last recorded training loss is not finite."""
        return not math.isfinite(self.history["train_loss"][-1])


def fit_power_law(x, y) -> tuple[float, float]:
    """Least-squares fit of ``y = a · x^b`` in log-log space; returns ``(a, b)``.

    ``x``, ``y``: sequences of positive numbers of the same length ≥ 2 (else ValueError).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2 or (x <= 0).any() or (y <= 0).any():
        raise ValueError("fit_power_law needs two equal-length sequences of >= 2 positive numbers")
    b, log_a = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(log_a)), float(b)


def distinct_n(samples: list[list[int]], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / total n-grams over all ``samples``
    (lists of token ids); 0.0 when there are no n-grams. n < 1 → ValueError."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(s[i : i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


SMOKE_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\n"
    "Resolved. resolved.\n\n"
) * 40
"""A few kilobytes of Shakespeare for the examples' ``--smoke`` modes (no dataset needed)."""


def example_text(smoke: bool, corpus: str | list[str] = "tinyshakespeare",
                 max_chars: int | None = None) -> str:  # fmt: skip
    """``SMOKE_TEXT`` when ``smoke``, else the corpus (``g2c.data.load_corpus``), cut to
    ``max_chars``."""
    if smoke:
        return SMOKE_TEXT
    text = load_corpus(corpus)
    return text[:max_chars] if max_chars else text


def save_json_result(path, obj) -> None:
    """Write an experiment's results as JSON (atomic) — the numbers behind the docs."""
    atomic_write_json(path, obj)
