"""03B training — the optimizer, clipping, schedule and the one training loop every later
trainer specialises.

- ``AdamW``, ``clip_grad_norm_``, ``cosine_with_warmup``: the pieces.
- ``TrainingLoop`` / ``LoopConfig`` / ``LoopControl``: the generic loop over a batch source and
  a loss function (accumulation, clipping, schedule, autocast, logging with tokens/s and MFU,
  atomic checkpoints, exact resume, cooperative stop and re-plan).
- ``mean_batch_loss``, ``stream_loss``, ``bits_per_byte``, ``perplexity_from_loss``,
  ``sequence_perplexity``: the one home of evaluation.
- ``device_peak_flops``, ``model_flops_per_token``: MFU accounting.
- ``pin_malloc_mmap_threshold``: CPU training returns freed activation memory to the OS.
- ``init_distributed``, ``cleanup_distributed``, ``wrap_model``, ``DistContext``,
  ``Distributed``: data-parallel training (DDP / FSDP2, gloo / NCCL) under torchrun —
  ``TrainingLoop.distribute(strategy)`` uses them (``g2c.training.distributed``).
- ``zero_memory``, ``activation_memory``, ``memory_plan_table``: the ZeRO memory calculator
  (``g2c.training.memory_plan``).
"""

from g2c.training.adamw import AdamW, one_dim_params
from g2c.training.clip import clip_grad_norm_
from g2c.training.distributed import (
    DistContext,
    Distributed,
    cleanup_distributed,
    init_distributed,
    wrap_model,
)
from g2c.training.evaluation import (
    bits_per_byte,
    mean_batch_loss,
    perplexity_from_loss,
    sequence_perplexity,
    stream_loss,
)
from g2c.training.flops import device_peak_flops, measure_matmul_flops, model_flops_per_token
from g2c.training.loop import (
    LoopConfig,
    LoopControl,
    TrainingLoop,
    empty_training_history,
    final_val_loss,
)
from g2c.training.memory import pin_malloc_mmap_threshold, release_free_heap
from g2c.training.memory_plan import activation_memory, memory_plan_table, zero_memory
from g2c.training.schedule import cosine_with_warmup

__all__ = [
    "AdamW",
    "one_dim_params",
    "clip_grad_norm_",
    "cosine_with_warmup",
    "LoopConfig",
    "LoopControl",
    "TrainingLoop",
    "empty_training_history",
    "final_val_loss",
    "mean_batch_loss",
    "stream_loss",
    "bits_per_byte",
    "perplexity_from_loss",
    "sequence_perplexity",
    "device_peak_flops",
    "measure_matmul_flops",
    "model_flops_per_token",
    "pin_malloc_mmap_threshold",
    "release_free_heap",
    "DistContext",
    "Distributed",
    "init_distributed",
    "cleanup_distributed",
    "wrap_model",
    "zero_memory",
    "activation_memory",
    "memory_plan_table",
]
