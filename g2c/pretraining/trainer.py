"""The pretraining loop: sample windows, forward, loss, backward, clip, schedule, step.

One optimisation step (``Trainer.train_step``), in this order:

    zero grads → sample a batch → move it to the device → forward → loss → backward
    → clip gradients → set the scheduled lr → optimizer step → step += 1

With ``grad_accum_steps = k`` the step's batch is ``k × batch_size`` windows drawn at once and
fed as k micro-batches of ``batch_size`` (``batch_size`` is per micro-batch, as in nanoGPT);
each micro-batch loss is scaled by 1/k, so the gradient equals the one of the full k·B batch.

Everything random comes from the trainer's own ``torch.Generator`` (batches) and torch's
global RNG (dropout); both states go into the checkpoint, so training 10 steps, saving,
loading into a fresh trainer and training 10 more gives exactly the losses of 20 uninterrupted
steps (on CPU). Checkpoints are ``torch.save`` files of tensors and plain Python values only,
readable with ``torch.load(path, weights_only=True)``, written atomically.

Sources: nanoGPT ``train.py`` (Karpathy 2022); "mixed precision" via ``torch.autocast``
(bf16, Kalamkar et al. 2019); MFU from PaLM (Chowdhery et al. 2022).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import atomic_write_with
from g2c.nn import SGD, Module, resolve_device
from g2c.pretraining.data import _check_ids, get_lm_batch
from g2c.pretraining.flops import device_peak_flops, model_flops_per_token
from g2c.pretraining.loss import lm_cross_entropy
from g2c.training import AdamW, clip_grad_norm_, cosine_with_warmup

CHECKPOINT_FORMAT = "g2c.pretraining.checkpoint"
CHECKPOINT_VERSION = 1
_HISTORY_KEYS = ("step", "train_loss", "lr", "grad_norm", "val_step", "val_loss")


def empty_training_history() -> dict[str, list]:
    """A fresh history: ``{"step", "train_loss", "lr", "grad_norm", "val_step", "val_loss"}``,
    each an empty list. ``step``/``train_loss``/``lr``/``grad_norm`` get one entry per
    optimisation step (step = number of completed steps, 1-based); ``val_step``/``val_loss``
    one entry per evaluation."""
    return {key: [] for key in _HISTORY_KEYS}


def _dtype_name(dtype: torch.dtype | str | None) -> str | None:
    if dtype is None:
        return None
    names = {"bfloat16": "bfloat16", "bf16": "bfloat16", torch.bfloat16: "bfloat16"}
    if dtype not in names:
        raise ValueError(
            f"autocast_dtype must be None or torch.bfloat16 ('bfloat16'), got {dtype!r}; "
            "float16 would need a gradient scaler, use bfloat16"
        )
    return names[dtype]


@dataclasses.dataclass
class TrainConfig:
    """The ``Trainer``'s arguments as a JSON-round-trippable dataclass (the CLI maps flags here).

    Defaults mirror ``Trainer``'s; the required Trainer arguments default to the classic small
    char-level configuration (batch 12, context 64, 2000 steps, lr 1e-3). ``seed`` seeds the
    batch generator (None: drawn from torch's global RNG). ``autocast_dtype`` is a string
    ("bfloat16") or None. Use ``Trainer.from_config(model, cfg)``.
    """

    batch_size: int = 12
    context_length: int = 64
    max_steps: int = 2000
    max_lr: float = 1e-3
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = None
    eval_every: int = 100
    eval_iters: int = 20
    log_every: int = 10
    device: str = "auto"
    optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum_steps: int = 1
    autocast_dtype: str | None = None
    loss_impl: str = "reference"
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields (betas as a list)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys → ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known keys: {sorted(known)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _check_plain(value: Any, where: str) -> None:
    """TypeError unless ``value`` is tensors / plain Python values (weights_only-loadable)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use str keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoints hold only tensors and plain Python "
        "values (dict, list, str, int, float, bool, None) so torch.load(weights_only=True) works"
    )


