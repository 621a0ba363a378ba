"""The agent task suite: 22 tasks, each checked by code, and the guard ablation.

Categories: ``calculator`` (arithmetic chains), ``files`` (read, transform, write a result file
in a fresh temporary folder that the checker reads back), ``research`` (questions over a small
fictional corpus through ``web_search``: facts the model cannot know, answers must cite a
source), ``python`` (the sandbox), and ``failure`` — tasks built to trigger one failure mode
each (a repeated action, invalid arguments, context overflow, no progress).

Every task carries an ``oracle``: ReAct replies that solve it, so the checkers themselves are
tested (:class:`~g2c.agent.scripted.ScriptedBackend` replaying the oracle must pass every task).
:func:`run_suite` runs tasks against any backend; :func:`guard_ablation` runs them with each
guard off and on (the course exercise: three failure modes and the guard that fixes each).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from g2c.agent.core import AgentRunResult
from g2c.agent.loop import Agent, NativeAgent
from g2c.tools import (
    ToolRegistry,
    keyword_search,
    make_calculator,
    make_list_dir,
    make_read_file,
    make_run_python,
    make_web_search,
    make_write_file,
)

#: The research corpus: invented facts, so the model must search to know them.
CORPUS: dict[str, str] = {
    "zorblat_bridge.md": "The Zorblat Bridge spans the river Quell. It was completed in 1873 "
    "by the engineer Mara Velt. The bridge is 412 metres long.",
    "velt.md": "Mara Velt (1831-1902) was an engineer from Dunmoor. She designed the Zorblat "
    "Bridge and the Tarn Lighthouse.",
    "tarn_lighthouse.md": "The Tarn Lighthouse stands on Cape Orrin. Its light can be seen from "
    "38 kilometres away. It was first lit in 1881.",
    "quell.md": "The river Quell is 210 kilometres long and flows into the Grey Sea. Its main "
    "port is Harrowick.",
    "harrowick.md": "Harrowick is a port town with 52,000 inhabitants. Its fish market is held "
    "every Thursday.",
    "dunmoor.md": "Dunmoor is a hill village known for its slate quarries and its wool.",
}

_CITE = re.compile(r"\[\d+\]|\b\w+\.md\b")


def _final(result: AgentRunResult) -> str:
    return result.final_answer or ""


def _has_number(text: str, value: int | float) -> bool:
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    return any(abs(float(n.replace(",", "")) - value) < 1e-6 for n in nums if n.strip(","))


def _file(root: Path, name: str) -> str | None:
    p = root / name
    return p.read_text(encoding="utf-8") if p.is_file() else None


@dataclasses.dataclass(frozen=True)
class AgentTask:
    """One task: ``name``, ``category``, ``prompt``, ``tools`` (built-in tool names),
    ``check(result, root) -> bool``, ``oracle`` (ReAct replies that solve it), ``files``
    (written into the task's folder first), ``failure_mode`` (what the task is built to
    trigger, or None), ``max_steps``."""

    name: str
    category: str
    prompt: str
    tools: tuple[str, ...]
    check: Callable[[AgentRunResult, Path], bool]
    oracle: tuple[str, ...]
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    failure_mode: str | None = None
    max_steps: int = 6


def _act(tool: str, args: dict, thought: str = "I will use a tool.") -> str:
    return f"Thought: {thought}\nAction: {tool}\nAction Input: {json.dumps(args)}"


def _ans(text: str) -> str:
    return f"Thought: I know the answer.\nFinal Answer: {text}"


def _calc(name: str, prompt: str, expr: str, value: int) -> AgentTask:
    return AgentTask(name, "calculator", prompt, ("calculator",),
                     lambda r, root: _has_number(_final(r), value),
                     (_act("calculator", {"expression": expr}), _ans(str(value))))  # fmt: skip


def _research(name: str, prompt: str, query: str, must: Sequence[str], answer: str) -> AgentTask:
    def check(r: AgentRunResult, root: Path) -> bool:
        text = _final(r).lower().replace(",", "")
        return all(m.lower() in text for m in must) and bool(_CITE.search(_final(r)))

    return AgentTask(name, "research", prompt + " Cite the source as [n].", ("web_search",),
                     check, (_act("web_search", {"query": query}), _ans(answer)))  # fmt: skip


NUMBERS = "17\n25\n8\n100\n"
BIG = " ".join(["The archive holds many old letters about ships and trade."] * 60)


def build_tasks() -> list[AgentTask]:
    """The 22 tasks (a fresh list)."""
    tasks = [
        _calc("calc_product", "What is 4821 * 37?", "4821*37", 178377),
        _calc(
            "calc_chain",
            "Compute (1234 + 5678) * 3, then subtract 999.",
            "(1234+5678)*3-999",
            19737,
        ),  # fmt: skip
        _calc("calc_division", "What is 98765 divided by 5?", "98765/5", 19753),
        _calc("calc_power", "What is 17 to the power of 4?", "17**4", 83521),
        _calc("calc_percent", "What is 15 percent of 2480?", "2480*15/100", 372),
        _calc("calc_sum", "Add 123, 456, 789 and 1011.", "123+456+789+1011", 2379),
        AgentTask(
            "file_code",
            "files",
            "What is the code written in secret.txt?",
            ("read_file",),
            lambda r, root: "4417" in _final(r),
            (_act("read_file", {"path": "secret.txt"}), _ans("The code is 4417.")),
            files={"secret.txt": "The code is 4417.\n"},
        ),  # fmt: skip
        AgentTask(
            "file_total",
            "files",
            "Read numbers.txt, add up the numbers in it, and write the total to total.txt.",
            ("read_file", "calculator", "write_file"),
            lambda r, root: (_file(root, "total.txt") or "").strip() == "150",
            (
                _act("read_file", {"path": "numbers.txt"}),
                _act("calculator", {"expression": "17+25+8+100"}),
                _act("write_file", {"path": "total.txt", "content": "150"}),
                _ans("I wrote 150 to total.txt."),
            ),
            files={"numbers.txt": NUMBERS},
        ),
        AgentTask(
            "file_upper",
            "files",
            "Read name.txt and write its text in upper case to upper.txt.",
            ("read_file", "write_file"),
            lambda r, root: (_file(root, "upper.txt") or "").strip() == "ADA LOVELACE",
            (
                _act("read_file", {"path": "name.txt"}),
                _act("write_file", {"path": "upper.txt", "content": "ADA LOVELACE"}),
                _ans("Done."),
            ),
            files={"name.txt": "Ada Lovelace\n"},
        ),
        AgentTask(
            "file_count",
            "files",
            "How many lines does poem.txt have? Write the number to count.txt.",
            ("read_file", "write_file"),
            lambda r, root: (_file(root, "count.txt") or "").strip() == "3",
            (
                _act("read_file", {"path": "poem.txt"}),
                _act("write_file", {"path": "count.txt", "content": "3"}),
                _ans("3"),
            ),
            files={"poem.txt": "Roses bloom\nRivers run\nNight falls\n"},
        ),
        AgentTask(
            "file_merge",
            "files",
            "Write the text of a.txt followed by the text of b.txt into merged.txt.",
            ("read_file", "write_file"),
            lambda r, root: (_file(root, "merged.txt") or "").split() == ["alpha", "beta"],
            (
                _act("read_file", {"path": "a.txt"}),
                _act("read_file", {"path": "b.txt"}),
                _act("write_file", {"path": "merged.txt", "content": "alpha\nbeta\n"}),
                _ans("merged.txt written."),
            ),
            files={"a.txt": "alpha\n", "b.txt": "beta\n"},
        ),
        AgentTask(
            "file_list",
            "files",
            "List the files in the folder and write their names, one per line, to files.txt.",
            ("list_dir", "write_file"),
            lambda r, root: set((_file(root, "files.txt") or "").split()) >= {"x.txt", "y.txt"},
            (
                _act("list_dir", {"path": "."}),
                _act("write_file", {"path": "files.txt", "content": "x.txt\ny.txt\n"}),
                _ans("files.txt written."),
            ),
            files={"x.txt": "x", "y.txt": "y"},
        ),
        _research(
            "research_year",
            "When was the Zorblat Bridge completed?",
            "Zorblat Bridge",
            ["1873"],
            "It was completed in 1873 [1].",
        ),
        _research(
            "research_distance",
            "How far away can the light of the Tarn Lighthouse be seen?",
            "Tarn Lighthouse light",
            ["38"],
            "From 38 kilometres away [1].",
        ),
        _research(
            "research_designer",
            "Who designed the Zorblat Bridge?",
            "Zorblat Bridge designed",
            ["Velt"],
            "The engineer Mara Velt [1].",
        ),
        _research(
            "research_port",
            "What is the main port on the river Quell?",
            "river Quell port",
            ["Harrowick"],
            "Harrowick [1].",
        ),
        _research(
            "research_summary",
            "Summarise what the documents say about Mara Velt.",
            "Mara Velt",
            ["Velt", "1831"],
            "Mara Velt (1831-1902) was an engineer who designed the Zorblat Bridge [1].",
        ),
        AgentTask(
            "python_squares",
            "python",
            "Use run_python to compute the sum of the squares of the integers from 1 to 100.",
            ("run_python",),
            lambda r, root: _has_number(_final(r), 338350),
            (
                _act("run_python", {"code": "print(sum(i*i for i in range(1, 101)))"}),
                _ans("338350"),
            ),
        ),  # fmt: skip
        AgentTask(
            "failure_loop",
            "failure",
            "Search the documents for the population of "
            "Quxville. If the documents do not say, answer that it is unknown.",
            ("web_search",),
            lambda r, root: bool(
                re.search(r"unknown|not (?:in|found|mention|say)|no information", _final(r).lower())
            ),
            (
                _act("web_search", {"query": "Quxville population"}),
                _ans("It is unknown: the documents do not mention Quxville."),
            ),
            failure_mode="repeated action",
        ),  # fmt: skip
        AgentTask(
            "failure_args",
            "failure",
            "Use the calculator to compute twelve times thirteen plus one.",
            ("calculator",),
            lambda r, root: _has_number(_final(r), 157),
            (_act("calculator", {"expression": "12*13+1"}), _ans("157")),
            failure_mode="invalid arguments",
        ),  # fmt: skip
        AgentTask(
            "failure_overflow",
            "failure",
            "Read big1.txt, big2.txt and big3.txt. What is "
            "the password given at the very end of big3.txt?",
            ("read_file",),
            lambda r, root: "heron" in _final(r).lower(),
            (
                _act("read_file", {"path": "big1.txt"}),
                _act("read_file", {"path": "big2.txt"}),
                _act("read_file", {"path": "big3.txt"}),
                _ans("The password is heron."),
            ),
            files={"big1.txt": BIG, "big2.txt": BIG, "big3.txt": BIG + " The password is heron."},
            failure_mode="context overflow",
        ),  # fmt: skip
        AgentTask(
            "failure_missing",
            "failure",
            "Read report.txt and tell me its first word. If the file does not exist, say so.",
            ("read_file", "list_dir"),
            lambda r, root: bool(
                re.search(
                    r"not exist|does not|doesn't|missing|not found|"
                    r"no such",
                    _final(r).lower(),
                )
            ),
            (_act("read_file", {"path": "report.txt"}), _ans("report.txt does not exist.")),
            files={"other.txt": "nothing here"},
            failure_mode="no progress",
        ),  # fmt: skip
    ]
    return tasks


def task_registry(task: AgentTask, root: Path) -> ToolRegistry:
    """The task's tools over its folder ``root`` (web_search over :data:`CORPUS`)."""
    makers = {
        "calculator": make_calculator,
        "read_file": lambda: make_read_file(root, max_chars=4000),
        "list_dir": lambda: make_list_dir(root),
        "write_file": lambda: make_write_file(root),
        "run_python": lambda: make_run_python(10.0, root),
        "web_search": lambda: make_web_search(keyword_search(CORPUS), k=2),
    }
    return ToolRegistry(makers[name]() for name in task.tools)


