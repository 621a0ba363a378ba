"""`g2c dpo` — preference tuning (Direct Preference Optimization) of a chat model, as one stage.

    g2c dpo --preset dpo-smoke --base runs/sft-smoke             # seconds
    g2c dpo --preset dpo-speedrun --beta 0.3                     # on $G2C_HOME/sft-speedrun
    g2c dpo --preset dpo-smollm2-lora --reference disable_lora   # LoRA policy, no 2nd model
    g2c dpo --preset dpo-speedrun --reference precomputed        # reference log-probs once
    g2c dpo --preset dpo-speedrun --out runs/dpo --resume        # continue after Ctrl-C

Every field of ``g2c.runs.dpo.DPORunConfig`` has a flag (``--help`` with a preset shows its
values); ``--show-config`` prints the resolved config. The report gives held-out preference
accuracy, reward margin, chosen / rejected rewards and task accuracy before / after.
"""

from __future__ import annotations

import argparse

from g2c.cli._run import register_stage
from g2c.runs import dpo


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `dpo` sub-command."""
    register_stage(
        sub, "dpo", dpo, summary="preference tuning (DPO) of a chat model",
        description="DPO: preference pairs (on-policy task pairs, hh-rlhf, TruthfulQA) → "
        "baseline → training against a frozen reference → evaluation (held-out preference "
        "accuracy, reward margin, task accuracy) → save. Precedence: --preset < --config < flags.",
    )  # fmt: skip
