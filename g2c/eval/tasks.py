"""The multiple-choice benchmarks: a name → :class:`MultipleChoiceTask` table with lm-eval's prompts.

Each task turns the records of a ``g2c.data.benchmarks`` loader into
:class:`~g2c.eval.core.MultipleChoiceExample` s with lm-evaluation-harness's own prompt (its
``doc_to_text``, ``doc_to_choice``, ``target_delimiter`` " " and ``fewshot_delimiter`` "\\n\\n",
read from lm_eval 0.4's task YAMLs), so numbers compare with published ones:

=================  ==========================================================================
task               prompt (context) → choices (each continued as " " + choice)
=================  ==========================================================================
openbookqa         ``{question_stem}`` → the 4 choice texts
arc_easy           ``Question: {question}\\nAnswer:`` → the choice texts (3-5)
arc_challenge      same as arc_easy
hellaswag          ``{activity_label}: {ctx}`` (preprocessed) → the 4 endings
piqa               ``Question: {goal}\\nAnswer:`` → sol1, sol2
mmlu, mmlu_<s>     ``The following are multiple choice questions (with answers) about {subject}.
                   \\n\\n{question}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\nD. {c3}\\nAnswer:`` → A, B, C, D
truthfulqa_mc1     lm-eval's 6-shot QA preamble + ``\\n\\nQ: {question}\\nA:`` → best answer
                   first, then the incorrect answers (gold = 0)
truthfulqa_mc2     same prompt → correct answers then incorrect ones; metric ``mc2`` = softmax
                   mass on the correct ones
=================  ==========================================================================

n-shot (``shots=k``): k solved examples from the task's dev/validation split, each rendered as
``prompt + " " + gold choice``, joined by "\\n\\n" before the question (after MMLU's subject
line). MMLU takes the subject's first k dev questions (lm-eval's ``first_n`` sampler); the
others draw k at random with ``random.Random(seed)``. Tasks without a dev split (hellaswag,
piqa: the evaluated split is the only one here; TruthfulQA: its preamble is the shots) allow
only 0 shots. ``limit`` keeps the first N test questions (per subject for ``mmlu``), as
lm-eval's ``--limit``.

Differences from lm-eval's Hugging Face datasets (the files come from ``../shared/data``):
OpenBookQA and ARC few-shot examples come from the validation split (lm-eval: train, absent
here); HellaSwag's file is already preprocessed and lacks the ``ctx_a``/``ctx_b`` split, so
lm-eval's ``ctx_b.capitalize()`` cannot be redone (the first word after the last full stop of
the context may stay lower-case); TruthfulQA MC1/MC2 answers come from TruthfulQA.csv ("Best
Answer", "Correct Answers", "Incorrect Answers"), whereas lm-eval's ``truthful_qa/
multiple_choice`` uses the authors' mc_task.json, whose answer lists differ in places (MC1
there also has exactly one true answer; MC2 lists can be longer).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from g2c.data.benchmarks import (
    MMLU_SUBJECTS,
    load_arc,
    load_hellaswag,
    load_mmlu,
    load_openbookqa,
    load_piqa,
    load_truthfulqa_mc,
)
from g2c.eval.core import EvalReport, EvalResult, MultipleChoiceExample
from g2c.eval.scoring import ProgressCallback, ResultCallback, run_multiple_choice_eval

#: A record → (context text, choice texts, gold index, extra metadata).
DocToExample = Callable[[dict[str, Any]], tuple[str, list[str], int, dict[str, Any]]]

# -- prompt builders (lm-eval's doc_to_text / doc_to_choice / doc_to_target) --------------------


def _openbookqa(doc: dict) -> tuple[str, list[str], int, dict]:
    gold = [lab.strip() for lab in doc["labels"]].index(doc["answerKey"].strip())
    return doc["question_stem"], doc["choices"], gold, {"id": doc["id"]}


def _arc(doc: dict) -> tuple[str, list[str], int, dict]:
    gold = doc["labels"].index(doc["answerKey"])
    return f"Question: {doc['question']}\nAnswer:", doc["choices"], gold, {"id": doc["id"]}


def _hellaswag_preprocess(text: str) -> str:
    """lm-eval's hellaswag ``preprocess`` (idempotent on the already preprocessed file)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(doc: dict) -> tuple[str, list[str], int, dict]:
    choices = [_hellaswag_preprocess(e) for e in doc["choices"]]
    return _hellaswag_preprocess(doc["query"]), choices, doc["label"], {}


