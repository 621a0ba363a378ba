"""Messages and a conversation with an explicit context policy.

:class:`Message` is one chat message (``role``, ``content``, plus the tool calls and citations of
an assistant answer). :class:`Conversation` is the ordered list of them, grouped into *turns*: a
user message and everything that answers it. When the rendered prompt would not fit the model's
context, :meth:`Conversation.fit_to_context` drops the OLDEST whole turns (the system message is
kept) and says so — a message is never cut in the middle, and nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


class AssistantError(ValueError):
    """A user mistake the assistant reports in one sentence naming the argument or file and the
    fix (bad config value, empty message, damaged conversation store, unknown conversation)."""


def _json_safe(value: Any, name: str) -> Any:
    """A deep copy of ``value`` made of dict/list/str/int/float/bool/None, else AssistantError."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, name) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, name) for v in value]
    raise AssistantError(f"{name} must be JSON-serialisable, got a {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Message:
    """One chat message.

    ``role``: "system", "user", "assistant" or "tool"; ``content``: the text; ``tool_calls``: the
    calls made while answering (dicts ``{"call_id", "name", "arguments", "output",
    "is_error"}``); ``citations``: the sources the answer uses (dicts ``{"n", "source",
    "start_line", "end_line", "text", "score"}``); ``metadata``: anything else (``{"stopped":
    True}`` for an answer cut by the user, ``"model"``, ``"latency_ms"``...). All JSON-safe.
    Bad role or a non-string content → AssistantError naming the field.
    """

    role: str
    content: str
    tool_calls: tuple[dict[str, Any], ...] = ()
    citations: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise AssistantError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise AssistantError(f"content must be a string, got {type(self.content).__name__}")
        for field in ("tool_calls", "citations"):
            items = getattr(self, field)
            if isinstance(items, (str, Mapping)) or not isinstance(items, Sequence):
                raise AssistantError(f"{field} must be a list of dicts, got {items!r}")
            if not all(isinstance(x, Mapping) for x in items):
                raise AssistantError(f"{field} must be a list of dicts, got {items!r}")
            object.__setattr__(self, field, tuple(_json_safe(dict(x), field) for x in items))
        if not isinstance(self.metadata, Mapping):
            raise AssistantError(f"metadata must be a dict, got {self.metadata!r}")
        object.__setattr__(self, "metadata", _json_safe(dict(self.metadata), "metadata"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: role, content, tool_calls, citations, metadata."""
        return {"role": self.role, "content": self.content,
                "tool_calls": [dict(c) for c in self.tool_calls],
                "citations": [dict(c) for c in self.citations],
                "metadata": dict(self.metadata)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        """The inverse of :meth:`to_dict` (missing optional fields → empty). Not a dict or no
        role/content → AssistantError."""
        if not isinstance(d, Mapping) or "role" not in d or "content" not in d:
            raise AssistantError(f"a message must be a dict with 'role' and 'content', got {d!r}")
        return cls(d["role"], d["content"] if d["content"] is not None else "",
                   tuple(d.get("tool_calls") or ()), tuple(d.get("citations") or ()),
                   dict(d.get("metadata") or {}))  # fmt: skip


def _turn_starts(messages: Sequence[Message]) -> list[int]:
    """Indices of the user messages (each starts a turn)."""
    return [i for i, m in enumerate(messages) if m.role == "user"]


class Conversation:
    """The messages of one chat, in order.

    ``Conversation(messages=None, max_messages=200)``: ``messages`` a list of :class:`Message`
    (or their dicts); past ``max_messages`` the oldest whole turns are dropped on :meth:`add`
    (the system message stays) and a notice is queued in ``notices``. Bad values →
    AssistantError naming the argument.
    """

    def __init__(self, messages: Sequence[Message | Mapping[str, Any]] | None = None,
                 max_messages: int = 200) -> None:  # fmt: skip
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 2:
            raise AssistantError(f"max_messages must be an int >= 2, got {max_messages!r}")
        if messages is not None and (isinstance(messages, (str, Mapping))
                                     or not isinstance(messages, Sequence)):  # fmt: skip
            raise AssistantError("messages must be a list of Message (or dicts) or None")
        self.max_messages = max_messages
        self.messages: list[Message] = [
            m if isinstance(m, Message) else Message.from_dict(m) for m in (messages or [])
        ]
        self.notices: list[str] = []

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self):
        return iter(self.messages)

    def __repr__(self) -> str:
        return f"Conversation({len(self.messages)} messages)"

    def add(self, role: str, content: str, **kw: Any) -> Message:
        """Append a new :class:`Message` (``kw``: tool_calls, citations, metadata) and return it.
        Past ``max_messages`` the oldest whole turns go (a notice is queued)."""
        message = Message(role, content, **kw)
        self.messages.append(message)
        dropped = 0
        while len(self.messages) > self.max_messages and self._drop_oldest_turn():
            dropped += 1
        if dropped:
            self.notices.append(f"dropped {dropped} earlier turn{'s' * (dropped > 1)} "
                                f"(the conversation keeps at most {self.max_messages} "
                                "messages)")  # fmt: skip
        return message

    def append(self, message: Message) -> Message:
        """Append an existing :class:`Message` (same policy as :meth:`add`)."""
        if not isinstance(message, Message):
            raise AssistantError(f"message must be a Message, got {type(message).__name__}")
        return self.add(message.role, message.content, tool_calls=message.tool_calls,
                        citations=message.citations, metadata=message.metadata)  # fmt: skip

    def clear(self) -> None:
        """Forget every message except the system message(s) at the start."""
        keep = []
        for m in self.messages:
            if m.role != "system":
                break
            keep.append(m)
        self.messages = keep
        self.notices = []

    def to_dicts(self) -> list[dict[str, str]]:
        """OpenAI-style ``[{"role", "content"}]`` (tool messages included as they are)."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def turns(self) -> list[list[Message]]:
        """The messages grouped into turns; what precedes the first user message (system) is
        its own group at index 0 when present."""
        starts = _turn_starts(self.messages)
        if not starts:
            return [list(self.messages)] if self.messages else []
        groups = [self.messages[: starts[0]]] if starts[0] else []
        bounds = starts + [len(self.messages)]
        groups += [self.messages[a:b] for a, b in zip(bounds, bounds[1:])]
        return groups

    def _drop_oldest_turn(self) -> bool:
        """Drop the oldest whole turn (never the last one); False when none can go."""
        starts = _turn_starts(self.messages)
        if len(starts) < 2:
            return False
        del self.messages[starts[0] : starts[1]]
        return True

    def fit_to_context(self, count_tokens: Callable[[list[dict[str, str]]], int],
                       budget: int) -> list[str]:  # fmt: skip
        """Drop the oldest whole turns until ``count_tokens(self.to_dicts()) <= budget``.

        ``count_tokens``: the rendered prompt's size in tokens for a message list (the caller
        renders it with the model's template and adds what it puts around it); ``budget``:
        the tokens the prompt may use (context minus the answer's ``max_new_tokens``). The
        system message and the newest turn are never dropped and no message is cut. Returns
        the notices for the user (``[]`` when nothing was dropped; a second notice when even
        the newest turn alone does not fit). Bad arguments → AssistantError.
        """
        if not callable(count_tokens):
            raise AssistantError("count_tokens must be a callable(messages) -> int")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise AssistantError(f"budget must be an int >= 1 (tokens), got {budget!r}")
        dropped = 0
        size = count_tokens(self.to_dicts())
        while size > budget and self._drop_oldest_turn():
            dropped += 1
            size = count_tokens(self.to_dicts())
        notices = []
        if dropped:
            notices.append(f"dropped {dropped} earlier turn{'s' * (dropped > 1)} to fit the "
                           f"{budget}-token context")  # fmt: skip
        if size > budget:
            notices.append(f"the message alone takes {size} tokens, more than the {budget} the "
                           "context allows; shorten it or start a new conversation")  # fmt: skip
        return notices
