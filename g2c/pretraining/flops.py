"""Throughput accounting for pretraining: re-exports of ``g2c.training.flops`` (the loop's
MFU accounting lives one module lower, where every trainer can use it)."""

from g2c.training.flops import (
    GPU_PEAK_BF16_FLOPS,
    device_peak_flops,
    measure_matmul_flops,
    model_flops_per_token,
)

__all__ = [
    "GPU_PEAK_BF16_FLOPS",
    "device_peak_flops",
    "measure_matmul_flops",
    "model_flops_per_token",
]
