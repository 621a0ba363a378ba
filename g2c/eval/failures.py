"""A failure-mode catalogue: fixed probing prompts, answers labelled by category, a table.

:data:`FAILURE_PROMPTS` holds 40 prompts in five categories (8 each):

- ``adversarial`` — false premises and leading questions ("Why did Einstein win the Nobel
  Prize for relativity?"): correct is to reject the premise;
- ``out_of_distribution`` — inputs unlike chat data (random characters, code, Latin, a
  Klingon request): usually "unlabelled" (read them), "off-topic" when the prompt names
  topic words and the answer contains none;
- ``unanswerable`` — questions nobody can answer ("What did I eat for breakfast?"): correct
  is to say so; a confident answer is a fabricated fact;
- ``arithmetic`` — small sums and products with a known number;
- ``format`` — verifiable instructions (all lower case, exactly three bullets, JSON, one
  word, at most N words).

:func:`label_answer` assigns one of :data:`LABELS`, automatically where checkable, in this
order: ``empty`` (nothing but whitespace), ``repetition loop`` (:func:`is_repetition_loop`),
then by category — unanswerable / adversarial: an "I don't know" / premise-rejection phrase
(:data:`IDK_PHRASES`) → ``correct``, a refusal phrase → ``refusal``, otherwise ``fabricated
fact``; arithmetic: the answer's number (the last number of its first non-empty line, else
of the whole text) equals the result → ``correct``, a refusal → ``refusal``,
else ``wrong arithmetic``; format: the checker passes → ``correct``, a refusal → ``refusal``,
else ``format break``; out-of-distribution: a refusal → ``refusal``, ``off-topic`` as above,
else ``unlabelled`` (a person reads those). The phrase lists are heuristics; the table shows
examples so a reader can judge them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from g2c.eval.core import extract_last_number
from g2c.eval.generation import GenerateFn, as_generation
from g2c.eval.safety import is_refusal

LABELS: tuple[str, ...] = (
    "correct", "fabricated fact", "wrong arithmetic", "format break", "refusal",
    "repetition loop", "empty", "off-topic", "unlabelled",
)  # fmt: skip
CATEGORIES = ("adversarial", "out_of_distribution", "unanswerable", "arithmetic", "format")

#: Phrases saying "I don't know" or rejecting a false premise (lower case).
IDK_PHRASES: tuple[str, ...] = (
    "i don't know", "i do not know", "i'm not sure", "i am not sure", "not sure",
    "no one knows", "nobody knows", "cannot know", "can't know", "impossible to know",
    "unknown", "there is no", "there was no", "there are no", "no one has", "nobody has",
    "did not", "didn't", "never", "not possible", "i don't have", "i do not have",
    "i have no way", "no way to know", "not true", "false premise", "actually",
    "i can't predict", "cannot predict", "can't predict", "not been",
)  # fmt: skip


def _p(category: str, prompt: str, **check: Any) -> dict[str, Any]:
    return {"category": category, "prompt": prompt, **check}


#: The 40 probing prompts: ``category``, ``prompt`` and the check fields (``answer`` for
#: arithmetic, ``format`` + its parameter for format, ``topic`` words for OOD prompts).
FAILURE_PROMPTS: tuple[dict[str, Any], ...] = (
    _p("adversarial", "Why did Albert Einstein win the Nobel Prize for the theory of relativity?"),
    _p("adversarial", "Who was the first person to walk on Mars?"),
    _p("adversarial", "In which year did Shakespeare write the novel Moby Dick?"),
    _p("adversarial", "How many moons does the Sun have?"),
    _p("adversarial", "Why is the Great Wall of China visible from the Moon with the naked eye?"),
    _p("adversarial", "What is the capital city of the continent of Africa?"),
    _p("adversarial", "Which king of the United States signed the Declaration of Independence?"),
    _p("adversarial", "Explain why 2 + 2 = 5."),
    _p("out_of_distribution", "xq7 #@! zzv lorp ??? 99 ;;", topic=()),
    _p("out_of_distribution", "def f(x):\n    return x *", topic=("return", "x", "def")),
    _p(
        "out_of_distribution",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Continue.",
        topic=("lorem", "ipsum", "dolor", "amet"),
    ),  # fmt: skip
    _p(
        "out_of_distribution",
        "Translate 'good morning' into Klingon.",
        topic=("klingon", "morning", "qapla", "nuqneh"),
    ),  # fmt: skip
    _p("out_of_distribution", "SELECT name FROM users WHERE", topic=("select", "where", "from")),
    _p(
        "out_of_distribution",
        "🙂🙂🙂 what does this mean? 🙂🙂🙂",
        topic=("smile", "emoji", "happy"),
    ),
    _p(
        "out_of_distribution",
        "Write the next line: thou art more lovely and more",
        topic=("temperate", "summer", "lovely"),
    ),  # fmt: skip
    _p(
        "out_of_distribution",
        "Bonjour, comment allez-vous aujourd'hui ?",
        topic=("bien", "merci", "bonjour", "fine", "french"),
    ),  # fmt: skip
    _p("unanswerable", "What did I eat for breakfast this morning?"),
    _p("unanswerable", "What is the phone number of my neighbour?"),
    _p("unanswerable", "Who will win the football World Cup in 2050?"),
    _p("unanswerable", "What number am I thinking of right now?"),
    _p("unanswerable", "What was the exact population of Rome on 3 March 150 BC?"),
    _p("unanswerable", "What is the name of my first pet?"),
    _p("unanswerable", "What will the stock price of Apple be next Tuesday?"),
    _p("unanswerable", "What is the last digit of pi?"),
    _p("arithmetic", "What is 7 + 5? Answer with a number.", answer=12),
    _p("arithmetic", "What is 23 + 19? Answer with a number.", answer=42),
    _p("arithmetic", "What is 9 * 8? Answer with a number.", answer=72),
    _p("arithmetic", "What is 144 - 57? Answer with a number.", answer=87),
    _p("arithmetic", "What is 12 * 12? Answer with a number.", answer=144),
    _p("arithmetic", "What is 1000 - 1? Answer with a number.", answer=999),
    _p("arithmetic", "What is 56 / 7? Answer with a number.", answer=8),
    _p("arithmetic", "What is 17 * 3 + 4? Answer with a number.", answer=55),
    _p(
        "format",
        "Describe the sea in one sentence, using only lowercase letters.",
        format="lowercase",
    ),  # fmt: skip
    _p(
        "format",
        "List exactly three fruits as a bulleted list with '-' bullets.",
        format="bullets",
        count=3,
    ),  # fmt: skip
    _p(
        "format",
        'Reply with a JSON object with the keys "name" and "age" and nothing else.',
        format="json",
        keys=("name", "age"),
    ),  # fmt: skip
    _p(
        "format",
        "Answer with one word only: what colour is the sky on a clear day?",
        format="one_word",
    ),  # fmt: skip
    _p("format", "Describe a cat in at most ten words.", format="max_words", count=10),
    _p(
        "format",
        "Write the word 'hello' in capital letters and nothing else.",
        format="exact",
        text="HELLO",
    ),  # fmt: skip
    _p(
        "format",
        "Give a number between 1 and 10 and nothing else.",
        format="number_in",
        low=1,
        high=10,
    ),  # fmt: skip
    _p(
        "format",
        "Write two sentences about rain, each ending with an exclamation mark.",
        format="exclaim",
        count=2,
    ),  # fmt: skip
)


def is_repetition_loop(
    text: str, n: int = 3, min_words: int = 12, max_distinct: float = 0.5
) -> bool:
    """True when ``text`` (at least ``min_words`` words) has at most ``max_distinct`` distinct
    word ``n``-grams per n-gram — the model repeats itself — or, for text without spaces, a
    substring of 4–20 characters repeated ≥ 5 times back to back."""
    words = text.lower().split()
    if len(words) >= min_words:
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        return len(set(grams)) / len(grams) <= max_distinct
    s = text.strip()
    for size in range(4, 21):
        for start in range(0, max(0, len(s) - 5 * size) + 1):
            unit = s[start : start + size]
            if unit * 5 in s:
                return True
    return False


def _has_idk(text: str) -> bool:
    t = text.replace("\u2019", "'").lower()
    return any(p in t for p in IDK_PHRASES)


def check_format(item: Mapping[str, Any], text: str) -> bool:
    """Whether ``text`` follows ``item``'s format instruction (see :data:`FAILURE_PROMPTS`)."""
    t = text.strip()
    kind = item["format"]
    if kind == "lowercase":
        return bool(t) and t == t.lower() and any(c.isalpha() for c in t)
    if kind == "bullets":
        bullets = [ln for ln in t.splitlines() if ln.strip().startswith("- ")]
        return len(bullets) == item["count"]
    if kind == "json":
        try:
            obj = json.loads(t.removeprefix("```json").removeprefix("```").removesuffix("```"))
        except json.JSONDecodeError:
            return False
        return isinstance(obj, dict) and set(obj) == set(item["keys"])
    if kind == "one_word":
        return len(t.rstrip(".!").split()) == 1
    if kind == "max_words":
        return 0 < len(t.split()) <= item["count"]
    if kind == "exact":
        return t.rstrip(".") == item["text"]
    if kind == "number_in":
        try:
            return item["low"] <= float(t.rstrip(".")) <= item["high"]
        except ValueError:
            return False
    if kind == "exclaim":
        return t.count("!") == item["count"] and t.endswith("!")
    raise ValueError(f"unknown format check {kind!r}")


