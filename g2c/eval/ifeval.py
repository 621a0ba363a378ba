"""IFEval-style instruction following: instructions whose compliance a program can verify.

After Zhou et al. 2023 ("Instruction-Following Evaluation for Large Language Models", the
IFEval "verifiable instructions"). Each :class:`Instruction` is a ``kind`` with arguments, a
sentence that asks for it (:meth:`Instruction.describe`) and a checker (:func:`check`):

=====================  ================================================  ====================
kind                   asks for                                          checker
=====================  ================================================  ====================
word_count_at_least    "Answer with at least N words."                   ``len(text.split()) >= N``
word_count_at_most     "Answer with at most N words."                    ``len(text.split()) <= N``
all_lowercase          "Your entire response must be in lowercase..."    no upper-case letter,
                                                                         at least one letter
bullet_count           "...exactly N bullet points ('* ' or '- ')"       lines starting with
                                                                         ``*`` / ``-`` == N
valid_json             "Wrap your entire output in JSON format."         ``json.loads`` of the
                                                                         text (```json fences
                                                                         stripped)
include_keywords       "Include the keywords K1, K2 in the response."    each keyword appears
                                                                         (case-insensitive,
                                                                         whole word)
no_commas              "Do not use any commas in your response."         no ``,`` in the text
=====================  ================================================  ====================

Metrics (IFEval's "strict" variant): ``acc`` = prompt-level accuracy (every instruction of the
prompt followed), ``inst_acc`` = instruction-level accuracy (fraction of all instructions
followed). The prompts (:class:`IFEvalTask`) are built here from a fixed list of topics and
instruction combinations that do not contradict each other, deterministic in the seed — not
IFEval's own 541 prompts (not in the shared data).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from g2c.eval.core import EvalResult, GenerationExample
from g2c.eval.generation import GenerationTask, check_limit


# -- the checkers -------------------------------------------------------------------------------
def word_count(text: str) -> int:
    """Whitespace-separated words in ``text``."""
    return len(text.split())


def check_word_count_at_least(text: str, n: int) -> bool:
    """At least ``n`` words."""
    return word_count(text) >= n


def check_word_count_at_most(text: str, n: int) -> bool:
    """At most ``n`` words (and not empty)."""
    return 0 < word_count(text) <= n


def check_all_lowercase(text: str) -> bool:
    """No upper-case letter, and at least one letter (an empty answer does not comply)."""
    return any(c.isalpha() for c in text) and text == text.lower()


_BULLET = re.compile(r"^\s*(?:\*(?!\*)|-)\s+\S", re.MULTILINE)


def count_bullets(text: str) -> int:
    """Lines that are markdown bullet points: ``* item`` or ``- item`` (``**bold**`` is not)."""
    return len(_BULLET.findall(text))


def check_bullet_count(text: str, n: int) -> bool:
    """Exactly ``n`` bullet points (:func:`count_bullets`)."""
    return count_bullets(text) == n


_FENCE = re.compile(r"^\s*```(?:json|JSON|Json)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def check_valid_json(text: str) -> bool:
    """The whole answer parses as JSON (one surrounding ```json fence is allowed, as in
    IFEval)."""
    m = _FENCE.match(text)
    body = (m.group(1) if m else text).strip()
    if not body:
        return False
    try:
        json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def check_include_keywords(text: str, keywords: Sequence[str]) -> bool:
    """Every keyword occurs in ``text`` as a whole word, ignoring case."""
    return all(re.search(rf"\b{re.escape(k)}\b", text, re.IGNORECASE) for k in keywords)


def check_no_commas(text: str) -> bool:
    """No comma anywhere (and not empty)."""
    return bool(text.strip()) and "," not in text


#: kind → (checker(text, **args), instruction sentence with ``{args}`` placeholders).
CHECKERS: dict[str, tuple[Callable[..., bool], str]] = {
    "word_count_at_least": (check_word_count_at_least, "Answer with at least {n} words."),
    "word_count_at_most": (check_word_count_at_most, "Answer with at most {n} words."),
    "all_lowercase": (check_all_lowercase, "Your entire response must be in lowercase letters; "
                      "no capital letters are allowed."),
    "bullet_count": (check_bullet_count, "Your answer must contain exactly {n} bullet points, "
                     "each on its own line starting with '* '."),
    "valid_json": (check_valid_json, "Wrap your entire output in JSON format."),
    "include_keywords": (check_include_keywords,
                         "Include the keywords {keywords} in the response."),
    "no_commas": (check_no_commas, "Do not use any commas in your response."),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One verifiable instruction: ``kind`` (a key of :data:`CHECKERS`) and its ``args``
    (``n`` for counts, ``keywords`` for include_keywords). Unknown kind or missing/extra
    arguments → ValueError naming them."""

    kind: str
    args: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in CHECKERS:
            raise ValueError(f"kind: unknown instruction {self.kind!r}; known: {list(CHECKERS)}")
        needed = {"n"} if "{n}" in CHECKERS[self.kind][1] else set()
        needed |= {"keywords"} if self.kind == "include_keywords" else set()
        if set(self.args) != needed:
            raise ValueError(f"args: {self.kind} takes {sorted(needed)}, got {sorted(self.args)}")

    def describe(self) -> str:
        """The sentence that asks for this instruction."""
        args = dict(self.args)
        if "keywords" in args:
            args["keywords"] = ", ".join(repr(k) for k in args["keywords"])
        return CHECKERS[self.kind][1].format(**args)

    def check(self, text: str) -> bool:
        """True when ``text`` complies."""
        return check(self.kind, text, **self.args)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "args"}`` (JSON)."""
        return {"kind": self.kind, "args": {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in self.args.items()}}  # fmt: skip


def check(kind: str, text: str, **args: Any) -> bool:
    """Run the checker of instruction ``kind`` on ``text``. Unknown kind → ValueError listing
    the kinds; ``text`` not a str → TypeError."""
    if kind not in CHECKERS:
        raise ValueError(f"kind: unknown instruction {kind!r}; known: {list(CHECKERS)}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return bool(CHECKERS[kind][0](text, **args))


# -- the task -----------------------------------------------------------------------------------
TOPICS = (
    ("Describe a walk in the park on an autumn day.", ("leaves", "wind")),
    ("Explain why people enjoy reading books.", ("story", "imagination")),
    ("Write a short note to a friend about your weekend.", ("weekend", "friend")),
    ("Give advice to someone learning to cook.", ("recipe", "practice")),
    ("Describe the ocean to someone who has never seen it.", ("waves", "salt")),
    ("Explain how to plant a tree.", ("soil", "water")),
    ("Write a product description for a simple wooden chair.", ("wood", "comfortable")),
    ("Tell a very short story about a lost cat.", ("cat", "home")),
    ("Describe your ideal breakfast.", ("coffee", "bread")),
    ("Explain what a computer does.", ("program", "memory")),
    ("Give tips for a good night's sleep.", ("bed", "quiet")),
    ("Describe a busy city street.", ("traffic", "people")),
)
# Instruction combinations that never contradict each other (JSON excludes bullets and
# lowercase keys are fine; word limits are one-sided).
_SINGLE = ("word_count_at_least", "word_count_at_most", "all_lowercase", "bullet_count",
           "valid_json", "include_keywords", "no_commas")  # fmt: skip
_PAIRS = (
    ("all_lowercase", "word_count_at_most"),
    ("no_commas", "include_keywords"),
    ("bullet_count", "all_lowercase"),
    ("valid_json", "include_keywords"),
    ("word_count_at_least", "no_commas"),
    ("include_keywords", "word_count_at_most"),
)


def _instruction(kind: str, rng: random.Random, keywords: tuple[str, ...]) -> Instruction:
    args: dict[str, Any] = {}
    if kind == "word_count_at_least":
        args["n"] = rng.choice((20, 40, 60))
    elif kind == "word_count_at_most":
        args["n"] = rng.choice((15, 30, 50))
    elif kind == "bullet_count":
        args["n"] = rng.choice((2, 3, 4))
    elif kind == "include_keywords":
        args["keywords"] = keywords
    return Instruction(kind, args)


def make_prompts(n: int, seed: int = 0) -> list[tuple[str, list[Instruction]]]:
    """``n`` (prompt, instructions) pairs: a topic and one or two compatible instructions,
    cycling through every single instruction and every pair; deterministic in ``seed``."""
    rng = random.Random(f"ifeval|{seed}")
    combos = [(k,) for k in _SINGLE] + list(_PAIRS)
    out = []
    for i in range(n):
        topic, keywords = TOPICS[(i * 5 + seed) % len(TOPICS)]
        insts = [_instruction(k, rng, keywords) for k in combos[i % len(combos)]]
        prompt = topic + " " + " ".join(inst.describe() for inst in insts)
        out.append((prompt, insts))
    return out


class IFEvalTask(GenerationTask):
    """Instruction following with verifiable constraints (see the module docstring).
    ``limit`` None → ``size`` prompts (every single instruction and pair, twice)."""

    name = "ifeval"
    max_new_tokens = 160
    metric_names = ("acc", "inst_acc")
    size = 2 * (len(_SINGLE) + len(_PAIRS))

    def prompt_format(self, shots: int = 0) -> dict[str, Any]:
        """Topic + instruction sentences as the user message; strict checking."""
        return {"doc_to_text": "{topic} {instruction sentences}",
                "instructions": {k: v[1] for k, v in CHECKERS.items()},
                "metrics": "acc = every instruction followed (prompt-level strict); "
                           "inst_acc = instructions followed / instructions"}  # fmt: skip

    def examples(
        self, limit: int | None = None, seed: int = 0, shots: int = 0
    ) -> list[GenerationExample]:
        """The prompts of :func:`make_prompts` (``limit`` or :attr:`size` of them)."""
        check_limit(limit)
        return [GenerationExample(p, ("(verified by checkers)",),
                                  {"id": f"ifeval-{i}", "instructions": insts})
                for i, (p, insts) in enumerate(make_prompts(limit or self.size, seed))]  # fmt: skip

    def score(self, example: GenerationExample, text: str) -> EvalResult:
        """Every instruction checked; correct when all are followed."""
        insts: list[Instruction] = example.metadata["instructions"]
        followed = [inst.check(text) for inst in insts]
        meta = {"instructions": [i.to_dict() for i in insts], "followed": followed}
        return EvalResult(all(followed), text, None, meta)

    def metrics(self, results: Sequence[EvalResult]) -> dict[str, float]:
        """``acc`` (prompt level), ``inst_acc`` (instruction level), ``hit_max_tokens``."""
        out = super().metrics(results)
        flags = [f for r in results for f in r.metadata.get("followed", [])]
        out["inst_acc"] = sum(flags) / len(flags) if flags else 0.0
        return out


__all__ = [
    "CHECKERS",
    "IFEvalTask",
    "Instruction",
    "check",
    "check_all_lowercase",
    "check_bullet_count",
    "check_include_keywords",
    "check_no_commas",
    "check_valid_json",
    "check_word_count_at_least",
    "check_word_count_at_most",
    "count_bullets",
    "make_prompts",
    "word_count",
]
