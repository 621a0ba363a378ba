"""Model-graded pairwise judging: AlpacaEval-style win rate against reference outputs.

Data: AlpacaEval (Li et al. 2023, https://github.com/tatsu-lab/alpaca_eval), registered in
:mod:`g2c.data` as ``alpaca-eval`` — 805 instructions with GPT-4's answers
(``gpt4_model_outputs.json``, the reference) and a GPT-4-Turbo judge's preferences between
GPT-4-1106 and text-davinci-003 (``gpt4_1106_vs_davinci003_annotations.json``). Licence
**CC BY-NC 4.0**: evaluation only, never training data, no commercial use.

The judge is any generate function ``judge(prompt, *, max_new_tokens, stop) -> str |
Generation`` (:func:`g2c.eval.generation.model_generator` over a g2c model, ``backend_generator``
over any backend — the model under test judging itself by default in ``g2c eval``). It is
shown :data:`JUDGE_PROMPT` and must answer ``[[A]]`` or ``[[B]]``.

Parsing (:func:`parse_verdict`): the answer's ``[[A]]`` / ``[[B]]`` markers (spaces inside the
brackets allowed, case-sensitive); exactly one distinct letter → that letter; none, both
letters, or anything else → invalid (None), recorded as such.

Position swap (:func:`judge_pair`): every pair is judged twice — first with the model's output
as A and the reference as B, then swapped. The outcome:

- **win**: both orders prefer the model's output (``A`` then ``B``);
- **loss**: both orders prefer the reference (``B`` then ``A``);
- **tie**: the two verdicts disagree about the *output* — the judge picked the same
  *position* both times (``A, A`` or ``B, B``): a position-biased verdict, cancelled;
- **invalid**: at least one of the two answers could not be parsed.

Win rate (:func:`win_rate_summary`) = (wins + ½ · (ties + invalid)) / n — a tie or an invalid
pair counts half, like AlpacaEval's ties, so n is every pair judged; ``invalid_rate`` (share
of single judge answers that were unparseable) says how much of that is the judge failing.
``position_bias_rate`` = share of pairs with two valid verdicts in which the judge chose the
same position both times; ``first_position_rate`` = share of valid verdicts that said ``A``
(0.5 for an unbiased judge).

Judge agreement (:func:`judge_agreement`): the same swapped judging of AlpacaEval's annotated
pairs (``output_1`` in the model's role, ``output_2`` in the reference's) against the
annotation's ``preference`` (a weighted score in [1, 2]: < 1.5 → output_1 preferred, > 1.5 →
output_2, exactly 1.5 → skipped). ``agreement`` = share of judged pairs where the judge's
win/loss equals the annotation (a tie or invalid pair disagrees).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from g2c.data import dataset_file
from g2c.eval.core import EvalResult, GenerationExample
from g2c.eval.generation import GenerateFn, GenerationTask, as_generation, check_limit

#: The judge's prompt (adapted from Zheng et al. 2023's MT-Bench pairwise prompt, with the
#: tie option removed as in AlpacaEval). Fields: instruction, output_a, output_b.
JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by "
    "two AI assistants to the user instruction displayed below. Choose the assistant that "
    "follows the instruction better and answers it more helpfully, accurately and harmlessly. "
    "Do not let the order in which the responses were presented, their length, or the names "
    'of the assistants influence your decision. Answer with "[[A]]" if assistant A is better '
    'or "[[B]]" if assistant B is better, and nothing else.\n\n'
    "[Instruction]\n{instruction}\n\n"
    "[The Start of Assistant A's Answer]\n{output_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{output_b}\n[The End of Assistant B's Answer]"
)
#: Tokens the judge may use for its verdict.
JUDGE_MAX_TOKENS = 16
#: Each output is cut to this many characters in the judge prompt (small judges' contexts).
MAX_OUTPUT_CHARS = 2000
OUTPUTS_FILE = "gpt4_model_outputs.json"
ANNOTATIONS_FILE = "gpt4_1106_vs_davinci003_annotations.json"
LICENCE = "CC BY-NC 4.0 (AlpacaEval): evaluation only, non-commercial"

_VERDICT = re.compile(r"\[\[\s*([AB])\s*\]\]")
OUTCOMES = ("win", "loss", "tie", "invalid")


def parse_verdict(text: str) -> str | None:
    """``"A"`` or ``"B"`` when ``text`` holds ``[[A]]`` / ``[[B]]`` markers of exactly one
    letter (repeats allowed), else None (no marker, both letters: invalid). Non-str →
    TypeError."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    letters = set(_VERDICT.findall(text))
    return letters.pop() if len(letters) == 1 else None


