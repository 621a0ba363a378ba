"""The pretraining loop: the LM-window case of ``g2c.training.TrainingLoop``.

``Trainer`` supplies only its batches and its loss; accumulation, clipping, the schedule,
autocast, logging, checkpoints, exact resume and the cooperative stop are the loop's
(``g2c/training/loop.py``). One optimisation step (``Trainer.train_step``), in this order:

    zero grads → sample a batch → move it to the device → forward → loss → backward
    → clip gradients → set the scheduled lr → optimizer step → step += 1

- batches: ``get_lm_batch`` windows x, y (B, T) of a 1-D id tensor or a source object
  (``TokenStream``, a memory-mapped token file); with ``grad_accum_steps = k`` a step draws
  k × batch_size windows at once and feeds them as k micro-batches of ``batch_size``.
- loss: ``lm_cross_entropy(model(x), y)``, mean next-token cross-entropy in nats
  (``loss_impl="fused"``, the default, is ``F.cross_entropy``; "reference" is g2c's own
  log-sum-exp, tested equal within 1e-6).

Training 10 steps, saving, loading into a fresh trainer and training 10 more gives exactly the
losses of 20 uninterrupted steps (on CPU): the batch generator and torch's global RNG are in
the checkpoint. Checkpoints are ``torch.save`` files of tensors and plain Python values only,
readable with ``torch.load(path, weights_only=True)``, written atomically.

Sources: nanoGPT ``train.py`` (Karpathy 2022); "mixed precision" via ``torch.autocast``
(bf16, Kalamkar et al. 2019); MFU from PaLM (Chowdhery et al. 2022).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from g2c.nn import Module
from g2c.pretraining.data import check_lm_source, get_lm_batch
from g2c.pretraining.loss import lm_cross_entropy
from g2c.training import LoopConfig, LoopControl, TrainingLoop, model_flops_per_token
from g2c.training.loop import (
    check_choice,
    check_fits_model,
    check_int,
    empty_training_history,
    final_val_loss,
)

CHECKPOINT_FORMAT = "g2c.pretraining.checkpoint"
LOSS_IMPLS = ("reference", "fused")


@dataclasses.dataclass
class TrainConfig(LoopConfig):
    """The ``Trainer``'s settings as one validated, JSON-round-trippable dataclass (the CLI
    maps flags here; ``Trainer.from_config(model, cfg)`` builds a trainer from it).

    The :class:`~g2c.training.LoopConfig` fields plus ``context_length`` (T, tokens per window)
    and ``loss_impl`` ("fused" — the default, ``F.cross_entropy`` — or "reference"). The
    defaults of the arguments ``Trainer`` requires are the classic small char-level
    configuration (batch 12, context 64, 2000 steps, lr 1e-3). ``autocast_dtype`` is a string
    ("bfloat16") or None. Every field is validated in ``__post_init__`` (also on
    ``dataclasses.replace``): ``TrainConfig(batch_size=0)`` → ValueError "batch_size must be an
    integer >= 1, got 0".
    """

    context_length: int = 64
    loss_impl: str = "fused"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("context_length", self.context_length, 1)
        check_choice("loss_impl", self.loss_impl, LOSS_IMPLS)


class Trainer(TrainingLoop):
    """Pretrain any g2c Module mapping (B, T) long ids → (B, T, V) logits on a token stream.

    Args (API.md 09B/10; each validated by :class:`TrainConfig`, where they are documented):
    ``batch_size`` B (windows per micro-batch), ``context_length`` T, ``max_steps``,
    ``max_lr``/``min_lr``/``warmup_steps`` (``cosine_with_warmup``), ``weight_decay``,
    ``grad_clip`` (None = off), ``eval_every``/``eval_iters``, ``log_every``, ``generator`` (CPU
    ``torch.Generator`` for batches; None → seeded from ``seed`` or torch's global RNG),
    ``device`` ("auto"|"cpu"|"cuda"|"mps"; the model is moved there), ``optimizer`` ("sgd" →
    g2c.nn.SGD, "adamw" → g2c.training.AdamW).

    Keyword-only extras: ``betas``, ``grad_accum_steps``, ``autocast_dtype`` (None or
    torch.bfloat16), ``loss_impl`` ("fused" default, "reference" the course path), ``seed``,
    ``eval_seed`` (validation windows come from a fresh generator with this seed at every
    evaluation: the same windows every time, the training stream untouched).

    Attributes mirror the arguments plus ``step``, ``optimizer`` (the object),
    ``optimizer_name``, ``device`` (torch.device), ``elapsed_s`` (cumulative training time),
    ``stop_reason``, ``flops_per_token``, ``peak_flops``/``peak_flops_estimated``.

    Raises ValueError naming the argument for a bad setting (non-positive sizes, an unknown
    optimizer, ...), context_length above ``model.max_seq_len``, an unsupported autocast dtype.
    """

    checkpoint_format = CHECKPOINT_FORMAT
    config_class = TrainConfig
    source_names = ("train_ids", "val_ids", "ids")

    def __init__(
        self,
        model: Module,
        *,
        batch_size: int,
        context_length: int,
        max_steps: int,
        max_lr: float,
        min_lr: float = 0.0,
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        grad_clip: float | None = None,
        eval_every: int = 100,
        eval_iters: int = 20,
        log_every: int = 10,
        generator: torch.Generator | None = None,
        device: str | torch.device = "auto",
        optimizer: str = "sgd",
        betas: tuple[float, float] = (0.9, 0.999),
        grad_accum_steps: int = 1,
        autocast_dtype: torch.dtype | str | None = None,
        loss_impl: str = "fused",
        seed: int | None = None,
        eval_seed: int = 0,
        weight_decay_1d: bool = True,
    ) -> None:
        settings = {k: v for k, v in locals().items() if k in _CONFIG_FIELDS}
        config = TrainConfig(**settings)  # every field validated here, once
        check_fits_model(model, context_length, "context_length")
        super().__init__(
            model,
            config,
            self._lm_loss,
            generator=generator,
            eval_seed=eval_seed,
            tokens_per_example=context_length,
            flops_per_token=model_flops_per_token(model, context_length),
        )

    @classmethod
    def from_config(
        cls, model: Module, cfg: TrainConfig, *, generator: torch.Generator | None = None
    ) -> Trainer:
        """Build a Trainer from a :class:`TrainConfig`."""
        return cls(model, generator=generator, **{f: getattr(cfg, f) for f in _CONFIG_FIELDS})

    # -- the LM case: batches and loss -------------------------------------------------------
    def check_source(self, source: Any, name: str) -> None:
        """A 1-D id tensor or a source with ``__len__`` + ``get_lm_batch``."""
        check_lm_source(source, name)

    def sample_batch(self, source: Any, n: int, generator: torch.Generator) -> Any:
        """``get_lm_batch(source, n, context_length, generator)`` → (x, y), each (n, T)."""
        return get_lm_batch(source, n, self.context_length, generator)

    def _lm_loss(self, model: Module, batch: tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        logits = model(x)  # (B, T) -> (B, T, V)
        return lm_cross_entropy(logits, y, impl=self.loss_impl), {}

    # -- the API.md methods, named as there ------------------------------------------------
    def train_step(self, train_ids: torch.Tensor | Any) -> dict[str, float]:
        """One optimisation step on windows of ``train_ids`` (1-D long stream or a source).

        Returns ``{"loss": mean training loss of the step's batch, "lr": lr used,
        "grad_norm": global gradient norm before clipping (0.0 when grad_clip is None)}``.
        """
        return super().train_step(train_ids)

    def evaluate(self, ids: torch.Tensor | Any) -> float:
        """Mean loss over ``eval_iters`` batches of ``ids`` (1-D long or a source), eval mode.

        Batches come from a fresh generator seeded with ``eval_seed`` (same windows every
        call). No gradients are recorded; the model's previous train/eval mode is restored.
        """
        return super().evaluate(ids)

    def train(
        self,
        train_ids: torch.Tensor | Any,
        val_ids: torch.Tensor | Any | None = None,
        on_log: Callable[[dict], None] | None = None,
        history: dict | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_extra: dict | None = None,
        *,
        stop_step: int | None = None,
        control: LoopControl | None = None,
    ) -> dict:
        """Train on windows of ``train_ids`` from ``self.step`` to ``max_steps``; see
        :meth:`g2c.training.TrainingLoop.train` (log events, checkpoints, ``control``).

        Every ``on_log`` event has step, max_steps, train_loss, val_loss, lr, grad_norm,
        elapsed_s (cumulative over sessions), steps_per_s, tokens_per_s, tokens_seen, mfu,
        mfu_estimated. ``stop_reason`` becomes "complete" or "stopped".
        """
        return super().train(
            train_ids,
            val_ids,
            on_log,
            history,
            checkpoint_path,
            checkpoint_every,
            checkpoint_extra,
            stop_step=stop_step,
            control=control,
        )


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))

__all__ = ["TrainConfig", "Trainer", "empty_training_history", "final_val_loss"]
