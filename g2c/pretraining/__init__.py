"""09B–10 pretraining — next-token data, the LM loss and the training loop.

- ``split_token_stream`` / ``get_lm_batch``: contiguous train/val split and random (x, y)
  windows (B, T) with y = x shifted by one.
- ``lm_cross_entropy``: mean next-token cross-entropy over all B·T positions.
- ``Trainer`` / ``TrainConfig``: AdamW or SGD, warmup + cosine lr, clipping, gradient
  accumulation, bf16 autocast, tokens/s and MFU in every log event, atomic checkpoints and
  exact resume. ``device_peak_flops`` for MFU.
"""

from g2c.pretraining.data import get_lm_batch, split_token_stream
from g2c.pretraining.flops import device_peak_flops, model_flops_per_token
from g2c.pretraining.loss import lm_cross_entropy
from g2c.pretraining.trainer import (
    TrainConfig,
    Trainer,
    empty_training_history,
    final_val_loss,
)

__all__ = [
    "split_token_stream",
    "get_lm_batch",
    "lm_cross_entropy",
    "empty_training_history",
    "TrainConfig",
    "Trainer",
    "device_peak_flops",
    "model_flops_per_token",
    "final_val_loss",
]