def judge_prompt(instruction: str, output_a: str, output_b: str,
                 max_output_chars: int = MAX_OUTPUT_CHARS) -> str:  # fmt: skip
    """:data:`JUDGE_PROMPT` filled in, each output cut to ``max_output_chars`` characters."""
    return JUDGE_PROMPT.format(instruction=instruction, output_a=output_a[:max_output_chars],
                               output_b=output_b[:max_output_chars])  # fmt: skip


def pair_outcome(verdict_model_first: str | None, verdict_model_second: str | None) -> str:
    """The outcome of a swapped pair (see the module docstring): ``verdict_model_first`` is
    the judge's letter when the model's output was A, ``verdict_model_second`` when it was B.
    → "win" | "loss" | "tie" | "invalid"."""
    if verdict_model_first is None or verdict_model_second is None:
        return "invalid"
    first_model = verdict_model_first == "A"
    second_model = verdict_model_second == "B"
    if first_model and second_model:
        return "win"
    if not first_model and not second_model:
        return "loss"
    return "tie"


@dataclasses.dataclass(frozen=True)
class PairJudgement:
    """One swapped pair: ``outcome`` ("win" | "loss" | "tie" | "invalid", for the model's
    output), ``verdicts`` (letter or None, model first then model second) and ``answers``
    (the judge's two raw texts)."""

    outcome: str
    verdicts: tuple[str | None, str | None]
    answers: tuple[str, str]

    @property
    def score(self) -> float:
        """1 for a win, 0 for a loss, ½ for a tie or an invalid pair."""
        return {"win": 1.0, "loss": 0.0}.get(self.outcome, 0.5)


def judge_pair(
    judge: GenerateFn,
    instruction: str,
    model_output: str,
    reference_output: str,
    *,
    max_new_tokens: int = JUDGE_MAX_TOKENS,
    max_output_chars: int = MAX_OUTPUT_CHARS,
) -> PairJudgement:
    """Judge ``model_output`` against ``reference_output`` twice, positions swapped (the
    model's output as A first, then as B) → :class:`PairJudgement`. Non-str inputs →
    TypeError; ``judge`` not callable → TypeError."""
    if not callable(judge):
        raise TypeError(f"judge must be a generate function, got {type(judge).__name__}")
    for name, v in (("instruction", instruction), ("model_output", model_output),
                    ("reference_output", reference_output)):  # fmt: skip
        if not isinstance(v, str):
            raise TypeError(f"{name} must be a str, got {type(v).__name__}")
    answers = []
    for a, b in ((model_output, reference_output), (reference_output, model_output)):
        prompt = judge_prompt(instruction, a, b, max_output_chars)
        answers.append(as_generation(judge(prompt, max_new_tokens=max_new_tokens, stop=())).text)
    verdicts = (parse_verdict(answers[0]), parse_verdict(answers[1]))
    return PairJudgement(pair_outcome(*verdicts), verdicts, (answers[0], answers[1]))


def win_rate_summary(judgements: Sequence[PairJudgement]) -> dict[str, float]:
    """Counts and rates over swapped pairs: ``n``, ``wins``, ``losses``, ``ties``,
    ``invalid``, ``win_rate`` = (wins + ½(ties + invalid)) / n, ``invalid_rate`` (share of
    single answers unparseable), ``position_bias_rate`` (share of fully valid pairs judged by
    position: A, A or B, B; NaN without one), ``first_position_rate`` (share of valid answers
    saying A; NaN without one). Empty → ValueError."""
    if not judgements:
        raise ValueError("judgements is empty: judge at least one pair")
    n = len(judgements)
    counts = {o: sum(j.outcome == o for j in judgements) for o in OUTCOMES}
    verdicts = [v for j in judgements for v in j.verdicts]
    valid = [v for v in verdicts if v is not None]
    both = [j for j in judgements if None not in j.verdicts]
    same = sum(j.verdicts[0] == j.verdicts[1] for j in both)
    nan = float("nan")
    return {
        "n": float(n), "wins": float(counts["win"]), "losses": float(counts["loss"]),
        "ties": float(counts["tie"]), "invalid": float(counts["invalid"]),
        "win_rate": sum(j.score for j in judgements) / n,
        "invalid_rate": (len(verdicts) - len(valid)) / len(verdicts),
        "position_bias_rate": same / len(both) if both else nan,
        "first_position_rate": sum(v == "A" for v in valid) / len(valid) if valid else nan,
    }  # fmt: skip


