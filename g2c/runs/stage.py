"""The stage skeleton: what every run stage (pretrain, mnist, lm, vectors; later sft, dpo, eval,
chat) shares, so a stage module holds only its own work.

A stage's ``run(config, out, ...)`` follows the same five steps:

1. **validate** the whole configuration *before* touching the disk — the stage's config
   dataclasses validate themselves on construction; :func:`check` adds the cross-field checks
   (``check(ctx <= max_seq_len, "train.context_length", "...")``) with the field named in the
   message. Nothing is created or written when this raises.
2. **open** the run directory: :meth:`Stage.open` creates it, clears it with ``fresh``, and
   compares the stored ``run_config.json`` with the new one (another configuration →
   ValueError: pass ``fresh`` or another directory). It returns the stored config (a resume)
   or None (a new run).
3. **parts** of the stage, each timed: ``with stage.part("tokenizer") as info: ... info[k] = v``
   adds this session's wall time to the part's ``seconds`` in ``stages.json`` (so the time of
   every session is counted) and merges ``info``; events ``("stage", {"name", "status"})``
   go to ``on_event``. :meth:`Stage.record` persists a part's time at any moment; a part
   whose earlier time lives in a checkpoint sets ``info["base_seconds"]``. :meth:`Stage.end_session`
   adds the session's time outside the parts to ``overhead``: the sum of ``stages.json``
   covers every session (:meth:`Stage.total_seconds_now` is that sum, live — what a time
   budget is charged).
4. **manifest** — :meth:`Stage.write_manifest` with the format, the ``parent`` artifact (the
   run directory or file this stage started from: a pretrained model for SFT, ...) and
   ``total_seconds`` (sum over the parts, every session).
5. **report** — :func:`stage_table` renders ``stages.json`` as the report's table; a stage
   writes its own sections after it.

Library code: events go to ``on_event(kind, info)``; nothing is printed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import atomic_write_json, write_manifest
from g2c.runs.rundir import RunDir

EventFn = Callable[[str, dict], None]


def no_events(kind: str, info: dict) -> None:
    """The default ``on_event``: ignore every event."""


def check(ok: bool, field: str, message: str) -> None:
    """ValueError ``"<field>: <message>"`` unless ``ok`` — a validation rule naming its field."""
    if not ok:
        raise ValueError(f"{field}: {message}")


def environment(device: Any = None, threads: int | None = None, command: str | None = None) -> dict:
    """Where the stage ran: device, threads, torch version, machine, load average, command."""
    return {
        "device": str(device) if device is not None else None,
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "command": command,
    }


class Stage:
    """One session of a stage in the run directory ``out``.

    ``name``: the stage kind ("pretrain", "mnist", ...). ``on_event(kind, info)`` receives the
    stage's events. Create it only after the configuration was validated; :meth:`open` is the
    first write.
    """

    def __init__(self, out: str | Path, name: str, on_event: EventFn | None = None) -> None:
        self.rd = RunDir(out)
        self.name = name
        self.emit: EventFn = on_event or no_events
        self.session_start = time.perf_counter()
        self._mark = self.session_start  # overhead is counted from here
        self._in_parts = 0.0  # wall time spent in finished parts since the mark
        self._part_start: float | None = None  # start of the part in progress

    # -- 2. the run directory ------------------------------------------------------------------
    def open(
        self,
        config: dict,
        *,
        fresh: bool = False,
        comparable: Callable[[dict], Any] = lambda d: d,
    ) -> dict | None:
        """Create the directory; return the stored run config (resume) or None (new run).

        ``fresh`` deletes the run's files first. A stored config whose ``comparable(...)``
        differs from ``comparable(config)`` → ValueError (nothing is changed). Files without a
        ``run_config.json`` belong to no run that can be resumed: they are removed.
        """
        rd = self.rd
        if fresh:
            rd.clear()
        prior = rd.read_json(rd.run_config) if rd.run_config.is_file() else None
        if prior is not None and comparable(prior) != comparable(config):
            raise ValueError(
                f"{rd.root} holds a run with another configuration; pass --fresh to start over "
                "there or choose another --out"
            )
        rd.root.mkdir(parents=True, exist_ok=True)
        if prior is None:
            rd.clear()
        return prior

    def save_config(self, config: dict) -> None:
        """Write ``run_config.json`` (atomic): the configuration a resume must match."""
        atomic_write_json(self.rd.run_config, config)

    # -- 3. timed parts ------------------------------------------------------------------------
    def seconds(self, part: str | None = None) -> float:
        """Recorded seconds of one part, or of every part (all sessions) when ``part`` is None."""
        stages = self.rd.load_stages()
        if part is not None:
            return float(stages.get(part, {}).get("seconds", 0.0))
        return float(sum(s.get("seconds", 0.0) for s in stages.values()))

    def _overhead_now(self) -> float:
        """This session's time outside the parts since the last :meth:`end_session`."""
        now = time.perf_counter()
        in_part = now - self._part_start if self._part_start is not None else 0.0
        return max(0.0, now - self._mark - self._in_parts - in_part)

    def total_seconds_now(self) -> float:
        """Recorded seconds (every part, every session) plus this session's unrecorded time
        outside the parts. A part in progress counts what it has recorded so far."""
        return self.seconds() + self._overhead_now()

    def record(self, part: str, seconds: float, **fields: Any) -> None:
        """Persist ``seconds`` (the part's total over all sessions) and ``fields`` for ``part``."""
        self.rd.update_stage(part, seconds=seconds, **fields)

    @contextlib.contextmanager
    def part(self, part: str, **start_info: Any) -> Iterator[dict]:
        """Time one part of the stage; yields a dict whose items are stored with the time.

        The part's recorded ``seconds`` grow by this session's wall time (earlier sessions'
        time is kept). A part whose earlier time lives elsewhere (restored from a checkpoint
        after a hard kill) sets ``info["base_seconds"]``: it replaces the stored value.
        Emits ``("stage", {"name": part, "status": "start", **start_info})`` and, on success, ``"done"`` with ``seconds`` and the dict's items.
        When the body raises, the time spent is still recorded.
        """
        before = self.seconds(part)
        self.emit("stage", {"name": part, "status": "start", **start_info})
        info: dict = {}
        t0 = self._part_start = time.perf_counter()
        try:
            yield info
        except BaseException:
            if self.rd.root.is_dir():
                base = info.get("base_seconds", before)
                self.record(part, base + time.perf_counter() - t0)
            raise
        finally:
            self._in_parts += time.perf_counter() - t0
            self._part_start = None
        seconds = info.pop("base_seconds", before) + time.perf_counter() - t0
        info.pop("seconds", None)  # the part's time is measured here
        self.record(part, seconds, **info)
        self.emit("stage", {"name": part, "status": "done", "seconds": seconds, **info})

    def end_session(self) -> None:
        """Add this session's time outside the parts (validation, bookkeeping) to the
        ``overhead`` part, so the recorded total covers the whole session. Idempotent."""
        if not self.rd.root.is_dir():
            return
        extra = self._overhead_now()
        self._mark, self._in_parts = time.perf_counter(), 0.0
        self.record("overhead", self.seconds("overhead") + extra)

    # -- 4. manifest ---------------------------------------------------------------------------
    def write_manifest(
        self, format: str, *, parent: str | Path | None = None, **fields: Any
    ) -> Path:
        """``manifest.json`` with ``stage``, ``parent`` (the artifact this stage started from),
        ``total_seconds`` (every part, every session) and ``fields``."""
        return write_manifest(
            self.rd.root, format, stage=self.name,
            parent=str(parent) if parent is not None else None,
            total_seconds=self.seconds(), **fields,
        )  # fmt: skip


# -- 5. report ---------------------------------------------------------------------------------
def _cell(v: Any, spec: str) -> str:
    if v is None or v == "":
        return ""
    return format(v, spec) if isinstance(v, float) else str(v)


def stage_table(stages: dict[str, dict], columns: list[tuple[str, str, str]],
                order: tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """Markdown table lines of ``stages.json``: one row per part (``order`` first), a
    ``time (s)`` column and one column per ``(header, key, format spec)`` of ``columns``."""
    lines = [
        "| part | time (s) | " + " | ".join(h for h, _, _ in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    names = [n for n in order if n in stages] + [n for n in stages if n not in order]
    for name in names:
        s = stages[name]
        cells = [_cell(s.get(key), spec) for _, key, spec in columns]
        lines.append(f"| {name} | {_cell(s.get('seconds'), '.1f')} | " + " | ".join(cells) + " |")
    return lines
