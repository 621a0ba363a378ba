"""The one training loop: batches in, a loss out, everything else owned here.

A ``TrainingLoop`` trains a model on a *batch source* with a *loss function*

    loss_fn(model, batch) -> (loss: scalar tensor, metrics: dict[str, float | tensor])

and owns what every trainer needs: gradient accumulation over micro-batches, clipping, the
warmup + cosine learning-rate schedule, bf16 autocast, validation, log events (tokens/s, MFU,
cumulative elapsed time), atomic checkpoints with every RNG state, exact resume, and a
cooperative stop / re-plan through a ``LoopControl`` object (no exceptions for control flow).

One optimisation step (``train_step``), in this order:

    zero grads → sample k·B examples → move them to the device → split into k micro-batches
    → for each: forward + loss (under autocast) → backward of loss / k
    → clip gradients → set the scheduled lr → optimizer step → step += 1

``batch_size`` B is per micro-batch (as in nanoGPT) and k = ``grad_accum_steps``; scaling each
micro-batch loss by 1/k makes the gradient that of the whole k·B batch (for a mean loss).

**Batches.** ``sample_batch(source, n, generator)`` draws n examples; by default ``source`` is a
callable ``source(n, generator) -> batch``. A batch is a tensor or a tuple / list / dict of
tensors whose first dimension is the example index; the loop moves it to the device and
slices it into micro-batches along that dimension (other values are passed to every
micro-batch unchanged). A specialisation overrides ``sample_batch`` (and ``check_source``)
and supplies its ``loss_fn`` — nothing else:

- ``g2c.pretraining.Trainer``: batches are ``get_lm_batch`` windows (x, y) of a token stream,
  the loss is ``lm_cross_entropy``.
- SFT: ``sample_batch`` picks n conversations with the generator and returns
  ``pad_and_collate(...) -> (x, y, loss_mask)``; the loss is the masked cross-entropy.
- DPO: ``sample_batch`` returns a dict of chosen / rejected (x, y, mask) tensors; ``loss_fn``
  closes over the frozen reference model (``requires_grad_(False)``, run under
  ``torch.no_grad()``) and returns ``dpo_loss``'s (loss, metrics). Only ``model``'s parameters
  are optimised; the metrics (reward margin, accuracy) are averaged over micro-batches and
  appear in the step result and in every log event.

Everything random comes from the loop's own ``torch.Generator`` (batches) and torch's global
RNG (dropout); both go into the checkpoint, so 10 steps, save, load into a fresh loop, 10 more
give exactly the losses of 20 uninterrupted steps (on CPU). Checkpoints hold tensors and plain
Python values only (``torch.load(path, weights_only=True)`` reads them), written atomically.

**Distributed** (``distribute(strategy)``, under ``torchrun``; ``g2c/training/distributed.py``):
the same loop runs data-parallel with DDP or FSDP2. Every rank draws the same global batch of
k·B examples with the same generator and keeps its contiguous slice of B/N examples of each
micro-batch, so the global batch — and, for a mean loss, the gradient — is that of a
1-process run (B must be divisible by N). Gradients are averaged by the wrapper (no
communication on the first k-1 micro-batches); the reported loss, metrics and validation loss
are averaged over ranks; ``on_log`` runs on rank 0 only; ``control``'s decisions are rank 0's,
broadcast. Checkpoints become ``torch.distributed.checkpoint`` directories (sharded, atomic),
which load into any world size, a single process included. Without ``distribute`` nothing of
this runs: single-process training is unchanged.

Sources: nanoGPT ``train.py`` (Karpathy 2022); mixed precision via ``torch.autocast`` (bf16,
Kalamkar et al. 2019); MFU from PaLM (Chowdhery et al. 2022); PyTorch DDP (Li et al. 2020) and
FSDP (Zhao et al. 2023).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import atomic_write_with
from g2c.nn import SGD, Module, resolve_device
from g2c.training.adamw import AdamW, one_dim_params
from g2c.training.clip import clip_grad_norm_
from g2c.training.distributed import (
    DistContext,
    Distributed,
    check_world_divides,
    copy_full_into,
    current_context,
    is_dcp_checkpoint,
    load_dcp,
    save_dcp,
    wrap_model,
)
from g2c.training.evaluation import mean_batch_loss
from g2c.training.flops import device_peak_flops, model_flops_per_token
from g2c.training.memory import release_free_heap
from g2c.training.schedule import cosine_with_warmup

LossFn = Callable[[Module, Any], tuple[torch.Tensor, dict]]
HISTORY_KEYS = ("step", "train_loss", "lr", "grad_norm", "val_step", "val_loss")
CHECKPOINT_VERSION = 1
OPTIMIZERS = ("sgd", "adamw")


def empty_training_history() -> dict[str, list]:
    """A fresh history: ``{"step", "train_loss", "lr", "grad_norm", "val_step", "val_loss"}``,
    each an empty list. ``step``/``train_loss``/``lr``/``grad_norm`` get one entry per
    optimisation step (step = number of completed steps, 1-based); ``val_step``/``val_loss``
    one entry per evaluation."""
    return {key: [] for key in HISTORY_KEYS}


# -- configuration -------------------------------------------------------------------------
def check_int(name: str, value: Any, low: int) -> None:
    """ValueError ``"{name} must be an integer >= {low}, got {value!r}"`` unless it is one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_number(name: str, value: Any, low: float = 0.0, *, strict: bool = False) -> None:
    """ValueError naming ``name`` unless ``value`` is a finite real ``>= low`` (``> low``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {rel} {low}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """ValueError naming ``name`` and the choices unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def autocast_name(dtype: torch.dtype | str | None) -> str | None:
    """``None`` or ``"bfloat16"`` for an autocast dtype given as None / torch.bfloat16 /
    "bfloat16" / "bf16"; anything else → ValueError naming autocast_dtype."""
    if dtype is None:
        return None
    if dtype in (torch.bfloat16, "bfloat16", "bf16"):
        return "bfloat16"
    raise ValueError(
        f"autocast_dtype must be None or torch.bfloat16 ('bfloat16'), got {dtype!r}; "
        "float16 would need a gradient scaler, use bfloat16"
    )


