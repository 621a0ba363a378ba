"""03B training — the optimizer, gradient clipping and learning-rate schedule used by every
later trainer: ``AdamW``, ``clip_grad_norm_``, ``cosine_with_warmup``."""

from g2c.training.adamw import AdamW
from g2c.training.clip import clip_grad_norm_
from g2c.training.schedule import cosine_with_warmup

__all__ = ["AdamW", "clip_grad_norm_", "cosine_with_warmup"]