# -- data ---------------------------------------------------------------------------------------
def _read_json_list(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON list of records")
    for i, r in enumerate(data):
        missing = [f for f in fields if not isinstance(r, dict) or f not in r]
        if missing:
            raise ValueError(f"{path}: record {i} lacks {missing}")
    return data


def load_alpaca_eval(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """AlpacaEval's 805 instructions with GPT-4's reference outputs → dicts ``instruction``,
    ``output``, ``dataset`` (licence :data:`LICENCE`). ``path``: the file, its directory or a
    data root (default: the registry's resolution). Missing → FileNotFoundError; malformed →
    ValueError naming the file and the record."""
    p = Path(path) if path is not None else None
    if p is not None and p.is_file():
        file = p
    else:
        file = dataset_file("alpaca-eval", OUTPUTS_FILE, p)
    rows = _read_json_list(file, ("instruction", "output"))
    return [{"instruction": r["instruction"], "output": r["output"],
             "dataset": r.get("dataset", "")} for r in rows]  # fmt: skip


def load_annotations(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """AlpacaEval's judge annotations (GPT-4-1106 vs text-davinci-003, judged by GPT-4-Turbo)
    → dicts ``instruction``, ``output_1``, ``output_2``, ``preference`` (float in [1, 2])."""
    p = Path(path) if path is not None else None
    file = p if p is not None and p.is_file() else dataset_file("alpaca-eval", ANNOTATIONS_FILE, p)
    rows = _read_json_list(file, ("instruction", "output_1", "output_2", "preference"))
    return [{k: r[k] for k in ("instruction", "output_1", "output_2", "preference")} for r in rows]


def annotation_label(preference: float | None) -> int | None:
    """1 (output_1 preferred) for preference < 1.5, 2 for > 1.5, None for 1.5 / missing."""
    if preference is None or not math.isfinite(float(preference)) or preference == 1.5:
        return None
    return 1 if preference < 1.5 else 2


def judge_agreement(
    judge: GenerateFn,
    annotations: str | os.PathLike | Sequence[dict[str, Any]] | None = None,
    limit: int | None = None,
    *,
    max_new_tokens: int = JUDGE_MAX_TOKENS,
) -> dict[str, Any]:
    """How often ``judge`` (swapped, :func:`judge_pair`) agrees with AlpacaEval's annotations.

    ``annotations``: records with ``instruction``, ``output_1``, ``output_2``, ``preference``,
    or a path to such a JSON file, or None (the registered file). ``limit``: the first N
    decisive annotations (preference ≠ 1.5). Returns ``{"agreement", "n", "decisive_rate"
    (share of pairs the judge won or lost), **win_rate_summary, "records": [...]}``.
    Bad limit → ValueError.
    """
    check_limit(limit)
    if annotations is None or isinstance(annotations, (str, os.PathLike)):
        annotations = load_annotations(annotations)
    rows = [(a, annotation_label(a["preference"])) for a in annotations]
    rows = [(a, lab) for a, lab in rows if lab is not None][:limit]
    if not rows:
        raise ValueError("annotations holds no decisive preference (all 1.5 or missing)")
    judged, records, hits = [], [], 0
    for a, label in rows:
        j = judge_pair(judge, a["instruction"], a["output_1"], a["output_2"],
                       max_new_tokens=max_new_tokens)  # fmt: skip
        mine = {"win": 1, "loss": 2}.get(j.outcome)
        hits += mine == label
        judged.append(j)
        records.append({"instruction": a["instruction"], "label": label, "judge": mine,
                        "outcome": j.outcome, "verdicts": list(j.verdicts)})  # fmt: skip
    summary = win_rate_summary(judged)
    decisive = summary["wins"] + summary["losses"]
    return {**summary, "agreement": hits / len(rows), "n": len(rows),
            "decisive_rate": decisive / len(rows), "records": records}  # fmt: skip


# -- the task -----------------------------------------------------------------------------------
class AlpacaEvalTask(GenerationTask):
    """``alpaca_eval``: the model answers each AlpacaEval instruction; ``judge`` (a generate
    function; None → the model under test judges itself) compares the answer with GPT-4's
    reference, positions swapped. ``correct`` = a win; metrics :func:`win_rate_summary`
    (gate metric ``win_rate``; ``position_bias_rate`` and ``invalid_rate`` lower-is-better).
    Licence CC BY-NC 4.0: evaluation only."""

    name = "alpaca_eval"
    max_new_tokens = 256
    stop = ()
    metric_names: tuple[str, ...] = ("win_rate", "position_bias_rate", "invalid_rate")
    lower_is_better: tuple[str, ...] = ("position_bias_rate", "invalid_rate")

    def __init__(
        self,
        judge: GenerateFn | None = None,
        *,
        path: str | os.PathLike | None = None,
        judge_max_new_tokens: int = JUDGE_MAX_TOKENS,
        judge_name: str | None = None,
    ) -> None:
        self.judge = judge
        self.path = path
        self.judge_max_new_tokens = judge_max_new_tokens
        self.judge_name = judge_name

    def prompt_format(self, shots: int = 0) -> dict[str, Any]:
        """The instruction as the user's message; the judge prompt and the swap rule."""
        return {"doc_to_text": "{instruction}", "reference": "gpt4 (AlpacaEval model_outputs)",
                "judge": self.judge_name or "the evaluated model itself",
                "judge_prompt": JUDGE_PROMPT, "swap": "both orders must agree, else a tie",
                "licence": LICENCE}  # fmt: skip

    def examples(
        self, limit: int | None = None, seed: int = 0, shots: int = 0
    ) -> list[GenerationExample]:
        """The first ``limit`` instructions, GPT-4's output as the one reference."""
        check_limit(limit)
        rows = load_alpaca_eval(self.path)[:limit]
        return [GenerationExample(r["instruction"], (r["output"],),
                                  {"id": f"alpaca_eval-{i}", "dataset": r["dataset"]})
                for i, r in enumerate(rows)]  # fmt: skip

    def judge_answer(self, judge: GenerateFn, example: GenerationExample, text: str) -> EvalResult:
        """Judge ``text`` against the example's reference (swapped) → EvalResult(correct = a
        win, prediction = text, metadata = outcome, verdicts, judge_answers)."""
        j = judge_pair(judge, example.prompt, text, example.references[0],
                       max_new_tokens=self.judge_max_new_tokens)  # fmt: skip
        meta = {"outcome": j.outcome, "verdicts": list(j.verdicts),
                "judge_answers": list(j.answers)}  # fmt: skip
        return EvalResult(j.outcome == "win", text, None, meta)

    def score(self, example: GenerationExample, text: str) -> EvalResult:
        """Judge with ``self.judge`` (set one first: ValueError otherwise)."""
        if self.judge is None:
            raise ValueError("AlpacaEvalTask.judge is None: give a judge generate function")
        return self.judge_answer(self.judge, example, text)

    def evaluate(
        self, generate: GenerateFn, example: GenerationExample, max_new_tokens: int | None = None
    ) -> EvalResult:
        """Answer with ``generate``, judge with ``self.judge`` (``generate`` when None)."""
        judge = self.judge if self.judge is not None else generate
        budget = max_new_tokens or self.max_new_tokens
        out = as_generation(generate(example.prompt, max_new_tokens=budget, stop=self.stop))
        r = self.judge_answer(judge, example, out.text)
        meta = {**r.metadata, "finish_reason": out.finish_reason, "n_tokens": out.n_tokens,
                "hit_max_tokens": out.hit_max_tokens}  # fmt: skip
        return EvalResult(r.correct, r.prediction, None, meta)

    def metrics(self, results: Sequence[EvalResult]) -> dict[str, float]:
        """:func:`win_rate_summary` of the recorded judgements, plus ``hit_max_tokens``."""
        js = [PairJudgement(r.metadata["outcome"], tuple(r.metadata["verdicts"]),
                            tuple(r.metadata.get("judge_answers", ("", ""))))
              for r in results]  # fmt: skip
        capped = sum(bool(r.metadata.get("hit_max_tokens")) for r in results)
        return {**win_rate_summary(js), "hit_max_tokens": capped / max(len(results), 1)}


__all__ = [
    "ANNOTATIONS_FILE",
    "AlpacaEvalTask",
    "JUDGE_MAX_TOKENS",
    "JUDGE_PROMPT",
    "LICENCE",
    "OUTPUTS_FILE",
    "PairJudgement",
    "annotation_label",
    "judge_agreement",
    "judge_pair",
    "judge_prompt",
    "load_alpaca_eval",
    "load_annotations",
    "pair_outcome",
    "parse_verdict",
    "win_rate_summary",
]