@dataclasses.dataclass
class LoopConfig:
    """The training loop's settings, validated field by field in ``__post_init__``.

    ``batch_size`` (examples per micro-batch), ``max_steps`` (optimisation steps),
    ``max_lr``/``min_lr``/``warmup_steps`` (``cosine_with_warmup``; warmup may exceed
    max_steps here — a stage can shorten the plan later — but the loop requires
    warmup_steps <= max_steps), ``weight_decay``, ``weight_decay_1d`` (True: every parameter
    decays; False: biases and norm gains — the 1-D tensors — do not, as nanoGPT and the HF
    Trainer; AdamW only), ``grad_clip`` (global-norm
    max, None = off), ``eval_every``/``eval_iters`` (validation every N steps on that many
    batches), ``log_every``, ``device`` ("auto" | "cpu" | "cuda[:N]" | "mps"), ``optimizer``
    ("sgd" → g2c.nn.SGD, "adamw" → g2c.training.AdamW), ``betas`` (AdamW), ``grad_accum_steps``
    (micro-batches per step), ``autocast_dtype`` (None or "bfloat16"), ``seed`` (seeds the batch
    generator; None: drawn from torch's global RNG).

    A bad field → ValueError naming it, e.g. "batch_size must be an integer >= 1, got 0"
    (``dataclasses.replace`` validates too). ``to_dict``/``from_dict`` and
    ``to_json``/``from_json`` round-trip; unknown keys → ValueError.
    """

    batch_size: int = 12
    max_steps: int = 2000
    max_lr: float = 1e-3
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    weight_decay_1d: bool = True
    grad_clip: float | None = None
    eval_every: int = 100
    eval_iters: int = 20
    log_every: int = 10
    device: str = "auto"
    optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum_steps: int = 1
    autocast_dtype: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_every", "eval_iters", "log_every", "grad_accum_steps"):
            check_int(name, getattr(self, name), 1)
        check_int("max_steps", self.max_steps, 0)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_number("max_lr", self.max_lr)
        check_number("min_lr", self.min_lr)
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be <= max_lr ({self.max_lr})")
        check_number("weight_decay", self.weight_decay)
        if not isinstance(self.weight_decay_1d, bool):
            raise ValueError(f"weight_decay_1d must be true or false, got {self.weight_decay_1d!r}")
        if not self.weight_decay_1d and self.weight_decay and self.optimizer != "adamw":
            raise ValueError("weight_decay_1d=false exempts 1-D tensors in AdamW only; use "
                             "optimizer='adamw' or weight_decay_1d=true")  # fmt: skip
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, strict=True)
        if isinstance(self.device, torch.device):
            self.device = str(self.device)
        if not isinstance(self.device, str) or not _parses_as_device(self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}"
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        betas = self.betas
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                for b in betas
            )
        ):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.autocast_dtype = autocast_name(self.autocast_dtype)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields (betas as a list)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; unknown keys → ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _parses_as_device(text: str) -> bool:
    if text == "auto":
        return True
    try:
        return torch.device(text).type in ("cpu", "cuda", "mps")
    except RuntimeError:
        return False


def check_fits_model(model: Any, length: int, name: str) -> None:
    """ValueError naming ``name`` when ``length`` exceeds ``model.max_seq_len`` (models without
    that attribute accept any length). Every specialisation checks its sequence length here."""
    model_len = getattr(model, "max_seq_len", None)
    if model_len is not None and length > model_len:
        raise ValueError(
            f"{name} ({length}) exceeds the model's max_seq_len ({model_len}); lower {name} "
            "or build a longer model"
        )


# -- control ------------------------------------------------------------------------------
class LoopControl:
    """Consulted by the loop after every completed optimisation step.

    Subclass and override either method; the defaults never stop and never re-plan. After step
    ``step`` is complete (history appended, its evaluation / log event / checkpoint done) the
    loop calls ``plan_max_steps(step, max_steps, elapsed_s)`` — a returned int different from
    ``max_steps`` becomes the loop's new ``max_steps`` (the cosine schedule continues toward
    the new end; later log events carry it) — then, unless the run is complete,
    ``should_stop(step)``: True writes a checkpoint (when the loop has a path), sets
    ``stop_reason = "stopped"`` and returns the history.
    """

    def should_stop(self, step: int) -> bool:
        """True to stop cleanly after ``step`` (a resumable checkpoint is written)."""
        return False

    def plan_max_steps(self, step: int, max_steps: int, elapsed_s: float) -> int | None:
        """A new total number of steps (>= ``step``), or None to keep ``max_steps``.

        ``elapsed_s`` is the cumulative training wall time over every session of the run.
        """
        return None


