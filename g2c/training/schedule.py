"""Learning-rate schedule: linear warmup then cosine decay (Loshchilov & Hutter 2017; GPT-2/3).

step < warmup_steps:               lr = max_lr · (step + 1) / warmup_steps
warmup_steps ≤ step ≤ max_steps:   lr = min_lr + ½(1 + cos(π·progress))·(max_lr − min_lr),
                                   progress = (step − warmup_steps) / (max_steps − warmup_steps)
step > max_steps:                  lr = min_lr
"""

from __future__ import annotations

import math


def cosine_with_warmup(
    step: int, warmup_steps: int, max_steps: int, max_lr: float, min_lr: float = 0.0
) -> float:
    """Learning rate (float) at ``step`` (0-based) for warmup + cosine decay.

    ``warmup_steps = 0`` allowed (cosine from step 0). Raises ValueError for step < 0,
    warmup_steps < 0, max_steps < warmup_steps, or min_lr > max_lr / negative rates.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if max_steps < warmup_steps:
        raise ValueError(f"max_steps ({max_steps}) must be >= warmup_steps ({warmup_steps})")
    if max_lr < 0 or min_lr < 0 or min_lr > max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