def _piqa(doc: dict) -> tuple[str, list[str], int, dict]:
    return f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]], doc["label"], {}


def _mmlu(doc: dict) -> tuple[str, list[str], int, dict]:
    c = doc["choices"]
    text = f"{doc['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"
    return text, ["A", "B", "C", "D"], doc["answer"], {"subject": doc["subject"]}


def _mmlu_description(doc: dict) -> str:
    subject = doc["subject"].replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


TRUTHFULQA_PREAMBLE = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)
"""lm-eval's TruthfulQA QA preamble (truthfulqa_mc1.yaml), six fixed question/answer pairs."""


def _truthfulqa_prompt(doc: dict) -> str:
    return f"{TRUTHFULQA_PREAMBLE}\n\nQ: {doc['question']}\nA:"


def _truthfulqa_mc1(doc: dict) -> tuple[str, list[str], int, dict]:
    return _truthfulqa_prompt(doc), [doc["best_answer"], *doc["incorrect_answers"]], 0, {}


def _truthfulqa_mc2(doc: dict) -> tuple[str, list[str], int, dict]:
    true, false = doc["correct_answers"] or [doc["best_answer"]], doc["incorrect_answers"]
    labels = [1] * len(true) + [0] * len(false)
    return _truthfulqa_prompt(doc), [*true, *false], 0, {"labels": labels}


# -- the task object -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MultipleChoiceTask:
    """One benchmark: where its records come from and how each becomes a prompt.

    Fields:
        name: registry name (``"openbookqa"``).
        description: one line for listings.
        prompt_format: the prompt template as lm-eval writes it, recorded in every report.
        load_test: () → the evaluated records; ``load_dev``: () → the few-shot pool, or None.
        to_example: record → (context, choice texts, gold index, metadata).
        primary_metric: the headline metric (``acc``, ``acc_norm`` or ``mc2``).
        datasets: the ``g2c.data`` registry names the files belong to.
        describe_doc: record → text put before the shots and the question (MMLU's subject
            line, lm-eval's ``description``), or None.
        fewshot: "random" (``random.Random(seed)``) or "first_n" (MMLU).
        group_by: record field that splits the task into subtasks (MMLU's ``subject``): ``limit``
            applies per group and shots come from the same group.
        target_delimiter, fewshot_delimiter: lm-eval's " " and "\\n\\n".
    """

    name: str
    description: str
    prompt_format: str
    load_test: Callable[[], list[dict[str, Any]]]
    load_dev: Callable[[], list[dict[str, Any]]] | None
    to_example: DocToExample
    primary_metric: str
    datasets: tuple[str, ...]
    describe_doc: Callable[[dict[str, Any]], str] | None = None
    fewshot: str = "random"
    group_by: str | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"

    def _check(self, limit: int | None, shots: int, pool: dict[Any, list[dict]]) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 (or None for all), got {limit}")
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
            raise ValueError(f"--shots must be an int >= 0, got {shots!r}")
        if shots == 0:
            return
        available = min((len(v) for v in pool.values()), default=0)
        if shots > available:
            where = "no dev split" if self.load_dev is None else f"{available} dev examples"
            raise ValueError(
                f"--shots {shots} is more than task {self.name!r} allows ({where}); "
                f"the maximum is --shots {available}"
            )

    def _shot_text(self, doc: dict[str, Any]) -> str:
        context, choices, gold, _ = self.to_example(doc)
        return context + self.target_delimiter + choices[gold]

    def examples(
        self, limit: int | None = None, seed: int = 1234, *, shots: int = 0
    ) -> list[MultipleChoiceExample]:
        """The task's questions as :class:`MultipleChoiceExample` s, in file order.

        ``limit``: the first N questions (per group for MMLU), None = all. ``shots``: solved
        dev examples put before each question (see the module docstring), drawn with ``seed``.
        ``shots`` above the dev examples available → ValueError naming ``--shots`` and the
        maximum; a malformed data file → ValueError naming file and line (from the loader).
        """
        key = self.group_by
        pool: dict[Any, list[dict]] = {}
        if shots and self.load_dev is not None:
            for doc in self.load_dev():
                pool.setdefault(doc.get(key) if key else None, []).append(doc)
        self._check(limit, shots, pool)
        docs, seen = [], {}
        for doc in self.load_test():
            group = doc.get(key) if key else None
            seen[group] = seen.get(group, 0) + 1
            if limit is None or seen[group] <= limit:
                docs.append(doc)
        rng = random.Random(seed)
        out = []
        for doc in docs:
            context, choices, gold, meta = self.to_example(doc)
            if shots:
                candidates = pool[doc.get(key) if key else None]
                chosen = (
                    candidates[:shots]
                    if self.fewshot == "first_n"
                    else rng.sample(candidates, shots)
                )
                shot_texts = [self._shot_text(d) for d in chosen]
                context = self.fewshot_delimiter.join([*shot_texts, context])
            if self.describe_doc is not None:
                context = self.describe_doc(doc) + context
            out.append(
                MultipleChoiceExample(
                    prompt=context,
                    choices=tuple(choices),
                    answer_idx=gold,
                    target_delimiter=self.target_delimiter,
                    metadata=meta,
                )
            )
        return out

    def describe(self, *, shots: int = 0, seed: int = 1234, limit: int | None = None) -> dict:
        """What a report records about the protocol: prompt format, delimiters, shots, seed."""
        return {
            "task": self.name,
            "prompt_format": self.prompt_format,
            "target_delimiter": self.target_delimiter,
            "fewshot_delimiter": self.fewshot_delimiter,
            "shots": shots,
            "fewshot_sampler": self.fewshot if shots else None,
            "seed": seed,
            "limit": limit,
            "primary_metric": self.primary_metric,
            "datasets": list(self.datasets),
            "protocol": "lm-evaluation-harness 0.4 loglikelihood multiple choice",
        }