# -- batches ------------------------------------------------------------------------------
def map_batch(fn: Callable[[torch.Tensor], Any], batch: Any) -> Any:
    """Apply ``fn`` to every tensor in a (nested) tuple / list / dict batch."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # NamedTuple
        return type(batch)(*(map_batch(fn, b) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_batch(fn, b) for b in batch)
    if isinstance(batch, dict):
        return {k: map_batch(fn, v) for k, v in batch.items()}
    return batch


def split_batch(batch: Any, k: int, size: int) -> list[Any]:
    """Cut a batch of ``k·size`` examples into k micro-batches of ``size`` along dim 0."""
    if k == 1:
        return [batch]
    return [map_batch(lambda t, i=i: t[i * size : (i + 1) * size], batch) for i in range(k)]


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


# -- the loop -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Session:
    """The state of one ``TrainingLoop.train`` call (its arguments and timing marks)."""

    history: dict
    val_source: Any
    on_log: Callable[[dict], None] | None
    checkpoint_path: str | Path | None
    checkpoint_every: int
    extra: dict | None
    stop_step: int | None
    base_elapsed: float  # elapsed_s when this call began (earlier sessions)
    start: float  # perf_counter when this call began
    mark_step: int  # step of the previous log event (for steps/s)
    mark_t: float = 0.0  # time of the previous log event
    paused: float = 0.0  # evaluation / checkpoint time since then (not counted in steps/s)
    done: set = dataclasses.field(default_factory=set)  # what this step already did


class TrainingLoop:
    """Train ``model`` on batches from a source with ``loss_fn``; see the module docstring.

    Args: ``model`` (a g2c Module; moved to ``config.device``), ``config`` (a
    :class:`LoopConfig` or subclass — its fields become attributes of the loop), ``loss_fn``
    (``(model, batch) -> (loss, metrics)``; runs under autocast when ``autocast_dtype`` is set,
    so upcast logits to float32 before the loss), ``generator`` (CPU ``torch.Generator`` for
    batches; None → a new one seeded from ``config.seed`` or, when that is None too, from
    torch's global RNG), ``eval_seed`` (validation batches come from a fresh generator with
    this seed at every evaluation: the same examples every time, the training stream
    untouched), ``tokens_per_example`` (for tokens/s and MFU; 1 counts examples),
    ``flops_per_token`` (training FLOPs per token for MFU; default
    ``model_flops_per_token(model)``).

    Attributes: the config fields (``optimizer_name`` holds the optimizer's name, ``optimizer``
    the object, ``device`` a torch.device, ``autocast_dtype`` a torch dtype or None), ``step``
    (completed steps), ``params``, ``elapsed_s`` (cumulative training wall time over every
    session, restored from checkpoints), ``stop_reason`` (None before ``train``; "complete" or
    "stopped" after), ``flops_per_token``, ``peak_flops``/``peak_flops_estimated`` (measured on
    first use, see ``device_peak_flops``), ``dist`` (None, or the
    :class:`~g2c.training.distributed.Distributed` wrapper after :meth:`distribute`).

    Raises ValueError for warmup_steps > max_steps or autocast on a device without it.
    """

    checkpoint_format = "g2c.training.checkpoint"
    config_class: type[LoopConfig] = LoopConfig
    _RENAMED = {"optimizer": "optimizer_name"}  # config field → attribute
    source_names = ("train_source", "val_source", "source")  # argument names in messages

    def __init__(
        self,
        model: Module,
        config: LoopConfig,
        loss_fn: LossFn,
        *,
        generator: torch.Generator | None = None,
        eval_seed: int = 0,
        tokens_per_example: int = 1,
        flops_per_token: int | None = None,
    ) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"config must be a {self.config_class.__name__}, got {type(config).__name__}"
            )
        if config.warmup_steps > config.max_steps:
            raise ValueError(
                f"warmup_steps ({config.warmup_steps}) must be <= max_steps ({config.max_steps})"
            )
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable (model, batch) -> (loss, metrics)")
        check_int("eval_seed", eval_seed, 0)
        check_int("tokens_per_example", tokens_per_example, 1)
        device = resolve_device(config.device)
        if config.autocast_dtype is not None and not torch.amp.is_autocast_available(device.type):
            raise ValueError(f"autocast_dtype: torch.autocast is not available on {device}")
        for f in dataclasses.fields(config):
            setattr(self, self._RENAMED.get(f.name, f.name), getattr(config, f.name))
        self.device = device
        self.autocast_name = config.autocast_dtype
        self.autocast_dtype = torch.bfloat16 if config.autocast_dtype else None
        self.model = model.to(device)
        self.loss_fn = loss_fn
        self.eval_seed = eval_seed
        self.tokens_per_example = tokens_per_example
        if generator is None:
            seed = config.seed
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)))
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self.params = list(model.parameters())
        if self.optimizer_name == "adamw":
            self.optimizer = self._adamw()
        else:
            self.optimizer = SGD(self.params, lr=self.max_lr, weight_decay=self.weight_decay)
        self.step = 0
        self.elapsed_s = 0.0
        self.stop_reason: str | None = None
        self.flops_per_token = (
            model_flops_per_token(model) if flops_per_token is None else int(flops_per_token)
        )
        self._peak: tuple[float, bool] | None = None
        self.dist: Distributed | None = None

    def _adamw(self) -> AdamW:
        """AdamW over ``self.params`` with the config's settings (1-D tensors exempt from
        weight decay unless ``weight_decay_1d``)."""
        exempt = None if self.weight_decay_1d else one_dim_params(self.params)
        return AdamW(self.params, lr=self.max_lr, betas=self.betas,
                     weight_decay=self.weight_decay, no_decay=exempt)  # fmt: skip

    # -- distribution ------------------------------------------------------------------------
    def distribute(self, strategy: str = "ddp", context: DistContext | None = None) -> Any:
        """Train data-parallel over the initialised process group; returns self.

        ``strategy`` "ddp" (``DistributedDataParallel``) or "fsdp" (FSDP2 ``fully_shard`` per
        block); ``context`` defaults to the current process group's. Call before the first
        step (the optimizer is rebuilt over the wrapped parameters) and on every rank. Raises
        ValueError, before any change, when no process group is initialised, when the world
        size does not divide ``batch_size``, for an unknown strategy or FSDP on a model without
        blocks, after steps were taken, or when already distributed.
        """
        context = context or current_context()
        if context is None:
            raise ValueError(
                "distribute() needs an initialised process group: launch with torchrun "
                "(or g2c train --nproc N) and call g2c.training.init_distributed() first"
            )
        if self.dist is not None:
            raise ValueError("this loop is already distributed")
        if self.step:
            raise ValueError("distribute() must be called before the first step")
        check_world_divides(self.batch_size, context.world_size)
        self.dist = wrap_model(self.model, strategy, context)
        self.params = list(self.dist.params)
        if self.optimizer_name == "adamw":
            self.optimizer = self._adamw()
        else:
            self.optimizer = SGD(self.params, lr=self.max_lr, weight_decay=self.weight_decay)
        return self

    def gather_model(self) -> Module:
        """The model with full, ordinary weights after distributed training (FSDP: gathered
        from every rank — a collective, call it on all ranks); ends distribution. Without
        distribution: the model."""
        if self.dist is None:
            return self.model
        model = self.dist.unwrap()
        self.dist = None
        self.params = list(model.parameters())
        return model

    # -- settings ---------------------------------------------------------------------------
    def config(self) -> LoopConfig:
        """The current settings as a config object (``max_steps`` after any re-plan)."""
        values = {
            f.name: getattr(self, self._RENAMED.get(f.name, f.name))
            for f in dataclasses.fields(self.config_class)
        }
        values.update(device=str(self.device), autocast_dtype=self.autocast_name)
        return self.config_class(**values)

    @property
    def peak_flops(self) -> float:
        """The device's peak FLOP/s (``device_peak_flops``, measured once on first use)."""
        if self._peak is None:
            self._peak = device_peak_flops(self.device)
        return self._peak[0]

    @property
    def peak_flops_estimated(self) -> bool:
        """True when ``peak_flops`` is measured or assumed rather than a spec-sheet value."""
        self.peak_flops  # noqa: B018 — fills self._peak
        return self._peak[1]

    @property
    def tokens_per_step(self) -> int:
        """Tokens (examples × tokens_per_example) consumed by one optimisation step."""
        return self.grad_accum_steps * self.batch_size * self.tokens_per_example

    def lr(self, step: int | None = None) -> float:
        """Learning rate at ``step`` (default ``self.step``): ``cosine_with_warmup``."""
        step = self.step if step is None else step
        return cosine_with_warmup(step, self.warmup_steps, self.max_steps, self.max_lr, self.min_lr)

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` to ``autocast_dtype`` on the loop's device, or a no-op."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    # -- hooks a specialisation overrides ----------------------------------------------------
    def check_source(self, source: Any, name: str) -> None:
        """Validate a batch source before any work (default: it must be callable)."""
        if not callable(source):
            raise TypeError(
                f"{name} must be a callable source(n, generator) -> batch, "
                f"got {type(source).__name__}"
            )

    def sample_batch(self, source: Any, n: int, generator: torch.Generator) -> Any:
        """Draw ``n`` examples from ``source`` with ``generator`` (default: ``source(n, gen)``)."""
        return source(n, generator)

    # -- one step -----------------------------------------------------------------------------
    def _to_device(self, batch: Any) -> Any:
        return map_batch(lambda t: t.to(self.device, non_blocking=True), batch)

    def _loss(self, model: Module, batch: Any) -> tuple[torch.Tensor, dict]:
        with self.autocast():
            out = self.loss_fn(model, batch)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise TypeError("loss_fn must return (loss: scalar tensor, metrics: dict)")
        return out

    def train_step(self, source: Any) -> dict[str, float]:
        """One optimisation step on ``grad_accum_steps × batch_size`` examples of ``source``
        (:meth:`optimisation_step`; specialisations give this public method their own API.md
        signature — ``Trainer.train_step(train_ids)``, ``SFTTrainer.train_step()`` — while the
        loop always calls :meth:`optimisation_step`)."""
        return self.optimisation_step(source)

    def optimisation_step(self, source: Any) -> dict[str, float]:
        """One optimisation step on ``grad_accum_steps × batch_size`` examples of ``source``.

        Returns ``{"loss": mean loss over the micro-batches, "lr": lr used, "grad_norm":
        global gradient norm before clipping (0.0 when grad_clip is None), **metrics}`` (the
        loss function's metrics, averaged over the micro-batches, as floats).
        """
        if self.dist is not None:
            return self._distributed_step(source)
        self.optimizer.zero_grad()
        k, B = self.grad_accum_steps, self.batch_size
        batch = self._to_device(self.sample_batch(source, k * B, self.generator))
        total = torch.zeros((), device=self.device)
        sums: dict[str, Any] = {}
        trim = self.device.type == "cpu" and bool(
            getattr(self.model, "activation_checkpointing", 0)
        )
        for micro in split_batch(batch, k, B):
            loss, metrics = self._loss(self.model, micro)
            if trim:  # memory mode: hand the forward's freed heap back before backward's peak
                release_free_heap()
            (loss / k).backward() if k > 1 else loss.backward()
            total += loss.detach()
            for name, value in metrics.items():
                value = value.detach() if isinstance(value, torch.Tensor) else value
                sums[name] = sums.get(name, 0.0) + value
        grad_norm = clip_grad_norm_(self.params, self.grad_clip) if self.grad_clip else 0.0
        lr = self.lr()
        self.optimizer.lr = lr
        self.optimizer.step()
        self.step += 1
        out = {"loss": float(total) / k, "lr": lr, "grad_norm": float(grad_norm)}
        out.update({name: float(value) / k for name, value in sums.items()})
        return out

    def _distributed_step(self, source: Any) -> dict[str, float]:
        """:meth:`optimisation_step` on this rank's slice of every micro-batch; the wrapper
        averages the gradients, loss and metrics are averaged over ranks."""
        d = self.dist
        self.optimizer.zero_grad()
        k, B = self.grad_accum_steps, self.batch_size
        batch = self.sample_batch(source, k * B, self.generator)  # the global batch, every rank
        total = torch.zeros((), device=self.device)
        sums: dict[str, Any] = {}
        micros = split_batch(batch, k, B)
        for i, micro in enumerate(micros):
            local = self._to_device(d.shard(micro, B))
            sync = contextlib.nullcontext() if i == k - 1 else d.no_sync()
            with sync:
                loss, metrics = d.run(self._loss, self.model, local)
                (loss / k).backward() if k > 1 else loss.backward()
            total += loss.detach()
            for name, value in metrics.items():
                value = value.detach() if isinstance(value, torch.Tensor) else value
                sums[name] = sums.get(name, 0.0) + value
        names = list(sums)  # the loss mean over ranks overlaps clipping and the update
        means_of = d.all_mean_async([float(total) / k] + [float(sums[n]) / k for n in names])
        grad_norm = d.clip_grad_norm_(self.grad_clip) if self.grad_clip else 0.0
        lr = self.lr()
        self.optimizer.lr = lr
        self.optimizer.step()
        self.step += 1
        means = means_of()
        out = {"loss": means[0], "lr": lr, "grad_norm": float(grad_norm)}
        out.update(zip(names, means[1:]))
        return out

    def evaluate(self, source: Any) -> float:
        """Mean loss over ``eval_iters`` batches of ``batch_size`` examples of ``source``.

        Batches come from a fresh generator seeded with ``eval_seed`` (the same examples
        every call); eval mode, no gradients, the model's previous mode restored
        (``mean_batch_loss``).
        """
        self.check_source(source, self.source_names[2])
        gen = torch.Generator().manual_seed(self.eval_seed)
        if self.dist is not None:  # each rank its slice of every batch; the mean over ranks
            d = self.dist
            batches = (
                self._to_device(
                    d.shard(self.sample_batch(source, self.batch_size, gen), self.batch_size)
                )
                for _ in range(self.eval_iters)
            )
            loss = mean_batch_loss(self.model, batches, lambda m, b: d.run(self._loss, m, b))
            return d.all_mean([loss])[0]
        batches = (
            self._to_device(self.sample_batch(source, self.batch_size, gen))
            for _ in range(self.eval_iters)
        )
        return mean_batch_loss(self.model, batches, self._loss)

    def validation_loss(self, source: Any) -> float:
        """The validation loss the loop records every ``eval_every`` steps: ``evaluate(source)``.
        A specialisation whose ``evaluate`` returns more than one number (DPO's metrics dict)
        overrides this to pick the loss."""
        return self.evaluate(source)

    # -- the loop -------------------------------------------------------------------------
    def train(
        self,
        train_source: Any,
        val_source: Any = None,
        on_log: Callable[[dict], None] | None = None,
        history: dict | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_extra: dict | None = None,
        *,
        stop_step: int | None = None,
        control: LoopControl | None = None,
    ) -> dict:
        """Train from ``self.step`` to ``max_steps`` (or ``stop_step``); returns the history.

        Every ``log_every`` steps, at every evaluation and at the last step, ``on_log`` gets a
        dict: step, max_steps, train_loss (this step's), val_loss (None unless evaluated now),
        lr, grad_norm, elapsed_s (cumulative training wall time over every session),
        steps_per_s and tokens_per_s (since the previous event, evaluation and checkpoint
        time excluded), tokens_seen, mfu, mfu_estimated, plus the loss function's metrics.
        Validation runs every ``eval_every`` steps and at the last step when ``val_source`` is
        given. ``history`` (from ``empty_training_history`` or a checkpoint) is appended to.
        With ``checkpoint_path`` a checkpoint is written every ``checkpoint_every`` steps
        (default: ``eval_every``), at the last step and when ``control`` stops the loop.
        ``control`` (a :class:`LoopControl`) may re-plan ``max_steps`` or stop after any step.
        Sets ``stop_reason`` to "complete" (max_steps reached) or "stopped" (``control`` or
        ``stop_step``). Bad arguments → ValueError / TypeError before any step.
        """
        self.check_source(train_source, self.source_names[0])
        if val_source is not None:
            self.check_source(val_source, self.source_names[1])
        if history is None:
            history = empty_training_history()
        if not isinstance(history, dict):
            raise TypeError(f"history must be a dict, got {type(history).__name__}")
        missing = [k for k in HISTORY_KEYS if k not in history]
        if missing:
            raise ValueError(f"history is missing keys {missing}; use empty_training_history()")
        if checkpoint_every is not None:
            check_int("checkpoint_every", checkpoint_every, 1)
        if stop_step is not None:
            check_int("stop_step", stop_step, 0)
        if control is not None and not all(
            callable(getattr(control, m, None)) for m in ("should_stop", "plan_max_steps")
        ):
            raise TypeError("control must be a LoopControl (should_stop, plan_max_steps)")
        _check_plain(checkpoint_extra, "checkpoint_extra")
        if self.dist is not None:
            on_log = on_log if self.dist.context.is_main else None
            # every rank consults the same (rank 0's) decisions, so all stop at the same step
            control = _Rank0Control(control or LoopControl(), self.dist)
        run = _Session(
            history, val_source, on_log, checkpoint_path, checkpoint_every or self.eval_every,
            checkpoint_extra, stop_step, self.elapsed_s, time.perf_counter(), self.step,
        )  # fmt: skip
        run.mark_t = run.start
        self.model.train()
        self.stop_reason = None
        while self.step < self._end(run):
            out = self.optimisation_step(train_source)
            step = self.step
            for key, value in (("step", step), ("train_loss", out["loss"]), ("lr", out["lr"]),
                               ("grad_norm", out["grad_norm"])):  # fmt: skip
                history[key].append(value)
            run.done = set()
            self._finish_step(run, step, out, is_last=step == self._end(run))
            self._tick(run)
            if control is None:
                continue
            planned = control.plan_max_steps(step, self.max_steps, self.elapsed_s)
            if planned is not None and planned != self.max_steps:
                low = max(step, self.warmup_steps)
                if isinstance(planned, bool) or not isinstance(planned, int) or planned < low:
                    raise ValueError(
                        f"control.plan_max_steps returned {planned!r}; it must be None or an "
                        f"integer >= max(step, warmup_steps) = {low}"
                    )
                self.max_steps = planned
                if step == self._end(run):  # the new plan ends here: finish this step as last
                    self._finish_step(run, step, out, is_last=True)
            if step < self._end(run) and control.should_stop(step):
                if checkpoint_path is not None and "ckpt" not in run.done:
                    self._tick(run)
                    self.save_checkpoint(checkpoint_path, history=history, extra=checkpoint_extra)
                self.stop_reason = "stopped"
                return history
        self._tick(run)
        self.stop_reason = "complete" if self.step >= self.max_steps else "stopped"
        return history

    def _end(self, run: _Session) -> int:
        return self.max_steps if run.stop_step is None else min(run.stop_step, self.max_steps)

    def _tick(self, run: _Session) -> float:
        """Update the cumulative ``elapsed_s``; returns the current perf_counter time."""
        now = time.perf_counter()
        self.elapsed_s = run.base_elapsed + (now - run.start)
        return now

    def _finish_step(self, run: _Session, step: int, out: dict, *, is_last: bool) -> None:
        """Evaluation, log event and checkpoint of ``step``, each at most once per step."""
        val_loss = None
        t_pause = time.perf_counter()
        due_eval = step % self.eval_every == 0 or is_last
        if run.val_source is not None and "eval" not in run.done and due_eval:
            val_loss = self.validation_loss(run.val_source)
            run.history["val_step"].append(step)
            run.history["val_loss"].append(val_loss)
            run.done.add("eval")
        run.paused += time.perf_counter() - t_pause
        due_log = step % self.log_every == 0 or is_last or val_loss is not None
        if run.on_log is not None and "log" not in run.done and due_log:
            now = self._tick(run)
            busy = max(now - run.mark_t - run.paused, 1e-9)
            steps_per_s = (step - run.mark_step) / busy
            tokens_per_s = steps_per_s * self.tokens_per_step
            event = {
                "step": step,
                "max_steps": self.max_steps,
                "train_loss": out["loss"],
                "val_loss": val_loss,
                "lr": out["lr"],
                "grad_norm": out["grad_norm"],
                "elapsed_s": self.elapsed_s,
                "steps_per_s": steps_per_s,
                "tokens_per_s": tokens_per_s,
                "tokens_seen": step * self.tokens_per_step,
                "mfu": tokens_per_s * self.flops_per_token / self.peak_flops,
                "mfu_estimated": self.peak_flops_estimated,
            }
            event.update({k: v for k, v in out.items() if k not in ("loss", "lr", "grad_norm")})
            run.on_log(event)
            run.done.add("log")
            run.mark_t, run.mark_step, run.paused = time.perf_counter(), step, 0.0
        due_ckpt = step % run.checkpoint_every == 0 or is_last
        if run.checkpoint_path is not None and "ckpt" not in run.done and due_ckpt:
            t_pause = self._tick(run)
            self.save_checkpoint(run.checkpoint_path, history=run.history, extra=run.extra)
            run.done.add("ckpt")
            run.paused += time.perf_counter() - t_pause

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(
        self, path: str | Path, history: dict | None = None, extra: dict | None = None
    ) -> Path:
        """Write model, optimizer, step, elapsed time, RNG states, ``history`` and ``extra``.

        Atomic (temp file + rename). The file holds only tensors and plain Python values:
        ``torch.load(path, weights_only=True)`` reads it. Keys: ``format``, ``version``,
        ``trainer`` (step, elapsed_s, config, generator/RNG states), ``model``, ``optimizer``,
        ``optimizer_name``, ``history``, ``extra``. Non-plain ``history``/``extra`` →
        TypeError before anything is written.
        """
        _check_plain(history, "history")
        _check_plain(extra, "extra")
        if self.dist is not None:
            return self._save_distributed(path, history, extra)
        trainer_state = {
            "step": self.step,
            "elapsed_s": float(self.elapsed_s),
            "config": self.config().to_dict(),
            "generator_state": self.generator.get_state(),
            "cpu_rng_state": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            trainer_state["cuda_rng_states"] = torch.cuda.get_rng_state_all()
        if Path(path).is_dir():  # a distributed (DCP) checkpoint resumed in one process
            return self._replace_directory(Path(path), history, extra)
        state = {
            "format": self.checkpoint_format,
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
        """Restore model weights, optimizer state, ``step``, ``elapsed_s`` and the batch
        generator from ``path``; with ``restore_rng`` also torch's global (CPU/CUDA) RNG.

        Returns the checkpoint dict (``history``, ``extra``, ``trainer``, ...). Loads with
        ``weights_only=True``. Missing file → FileNotFoundError; a truncated or corrupt file,
        another format, a different optimizer or mismatched weights → ValueError naming the
        file and what to do.
        """
        path = Path(path)
        if path.is_dir() and is_dcp_checkpoint(path):
            return self._load_dcp(path, restore_rng)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated zip, bad pickle, ... : name the file, not torch
            raise ValueError(
                f"{path} is not a readable checkpoint (truncated or corrupt: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "delete it (or pass --fresh) to start over"
            ) from exc
        if not isinstance(state, dict) or state.get("format") != self.checkpoint_format:
            raise ValueError(f"{path} is not a {self.checkpoint_format} file")
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{path}: checkpoint version {state.get('version')} unsupported "
                f"(this g2c reads {CHECKPOINT_VERSION})"
            )
        missing = [k for k in ("trainer", "model", "optimizer", "optimizer_name") if k not in state]
        if missing:
            raise ValueError(f"{path} lacks {missing}: a damaged checkpoint; delete it")
        if state["optimizer_name"] != self.optimizer_name:
            raise ValueError(
                f"checkpoint was trained with optimizer={state['optimizer_name']!r}, this "
                f"trainer uses {self.optimizer_name!r}; build the Trainer with the same optimizer"
            )
        if self.dist is not None:  # a single-process checkpoint into N ranks
            self._load_full_distributed(path, state, restore_rng)
            return state
        self.model.load_state_dict(state["model"])
        opt_state = state["optimizer"]
        if self.optimizer_name == "sgd":
            opt_state = dict(opt_state)
            opt_state["velocity"] = [
                None if v is None else v.to(self.device) for v in opt_state["velocity"]
            ]
        self.optimizer.load_state_dict(opt_state)
        self._restore_trainer(state["trainer"], restore_rng)
        return state

    def _restore_trainer(self, trainer: dict, restore_rng: bool) -> None:
        self.step = int(trainer["step"])
        self.elapsed_s = float(trainer.get("elapsed_s", 0.0))
        self.generator.set_state(trainer["generator_state"])
        if restore_rng:
            torch.set_rng_state(trainer["cpu_rng_state"])
            if "cuda_rng_states" in trainer and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(trainer["cuda_rng_states"])

    # -- distributed checkpoints (torch.distributed.checkpoint directories) --------------------
    def _param_names(self) -> list[str]:
        if self.dist is not None:
            return list(self.dist.names)
        return [n for n, _ in self.model.named_parameters()]

    def _tensor_state(self, velocity: list[bool] | None = None) -> dict[str, torch.Tensor]:
        """Flat name → tensor view (shards under FSDP) of the model and optimizer tensors: the
        DCP state. ``velocity`` (SGD, on load): which velocities to allocate first."""
        names = self._param_names()
        params = self.dist.tensor_state() if self.dist else dict(self.model.named_parameters())
        state = {f"model.{n}": t.detach() for n, t in params.items()}
        for n, t in self.model.named_tensors():
            if n not in params:
                state[f"model.{n}"] = t.detach()  # buffers: the same on every rank
        opt = self.optimizer
        if self.optimizer_name == "adamw":
            for i, n in enumerate(names):
                state[f"optim.m.{n}"], state[f"optim.v.{n}"] = opt.m[i], opt.v[i]
        else:
            for i, n in enumerate(names):
                if velocity is not None and velocity[i] and opt.velocity[i] is None:
                    opt.velocity[i] = torch.zeros_like(self.params[i].detach())
                if opt.velocity[i] is not None:
                    state[f"optim.velocity.{n}"] = opt.velocity[i]
        return state

    def _optimizer_scalars(self) -> dict:
        state = self.optimizer.state_dict()
        for key in ("m", "v"):
            state.pop(key, None)
        velocity = state.pop("velocity", None)
        if velocity is not None:
            state["velocity_present"] = [v is not None for v in velocity]
        return state

    def _trainer_meta(self, history: dict | None, extra: dict | None) -> dict:
        return {
            "format": self.checkpoint_format,
            "version": CHECKPOINT_VERSION,
            "trainer": {
                "step": self.step,
                "elapsed_s": float(self.elapsed_s),
                "config": self.config().to_dict(),
                "generator_state": self.generator.get_state(),
                "cpu_rng_state": torch.get_rng_state(),
            },
            "optimizer_name": self.optimizer_name,
            "optimizer_scalars": self._optimizer_scalars(),
            "distributed": {"world_size": self.dist.world_size, "strategy": self.dist.strategy},
            "history": history,
            "extra": extra,
        }

    def _save_distributed(self, path: str | Path, history: dict | None, extra: dict | None) -> Path:
        meta = self._trainer_meta(history, extra)
        return save_dcp(path, self._tensor_state(), meta, self.dist.context)

    def _replace_directory(self, path: Path, history: dict | None, extra: dict | None) -> Path:
        """Save a single-process checkpoint where a DCP directory is: the directory is moved
        aside, the file written atomically, then the directory removed."""
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        try:
            out = self.save_checkpoint(path, history=history, extra=extra)
        except BaseException:
            old.rename(path)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return out

    def _load_dcp(self, path: Path, restore_rng: bool) -> dict:
        """Load a DCP checkpoint directory into this loop (any world size, or one process)."""
        meta = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
        if not isinstance(meta, dict) or meta.get("format") != self.checkpoint_format:
            raise ValueError(f"{path} is not a {self.checkpoint_format} checkpoint")
        if meta.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{path}: checkpoint version {meta.get('version')} unsupported "
                f"(this g2c reads {CHECKPOINT_VERSION})"
            )
        if meta["optimizer_name"] != self.optimizer_name:
            raise ValueError(
                f"checkpoint was trained with optimizer={meta['optimizer_name']!r}, this "
                f"trainer uses {self.optimizer_name!r}; build the Trainer with the same optimizer"
            )
        scalars = dict(meta["optimizer_scalars"])
        velocity = scalars.pop("velocity_present", None)
        meta = load_dcp(path, self._tensor_state(velocity))
        opt = self.optimizer
        for key, value in scalars.items():
            if key == "betas":
                opt.beta1, opt.beta2 = value
            elif key == "param_steps":
                opt.param_steps = [int(v) for v in value]
            else:
                setattr(opt, key, value)
        self._restore_trainer(meta["trainer"], restore_rng)
        return meta

    def _load_full_distributed(self, path: Path, state: dict, restore_rng: bool) -> None:
        """A single-process ``torch.save`` checkpoint into the wrapped (maybe sharded) state:
        every rank reads the file and copies its own part (no communication)."""
        names, opt_state = self._param_names(), state["optimizer"]
        velocity = None
        if self.optimizer_name == "sgd":
            velocity = [v is not None for v in opt_state["velocity"]]
        own = self._tensor_state(velocity)
        full = {f"model.{n}": t for n, t in state["model"].items()}
        wanted = sorted(k for k in own if k.startswith("model."))
        if sorted(full) != wanted or any(full[k].shape != own[k].shape for k in wanted):
            raise ValueError(
                f"{path} holds weights of a different model configuration; use the "
                "configuration it was trained with, or --fresh to start over"
            )
        for i, n in enumerate(names):
            if velocity is None:
                full[f"optim.m.{n}"], full[f"optim.v.{n}"] = opt_state["m"][i], opt_state["v"][i]
            elif velocity[i]:
                full[f"optim.velocity.{n}"] = opt_state["velocity"][i]
        for key, dest in own.items():
            copy_full_into(dest, full[key])
        opt = self.optimizer
        if velocity is None:
            opt.lr, (opt.beta1, opt.beta2) = opt_state["lr"], opt_state["betas"]
            opt.eps, opt.weight_decay = opt_state["eps"], opt_state["weight_decay"]
            opt.step_count = int(opt_state["step_count"])
            opt.param_steps = [int(v) for v in opt_state["param_steps"]]
        else:
            opt.lr, opt.weight_decay = opt_state["lr"], opt_state["weight_decay"]
            opt.momentum = opt_state.get("momentum", 0.0)
        self._restore_trainer(state["trainer"], restore_rng)


class _Rank0Control(LoopControl):
    """A :class:`LoopControl` consulted on rank 0 only, its answers broadcast to every rank
    (a signal or a budget seen by one process stops all of them at the same step)."""

    def __init__(self, control: LoopControl, dist: Distributed) -> None:
        self.control, self.dist = control, dist

    def should_stop(self, step: int) -> bool:
        value = self.control.should_stop(step) if self.dist.context.is_main else None
        return bool(self.dist.broadcast_int(bool(value)))

    def plan_max_steps(self, step: int, max_steps: int, elapsed_s: float) -> int | None:
        if self.dist.context.is_main:
            planned = self.control.plan_max_steps(step, max_steps, elapsed_s)
            if planned is not None and (isinstance(planned, bool) or not isinstance(planned, int)):
                planned = -2  # not an int: every rank raises the loop's ValueError
        else:
            planned = None
        value = self.dist.broadcast_int(-1 if planned is None else planned)
        return None if value == -1 else value


def final_val_loss(history: dict) -> float:
    """The last recorded validation loss in ``history`` (NaN when none)."""
    return history["val_loss"][-1] if history.get("val_loss") else math.nan


__all__ = [
    "LoopConfig",
    "LoopControl",
    "TrainingLoop",
    "empty_training_history",
    "final_val_loss",
    "map_batch",
    "split_batch",
]
