"""The agent loop: :class:`Agent` (ReAct in text, any backend) and :class:`NativeAgent`
(backends with native tool calls), with the guards that keep a weak model from wasting a run.

Per step: build the prompt (task, plan, the bounded :class:`~g2c.agent.core.Scratchpad`), ask
the model (stopping at ``Observation:``), read the reply (:func:`parse_react_step`), then
either finish, or run the action through :func:`g2c.tools.dispatch_tool_call`, or answer a
malformed reply with a message that says how to fix it. Guards:

===================  ==============================================================  =========
guard                what it catches                                                  stops as
===================  ==============================================================  =========
loop detection       the same action (tool + arguments) again: the first repeat gets   duplicate_action
                     the earlier result back with a warning, not a second run; the
                     next repeat ends the run
argument recovery    a plain-text Action Input for a one-argument tool is wrapped as    —
                     that argument; an invalid call is answered with the schema
no-progress          ``no_progress_steps`` steps in a row without a new successful      no_progress
                     observation (format errors, tool errors, repeats)
scratchpad bound     old steps dropped, long outputs cut: the prompt stays bounded      —
budgets              ``max_tokens`` (prompt + completion, summed), ``max_seconds``       token_budget,
                                                                                       time_budget
backend failure      the backend raised (server down, prompt too long)                 backend_error
===================  ==============================================================  =========

Every run appends JSON lines to a trace file: ``run_start``, ``plan``, one ``step`` per turn
(prompt size, model output, parsed action, tool result, timing), ``run_end``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from g2c.agent.core import (
    Action,
    AgentError,
    AgentRunResult,
    AgentStep,
    Observation,
    ParsedStep,
    Plan,
    Scratchpad,
    parse_react_step,
)
from g2c.inference.backends import takes_tool_choice
from g2c.tools import ToolCall, ToolRegistry, dispatch_tool_call

REACT_FORMAT = """Answer the task by thinking step by step and using tools. Use this format:

Thought: what to do next
Action: the tool name, one of [{names}]
Action Input: the arguments as a JSON object, e.g. {example}

