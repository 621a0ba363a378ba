"""14 DPO — preference tuning without a reward model (Direct Preference Optimization).

- ``PreferenceExample`` / ``pad_and_collate_pref``: (prompt, chosen, rejected) token ids →
  padded (x, y, mask) per side, masks on response tokens only, truncation counted;
  ``encode_preference_pairs``: text pairs (``g2c.data.preferences``) → ids via a chat template.
- ``sequence_logprob`` / ``response_logprobs`` / ``pair_logprobs``: summed response
  log-probabilities; the latter two project onto the vocabulary only at response positions and
  run chosen + rejected as one forward.
- ``dpo_loss``: sigmoid (DPO), ipo (IPO), hinge (SLiC) losses and the reward metrics.
- ``DPOTrainer`` / ``DPOConfig``: the DPO case of ``g2c.training.TrainingLoop`` with a frozen
  reference model, ``ref_model="disable_lora"`` (LoRA policies), or ``ref_logprobs`` from
  ``precompute_ref_logprobs`` (no reference in memory).

Sources: Rafailov et al. 2023 (DPO); Azar et al. 2023 (IPO); Zhao et al. 2023 (SLiC);
TRL's ``DPOTrainer``.
"""

from g2c.dpo.data import (
    PreferenceBatch,
    PreferenceExample,
    as_preference_examples,
    count_truncated,
    encode_preference_pairs,
    pad_and_collate_pref,
)
from g2c.dpo.logprobs import (
    has_hidden_path,
    pair_logprobs,
    precompute_ref_logprobs,
    response_logprobs,
)
from g2c.dpo.loss import LOSS_TYPES, dpo_loss, sequence_logprob
from g2c.dpo.trainer import DISABLE_LORA, DPOConfig, DPOTrainer

__all__ = [
    "DISABLE_LORA",
    "LOSS_TYPES",
    "DPOConfig",
    "DPOTrainer",
    "PreferenceBatch",
    "PreferenceExample",
    "as_preference_examples",
    "count_truncated",
    "dpo_loss",
    "encode_preference_pairs",
    "has_hidden_path",
    "pad_and_collate_pref",
    "pair_logprobs",
    "precompute_ref_logprobs",
    "response_logprobs",
    "sequence_logprob",
]
