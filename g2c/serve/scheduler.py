"""The bridge between HTTP handlers and the engine: one thread drives ``Engine.step()``.

Every request of every client goes through one :class:`~g2c.inference.Engine` — continuous
batching: requests join the running batch between decode steps and leave it when they finish,
so 16 clients share each weight read instead of waiting in line. The engine is not
thread-safe, so exactly one thread (the scheduler's worker) touches it:

- a handler calls :meth:`Scheduler.submit` (any thread) with a :class:`~g2c.inference.Request`;
  it returns a :class:`Ticket` at once, or raises :class:`QueueFull` when ``max_batch_size``
  requests are running and ``max_queue`` more are waiting (the server answers 503 with
  ``Retry-After``), or :class:`SchedulerClosed` once shutdown began;
- the worker moves new tickets into the engine (``Engine.submit``: a bad request fails its
  ticket with the engine's ValueError), runs one ``step()``, and hands each ticket its new text
  on the ticket's event loop (``loop.call_soon_threadsafe``);
- ``Ticket.cancel()`` (a client that went away) marks the engine's request cancelled: its slot
  is freed at the next step;
- :meth:`Scheduler.run_exclusive` runs a function on the worker between two steps (the
  embeddings endpoint uses the model that way);
- :meth:`Scheduler.stop` refuses new work, lets every accepted request finish (``drain``) or
  cancels them, then ends the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from g2c.inference import Engine, Request, RequestHandle

_END = object()
_STARTED = object()


class QueueFull(RuntimeError):
    """Every batch slot is busy and the waiting queue is full; try again in ``retry_after``
    seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SchedulerClosed(RuntimeError):
    """The scheduler is shutting down (or was never started) and takes no new requests."""


