"""Generation tasks: a prompt → generated text → a programmatic verdict.

A task never loads or runs a model itself (``g2c.eval`` sits below ``g2c.inference``): it is
given a *generate function* ::

    generate(prompt: str, *, max_new_tokens: int, stop: Sequence[str]) -> str | Generation

that answers one prompt (for a chat model: the prompt as the user's message, rendered with the
model's chat template; for a base model: the text continued). :func:`model_generator` builds
one from a g2c model (greedy decoding with :mod:`g2c.sampling`), :func:`backend_generator`
from any duck-typed backend with ``complete(prompt, max_new_tokens=..., temperature=...)``.
Returning a :class:`Generation` tells the task *why* the text ended: a generation that never
stops is cut at ``max_new_tokens`` and recorded as such (``metadata["hit_max_tokens"]``).

Tasks here (each with ``name``, ``examples(limit, seed, shots)``, ``prompt_format()``,
``score(example, text) -> EvalResult`` and :meth:`GenerationTask.evaluate`):

- :class:`GSM8KTask` — GSM8K test, n-shot from the train split with a fixed seed,
  lm-evaluation-harness's prompt (``"Question: …\\nAnswer:"``, shots joined by a blank line,
  stop at ``"Question:"``); the answer is the number after ``"####"``, else the last number
  (lm-eval's strict / flexible extraction), scored with ``numeric_match``.
- :class:`SFTTasksTask` (``g2c_tasks``) — the held-out problems of the generated task family
  (:func:`g2c.sft.generate_tasks`, ``split="heldout"``) scored exactly by
  :func:`g2c.sft.score_answer`, the scorer the SFT stage uses.

IFEval-style instruction following lives in :mod:`g2c.eval.ifeval`, HumanEval in
:mod:`g2c.eval.humaneval`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from g2c.data import load_gsm8k
from g2c.eval.core import EvalResult, GenerationExample, numeric_match
from g2c.sampling import StreamingDetokenizer, stream_generate
from g2c.sft import FAMILIES, TaskItem, generate_tasks, score_answer


class Generation(NamedTuple):
    """A generate function's answer: ``text`` (stop string and end marker removed),
    ``finish_reason`` ("stop": an end-of-turn / eos token or a stop string; "length":
    ``max_new_tokens`` reached; "prompt_too_long": the prompt alone exceeds the model's
    context, nothing was generated; "" when the generator does not say) and ``n_tokens``
    (generated tokens, None when unknown)."""

    text: str
    finish_reason: str = ""
    n_tokens: int | None = None

    @property
    def hit_max_tokens(self) -> bool | None:
        """True when the generation was cut at max_new_tokens (None when unknown)."""
        return None if not self.finish_reason else self.finish_reason == "length"


GenerateFn = Callable[..., "str | Generation"]


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first occurrence of any ``stop`` string; (text, whether one was
    found)."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def model_generator(
    model: Any,
    tokenizer: Any,
    template: Any = None,
    *,
    eos_tokens: Sequence[str] = ("<|endoftext|>",),
) -> GenerateFn:
    """A greedy generate function over a g2c language model.

    Args:
        model: a model with ``max_seq_len`` (a ``TransformerLM``; its KV cache is used).
        tokenizer: its tokenizer (``encode``, ``decode``; ``special_to_id`` for end tokens).
        template: a :class:`g2c.sft.BaseChatTemplate` (the prompt becomes one user message
            followed by the assistant opening; generation stops at the template's end-of-turn
            markers), or None (the prompt text is continued as is).
        eos_tokens: special tokens that also end generation when the tokenizer has them.

    Returns:
        ``generate(prompt, *, max_new_tokens, stop=()) -> Generation``. A prompt longer than
        the model's context gives ``Generation("", "prompt_too_long", 0)`` (scored wrong by
        the tasks, never an exception halfway through a run).
    """
    specials = getattr(tokenizer, "special_to_id", None) or {}
    names = list(eos_tokens)
    if template is not None:
        names += [*template.stop_tokens, getattr(template, "eos_token", None) or ""]
    stop_ids = {int(specials[n]) for n in names if n in specials}
    max_len = int(model.max_seq_len)

    def generate(prompt: str, *, max_new_tokens: int, stop: Sequence[str] = ()) -> Generation:
        if template is not None:
            ids = template.encode_prompt([{"role": "user", "content": prompt}], tokenizer)
        else:
            ids = tokenizer.encode(prompt)
        if not ids or len(ids) > max_len:
            return Generation("", "prompt_too_long", 0)
        detok = StreamingDetokenizer(tokenizer)
        text, n, reason = "", 0, "length"
        for tok in stream_generate(model, ids, max_new_tokens, temperature=0.0):
            n += 1
            if tok in stop_ids:
                reason = "stop"
                break
            text += detok.push(tok)
            if stop:
                text, found = cut_at_stop(text, stop)
                if found:
                    reason = "stop"
                    break
        else:
            text += detok.flush()
            text, found = cut_at_stop(text, stop)
            reason = "stop" if found or n < max_new_tokens else "length"
        return Generation(text, reason, n)

    return generate


def backend_generator(backend: Any) -> GenerateFn:
    """A greedy generate function over a backend with ``complete(prompt, *, max_new_tokens,
    temperature, top_k, top_p)`` returning an object with ``completion`` and
    ``completion_tokens`` (``g2c.inference.Backend``; duck-typed, so this module needs no
    import of it). Stop strings are applied to the returned text."""

    def generate(prompt: str, *, max_new_tokens: int, stop: Sequence[str] = ()) -> Generation:
        r = backend.complete(prompt, max_new_tokens=max_new_tokens, temperature=0.0,
                             top_k=None, top_p=None)  # fmt: skip
        text, found = cut_at_stop(str(r.completion), stop)
        n = getattr(r, "completion_tokens", None)
        reason = "stop" if found or (n is not None and n < max_new_tokens) else "length"
        return Generation(text, reason if n is not None or found else "", n)

    return generate


def as_generation(out: str | Generation) -> Generation:
    """A generate function's return value as a :class:`Generation` (a bare str: reason
    unknown)."""
    if isinstance(out, Generation):
        return out
    if isinstance(out, str):
        return Generation(out)
    raise TypeError(f"generate must return a str or a Generation, got {type(out).__name__}")


def check_limit(limit: int | None) -> None:
    """``limit`` must be None or an int >= 1 → ValueError naming it."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 or None (all), got {limit!r}")


