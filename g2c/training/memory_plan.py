"""How much memory training needs per device: the ZeRO model-state formulas plus activations.

Model states (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models", §3 and Figure 1). Ψ parameters trained with Adam(W) on N_d data-parallel
devices; per parameter, ``w`` bytes of weights, ``g`` bytes of gradients and K bytes of
optimizer states:

    mixed precision (bf16/fp16 compute, the paper's case): w = 2, g = 2, K = 12
        (fp32 master weights 4 + momentum 4 + variance 4)
    fp32 (g2c's default, also bf16 ``torch.autocast``, which keeps fp32 weights): w = 4,
        g = 4, K = 8 (momentum + variance)

    stage            per-device bytes                          the paper's name
    ddp   (baseline) (w + g + K)·Ψ                             baseline
    zero1            (w + g)·Ψ + K·Ψ/N_d                        P_os
    zero2            w·Ψ + (g + K)·Ψ/N_d                        P_os+g
    zero3 (= FSDP)   (w + g + K)·Ψ/N_d                          P_os+g+p

The paper's worked example (Ψ = 7.5 B, N_d = 64, K = 12): 120 GB, 31.4 GB, 16.6 GB, 1.9 GB
(GB = 10⁹ bytes) — ``zero_memory(7.5e9, 64, mixed_precision=True)`` gives exactly these
(tested).

Activations (an estimate; Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models", §4.1): a GPT block keeps about s·b·h·(34 + 5·a·s/h) bytes at 16 bits
(s context, b batch per device, h width, a heads) — twice that in fp32 — and with activation
checkpointing only its input, 2·s·b·h bytes (16-bit), plus one block's full activations while
it is recomputed; the loss head adds the logits, about 2·s·b·V values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

STAGES = ("ddp", "zero1", "zero2", "zero3")
PAPER_NAMES = {"ddp": "baseline", "zero1": "P_os", "zero2": "P_os+g", "zero3": "P_os+g+p"}


@dataclasses.dataclass(frozen=True)
class StateBytes:
    """Per-device bytes of the model states under one ZeRO stage: ``weights``, ``grads``,
    ``optimizer`` (floats, bytes), ``stage`` and ``world_size``; ``total`` is their sum and
    ``per_param`` the total divided by the parameter count."""

    stage: str
    world_size: int
    params: float
    weights: float
    grads: float
    optimizer: float

    @property
    def total(self) -> float:
        """weights + grads + optimizer, bytes per device."""
        return self.weights + self.grads + self.optimizer

    @property
    def per_param(self) -> float:
        """Bytes per parameter per device (total / params)."""
        return self.total / self.params


def precision_bytes(mixed_precision: bool) -> tuple[int, int, int]:
    """(w, g, K) bytes per parameter: (2, 2, 12) mixed precision, (4, 4, 8) fp32."""
    return (2, 2, 12) if mixed_precision else (4, 4, 8)


def zero_memory(
    num_params: float, world_size: int, *, mixed_precision: bool = False, stage: str | None = None
) -> list[StateBytes]:
    """Model-state bytes per device for every ZeRO stage (or just ``stage``).

    ``num_params`` Ψ (> 0), ``world_size`` N_d (integer >= 1), ``mixed_precision`` (the paper's
    fp16/bf16 Adam, K = 12; False = fp32 weights and grads, K = 8). Returns
    :class:`StateBytes` in ``STAGES`` order. Bad input → ValueError naming the argument.
    """
    if (
        isinstance(num_params, bool)
        or not isinstance(num_params, (int, float))
        or not (math.isfinite(num_params) and num_params > 0)
    ):
        raise ValueError(f"num_params must be a positive number, got {num_params!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage must be one of {list(STAGES)} or None, got {stage!r}")
    w, g, k = precision_bytes(mixed_precision)
    n, p = world_size, float(num_params)
    table = {
        "ddp": (w * p, g * p, k * p),
        "zero1": (w * p, g * p, k * p / n),
        "zero2": (w * p, g * p / n, k * p / n),
        "zero3": (w * p / n, g * p / n, k * p / n),
    }
    stages = STAGES if stage is None else (stage,)
    return [StateBytes(s, n, p, *table[s]) for s in stages]


def activation_memory(
    *, num_layers: int, embedding_dim: int, num_heads: int, vocab_size: int,
    context_length: int, batch_size: int, checkpoint_every: int = 0, bytes_per_value: int = 4,
) -> float:  # fmt: skip
    """Estimated activation bytes per device of one training micro-batch (see the module
    docstring): ``checkpoint_every`` 0 = no checkpointing, k >= 1 = every k-th block
    recomputed (1 = all); ``bytes_per_value`` 4 (fp32) or 2 (bf16). Non-positive sizes →
    ValueError naming the argument."""
    sizes = {"num_layers": num_layers, "embedding_dim": embedding_dim, "num_heads": num_heads,
             "vocab_size": vocab_size, "context_length": context_length,
             "batch_size": batch_size}  # fmt: skip
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int)
        or (checkpoint_every < 0)
    ):
        raise ValueError(f"checkpoint_every must be an integer >= 0, got {checkpoint_every!r}")
    if bytes_per_value not in (2, 4):
        raise ValueError(f"bytes_per_value must be 2 or 4, got {bytes_per_value!r}")
    s, b, h, a = context_length, batch_size, embedding_dim, num_heads
    scale = bytes_per_value / 2  # the formula counts 16-bit activations
    full = s * b * h * (34 + 5 * a * s / h) * scale  # one block, everything kept
    kept = 2 * s * b * h * scale  # one block, only its input
    if checkpoint_every:
        recomputed = len(range(0, num_layers, checkpoint_every))
        blocks = recomputed * kept + (num_layers - recomputed) * full + full
    else:
        blocks = num_layers * full
    head = 2 * s * b * vocab_size * bytes_per_value  # logits and their gradient
    return blocks + head


def format_bytes(n: float) -> str:
    """Bytes as text in decimal units (the paper's GB = 10⁹): "1.88 GB", "512.0 MB"."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}" if unit in ("TB", "GB") else f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def memory_plan_table(
    num_params: float, world_size: int, *, mixed_precision: bool = False,
    activations: float | None = None,
) -> str:  # fmt: skip
    """The plan as a plain-text table: one row per stage (ddp, zero1, zero2, zero3 = FSDP) with
    weights, grads, optimizer, bytes/param and total per device (plus ``activations`` bytes
    when given, the same for every stage)."""
    rows = zero_memory(num_params, world_size, mixed_precision=mixed_precision)
    prec = "bf16 mixed (w=2, g=2, K=12)" if mixed_precision else "fp32 (w=4, g=4, K=8)"
    lines = [
        f"memory plan: {num_params:,.0f} parameters, {world_size} device(s), {prec}",
        f"{'stage':<14}{'weights':>11}{'grads':>11}{'optimizer':>11}{'B/param':>9}"
        f"{'states':>11}" + (f"{'+ activ.':>12}" if activations is not None else ""),
    ]
    for r in rows:
        name = f"{r.stage} ({PAPER_NAMES[r.stage]})" if r.stage != "zero3" else "zero3 (FSDP)"
        line = (
            f"{name:<14}{format_bytes(r.weights):>11}{format_bytes(r.grads):>11}"
            f"{format_bytes(r.optimizer):>11}{r.per_param:>9.2f}{format_bytes(r.total):>11}"
        )
        if activations is not None:
            line += f"{format_bytes(r.total + activations):>12}"
        lines.append(line)
    if activations is not None:
        lines.append(f"activations (estimate, per device, one micro-batch): "
                     f"{format_bytes(activations)}")  # fmt: skip
    return "\n".join(lines)