@dataclasses.dataclass
class TaskOutcome:
    """One task's run: ``name``, ``category``, ``success``, ``stopped_reason``, ``steps``,
    ``failure`` (None on success; "wrong_answer" when the final answer fails the checker;
    "never_followed_format" when no reply was a usable action or answer; else the stop
    reason), ``final_answer``,
    ``guards`` (how often each guard fired), ``repeats`` (steps repeating an earlier action),
    ``trace``."""

    name: str
    category: str
    success: bool
    stopped_reason: str
    steps: int
    failure: str | None
    final_answer: str
    guards: dict[str, int]
    repeats: int
    trace: str


def run_task(task: AgentTask, backend: Any, *, native: bool = False,
             trace_dir: str | Path | None = None, **agent_kwargs: Any) -> TaskOutcome:  # fmt: skip
    """Run one task in a fresh temporary folder and check it."""
    with tempfile.TemporaryDirectory(prefix=f"g2c-task-{task.name}-") as tmp:
        root = Path(tmp)
        for name, text in task.files.items():
            (root / name).write_text(text, encoding="utf-8")
        kwargs = {"max_steps": task.max_steps, "plan": False, **agent_kwargs}
        if trace_dir is not None:
            Path(trace_dir).mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("trace_path", Path(trace_dir) / f"{task.name}.jsonl")
            Path(kwargs["trace_path"]).unlink(missing_ok=True)
        cls = NativeAgent if native else Agent
        result = cls(backend, task_registry(task, root), **kwargs).run(task.prompt)
        ok = result.stopped_reason == "final_answer" and bool(task.check(result, root))
    keys = [s.action.key() for s in result.steps if s.action is not None]
    repeats = len(keys) - len(set(keys))
    only_format = bool(result.steps) and all(
        s.observation is not None and s.observation.guard == "format" for s in result.steps
    )
    if ok:
        failure = None
    elif result.stopped_reason == "final_answer":
        failure = "wrong_answer"
    elif only_format:
        failure = "never_followed_format"
    else:
        failure = result.stopped_reason
    return TaskOutcome(task.name, task.category, ok, result.stopped_reason, len(result.steps),
                       failure, result.final_answer, dict(result.metadata.get("guards", {})),
                       repeats, result.metadata["trace"])  # fmt: skip


