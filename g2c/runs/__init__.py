"""Runs: one module per stage on a shared skeleton, presets, reports and the model registry.

What the ``g2c`` commands do, as library code (callbacks, no printing):

- :mod:`~g2c.runs.stage` — the skeleton every stage shares: validation before any write, the
  run directory, resume, timed parts (``stages.json``), manifest with parent, report table.
- :mod:`~g2c.runs.pretrain` — ``run`` / ``run_pretraining`` (``g2c train``, ``g2c speedrun``):
  tokenizer → pretraining → evaluation (val loss, bits per byte) → samples → report,
  resumable after an interruption; ``BudgetPlan`` re-plans a time-budgeted run.
- :mod:`~g2c.runs.sft`, :mod:`~g2c.runs.dpo` — ``g2c sft`` / ``g2c dpo``: post-training of a
  g2c run or SmolLM2 (``SFTRunConfig`` / ``DPORunConfig``, presets, resumable, LoRA option).
- :mod:`~g2c.runs.mnist`, :mod:`~g2c.runs.lm`, :mod:`~g2c.runs.vectors` — the stages of
  ``g2c mnist``, ``g2c lm train|compare`` and ``g2c vectors train``.
- :mod:`~g2c.runs.config` — ``RunConfig`` (data / model / train / run sections), the
  ``PRESETS`` table, TOML/JSON config files, overrides.
- :mod:`~g2c.runs.report` — plots, ``report.md`` and the code-size table.
- :mod:`~g2c.runs.registry` — ``find_models`` / ``resolve_model`` / ``load_run``: models named
  ``<family>-<size>`` (``ShakespeareLM-0.8M``).
- :mod:`~g2c.runs.experiment` — ``train_for``: the small loop the Phase III experiments share.
- :mod:`~g2c.runs.heads` — per-layer attention maps and head-type scores (the inspector).
"""

from g2c.runs import dpo, sft
from g2c.runs.config import (
    PRESETS,
    DataConfig,
    RunConfig,
    RunSettings,
    apply_overrides,
    get_preset,
    load_config_file,
)
from g2c.runs.dpo import DPORunConfig
from g2c.runs.pretrain import BudgetPlan, RunResult, run_pretraining
from g2c.runs.registry import find_models, format_size, load_run, model_name, resolve_model
from g2c.runs.report import code_size_table, write_report
from g2c.runs.sft import SFTRunConfig, StageResult
from g2c.runs.stage import Stage
from g2c.training import bits_per_byte
from g2c.training import stream_loss as evaluate_stream  # the former name (g2c.training's now)

__all__ = [
    "PRESETS",
    "DataConfig",
    "RunConfig",
    "RunSettings",
    "apply_overrides",
    "get_preset",
    "load_config_file",
    "BudgetPlan",
    "RunResult",
    "Stage",
    "SFTRunConfig",
    "DPORunConfig",
    "StageResult",
    "sft",
    "dpo",
    "run_pretraining",
    "evaluate_stream",
    "bits_per_byte",
    "find_models",
    "format_size",
    "load_run",
    "model_name",
    "resolve_model",
    "code_size_table",
    "write_report",
]
