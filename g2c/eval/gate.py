"""The gate: the metric values a model must reach (minimums, maximums), read from a TOML file.

    # gate.toml — one table per task, ``metric = minimum``
    [openbookqa]
    acc = 0.30
    acc_norm = 0.32

    [gsm8k]
    acc = 0.02

    [g2c_tasks]
    acc_arithmetic = 0.5

    [perplexity]                   # lower-is-better metrics take a maximum
    bits_per_byte = {max = 2.2}
    perplexity = {max = 60}

    [refusal]
    refusal_rate = {min = 0.5}     # the table form may give a minimum too,
    over_refusal_rate = {max = 0.2}  # or both: x = {min = 0.1, max = 0.9}

A metric passes when its value is ≥ the minimum (a plain number, or ``{min = X}``) and ≤ the
maximum (``{max = X}``); NaN never passes. A plain number for a metric the evaluation calls
lower-is-better (``lower_is_better``: bits per byte, perplexity, over-refusal ...) →
ValueError asking for ``{max = X}`` (a minimum there would pass the worse model).

:func:`load_gate` reads and checks the file (malformed TOML → ValueError naming the file,
line and column; a bound that is not a finite number, a key that is not a table →
ValueError naming the file and the key); :func:`check_gate` compares results with it and
returns the failures (an empty list = the gate passes). A task or metric in the gate that
the results lack → ValueError naming the file and the key (a typo must not pass silently).
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
    """One metric outside its bound: ``task``, ``metric``, ``value``, ``minimum`` (None when
    only a maximum was set), ``maximum`` (None unless the gate sets ``{max = X}``)."""

    task: str
    metric: str
    value: float
    minimum: float | None
    maximum: float | None = None

    def __str__(self) -> str:
        name = f"{self.task}.{self.metric} = {self.value:.4f}"
        if self.minimum is not None and not self.value >= self.minimum:
            return f"{name} < {self.minimum:g}"
        return f"{name} > {self.maximum:g}"


#: A gate entry: a plain minimum, or ``{"min": X}`` / ``{"max": Y}`` / both.
Bound = float | dict[str, float]


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def bounds(entry: Bound) -> tuple[float | None, float | None]:
    """(minimum, maximum) of a gate entry (None where unset)."""
    if isinstance(entry, dict):
        return entry.get("min"), entry.get("max")
    return float(entry), None


def load_gate(
    path: str | os.PathLike,
    known: Mapping[str, Iterable[str]] | None = None,
    *,
    lower_is_better: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, dict[str, Bound]]:
    """Read gate file ``path`` → ``{task: {metric: bound}}``: a plain minimum as a float,
    a table as ``{"min": X}``, ``{"max": Y}`` or both (floats).

    ``known`` (task → its metric names), when given, is checked too: an unknown task or
    metric → ValueError naming the file and ``[task] metric`` and listing the known ones.
    ``lower_is_better`` (task → metric names): a plain number (a minimum) for one of them →
    ValueError asking for ``{max = X}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: malformed TOML (file, line and column), a top-level key that is not a
            ``[task]`` table, a bound that is not a finite number, a table with keys other
            than ``min``/``max`` or with min > max, an empty gate.
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
    lower = {t: set(m) for t, m in (lower_is_better or {}).items()}
    gate: dict[str, dict[str, Bound]] = {}
    for task, table in data.items():
        if not isinstance(table, dict):
            raise ValueError(f"{p}: {task!r} must be a [{task}] table of `metric = minimum`, "
                             f"got {table!r}")  # fmt: skip
        gate[task] = {}
        for metric, entry in table.items():
            if isinstance(entry, dict):
                gate[task][metric] = _table_bound(p, task, metric, entry)
                continue
            if not _number(entry):
                raise ValueError(f"{p}: [{task}] {metric} must be a number (the minimum) or "
                                 f"{{max = X}}, got {entry!r}")  # fmt: skip
            if metric in lower.get(task, ()):
                raise ValueError(f"{p}: [{task}] {metric} is lower-is-better: write {metric} "
                                 f"= {{max = {entry}}} (a plain number is a minimum)")  # fmt: skip
            gate[task][metric] = float(entry)
    if not any(gate.values()):
        raise ValueError(f"{p}: the gate sets no minimum; add e.g. [openbookqa] acc = 0.30")
    if known is not None:
        _check_known(p, gate, {t: set(m) for t, m in known.items()})
    return gate


def _table_bound(p: Path, task: str, metric: str, entry: dict) -> dict[str, float]:
    extra = set(entry) - {"min", "max"}
    if not entry or extra:
        raise ValueError(f"{p}: [{task}] {metric} = {{...}} takes the keys min and max, got "
                         f"{sorted(entry) or 'none'}")  # fmt: skip
    for k, v in entry.items():
        if not _number(v):
            raise ValueError(f"{p}: [{task}] {metric}.{k} must be a number, got {v!r}")
    out = {k: float(v) for k, v in entry.items()}
    if "min" in out and "max" in out and out["min"] > out["max"]:
        raise ValueError(f"{p}: [{task}] {metric}: min {out['min']:g} > max {out['max']:g}")
    return out


def _check_known(p: Path, gate: dict[str, dict[str, Bound]], known: dict[str, set[str]]) -> None:
    for task, table in gate.items():
        if task not in known:
            raise ValueError(f"{p}: [{task}] is not a task of this evaluation; tasks: "
                             f"{sorted(known)}")  # fmt: skip
        for metric in table:
            if metric not in known[task]:
                raise ValueError(f"{p}: [{task}] {metric} is not a metric of {task}; its "
                                 f"metrics: {sorted(known[task])}")  # fmt: skip


def check_gate(
    results: Mapping[str, Mapping[str, float]],
    gate_path: str | os.PathLike,
    *,
    lower_is_better: Mapping[str, Iterable[str]] | None = None,
) -> list[GateFailure]:
    """The metrics of ``results`` (task → metric → value, e.g. ``results.json``'s
    ``{task: entry["metrics"]}``) outside the bounds of the gate file ``gate_path`` (below a
    minimum, above a maximum); [] when the gate passes. Errors as :func:`load_gate`
    (``lower_is_better`` passed on); a gate task or metric missing from ``results`` →
    ValueError naming the file and the key."""
    gate = load_gate(gate_path, {t: set(m) for t, m in results.items()},
                     lower_is_better=lower_is_better)  # fmt: skip
    failures = []
    for task, table in gate.items():
        for metric, entry in table.items():
            value = float(results[task][metric])
            lo, hi = bounds(entry)
            ok = (lo is None or value >= lo) and (hi is None or value <= hi)
            if not ok or math.isnan(value):  # NaN fails too
                failures.append(GateFailure(task, metric, value, lo, hi))
    return failures


__all__ = ["Bound", "GateFailure", "bounds", "check_gate", "load_gate"]
