"""`g2c sft` — supervised fine-tuning of a base model into a chat model, as one stage.

    g2c sft --preset sft-smoke --base runs/tiny                  # seconds
    g2c sft --preset sft-speedrun                                # on $G2C_HOME/speedrun
    g2c sft --preset sft-smollm2-lora --max-steps 30             # LoRA r=16 on SmolLM2
    g2c sft --config my_sft.toml --mixture tasks=800,gsm8k=100   # flags override the file
    g2c sft --preset sft-speedrun --mask false --out runs/nomask # the mask ablation
    g2c sft --preset sft-speedrun --out runs/sft --resume        # continue after Ctrl-C

Every field of ``g2c.runs.sft.SFTRunConfig`` has a flag (``g2c sft --preset X --help`` shows
that preset's values); ``--show-config`` prints the resolved config. The run directory gets
the weights (``g2c chat DIR`` talks to them), ``manifest.json`` (parent = the base),
``metrics.jsonl``, ``samples.jsonl`` and ``report.md``.
"""

from __future__ import annotations

import argparse

from g2c.cli._run import register_stage
from g2c.runs import sft


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `sft` sub-command."""
    register_stage(
        sub, "sft", sft, summary="supervised fine-tuning into a chat model",
        description="Supervised fine-tuning: data → baseline → training → evaluation (held-out "
        "assistant-token loss, task accuracy) → save, in one run directory. Precedence: "
        "--preset < --config < flags. `g2c sft --preset NAME --help` shows that preset's values.",
    )  # fmt: skip
