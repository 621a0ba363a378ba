"""The gate: minimum metric values a model must reach, read from a TOML file.

    # gate.toml — one table per task, ``metric = minimum``
    [openbookqa]
    acc = 0.30
    acc_norm = 0.32

    [gsm8k]
    acc = 0.02

    [g2c_tasks]
    acc_arithmetic = 0.5

A metric passes when its value is ≥ the minimum. :func:`load_gate` reads and checks the file
(malformed TOML → ValueError naming the file, line and column; a minimum that is not a
finite number, a key that is not a table → ValueError naming the file and the key);
:func:`check_gate` compares results with it and returns the failures (an empty list
= the gate passes). A task or metric in the gate that the results lack → ValueError naming the
file and the key (a typo must not pass silently).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class GateFailure:
    """One metric below its minimum: ``task``, ``metric``, ``value``, ``minimum``."""

    task: str
    metric: str
    value: float
    minimum: float

    def __str__(self) -> str:
        return f"{self.task}.{self.metric} = {self.value:.4f} < {self.minimum:g}"


def load_gate(
    path: str | os.PathLike, known: Mapping[str, Iterable[str]] | None = None
) -> dict[str, dict[str, float]]:
    """Read gate file ``path`` → ``{task: {metric: minimum}}``.

    ``known`` (task → its metric names), when given, is checked too: an unknown task or
    metric → ValueError naming the file and ``[task] metric`` and listing the known ones.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: malformed TOML (file, line and column), a top-level key that is not a
            ``[task]`` table, a minimum that is not a finite number, an empty gate.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"gate file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: malformed TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text ({exc.reason})") from None
    gate: dict[str, dict[str, float]] = {}
    for task, table in data.items():
        if not isinstance(table, dict):
            raise ValueError(f"{p}: {task!r} must be a [{task}] table of `metric = minimum`, "
                             f"got {table!r}")  # fmt: skip
        gate[task] = {}
        for metric, minimum in table.items():
            ok = isinstance(minimum, (int, float)) and not isinstance(minimum, bool)
            if not ok or not math.isfinite(minimum):
                raise ValueError(f"{p}: [{task}] {metric} must be a number (the minimum), "
                                 f"got {minimum!r}")  # fmt: skip
            gate[task][metric] = float(minimum)
    if not any(gate.values()):
        raise ValueError(f"{p}: the gate sets no minimum; add e.g. [openbookqa] acc = 0.30")
    if known is not None:
        _check_known(p, gate, {t: set(m) for t, m in known.items()})
    return gate


def _check_known(p: Path, gate: dict[str, dict[str, float]], known: dict[str, set[str]]) -> None:
    for task, table in gate.items():
        if task not in known:
            raise ValueError(f"{p}: [{task}] is not a task of this evaluation; tasks: "
                             f"{sorted(known)}")  # fmt: skip
        for metric in table:
            if metric not in known[task]:
                raise ValueError(f"{p}: [{task}] {metric} is not a metric of {task}; its "
                                 f"metrics: {sorted(known[task])}")  # fmt: skip


def check_gate(
    results: Mapping[str, Mapping[str, float]], gate_path: str | os.PathLike
) -> list[GateFailure]:
    """The metrics of ``results`` (task → metric → value, e.g. ``results.json``'s
    ``{task: entry["metrics"]}``) below the minimums of the gate file ``gate_path``; [] when
    the gate passes. Errors as :func:`load_gate`; a gate task or metric missing from
    ``results`` → ValueError naming the file and the key."""
    gate = load_gate(gate_path, {t: set(m) for t, m in results.items()})
    failures = []
    for task, table in gate.items():
        for metric, minimum in table.items():
            value = float(results[task][metric])
            if not value >= minimum:  # NaN fails too
                failures.append(GateFailure(task, metric, value, minimum))
    return failures


__all__ = ["GateFailure", "check_gate", "load_gate"]
