"""Tools a language model can call: the types, the registry, parsing, dispatch, the loop.

A :class:`Tool` is a name, a description, a JSON Schema for its arguments and a Python
function. The model asks for a call in text (``<tool_call>{"name": ..., "arguments": {...}}
</tool_call>``, the format g2c's engine writes for native calls, see
:mod:`g2c.inference.constrained`) or natively (``Backend.chat_with_tools``);
:func:`parse_tool_calls` reads either, :func:`dispatch_tool_call` validates the arguments
(``jsonschema``) and runs the function with a time limit and an output bound, and
:func:`run_with_tools` loops model → calls → results → model until the model answers.

Every failure of a call — unknown tool, arguments that do not match the schema, a function that
raises, hangs or floods its output — becomes a :class:`ToolResult` with ``is_error=True`` whose
text tells the model what went wrong and how to fix it; nothing here raises into the caller's
loop. Source: the OpenAI function-calling format and the Hermes/Qwen ``<tool_call>`` format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jsonschema

from g2c.inference.backends import Backend
from g2c.inference.constrained import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_OUTPUT_CHARS = 8000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class ToolError(Exception):
    """A tool refused or failed in a way the model should be told about (a path outside the
    root, a file that does not exist, code that timed out). Its message is the observation."""


def _new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:12]


@dataclasses.dataclass(frozen=True)
class Tool:
    """A function the model may call.

    Args:
        name: identifier the model writes (letters, digits, ``_.-``; at most 64 characters).
        description: one or two sentences telling the model when to use it.
        parameters: JSON Schema of the arguments object (``{"type": "object", "properties":
            {...}, "required": [...]}``); checked with ``jsonschema`` when the tool is made.
        func: called as ``func(**arguments)``; returns a string (or anything JSON-serialisable)
            or raises :class:`ToolError` with a message for the model.
        timeout_s: wall-clock seconds :func:`dispatch_tool_call` waits for ``func``.
        max_output_chars: longer outputs are cut (the model is told how much was cut).

    Raises:
        ValueError: a bad name, an invalid schema, a non-positive limit.
        TypeError: a non-callable ``func`` or a non-dict ``parameters``.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"name must match {_NAME.pattern} (e.g. 'calculator'), got "
                             f"{self.name!r}")  # fmt: skip
        if not isinstance(self.description, str):
            raise TypeError(f"description must be a str, got {type(self.description).__name__}")
        if not isinstance(self.parameters, dict):
            raise TypeError(f"parameters must be a JSON Schema dict, got "
                            f"{type(self.parameters).__name__}")  # fmt: skip
        try:
            jsonschema.Draft202012Validator.check_schema(self.parameters)
        except jsonschema.SchemaError as e:
            raise ValueError(f"parameters of tool {self.name!r} is not a valid JSON Schema: "
                             f"{e.message}") from None  # fmt: skip
        if self.parameters.get("type", "object") != "object":
            raise ValueError(f"parameters of tool {self.name!r} must describe an object "
                             f"(type 'object'), got type {self.parameters.get('type')!r}")  # fmt: skip
        if not callable(self.func):
            raise TypeError(f"func of tool {self.name!r} must be callable")
        for field in ("timeout_s", "max_output_chars"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{field} must be a positive number, got {value!r}")

    def to_openai(self) -> dict[str, Any]:
        """``{"type": "function", "function": {name, description, parameters}}``."""
        return {"type": "function", "function": {"name": self.name, "description":
                self.description, "parameters": self.parameters}}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A call the model asked for: ``name``, ``arguments`` (a dict, as parsed), ``call_id``
    (generated when not given). Arguments are validated at dispatch, not here."""

    name: str
    arguments: dict[str, Any]
    call_id: str = dataclasses.field(default_factory=_new_call_id)

    def to_text(self) -> str:
        """The call as the model writes it: ``<tool_call>{"name", "arguments"}</tool_call>``."""
        body = json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)
        return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """What a call returned: ``call_id`` and ``name`` of the call, ``output`` (text for the
    model), ``is_error`` (True for every failure: the output then says what to fix)."""

    call_id: str
    name: str
    output: str
    is_error: bool = False


class ToolRegistry:
    """Tools by name, in registration order. ``ToolRegistry(tools=())``; ``register(tool)``
    (a duplicate name → ValueError, a non-:class:`Tool` → TypeError); ``registry[name]`` /
    ``get(name)``; ``name in registry``; iteration yields the tools in order."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> Tool:
        """Add ``tool``; returns it."""
        if not isinstance(tool, Tool):
            raise TypeError(f"tool must be a g2c.tools.Tool, got {type(tool).__name__}")
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        if name not in self._tools:
            raise KeyError(f"no tool named {name!r}; registered: {', '.join(self._tools)}")
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        """Registered names in order."""
        return list(self._tools)

    def to_openai(self) -> list[dict[str, Any]]:
        """Every tool in the OpenAI function format (for ``Backend.chat_with_tools``)."""
        return [t.to_openai() for t in self]


def validate_arguments(tool: Tool | Mapping[str, Any], arguments: Any) -> list[str]:
    """Problems of ``arguments`` against the tool's schema (or a schema given directly), as
    messages a model can act on; ``[]`` means valid. Uses ``jsonschema`` (Draft 2020-12)."""
    schema = tool.parameters if isinstance(tool, Tool) else tool
    if not isinstance(schema, Mapping):
        raise TypeError(f"tool must be a Tool or a JSON Schema dict, got {type(tool).__name__}")
    if not isinstance(arguments, dict):
        return [f"arguments must be a JSON object, got {type(arguments).__name__}"]
    validator = jsonschema.Draft202012Validator(dict(schema))
    problems = []
    for err in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in err.path)
        problems.append(f"{where}: {err.message}" if where else err.message)
    return problems


