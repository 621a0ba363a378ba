"""Evaluation records, answer matchers and calibration (course module 15).

The records: a :class:`MultipleChoiceExample` (a prompt and its candidate continuations), a
:class:`GenerationExample` (a prompt and its reference answers), one :class:`EvalResult` per
scored example and an :class:`EvalReport` per task (accuracy, mean confidence, expected
calibration error, the per-example results).

Matchers ``(prediction, references) -> bool`` decide whether generated text answers correctly:
``exact_match`` (after stripping surrounding whitespace), ``normalized_match`` (SQuAD's answer
normalisation: lower case, no punctuation, no articles, single spaces — Rajpurkar et al. 2016),
``contains_match`` (a normalised reference occurs in the normalised prediction) and
``numeric_match`` (the last number of the prediction equals a reference's number within
``tolerance``; "1,234", "$5", "-3.5" are read as numbers).

Calibration (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the confidences are
split into ``n_bins`` equal-width bins over [0, 1]; ``reliability_curve`` gives each bin's mean
confidence and accuracy, ``expected_calibration_error`` their gap weighted by the bin's share of
examples: ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|. For a multiple-choice question the
confidence is the softmax over the choices' summed log-likelihoods, taken at the predicted
choice (lm-evaluation-harness's ``prob_norm``): the probability mass the model puts on its own
answer when it must pick one of the offered choices.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MultipleChoiceExample:
    """One multiple-choice question scored by log-likelihood.

    Fields:
        prompt: the context every choice continues (few-shot examples included), non-empty.
        choices: the answer texts, at least 2, as lm-eval's ``doc_to_choice`` gives them
            (no leading delimiter): ``("Paris", "Lyon")``.
        answer_idx: index of the correct choice in ``choices``.
        target_delimiter: put between prompt and choice (lm-eval's ``target_delimiter``,
            default ``" "``): the scored continuation is ``target_delimiter + choice``
            (:attr:`continuations`); ``acc_norm`` divides by ``len(choice)`` without it.
        metadata: task-specific extras (``id``, MMLU ``subject``, TruthfulQA-MC2 ``labels`` =
            one 0/1 per choice). Not part of API.md's positional fields; defaults to empty.

    Bad input (empty prompt, fewer than 2 choices, a non-string choice, answer_idx out of
    range) → ValueError/TypeError naming the field.
    """

    prompt: str
    choices: tuple[str, ...]
    answer_idx: int
    target_delimiter: str = " "
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def continuations(self) -> tuple[str, ...]:
        """The strings scored after the prompt: ``target_delimiter + choice`` for each choice."""
        return tuple(self.target_delimiter + c for c in self.choices)

    def __post_init__(self) -> None:
        if not isinstance(self.target_delimiter, str):
            raise TypeError(
                f"target_delimiter must be a str, got {type(self.target_delimiter).__name__}"
            )
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError(f"prompt must be a non-empty str, got {self.prompt!r}")
        if isinstance(self.choices, str) or not isinstance(self.choices, Sequence):
            raise TypeError(f"choices must be a sequence of str, got {type(self.choices).__name__}")
        object.__setattr__(self, "choices", tuple(self.choices))
        if len(self.choices) < 2:
            raise ValueError(f"choices must hold at least 2 continuations, got {self.choices!r}")
        for i, c in enumerate(self.choices):
            if not isinstance(c, str) or not c:
                raise TypeError(f"choices[{i}] must be a non-empty str, got {c!r}")
        if isinstance(self.answer_idx, bool) or not isinstance(self.answer_idx, int):
            raise TypeError(f"answer_idx must be an int, got {type(self.answer_idx).__name__}")
        if not 0 <= self.answer_idx < len(self.choices):
            raise ValueError(
                f"answer_idx must be in [0, {len(self.choices)}) for {len(self.choices)} "
                f"choices, got {self.answer_idx}"
            )


@dataclass(frozen=True)
class GenerationExample:
    """One prompt whose generated answer is checked against ``references`` by a matcher.

    Fields: ``prompt`` (str), ``references`` (tuple of str, at least one; a single str is
    accepted and wrapped), ``metadata`` (task extras, default empty). Bad input → ValueError /
    TypeError naming the field.
    """

    prompt: str
    references: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError(f"prompt must be a non-empty str, got {self.prompt!r}")
        refs = (self.references,) if isinstance(self.references, str) else self.references
        if not isinstance(refs, Sequence) or not refs:
            raise ValueError(f"references must be one or more str, got {self.references!r}")
        for i, r in enumerate(refs):
            if not isinstance(r, str):
                raise TypeError(f"references[{i}] must be a str, got {type(r).__name__}")
        object.__setattr__(self, "references", tuple(refs))


@dataclass(frozen=True)
class EvalResult:
    """The outcome of one example.

    Fields: ``correct`` (bool), ``prediction`` (the chosen index for multiple choice, the
    generated text for generation), ``confidence`` (probability in [0, 1] of the prediction, or
    None where the task has none), ``metadata`` (per-example details: log-likelihoods, token
    counts, the prompt, the stop reason ...).
    """

    correct: bool
    prediction: Any
    confidence: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalReport:
    """A task's aggregate: ``task_name``, ``n`` examples, ``accuracy`` (mean of ``correct``),
    ``mean_confidence`` and ``ece`` (None without confidences), the ``results``; plus
    ``metrics`` (every metric of the task by name: ``acc``, ``acc_norm``, ``acc_bytes``, ``mc2``
    ...) and ``metadata`` (prompt format, shots, seed, data files) — both default empty."""

    task_name: str
    n: int
    accuracy: float
    mean_confidence: float | None
    ece: float | None
    results: list[EvalResult]
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


# -- matchers --------------------------------------------------------------------------------


def _references(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs or not all(isinstance(r, str) for r in refs):
        raise TypeError(f"references must be a str or a non-empty sequence of str, got {refs!r}")
    return refs


def _prediction(prediction: str) -> str:
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a str, got {type(prediction).__name__}")
    return prediction


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, punctuation removed, articles (a, an, the)
    removed, whitespace collapsed to single spaces and stripped."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(prediction: str, references: str | Sequence[str]) -> bool:
    """True when ``prediction`` equals one of ``references`` after stripping surrounding
    whitespace (case and punctuation count). Non-str input → TypeError."""
    p = _prediction(prediction).strip()
    return any(p == r.strip() for r in _references(references))


def normalized_match(prediction: str, references: str | Sequence[str]) -> bool:
    """True when the normalised prediction equals a normalised reference (see
    :func:`normalize_answer`): "The Eiffel Tower." matches "eiffel tower"."""
    p = normalize_answer(_prediction(prediction))
    return any(p == normalize_answer(r) for r in _references(references))


def contains_match(prediction: str, references: str | Sequence[str]) -> bool:
    """True when a normalised, non-empty reference occurs in the normalised prediction as
    whole words ("It is Paris, France." contains "paris"; "Parisian" does not)."""
    p = f" {normalize_answer(_prediction(prediction))} "
    refs = (normalize_answer(r) for r in _references(references))
    return any(r and f" {r} " in p for r in refs)


_NUMBER = re.compile(r"(?:-\$?|\$-?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?:-\$?|\$-?)?\.\d+")


def extract_last_number(text: str) -> float | None:
    """The last number written in ``text`` as a float, or None when there is none.

    Thousands separators ("1,234" → 1234), a currency sign ("$5", "-$5", "$-5"), a minus sign
    and decimals ("3.25", ".5") are understood; a trailing full stop is not a decimal point
    ("It is 42." → 42.0). "1,2,3" (no thousands groups) reads as the numbers 1, 2, 3 → 3.0.
    """
    matches = _NUMBER.findall(_prediction(text))
    if not matches:
        return None
    token = matches[-1].replace(",", "").replace("$", "")
    return float(token)


def numeric_match(
    prediction: str, references: str | Sequence[str], tolerance: float = 1e-6
) -> bool:
    """True when the last number in ``prediction`` is within ``tolerance`` (absolute) of the
    last number of one of ``references`` ("#### 1,234" and "The answer is $1234." match
    "1234"). No number in the prediction → False; a reference without a number is skipped.
    Negative or non-finite tolerance → ValueError."""
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    value = extract_last_number(prediction)
    if value is None:
        return False
    for ref in _references(references):
        target = extract_last_number(ref)
        if target is not None and abs(value - target) <= tolerance:
            return True
    return False


#: Matcher name → function, for configs and the CLI.
MATCHERS = {
    "exact_match": exact_match,
    "normalized_match": normalized_match,
    "contains_match": contains_match,
    "numeric_match": numeric_match,
}


# -- calibration -----------------------------------------------------------------------------


def _calibration_inputs(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int
) -> tuple[list[float], list[bool]]:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    conf = [float(c) for c in confidences]
    corr = [bool(c) for c in correct]
    if len(conf) != len(corr):
        raise ValueError(
            f"confidences and correct must have the same length, got {len(conf)} and {len(corr)}"
        )
    if not conf:
        raise ValueError("confidences must not be empty (no examples to calibrate)")
    bad = [c for c in conf if not (0.0 <= c <= 1.0)]
    if bad:
        raise ValueError(f"confidences must lie in [0, 1], got {bad[0]!r}")
    return conf, corr


def _bin_index(confidence: float, n_bins: int) -> int:
    """Bins are [k/n, (k+1)/n) for k < n-1 and [(n-1)/n, 1] for the last one."""
    return min(int(confidence * n_bins), n_bins - 1)


def reliability_curve(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10
) -> list[dict[str, Any]]:
    """The reliability diagram's data: one dict per bin, in order.

    Keys: ``lower``, ``upper`` (bin edges: [lower, upper), the last bin closed at 1),
    ``count`` (examples in the bin), ``confidence`` (their mean confidence) and ``accuracy``
    (their fraction correct) — both None for an empty bin. A perfectly calibrated model has
    ``accuracy == confidence`` in every bin.

    Raises ValueError for lengths that differ, no examples, a confidence outside [0, 1] or
    n_bins < 1.
    """
    conf, corr = _calibration_inputs(confidences, correct, n_bins)
    sums = [[0, 0.0, 0] for _ in range(n_bins)]  # count, Σ confidence, Σ correct
    for c, ok in zip(conf, corr):
        b = sums[_bin_index(c, n_bins)]
        b[0] += 1
        b[1] += c
        b[2] += int(ok)
    return [
        {
            "lower": k / n_bins,
            "upper": (k + 1) / n_bins,
            "count": count,
            "confidence": s_conf / count if count else None,
            "accuracy": s_ok / count if count else None,
        }
        for k, (count, s_conf, s_ok) in enumerate(sums)
    ]


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10
) -> float:
    """ECE = Σ_b (|B_b| / n) · |accuracy(B_b) − confidence(B_b)| over ``n_bins`` equal-width
    bins (Guo et al. 2017); 0 = perfectly calibrated, at most 1. Bins as in
    :func:`reliability_curve`; same errors."""
    bins = reliability_curve(confidences, correct, n_bins)
    n = sum(b["count"] for b in bins)
    return sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