def check_shots(shots: int) -> None:
    """``shots`` must be an int >= 0 → ValueError naming it."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
        raise ValueError(f"shots must be an integer >= 0, got {shots!r}")


class GenerationTask:
    """A generation task: examples, a prompt format, a scorer. Subclasses set ``name``,
    ``max_new_tokens`` (the default budget), ``stop`` (stop strings), ``takes_shots``,
    ``metric_names`` (what :meth:`metrics` returns, for the gate), and write
    :meth:`examples`, :meth:`score`, :meth:`prompt_format`."""

    name = ""
    kind = "generation"
    max_new_tokens = 128
    stop: tuple[str, ...] = ()
    takes_shots = False
    metric_names: tuple[str, ...] = ("acc",)

    def examples(
        self, limit: int | None = None, seed: int = 0, shots: int = 0
    ) -> list[GenerationExample]:
        """The first ``limit`` examples (all when None), deterministic in ``seed``/``shots``."""
        raise NotImplementedError

    def prompt_format(self, shots: int = 0) -> dict[str, Any]:
        """How prompts are built and scored (recorded in every result)."""
        raise NotImplementedError

    def score(self, example: GenerationExample, text: str) -> EvalResult:
        """The verdict on one generated ``text``."""
        raise NotImplementedError

    def evaluate(
        self, generate: GenerateFn, example: GenerationExample, max_new_tokens: int | None = None
    ) -> EvalResult:
        """Generate an answer to ``example`` and score it; ``metadata`` gets ``completion``
        (the raw text), ``finish_reason``, ``n_tokens`` and ``hit_max_tokens``."""
        budget = max_new_tokens or self.max_new_tokens
        out = as_generation(generate(example.prompt, max_new_tokens=budget, stop=self.stop))
        result = self.score(example, out.text)
        meta = {**result.metadata, "completion": out.text, "finish_reason": out.finish_reason,
                "n_tokens": out.n_tokens, "hit_max_tokens": out.hit_max_tokens}  # fmt: skip
        if out.finish_reason == "prompt_too_long":
            return EvalResult(False, result.prediction, None, meta)
        return EvalResult(result.correct, result.prediction, result.confidence, meta)

    def metrics(self, results: Sequence[EvalResult]) -> dict[str, float]:
        """``acc`` (fraction correct) and ``hit_max_tokens`` (fraction cut at the budget)."""
        n = max(len(results), 1)
        capped = sum(bool(r.metadata.get("hit_max_tokens")) for r in results)
        return {"acc": sum(r.correct for r in results) / n, "hit_max_tokens": capped / n}


# -- GSM8K ------------------------------------------------------------------------------------
_AFTER_HASHES = re.compile(r"####\s*(-?[$0-9.,]*[0-9])")
_ANY_NUMBER = re.compile(r"-?[$0-9.,]*[0-9]")


def extract_gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution: the number after ``"####"`` (strict), else the
    last number in the text (flexible); commas and ``$`` removed. None when there is no
    number at all."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    m = _AFTER_HASHES.search(text)
    found = m.group(1) if m else (_ANY_NUMBER.findall(text) or [None])[-1]
    if found is None:
        return None
    return found.replace(",", "").replace("$", "").rstrip(".")


class GSM8KTask(GenerationTask):
    """GSM8K test (1,319 grade-school maths problems), chain-of-thought generation scored by
    the final number (Cobbe et al. 2021; lm-evaluation-harness's ``gsm8k`` prompt)."""

    name = "gsm8k"
    max_new_tokens = 256
    stop = ("Question:", "</s>", "<|im_end|>")
    takes_shots = True
    FMT = "Question: {question}\nAnswer:"

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def prompt_format(self, shots: int = 0) -> dict[str, Any]:
        """lm-eval's gsm8k: doc_to_text, target delimiter, shot delimiter, stops, extraction."""
        return {"doc_to_text": self.FMT, "target_delimiter": " ", "fewshot_delimiter": "\n\n",
                "shots": shots, "fewshot_split": "train", "stop": list(self.stop),
                "extraction": "number after '####', else the last number",
                "matcher": "numeric_match"}  # fmt: skip

    def examples(
        self, limit: int | None = None, seed: int = 0, shots: int = 0
    ) -> list[GenerationExample]:
        """Test problems in file order (the first ``limit``), each after the same ``shots``
        train solutions drawn with ``seed``. More shots than train problems → ValueError."""
        check_limit(limit)
        check_shots(shots)
        test = load_gsm8k("test", path=self.path)
        prefix = ""
        if shots:
            train = load_gsm8k("train", path=self.path)
            if shots > len(train):
                raise ValueError(f"shots: {shots} exceeds the {len(train)} GSM8K train problems")
            picked = random.Random(f"gsm8k|{seed}").sample(range(len(train)), shots)
            prefix = "".join(
                self.FMT.format(question=train[i][0]["content"]) + " " + train[i][1]["content"]
                + "\n\n" for i in picked
            )  # fmt: skip
        out = []
        for i, conv in enumerate(test[:limit] if limit else test):
            answer = extract_gsm8k_answer(conv[1]["content"]) or ""
            prompt = prefix + self.FMT.format(question=conv[0]["content"])
            out.append(GenerationExample(prompt, (answer,), {"id": f"gsm8k-test-{i}"}))
        return out

    def score(self, example: GenerationExample, text: str) -> EvalResult:
        """Extract the answer (:func:`extract_gsm8k_answer`) and compare numerically."""
        answer = extract_gsm8k_answer(text)
        ok = answer is not None and numeric_match(answer, example.references)
        return EvalResult(ok, answer, None, {"reference": example.references[0]})


# -- the SFT task family ----------------------------------------------------------------------
class SFTTasksTask(GenerationTask):
    """Held-out problems of the generated task family (:mod:`g2c.sft.tasks`: arithmetic,
    reverse, count, upper, repeat, identity), scored by :func:`g2c.sft.score_answer` (exact
    after stripping). ``limit`` None → ``per_family`` problems per family."""

    name = "g2c_tasks"
    max_new_tokens = 24
    stop = ()  # as the SFT stage's own evaluation: the reply ends at the end-of-turn marker

    def __init__(self, families: Sequence[str] = FAMILIES, per_family: int = 10) -> None:
        self.families = tuple(families)
        self.per_family = per_family
        self.metric_names = ("acc", *(f"acc_{f}" for f in self.families))

    def prompt_format(self, shots: int = 0) -> dict[str, Any]:
        """The user message of each item; exact match after stripping."""
        return {"doc_to_text": "{user message}", "split": "heldout",
                "families": list(self.families), "stop": list(self.stop),
                "matcher": "g2c.sft.score_answer (exact after strip)"}  # fmt: skip

    def examples(
        self, limit: int | None = None, seed: int = 0, shots: int = 0
    ) -> list[GenerationExample]:
        """Held-out items (round-robin over families), deterministic in ``seed``."""
        check_limit(limit)
        n = limit or self.per_family * len(self.families)
        items = generate_tasks(n, seed=seed, families=self.families, split="heldout")
        return [GenerationExample(it.messages[0]["content"], (it.answer,),
                                  {"id": it.key, "family": it.family, "item": it})
                for it in items]  # fmt: skip

    def score(self, example: GenerationExample, text: str) -> EvalResult:
        """:func:`g2c.sft.score_answer` on the example's task item."""
        item: TaskItem = example.metadata["item"]
        return EvalResult(score_answer(item, text), text.strip(), None, {"family": item.family})

    def metrics(self, results: Sequence[EvalResult]) -> dict[str, float]:
        """``acc``, ``acc_<family>`` per family, ``hit_max_tokens``."""
        out = super().metrics(results)
        for fam in self.families:
            rs = [r for r in results if r.metadata.get("family") == fam]
            if rs:
                out[f"acc_{fam}"] = sum(r.correct for r in rs) / len(rs)
        return out


__all__ = [
    "GSM8KTask",
    "GenerateFn",
    "Generation",
    "GenerationTask",
    "SFTTasksTask",
    "as_generation",
    "backend_generator",
    "cut_at_stop",
    "extract_gsm8k_answer",
    "model_generator",
]
