"""19 agent — a language model that acts with tools until the task is done, and knows when
to stop.

- :mod:`g2c.agent.core`: :class:`Action`, :class:`Observation`, :class:`Plan`,
  :class:`ParsedStep`, :class:`AgentStep`, :class:`AgentRunResult`, :class:`AgentError`,
  :class:`Scratchpad`, :func:`parse_react_step`.
- :mod:`g2c.agent.loop`: :class:`Agent` (ReAct over any backend) and :class:`NativeAgent`
  (native tool calls), their guards (loop detection, argument recovery, no progress, the
  scratchpad bound, token/time budgets) and the JSON-lines trace (:func:`load_trace`).
- :mod:`g2c.agent.suite`: 22 tasks checked by code, :func:`run_suite`, :func:`guard_ablation`.
- :mod:`g2c.agent.scripted`: :class:`ScriptedBackend`, a deterministic stand-in model.
"""

from g2c.agent.core import (
    STOP_REASONS,
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
from g2c.agent.loop import Agent, NativeAgent, default_trace_path, load_trace
from g2c.agent.scripted import ScriptedBackend
from g2c.agent.suite import (
    CORPUS,
    GUARDS,
    AgentTask,
    SuiteReport,
    TaskOutcome,
    build_tasks,
    failure_counts,
    failure_script,
    guard_ablation,
    run_suite,
    run_task,
    task_registry,
)

__all__ = [
    "Action",
    "Observation",
    "Plan",
    "ParsedStep",
    "AgentStep",
    "AgentRunResult",
    "AgentError",
    "Scratchpad",
    "parse_react_step",
    "STOP_REASONS",
    "Agent",
    "NativeAgent",
    "load_trace",
    "default_trace_path",
    "ScriptedBackend",
    "AgentTask",
    "TaskOutcome",
    "SuiteReport",
    "CORPUS",
    "GUARDS",
    "build_tasks",
    "task_registry",
    "run_task",
    "run_suite",
    "failure_counts",
    "failure_script",
    "guard_ablation",
]