@dataclasses.dataclass
class SuiteReport:
    """:func:`run_suite`'s result: ``outcomes`` and the summary properties."""

    outcomes: list[TaskOutcome]

    @property
    def success_rate(self) -> float:
        """Share of tasks solved."""
        return sum(o.success for o in self.outcomes) / max(len(self.outcomes), 1)

    @property
    def mean_steps(self) -> float:
        """Mean number of model turns per task."""
        return sum(o.steps for o in self.outcomes) / max(len(self.outcomes), 1)

    def failures(self) -> Counter:
        """Failure category → count."""
        return Counter(o.failure for o in self.outcomes if o.failure)

    def by_category(self) -> dict[str, tuple[int, int]]:
        """Category → (solved, total)."""
        out: dict[str, list[int]] = {}
        for o in self.outcomes:
            out.setdefault(o.category, [0, 0])
            out[o.category][0] += o.success
            out[o.category][1] += 1
        return {k: (v[0], v[1]) for k, v in out.items()}


def run_suite(backend: Any, tasks: Sequence[AgentTask] | None = None, *, native: bool = False,
              trace_dir: str | Path | None = None,
              on_outcome: Callable[[TaskOutcome], None] | None = None,
              backend_for: Callable[[AgentTask], Any] | None = None,
              **agent_kwargs: Any) -> SuiteReport:  # fmt: skip
    """Run ``tasks`` (default: all of :func:`build_tasks`) with ``backend`` (or
    ``backend_for(task)``, e.g. a scripted oracle per task)."""
    outcomes = []
    for task in tasks if tasks is not None else build_tasks():
        b = backend_for(task) if backend_for else backend
        o = run_task(task, b, native=native, trace_dir=trace_dir, **agent_kwargs)
        outcomes.append(o)
        if on_outcome:
            on_outcome(o)
    return SuiteReport(outcomes)