class Ticket:
    """One request's life on the scheduler, read from an asyncio event loop.

    ``async for piece in ticket.pieces()`` yields the text as it is produced (pieces withheld
    while ``hold`` says so: a tool call is sent whole); ``await ticket.wait()`` waits for the
    end. After the end: ``text``, ``prompt_tokens``, ``completion_tokens``, ``finish_reason``
    ("stop", "length", "cancelled"), ``handle`` (the engine's :class:`RequestHandle`) and
    ``error`` (the ValueError the engine raised on submit, else None). ``cancel()`` from any
    thread stops the generation and frees its slot.
    """

    def __init__(self, tid: int, request: Request, loop: asyncio.AbstractEventLoop,
                 hold: Callable[[RequestHandle], bool] | None = None) -> None:  # fmt: skip
        self.id = tid
        self.request = request
        self.loop = loop
        self.hold = hold
        self.handle: RequestHandle | None = None
        self.error: Exception | None = None
        self.cancelled = False
        self.sent = 0  # characters of handle.text already handed over
        self._queue: asyncio.Queue = asyncio.Queue()
        self._started = asyncio.Event()
        self._done = asyncio.Event()

    # -- worker side (scheduler thread) -------------------------------------------------------
    def _deliver(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            pass

    def _put(self, item: Any) -> None:
        if item is _STARTED:
            self._started.set()
            return
        self._queue.put_nowait(item)
        if item is _END:
            self._started.set()
            self._done.set()

    # -- consumer side (event loop) -----------------------------------------------------------
    async def pieces(self) -> AsyncIterator[str]:
        """The generated text, piece by piece; ends when the request finishes."""
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            yield item

    async def started(self) -> Ticket:
        """Wait until the worker handed the request to the engine (or refused it: ``error``)."""
        await self._started.wait()
        return self

    async def wait(self) -> Ticket:
        """Wait until the request has finished (or failed, or was cancelled)."""
        await self._done.wait()
        return self

    @property
    def done(self) -> bool:
        """True once the generation finished (stop, length or cancelled)."""
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop this request: queued ones never start, running ones free their slot at the
        next step (finish reason "cancelled")."""
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()

    # -- results ------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The text generated so far."""
        return self.handle.text if self.handle is not None else ""

    @property
    def prompt_tokens(self) -> int:
        """Tokens in the prompt."""
        return len(self.handle.prompt_ids) if self.handle is not None else 0

    @property
    def completion_tokens(self) -> int:
        """Tokens generated so far."""
        return len(self.handle.token_ids) if self.handle is not None else 0

    @property
    def finish_reason(self) -> str | None:
        """``stop``, ``length`` or ``cancelled`` once done, else None."""
        if self.handle is None:
            return "cancelled" if self.cancelled else None
        return self.handle.finish_reason


class Scheduler:
    """Drives one :class:`~g2c.inference.Engine` from a background thread for every client.

    ``Scheduler(engine, *, max_queue=64, retry_after=1)``: at most ``engine.max_batch_size``
    requests run at once and ``max_queue`` more wait; beyond that :meth:`submit` raises
    :class:`QueueFull`. ``start()`` / ``stop(drain=True, timeout=None)``; also a context
    manager. ``stats()``: running, waiting, accepted, completed, cancelled, rejected, steps.
    Bad arguments → ValueError naming them.
    """

    def __init__(self, engine: Engine, *, max_queue: int = 64, retry_after: int = 1) -> None:
        if not isinstance(engine, Engine):
            raise TypeError(f"engine must be a g2c.inference.Engine, got {type(engine).__name__}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue must be an int >= 0, got {max_queue!r}")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1:
            raise ValueError(f"retry_after must be a positive int (seconds), got {retry_after!r}")
        self.engine = engine
        self.max_queue = max_queue
        self.retry_after = retry_after
        self._cond = threading.Condition()
        self._inbox: deque[Ticket] = deque()
        self._jobs: deque[tuple[Callable[[], Any], concurrent.futures.Future]] = deque()
        self._active: list[Ticket] = []  # accepted, not finished (inbox + engine)
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._drain = True
        self.counts = {"accepted": 0, "completed": 0, "cancelled": 0, "rejected": 0,
                       "failed": 0}  # fmt: skip

    @property
    def capacity(self) -> int:
        """Requests accepted at once: batch slots plus queue places."""
        return self.engine.max_batch_size + self.max_queue

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Scheduler:
        """Start the worker thread (idempotent)."""
        with self._cond:
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._work, name="g2c-serve-scheduler",
                                                daemon=True)  # fmt: skip
                self._thread.start()
        return self

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Refuse new requests; ``drain=True`` lets accepted requests finish, ``False`` cancels
        them; then wait (at most ``timeout`` seconds) for the worker to end."""
        with self._cond:
            self._closing = True
            self._drain = drain
            if not drain:
                for t in self._active:
                    t.cancel()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if not thread.is_alive():
                self._thread = None

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the worker thread is alive and accepting work."""
        return self._thread is not None and self._thread.is_alive() and not self._closing

    # -- client side --------------------------------------------------------------------------
    def submit(self, request: Request, *, loop: asyncio.AbstractEventLoop | None = None,
               hold: Callable[[RequestHandle], bool] | None = None) -> Ticket:  # fmt: skip
        """Accept ``request``; returns its :class:`Ticket` (results arrive on ``loop``, default
        the running loop). Full → :class:`QueueFull`; shutting down → :class:`SchedulerClosed`.
        ``hold(handle) -> bool``: while True, new text is withheld (sent at the end)."""
        if not isinstance(request, Request):
            raise TypeError(f"request must be a g2c.inference.Request, got {type(request)}")
        loop = loop or asyncio.get_running_loop()
        with self._cond:
            if not self.running:
                raise SchedulerClosed("the server is shutting down; no new requests")
            if len(self._active) >= self.capacity:
                self.counts["rejected"] += 1
                raise QueueFull(
                    f"server busy: {self.engine.max_batch_size} requests running and "
                    f"{self.max_queue} waiting; retry in {self.retry_after} s",
                    self.retry_after,
                )
            ticket = Ticket(next(self._ids), request, loop, hold)
            self._active.append(ticket)
            self._inbox.append(ticket)
            self.counts["accepted"] += 1
            self._cond.notify_all()
        return ticket

    def run_exclusive(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn()`` on the worker thread between two engine steps (nothing else touches
        the model meanwhile); a future of its result. Shutting down → SchedulerClosed."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if not self.running:
                raise SchedulerClosed("the server is shutting down; no new requests")
            self._jobs.append((fn, fut))
            self._cond.notify_all()
        return fut

    def stats(self) -> dict[str, int]:
        """Counters: running and waiting now, and since start accepted / completed /
        cancelled / rejected (queue full) / failed (bad request) requests and decode steps."""
        with self._cond:
            running = sum(1 for t in self._active if t.handle is not None and t.handle.slot
                          is not None)  # fmt: skip
            return {"running": running, "waiting": len(self._active) - running,
                    **self.counts, "steps": self.engine.steps}  # fmt: skip

    # -- worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        engine = self.engine
        while True:
            with self._cond:
                while not (self._inbox or self._jobs or engine.has_work()):
                    if self._closing:
                        self._fail_jobs()
                        return
                    self._cond.wait()
                inbox, self._inbox = self._inbox, deque()
                jobs, self._jobs = self._jobs, deque()
            for fn, fut in jobs:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as e:  # handed to the caller
                        fut.set_exception(e)
            for ticket in inbox:
                self._admit(ticket)
            if engine.has_work():
                try:
                    engine.step()
                except Exception as e:  # a bug, not a user error: fail what ran, keep serving
                    self._abort_running(e)
            self._publish()

    def _admit(self, ticket: Ticket) -> None:
        if ticket.cancelled:
            return self._end(ticket, "cancelled")
        try:
            ticket.handle = self.engine.submit(ticket.request)
        except (ValueError, TypeError) as e:
            ticket.error = e
            return self._end(ticket, "failed")
        ticket._deliver(_STARTED)
        if ticket.cancelled:  # cancelled while being submitted
            ticket.handle.cancel()

    def _abort_running(self, error: Exception) -> None:
        for h in self.engine.running + list(self.engine.waiting):
            h.cancel()
        try:
            self.engine.step()  # frees the slots of the cancelled requests
        except Exception:
            self.engine.slots = [None] * self.engine.max_batch_size
            self.engine.waiting.clear()
        for ticket in list(self._active):
            if ticket.handle is not None:
                ticket.error = RuntimeError(f"generation failed: {error}")
                self._end(ticket, "failed")

    def _publish(self) -> None:
        for ticket in list(self._active):
            h = ticket.handle
            if h is None:
                continue
            held = ticket.hold is not None and not h.finished and ticket.hold(h)
            if not held and len(h.text) > ticket.sent:
                ticket._deliver(h.text[ticket.sent :])
                ticket.sent = len(h.text)
            if h.finished:
                self._end(ticket, "cancelled" if h.finish_reason == "cancelled" else "completed")

    def _end(self, ticket: Ticket, outcome: str) -> None:
        with self._cond:
            if ticket in self._active:
                self._active.remove(ticket)
                self.counts[outcome] += 1
        ticket._deliver(_END)

    def _fail_jobs(self) -> None:
        for _, fut in self._jobs:
            fut.cancel()
        self._jobs.clear()

    def __repr__(self) -> str:
        s = self.stats()
        return (f"Scheduler(max_batch_size={self.engine.max_batch_size}, max_queue="
                f"{self.max_queue}, running={s['running']}, waiting={s['waiting']})")  # fmt: skip