def plan_for_model(
    model_config: Any, *, num_params: float, world_size: int, batch_size: int,
    context_length: int, checkpoint_every: int = 0, mixed_precision: bool = False,
    activation_bytes: int = 4,
) -> str:  # fmt: skip
    """:func:`memory_plan_table` with the activation estimate for a transformer config (any
    object with ``num_layers``, ``embedding_dim``, ``num_heads``, ``vocab_size``);
    ``batch_size`` is the global micro-batch (each device holds batch_size / world_size),
    ``mixed_precision`` picks the states' accounting (:func:`precision_bytes`) and
    ``activation_bytes`` (4 fp32, 2 under bf16 autocast) the activations'."""
    per_device = max(1, batch_size // world_size)
    acts = activation_memory(
        num_layers=model_config.num_layers, embedding_dim=model_config.embedding_dim,
        num_heads=model_config.num_heads, vocab_size=model_config.vocab_size,
        context_length=context_length, batch_size=per_device, checkpoint_every=checkpoint_every,
        bytes_per_value=activation_bytes,
    )  # fmt: skip
    return memory_plan_table(
        num_params, world_size, mixed_precision=mixed_precision, activations=acts
    )


__all__ = [
    "PAPER_NAMES",
    "STAGES",
    "StateBytes",
    "activation_memory",
    "format_bytes",
    "memory_plan_table",
    "plan_for_model",
    "precision_bytes",
    "zero_memory",
]
