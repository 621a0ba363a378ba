"""The "does this still work" gate: run the assistant through checked conversations.

:func:`run_evaluation` plays each :class:`~g2c.assistant.cases.EvalCase` against a FRESH
assistant built for it by ``make_assistant(folder)`` (the case's ``setup`` has written its files
into ``folder`` first), sends the case's turns in order, and asks the case's checker — code, no
model judge — whether the answers pass. The :class:`EvalReport` has the pass rate overall and
per category; :meth:`EvalReport.metrics` is what a gate file bounds
(``g2c eval MODEL --tasks assistant --gate FILE``, see :func:`check_report`).

:func:`assistant_factory` is the ``make_assistant`` the CLI and CI use: one backend (loaded
once) for every case, :func:`g2c.assistant.build_assistant` with the case folder as the tools'
root and its ``rag.sqlite`` (when the case wrote one) as the RAG index, and
:data:`GATE_CONFIG` (greedy, short answers, no planning turn) so the suite stays fast.
:data:`SMOLLM2_GATE` is the packaged gate for SmolLM2-135M-Instruct (thresholds measured on it,
docs/modules/20-assistant-gate.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from g2c.assistant.cases import CATEGORIES, RAG_INDEX, EvalCase, assistant_cases
from g2c.assistant.conversation import AssistantError
from g2c.assistant.core import Assistant, AssistantConfig, AssistantTurn
from g2c.assistant.factory import build_assistant
from g2c.eval.gate import GateFailure, check_gate, load_gate
from g2c.inference import backend_from_spec

#: The assistant settings of the gate: greedy, short answers, at most 4 tool steps, no
#: planning turn (ReAct mode) — what keeps the suite within a few minutes on a CPU.
GATE_CONFIG: dict[str, Any] = {"temperature": 0.0, "max_new_tokens": 32, "max_steps": 4,
                               "plan": False, "rag_k": 3}  # fmt: skip
#: A case that needs a tool gets at least this many new tokens per model call (room for a
#: complete schema-constrained call), whatever the assistant's ``max_new_tokens``.
TOOL_MIN_NEW_TOKENS = 64
#: The gate file shipped for SmolLM2-135M-Instruct (``[assistant]`` table as JSON).
SMOLLM2_GATE = Path(__file__).with_name("gate_smollm2.json")
#: The name of the task in ``g2c eval`` and in gate files.
TASK = "assistant"


@dataclasses.dataclass
class EvalCaseResult:
    """One case's outcome: ``name``, ``category``, ``passed``, ``detail`` (the checker's
    reason, or the error), ``turns`` (each turn as :meth:`AssistantTurn.to_dict`, with the
    user's ``"user"`` text added), ``seconds`` (wall time of the case)."""

    name: str
    category: str
    passed: bool
    detail: str
    turns: list[dict[str, Any]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class EvalReport:
    """The suite's outcome: ``n`` cases, ``passed`` of them, ``pass_rate`` (passed / n; NaN
    for none), ``by_category`` (category → ``{"n", "passed", "pass_rate"}``, in
    :data:`~g2c.assistant.cases.CATEGORIES` order then others), ``results`` (every
    :class:`EvalCaseResult`), ``seconds`` (total wall time)."""

    n: int
    passed: int
    pass_rate: float
    by_category: dict[str, dict[str, float]]
    results: list[EvalCaseResult]
    seconds: float = 0.0

    @classmethod
    def from_results(cls, results: Sequence[EvalCaseResult], seconds: float = 0.0) -> EvalReport:
        """Summarise ``results``."""
        cats: dict[str, dict[str, float]] = {}
        order = {c: i for i, c in enumerate(CATEGORIES)}
        for r in sorted(results, key=lambda r: order.get(r.category, len(order))):
            c = cats.setdefault(r.category, {"n": 0, "passed": 0, "pass_rate": 0.0})
            c["n"] += 1
            c["passed"] += int(r.passed)
        for c in cats.values():
            c["pass_rate"] = c["passed"] / c["n"]
        n, passed = len(results), sum(r.passed for r in results)
        return cls(n, passed, passed / n if n else float("nan"), cats, list(results), seconds)

    def metrics(self) -> dict[str, float]:
        """What a gate bounds: ``pass_rate``, ``passed`` (a count) and each category's pass
        rate under the category's name (``memory``, ``rag``, ``calculator`` ...)."""
        out = {"pass_rate": self.pass_rate, "passed": float(self.passed)}
        out.update({c: v["pass_rate"] for c, v in self.by_category.items()})
        return out

    def failures(self) -> list[EvalCaseResult]:
        """The cases that failed."""
        return [r for r in self.results if not r.passed]

    def table(self) -> str:
        """A Markdown table: one row per category, then the total."""
        rows = ["| category | passed | cases | pass rate |", "|---|---:|---:|---:|"]
        for c, v in self.by_category.items():
            rows.append(f"| {c} | {v['passed']} | {v['n']} | {v['pass_rate']:.2f} |")
        rows.append(f"| **all** | **{self.passed}** | **{self.n}** | **{self.pass_rate:.2f}** |")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the summary, the metrics and every result."""
        return {"task": TASK, "n": self.n, "passed": self.passed, "pass_rate": self.pass_rate,
                "seconds": self.seconds, "by_category": self.by_category,
                "metrics": self.metrics(), "results": [r.to_dict() for r in self.results]}  # fmt: skip


def _missing(assistant: Assistant, needs: Iterable[str]) -> list[str]:
    names = set(assistant.registry.names)
    out = []
    for need in needs:
        if need == "rag":
            if assistant.retriever is None or not assistant.config.rag_enabled:
                out.append("rag (a retriever)")
        elif need not in names or assistant.tool_mode == "none":
            out.append(f"the {need} tool")
    return out


def run_case(make_assistant: Callable[[Path], Assistant], case: EvalCase, folder: Path
             ) -> EvalCaseResult:  # fmt: skip
    """Run one case in ``folder`` (which must exist and is the case's working folder): setup,
    a fresh assistant, the turns, the checker. Any exception (setup, the assistant, the
    checker) makes the case fail with the error as its detail — never the whole suite."""
    t0 = time.perf_counter()
    turns: list[AssistantTurn] = []
    try:
        if case.setup is not None:
            case.setup(folder)
        assistant = make_assistant(folder)
        if case.config:
            assistant.update_config(**case.config)
        if any(n != "rag" for n in case.needs) and (
            assistant.config.max_new_tokens < TOOL_MIN_NEW_TOKENS
        ):
            assistant.update_config(max_new_tokens=TOOL_MIN_NEW_TOKENS)
        missing = _missing(assistant, case.needs)
        if missing:
            detail = f"needs {', '.join(missing)}, which this assistant lacks"
            return EvalCaseResult(case.name, case.category, False, detail, [],
                                  time.perf_counter() - t0)  # fmt: skip
        for text in case.turns:
            turns.append(assistant.chat(text))
        passed, detail = case.check(turns)
        passed = bool(passed)
    except Exception as e:  # noqa: BLE001 - one case's failure must not stop the suite
        passed, detail = False, f"error: {type(e).__name__}: {e}"
    records = [{"user": text, **t.to_dict()} for text, t in zip(case.turns, turns)]
    return EvalCaseResult(case.name, case.category, passed, str(detail), records,
                          time.perf_counter() - t0)  # fmt: skip


def run_evaluation(
    make_assistant: Callable[[Path], Assistant],
    cases: Sequence[EvalCase] | None = None,
    *,
    workdir: str | os.PathLike | None = None,
    on_result: Callable[[EvalCaseResult], None] | None = None,
) -> EvalReport:
    """Run ``cases`` (default: :func:`~g2c.assistant.cases.assistant_cases`) and summarise.

    ``make_assistant(folder) -> Assistant`` is called once per case, after the case's
    ``setup`` wrote its files into ``folder`` (e.g. :func:`assistant_factory`). ``workdir``:
    where the case folders go (``workdir/<case name>``, emptied first and kept afterwards for
    inspection); None = a temporary folder per case, deleted afterwards. ``on_result`` gets
    each :class:`EvalCaseResult` as it finishes (progress).

    Raises:
        TypeError: ``make_assistant`` not callable, a case that is not an EvalCase.
        ValueError: no cases, or two cases with the same name.
    """
    if not callable(make_assistant):
        raise TypeError("make_assistant must be a callable(folder) -> Assistant "
                        "(e.g. assistant_factory('smollm2'))")  # fmt: skip
    cases = assistant_cases() if cases is None else list(cases)
    if not cases:
        raise ValueError("cases is empty; give at least one EvalCase (or None for all)")
    bad = [c for c in cases if not isinstance(c, EvalCase)]
    if bad:
        raise TypeError(f"cases must be EvalCase objects, got {type(bad[0]).__name__}")
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"case names must be unique; repeated: {dupes}")
    root = Path(workdir) if workdir is not None else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = []
    for case in cases:
        if root is None:
            with tempfile.TemporaryDirectory(prefix=f"g2c-assistant-{case.name}-") as tmp:
                result = run_case(make_assistant, case, Path(tmp))
        else:
            folder = root / case.name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            result = run_case(make_assistant, case, folder)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return EvalReport.from_results(results, time.perf_counter() - t0)


def assistant_factory(
    model: Any = "smollm2",
    *,
    config: AssistantConfig | Mapping[str, Any] | None = None,
    **backend_kwargs: Any,
) -> Callable[[Path], Assistant]:
    """The gate's ``make_assistant``: ``model`` (a spec for
    :func:`g2c.inference.backend_from_spec` — ``"smollm2"``, a run folder,
    ``http://host:port/v1``, ``ollama:NAME`` — or a ready Backend) is opened ONCE here; each
    call builds :func:`~g2c.assistant.build_assistant` over that backend with the case folder
    as ``tools_root``, its ``rag.sqlite`` as ``rag_index`` when present, and ``config``
    (default: :data:`GATE_CONFIG`; a dict = changes to it). ``backend_kwargs`` go to
    ``backend_from_spec`` (``device``, ``api``, ``model_id`` ...). Bad config → AssistantError.
    """
    if config is None or isinstance(config, Mapping):
        try:
            cfg = AssistantConfig(**{**GATE_CONFIG, **dict(config or {})})
        except TypeError as e:
            raise AssistantError(f"config: {e}") from None
    elif isinstance(config, AssistantConfig):
        cfg = config
    else:
        raise AssistantError(f"config must be an AssistantConfig, a dict or None, got "
                             f"{type(config).__name__}")  # fmt: skip
    backend = backend_from_spec(model, **backend_kwargs) if isinstance(model, str) else model

    def make(folder: Path) -> Assistant:
        index = Path(folder) / RAG_INDEX
        return build_assistant(backend, rag_index=index if index.is_file() else None,
                               tools_root=folder, config=cfg)  # fmt: skip

    return make


# -- the gate --------------------------------------------------------------------------------------
def gate_toml(gate: Mapping[str, Mapping[str, Any]]) -> str:
    """A gate (``{task: {metric: minimum | {"min": X, "max": Y}}}``, as in a JSON gate file)
    as the TOML text :func:`g2c.eval.gate.load_gate` reads."""
    lines = []
    for task, table in gate.items():
        lines.append(f"[{task}]")
        for metric, bound in table.items() if isinstance(table, Mapping) else ():
            if isinstance(bound, Mapping):
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in bound.items())
                lines.append(f"{metric} = {{{inner}}}")
            else:
                lines.append(f"{metric} = {json.dumps(bound)}")
        lines.append("")
    return "\n".join(lines)


def _with_toml(gate: str | os.PathLike, fn: Callable[[Path], Any]) -> Any:
    """``fn(path)`` on the gate file — a JSON gate first written out as TOML, its errors naming
    the JSON file."""
    path = Path(gate)
    if path.suffix.lower() != ".json":
        return fn(path)
    if not path.is_file():
        raise FileNotFoundError(f"gate file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f'{path}: a JSON gate is {{"task": {{"metric": minimum}}}}, got '
                         f"{str(data)[:80]}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="g2c-gate-") as tmp:
        toml = Path(tmp) / "gate.toml"
        toml.write_text(gate_toml(data), encoding="utf-8")
        try:
            return fn(toml)
        except ValueError as e:
            raise ValueError(str(e).replace(str(toml), str(path))) from None


def read_gate(
    gate: str | os.PathLike,
    known: Mapping[str, Iterable[str]] | None = None,
    *,
    lower_is_better: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`g2c.eval.gate.load_gate` for a TOML or a JSON gate file (``{"assistant":
    {"pass_rate": 0.4}}``): ``{task: {metric: bound}}``, checked against ``known`` (task →
    metric names) when given. Errors as ``load_gate``, naming ``gate``."""
    return _with_toml(gate, lambda p: load_gate(p, known, lower_is_better=lower_is_better))


def known_metrics(cases: Sequence[EvalCase] | None = None) -> list[str]:
    """The metric names a gate may bound for ``cases`` (default: all built-in cases):
    ``pass_rate``, ``passed`` and the category names."""
    cats = dict.fromkeys(c.category for c in (assistant_cases() if cases is None else cases))
    return ["pass_rate", "passed", *cats]


def check_metrics(
    results: Mapping[str, Mapping[str, float]],
    gate: str | os.PathLike,
    *,
    lower_is_better: Mapping[str, Iterable[str]] | None = None,
) -> list[GateFailure]:
    """:func:`g2c.eval.gate.check_gate` on ``results`` (task → metric → value) with a gate
    file in TOML (``[assistant]`` / ``pass_rate = 0.4``) or JSON (``{"assistant":
    {"pass_rate": 0.4}}``, the packaged :data:`SMOLLM2_GATE`). Errors as ``check_gate``
    (naming ``gate``): malformed file, unknown task or metric, a bound that is no number."""
    return _with_toml(gate, lambda p: check_gate(results, p, lower_is_better=lower_is_better))


def check_report(report: EvalReport, gate: str | os.PathLike = SMOLLM2_GATE
                 ) -> list[GateFailure]:  # fmt: skip
    """The metrics of ``report`` (:meth:`EvalReport.metrics`, task ``assistant``) outside the
    bounds of gate file ``gate`` (TOML or JSON; default: the packaged SmolLM2 gate); [] = the
    gate passes. A category the gate names but the report lacks → ValueError."""
    return check_metrics({TASK: report.metrics()}, gate)


def load_report(path: str | os.PathLike) -> EvalReport:
    """Read back an ``assistant.json`` written by ``g2c eval --tasks assistant`` (the summary
    and the results; turns as dicts)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    results = [EvalCaseResult(**r) for r in data["results"]]
    return EvalReport.from_results(results, float(data.get("seconds", 0.0)))


__all__ = [
    "GATE_CONFIG",
    "SMOLLM2_GATE",
    "TASK",
    "TOOL_MIN_NEW_TOKENS",
    "EvalCase",
    "EvalCaseResult",
    "EvalReport",
    "assistant_cases",
    "assistant_factory",
    "check_metrics",
    "check_report",
    "gate_toml",
    "known_metrics",
    "read_gate",
    "load_report",
    "run_case",
    "run_evaluation",
]
