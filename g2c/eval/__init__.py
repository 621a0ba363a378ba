"""15 eval — measuring a language model: multiple choice by log-likelihood, matchers, calibration.

- :mod:`~g2c.eval.core`: the records (``MultipleChoiceExample``, ``GenerationExample``,
  ``EvalResult``, ``EvalReport``), matchers (``exact_match``, ``normalized_match``,
  ``contains_match``, ``numeric_match``) and calibration (``expected_calibration_error``,
  ``reliability_curve``).
- :mod:`~g2c.eval.scoring`: ``continuation_logprob``, ``score_multiple_choice`` (acc / acc_norm
  as lm-evaluation-harness defines them; a batched KV-cache fast path beside the per-choice
  reference), ``run_multiple_choice_eval``, ``score_generation_example``, ``run_generation_eval``.
- :mod:`~g2c.eval.tasks`: the benchmark registry (OpenBookQA, ARC, HellaSwag, PIQA, MMLU,
  TruthfulQA MC1/MC2) with lm-eval's prompts, n-shot with a fixed seed.
- :mod:`~g2c.eval.generation`: generation tasks scored by matchers (GSM8K, the SFT task family)
  over any ``generate`` callable (a g2c model via ``model_generator``, any backend via
  ``backend_generator``); :mod:`~g2c.eval.ifeval`: verifiable-instruction checkers;
  :mod:`~g2c.eval.humaneval`: HumanEval pass@k run in :mod:`~g2c.eval.sandbox`
  (``run_in_sandbox``: the one code-execution sandbox, also used by the tools).
- :mod:`~g2c.eval.gate`: thresholds from a TOML file; :mod:`~g2c.eval.plots`: reliability diagrams.
- :mod:`~g2c.eval.perplexity`: perplexity and bits per byte on held-out text (the ``perplexity``
  task, over :mod:`g2c.training.evaluation`).
- :mod:`~g2c.eval.judge`: AlpacaEval-style pairwise judging, position-swapped (``alpaca_eval``),
  ``judge_agreement`` against AlpacaEval's annotations.
- :mod:`~g2c.eval.safety`: refusal vs over-refusal (``refusal``), extractable memorization,
  canary exposure (the "secret sharer").
- :mod:`~g2c.eval.failures`: the failure-mode catalogue (fixed prompts, automatic labels, table).
"""

from g2c.eval.core import (
    MATCHERS,
    EvalReport,
    EvalResult,
    GenerationExample,
    MultipleChoiceExample,
    contains_match,
    exact_match,
    expected_calibration_error,
    extract_last_number,
    normalize_answer,
    normalized_match,
    numeric_match,
    reliability_curve,
)
from g2c.eval.failures import (
    FAILURE_PROMPTS,
    LABELS,
    failure_table,
    is_repetition_loop,
    label_answer,
    run_catalogue,
)
from g2c.eval.gate import GateFailure, check_gate, load_gate
from g2c.eval.generation import (
    Generation,
    GenerationTask,
    GSM8KTask,
    SFTTasksTask,
    backend_generator,
    model_generator,
)
from g2c.eval.humaneval import HumanEvalTask, pass_at_k
from g2c.eval.ifeval import IFEvalTask
from g2c.eval.judge import (
    JUDGE_PROMPT,
    AlpacaEvalTask,
    PairJudgement,
    judge_agreement,
    judge_pair,
    parse_verdict,
    win_rate_summary,
)
from g2c.eval.perplexity import PerplexityTask, heldout_text, score_text
from g2c.eval.plots import reliability_diagram
from g2c.eval.safety import (
    BENIGN_LOOKALIKES,
    REFUSAL_PHRASES,
    Exposure,
    RefusalTask,
    canary_exposure,
    exposure_from_rank,
    extraction_rate,
    harmful_prompts,
    is_refusal,
    memorization_report,
)
from g2c.eval.sandbox import SandboxResult, run_in_sandbox
from g2c.eval.scoring import (
    choice_logprobs,
    choice_logprobs_batch,
    continuation_logprob,
    encode_pair,
    run_generation_eval,
    run_multiple_choice_eval,
    score_generation_example,
    score_multiple_choice,
)
from g2c.eval.tasks import TASKS, MultipleChoiceTask, evaluate_task, get_task, task_names

__all__ = [
    "AlpacaEvalTask",
    "BENIGN_LOOKALIKES",
    "Exposure",
    "FAILURE_PROMPTS",
    "JUDGE_PROMPT",
    "LABELS",
    "PairJudgement",
    "PerplexityTask",
    "REFUSAL_PHRASES",
    "RefusalTask",
    "canary_exposure",
    "exposure_from_rank",
    "extraction_rate",
    "failure_table",
    "harmful_prompts",
    "heldout_text",
    "is_refusal",
    "is_repetition_loop",
    "judge_agreement",
    "judge_pair",
    "label_answer",
    "memorization_report",
    "parse_verdict",
    "run_catalogue",
    "score_text",
    "win_rate_summary",
    "GSM8KTask",
    "GateFailure",
    "Generation",
    "GenerationTask",
    "HumanEvalTask",
    "IFEvalTask",
    "SFTTasksTask",
    "SandboxResult",
    "backend_generator",
    "check_gate",
    "load_gate",
    "model_generator",
    "pass_at_k",
    "reliability_diagram",
    "run_in_sandbox",
    "MATCHERS",
    "TASKS",
    "EvalReport",
    "EvalResult",
    "GenerationExample",
    "MultipleChoiceExample",
    "MultipleChoiceTask",
    "choice_logprobs",
    "choice_logprobs_batch",
    "contains_match",
    "continuation_logprob",
    "encode_pair",
    "evaluate_task",
    "exact_match",
    "expected_calibration_error",
    "extract_last_number",
    "get_task",
    "normalize_answer",
    "normalized_match",
    "numeric_match",
    "reliability_curve",
    "run_generation_eval",
    "run_multiple_choice_eval",
    "score_generation_example",
    "score_multiple_choice",
    "task_names",
]
