"""Helpers shared by the CLI stages: console, progress bars, threads, common flags.

Progress: on a terminal a live rich bar (on stderr); when stdout or stderr is not a terminal
(piped to ``tee``, CI logs) plain periodic lines on stdout instead — ``step/total``, the task's
info (loss, tokens/s), elapsed time and ETA, at most one line every ``G2C_PROGRESS_EVERY_S``
seconds (default 10) plus the first and the last. ``G2C_NO_PROGRESS=1`` turns both off.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Off a terminal rich would wrap (and crop) at 80 columns: give piped output room instead.
console = (
    Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", 0)) or 200)
)
err_console = (
    Console(stderr=True)
    if sys.stderr.isatty()
    else Console(stderr=True, width=int(os.environ.get("COLUMNS", 0)) or 200)
)


def is_interactive() -> bool:
    """True when both stdout and stderr are terminals (a live progress bar is readable)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """``make_progress``'s stand-in off a terminal: periodic plain lines on stdout.

    The same calls as a rich ``Progress`` (``add_task``, ``update``, ``start``, ``stop``,
    ``console``, use as a context manager). A task prints a line when it starts, at most every
    ``every_s`` seconds, when it completes, and at ``stop`` (its last state, if not printed).
    Each line: ``description step/total  info  elapsed 0:01:02  eta 0:03:04``.
    """

    def __init__(self, every_s: float | None = None, enabled: bool = True) -> None:
        env = os.environ.get("G2C_PROGRESS_EVERY_S")
        self.every_s = every_s if every_s is not None else float(env) if env else 10.0
        self.enabled = enabled
        self.tasks: dict[int, dict[str, Any]] = {}
        self.console = console

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to start (lines are printed as they come)."""

    def stop(self) -> None:
        """Print each task's last state when it was not printed yet."""
        for task_id, t in self.tasks.items():
            if t["dirty"]:
                self._print(task_id)

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **fields: Any) -> int:  # fmt: skip
        """A new task; returns its id."""
        task_id = len(self.tasks)
        now = time.perf_counter()
        self.tasks[task_id] = {"description": description, "total": total, "completed": completed,
                               "start": now, "start_completed": completed, "last": None,
                               "dirty": False, "fields": dict(fields)}  # fmt: skip
        return task_id

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, description: str | None = None, **fields: Any) -> None:  # fmt: skip
        """Update a task; print a line when due."""
        t = self.tasks[task_id]
        if description is not None:
            t["description"] = description
        if total is not None:
            t["total"] = total
        if completed is not None:
            t["completed"] = completed
        if advance is not None:
            t["completed"] += advance
        t["fields"].update(fields)
        t["dirty"] = True
        now = time.perf_counter()
        finished = t["total"] is not None and t["completed"] >= t["total"]
        if t["last"] is None or finished or now - t["last"] >= self.every_s:
            self._print(task_id)

    def line(self, task_id: int) -> str:
        """The task's current line."""
        t = self.tasks[task_id]
        done, total = t["completed"], t["total"]
        elapsed = time.perf_counter() - t["start"]
        parts = [str(t["description"]), f"{done:g}/{total:g}" if total else f"{done:g}"]
        if t["fields"].get("info"):
            parts.append(str(t["fields"]["info"]))
        parts.append(f"elapsed {_clock(elapsed)}")
        rate_done = done - t["start_completed"]
        if total and rate_done > 0:
            parts.append(f"eta {_clock(elapsed / rate_done * max(0.0, total - done))}")
        return "  ".join(parts)

    def _print(self, task_id: int) -> None:
        t = self.tasks[task_id]
        t["last"], t["dirty"] = time.perf_counter(), False
        if self.enabled:
            print(self.line(task_id), flush=True)


def make_progress(transient: bool = False) -> Progress | PlainProgress:
    """A rich progress bar with a description, bar, count, elapsed time, ETA and a free field
    on a terminal; off a terminal a :class:`PlainProgress` (periodic plain lines on stdout).

    Use ``progress.add_task(desc, total=N, info="")`` and ``update(task, advance=1, info=...)``.
    """
    disabled = os.environ.get("G2C_NO_PROGRESS") == "1"
    if not is_interactive():
        return PlainProgress(enabled=not disabled)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err_console,
        transient=transient,
        disable=disabled,
    )


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--device``, ``--threads``, ``--seed`` and ``--debug`` to a stage parser."""
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: min(2, cores))"
    )
    parser.add_argument("--seed", type=int, default=1337, help="random seed (default: 1337)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (default min(2, cores)); returns the count used."""
    n = threads if threads is not None else min(2, os.cpu_count() or 1)
    if n <= 0:
        raise ValueError(f"--threads must be positive, got {n}")
    torch.set_num_threads(n)
    return n
