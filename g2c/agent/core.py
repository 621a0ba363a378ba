"""The agent's vocabulary: actions, observations, plans, parsed steps, the bounded scratchpad,
and :func:`parse_react_step`, the lenient reader of a ReAct reply.

ReAct (Yao et al., 2022, "ReAct: Synergizing Reasoning and Acting in Language Models"): the
model alternates ``Thought:`` (free text), ``Action:`` (a tool name) + ``Action Input:`` (its
JSON arguments), then reads the ``Observation:`` the loop appends, until it writes ``Final
Answer:``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from g2c.tools import ToolCall, parse_tool_calls


class AgentError(Exception):
    """A misconfigured agent (bad arguments) or an unreadable trace file."""


@dataclasses.dataclass(frozen=True)
class Action:
    """A tool call the agent decided on: ``tool`` (name) and ``arguments`` (dict).
    ``raw_input``: the Action Input text as written when it was not a JSON object."""

    tool: str
    arguments: dict[str, Any]
    raw_input: str | None = None

    def key(self) -> str:
        """Canonical form, for loop detection: name + arguments with sorted keys."""
        return self.tool + " " + json.dumps(self.arguments, sort_keys=True, default=str)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the loop tells the model after an action: ``output`` text, ``is_error``, and
    ``guard`` — the name of the guard that produced it instead of the tool ("duplicate_action",
    "format", ...) or None."""

    output: str
    is_error: bool = False
    guard: str | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """A numbered plan the model wrote before acting: ``steps`` (strings), ``raw`` text."""

    steps: list[str]
    raw: str = ""

    @classmethod
    def from_text(cls, text: str, max_steps: int = 8) -> Plan:
        """Numbered or bulleted lines of ``text`` (``1.``, ``2)``, ``-``); at most
        ``max_steps``; the first non-empty line when there is no list."""
        steps = []
        for line in text.splitlines():
            m = re.match(r"\s*(?:\d+[.)]|[-*•])\s+(.+)", line)
            if m:
                steps.append(m.group(1).strip())
        if not steps:
            steps = [ln.strip() for ln in text.splitlines() if ln.strip()][:1]
        return cls(steps[:max_steps], text)

    def render(self) -> str:
        """``1. step`` lines."""
        return "\n".join(f"{n}. {s}" for n, s in enumerate(self.steps, 1))


@dataclasses.dataclass(frozen=True)
class ParsedStep:
    """One model reply, read: ``thought``, ``action`` (or None), ``final_answer`` (or None),
    ``error`` (why neither could be read, or a problem with the action; None when clean),
    ``raw`` (the text as written)."""

    thought: str
    action: Action | None
    final_answer: str | None
    error: str | None
    raw: str


@dataclasses.dataclass
class AgentStep:
    """One turn of the loop, as recorded: ``index`` (1-based), ``thought``, ``action``,
    ``observation``, ``final_answer``, ``model_output``, ``prompt_chars``, ``prompt_tokens``,
    ``completion_tokens``, ``seconds`` (model + tool)."""

    index: int
    thought: str
    action: Action | None
    observation: Observation | None
    final_answer: str | None
    model_output: str
    prompt_chars: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


#: Why a run ended. The four of API.md, then the budgets and a failing backend.
STOP_REASONS = ("final_answer", "max_steps", "duplicate_action", "no_progress",
                "token_budget", "time_budget", "backend_error")  # fmt: skip


@dataclasses.dataclass
class AgentRunResult:
    """A finished run: ``final_answer`` ("" when none), ``stopped_reason`` (one of
    :data:`STOP_REASONS`), ``steps`` (list of :class:`AgentStep`), ``metadata`` (trace path,
    plan, token and time totals, guard counts, error)."""

    final_answer: str
    stopped_reason: str
    steps: list[AgentStep]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stopped_reason not in STOP_REASONS:
            raise ValueError(f"stopped_reason must be one of {STOP_REASONS}, got "
                             f"{self.stopped_reason!r}")  # fmt: skip


