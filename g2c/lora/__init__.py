"""13B lora — low-rank adapters (Hu et al. 2021): train r·(in + out) numbers per layer
instead of in·out.

``LoRALinear(base, rank, alpha=rank)`` wraps a course ``Linear`` or a ``torch.nn.Linear``:
y = base(x) + (x A B)·alpha/r with A (in, r) random and B (r, out) zero, so training starts
from the base model exactly; ``merge()`` folds A·B into the weight for free inference.
``inject_lora`` puts adapters on the layers a model names (``["q_proj", "v_proj"]``),
``mark_only_lora_trainable`` freezes the rest, ``lora_state_dict`` / ``save_lora`` keep only
the adapters, ``disable_lora`` gives back the base model (DPO's reference) without a copy.
"""

from g2c.lora.adapters import (
    ADAPTER_MANIFEST,
    ADAPTER_WEIGHTS,
    base_fingerprint,
    load_lora,
    read_lora_manifest,
    save_lora,
)
from g2c.lora.layer import LoRALinear, TorchLoRALinear
from g2c.lora.model import (
    count_parameters,
    disable_lora,
    inject_lora,
    linear_layers,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unload_lora,
    unmerge_lora,
)

__all__ = [
    "LoRALinear",
    "TorchLoRALinear",
    "inject_lora",
    "mark_only_lora_trainable",
    "count_parameters",
    "lora_state_dict",
    "load_lora_state_dict",
    "disable_lora",
    "merge_lora",
    "unmerge_lora",
    "unload_lora",
    "lora_layers",
    "linear_layers",
    "save_lora",
    "load_lora",
    "read_lora_manifest",
    "base_fingerprint",
    "ADAPTER_WEIGHTS",
    "ADAPTER_MANIFEST",
]
