"""The pieces of synthetic instruction data: prompts, parsing, validation, de-duplication.

Self-instruct (Wang et al. 2023, https://arxiv.org/abs/2212.10560) in four steps, each a pure
function here so it can be read and tested on its own:

- :func:`build_instruction_prompt` shows the teacher a few seed tasks as a numbered list and
  asks for ``count`` new ones; :func:`parse_numbered_list` reads the reply back;
- :func:`build_response_prompt` asks the teacher to carry one instruction out;
- :func:`validate_pair` lists what is wrong with a ``{"user", "assistant"}`` pair (empty,
  too long, the answer parroting the question, a repetition loop, chat-template debris,
  a task a text model cannot do such as drawing a picture — the paper's keyword filter);
- :func:`ngram_overlap` (Jaccard similarity of word n-gram sets) and :func:`dedupe_pairs`
  drop near-duplicates of the seeds and of each other (the paper uses ROUGE-L ≥ 0.7; word
  3-gram Jaccard is the cheaper relative that the course uses, and is symmetric).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Default length limit (characters) of each side of a pair in :func:`validate_pair`.
MAX_CHARS = 2000
#: Instructions with fewer words than this are rejected (e.g. "Write." or a bare number).
MIN_INSTRUCTION_WORDS = 3
#: Words that mark a task a text-only model cannot carry out (self-instruct's filter).
UNDOABLE_WORDS = (
    "image",
    "images",
    "picture",
    "pictures",
    "photo",
    "photograph",
    "graph",
    "graphs",
    "draw",
    "plot",
    "video",
    "audio",
    "map",
    "diagram",
    "file",
    "files",
    "go to",
    "click",
)
_TEMPLATE_DEBRIS = re.compile(r"<\|[^|>\s]{1,30}\|>|</?s>|\[/?INST\]|<tool_call>")
_WORDS = re.compile(r"\w+", re.UNICODE)
_NESTED_NUMBER = re.compile(r"^(?:\s*\d{1,3}[.)](?=\s|$))+")
_ITEM = re.compile(r"^\s*(?:task\s*|instruction\s*)?(\d{1,3})\s*[.):]\s*(.*)$", re.IGNORECASE)


# -- prompts ------------------------------------------------------------------------------------
def _instruction_of(seed: Any, where: str) -> str:
    """The instruction text of a seed: a string, a ``{"user", ...}`` pair, or a conversation
    (list of ``{"role", "content"}`` turns: its first user turn)."""
    if isinstance(seed, str):
        text = seed
    elif isinstance(seed, Mapping) and isinstance(seed.get("user"), str):
        text = seed["user"]
    elif isinstance(seed, Sequence) and seed and all(isinstance(t, Mapping) for t in seed):
        users = [t.get("content") for t in seed if t.get("role") == "user"]
        text = users[0] if users and isinstance(users[0], str) else ""
    else:
        raise TypeError(
            f"{where} must be a string, a {{'user', 'assistant'}} dict or a "
            f"conversation (list of role/content dicts), got {seed!r:.80}"
        )
    if not text.strip():
        raise ValueError(f"{where} has an empty instruction")
    return text.strip()


def as_pair(item: Any, where: str = "item") -> dict[str, str]:
    """A ``{"user", "assistant"}`` dict from a pair or a one-exchange conversation (first user
    turn, first assistant turn after it; "" when there is none). Anything else → TypeError."""
    if isinstance(item, Mapping) and "user" in item:
        return {"user": str(item["user"]), "assistant": str(item.get("assistant", ""))}
    user = _instruction_of(item, where)
    assistant = ""
    if not isinstance(item, str):
        roles = [(t.get("role"), t.get("content")) for t in item]
        after = roles[[r for r, _ in roles].index("user") + 1 :]
        assistant = next((str(c) for r, c in after if r == "assistant"), "")
    return {"user": user, "assistant": assistant}


def _headline(instruction: str, limit: int = 300) -> str:
    """The instruction's first paragraph (not the instance input after a blank line) on one
    line, cut at ``limit`` characters."""
    text = " ".join(instruction.strip().split("\n\n")[0].split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def build_instruction_prompt(seeds: Sequence[Any], count: int = 8) -> str:
    """The prompt asking a teacher for ``count`` new tasks in the style of ``seeds``.

    ``seeds``: a non-empty list of instructions (strings, ``{"user", ...}`` pairs or
    conversations), shown as a numbered list — each by its first paragraph (an instance input
    after a blank line is left out), on one line, at most 300 characters. The reply is
    expected as a numbered list too (:func:`parse_numbered_list`). Empty ``seeds`` or
    ``count`` < 1 → ValueError; a seed of another type → TypeError naming its index.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    if isinstance(seeds, (str, Mapping)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError("seeds must be a non-empty list of example instructions")
    shown = [_headline(_instruction_of(s, f"seeds[{i}]")) for i, s in enumerate(seeds)]
    lines = "\n".join(f"{i}. {s}" for i, s in enumerate(shown, 1))
    return (
        f"Here are some example tasks a user might give an assistant:\n{lines}\n\n"
        f"Write {count} new tasks that are different from these: vary the topic and the kind "
        "of task (questions, writing, classification, rewriting, advice, maths). Each task "
        "must be answerable in text alone. Reply with a numbered list, one task per line, "
        "and nothing else."
    )


def build_response_prompt(instruction: str) -> str:
    """The prompt asking a teacher to carry out ``instruction`` (sent as the user turn).
    A non-string or empty instruction → ValueError."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    return (
        "Carry out the following task. Answer directly, completely and concisely.\n\n"
        f"{instruction.strip()}"
    )


def parse_numbered_list(text: str) -> list[str]:
    """The items of a numbered list in ``text`` ("1. ...", "2) ...", "3: ...", "Task 4. ...").

    An item runs from its number to the next numbered line or blank line (continuation lines
    are joined with a space); text before the first item and after a blank line that follows
    the list is ignored, as are empty items. Markdown emphasis (``**``), surrounding quotes and
    a second number leaked into the item ("1. 4. Write ..." → "Write ...", "1. 2." → dropped)
    are removed. A non-string → TypeError.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    items: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        m = _ITEM.match(line)
        if m:
            if current is not None:
                items.append(" ".join(current))
            current = [m.group(2).strip()]
        elif current is not None and line.strip():
            current.append(line.strip())
        elif current is not None:  # a blank line closes the item
            items.append(" ".join(current))
            current = None
    if current is not None:
        items.append(" ".join(current))
    out = []
    for item in items:
        item = _NESTED_NUMBER.sub("", item.replace("**", "")).strip()
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "\"'":
            item = item[1:-1].strip()
        if item:
            out.append(item)
    return out


# -- validation ---------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def _looping(text: str, n: int = 3) -> bool:
    """True when ``text`` repeats itself: under 40 % distinct word 3-grams (≥ 24 words) or
    one non-trivial line three times or more."""
    words = _words(text)
    if len(words) >= 24:
        grams = list(zip(*(words[i:] for i in range(n))))
        if len(set(grams)) / len(grams) < 0.4:
            return True
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 10]
    return any(lines.count(ln) >= 3 for ln in set(lines))