#: The course exercise: three failure modes, the guard that fixes each, and the Agent settings
#: that turn that guard off.
GUARDS: dict[str, tuple[str, dict[str, Any]]] = {
    "repeated action": ("loop detection", {"loop_detection": False}),
    "invalid arguments": ("argument validation + recovery message", {"recover_arguments": False}),
    "context overflow": ("scratchpad bound", {"scratchpad_chars": None}),
}


def failure_counts(report: SuiteReport) -> dict[str, int]:
    """What each failure mode costs in ``report``: ``repeated_steps`` (steps repeating an
    earlier action), ``invalid_argument_calls`` (calls rejected for their arguments or format),
    ``context_errors`` (runs ended by the backend: prompt too long), ``solved``."""
    return {
        "repeated_steps": sum(o.repeats for o in report.outcomes),
        "invalid_argument_calls": sum(o.guards.get("invalid_arguments", 0)
                                      + o.guards.get("format", 0) for o in report.outcomes),
        "context_errors": sum(o.stopped_reason == "backend_error" for o in report.outcomes),
        "solved": sum(o.success for o in report.outcomes),
        "steps": sum(o.steps for o in report.outcomes),
    }  # fmt: skip


def guard_ablation(backend: Any, tasks: Sequence[AgentTask], *,
                   backend_for: Callable[[AgentTask, str], Any] | None = None,
                   **agent_kwargs: Any) -> dict[str, dict[str, dict[str, int]]]:  # fmt: skip
    """For each failure mode of :data:`GUARDS`: :func:`failure_counts` on ``tasks`` with its
    guard off ("before") and with every guard on ("after"). ``backend_for(task, mode)`` may
    supply a backend per run (the scripted failure demonstrations); without it the "after"
    run is shared by the three modes (same settings, greedy decoding)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    shared = None
    for mode, (_guard, off) in GUARDS.items():
        per_task = (lambda t, m=mode: backend_for(t, m)) if backend_for else None
        before = run_suite(backend, tasks, backend_for=per_task, **{**agent_kwargs, **off})
        if per_task is None and shared is not None:
            after = shared
        else:
            after = run_suite(backend, tasks, backend_for=per_task, **agent_kwargs)
            shared = after if per_task is None else None
        out[mode] = {"before": failure_counts(before), "after": failure_counts(after)}
    return out


_ERROR_MARKS = ("could not be used", "JSON object", "invalid arguments", "Fix the call", "ERROR")


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next((m.get("content") or "" for m in reversed(messages) if m["role"] == "user"), "")


def failure_script(task: AgentTask, mode: str) -> Callable[[list[dict[str, Any]]], str] | list:
    """A scripted weak model that shows ``mode`` on ``task`` (for :class:`ScriptedBackend`):

    - "repeated action": repeats its first action until told it already made that call, then
      answers;
    - "invalid arguments": writes its Action Input as plain text until an observation brings a
      real result, then answers;
    - "context overflow": the oracle (it reads every file; pair it with ``context_chars``).
    """
    first, answer = task.oracle[0], task.oracle[-1]
    if mode == "repeated action":
        return lambda msgs: answer if "Do not repeat it" in _last_user(msgs) else first
    if mode == "invalid arguments":
        m = re.search(r"Action Input: (\{.*\})", first)
        args = json.loads(m.group(1)) if m else {}
        if len(args) != 1:
            return list(task.oracle)
        bad = first.replace(m.group(0), f"Action Input: {next(iter(args.values()))}")

        def reply(msgs: list[dict[str, Any]]) -> str:
            text = _last_user(msgs)
            if "Observation:" not in text:
                return bad
            last = text.rsplit("Observation:", 1)[1]
            return bad if any(k in last for k in _ERROR_MARKS) else answer

        return reply
    return list(task.oracle)