class Trainer:
    """Pretrain any g2c Module mapping (B, T) long ids → (B, T, V) logits on a token stream.

    Args (API.md 09B/10): ``batch_size`` B (windows per micro-batch), ``context_length`` T,
    ``max_steps``, ``max_lr``/``min_lr``/``warmup_steps`` (``cosine_with_warmup``),
    ``weight_decay`` (applied to every parameter), ``grad_clip`` (global-norm max, None = off),
    ``eval_every``/``eval_iters`` (validation every N steps on ``eval_iters`` batches),
    ``log_every``, ``generator`` (CPU ``torch.Generator`` for batches; None → a new one seeded
    from ``seed`` or, when that is None too, from torch's global RNG), ``device``
    ("auto"|"cpu"|"cuda"|"mps"; the model is moved there), ``optimizer`` ("sgd" → g2c.nn.SGD,
    "adamw" → g2c.training.AdamW).

    Keyword-only extras: ``betas`` (AdamW), ``grad_accum_steps`` (micro-batches per step),
    ``autocast_dtype`` (None or torch.bfloat16: forward under ``torch.autocast``),
    ``loss_impl`` ("reference" | "fused", see ``lm_cross_entropy``), ``seed``, ``eval_seed``
    (validation batches are drawn from a fresh generator with this seed at every evaluation,
    so successive val losses are measured on the same windows and never disturb the training
    stream).

    Attributes mirror the arguments plus ``step`` (completed steps), ``optimizer`` (the
    optimizer object), ``optimizer_name``, ``device`` (torch.device), ``flops_per_token``,
    ``peak_flops``/``peak_flops_estimated``.

    Raises ValueError naming the argument for non-positive sizes, an unknown optimizer,
    context_length above ``model.max_seq_len``, an unsupported autocast dtype.
    """

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
        loss_impl: str = "reference",
        seed: int | None = None,
        eval_seed: int = 0,
    ) -> None:
        for name, value, low in [
            ("batch_size", batch_size, 1),
            ("context_length", context_length, 1),
            ("max_steps", max_steps, 0),
            ("eval_every", eval_every, 1),
            ("eval_iters", eval_iters, 1),
            ("log_every", log_every, 1),
            ("grad_accum_steps", grad_accum_steps, 1),
            ("warmup_steps", warmup_steps, 0),
        ]:
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if warmup_steps > max_steps:
            raise ValueError(f"warmup_steps ({warmup_steps}) must be <= max_steps ({max_steps})")
        if max_lr < 0 or min_lr < 0 or min_lr > max_lr:
            raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        if grad_clip is not None and grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {grad_clip}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if loss_impl not in ("reference", "fused"):
            raise ValueError(f"loss_impl must be 'reference' or 'fused', got {loss_impl!r}")
        max_seq_len = getattr(model, "max_seq_len", None)
        if max_seq_len is not None and context_length > max_seq_len:
            raise ValueError(
                f"context_length ({context_length}) exceeds the model's max_seq_len "
                f"({max_seq_len}); lower context_length or build a longer model"
            )
        self.autocast_name = _dtype_name(autocast_dtype)
        self.device = resolve_device(device)
        if self.autocast_name is not None and not torch.amp.is_autocast_available(self.device.type):
            raise ValueError(f"autocast_dtype: torch.autocast is not available on {self.device}")
        self.autocast_dtype = torch.bfloat16 if self.autocast_name else None

        self.model = model.to(self.device)
        self.batch_size = batch_size
        self.context_length = context_length
        self.max_steps = max_steps
        self.max_lr = max_lr
        self.min_lr = min_lr
        self.warmup_steps = warmup_steps
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.eval_every = eval_every
        self.eval_iters = eval_iters
        self.log_every = log_every
        self.betas = tuple(betas)
        self.grad_accum_steps = grad_accum_steps
        self.loss_impl = loss_impl
        self.seed = seed
        self.eval_seed = eval_seed
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)))
            generator.manual_seed(seed)
        self.generator = generator
        self.optimizer_name = optimizer
        self.params = list(model.parameters())
        if optimizer == "adamw":
            self.optimizer = AdamW(
                self.params, lr=max_lr, betas=self.betas, weight_decay=weight_decay
            )
        else:
            self.optimizer = SGD(self.params, lr=max_lr, weight_decay=weight_decay)
        self.step = 0
        self.flops_per_token = model_flops_per_token(model, context_length)
        self.peak_flops, self.peak_flops_estimated = device_peak_flops(self.device)

    @classmethod
    def from_config(
        cls, model: Module, cfg: TrainConfig, *, generator: torch.Generator | None = None
    ) -> Trainer:
        """Build a Trainer from a :class:`TrainConfig`."""
        kwargs = dataclasses.asdict(cfg)
        kwargs["betas"] = tuple(kwargs["betas"])
        return cls(model, generator=generator, **kwargs)

    def config(self) -> TrainConfig:
        """The trainer's settings as a :class:`TrainConfig`."""
        return TrainConfig(
            batch_size=self.batch_size,
            context_length=self.context_length,
            max_steps=self.max_steps,
            max_lr=self.max_lr,
            min_lr=self.min_lr,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            eval_every=self.eval_every,
            eval_iters=self.eval_iters,
            log_every=self.log_every,
            device=str(self.device),
            optimizer=self.optimizer_name,
            betas=self.betas,
            grad_accum_steps=self.grad_accum_steps,
            autocast_dtype=self.autocast_name,
            loss_impl=self.loss_impl,
            seed=self.seed,
        )

    # -- one step -----------------------------------------------------------------------
    def lr(self, step: int | None = None) -> float:
        """Learning rate at ``step`` (default ``self.step``): ``cosine_with_warmup``."""
        step = self.step if step is None else step
        return cosine_with_warmup(step, self.warmup_steps, self.max_steps, self.max_lr, self.min_lr)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            logits = self.model(x)  # (B, T) -> (B, T, V)
        return lm_cross_entropy(logits, y, impl=self.loss_impl)

    def train_step(self, train_ids: torch.Tensor) -> dict[str, float]:
        """One optimisation step on windows of ``train_ids`` (1-D long stream).

        Returns ``{"loss": mean training loss of the step's batch, "lr": lr used,
        "grad_norm": global gradient norm before clipping (0.0 when grad_clip is None)}``.
        """
        self.optimizer.zero_grad()
        k, B = self.grad_accum_steps, self.batch_size
        x, y = get_lm_batch(train_ids, k * B, self.context_length, self.generator)  # (kB, T)
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        total = torch.zeros((), device=self.device)
        for i in range(k):
            loss = self._loss(x[i * B : (i + 1) * B], y[i * B : (i + 1) * B])
            (loss / k).backward() if k > 1 else loss.backward()
            total += loss.detach()
        grad_norm = clip_grad_norm_(self.params, self.grad_clip) if self.grad_clip else 0.0
        lr = self.lr()
        self.optimizer.lr = lr
        self.optimizer.step()
        self.step += 1
        return {"loss": float(total) / k, "lr": lr, "grad_norm": float(grad_norm)}

    @torch.no_grad()
    def evaluate(self, ids: torch.Tensor) -> float:
        """Mean loss over ``eval_iters`` batches of ``ids`` (1-D long), model in eval mode.

        Batches come from a fresh generator seeded with ``eval_seed`` (same windows every
        call). No gradients are recorded; the model's previous train/eval mode is restored.
        """
        _check_ids(ids)
        was_training = self.model.training
        self.model.eval()
        gen = torch.Generator().manual_seed(self.eval_seed)
        try:
            losses = []
            for _ in range(self.eval_iters):
                x, y = get_lm_batch(ids, self.batch_size, self.context_length, gen)
                losses.append(self._loss(x.to(self.device), y.to(self.device)))
            return float(torch.stack(losses).mean())
        finally:
            self.model.train(was_training)

    # -- the loop ------------------------------------------------------------------------
    def train(
        self,
        train_ids: torch.Tensor,
        val_ids: torch.Tensor | None = None,
        on_log: Callable[[dict], None] | None = None,
        history: dict | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_extra: dict | None = None,
        *,
        stop_step: int | None = None,
    ) -> dict:
        """Train from ``self.step`` to ``max_steps`` (or ``stop_step``); returns the history.

        Every ``log_every`` steps, at every evaluation and at the last step, ``on_log`` gets a
        dict: step, train_loss (this step's), val_loss (None unless evaluated now), lr,
        grad_norm, elapsed_s (wall time since this call began), steps_per_s and tokens_per_s
        (since the previous event, evaluation time excluded), mfu, mfu_estimated,
        tokens_seen. Validation runs every ``eval_every`` steps and at the end when
        ``val_ids`` is given. ``history`` (from ``empty_training_history`` or a checkpoint) is
        appended to. With ``checkpoint_path`` a checkpoint is written every
        ``checkpoint_every`` steps (default: ``eval_every``) and at the end.
        """
        _check_ids(train_ids, "train_ids")
        if history is None:
            history = empty_training_history()
        missing = [k for k in _HISTORY_KEYS if k not in history]
        if missing:
            raise ValueError(f"history is missing keys {missing}; use empty_training_history()")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        every_ckpt = checkpoint_every or self.eval_every
        end = self.max_steps if stop_step is None else min(stop_step, self.max_steps)
        tokens_per_step = self.grad_accum_steps * self.batch_size * self.context_length
        self.model.train()
        start = time.perf_counter()
        mark_t, mark_step, paused = start, self.step, 0.0
        while self.step < end:
            out = self.train_step(train_ids)
            step = self.step
            history["step"].append(step)
            history["train_loss"].append(out["loss"])
            history["lr"].append(out["lr"])
            history["grad_norm"].append(out["grad_norm"])
            is_last = step == end
            val_loss = None
            t_pause = time.perf_counter()
            if val_ids is not None and (step % self.eval_every == 0 or is_last):
                val_loss = self.evaluate(val_ids)
                history["val_step"].append(step)
                history["val_loss"].append(val_loss)
            paused += time.perf_counter() - t_pause
            if on_log is not None and (
                step % self.log_every == 0 or is_last or val_loss is not None
            ):
                now = time.perf_counter()
                busy = max(now - mark_t - paused, 1e-9)
                steps_per_s = (step - mark_step) / busy
                tokens_per_s = steps_per_s * tokens_per_step
                on_log(
                    {
                        "step": step,
                        "max_steps": self.max_steps,
                        "train_loss": out["loss"],
                        "val_loss": val_loss,
                        "lr": out["lr"],
                        "grad_norm": out["grad_norm"],
                        "elapsed_s": now - start,
                        "steps_per_s": steps_per_s,
                        "tokens_per_s": tokens_per_s,
                        "tokens_seen": step * tokens_per_step,
                        "mfu": tokens_per_s * self.flops_per_token / self.peak_flops,
                        "mfu_estimated": self.peak_flops_estimated,
                    }
                )
                mark_t, mark_step, paused = time.perf_counter(), step, 0.0
            if checkpoint_path is not None and (step % every_ckpt == 0 or is_last):
                t_pause = time.perf_counter()
                self.save_checkpoint(checkpoint_path, history=history, extra=checkpoint_extra)
                paused += time.perf_counter() - t_pause
        return history

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(
        self, path: str | Path, history: dict | None = None, extra: dict | None = None
    ) -> Path:
        """Write model, optimizer, step, RNG states, ``history`` and ``extra`` to ``path``.

        Atomic (temp file + rename). The file holds only tensors and plain Python values:
        ``torch.load(path, weights_only=True)`` reads it. Keys: ``format``, ``version``,
        ``trainer`` (step, config, generator/RNG states), ``model``, ``optimizer``,
        ``optimizer_name``, ``history``, ``extra``. Non-plain ``extra`` → TypeError.
        """
        _check_plain(history, "history")
        _check_plain(extra, "extra")
        trainer_state = {
            "step": self.step,
            "config": self.config().to_dict(),
            "generator_state": self.generator.get_state(),
            "cpu_rng_state": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            trainer_state["cuda_rng_states"] = torch.cuda.get_rng_state_all()
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "trainer": trainer_state,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "optimizer_name": self.optimizer_name,
            "history": history,
            "extra": extra,
        }
        return atomic_write_with(path, lambda p: torch.save(state, p))

    def load_checkpoint(self, path: str | Path, *, restore_rng: bool = True) -> dict:
        """Restore model weights, optimizer state, ``step`` and the batch generator from
        ``path``; with ``restore_rng`` also torch's global (CPU/CUDA) RNG, used by dropout.

        Returns the checkpoint dict (``history``, ``extra``, ``trainer``, ...). Loads with
        ``weights_only=True``. Missing file → FileNotFoundError; another format, a different
        optimizer or mismatched weights → ValueError.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} file")
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{path}: checkpoint version {state.get('version')} unsupported "
                f"(this g2c reads {CHECKPOINT_VERSION})"
            )
        if state["optimizer_name"] != self.optimizer_name:
            raise ValueError(
                f"checkpoint was trained with optimizer={state['optimizer_name']!r}, this "
                f"trainer uses {self.optimizer_name!r}; build the Trainer with the same optimizer"
            )
        self.model.load_state_dict(state["model"])
        opt_state = state["optimizer"]
        if self.optimizer_name == "sgd":
            opt_state = dict(opt_state)
            opt_state["velocity"] = [
                None if v is None else v.to(self.device) for v in opt_state["velocity"]
            ]
        self.optimizer.load_state_dict(opt_state)
        trainer = state["trainer"]
        self.step = int(trainer["step"])
        self.generator.set_state(trainer["generator_state"])
        if restore_rng:
            torch.set_rng_state(trainer["cpu_rng_state"])
            if "cuda_rng_states" in trainer and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(trainer["cuda_rng_states"])
        return state


def final_val_loss(history: dict) -> float:
    """The last recorded validation loss in ``history`` (NaN when none)."""
    return history["val_loss"][-1] if history.get("val_loss") else math.nan
