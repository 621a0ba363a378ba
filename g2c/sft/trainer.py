"""SFTTrainer: supervised fine-tuning as the conversation case of ``g2c.training.TrainingLoop``.

The loop owns the step (accumulation, clipping, schedule, autocast, logging, checkpoints, exact
resume, cooperative stop); SFT supplies only

- batches: ``sample_batch`` draws n conversations (without replacement within a batch) with
  the loop's generator and returns ``pad_and_collate(...) -> (x, y, loss_mask)``, padded to the
  longest conversation of the batch — or, with ``packing=True``, n packed rows
  ``(x, y, loss_mask, segment_ids)`` of several conversations each;
- the loss: :func:`g2c.sft.loss.sft_loss`, the cross-entropy over assistant tokens only, with
  the vocabulary projection computed only at those positions.

Conversations longer than ``max_seq_len`` are truncated — counted in ``truncated`` (and
``truncated_tokens``, ``truncated_without_targets``) and announced with a warning, never
silently.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from g2c.nn import Module
from g2c.sft.data import (
    PackedRow,
    check_examples,
    collate_packed,
    pack_examples,
    pad_and_collate,
)
from g2c.sft.loss import sft_loss, token_nll
from g2c.sft.template import SFTExample
from g2c.training import LoopConfig, LoopControl, TrainingLoop, model_flops_per_token
from g2c.training.loop import check_fits_model, check_int

CHECKPOINT_FORMAT = "g2c.sft.checkpoint"


@dataclasses.dataclass
class SFTConfig(LoopConfig):
    """The SFTTrainer's settings: the :class:`~g2c.training.LoopConfig` fields plus
    ``max_seq_len`` (tokens per conversation or packed row, ≥ 2), ``pad_id`` (≥ 0) and
    ``packing`` (several conversations per row). ``optimizer`` defaults to "adamw" here.
    Validated in ``__post_init__``; round-trips through JSON."""

    optimizer: str = "adamw"
    max_seq_len: int = 256
    pad_id: int = 0
    packing: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("max_seq_len", self.max_seq_len, 2)
        check_int("pad_id", self.pad_id, 0)
        if not isinstance(self.packing, bool):
            raise ValueError(f"packing must be True or False, got {self.packing!r}")


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(SFTConfig))


def _validate_examples(
    examples: Any, name: str, vocab_size: int | None, max_seq_len: int
) -> list[SFTExample]:
    examples = check_examples(examples, name)
    for i, ex in enumerate(examples):
        if not any(ex.mask):
            raise ValueError(
                f"{name}[{i}] has no target token (mask all 0): nothing to learn; build it with "
                "render_with_mask from a conversation with an assistant turn"
            )
        if vocab_size is not None and (min(ex.ids) < 0 or max(ex.ids) >= vocab_size):
            raise ValueError(
                f"{name}[{i}] has token ids outside the model's vocabulary [0, {vocab_size}); "
                "tokenize with the model's own tokenizer"
            )
    return examples


class SFTTrainer(TrainingLoop):
    """Fine-tune a language model on tokenized conversations (API.md 13).

    Args: ``model`` (a TransformerLM — or any Module mapping (B, T) ids to (B, T, V) logits),
    ``examples`` (non-empty list of :class:`SFTExample` from ``render_with_mask``),
    ``max_seq_len`` (longer conversations are truncated and counted; ≤ model.max_seq_len),
    ``pad_id``, ``batch_size`` (conversations — or packed rows — per micro-batch),
    ``max_steps``, ``max_lr``/``min_lr``/``warmup_steps`` (``cosine_with_warmup``),
    ``weight_decay``, ``grad_clip`` (None = off), ``eval_iters`` (batches per evaluation).
    Keyword extras: ``eval_examples`` (held-out conversations: ``evaluate()`` and validation
    during ``train``), ``packing`` (several conversations per row with ``segment_ids``; needs a
    model with ``forward_hidden``), ``eval_every``, ``log_every``, ``generator``, ``device``,
    ``optimizer`` ("adamw" default, or "sgd"), ``betas``, ``grad_accum_steps``,
    ``autocast_dtype``, ``seed``, ``eval_seed``.

    Attributes: the settings, ``examples``, ``eval_examples``, ``rows`` (packed rows or None),
    ``truncated`` (training conversations longer than max_seq_len), ``truncated_tokens``,
    ``truncated_without_targets`` (those whose every target fell beyond max_seq_len), and the
    loop's ``step``, ``optimizer``, ``elapsed_s``, ...

    Raises ValueError naming the argument, before any work: empty ``examples``, an example
    without targets or with ids outside the vocabulary, ``pad_id`` outside the vocabulary,
    ``max_seq_len`` above the model's, ``packing`` with a model that cannot pack, and every
    bad loop setting.
    """

    checkpoint_format = CHECKPOINT_FORMAT
    config_class = SFTConfig
    source_names = ("examples", "eval_examples", "examples")

    def __init__(
        self,
        model: Module,
        *,
        examples: Sequence[SFTExample],
        max_seq_len: int,
        pad_id: int,
        batch_size: int,
        max_steps: int,
        max_lr: float,
        min_lr: float = 0.0,
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        grad_clip: float | None = None,
        eval_iters: int = 20,
        eval_examples: Sequence[SFTExample] | None = None,
        packing: bool = False,
        eval_every: int = 100,
        log_every: int = 10,
        generator: torch.Generator | None = None,
        device: str | torch.device = "auto",
        optimizer: str = "adamw",
        betas: tuple[float, float] = (0.9, 0.999),
        grad_accum_steps: int = 1,
        autocast_dtype: torch.dtype | str | None = None,
        seed: int | None = None,
        eval_seed: int = 0,
        weight_decay_1d: bool = True,
    ) -> None:
        config = SFTConfig(**{k: v for k, v in locals().items() if k in _CONFIG_FIELDS})
        vocab_size = getattr(model, "vocab_size", None)
        check_fits_model(model, max_seq_len, "max_seq_len")
        if vocab_size is not None and pad_id >= vocab_size:
            raise ValueError(f"pad_id ({pad_id}) must be a token id below vocab_size {vocab_size}")
        if packing and not hasattr(model, "forward_hidden"):
            raise ValueError(
                "packing=True needs a model that takes segment_ids (TransformerLM.forward_hidden)"
            )
        self.examples = _validate_examples(examples, "examples", vocab_size, max_seq_len)
        self.eval_examples = None
        if eval_examples is not None:
            self.eval_examples = _validate_examples(
                eval_examples, "eval_examples", vocab_size, max_seq_len
            )
        self._count_truncation(max_seq_len)
        self.rows = pack_examples(self.examples, max_seq_len) if packing else None
        lengths = [len(r.ids) for r in self.rows] if packing else [
            min(len(ex.ids), max_seq_len) for ex in self.examples
        ]  # fmt: skip
        super().__init__(
            model,
            config,
            self._sft_loss,
            generator=generator,
            eval_seed=eval_seed,
            tokens_per_example=max(1, round(sum(lengths) / len(lengths)) - 1),
            flops_per_token=model_flops_per_token(model, max_seq_len),
        )

    @classmethod
    def from_config(
        cls,
        model: Module,
        cfg: SFTConfig,
        *,
        examples: Sequence[SFTExample],
        eval_examples: Sequence[SFTExample] | None = None,
        generator: torch.Generator | None = None,
    ) -> SFTTrainer:
        """Build an SFTTrainer from an :class:`SFTConfig`."""
        settings = {f: getattr(cfg, f) for f in _CONFIG_FIELDS}
        return cls(model, examples=examples, eval_examples=eval_examples, generator=generator,
                   **settings)  # fmt: skip

    def _count_truncation(self, max_seq_len: int) -> None:
        long = [ex for ex in self.examples if len(ex.ids) > max_seq_len]
        self.truncated = len(long)
        self.truncated_tokens = sum(len(ex.ids) - max_seq_len for ex in long)
        self.truncated_without_targets = sum(1 for ex in long if not any(ex.mask[1:max_seq_len]))
        if long:
            warnings.warn(
                f"{self.truncated} of {len(self.examples)} conversations are longer than "
                f"max_seq_len={max_seq_len} and are truncated ({self.truncated_tokens} tokens cut; "
                f"{self.truncated_without_targets} lose every target)",
                stacklevel=3,
            )

    # -- the SFT case: batches and loss ----------------------------------------------------
    def check_source(self, source: Any, name: str) -> None:
        """A non-empty list of SFTExample (or of packed rows)."""
        if isinstance(source, list) and source and isinstance(source[0], PackedRow):
            return
        check_examples(source, name)

    def sample_batch(self, source: Any, n: int, generator: torch.Generator) -> Any:
        """n conversations (distinct when the source has n) → (x, y, loss_mask), padded to the
        longest; packed rows → (x, y, loss_mask, segment_ids)."""
        N = len(source)
        if n <= N:
            index = torch.randperm(N, generator=generator)[:n]
        else:
            index = torch.randint(0, N, (n,), generator=generator)
        picked = [source[i] for i in index.tolist()]
        if isinstance(picked[0], PackedRow):
            return collate_packed(picked, self.pad_id)
        return pad_and_collate(picked, self.max_seq_len, self.pad_id, pad_to_longest=True)

    def _sft_loss(self, model: Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        loss, n = sft_loss(model, *batch)  # (x, y, mask[, segment_ids])
        return loss, {"target_tokens": n.float()}

    # -- the API.md methods ------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:  # type: ignore[override]
        """One optimisation step on ``batch_size × grad_accum_steps`` conversations (or rows).

        Returns ``{"loss": mean assistant-token loss, "lr", "grad_norm" (0.0 without clipping),
        "target_tokens": mean target tokens per micro-batch}``.
        """
        return super().train_step(self.rows if self.rows is not None else self.examples)

    def evaluate(self, examples: Sequence[SFTExample] | None = None) -> float:  # type: ignore[override]
        """Mean masked loss over ``eval_iters`` batches of ``examples`` (default: the
        ``eval_examples``, else the training examples), unpacked, eval mode, no gradients;
        the same batches every call (``eval_seed``)."""
        if examples is None:
            examples = self.eval_examples if self.eval_examples is not None else self.examples
        return super().evaluate(check_examples(examples, "examples"))

    def train(  # type: ignore[override]
        self,
        eval_examples: Sequence[SFTExample] | None = None,
        on_log: Callable[[dict], None] | None = None,
        history: dict | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_extra: dict | None = None,
        *,
        stop_step: int | None = None,
        control: LoopControl | None = None,
    ) -> dict:
        """Train from ``step`` to ``max_steps`` (see :meth:`g2c.training.TrainingLoop.train`);
        validation on ``eval_examples`` (default: the constructor's) every ``eval_every``
        steps. Log events carry ``target_tokens``. Returns the history."""
        val = self.eval_examples if eval_examples is None else eval_examples
        return super().train(
            self.rows if self.rows is not None else self.examples,
            val,
            on_log,
            history,
            checkpoint_path,
            checkpoint_every,
            checkpoint_extra,
            stop_step=stop_step,
            control=control,
        )


@torch.no_grad()
def sft_eval_loss(
    model: Module,
    examples: Sequence[SFTExample],
    *,
    max_seq_len: int,
    pad_id: int,
    batch_size: int = 16,
) -> dict[str, float]:
    """Every example once: ``{"loss": Σ target-token NLL / Σ target tokens, "target_tokens"}``
    (a token-weighted held-out loss, unlike the per-batch mean of ``evaluate``). Eval mode, no
    gradients, the model's mode restored. Bad arguments → ValueError."""
    examples = check_examples(examples)
    check_int("batch_size", batch_size, 1)
    device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(examples), batch_size):
            x, y, mask = pad_and_collate(
                examples[i : i + batch_size], max_seq_len, pad_id, pad_to_longest=True
            )
            x, y, keep = x.to(device), y.to(device), mask.to(device).bool()
            if hasattr(model, "forward_hidden"):
                logits = model.logits_from_hidden(model.forward_hidden(x)[keep])  # (N, V)
            else:
                logits = model(x)[keep]
            total += float(token_nll(logits, y[keep]).double().sum())
            count += int(keep.sum())
    finally:
        model.train(was_training)
    return {"loss": total / max(count, 1), "target_tokens": float(count)}


__all__ = ["SFTConfig", "SFTTrainer", "sft_eval_loss"]