def render_tools_for_prompt(tools: ToolRegistry | Iterable[Tool], *, instructions: bool = True
                            ) -> str:  # fmt: skip
    """A system-prompt block describing ``tools`` (name, description, parameters schema) and,
    with ``instructions``, how to call one (the ``<tool_call>`` format)."""
    tools = list(tools)
    if not all(isinstance(t, Tool) for t in tools):
        raise TypeError("tools must be a ToolRegistry or an iterable of Tool")
    lines = ["You can use these tools:"]
    for t in tools:
        lines.append(f"- {t.name}: {t.description}")
        lines.append(f"  arguments (JSON Schema): {json.dumps(t.parameters)}")
    if instructions:
        lines += [
            "To call a tool, reply with exactly one line:",
            f'{TOOL_CALL_OPEN}{{"name": "<tool name>", "arguments": {{...}}}}{TOOL_CALL_CLOSE}',
            "You will get the result in a <tool_response> block. When you know the answer, "
            "reply with the answer only, without a tool call.",
        ]
    return "\n".join(lines)


# -- parsing -------------------------------------------------------------------------------------
class ParsedToolCalls(list):
    """The calls :func:`parse_tool_calls` found (a list of :class:`ToolCall`), with ``errors``:
    one message per malformed call that was skipped."""

    def __init__(self, calls: Iterable[ToolCall] = (), errors: Iterable[str] = ()) -> None:
        super().__init__(calls)
        self.errors: list[str] = list(errors)


_FENCE = re.compile(r"```[ \t]*(?:json|tool_call|JSON)?[ \t]*\n(.*?)```", re.DOTALL)
_NAME_KEYS = ("name", "tool", "tool_name", "function")
_ARG_KEYS = ("arguments", "parameters", "args", "input")


def _call_from_obj(obj: Any, where: str, calls: list, errors: list) -> None:
    """Append the call(s) in a decoded JSON value (a call, a list of calls, an OpenAI message or
    tool_calls entry) to ``calls``; problems to ``errors``."""
    if isinstance(obj, list):
        if not obj:
            errors.append(f"{where}: an empty list, expected a call object")
        for n, item in enumerate(obj):
            _call_from_obj(item, f"{where}[{n}]", calls, errors)
        return
    if not isinstance(obj, dict):
        errors.append(f"{where}: expected an object with 'name' and 'arguments', got "
                      f"{type(obj).__name__}")  # fmt: skip
        return
    if isinstance(obj.get("tool_calls"), list):  # an OpenAI assistant message
        _call_from_obj(obj["tool_calls"], f"{where}.tool_calls", calls, errors)
        return
    call_id = obj.get("call_id") or obj.get("id")
    if isinstance(obj.get("function"), dict):  # OpenAI {"id", "type", "function": {...}}
        obj = obj["function"]
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if not name:
        errors.append(f"{where}: the call has no 'name' string: {json.dumps(obj)[:120]}")
        return
    args = next((obj[k] for k in _ARG_KEYS if k in obj), {})
    if isinstance(args, str):  # OpenAI sends arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            errors.append(f"{where}: arguments of {name!r} are not valid JSON ({e.msg})")
            return
    if not isinstance(args, dict):
        errors.append(f"{where}: arguments of {name!r} must be a JSON object, got "
                      f"{type(args).__name__}")  # fmt: skip
        return
    calls.append(ToolCall(name, args, str(call_id) if call_id else _new_call_id()))