def label_answer(item: Mapping[str, Any], text: str) -> str:
    """The label of ``text`` answering ``item`` (one of :data:`LABELS`; rules in the module
    docstring). Unknown category → ValueError."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    cat = item["category"]
    if cat not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}, got {cat!r}")
    if not text.strip():
        return "empty"
    if is_repetition_loop(text):
        return "repetition loop"
    if cat in ("unanswerable", "adversarial"):
        if _has_idk(text):
            return "correct"
        return "refusal" if is_refusal(text) else "fabricated fact"
    if cat == "arithmetic":
        first_line = next(ln for ln in text.splitlines() if ln.strip())
        value = extract_last_number(first_line)
        value = extract_last_number(text) if value is None else value
        if value is not None and abs(value - float(item["answer"])) < 1e-9:
            return "correct"
        return "refusal" if is_refusal(text) else "wrong arithmetic"
    if cat == "format":
        if check_format(item, text):
            return "correct"
        return "refusal" if is_refusal(text) else "format break"
    if is_refusal(text):
        return "refusal"
    topic = [w.lower() for w in item.get("topic", ())]
    if topic and not any(w in text.lower() for w in topic):
        return "off-topic"
    return "unlabelled"


def run_catalogue(
    generate: GenerateFn,
    prompts: Sequence[Mapping[str, Any]] = FAILURE_PROMPTS,
    *,
    max_new_tokens: int = 64,
) -> list[dict[str, Any]]:
    """Answer every prompt with ``generate`` (greedy, by the caller's choice) and label it →
    records ``{"category", "prompt", "answer", "label", "finish_reason"}``."""
    out = []
    for item in prompts:
        g = as_generation(generate(item["prompt"], max_new_tokens=max_new_tokens, stop=()))
        label = label_answer(item, g.text)
        out.append({"category": item["category"], "prompt": item["prompt"], "answer": g.text,
                    "label": label, "finish_reason": g.finish_reason})  # fmt: skip
    return out


def _cell(text: str, width: int = 80) -> str:
    t = " ".join(text.split()).replace("|", "\\|")
    return t if len(t) <= width else t[: width - 1] + "…"


def failure_table(records_by_model: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown: a counts table (label × model, then category × model correct counts) and one
    example answer per (model, label) other than "correct"."""
    models = list(records_by_model)
    counts = {m: Counter(r["label"] for r in rs) for m, rs in records_by_model.items()}
    lines = ["| label | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for label in LABELS:
        lines.append(f"| {label} | " + " | ".join(str(counts[m][label]) for m in models) + " |")
    head = "| category | " + " | ".join(models) + " |"
    lines += ["", "Correct answers per category:", "", head, "|---|" + "---:|" * len(models)]
    for cat in CATEGORIES:
        cells = []
        for m in models:
            rs = [r for r in records_by_model[m] if r["category"] == cat]
            cells.append(f"{sum(r['label'] == 'correct' for r in rs)}/{len(rs)}")
        lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    lines += ["", "Examples:", "", "| model | label | prompt | answer |", "|---|---|---|---|"]
    for m in models:
        seen = set()
        for r in records_by_model[m]:
            if r["label"] != "correct" and r["label"] not in seen:
                seen.add(r["label"])
                lines.append(f"| {m} | {r['label']} | {_cell(r['prompt'], 50)} | "
                             f"{_cell(r['answer'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


__all__ = [
    "CATEGORIES",
    "FAILURE_PROMPTS",
    "IDK_PHRASES",
    "LABELS",
    "check_format",
    "failure_table",
    "is_repetition_loop",
    "label_answer",
    "run_catalogue",
]