# -- the registry --------------------------------------------------------------------------------


def _mmlu_docs(split: str, subjects: tuple[str, ...]) -> Callable[[], list[dict]]:
    return lambda: [doc for s in subjects for doc in load_mmlu(s, split)]


_MMLU_FORMAT = (
    "The following are multiple choice questions (with answers) about {subject}.\n\n"
    "{question}\nA. {choice0}\nB. {choice1}\nC. {choice2}\nD. {choice3}\nAnswer:"
    " -> ' A' | ' B' | ' C' | ' D'"
)


def _mmlu_task(name: str, subjects: tuple[str, ...], description: str) -> MultipleChoiceTask:
    return MultipleChoiceTask(
        name=name,
        description=description,
        prompt_format=_MMLU_FORMAT,
        load_test=_mmlu_docs("test", subjects),
        load_dev=_mmlu_docs("dev", subjects),
        to_example=_mmlu,
        primary_metric="acc",
        datasets=("mmlu",),
        describe_doc=_mmlu_description,
        fewshot="first_n",
        group_by="subject",
    )


_TQA_FORMAT = "<6-shot QA preamble>\n\nQ: {question}\nA:"

TASKS: dict[str, MultipleChoiceTask] = {
    t.name: t
    for t in (
        MultipleChoiceTask(
            name="openbookqa",
            description="OpenBookQA test, 500 elementary science questions, 4 choices",
            prompt_format="{question_stem} -> ' {choice}'",
            load_test=lambda: load_openbookqa("test"),
            load_dev=lambda: load_openbookqa("validation"),
            to_example=_openbookqa,
            primary_metric="acc_norm",
            datasets=("openbookqa", "openbookqa-additional"),
        ),
        MultipleChoiceTask(
            name="arc_easy",
            description="ARC-Easy test, 2,376 grade-school science questions",
            prompt_format="Question: {question}\nAnswer: -> ' {choice}'",
            load_test=lambda: load_arc("easy", "test"),
            load_dev=lambda: load_arc("easy", "validation"),
            to_example=_arc,
            primary_metric="acc_norm",
            datasets=("arc",),
        ),
        MultipleChoiceTask(
            name="arc_challenge",
            description="ARC-Challenge test, 1,172 harder grade-school science questions",
            prompt_format="Question: {question}\nAnswer: -> ' {choice}'",
            load_test=lambda: load_arc("challenge", "test"),
            load_dev=lambda: load_arc("challenge", "validation"),
            to_example=_arc,
            primary_metric="acc_norm",
            datasets=("arc",),
        ),
        MultipleChoiceTask(
            name="hellaswag",
            description="HellaSwag validation, 10,042 sentence completions, 4 endings",
            prompt_format="{activity_label}: {ctx_a} {Ctx_b} -> ' {ending}'",
            load_test=load_hellaswag,
            load_dev=None,
            to_example=_hellaswag,
            primary_metric="acc_norm",
            datasets=("hellaswag",),
        ),
        MultipleChoiceTask(
            name="piqa",
            description="PIQA dev, 1,838 physical-commonsense goals, 2 solutions",
            prompt_format="Question: {goal}\nAnswer: -> ' {sol1}' | ' {sol2}'",
            load_test=load_piqa,
            load_dev=None,
            to_example=_piqa,
            primary_metric="acc_norm",
            datasets=("piqa",),
        ),
        _mmlu_task("mmlu", MMLU_SUBJECTS, "MMLU test, 14,042 questions over 57 subjects"),
        *(
            _mmlu_task(f"mmlu_{s}", (s,), f"MMLU test, subject {s.replace('_', ' ')}")
            for s in MMLU_SUBJECTS
        ),
        MultipleChoiceTask(
            name="truthfulqa_mc1",
            description="TruthfulQA MC1, 817 questions: the best answer vs the false ones",
            prompt_format=_TQA_FORMAT + " -> ' {best answer}' | ' {incorrect answer}' ...",
            load_test=load_truthfulqa_mc,
            load_dev=None,
            to_example=_truthfulqa_mc1,
            primary_metric="acc",
            datasets=("truthfulqa",),
        ),
        MultipleChoiceTask(
            name="truthfulqa_mc2",
            description="TruthfulQA MC2, 817 questions: probability mass on the true answers",
            prompt_format=_TQA_FORMAT + " -> ' {correct answer}' ... | ' {incorrect answer}' ...",
            load_test=load_truthfulqa_mc,
            load_dev=None,
            to_example=_truthfulqa_mc2,
            primary_metric="mc2",
            datasets=("truthfulqa",),
        ),
    )
}
"""Task name → :class:`MultipleChoiceTask` (``mmlu`` = all 57 subjects; ``mmlu_<subject>``
one of them)."""