def _decode(body: str, where: str, calls: list, errors: list) -> None:
    body = body.strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        errors.append(f"{where}: not valid JSON ({e.msg} at character {e.pos}): {body[:120]!r}")
        return
    _call_from_obj(obj, where, calls, errors)


def _bare_objects(text: str) -> Iterator[Any]:
    """JSON objects that appear in running text and look like calls (have a name key and an
    arguments key)."""
    decoder = json.JSONDecoder()
    i = text.find("{")
    while i >= 0:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict) and (
            isinstance(obj.get("tool_calls"), list)
            or (any(k in obj for k in _NAME_KEYS) and any(k in obj for k in _ARG_KEYS))
        ):
            yield obj
        i = text.find("{", end)


def parse_tool_calls(text: str | Mapping[str, Any] | list) -> ParsedToolCalls:
    """Every tool call in a model's output, leniently.

    Reads, in this order of preference (the first form present wins):

    1. ``<tool_call>{json}</tool_call>`` blocks (g2c's engine, Hermes/Qwen/SmolLM2 style; a
       missing closing tag is tolerated, a block may hold a list of calls);
    2. fenced code blocks (```` ```json ... ``` ````) holding a call object or a list of them;
    3. bare JSON objects in the text with a name key and an arguments key;

    and OpenAI-style native calls: a dict (an assistant message with ``tool_calls``, or one
    ``{"id", "type": "function", "function": {"name", "arguments": "<json string>"}}``) or a
    list of them, also when they appear as JSON in the text. ``arguments`` given as a JSON
    string are decoded. Aliases accepted: ``parameters``/``args``/``input`` for arguments.

    Returns:
        :class:`ParsedToolCalls` — a list of :class:`ToolCall`; ``.errors`` holds one message
        per malformed call that was skipped (bad JSON, no name, arguments not an object).

    Raises:
        TypeError: ``text`` is not a str, dict or list.
    """
    calls: list[ToolCall] = []
    errors: list[str] = []
    if isinstance(text, (Mapping, list)):
        _call_from_obj(dict(text) if isinstance(text, Mapping) else text, "call", calls, errors)
        return ParsedToolCalls(calls, errors)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (model output) or a dict/list of native calls, got "
                        f"{type(text).__name__}")  # fmt: skip
    if TOOL_CALL_OPEN in text:
        pieces = text.split(TOOL_CALL_OPEN)[1:]
        for n, piece in enumerate(pieces, 1):
            body = piece.split(TOOL_CALL_CLOSE)[0]
            _decode(body, f"tool call {n}", calls, errors)
        return ParsedToolCalls(calls, errors)
    fenced = _FENCE.findall(text)
    if fenced:
        for n, body in enumerate(fenced, 1):
            _decode(body, f"code block {n}", calls, errors)
        return ParsedToolCalls(calls, errors)
    for n, obj in enumerate(_bare_objects(text), 1):
        _call_from_obj(obj, f"json object {n}", calls, errors)
    return ParsedToolCalls(calls, errors)


def format_tool_results(results: ToolResult | Iterable[ToolResult]) -> str:
    """Results as text for the next model turn: one ``<tool_response name=... id=...>`` block
    each; a failed call's block is marked ``error="true"`` and its text starts with ERROR."""
    if isinstance(results, ToolResult):
        results = [results]
    blocks = []
    for r in results:
        if not isinstance(r, ToolResult):
            raise TypeError(f"results must be ToolResult objects, got {type(r).__name__}")
        flag = ' error="true"' if r.is_error else ""
        text = f"ERROR: {r.output}" if r.is_error else r.output
        blocks.append(f'<tool_response name="{r.name}" id="{r.call_id}"{flag}>\n{text}\n'
                      "</tool_response>")  # fmt: skip
    return "\n".join(blocks)


