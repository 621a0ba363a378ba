"""The module's two measurements, as functions the examples run.

- :func:`tool_call_validity` — on a fixed prompt set (:data:`TOOL_CALL_PROMPTS`, each needing a
  call) the share of replies that contain a call which parses, names a real tool and whose
  arguments validate: ``mode="plain"`` (ordinary generation, then :func:`parse_tool_calls`) vs
  ``"constrained"`` (``chat_with_tools``: g2c's engine decodes under the tools' schemas). Both
  modes see the same system prompt (:data:`g2c.inference.backends.TOOL_PROMPT`), so only the
  decoding differs.
- :func:`arithmetic_questions` / :func:`arithmetic_accuracy` — the course exercise: accuracy
  on multi-digit arithmetic of the model alone vs the model with the calculator.

Also :func:`open_backend`: a ``--model`` string (``smollm2``, a run or model directory, an
``http://`` URL of an OpenAI-compatible or Ollama server) → a :class:`~g2c.inference.Backend`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from g2c.inference.backends import TOOL_PROMPT, Backend, backend_from_spec
from g2c.tools.core import ToolRegistry, parse_tool_calls, run_with_tools, validate_arguments


def open_backend(spec: str, *, model_id: str | None = None, max_len: int = 2048,
                 device: str = "cpu") -> Backend:  # fmt: skip
    """A backend from a ``--model`` string (``smollm2``, a run or model directory,
    ``http(s)://HOST/v1[#MODEL]``, ``http://HOST:11434#MODEL``, ``ollama:NAME``):
    :func:`g2c.inference.backend_from_spec`, the one place such strings are resolved; an empty
    spec → ValueError."""
    return backend_from_spec(spec, model_id=model_id, max_len=max_len, device=device)


# -- valid-call rate -----------------------------------------------------------------------------
#: (prompt, the tool a correct reply calls). Fixed: the numbers in the docs come from these.
TOOL_CALL_PROMPTS: tuple[tuple[str, str], ...] = (
    ("What is 4821 * 37?", "calculator"),
    ("Compute (1250 - 378) / 4.", "calculator"),
    ("How much is 17 to the power of 5?", "calculator"),
    ("Add 98765 and 12345.", "calculator"),
    ("What is 15% of 2480?", "calculator"),
    ("Divide 7 by 3 and give the result.", "calculator"),
    ("What is the square root of 1764?", "calculator"),
    ("Multiply 345 by 678.", "calculator"),
    ("Search the documents for the boiling point of water.", "web_search"),
    ("Find information about the Eiffel Tower.", "web_search"),
    ("Look up who wrote Pride and Prejudice.", "web_search"),
    ("Search for the capital of Australia.", "web_search"),
    ("Find documents about photosynthesis.", "web_search"),
    ("Read the file notes.txt.", "read_file"),
    ("Show me what is in data/report.md.", "read_file"),
    ("Open the file todo.txt and read it.", "read_file"),
    ("Read config.json.", "read_file"),
    ("Write 'hello world' to the file greeting.txt.", "write_file"),
    ("Save the text 'done' into status.txt.", "write_file"),
    ("Create a file named list.txt containing 'apples, pears'.", "write_file"),
)


@dataclasses.dataclass
class ValidityReport:
    """:func:`tool_call_validity`'s result: ``mode``, ``n`` prompts, ``parsed`` (replies with
    at least one call that parses), ``valid`` (a call to a real tool with valid arguments),
    ``right_tool`` (valid and the expected tool), ``seconds``, and ``records`` (one dict per
    prompt: prompt, output, calls, problems)."""

    mode: str
    n: int
    parsed: int
    valid: int
    right_tool: int
    seconds: float
    records: list[dict[str, Any]]

    @property
    def valid_rate(self) -> float:
        """``valid / n``."""
        return self.valid / self.n if self.n else 0.0


def _tool_system(registry: ToolRegistry) -> str:
    listing = "\n".join(json.dumps({"name": t.name, "description": t.description,
                                    "parameters": t.parameters}) for t in registry)  # fmt: skip
    return TOOL_PROMPT.format(functions=listing)


def tool_call_validity(
    backend: Backend,
    registry: ToolRegistry,
    prompts: Sequence[tuple[str, str]] = TOOL_CALL_PROMPTS,
    *,
    mode: str = "constrained",
    max_new_tokens: int = 160,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> ValidityReport:
    """Share of ``prompts`` answered with a valid tool call, with ``mode`` "plain" (the tools
    described in the system prompt, ordinary decoding, :func:`parse_tool_calls`),
    "constrained" (``chat_with_tools``, the model decides whether to call: ``tool_choice``
    "auto") or "required" (``chat_with_tools(tool_choice="required")``, g2c's engine only).
    Greedy decoding. Unknown mode → ValueError."""
    if mode not in ("plain", "constrained", "required"):
        raise ValueError(f"mode must be plain, constrained or required, got {mode!r}")
    records, t0 = [], time.perf_counter()
    for prompt, expected in prompts:
        user = [{"role": "user", "content": prompt}]
        if mode == "plain":
            msgs = [{"role": "system", "content": _tool_system(registry)}, *user]
            output = backend.chat(msgs, max_new_tokens=max_new_tokens).completion
            found = parse_tool_calls(output)
            calls = [(c.name, c.arguments) for c in found]
            errors = list(found.errors)
        else:
            kw = {"tool_choice": "required"} if mode == "required" else {}
            res = backend.chat_with_tools(user, registry.to_openai(),
                                          max_new_tokens=max_new_tokens, **kw)  # fmt: skip
            output = res.content + "".join(json.dumps(c) for c in res.tool_calls)
            calls = [(c["name"], c["arguments"]) for c in res.tool_calls]
            errors = []
        problems = []
        valid_names = []
        for name, args in calls:
            tool = registry.get(name)
            p = ["unknown tool"] if tool is None else validate_arguments(tool, args)
            problems.append(p)
            if not p:
                valid_names.append(name)
        rec = {"prompt": prompt, "expected": expected, "output": output, "calls": calls,
               "parse_errors": errors, "problems": problems, "parsed": bool(calls),
               "valid": bool(valid_names), "right_tool": expected in valid_names}  # fmt: skip
        records.append(rec)
        if on_record:
            on_record(rec)
    return ValidityReport(mode, len(records), sum(r["parsed"] for r in records),
                          sum(r["valid"] for r in records),
                          sum(r["right_tool"] for r in records), time.perf_counter() - t0,
                          records)  # fmt: skip


# -- the arithmetic exercise ---------------------------------------------------------------------
def arithmetic_questions(n: int = 100, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` multi-digit arithmetic questions with exact integer answers (seeded): sums and
    differences of 3–5 digit numbers, products of 2–3 digit numbers, and two-step mixes."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            a, b = rng.randint(100, 99999), rng.randint(100, 99999)
            q, ans = f"{a} + {b}", a + b
        elif kind == 1:
            a, b = rng.randint(1000, 99999), rng.randint(100, 9999)
            q, ans = f"{a} - {b}", a - b
        elif kind == 2:
            a, b = rng.randint(12, 999), rng.randint(12, 99)
            q, ans = f"{a} * {b}", a * b
        else:
            a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(100, 999)
            q, ans = f"{a} * {b} + {c}", a * b + c
        out.append((f"What is {q}?", ans))
    return out


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_number(text: str) -> float | None:
    """The answer number in a reply: the last number of its first non-empty line (``"12*3 =
    36"`` → 36), thousands separators removed; None when there is none."""
    for line in text.splitlines():
        if line.strip():
            found = _NUMBER.findall(line)
            if found:
                try:
                    return float(found[-1].replace(",", ""))
                except ValueError:
                    return None
            return None
    return None


@dataclasses.dataclass
class ArithmeticReport:
    """:func:`arithmetic_accuracy`'s result: ``mode``, ``n``, ``correct``, ``tool_calls``
    (calls made), ``seconds``, ``records`` (question, answer, reply, correct)."""

    mode: str
    n: int
    correct: int
    tool_calls: int
    seconds: float
    records: list[dict[str, Any]]

    @property
    def accuracy(self) -> float:
        """``correct / n``."""
        return self.correct / self.n if self.n else 0.0


def arithmetic_accuracy(
    backend: Backend,
    questions: Sequence[tuple[str, int]],
    *,
    registry: ToolRegistry | None = None,
    max_steps: int = 3,
    max_new_tokens: int = 96,
    require_call: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> ArithmeticReport:
    """Accuracy on ``questions``: without ``registry`` the model answers alone (one chat
    turn); with it, :func:`run_with_tools` (native calls where the backend has them). A reply
    is correct when :func:`extract_number` equals the answer. ``require_call`` forces a
    calculator call on the first turn on g2c's engine (``tool_choice="required"``)."""
    records, calls, t0 = [], 0, time.perf_counter()
    suffix = " Reply with the number only."
    for question, answer in questions:
        if registry is None:
            msgs = [{"role": "user", "content": question + suffix}]
            reply = backend.chat(msgs, max_new_tokens=max_new_tokens).completion
            n_calls = 0
        else:
            run = run_with_tools(backend, registry, question + suffix, max_steps,
                                 max_new_tokens=max_new_tokens,
                                 require_first_call=require_call)  # fmt: skip
            reply, n_calls = run.answer, len(run.calls)
        got = extract_number(reply)
        ok = got is not None and abs(got - answer) < 1e-6
        calls += n_calls
        rec = {"question": question, "answer": answer, "reply": reply, "correct": ok,
               "tool_calls": n_calls}  # fmt: skip
        records.append(rec)
        if on_record:
            on_record(rec)
    return ArithmeticReport("tools" if registry else "alone", len(records),
                            sum(r["correct"] for r in records), calls,
                            time.perf_counter() - t0, records)  # fmt: skip
