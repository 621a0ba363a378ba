"""The DPO case of ``g2c.training.TrainingLoop``: preference pairs in, ``dpo_loss`` out.

``DPOTrainer`` supplies only its batches and its loss; accumulation, clipping, the schedule,
autocast, logging, checkpoints, exact resume and the cooperative stop are the loop's.

- batches (``sample_batch``): n pairs drawn with the loop's generator, collated by
  ``pad_and_collate_pref`` (padded to the batch's longest pair by default) into
  ``{"chosen": (x, y, mask), "rejected": (x, y, mask), "index": (n,)}``.
- loss (``_dpo_step``): the reference's log-probabilities (no gradients), then the policy's —
  chosen and rejected in one forward, vocabulary projection on response positions only
  (``pair_logprobs``) — then ``dpo_loss``. Its metrics (rewards, margin, accuracy) appear in
  every step result and log event.

Where the reference log-probabilities come from (``ref_model``):

- a model: frozen here (``requires_grad_(False)``, eval mode, run under ``torch.no_grad()``),
  never in the optimizer, bit-identical after training;
- ``"disable_lora"``: the policy itself with its LoRA adapters switched off
  (``g2c.lora.disable_lora``) — the base model is the reference, no second copy in memory;
- ``None`` with ``ref_logprobs`` (N, 2) from ``precompute_ref_logprobs``: no reference model
  at all while training.

Source: Rafailov et al. 2023; TRL ``DPOTrainer`` (concatenated forward, metric names).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from g2c.dpo.data import (
    PAD_TO,
    PreferenceExample,
    as_preference_examples,
    count_truncated,
    pad_and_collate_pref,
)
from g2c.dpo.logprobs import pair_logprobs
from g2c.dpo.loss import check_beta, check_loss_options, dpo_loss
from g2c.lora import disable_lora, lora_layers
from g2c.nn import Module
from g2c.training import LoopConfig, LoopControl, TrainingLoop, model_flops_per_token
from g2c.training.loop import check_choice, check_fits_model, check_int

CHECKPOINT_FORMAT = "g2c.dpo.checkpoint"
DISABLE_LORA = "disable_lora"
EVAL_KEYS = (
    "loss", "accuracy", "reward_margin", "chosen_reward", "rejected_reward", "chosen_logp",
    "rejected_logp",
)  # fmt: skip


@dataclasses.dataclass
class DPOConfig(LoopConfig):
    """The ``DPOTrainer``'s settings: the :class:`~g2c.training.LoopConfig` fields plus
    ``max_seq_len`` (prompt + response tokens per side), ``pad_id``, ``beta`` (> 0),
    ``loss_type`` ("sigmoid" | "ipo" | "hinge"), ``label_smoothing`` ("sigmoid" only) and
    ``pad_to`` ("longest": pad each batch to its longest pair, the default; "max_seq_len").
    Validated in ``__post_init__``; a bad field → ValueError naming it.
    """

    max_seq_len: int = 256
    pad_id: int = 0
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    pad_to: str = "longest"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("max_seq_len", self.max_seq_len, 2)
        check_int("pad_id", self.pad_id, 0)
        check_beta(self.beta)
        check_loss_options(self.loss_type, self.label_smoothing)
        check_choice("pad_to", self.pad_to, PAD_TO)


class _HeldOut:
    """Held-out pairs (and their reference log-probabilities) handed to the loop as its
    validation source by ``train(val_examples=...)``; :meth:`DPOTrainer.validation_loss` scores
    them."""

    def __init__(self, examples: list[PreferenceExample], ref_logprobs: torch.Tensor | None):
        self.examples, self.ref_logprobs = examples, ref_logprobs


class DPOTrainer(TrainingLoop):
    """Direct Preference Optimization of ``model`` on ``examples`` against a frozen reference.

    Args (API.md 14): ``model`` (the policy, a g2c Module; with ``forward_hidden`` /
    ``logits_from_hidden`` the vocabulary projection runs on response positions only),
    ``ref_model`` (a separate frozen model, ``"disable_lora"``, or None with ``ref_logprobs``;
    module docstring), ``examples`` (non-empty list of :class:`PreferenceExample`),
    ``max_seq_len``, ``pad_id``, ``beta`` (> 0), ``batch_size`` (pairs per micro-batch),
    ``max_steps``, ``max_lr``. Keyword extras: ``loss_type``, ``label_smoothing``, ``pad_to``,
    ``ref_logprobs`` ((N, 2) from ``precompute_ref_logprobs``, rows aligned with ``examples``),
    and the loop's ``min_lr``, ``warmup_steps``, ``weight_decay``, ``grad_clip``,
    ``eval_every``, ``eval_iters``, ``log_every``, ``device``, ``optimizer`` (default "adamw"),
    ``betas``, ``grad_accum_steps``, ``autocast_dtype``, ``seed``, ``generator``, ``eval_seed``.

    Attributes: the settings, ``ref_model``, ``ref_logprobs``, ``examples`` (normalised),
    ``num_truncated`` (pairs longer than ``max_seq_len``, warned about once here),
    ``num_identical`` (pairs with chosen == rejected: allowed — their loss is the constant
    log 2 and their gradient zero, so they only dilute a batch — and warned about), plus the
    loop's (``step``, ``optimizer``, ``elapsed_s``, ...).

    Raises ValueError naming the argument for beta <= 0, empty examples, ref_model the policy
    itself or sharing a tensor with it, a policy/reference vocabulary mismatch, ids outside the
    vocabulary, pad_id outside it, max_seq_len above the model's, a missing/misshaped
    ref_logprobs, both ref_model and ref_logprobs, "disable_lora" without LoRA layers.
    """

    checkpoint_format = CHECKPOINT_FORMAT
    config_class = DPOConfig
    source_names = ("examples", "val_examples", "examples")

    def __init__(
        self,
        model: Module,
        *,
        ref_model: Module | str | None,
        examples: Sequence[PreferenceExample],
        max_seq_len: int,
        pad_id: int,
        beta: float = 0.1,
        batch_size: int,
        max_steps: int,
        max_lr: float,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        pad_to: str = "longest",
        ref_logprobs: torch.Tensor | None = None,
        min_lr: float = 0.0,
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        grad_clip: float | None = None,
        eval_every: int = 100,
        eval_iters: int = 20,
        log_every: int = 10,
        device: str | torch.device = "auto",
        optimizer: str = "adamw",
        betas: tuple[float, float] = (0.9, 0.999),
        grad_accum_steps: int = 1,
        autocast_dtype: torch.dtype | str | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        eval_seed: int = 0,
        weight_decay_1d: bool = True,
    ) -> None:
        settings = {k: v for k, v in locals().items() if k in _CONFIG_FIELDS}
        config = DPOConfig(**settings)  # every number validated here, once
        examples = as_preference_examples(examples)
        vocab = getattr(model, "vocab_size", None)
        _check_ids_in_vocab(examples, pad_id, vocab)
        check_fits_model(model, max_seq_len, "max_seq_len")
        self.ref_mode = _check_reference(model, ref_model, ref_logprobs, len(examples))
        self.num_truncated = count_truncated(examples, max_seq_len)
        self.num_identical = sum(ex.chosen_ids == ex.rejected_ids for ex in examples)
        _warn_counts(self.num_truncated, self.num_identical, len(examples), max_seq_len)
        mean_tokens = sum(
            2 * len(ex.prompt_ids) + len(ex.chosen_ids) + len(ex.rejected_ids) for ex in examples
        ) / len(examples)
        super().__init__(
            model,
            config,
            self._dpo_step,
            generator=generator,
            eval_seed=eval_seed,
            tokens_per_example=max(1, min(round(mean_tokens), 2 * max_seq_len)),
            flops_per_token=model_flops_per_token(model, max_seq_len),
        )
        self.examples = examples
        self.ref_model = ref_model if self.ref_mode == "model" else None
        if self.ref_model is not None:
            _freeze(self.ref_model)
            self.ref_model.to(self.device)
        self.ref_logprobs = None
        if ref_logprobs is not None:
            self.ref_logprobs = ref_logprobs.detach().to(self.device, torch.float32)

    # -- the DPO case: batches and loss ----------------------------------------------------
    def check_source(self, source: Any, name: str) -> None:
        """A non-empty list of preference pairs (or the loop's held-out wrapper)."""
        if not isinstance(source, _HeldOut):
            as_preference_examples(source, name)

    def collate(self, examples: Sequence[PreferenceExample], index: torch.Tensor) -> dict:
        """``{"chosen": (x, y, mask), "rejected": (x, y, mask), "index": (n,)}`` for pairs."""
        batch = pad_and_collate_pref(
            examples, self.max_seq_len, self.pad_id, pad_to=self.pad_to, warn=False
        )
        return {"chosen": batch.chosen, "rejected": batch.rejected, "index": index}

    def sample_batch(self, source: Any, n: int, generator: torch.Generator) -> dict:
        """n pairs drawn uniformly (with replacement) with ``generator``, collated."""
        index = torch.randint(len(source), (n,), generator=generator)  # (n,)
        return self.collate([source[i] for i in index.tolist()], index)

    def reference_logprobs(
        self, batch: dict, ref_logprobs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's (chosen (B,), rejected (B,)) log-probabilities of a batch, without
        gradients; per-token averages for IPO. ``ref_logprobs`` (N, 2) overrides the table."""
        average = self.loss_type == "ipo"
        table = self.ref_logprobs if ref_logprobs is None else ref_logprobs
        if table is not None:
            lp = table[batch["index"].to(table.device)]  # (B, 2) summed log-probabilities
            c, r = lp[:, 0], lp[:, 1]
            if average:
                c = c / batch["chosen"][2].sum(-1).clamp_min(1)
                r = r / batch["rejected"][2].sum(-1).clamp_min(1)
            return c, r
        with torch.no_grad():
            if self.ref_mode == "model":
                return pair_logprobs(
                    self.ref_model, batch["chosen"], batch["rejected"], average=average
                )
            with _eval_mode(self.model), disable_lora(self.model):
                return pair_logprobs(
                    self.model, batch["chosen"], batch["rejected"], average=average
                )

    def _dpo_step(self, model: Module, batch: dict, ref_logprobs: torch.Tensor | None = None):
        ref_c, ref_r = self.reference_logprobs(batch, ref_logprobs)
        pol_c, pol_r = pair_logprobs(
            model, batch["chosen"], batch["rejected"], average=self.loss_type == "ipo"
        )  # one forward of (2B, T)
        return dpo_loss(
            pol_c, pol_r, ref_c, ref_r, self.beta,
            loss_type=self.loss_type, label_smoothing=self.label_smoothing,
        )  # fmt: skip

    # -- the API.md methods -----------------------------------------------------------------
    def train_step(self, examples: Sequence[PreferenceExample] | None = None) -> dict[str, float]:
        """One optimisation step on ``grad_accum_steps × batch_size`` pairs drawn from
        ``examples`` (default: the trainer's ``examples``; the loop passes them).

        Returns ``{"loss", "lr", "grad_norm", "chosen_reward", "rejected_reward",
        "reward_margin", "accuracy", "chosen_logp", "rejected_logp"}`` (floats; metrics
        averaged over micro-batches).
        """
        return super().train_step(self.examples if examples is None else examples)

    def validation_loss(self, source: _HeldOut) -> float:
        """The loop's validation loss on ``train(val_examples=...)``'s held-out pairs: the mean
        DPO loss of :meth:`evaluate`."""
        return self.evaluate(source.examples, ref_logprobs=source.ref_logprobs)["loss"]

    def evaluate(
        self,
        examples: Sequence[PreferenceExample],
        *,
        ref_logprobs: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """DPO metrics over every pair of held-out ``examples``, in order, in batches of
        ``batch_size``: ``{"loss", "accuracy", "reward_margin", "chosen_reward",
        "rejected_reward", "chosen_logp", "rejected_logp", "num_pairs"}`` (means weighted by
        pairs). Eval mode, no gradients, the model's mode restored.

        ``ref_logprobs`` (N, 2) for these examples is required when the trainer has no
        reference model (``precompute_ref_logprobs`` on them); otherwise optional.
        """
        examples = as_preference_examples(examples)
        ref_logprobs = self._check_eval_ref(ref_logprobs, len(examples))
        sums = dict.fromkeys(EVAL_KEYS, 0.0)
        was_training = self.model.training
        self.model.eval()
        n = len(examples)
        try:
            with torch.no_grad():
                for i in range(0, n, self.batch_size):
                    chunk = examples[i : i + self.batch_size]
                    index = torch.arange(i, i + len(chunk))
                    batch = self._to_device(self.collate(chunk, index))
                    with self.autocast():
                        loss, metrics = self._dpo_step(self.model, batch, ref_logprobs)
                    metrics["loss"] = loss
                    for k in EVAL_KEYS:
                        sums[k] += float(metrics[k]) * len(chunk)
        finally:
            self.model.train(was_training)
        out = {k: v / n for k, v in sums.items()}
        out["num_pairs"] = n
        return out

    def _check_eval_ref(self, ref_logprobs: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if ref_logprobs is None:
            if self.ref_mode == "logprobs":
                raise ValueError(
                    "ref_logprobs is required: this trainer has no reference model, so pass "
                    "precompute_ref_logprobs(ref_model, examples, ...) for the held-out examples"
                )
            return None
        _check_ref_table(ref_logprobs, n, "ref_logprobs")
        return ref_logprobs.detach().to(self.device, torch.float32)

    def train(
        self,
        on_log: Callable[[dict], None] | None = None,
        history: dict | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_extra: dict | None = None,
        *,
        val_examples: Sequence[PreferenceExample] | None = None,
        val_ref_logprobs: torch.Tensor | None = None,
        stop_step: int | None = None,
        control: LoopControl | None = None,
    ) -> dict:
        """Train on ``examples`` from ``self.step`` to ``max_steps``; see
        :meth:`g2c.training.TrainingLoop.train` (log events, checkpoints, resume, ``control``).

        Log events carry the DPO metrics. With ``val_examples`` (and ``val_ref_logprobs`` when
        there is no reference model) the held-out mean DPO loss is the ``val_loss`` every
        ``eval_every`` steps; call :meth:`evaluate` for all metrics.
        """
        val = None
        if val_examples is not None:
            val_examples = as_preference_examples(val_examples, "val_examples")
            val = _HeldOut(val_examples, self._check_eval_ref(val_ref_logprobs, len(val_examples)))
        return super().train(
            self.examples, val, on_log, history, checkpoint_path, checkpoint_every,
            checkpoint_extra, stop_step=stop_step, control=control,
        )  # fmt: skip


# -- checks --------------------------------------------------------------------------------
def _check_ids_in_vocab(examples: list[PreferenceExample], pad_id: int, vocab: int | None) -> None:
    if vocab is None:
        return
    if isinstance(pad_id, int) and not isinstance(pad_id, bool) and pad_id >= vocab:
        raise ValueError(f"pad_id {pad_id} is outside the model's vocabulary [0, {vocab})")
    for i, ex in enumerate(examples):
        for f, ids in zip(PreferenceExample._fields, ex):
            if max(ids) >= vocab:
                raise ValueError(
                    f"examples[{i}].{f} holds id {max(ids)}, outside the model's vocabulary "
                    f"[0, {vocab}); encode with the model's tokenizer"
                )


def _check_ref_table(table: Any, n: int, name: str) -> None:
    if not isinstance(table, torch.Tensor) or not table.is_floating_point():
        raise TypeError(f"{name} must be a float tensor (N, 2) from precompute_ref_logprobs")
    if tuple(table.shape) != (n, 2):
        raise ValueError(
            f"{name} must have shape ({n}, 2) — one (chosen, rejected) row per example — got "
            f"{tuple(table.shape)}"
        )
    if not bool(torch.isfinite(table).all()):
        raise ValueError(f"{name} holds non-finite values")


def _tensors(m: Any) -> list[torch.Tensor]:
    if hasattr(m, "named_tensors"):
        return [t for _, t in m.named_tensors()]
    if isinstance(m, torch.nn.Module):
        return list(m.parameters()) + list(m.buffers())
    return []


def _check_reference(model: Any, ref: Any, table: Any, n: int) -> str:
    """The reference mode ("model" | "disable_lora" | "logprobs"); ValueError when unusable."""
    if table is not None:
        if ref is not None:
            raise ValueError(
                "pass either ref_model or ref_logprobs, not both (ref_logprobs replaces the "
                "reference model: set ref_model=None)"
            )
        _check_ref_table(table, n, "ref_logprobs")
        return "logprobs"
    if ref is None:
        raise ValueError(
            "ref_model is None: pass a frozen copy of the starting policy "
            "(copy.deepcopy(model)), ref_model='disable_lora' for a LoRA policy, or "
            "ref_model=None with ref_logprobs=precompute_ref_logprobs(...)"
        )
    if isinstance(ref, str):
        if ref != DISABLE_LORA:
            raise ValueError(f"ref_model must be a model, {DISABLE_LORA!r} or None, got {ref!r}")
        if not lora_layers(model):
            raise ValueError(
                "ref_model='disable_lora' but model has no LoRA layers; call "
                "g2c.lora.inject_lora(model, ...) first or pass a reference model"
            )
        return DISABLE_LORA
    if ref is model:
        raise ValueError(
            "ref_model is the policy itself; pass a frozen copy (copy.deepcopy(model) before "
            "training) so the reference stays fixed"
        )
    policy_ids = {id(t) for t in _tensors(model)}
    shared = [t for t in _tensors(ref) if id(t) in policy_ids]
    if shared:
        raise ValueError(
            f"ref_model shares {len(shared)} tensor(s) with model; freezing it would freeze the "
            "policy too — pass an independent copy (copy.deepcopy(model))"
        )
    v_pol, v_ref = getattr(model, "vocab_size", None), getattr(ref, "vocab_size", None)
    if v_pol is not None and v_ref is not None and v_pol != v_ref:
        raise ValueError(
            f"ref_model has vocabulary size {v_ref}, model {v_pol}: log-probabilities are not "
            "comparable; use the same base model (and tokenizer) for both"
        )
    return "model"


def _freeze(ref: Any) -> None:
    """Reference: no gradients, eval mode (dropout off)."""
    for t in _tensors(ref):
        t.requires_grad_(False)
    ref.eval()


@contextlib.contextmanager
def _eval_mode(model: Any):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _warn_counts(truncated: int, identical: int, n: int, max_seq_len: int) -> None:
    if truncated:
        warnings.warn(
            f"{truncated} of {n} preference pairs exceed max_seq_len={max_seq_len}; their "
            "responses are truncated in training (raise max_seq_len to keep them whole)",
            stacklevel=3,
        )
    if identical:
        warnings.warn(
            f"{identical} of {n} preference pairs have chosen == rejected: their DPO loss is a "
            "constant (log 2 for sigmoid) with zero gradient; drop them to stop diluting batches",
            stacklevel=3,
        )


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(DPOConfig))

__all__ = ["DISABLE_LORA", "DPOConfig", "DPOTrainer"]