# -- dispatch ------------------------------------------------------------------------------------
class _BoundedBuffer:
    """Keeps the first ``limit`` characters written to it and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.kept, self.total = limit, [], 0, 0

    def write(self, s: str) -> int:
        self.total += len(s)
        if self.kept < self.limit:
            piece = s[: self.limit - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)
        return len(s)

    def text(self) -> str:
        return "".join(self.parts)


class _ThreadStdout:
    """A ``sys.stdout`` stand-in that sends the writes of threads running a tool to that tool's
    bounded buffer and everything else to the real stdout (``redirect_stdout`` would capture
    every thread's output, the caller's included)."""

    _lock = threading.Lock()
    _installed: _ThreadStdout | None = None

    def __init__(self, real: Any) -> None:
        self.real = real
        self.buffers: dict[int, _BoundedBuffer] = {}

    def write(self, s: str) -> int:
        buf = self.buffers.get(threading.get_ident())
        return buf.write(s) if buf is not None else self.real.write(s)

    def flush(self) -> None:
        if threading.get_ident() not in self.buffers:
            self.real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @classmethod
    @contextlib.contextmanager
    def capture(cls, buf: _BoundedBuffer) -> Iterator[None]:
        with cls._lock:
            if cls._installed is None or sys.stdout is not cls._installed:
                cls._installed = cls(sys.stdout)
                sys.stdout = cls._installed
            proxy = cls._installed
        proxy.buffers[threading.get_ident()] = buf
        try:
            yield
        finally:
            proxy.buffers.pop(threading.get_ident(), None)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output truncated: {len(text) - limit} more characters not shown]"


def dispatch_tool_call(
    registry: ToolRegistry,
    call: ToolCall,
    *,
    timeout_s: float | None = None,
    max_output_chars: int | None = None,
) -> ToolResult:
    """Run one call and return its :class:`ToolResult`; never raises for anything the call or
    the tool does.

    Steps: look the tool up (unknown → error listing the tools), validate the arguments
    against its schema (problems → error listing them and the schema), run ``func(**arguments)``
    in a worker thread for at most ``timeout_s`` (default: the tool's; a hang → error; the
    thread cannot be killed and is left to finish as a daemon, so tools that can run long — like
    ``run_python`` — enforce their own limit inside), capture what it prints (bounded), and cut
    the output to ``max_output_chars`` (default: the tool's). :class:`ToolError` → its message;
    any other exception → ``"<ExceptionType>: <message>"`` (no traceback).

    Raises:
        TypeError: ``registry`` is not a :class:`ToolRegistry` or ``call`` not a
            :class:`ToolCall` (programming errors, not model errors).
    """
    if not isinstance(registry, ToolRegistry):
        raise TypeError(f"registry must be a ToolRegistry, got {type(registry).__name__}")
    if not isinstance(call, ToolCall):
        raise TypeError(f"call must be a ToolCall, got {type(call).__name__}")
    tool = registry.get(call.name) if isinstance(call.name, str) else None
    if tool is None:
        return ToolResult(call.call_id, str(call.name), f"there is no tool named {call.name!r}; "
                          f"available tools: {', '.join(registry.names)}", True)  # fmt: skip
    problems = validate_arguments(tool, call.arguments)
    if problems:
        return ToolResult(call.call_id, tool.name, "invalid arguments for "
                          f"{tool.name}: {'; '.join(problems)}. Call it again with arguments "
                          f"matching this schema: {json.dumps(tool.parameters)}", True)  # fmt: skip
    limit = int(max_output_chars or tool.max_output_chars)
    timeout = float(timeout_s or tool.timeout_s)
    printed = _BoundedBuffer(limit + 1)
    box: dict[str, Any] = {}

    def work() -> None:
        with _ThreadStdout.capture(printed):
            try:
                box["value"] = tool.func(**call.arguments)
            except ToolError as e:
                box["error"] = str(e) or "the tool failed"
            except BaseException as e:  # noqa: BLE001 - a tool's failure is an observation
                box["error"] = f"{type(e).__name__}: {e}"

    worker = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return ToolResult(call.call_id, tool.name, f"{tool.name} did not finish within "
                          f"{timeout:g} s and was abandoned; try a smaller input", True)  # fmt: skip
    text = printed.text()
    if printed.total > printed.kept:
        text += f"\n[printed output truncated: {printed.total - printed.kept} characters]"
    if "error" in box:
        return ToolResult(call.call_id, tool.name, _cut(box["error"], limit), True)
    value = _to_text(box.get("value"))
    out = (text + ("\n" if text and value else "") + value) if text else value
    return ToolResult(call.call_id, tool.name, _cut(out, limit))


# -- the loop ------------------------------------------------------------------------------------
@dataclasses.dataclass
class ToolRunResult:
    """What :func:`run_with_tools` did: ``answer`` (the model's final text, "" if it never gave
    one), ``stopped_reason`` ("answer", "max_steps" or "invalid_calls"), ``calls`` and
    ``results`` (in order), ``messages`` (the whole conversation), ``steps`` (model turns),
    ``native`` (whether the backend's native tool calling was used)."""

    answer: str
    stopped_reason: str
    calls: list[ToolCall]
    results: list[ToolResult]
    messages: list[dict[str, Any]]
    steps: int
    native: bool


def _native_available(backend: Any) -> bool:
    """True when ``backend`` overrides ``Backend.chat_with_tools``."""
    method = getattr(type(backend), "chat_with_tools", None)
    return callable(method) and method is not Backend.chat_with_tools


def _takes_tool_choice(backend: Any) -> bool:
    try:
        return "tool_choice" in inspect.signature(backend.chat_with_tools).parameters
    except (TypeError, ValueError):
        return False


def run_with_tools(
    backend: Any,
    registry: ToolRegistry,
    prompt: str,
    max_steps: int = 5,
    *,
    max_retries: int = 2,
    native: bool | None = None,
    system: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    require_first_call: bool = False,
) -> ToolRunResult:
    """Let the model behind ``backend`` answer ``prompt`` using the tools in ``registry``.

    Each step the model either calls tools (each is dispatched; the results go back as a
    message) or answers (the loop ends, ``stopped_reason="answer"``). ``native=None`` uses the
    backend's ``chat_with_tools`` when it has one (g2c's engine: schema-constrained decoding),
    else plain ``chat`` with the tools described in the system prompt and
    :func:`parse_tool_calls` on the reply. A reply with only malformed calls, or a step whose
    calls all fail, is answered with the error text so the model can fix it; after
    ``max_retries`` such steps in a row the loop stops (``"invalid_calls"``). ``max_steps``
    bounds the model turns (``"max_steps"``). ``require_first_call`` forces a call on the
    first turn where the backend's ``chat_with_tools`` takes ``tool_choice`` (g2c's engine).

    Raises:
        ValueError / TypeError: bad ``prompt``, ``max_steps``, ``max_retries`` or ``registry``.
    """
    if not isinstance(registry, ToolRegistry):
        raise TypeError(f"registry must be a ToolRegistry, got {type(registry).__name__}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    for name, value, low in (("max_steps", max_steps, 1), ("max_retries", max_retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    use_native = _native_available(backend) if native is None else bool(native)
    sys_text = system or "You are a helpful assistant. Use a tool when it helps."
    if not use_native:
        sys_text += "\n\n" + render_tools_for_prompt(registry)
    messages: list[dict[str, Any]] = [{"role": "system", "content": sys_text},
                                      {"role": "user", "content": prompt}]  # fmt: skip
    calls: list[ToolCall] = []
    results: list[ToolResult] = []
    failures = 0
    sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    for step in range(1, max_steps + 1):
        if use_native:
            force = require_first_call and step == 1 and _takes_tool_choice(backend)
            extra = {"tool_choice": "required"} if force else {}
            reply = backend.chat_with_tools(messages, registry.to_openai(), **sampling, **extra)
            content = reply.content
            found = ParsedToolCalls(ToolCall(c["name"], dict(c["arguments"]), c["call_id"])
                                    for c in reply.tool_calls)  # fmt: skip
        else:
            content = backend.chat(messages, **sampling).completion
            found = parse_tool_calls(content)
        if not found and not found.errors:
            messages.append({"role": "assistant", "content": content})
            return ToolRunResult(content.strip(), "answer", calls, results, messages, step,
                                 use_native)  # fmt: skip
        said = content if not use_native else content + "".join(c.to_text() for c in found)
        assistant: dict[str, Any] = {"role": "assistant", "content": said}
        if use_native:
            assistant["tool_calls"] = [{"id": c.call_id, "type": "function", "function": {
                "name": c.name, "arguments": json.dumps(c.arguments)}} for c in found]  # fmt: skip
        messages.append(assistant)
        step_results = [dispatch_tool_call(registry, c) for c in found]
        calls += found
        results += step_results
        if use_native:
            for r in step_results:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": r.call_id,
                        "name": r.name,
                        "content": r.output if not r.is_error else "ERROR: " + r.output,
                    }
                )
        feedback = []
        if found.errors:
            feedback.append("Some tool calls could not be read: " + "; ".join(found.errors)
                            + f". Write each call as {TOOL_CALL_OPEN}{{\"name\": \"<tool>\", "
                            f"\"arguments\": {{...}}}}{TOOL_CALL_CLOSE}")  # fmt: skip
        if step_results and not use_native:
            feedback.append(format_tool_results(step_results))
        if feedback:
            messages.append({"role": "user", "content": "\n".join(feedback)})
        bad = found.errors or (step_results and all(r.is_error for r in step_results))
        failures = failures + 1 if bad else 0
        if failures > max_retries:
            return ToolRunResult("", "invalid_calls", calls, results, messages, step, use_native)
    return ToolRunResult("", "max_steps", calls, results, messages, max_steps, use_native)