Then stop and wait: the Observation (the tool's result) will be given to you.
When you know the answer, write:

Thought: I know the answer
Final Answer: the answer

Example (with a calculator tool):
Task: What is 2 + 3 * 4?
Thought: I should compute this with the calculator.
Action: calculator
Action Input: {{"expression": "2 + 3 * 4"}}
Observation: 14
Thought: I know the answer.
Final Answer: 14

Your tools:
{tools}"""

PLAN_PROMPT = ("Task: {task}\n\nWrite a short numbered plan (at most 4 steps) for solving this "
               "task with the tools {names}. Do not solve it yet.")  # fmt: skip


def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}{' or None' if allow_none else ''}, "
                         f"got {value!r}")  # fmt: skip


def default_trace_path() -> Path:
    """``$G2C_AGENT_TRACES`` (a folder) or the temp folder's ``g2c-agent/``, one new file per
    run: ``trace-<time>-<id>.jsonl``."""
    folder = Path(os.environ.get("G2C_AGENT_TRACES") or Path(tempfile.gettempdir(), "g2c-agent"))
    return folder / f"trace-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.jsonl"


def load_trace(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a trace file, in order. A missing file or a line that is not a JSON object
    → AgentError naming the file and line (a run killed mid-write leaves at most a cut last
    line, which is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise AgentError(f"trace file {str(path)!r} does not exist")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break
            raise AgentError(f"{path}:{n} is not a JSON line; is this an agent trace?") from None
        if not isinstance(obj, dict) or "type" not in obj:
            raise AgentError(f"{path}:{n} is not an agent trace record (no 'type')")
        records.append(obj)
    return records


class _Loop:
    """What both agents share: configuration, guards, budgets, the trace."""

    def __init__(
        self,
        backend: Any,
        registry: ToolRegistry,
        max_steps: int = 8,
        plan: bool = True,
        loop_detection: bool = True,
        *,
        recover_arguments: bool = True,
        no_progress_steps: int | None = 3,
        scratchpad_chars: int | None = 6000,
        max_tokens: int | None = None,
        max_seconds: float | None = None,
        max_new_tokens: int = 192,
        temperature: float = 0.0,
        trace_path: str | os.PathLike | None = None,
        system: str | None = None,
    ) -> None:
        if not isinstance(registry, ToolRegistry):
            raise TypeError(f"registry must be a g2c.tools.ToolRegistry, got "
                            f"{type(registry).__name__}")  # fmt: skip
        if not len(registry):
            raise ValueError("registry has no tools; register at least one")
        if not hasattr(backend, "chat"):
            raise TypeError(f"backend must be a g2c.inference.Backend, got {type(backend)}")
        _check_int("max_steps", max_steps, 1)
        _check_int("no_progress_steps", no_progress_steps, 1, allow_none=True)
        _check_int("max_tokens", max_tokens, 1, allow_none=True)
        _check_int("max_new_tokens", max_new_tokens, 1)
        if max_seconds is not None and (not isinstance(max_seconds, (int, float))
                                        or max_seconds <= 0):  # fmt: skip
            raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
        self.backend, self.registry = backend, registry
        self.max_steps, self.plan, self.loop_detection = max_steps, bool(plan), loop_detection
        self.recover_arguments, self.no_progress_steps = recover_arguments, no_progress_steps
        self.scratchpad_chars = scratchpad_chars
        Scratchpad(scratchpad_chars or 1_000_000)  # validates the bound now
        self.max_tokens, self.max_seconds = max_tokens, max_seconds
        self.sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        self.trace_path = trace_path
        self.system = system

    # -- shared pieces --------------------------------------------------------------------------
    def _start(self, task: str) -> dict[str, Any]:
        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty string")
        path = Path(self.trace_path) if self.trace_path else default_trace_path()
        state = {"path": path, "t0": time.perf_counter(), "tokens": 0, "seen": {},
                 "repeats": 0, "stale": 0, "guards": {}, "steps": []}  # fmt: skip
        info = getattr(self.backend, "info", None)
        self._log(state, "run_start", task=task, agent=type(self).__name__,
                  model=getattr(info, "model_id", None), backend=getattr(info, "name", None),
                  tools=self.registry.names, max_steps=self.max_steps, plan=self.plan,
                  loop_detection=self.loop_detection, recover_arguments=self.recover_arguments,
                  no_progress_steps=self.no_progress_steps,
                  scratchpad_chars=self.scratchpad_chars)  # fmt: skip
        return state

    def _log(self, state: dict, kind: str, **fields: Any) -> None:
        record = {"type": kind, "t": round(time.perf_counter() - state["t0"], 4), **fields}
        path = state["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:  # one whole line per write, flushed
            f.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")

    def _guard(self, state: dict, name: str) -> None:
        state["guards"][name] = state["guards"].get(name, 0) + 1

    def _budget_stop(self, state: dict) -> str | None:
        if self.max_tokens is not None and state["tokens"] >= self.max_tokens:
            return "token_budget"
        if self.max_seconds is not None and time.perf_counter() - state["t0"] >= self.max_seconds:
            return "time_budget"
        return None

    def _recover(self, action: Action) -> Action:
        """Argument recovery: a plain-text input, or a one-key object under the wrong name, for
        a tool with exactly one required parameter becomes that parameter."""
        tool = self.registry.get(action.tool)
        if tool is None or not self.recover_arguments:
            return action
        required = tool.parameters.get("required") or []
        props = tool.parameters.get("properties") or {}
        if len(required) != 1:
            return action
        key = required[0]
        if action.raw_input is not None and action.raw_input.strip():
            value = action.raw_input.strip().strip("`").strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            return Action(action.tool, {key: value})
        args = action.arguments
        if len(args) == 1 and key not in args and next(iter(args)) not in props:
            return Action(action.tool, {key: next(iter(args.values()))})
        return action

    def _act(self, state: dict, action: Action) -> Observation:
        """Run ``action`` through the guards and the tool."""
        key = action.key()
        if key in state["seen"] and self.loop_detection:
            state["repeats"] += 1
            self._guard(state, "duplicate_action")
            return Observation(f"You already called {action.tool} with these arguments. Its "
                               f"result was: {state['seen'][key]}\nDo not repeat it: use this "
                               "result, try something different, or give the Final Answer.",
                               True, "duplicate_action")  # fmt: skip
        result = dispatch_tool_call(self.registry, ToolCall(action.tool, action.arguments))
        output = result.output
        if result.is_error and self.recover_arguments and action.tool in self.registry:
            tool = self.registry[action.tool]
            example = {k: f"<{v.get('type', 'value')}>" for k, v in
                       (tool.parameters.get("properties") or {}).items()}  # fmt: skip
            output += (f"\nFix the call and try again, e.g.\nAction: {tool.name}\nAction Input: "
                       f"{json.dumps(example)}")  # fmt: skip
        elif result.is_error and self.recover_arguments:
            output += f"\nUse one of: {', '.join(self.registry.names)}."
        if result.is_error and "invalid arguments" in result.output:
            self._guard(state, "invalid_arguments")
        state["seen"][key] = result.output[:500]
        return Observation(output, result.is_error)

    def _progress_stop(self, state: dict, obs: Observation | None, new_info: bool) -> str | None:
        state["stale"] = 0 if new_info else state["stale"] + 1
        if self.loop_detection and state["repeats"] >= 2:
            return "duplicate_action"
        if self.no_progress_steps is not None and state["stale"] >= self.no_progress_steps:
            return "no_progress"
        return None

    def _finish(self, state: dict, answer: str, reason: str, **extra: Any) -> AgentRunResult:
        seconds = time.perf_counter() - state["t0"]
        meta = {"trace": str(state["path"]), "seconds": seconds, "tokens": state["tokens"],
                "guards": dict(state["guards"]), **extra}  # fmt: skip
        self._log(
            state,
            "run_end",
            stopped_reason=reason,
            final_answer=answer,
            steps=len(state["steps"]),
            seconds=round(seconds, 3),
            tokens=state["tokens"],
            guards=state["guards"],
            **{k: v for k, v in extra.items() if k != "plan"},
        )
        return AgentRunResult(answer, reason, state["steps"], meta)

    def _call(self, state: dict, fn: Any, *args: Any, **kw: Any) -> tuple[Any, str | None]:
        """Call the backend; a failure → (None, message) instead of an exception."""
        try:
            return fn(*args, **kw), None
        except Exception as e:  # noqa: BLE001 - a failing backend ends the run, reported
            return None, f"{type(e).__name__}: {e}"


class Agent(_Loop):
    """A ReAct agent over any :class:`~g2c.inference.Backend` (text in, text out).

    ``Agent(backend, registry, max_steps=8, plan=True, loop_detection=True, *,
    recover_arguments=True, no_progress_steps=3, scratchpad_chars=6000, max_tokens=None,
    max_seconds=None, max_new_tokens=192, temperature=0.0, trace_path=None, system=None)``.
    ``scratchpad_chars=None`` turns the bound off, ``no_progress_steps=None`` the no-progress
    guard; ``trace_path=None`` writes to :func:`default_trace_path`. ``run(task)`` →
    :class:`AgentRunResult` (never raises for what the model or a tool does; a bad ``task`` →
    ValueError). See the module docstring for the guards and the stop reasons.
    """

    def _system(self) -> str:
        tools = "\n".join(f"- {t.name}: {t.description} Arguments: {json.dumps(t.parameters)}"
                          for t in self.registry)  # fmt: skip
        first = next(iter(self.registry))
        example = {k: "..." for k in (first.parameters.get("required") or [])}
        text = REACT_FORMAT.format(names=", ".join(self.registry.names), tools=tools,
                                   example=json.dumps(example))  # fmt: skip
        return (self.system + "\n\n" + text) if self.system else text

    def _plan(self, state: dict, task: str) -> Plan | None:
        msgs = [{"role": "user", "content": PLAN_PROMPT.format(
            task=task, names=", ".join(self.registry.names))}]  # fmt: skip
        r, err = self._call(state, self.backend.chat, msgs, **self.sampling)
        if err:
            self._log(state, "plan", error=err)
            return None
        state["tokens"] += r.prompt_tokens + r.completion_tokens
        plan = Plan.from_text(r.completion)
        self._log(state, "plan", model_output=r.completion, steps=plan.steps,
                  prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens)  # fmt: skip
        return plan

    def run(self, task: str) -> AgentRunResult:
        """Run the loop on ``task`` until a stop reason; see the class docstring."""
        state = self._start(task)
        plan = self._plan(state, task) if self.plan else None
        pad = Scratchpad(self.scratchpad_chars or 10**9)
        system = self._system()
        for index in range(1, self.max_steps + 1):
            stop = self._budget_stop(state)
            if stop:
                return self._finish(state, "", stop, plan=plan and plan.steps)
            user = f"Task: {task}"
            if plan and plan.steps:
                user += "\n\nPlan:\n" + plan.render()
            if pad.entries:
                user += "\n\n" + pad.render()
            user += "\n\nContinue with the next Thought."
            msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            t0 = time.perf_counter()
            r, err = self._call(state, self.backend.chat, msgs, stop=["Observation:"],
                                **self.sampling)  # fmt: skip
            if err:
                self._log(state, "step", index=index, prompt_chars=len(system) + len(user),
                          error=err)  # fmt: skip
                return self._finish(state, "", "backend_error", error=err,
                                    plan=plan and plan.steps)  # fmt: skip
            state["tokens"] += r.prompt_tokens + r.completion_tokens
            parsed = parse_react_step(r.completion)
            step_result = self._step(state, index, parsed, pad)
            obs, answer = step_result
            step = AgentStep(index, parsed.thought, parsed.action, obs, answer, r.completion,
                             len(system) + len(user), r.prompt_tokens, r.completion_tokens,
                             time.perf_counter() - t0)  # fmt: skip
            state["steps"].append(step)
            self._log(state, "step", index=index, prompt_chars=step.prompt_chars,
                      prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                      model_output=r.completion, thought=parsed.thought,
                      action=parsed.action and {"tool": parsed.action.tool,
                                                "arguments": parsed.action.arguments},
                      parse_error=parsed.error, final_answer=answer,
                      observation=obs and {"output": obs.output, "is_error": obs.is_error,
                                           "guard": obs.guard},
                      seconds=round(step.seconds, 4), scratchpad_chars=len(pad),
                      scratchpad_dropped=pad.dropped)  # fmt: skip
            if answer is not None:
                return self._finish(state, answer, "final_answer", plan=plan and plan.steps)
            stop = self._progress_stop(state, obs, obs is not None and not obs.is_error)
            if stop:
                return self._finish(state, "", stop, plan=plan and plan.steps)
        return self._finish(state, "", "max_steps", plan=plan and plan.steps)

    def _step(self, state: dict, index: int, parsed: ParsedStep, pad: Scratchpad
              ) -> tuple[Observation | None, str | None]:  # fmt: skip
        """Act on one parsed reply: (observation, final answer or None)."""
        if parsed.final_answer is not None and parsed.action is None:
            return None, parsed.final_answer
        action = parsed.action
        if action is not None and (parsed.error is None or action.raw_input is not None):
            action = self._recover(action)
            if action.raw_input is not None:  # not recoverable: say so
                obs = Observation(f"{parsed.error}. Write Action Input as a JSON object, e.g. "
                                  '{"expression": "2+2"}.', True, "format")  # fmt: skip
                self._guard(state, "format")
            else:
                obs = self._act(state, action)
        else:
            self._guard(state, "format")
            obs = Observation(f"Your reply could not be used: {parsed.error}. Write 'Action:' "
                              "with a tool name and 'Action Input:' with JSON arguments, or "
                              "'Final Answer:' with the answer.", True, "format")  # fmt: skip
        shown = parsed.raw.split("Observation:")[0].strip()
        pad.add(f"{shown}\nObservation: {obs.output}")
        return obs, None


class NativeAgent(_Loop):
    """An agent for backends with native tool calls (``Backend.chat_with_tools``: g2c's engine
    with schema-constrained decoding, OpenAI-compatible servers, Ollama). The conversation is
    a message list; the model's text reply without a call is the final answer. Same arguments,
    guards, stop reasons and trace as :class:`Agent`; ``scratchpad_chars`` bounds the summed
    size of the tool results kept in the messages (older ones are replaced by a note).
    ``require_first_call=True`` forces a call on the first turn where the backend takes
    ``tool_choice`` (g2c's engine: :func:`g2c.inference.backends.takes_tool_choice`) — small models rarely start a call on their own."""

    def __init__(self, *args: Any, require_first_call: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.require_first_call = bool(require_first_call)

    def _extra(self, index: int) -> dict[str, Any]:
        if not (self.require_first_call and index == 1):
            return {}
        return {"tool_choice": "required"} if takes_tool_choice(self.backend) else {}

    def run(self, task: str) -> AgentRunResult:
        """Run the loop on ``task``; see the class docstring."""
        state = self._start(task)
        system = self.system or "You are a helpful assistant. Use the tools when they help; " \
            "when you know the answer, reply with it in plain text."  # fmt: skip
        msgs: list[dict[str, Any]] = [{"role": "system", "content": system},
                                      {"role": "user", "content": task}]  # fmt: skip
        tools = self.registry.to_openai()
        for index in range(1, self.max_steps + 1):
            stop = self._budget_stop(state)
            if stop:
                return self._finish(state, "", stop)
            self._bound(msgs)
            t0 = time.perf_counter()
            size = sum(len(m.get("content") or "") for m in msgs)
            r, err = self._call(state, self.backend.chat_with_tools, msgs, tools,
                                **self.sampling, **self._extra(index))  # fmt: skip
            if err:
                self._log(state, "step", index=index, prompt_chars=size, error=err)
                return self._finish(state, "", "backend_error", error=err)
            state["tokens"] += r.prompt_tokens + r.completion_tokens
            if not r.tool_calls:
                state["steps"].append(AgentStep(index, "", None, None, r.content, r.content, size,
                                                r.prompt_tokens, r.completion_tokens,
                                                time.perf_counter() - t0))  # fmt: skip
                self._log(state, "step", index=index, prompt_chars=size, model_output=r.content,
                          final_answer=r.content, prompt_tokens=r.prompt_tokens,
                          completion_tokens=r.completion_tokens)  # fmt: skip
                return self._finish(state, r.content.strip(), "final_answer")
            call = r.tool_calls[0]
            action = self._recover(Action(call["name"], dict(call["arguments"])))
            obs = self._act(state, action)
            msgs.append(
                {
                    "role": "assistant",
                    "content": r.content + ToolCall(action.tool, action.arguments).to_text(),
                    "tool_calls": [
                        {
                            "id": call["call_id"],
                            "type": "function",
                            "function": {
                                "name": action.tool,
                                "arguments": json.dumps(action.arguments),
                            },
                        }
                    ],
                }
            )
            msgs.append(
                {
                    "role": "tool",
                    "tool_call_id": call["call_id"],
                    "name": action.tool,
                    "content": ("ERROR: " if obs.is_error else "") + obs.output,
                }
            )
            step = AgentStep(
                index,
                r.content,
                action,
                obs,
                None,
                r.content,
                size,
                r.prompt_tokens,
                r.completion_tokens,
                time.perf_counter() - t0,
            )
            state["steps"].append(step)
            self._log(
                state,
                "step",
                index=index,
                prompt_chars=size,
                model_output=r.content,
                action={"tool": action.tool, "arguments": action.arguments},
                observation={"output": obs.output, "is_error": obs.is_error, "guard": obs.guard},
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                seconds=round(step.seconds, 4),
            )
            stop = self._progress_stop(state, obs, not obs.is_error)
            if stop:
                return self._finish(state, "", stop)
        return self._finish(state, "", "max_steps")

    def _bound(self, msgs: list[dict[str, Any]]) -> None:
        """Replace the oldest tool results by a note until they fit ``scratchpad_chars``."""
        if not self.scratchpad_chars:
            return
        tool_msgs = [m for m in msgs if m["role"] == "tool"]
        while sum(len(m["content"]) for m in tool_msgs) > self.scratchpad_chars and tool_msgs:
            oldest = tool_msgs.pop(0)
            oldest["content"] = "[older result omitted to save space]"
