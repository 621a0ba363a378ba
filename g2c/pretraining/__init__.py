"""09B–10 pretraining — next-token data, the LM loss and the LM case of the training loop.

- ``split_token_stream`` / ``get_lm_batch``: contiguous train/val split and random (x, y)
  windows (B, T) with y = x shifted by one, from a 1-D id tensor or a source object;
  ``TokenStream``: a memory-mapped token-id file usable wherever ids are (same batches);
  ``ShardedTokenStream``: the shards of a prepared corpus as one such stream.
- ``lm_cross_entropy``: mean next-token cross-entropy over all B·T positions.
- ``Trainer`` / ``TrainConfig``: ``g2c.training.TrainingLoop`` with LM windows and the LM
  loss — AdamW or SGD, warmup + cosine lr, clipping, gradient accumulation, bf16 autocast,
  tokens/s and MFU in every log event, atomic checkpoints, exact resume, cooperative stop.
  ``device_peak_flops`` / ``model_flops_per_token`` for MFU.
"""

from g2c.pretraining.data import (
    ShardedTokenStream,
    TokenStream,
    get_lm_batch,
    split_token_stream,
)
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
    "TokenStream",
    "ShardedTokenStream",
    "lm_cross_entropy",
    "empty_training_history",
    "TrainConfig",
    "Trainer",
    "device_peak_flops",
    "model_flops_per_token",
    "final_val_loss",
]
