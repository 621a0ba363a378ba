"""A deterministic stand-in model: :class:`ScriptedBackend` replays canned replies.

For testing the agent loop (its guards, stop reasons and trace) and for checking the task
suite's checkers with a known-good "oracle" script: the loop, the tools and the checkers are
the real ones; only the model is replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from g2c.inference import Backend, BackendInfo, ChatResult, TextStream
from g2c.tools import parse_tool_calls


class ScriptedBackend(Backend):
    """``ScriptedBackend(replies, *, plan_reply="1. Use the tools.", repeat_last=True)``.

    ``replies``: the model's outputs in order (strings), or a callable ``(messages) -> str``.
    A chat whose last user message asks for a plan gets ``plan_reply`` (not taken from the
    list). After the list runs out the last reply repeats (``repeat_last``) or IndexError.
    ``context_chars``: a prompt longer than this raises ValueError, as g2c's engine does past
    its context. ``stop`` strings cut the reply as a real backend would. ``chat_with_tools`` reads
    ``<tool_call>`` blocks out of the reply (native calls). ``calls`` records every request.
    Token counts: characters / 4.
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[[list[dict[str, Any]]], str],
        *,
        plan_reply: str = "1. Use the tools.\n2. Give the final answer.",
        repeat_last: bool = True,
        context_chars: int | None = None,
    ) -> None:
        if not callable(replies) and (isinstance(replies, str) or not all(
                isinstance(r, str) for r in replies)):  # fmt: skip
            raise TypeError("replies must be a list of strings or a callable(messages) -> str")
        self.replies = replies if callable(replies) else list(replies)
        self.plan_reply = plan_reply
        self.repeat_last = repeat_last
        self.position = 0
        self.context_chars = context_chars
        self.calls: list[list[dict[str, Any]]] = []

    @property
    def info(self) -> BackendInfo:
        """Name ``scripted`` and the script's id."""
        return BackendInfo("scripted", "scripted")

    def _next(self, messages: list[dict[str, Any]]) -> str:
        self.calls.append(messages)
        size = sum(len(m.get("content") or "") for m in messages)
        if self.context_chars is not None and size > self.context_chars:
            raise ValueError(f"the prompt has {size} characters but the context holds "
                             f"{self.context_chars}; shorten the prompt")  # fmt: skip
        last = next((m.get("content") or "" for m in reversed(messages)
                     if m["role"] == "user"), "")  # fmt: skip
        if "numbered plan" in last:
            return self.plan_reply
        if callable(self.replies):
            return self.replies(messages)
        if self.position >= len(self.replies):
            if not self.repeat_last or not self.replies:
                raise IndexError("the script has no more replies")
            return self.replies[-1]
        self.position += 1
        return self.replies[self.position - 1]

    def _stream(self, text: str, prompt: str, stop: Sequence[str] | None) -> TextStream:
        for s in stop or ():
            text = text.split(s)[0]
        return TextStream(iter([text]), lambda out, lat, ttft: self._result(
            prompt, out, len(prompt) // 4, len(out) // 4, lat, ttft_ms=ttft))  # fmt: skip

    def stream_complete(self, prompt: str, *, stop: Sequence[str] | None = None,
                        **sampling: Any) -> TextStream:  # fmt: skip
        """The next canned reply as a one-piece stream (the prompt is recorded, not read)."""
        return self._stream(self._next([{"role": "user", "content": prompt}]), prompt, stop)

    def stream_chat(self, messages: list[dict[str, Any]], *, stop: Sequence[str] | None = None,
                    **sampling: Any) -> TextStream:  # fmt: skip
        """The next canned reply to ``messages`` as a one-piece stream."""
        return self._stream(self._next(messages), json.dumps(messages), stop)

    def chat_with_tools(self, messages, tools=None, **sampling: Any) -> ChatResult:
        """The next canned reply, its ``<tool_call>`` blocks parsed into ``tool_calls``."""
        t0 = time.perf_counter()
        text = self._next(messages)
        calls = parse_tool_calls(text) if tools else []
        content = text.split("<tool_call>")[0] if calls else text
        return ChatResult(messages, content, [{"name": c.name, "arguments": c.arguments,
                          "call_id": c.call_id} for c in calls][:1],
                          len(json.dumps(messages)) // 4, len(text) // 4,
                          (time.perf_counter() - t0) * 1000, self.info)  # fmt: skip
