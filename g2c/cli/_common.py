"""Helpers shared by the CLI stages: console, progress bars, threads, common flags."""

from __future__ import annotations

import argparse
import os

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


def make_progress(transient: bool = False) -> Progress:
    """A rich progress bar with a description, bar, count, elapsed time, ETA and a free field.

    Use ``progress.add_task(desc, total=N, info="")`` and ``update(task, advance=1, info=...)``.
    """
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
        disable=os.environ.get("G2C_NO_PROGRESS") == "1",
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
    import torch

    n = threads if threads is not None else min(2, os.cpu_count() or 1)
    if n <= 0:
        raise ValueError(f"--threads must be positive, got {n}")
    torch.set_num_threads(n)
    return n
