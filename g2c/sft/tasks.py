"""A generated instruction-task family that a tiny model can learn and that is scored exactly.

Six families, each a one-turn conversation with one correct answer:

    arithmetic  "What is 7 + 5?"                              → "12"
    reverse     "Spell the word 'plant' backwards."           → "tnalp"
    count       "How many times does 'a' appear in 'banana'?" → "3"
    upper       "Write this in upper case: red fox"           → "RED FOX"
    repeat      "Repeat after me: blue sky"                    → "blue sky"
    identity    "Who are you?"                                → "I am g2c, a small language model."

``generate_tasks(n, seed=..., split="train" | "heldout")`` draws items deterministically
(same seed → same items). The split is by *problem*, not by wording: a problem (the operands, the
word, the phrase; for identity the question's wording) is held out when a hash of it falls in
the held-out fraction, so no held-out problem ever appears in training under any phrasing.
``score_answer(item, text)`` is exact match after stripping surrounding whitespace.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import NamedTuple

FAMILIES = ("arithmetic", "reverse", "count", "upper", "repeat", "identity")
SPLITS = ("train", "heldout")
HELDOUT_FRACTION = 0.2
IDENTITY_ANSWER = "I am g2c, a small language model."

# Short common English words (lower case, letters only) for the word families.
WORDS = tuple(
    dict.fromkeys(
        """
    apple bread chair dance eagle flame grape house juice kite lemon magic night ocean piano
    queen river stone table umbrella voice water yellow zebra cloud dream field glass heart
    light money paper quiet radio smile tiger uncle video wheel youth brain candy dress earth
    fruit green happy image jelly knife lunch metal north orange peace quick robot sugar train
    under vivid wagon young blue red cat dog sun moon star tree bird fish frog lion bear wolf
    milk rice salt corn bean leaf rose snow rain wind fire ice sand rock hill lake sea boat
    ship car bus road city town park shop book pen cup box bag hat shoe sock coat door wall
    roof bed lamp desk clock phone game ball song play walk jump run swim read sing cook
    plant sweet small large happy funny brave calm dark soft loud warm cold fast slow
    """.split()
    )
)
_PHRASE_WORDS = WORDS

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "arithmetic": ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?"),
    "reverse": ("Spell the word '{w}' backwards.", "Reverse the letters of '{w}'."),
    "count": (
        "How many times does the letter '{c}' appear in '{w}'?",
        "Count the letter '{c}' in '{w}'.",
    ),
    "upper": ("Write this in upper case: {p}", "Uppercase: {p}"),
    "repeat": ("Repeat after me: {p}", "Say exactly this: {p}"),
}
IDENTITY_QUESTIONS = (
    "Who are you?",
    "What is your name?",
    "Tell me about yourself.",
    "Introduce yourself.",
    "What are you?",
    "Who am I talking to?",
    "Are you a person?",
    "What should I call you?",
    "Who made you?",
    "What kind of assistant are you?",
)


class TaskItem(NamedTuple):
    """One generated task: ``family``, ``messages`` ([user prompt, assistant answer]),
    ``answer`` (the exact correct reply) and ``key`` (the problem, which decides the split).
    ``messages[:-1]`` is the prompt to generate from."""

    family: str
    messages: list[dict]
    answer: str
    key: str


def is_heldout(key: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """True when problem ``key`` belongs to the held-out split (a stable SHA-256 hash, the
    same on every machine and Python run)."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < fraction


# -- one problem per family: (key, prompt fields, answer) ----------------------------------------
Problem = tuple[str, dict, str]


def _arithmetic(rng: random.Random) -> Problem:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    op = rng.choice("+-")
    if op == "-" and b > a:
        a, b = b, a
    return f"{a}{op}{b}", {"a": a, "b": b, "op": op}, str(a + b if op == "+" else a - b)


def _reverse(rng: random.Random) -> Problem:
    w = rng.choice(WORDS)
    return w, {"w": w}, w[::-1]


def _count(rng: random.Random) -> Problem:
    w = rng.choice(WORDS)
    c = rng.choice(w) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
    return f"{c}:{w}", {"w": w, "c": c}, str(w.count(c))


def _phrase(rng: random.Random) -> str:
    return " ".join(rng.choice(_PHRASE_WORDS) for _ in range(rng.randint(2, 3)))


def _upper(rng: random.Random) -> Problem:
    p = _phrase(rng)
    return p, {"p": p}, p.upper()


def _repeat(rng: random.Random) -> Problem:
    p = _phrase(rng)
    return p, {"p": p}, p


def _identity(rng: random.Random) -> Problem:
    q = rng.choice(IDENTITY_QUESTIONS)
    return q, {"q": q}, IDENTITY_ANSWER


_PROBLEMS: dict[str, Callable[[random.Random], Problem]] = {
    "arithmetic": _arithmetic,
    "reverse": _reverse,
    "count": _count,
    "upper": _upper,
    "repeat": _repeat,
    "identity": _identity,
}
assert set(_PROBLEMS) == set(FAMILIES)


def _item(family: str, rng: random.Random, split: str) -> TaskItem:
    for _ in range(10_000):  # rejection: draw until the problem lies on the requested side
        key, fields, answer = _PROBLEMS[family](rng)
        if is_heldout(f"{family}|{key}") == (split == "heldout"):
            break
    else:  # pragma: no cover - every family has problems on both sides
        raise RuntimeError(f"no {split} problem found for {family}")
    prompt = (
        fields["q"] if family == "identity" else rng.choice(_TEMPLATES[family]).format(**fields)
    )
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return TaskItem(family, messages, answer, f"{family}|{key}")


def generate_tasks(
    n: int, *, seed: int, families: Sequence[str] = FAMILIES, split: str = "train"
) -> list[TaskItem]:
    """``n`` task items of ``families`` (round-robin, so balanced), deterministic in ``seed``,
    all from ``split`` ("train" or "heldout"; held-out problems never appear in "train").

    n < 1, an unknown family or split → ValueError naming it.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(families, str):
        families = (families,)
    families = tuple(families)
    bad = [f for f in families if f not in FAMILIES]
    if not families or bad:
        raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {bad}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    rng = random.Random(f"g2c-tasks|{seed}|{split}")
    return [_item(families[i % len(families)], rng, split) for i in range(n)]


def score_answer(item: TaskItem, text: str) -> bool:
    """True when ``text`` (the model's reply, without the end marker) equals ``item.answer``
    after stripping surrounding whitespace. Exact: "12." is wrong for "12"."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return text.strip() == item.answer


__all__ = [
    "FAMILIES",
    "HELDOUT_FRACTION",
    "IDENTITY_ANSWER",
    "TaskItem",
    "generate_tasks",
    "is_heldout",
    "score_answer",
]
