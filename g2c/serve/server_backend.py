"""The server's own engine as a :class:`~g2c.inference.Backend`, for code running in threads.

The assistant (``"model": "g2c-assistant"``) runs :meth:`g2c.assistant.Assistant.stream` on a
worker thread; its model calls must go through the same :class:`~g2c.serve.Scheduler` as every
HTTP client — one engine, continuous batching, and only the scheduler's thread ever touches
the model. :class:`ServerBackend` does that: each call submits a
:class:`~g2c.inference.Request` to the scheduler with a private event loop for its
:class:`~g2c.serve.scheduler.Ticket` and reads the pieces back on the calling thread.

Stopping: closing a :meth:`ServerBackend.stream_chat` stream cancels its ticket (the slot is
free at the next decode step), and a call made while the calling thread's stop event
(:func:`stop_event`) is set — or that sees it set while waiting — cancels its ticket and
returns what was generated so far. The server sets that event when the HTTP client goes away.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

from g2c.inference import TOOL_CALL_OPEN, BackendInfo, ChatResult, Request, TextStream
from g2c.inference.backends import Backend, check_messages, new_call_id
from g2c.serve._common import (
    APIError,
    ServerState,
    chat_ids,
    split_tool_call,
    template_messages,
    tool_constraint,
    tool_functions,
    tool_hold,
    with_tool_prompt,
)
from g2c.serve.scheduler import Ticket

#: seconds between two looks at the stop event while waiting for the engine
POLL_S = 0.05

_local = threading.local()


def stop_event() -> threading.Event | None:
    """The stop event of the calling thread (set by the server when its client left), or
    None outside a server worker thread."""
    return getattr(_local, "stop", None)


def set_stop_event(event: threading.Event | None) -> None:
    """Attach ``event`` to the calling thread: :class:`ServerBackend` calls made on this
    thread stop (their tickets are cancelled) once it is set."""
    _local.stop = event


def _stopped() -> bool:
    event = stop_event()
    return event is not None and event.is_set()


class ServerBackend(Backend):
    """``ServerBackend(state)``: chat and completions on the server's engine through its
    scheduler (see the module docstring). Use it from worker threads, never from the server's
    event loop thread (its calls block until the engine answers).

    Native tool calls as the ``/v1`` API does them: the tools are described in the system
    message and the reply is decoded under :class:`~g2c.inference.ToolCallConstraint`, so a
    call is always complete JSON following the tool's schema. Bad input (a prompt longer than
    the context, bad sampling values) → ValueError with the server's message; a full queue or
    shutdown → RuntimeError.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.engine = state.engine

    @property
    def info(self) -> BackendInfo:
        """Name ``g2c-serve``, the served model id and the context (``max_len``, tokens)."""
        return BackendInfo("g2c-serve", self.state.model_id, {"max_len": self.engine.max_len})

    @property
    def context_length(self) -> int:
        """Tokens a prompt plus its answer may use."""
        return self.engine.max_len

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of ``messages`` rendered with the model's chat template."""
        return len(self._chat_ids(messages))

    # -- the scheduler, from a thread ---------------------------------------------------------
    def _chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        try:
            return chat_ids(self.engine, template_messages(self.engine, messages))
        except APIError as e:
            raise ValueError(e.message) from None

    def _submit(self, ids: list[int], sampling: dict[str, Any], loop: asyncio.AbstractEventLoop,
                hold: Any = None, **extra: Any) -> Ticket:  # fmt: skip
        stop = sampling.pop("stop", None) or ()
        fields = {"max_new_tokens": 256, "temperature": 0.0, **sampling, **extra}
        if fields.get("top_p") is not None and fields["top_p"] >= 1:
            fields["top_p"] = None
        request = Request(ids, stop=tuple(stop), **fields)  # bad fields → ValueError
        if len(ids) >= self.engine.max_len:
            raise ValueError(f"the prompt has {len(ids)} tokens but the context holds "
                             f"{self.engine.max_len} tokens; shorten the conversation")  # fmt: skip
        try:
            ticket = self.state.scheduler.submit(request, loop=loop, hold=hold)
        except RuntimeError as e:  # QueueFull, SchedulerClosed
            raise RuntimeError(f"the server cannot take the request: {e}") from None
        loop.run_until_complete(ticket.started())
        if ticket.error is not None:
            raise ValueError(str(ticket.error))
        return ticket

    def _pieces(self, ticket: Ticket, loop: asyncio.AbstractEventLoop) -> Iterator[str]:
        """The ticket's pieces on this thread; cancels the ticket when closed early or when
        the thread's stop event is set; closes ``loop`` at the end."""
        agen = ticket.pieces()
        try:
            while True:
                if _stopped():
                    return
                task = loop.create_task(agen.__anext__())
                while not task.done():
                    loop.run_until_complete(asyncio.wait([task], timeout=POLL_S))
                    if not task.done() and _stopped():
                        task.cancel()
                        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
                        return
                try:
                    piece = task.result()
                except StopAsyncIteration:
                    return
                yield piece
        finally:
            if not ticket.done:
                ticket.cancel()
            try:
                loop.run_until_complete(agen.aclose())
            except BaseException:  # noqa: S110 - closing a cancelled stream: nothing to keep
                pass
            loop.close()

    def _stream(self, ids: list[int], prompt_text: str, sampling: dict[str, Any]) -> TextStream:
        loop = asyncio.new_event_loop()
        try:
            ticket = self._submit(ids, dict(sampling), loop)
        except BaseException:
            loop.close()
            raise

        def finish(text: str, latency: float, ttft: float | None) -> Any:
            return self._result(prompt_text, text, ticket.prompt_tokens,
                                ticket.completion_tokens, latency, ttft_ms=ttft,
                                finish_reason=ticket.finish_reason)  # fmt: skip

        stream = TextStream(self._pieces(ticket, loop), finish)
        stream.ticket = ticket
        return stream

    # -- Backend ------------------------------------------------------------------------------
    def stream_complete(self, prompt: str, **sampling: Any) -> TextStream:
        """Continue raw ``prompt`` (no chat template); pieces as the engine decodes them."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("prompt must be a non-empty string")
        return self._stream(self.engine.encode(prompt), prompt, sampling)

    def stream_chat(self, messages: list[dict[str, Any]], **sampling: Any) -> TextStream:
        """The reply to ``messages`` (the model's chat template), streamed."""
        messages = _check(messages)
        return self._stream(self._chat_ids(messages), json.dumps(messages), sampling)

    def stream_chat_with_tools(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        tool_choice: str = "auto",
    ) -> TextStream:
        """:meth:`chat_with_tools`, streamed: the free text as it decodes (the call itself is
        never part of the pieces); once exhausted, ``result`` is the :class:`ChatResult`."""
        messages = _check(messages)
        if tool_choice not in ("auto", "required", "none"):
            raise ValueError(f"tool_choice must be auto, required or none, got {tool_choice!r}")
        sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature,
                    "top_k": top_k, "top_p": top_p}  # fmt: skip
        if not tools or tool_choice == "none":
            ids, constraint, hold = self._chat_ids(messages), None, None
        else:
            try:
                fns = tool_functions(tools)
                sent = with_tool_prompt(template_messages(self.engine, messages), fns)
            except APIError as e:
                raise ValueError(e.message) from None
            ids = self._chat_ids(sent)
            constraint = tool_constraint(self.engine, fns, tool_choice == "required")
            hold = tool_hold
        loop = asyncio.new_event_loop()
        try:
            ticket = self._submit(ids, sampling, loop, hold=hold, constraint=constraint)
        except BaseException:
            loop.close()
            raise
        found: dict[str, Any] = {"content": "", "call": None}

        def pieces() -> Iterator[str]:
            sent_text, held = "", []
            for piece in self._pieces(ticket, loop):
                if hold is not None and ticket.handle.finished:
                    held.append(piece)  # the last piece: it may hold the call
                    continue
                sent_text += piece
                yield piece
            content, call = (split_tool_call(ticket) if not ticket.cancelled
                             else (ticket.text, None))  # fmt: skip
            if call is None and TOOL_CALL_OPEN in content:
                content = content[: content.find(TOOL_CALL_OPEN)]  # a call cut by a stop
            found.update(content=content, call=call)
            rest = content[len(sent_text) :] if content.startswith(sent_text) else ""
            if rest:
                yield rest

        def finish(text: str, latency: float, ttft: float | None) -> ChatResult:
            call = found["call"]
            calls = [] if call is None else [{**call, "call_id": new_call_id()}]
            return ChatResult(messages, found["content"], calls, ticket.prompt_tokens,
                              ticket.completion_tokens, latency, self.info)  # fmt: skip

        stream = TextStream(pieces(), finish)
        stream.ticket = ticket
        return stream


def _check(messages: Any) -> list[dict[str, Any]]:
    """``check_messages``, keeping only each message's role and content (text)."""
    return [
        {"role": m["role"], "content": m.get("content") or ""} for m in check_messages(messages)
    ]