def task_names() -> list[str]:
    """The registered task names, MMLU subjects summarised last."""
    return [n for n in TASKS if not n.startswith("mmlu_")] + ["mmlu_<subject>"]


def get_task(name: str) -> MultipleChoiceTask:
    """The task called ``name``; unknown → ValueError listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {type(name).__name__}")
    if name not in TASKS:
        raise ValueError(
            f"unknown task {name!r}; known multiple-choice tasks: {', '.join(task_names())} "
            f"(subjects: {', '.join(MMLU_SUBJECTS[:3])}, ...)"
        )
    return TASKS[name]


def evaluate_task(
    model: Any,
    tokenizer: Any,
    name: str,
    *,
    limit: int | None = None,
    shots: int = 0,
    seed: int = 1234,
    batched: bool = True,
    length_normalize: bool | str = False,
    completed: Mapping[int, EvalResult] | None = None,
    on_result: ResultCallback | None = None,
    progress: ProgressCallback | None = None,
) -> EvalReport:
    """Run task ``name`` on ``model`` → :class:`~g2c.eval.core.EvalReport` whose ``metadata`` is
    :meth:`MultipleChoiceTask.describe` (prompt format, shots, seed, ...) and whose
    ``metrics`` hold ``acc``, ``acc_norm``, ``acc_bytes`` (``mc2`` for truthfulqa_mc2),
    ``mean_confidence`` and ``ece``. Every result's metadata gains the prompt. Arguments as in
    :meth:`MultipleChoiceTask.examples` and
    :func:`~g2c.eval.scoring.run_multiple_choice_eval`."""
    task = get_task(name)
    examples = task.examples(limit, seed, shots=shots)

    def record(i: int, result: EvalResult) -> None:
        result.metadata.setdefault("prompt", examples[i].prompt)
        if on_result is not None:
            on_result(i, result)

    return run_multiple_choice_eval(
        model, tokenizer, examples, task_name=name, length_normalize=length_normalize,
        batched=batched, metadata=task.describe(shots=shots, seed=seed, limit=limit),
        completed=completed, on_result=record, progress=progress,
    )  # fmt: skip
