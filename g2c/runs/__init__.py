"""Runs: presets, run directories, the pretraining pipeline, reports and the model registry.

What ``g2c train`` and ``g2c speedrun`` do, as library code (callbacks, no printing):

- :mod:`~g2c.runs.config` — ``RunConfig`` (data / model / train / run sections), the
  ``PRESETS`` table, TOML/JSON config files, overrides.
- :mod:`~g2c.runs.pipeline` — ``run_pretraining``: tokenizer → pretraining → evaluation
  (val loss, bits per byte) → samples → report, resumable after an interruption.
- :mod:`~g2c.runs.report` — plots, ``report.md`` and the code-size table.
- :mod:`~g2c.runs.registry` — ``find_models`` / ``resolve_model`` / ``load_run``: models named
  ``<family>-<size>`` (``ShakespeareLM-0.8M``).
- :mod:`~g2c.runs.experiment` — ``train_for``: the small loop the Phase III experiments share.
- :mod:`~g2c.runs.heads` — per-layer attention maps and head-type scores (the inspector).
"""

from g2c.runs.config import (
    PRESETS,
    DataConfig,
    RunConfig,
    RunSettings,
    apply_overrides,
    get_preset,
    load_config_file,
)
from g2c.runs.pipeline import (
    RunResult,
    bits_per_byte,
    evaluate_stream,
    run_pretraining,
)
from g2c.runs.registry import find_models, format_size, load_run, model_name, resolve_model
from g2c.runs.report import code_size_table, write_report

__all__ = [
    "PRESETS",
    "DataConfig",
    "RunConfig",
    "RunSettings",
    "apply_overrides",
    "get_preset",
    "load_config_file",
    "RunResult",
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