class Scratchpad:
    """The running record of Thought / Action / Observation the model sees, bounded to
    ``max_chars``: when it grows past the bound, the oldest entries are dropped (a line says
    how many) and an entry too long on its own is cut in the middle, so the prompt never
    outgrows the model's context however long the tools' outputs are."""

    def __init__(self, max_chars: int = 6000) -> None:
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 200:
            raise ValueError(f"max_chars must be an int >= 200, got {max_chars!r}")
        self.max_chars = max_chars
        self.entries: list[str] = []
        self.dropped = 0
        self.cut = 0

    def add(self, text: str) -> None:
        """Append one entry (a step's Thought/Action/Observation block)."""
        limit = self.max_chars - 100
        if len(text) > limit:
            half = limit // 2
            text = text[:half] + f"\n[... {len(text) - limit} characters cut ...]\n" + \
                text[-half:]  # fmt: skip
            self.cut += 1
        self.entries.append(text)
        while sum(len(e) + 1 for e in self.entries) > limit and len(self.entries) > 1:
            self.entries.pop(0)
            self.dropped += 1

    def render(self) -> str:
        """The entries, oldest first, after a note about dropped ones."""
        head = [f"[{self.dropped} earlier steps omitted]"] if self.dropped else []
        return "\n".join(head + self.entries)

    def __len__(self) -> int:
        return len(self.render())


_LABELS = re.compile(r"^\s*\**\s*(thought|action input|action|final answer|observation)\s*\**\s*:\**",
                     re.IGNORECASE | re.MULTILINE)  # fmt: skip


def _sections(text: str) -> list[tuple[str, str]]:
    """(label, body) pairs in order of appearance."""
    marks = list(_LABELS.finditer(text))
    out = []
    for n, m in enumerate(marks):
        end = marks[n + 1].start() if n + 1 < len(marks) else len(text)
        out.append((m.group(1).lower(), text[m.end() : end].strip()))
    return out


def _json_object(body: str) -> tuple[dict | None, str | None]:
    """The first JSON object in ``body`` (fences allowed): (object, None) or (None, error)."""
    text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", body.strip())
    start = text.find("{")
    if start < 0:
        return None, "Action Input is not a JSON object"
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as e:
        return None, f"Action Input is not valid JSON ({e.msg})"
    if not isinstance(obj, dict):
        return None, "Action Input must be a JSON object"
    return obj, None


def parse_react_step(text: str) -> ParsedStep:
    """Read one ReAct reply, leniently.

    Labels are case-insensitive and may be bold (``**Action:**``). Anything from an
    ``Observation:`` the model wrote itself onwards is ignored (it invents results). An
    ``Action`` wins over a ``Final Answer`` written after it. ``Action Input`` is the first JSON
    object after the label (code fences allowed); a non-JSON input is kept as
    ``Action.raw_input`` with an ``error``. A ``<tool_call>`` block is read as an action too.
    Neither an action nor a final answer → ``error`` says what is missing.

    Raises:
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    sections = _sections(text)
    cut = next((n for n, (label, _) in enumerate(sections) if label == "observation"), None)
    if cut is not None:
        sections = sections[:cut]
    thought = " ".join(body for label, body in sections if label == "thought")
    names = [(n, body) for n, (label, body) in enumerate(sections) if label == "action"]
    finals = [(n, body) for n, (label, body) in enumerate(sections) if label == "final answer"]
    if names and (not finals or names[0][0] < finals[0][0]):
        n, name = names[0]
        name = name.splitlines()[0].strip().strip("`*\"' ") if name.strip() else ""
        inputs = [body for label, body in sections[n + 1 :] if label == "action input"][:1]
        if not name:
            return ParsedStep(thought, None, None, "Action has no tool name", text)
        if not inputs:
            return ParsedStep(thought, Action(name, {}, ""), None,
                              "Action Input is missing", text)  # fmt: skip
        obj, err = _json_object(inputs[0])
        if err:
            return ParsedStep(thought, Action(name, {}, inputs[0].strip()), None, err, text)
        return ParsedStep(thought, Action(name, obj), None, None, text)
    if finals:
        return ParsedStep(thought, None, finals[0][1].strip(), None, text)
    calls = parse_tool_calls(text.split("Observation:")[0])
    if calls:
        c: ToolCall = calls[0]
        return ParsedStep(thought or text.split("<tool_call>")[0].strip(),
                          Action(c.name, dict(c.arguments)), None, None, text)  # fmt: skip
    return ParsedStep(thought or text.strip(), None, None,
                      "no 'Action:' with 'Action Input:' and no 'Final Answer:' found", text)  # fmt: skip