def _contained(answer: str, user: str) -> bool:
    """True when the answer (two words or more: a one-word label such as "positive" may well
    be named in the question) appears word for word inside the user's text — it parrots the
    instruction or a piece of it."""
    words = _words(answer)
    return len(words) >= 2 and f" {' '.join(words)} " in f" {' '.join(_words(user))} "


def _user_problems(user: str, max_chars: int) -> list[str]:
    problems = []
    if not user.strip():
        return ["user is empty"]
    if len(user) > max_chars:
        problems.append(f"user is longer than {max_chars} characters ({len(user)})")
    if len(_words(user)) < MIN_INSTRUCTION_WORDS:
        problems.append(f"user has fewer than {MIN_INSTRUCTION_WORDS} words")
    if not user.strip()[0].isalnum() and user.strip()[0] not in "\"'(¿¡":
        problems.append("user starts with punctuation")
    lower = " ".join(_words(user))
    hits = [w for w in UNDOABLE_WORDS if re.search(rf"\b{w}\b", lower)]
    if hits:
        problems.append(f"user asks for something a text model cannot do ({hits[0]!r})")
    if _TEMPLATE_DEBRIS.search(user):
        problems.append("user contains chat-template tokens")
    return problems


def validate_pair(pair: Mapping[str, Any], max_chars: int = MAX_CHARS) -> list[str]:
    """What is wrong with an instruction pair; ``[]`` = clean.

    Args:
        pair: a dict with "user" (the instruction) and "assistant" (the answer) strings.
        max_chars: the longest allowed text on either side, in characters.

    Returns:
        problems as short sentences, e.g. ``"assistant is empty"``, ``"user is longer than
        2000 characters (2417)"``, ``"assistant repeats the user"``, ``"assistant loops"``,
        ``"user asks for something a text model cannot do ('draw')"``.

    Raises:
        TypeError: ``pair`` is not a dict (mapping).
        ValueError: ``max_chars`` is not an integer >= 1.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be an integer >= 1, got {max_chars!r}")
    if not isinstance(pair, Mapping):
        raise TypeError(f"pair must be a dict with 'user' and 'assistant', got {pair!r:.80}")
    problems = []
    for key in ("user", "assistant"):
        if key not in pair:
            problems.append(f"{key} is missing")
        elif not isinstance(pair[key], str):
            problems.append(f"{key} is not a string ({type(pair[key]).__name__})")
    if problems:
        return problems
    user, answer = pair["user"], pair["assistant"]
    problems += _user_problems(user, max_chars)
    if not answer.strip():
        return [*problems, "assistant is empty"]
    if len(answer) > max_chars:
        problems.append(f"assistant is longer than {max_chars} characters ({len(answer)})")
    if _contained(answer, user) or ngram_overlap(user, answer) >= 0.9:
        problems.append("assistant repeats the user")
    if _looping(answer):
        problems.append("assistant loops")
    if _TEMPLATE_DEBRIS.search(answer):
        problems.append("assistant contains chat-template tokens")
    return problems


# -- de-duplication -----------------------------------------------------------------------------
def _grams(text: str, n: int) -> frozenset[tuple[str, ...]]:
    words = _words(text)
    if len(words) < n:  # a short text is one gram of its own length
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(zip(*(words[i:] for i in range(n))))


def _jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b) if a or b else 0.0


def ngram_overlap(a: str, b: str, n: int = 3) -> float:
    """Similarity of two texts in [0, 1]: the Jaccard index |A ∩ B| / |A ∪ B| of their sets of
    word ``n``-grams (lower-cased ``\\w+`` words, so case and punctuation do not count).

    Symmetric; 1.0 for identical texts (two empty texts included), 0.0 when no n-gram is
    shared. A text shorter than ``n`` words is one gram of its own length. Non-strings →
    TypeError; ``n`` < 1 → ValueError.
    """
    if not isinstance(a, str) or not isinstance(b, str):
        raise TypeError(f"a and b must be strings, got {type(a).__name__}, {type(b).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return _jaccard(_grams(a, n), _grams(b, n))


class NgramIndex:
    """Texts seen so far as n-gram sets, with an inverted index from gram to texts, so that
    :meth:`max_overlap` compares a new text only with those sharing a gram (the fast path of
    :func:`dedupe_pairs`; equal to comparing with every text — tested)."""

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.sets: list[frozenset] = []
        self.by_gram: dict[tuple[str, ...], list[int]] = {}

    def add(self, text: str) -> None:
        """Remember ``text``."""
        grams = _grams(text, self.n)
        for g in grams:
            self.by_gram.setdefault(g, []).append(len(self.sets))
        self.sets.append(grams)

    def max_overlap(self, text: str) -> float:
        """The largest :func:`ngram_overlap` of ``text`` with a remembered text (0.0 if none)."""
        grams = _grams(text, self.n)
        if not grams:
            return 1.0 if any(not s for s in self.sets) else 0.0
        candidates = {i for g in grams for i in self.by_gram.get(g, ())}
        return max((_jaccard(grams, self.sets[i]) for i in candidates), default=0.0)


def dedupe_pairs(
    pairs: Iterable[Any],
    threshold: float,
    against: Iterable[Any] | None = None,
    *,
    n: int = 3,
    indexed: bool = True,
) -> list[dict[str, str]]:
    """``pairs`` without near-duplicates, in their order.

    A pair is dropped when its instruction ("user") has :func:`ngram_overlap` ≥ ``threshold``
    with the instruction of an item of ``against`` (e.g. the seed tasks) or of an earlier kept
    pair. Items are ``{"user", "assistant"}`` dicts or one-exchange conversations (``against``
    may also hold plain instruction strings); the result is ``{"user", "assistant"}`` dicts.
    ``indexed`` (default) compares only texts sharing an n-gram (:class:`NgramIndex`);
    False compares with every text (the reference; same result).

    Raises:
        ValueError: ``threshold`` outside (0, 1].
        TypeError: an item that is not a pair or conversation (its index is named).
    """
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (0 < threshold <= 1)
    ):
        raise ValueError(
            f"threshold must be in (0, 1] (1 = exact duplicates only), got {threshold!r}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    items = [as_pair(p, f"pairs[{i}]") for i, p in enumerate(pairs)]
    seen = [_instruction_of(s, f"against[{i}]") for i, s in enumerate(against or [])]
    kept: list[dict[str, str]] = []
    if indexed:
        index = NgramIndex(n)
        for text in seen:
            index.add(text)
        for pair in items:
            if index.max_overlap(pair["user"]) < threshold:
                kept.append(pair)
                index.add(pair["user"])
        return kept
    for pair in items:
        if all(ngram_overlap(pair["user"], t, n) < threshold for t in seen):
            kept.append(pair)
            seen.append(pair["user"])
    return kept


__all__ = [
    "MAX_CHARS",
    "MIN_INSTRUCTION_WORDS",
    "UNDOABLE_WORDS",
    "NgramIndex",
    "as_pair",
    "build_instruction_prompt",
    "build_response_prompt",
    "dedupe_pairs",
    "ngram_overlap",
    "parse_numbered_list",
    "validate_pair",
]
