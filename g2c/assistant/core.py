"""The assistant: one conversation with a model, its tools and a document index.

:class:`Assistant` puts the pieces of modules 16–19 together for a person to talk to:

- **memory** — a :class:`~g2c.assistant.Conversation` sent back to the model every turn, saved
  to a :class:`~g2c.assistant.ConversationStore` (SQLite) when one is given;
- **context policy** — before each model call the prompt is measured with the backend's own
  tokenizer and chat template; the oldest whole turns go until it fits
  ``context_tokens - max_new_tokens - reserve`` and a ``notice`` event says so;
- **tools** — ``tool_mode`` "native" when the backend implements ``chat_with_tools`` (g2c's
  engine with schema-constrained calls, OpenAI/Ollama servers), else "react" through
  :class:`g2c.agent.Agent`; each call and result is an event and is kept in the turn;
- **RAG** — with a retriever, ``rag_k`` chunks become numbered sources in the prompt
  (:func:`g2c.rag.assemble_rag_prompt`); the answer keeps the sources it cites as ``[n]``
  (:func:`g2c.rag.pipeline.cited_sources`); below ``rag_min_score`` it answers that it does not
  know without calling the model (:class:`g2c.rag.RAGPipeline`'s rule).

:meth:`Assistant.stream` yields JSON-safe event dicts (``notice``, ``citations``,
``tool_call``, ``tool_result``, ``token``) and ends with ``{"type": "done", "turn":
AssistantTurn}``; closing the generator stops generation and keeps the partial answer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

from g2c.agent import Action, Agent
from g2c.assistant.conversation import AssistantError, Conversation, Message
from g2c.assistant.store import ConversationStore
from g2c.inference import Backend, LocalTransformerBackend
from g2c.inference.backends import takes_tool_choice
from g2c.rag import RAGPipeline, RetrievedChunk, assemble_rag_prompt
from g2c.rag.pipeline import DONT_KNOW, cited_sources
from g2c.tools import ToolCall, ToolRegistry, dispatch_tool_call

__all__ = [
    "AssistantError",
    "AssistantConfig",
    "AssistantTurn",
    "Assistant",
    "DEFAULT_SYSTEM",
    "TOOL_MODES",
    "STOP_REASONS",
]

#: two numbers joined by an arithmetic operator ("1234*5678", "17 + 5", "3 x 4", "2^10",
#: "9 - 4", "9173 times 58", "15 percent of 2480"; a minus needs spaces around it, so
#: "3-4 days" and "555-1234" are not arithmetic)
ARITHMETIC = re.compile(
    r"\d[\d,.]*(?:\s*(?:[+*/×x^%]|\*\*)\s*|\s+-\s+|\s+(?:plus|minus|times|multiplied by|"
    r"divided by|to the power of|percent of|% of)\s+)\(?\s*\d",
    re.IGNORECASE,
)
DEFAULT_SYSTEM = "You are a helpful AI assistant named g2c-assistant. Answer clearly and briefly."
TOOL_HINT = "Use a tool when it helps (arithmetic: the calculator); then answer in plain text."
TOOL_MODES = ("auto", "native", "react", "none")
STOP_REASONS = ("final_answer", "max_steps", "duplicate_action", "no_progress", "no_evidence",
                "stopped", "error")  # fmt: skip
DEFAULT_CONTEXT = 2048
CITATION_TEXT_CHARS = 1000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class AssistantConfig:
    """How the assistant behaves; frozen (change it with ``Assistant.update_config``).

    ``name`` (str), ``max_steps`` (tool-calling steps per turn, ≥ 1), ``plan`` (ReAct mode
    writes a plan first), ``loop_detection`` (a repeated identical tool call gets the earlier
    result back; the next repeat ends the loop), ``rag_enabled``, ``rag_k`` (chunks retrieved,
    ≥ 1), ``rag_min_score`` (None, or the best score under which the answer is "I don't know"
    without a model call), sampling ``temperature`` (≥ 0; 0 = greedy), ``top_p`` (None or in
    (0, 1]), ``top_k`` (None or ≥ 1), ``max_new_tokens`` (≥ 1, per model call), ``system``
    (None = :data:`DEFAULT_SYSTEM`), ``context_tokens`` (None = the backend's context, else
    2048), ``tool_mode`` ("auto" | "native" | "react" | "none"), ``require_tool`` (native
    mode on a backend whose ``chat_with_tools`` takes ``tool_choice``, i.e. g2c's engine: the
    first model call of each turn must call a tool — small models rarely start one; an
    addition to the issue-13 contract), ``route_arithmetic`` (default on: the same forced
    first call, but only when the message holds arithmetic — two numbers joined by an
    operator — and a ``calculator`` tool is registered: SmolLM2-135M answers "1234*5678"
    from memory, wrongly, unless the call is forced). A bad value →
    :class:`AssistantError` naming the field and what it accepts.
    """

    name: str = "g2c-assistant"
    max_steps: int = 8
    plan: bool = True
    loop_detection: bool = True
    rag_enabled: bool = True
    rag_k: int = 5
    rag_min_score: float | None = None
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    max_new_tokens: int = 256
    system: str | None = None
    context_tokens: int | None = None
    tool_mode: str = "auto"
    require_tool: bool = False
    route_arithmetic: bool = True

    def __post_init__(self) -> None:
        def bad(field: str, want: str) -> AssistantError:
            return AssistantError(f"{field} must be {want}, got {getattr(self, field)!r}")

        if not isinstance(self.name, str) or not self.name.strip():
            raise bad("name", "a non-empty string")
        for field in ("plan", "loop_detection", "rag_enabled", "require_tool",
                      "route_arithmetic"):  # fmt: skip
            if not isinstance(getattr(self, field), bool):
                raise bad(field, "True or False")
        for field, low in (("max_steps", 1), ("rag_k", 1), ("max_new_tokens", 1)):
            if not _is_int(getattr(self, field)) or getattr(self, field) < low:
                raise bad(field, f"an int >= {low}")
        if self.rag_min_score is not None and not _is_num(self.rag_min_score):
            raise bad("rag_min_score", "a number or None")
        if not _is_num(self.temperature) or self.temperature < 0:
            raise bad("temperature", "a number >= 0 (0 = greedy)")
        if self.top_p is not None and not (_is_num(self.top_p) and 0 < self.top_p <= 1):
            raise bad("top_p", "a number in (0, 1] or None")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise bad("top_k", "an int >= 1 or None")
        if self.system is not None and not isinstance(self.system, str):
            raise bad("system", "a string or None")
        if self.context_tokens is not None and (not _is_int(self.context_tokens)
                                                or self.context_tokens < 64):  # fmt: skip
            raise bad("context_tokens", "an int >= 64 or None")
        if self.context_tokens is not None and self.max_new_tokens >= self.context_tokens:
            raise AssistantError(f"max_new_tokens ({self.max_new_tokens}) must be smaller than "
                                 f"context_tokens ({self.context_tokens})")  # fmt: skip
        if self.tool_mode not in TOOL_MODES:
            raise bad("tool_mode", "one of " + ", ".join(TOOL_MODES))

    def sampling(self) -> dict[str, Any]:
        """The sampling arguments every backend call takes."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": float(self.temperature),
                "top_k": self.top_k, "top_p": self.top_p}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class AssistantTurn:
    """One answer: ``content`` (the text shown), ``tool_calls`` (``{"call_id", "name",
    "arguments", "output", "is_error"}`` in call order), ``citations`` (``{"n", "source",
    "start_line", "end_line", "text", "score"}``: the sources the answer cites as ``[n]``, or all
    the sources given when it cites none), ``notices`` (what the user is told: context trimmed,
    model switched ...), ``stopped_reason`` (one of :data:`STOP_REASONS`), ``prompt_tokens`` /
    ``completion_tokens`` (summed over the turn's model calls), ``latency_ms`` (wall time)."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    citations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notices: list[str] = dataclasses.field(default_factory=list)
    stopped_reason: str = "final_answer"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict."""
        return dataclasses.asdict(self)


def has_native_tools(backend: Any) -> bool:
    """True when ``backend``'s class overrides :meth:`Backend.chat_with_tools` or
    :meth:`Backend.stream_chat_with_tools` (native calls; the base class drains the one into
    the other)."""
    cls = type(backend)
    return any(getattr(cls, name, None) not in (None, getattr(Backend, name))
               for name in ("chat_with_tools", "stream_chat_with_tools"))  # fmt: skip


def _citation_dict(citation: Any, hit: RetrievedChunk) -> dict[str, Any]:
    return {"n": citation.n, "source": citation.source, "start_line": citation.line_start,
            "end_line": citation.line_end, "text": hit.chunk.text.strip()[:CITATION_TEXT_CHARS],
            "score": float(citation.score)}  # fmt: skip


class _Stopped(Exception):
    """Internal: the consumer closed the stream."""


class Assistant:
    """A chat assistant over any :class:`~g2c.inference.Backend`.

    ``Assistant(backend, registry, retriever=None, conversation=None, config=None, *,
    store=None, conversation_id=None)``:

    - ``backend``: a :class:`~g2c.inference.Backend` (``set_backend`` swaps it);
    - ``registry``: a :class:`~g2c.tools.ToolRegistry` (or None = no tools);
    - ``retriever``: anything with ``retrieve(query, k) -> [RetrievedChunk]`` (or None);
    - ``conversation``: a :class:`Conversation` to continue (default: a new one);
    - ``config``: :class:`AssistantConfig` (default: the defaults);
    - ``store``: a :class:`ConversationStore` — every message is saved there; without
      ``conversation_id`` a stored conversation is created at the first message;
      ``conversation_id`` opens one (its messages become the conversation).

    Bad arguments → :class:`AssistantError` naming the argument; an unknown conversation id →
    :class:`~g2c.assistant.ConversationNotFound`.
    """

    def __init__(
        self,
        backend: Backend,
        registry: ToolRegistry | None,
        retriever: Any = None,
        conversation: Conversation | None = None,
        config: AssistantConfig | None = None,
        *,
        store: ConversationStore | None = None,
        conversation_id: str | None = None,
    ) -> None:
        self._check_backend(backend)
        if registry is None:
            registry = ToolRegistry()
        if not isinstance(registry, ToolRegistry):
            raise AssistantError(f"registry must be a g2c.tools.ToolRegistry or None, got "
                                 f"{type(registry).__name__}")  # fmt: skip
        self._check_retriever(retriever)
        if conversation is not None and not isinstance(conversation, Conversation):
            raise AssistantError(f"conversation must be a Conversation or None, got "
                                 f"{type(conversation).__name__}")  # fmt: skip
        if config is None:
            config = AssistantConfig()
        if not isinstance(config, AssistantConfig):
            raise AssistantError(f"config must be an AssistantConfig or None, got "
                                 f"{type(config).__name__}")  # fmt: skip
        if store is not None and not isinstance(store, ConversationStore):
            raise AssistantError(f"store must be a ConversationStore or None, got "
                                 f"{type(store).__name__}")  # fmt: skip
        if conversation_id is not None and store is None:
            raise AssistantError("conversation_id needs a store (pass store=ConversationStore())")
        if conversation_id is not None and conversation is not None:
            raise AssistantError("give conversation or conversation_id, not both")
        self._backend = backend
        self.registry = registry
        self.retriever = retriever
        self.store = store
        self._config = config
        self._check_mode(config, backend, registry)
        self._conversation = conversation if conversation is not None else Conversation()
        self._conversation_id: str | None = None
        self._pending: list[str] = []
        self._noted_small = False  # the small-context notices are shown once
        if conversation_id is not None:
            self.open(conversation_id)

    # -- properties and settings ------------------------------------------------------------
    @staticmethod
    def _check_backend(backend: Any) -> None:
        if not isinstance(backend, Backend):
            raise AssistantError(f"backend must be a g2c.inference Backend, got "
                                 f"{type(backend).__name__}")  # fmt: skip

    @staticmethod
    def _check_retriever(retriever: Any) -> None:
        if retriever is not None and not callable(getattr(retriever, "retrieve", None)):
            raise AssistantError(f"retriever must have retrieve(query, k) or be None, got "
                                 f"{type(retriever).__name__}")  # fmt: skip

    @staticmethod
    def _check_mode(config: AssistantConfig, backend: Backend, registry: ToolRegistry) -> None:
        if config.tool_mode == "native" and not has_native_tools(backend):
            raise AssistantError(f"tool_mode 'native' needs a backend with native tool calls; "
                                 f"{type(backend).__name__} has none: use 'auto' or "
                                 "'react'")  # fmt: skip

    @property
    def backend(self) -> Backend:
        """The model the assistant talks to."""
        return self._backend

    @property
    def config(self) -> AssistantConfig:
        """The current :class:`AssistantConfig` (change it with :meth:`update_config`)."""
        return self._config

    @config.setter
    def config(self, config: AssistantConfig) -> None:
        """Replace the whole config (validated against the backend and tools; a non-config →
        AssistantError)."""
        if not isinstance(config, AssistantConfig):
            raise AssistantError(f"config must be an AssistantConfig, got {type(config).__name__}")
        self._check_mode(config, self._backend, self.registry)
        self._config = config

    def update_config(self, **changes: Any) -> AssistantConfig:
        """``dataclasses.replace(config, **changes)``, validated; returns the new config. An
        unknown field → AssistantError listing the fields."""
        fields = {f.name for f in dataclasses.fields(AssistantConfig)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise AssistantError(f"unknown config field {', '.join(unknown)}; fields: "
                                 f"{', '.join(sorted(fields))}")  # fmt: skip
        self.config = dataclasses.replace(self._config, **changes)
        return self._config

    @property
    def conversation(self) -> Conversation:
        """The conversation in memory (what the model sees, after trimming)."""
        return self._conversation

    @property
    def conversation_id(self) -> str | None:
        """The stored conversation's id (None without a store, or before the first message)."""
        return self._conversation_id

    @property
    def tool_mode(self) -> str:
        """The resolved mode: "none" (no tools or ``tool_mode="none"``), "native" (the backend
        implements ``chat_with_tools``) or "react" (:class:`g2c.agent.Agent`)."""
        mode = self._config.tool_mode
        if mode == "none" or not len(self.registry):
            return "none"
        if mode == "auto":
            return "native" if has_native_tools(self._backend) else "react"
        return mode

    @property
    def context_tokens(self) -> int:
        """The context the prompt must fit: ``config.context_tokens``, else the backend's
        ``info.extra["max_len"]``, else 2048."""
        if self._config.context_tokens is not None:
            return self._config.context_tokens
        max_len = self._backend.info.extra.get("max_len")
        return int(max_len) if _is_int(max_len) and max_len > 0 else DEFAULT_CONTEXT

    def set_backend(self, backend: Backend) -> None:
        """Talk to another model from the next turn on (the conversation is kept); a notice
        tells the user."""
        self._check_backend(backend)
        self._check_mode(self._config, backend, self.registry)
        self._backend = backend
        self._pending.append(f"model switched to {backend.info.model_id} "
                             f"({backend.info.name})")  # fmt: skip
        if self.store is not None and self._conversation_id is not None:
            self.store.set_model(self._conversation_id, backend.info.model_id)

    def set_retriever(self, retriever: Any) -> None:
        """Answer from another index (``retrieve(query, k)``), or None for no RAG."""
        self._check_retriever(retriever)
        self.retriever = retriever

    def reset(self) -> None:
        """Forget the conversation. With a store, the next message starts a new stored
        conversation (the old one stays in the store)."""
        self._conversation = Conversation(max_messages=self._conversation.max_messages)
        self._conversation_id = None
        self._pending = []

    def open(self, conversation_id: str) -> None:
        """Continue the stored conversation ``conversation_id`` (needs a store)."""
        if self.store is None:
            raise AssistantError("open() needs a store (Assistant(..., store=ConversationStore()))")
        stored = self.store.get(conversation_id)
        self._conversation = Conversation(stored.messages,
                                          max_messages=max(200, len(stored.messages) + 50))  # fmt: skip
        self._conversation_id = stored.info.id
        self._pending = []

    # -- recording ----------------------------------------------------------------------------
    def _record(self, message: Message) -> None:
        self._conversation.append(message)
        if self.store is None:
            return
        if self._conversation_id is None:
            self._conversation_id = self.store.create(model=self._backend.info.model_id)
            for m in self._conversation.messages:
                self.store.append(self._conversation_id, m)
        else:
            self.store.append(self._conversation_id, message)

    # -- prompt building ----------------------------------------------------------------------
    def _system_text(self, extra: str | None, mode: str | None = None) -> str:
        """The system prompt: ``config.system``, else the conversation's own system message,
        else :data:`DEFAULT_SYSTEM` (+ :data:`TOOL_HINT` when tools are on); then ``extra``
        (the RAG instructions)."""
        system = self._config.system
        if system is None:
            first = self._conversation.messages[:1]
            system = first[0].content if first and first[0].role == "system" else DEFAULT_SYSTEM
            if system == DEFAULT_SYSTEM and (mode or self.tool_mode) != "none":
                system += " " + TOOL_HINT
        return system + ("\n\n" + extra if extra else "")

    def _build(self, history: list[dict[str, str]], system: str,
               last_user: str | None) -> list[dict[str, Any]]:  # fmt: skip
        msgs: list[dict[str, Any]] = [{"role": "system", "content": system}]
        msgs += [m for m in history if m["role"] in ("user", "assistant")]
        if last_user is not None:
            for m in reversed(msgs):
                if m["role"] == "user":
                    m["content"] = last_user
                    break
        return msgs

    def count_tokens(self, messages: list[dict[str, Any]]) -> int:
        """The prompt size of ``messages`` in tokens: g2c's engine renders them with the model's
        chat template and counts exactly; other backends: characters / 4, rounded up, plus 4
        per message (an estimate)."""
        fn = getattr(self._backend, "count_chat_tokens", None)  # the server's own backend
        if callable(fn):
            try:
                return int(fn(messages))
            except Exception:  # noqa: BLE001 - fall back to the estimate
                pass
        if isinstance(self._backend, LocalTransformerBackend):
            try:
                return len(self._backend.engine.chat_prompt(
                    [{"role": m["role"], "content": m.get("content") or ""} for m in messages]))  # fmt: skip
            except Exception:  # noqa: BLE001 - fall back to the estimate
                pass
        return sum(math.ceil(len(m.get("content") or "") / 4) + 4 for m in messages)

    def _tool_reserve(self, mode: str) -> int:
        """Tokens kept free for the tool listing and a few tool results."""
        if mode == "none":
            return 0
        listing = json.dumps(self.registry.to_openai())
        return math.ceil(len(listing) / 3) + min(512, self.context_tokens // 8)

    # -- the turn -------------------------------------------------------------------------------
    def chat(self, text: str) -> AssistantTurn:
        """Answer ``text``: :meth:`stream` run to the end; the :class:`AssistantTurn`."""
        turn = None
        for event in self.stream(text):
            if event["type"] == "done":
                turn = event["turn"]
        return turn

    def stream(self, text: str) -> Iterator[dict[str, Any]]:
        """Answer ``text`` as a stream of events (see the module docstring).

        ``text``: a non-empty string, else :class:`AssistantError` (raised at the call, before
        anything is recorded). A backend failure ends the turn with a ``notice`` and
        ``stopped_reason="error"``; closing the generator (``.close()``, Ctrl-C, a stop button)
        cancels generation and keeps the partial answer with metadata ``{"stopped": True}``.
        """
        if not isinstance(text, str) or not text.strip():
            raise AssistantError(f"text must be a non-empty string, got {text!r}")
        return self._stream(text)

    def _stream(self, text: str) -> Iterator[dict[str, Any]]:
        cfg = self._config
        t0 = time.perf_counter()
        turn = AssistantTurn()
        state: dict[str, Any] = {"parts": [], "active": None, "text": text}

        def notice(message: str) -> dict[str, Any]:
            turn.notices.append(message)
            return {"type": "notice", "text": message}

        try:
            for message in self._pending:
                yield notice(message)
            self._pending = []
            self._record(Message("user", text))
            for message in self._conversation.notices:
                yield notice(message)
            self._conversation.notices = []

            # retrieval
            rag, hits = None, []
            if self.retriever is not None and cfg.rag_enabled:
                hits = list(self.retriever.retrieve(text, cfg.rag_k))
                pipeline = RAGPipeline(self.retriever, self._backend,
                                       min_score=cfg.rag_min_score)  # fmt: skip
                best = pipeline.best_score(hits)
                if cfg.rag_min_score is not None and (best is None or best < cfg.rag_min_score):
                    turn.stopped_reason = "no_evidence"
                    state["parts"].append(DONT_KNOW)
                    yield notice(f"no source scores {cfg.rag_min_score} or more (best: "
                                 f"{best if best is None else round(best, 3)}); not answering "
                                 "from the model's memory")  # fmt: skip
                    yield {"type": "token", "text": DONT_KNOW}
                    yield from self._finish(turn, state, t0)
                    return
                if hits:
                    rag = assemble_rag_prompt(text, hits)
                    given = [_citation_dict(c, h) for c, h in zip(rag.citations, hits)]
                    state["given"], state["rag"] = given, rag
                    yield {"type": "citations", "citations": given}

            # the prompt, fitted to the context
            mode = self.tool_mode
            max_new = self._max_new_tokens()
            if max_new < cfg.max_new_tokens and not self._noted_small:
                yield notice(f"replies capped at {max_new} tokens: half of the model's "
                             f"{self.context_tokens}-token context")  # fmt: skip
            if mode != "none" and self.small_context:
                if not self._noted_small:
                    yield notice(f"tools off: their descriptions do not fit the model's "
                                 f"{self.context_tokens}-token context")  # fmt: skip
                mode = "none"
            self._noted_small = True
            state["mode"] = mode
            system = self._system_text(rag.system if rag else None, mode)
            last_user = rag.messages[-1]["content"] if rag else None
            budget = self.context_tokens - max_new - self._tool_reserve(mode)
            count = lambda dicts: self.count_tokens(self._build(dicts, system, last_user))  # noqa: E731
            for message in self._conversation.fit_to_context(count, max(budget, 1)):
                yield notice(message)
            msgs = self._build(self._conversation.to_dicts(), system, last_user)

            if mode == "none":
                yield from self._plain(msgs, turn, state)
            elif mode == "native":
                yield from self._native(msgs, turn, state)
            else:
                yield from self._react(text, msgs, turn, state)
            yield from self._finish(turn, state, t0)
        except GeneratorExit:
            active = state.get("active")
            if active is not None:
                handle = getattr(active, "handle", None)
                if handle is not None:
                    handle.cancel()
                close = getattr(state.get("iter"), "close", None)
                if close is not None:
                    close()
            turn.stopped_reason = "stopped"
            self._save_answer(turn, state, t0)
            raise

    def _max_new_tokens(self) -> int:
        """``config.max_new_tokens``, at most half the context (a small g2c model's 128)."""
        return max(1, min(self._config.max_new_tokens, self.context_tokens // 2))

    @property
    def small_context(self) -> bool:
        """True when the tool listing would leave less than a quarter of the context for the
        conversation: the assistant then answers without tools (a notice says so)."""
        if not len(self.registry) or self._config.tool_mode == "none":
            return False
        left = self.context_tokens - self._max_new_tokens() - self._tool_reserve("native")
        return left < self.context_tokens // 4

    def _sample(self) -> dict[str, Any]:
        return {**self._config.sampling(), "max_new_tokens": self._max_new_tokens()}

    def _pump(self, stream: Any, turn: AssistantTurn, state: dict) -> Iterator[dict[str, Any]]:
        """Yield the stream's text pieces as token events; count its tokens."""
        state["active"] = stream
        it = iter(stream)
        state["iter"] = it
        for piece in it:
            if piece:
                state["parts"].append(piece)
                yield {"type": "token", "text": piece}
        state["active"] = state["iter"] = None
        result = stream.result
        if result is not None:
            turn.prompt_tokens += int(result.prompt_tokens)
            turn.completion_tokens += int(result.completion_tokens)
        return result

    def _plain(self, msgs, turn, state) -> Iterator[dict[str, Any]]:
        try:
            stream = self._backend.stream_chat(msgs, **self._sample())
            yield from self._pump(stream, turn, state)
        except Exception as e:  # noqa: BLE001 - a failing backend ends the turn, reported
            yield self._error(turn, e)

    def _error(self, turn: AssistantTurn, e: Exception) -> dict[str, Any]:
        turn.stopped_reason = "error"
        message = f"the model failed: {type(e).__name__}: {e}"
        turn.notices.append(message)
        return {"type": "notice", "text": message}

    def _can_require(self, text: str = "") -> bool:
        """``require_tool`` is on — or ``route_arithmetic`` and ``text`` holds arithmetic with a
        calculator registered — and the backend's tool stream takes ``tool_choice``."""
        arithmetic = (self._config.route_arithmetic and "calculator" in self.registry.names
                      and ARITHMETIC.search(text) is not None)  # fmt: skip
        if not (self._config.require_tool or arithmetic):
            return False
        return takes_tool_choice(self._backend)

    def _native(self, msgs, turn, state) -> Iterator[dict[str, Any]]:
        """Native tool calls: ask with the tools; run the call; repeat until a plain answer."""
        cfg = self._config
        tools = self.registry.to_openai()
        seen: dict[str, str] = {}
        repeats = 0
        try:
            for step in range(cfg.max_steps):
                first = step == 0 and self._can_require(state.get("text", ""))
                sample = self._sample()
                extra = {"tool_choice": "required"} if first else {}
                if first:  # a forced call needs room for its JSON (~80 tokens on SmolLM2)
                    room = max(1, self.context_tokens // 2)
                    sample["max_new_tokens"] = min(max(sample["max_new_tokens"], 128), room)
                stream = self._backend.stream_chat_with_tools(msgs, tools, **sample,
                                                              **extra)  # fmt: skip
                result = yield from self._pump(stream, turn, state)
                if not result.tool_calls:
                    return
                call = result.tool_calls[0]
                name, args, call_id = call["name"], dict(call["arguments"]), call["call_id"]
                yield {"type": "tool_call", "call_id": call_id, "name": name, "arguments": args}
                key = Action(name, args).key()
                if cfg.loop_detection and key in seen:
                    repeats += 1
                    output, is_error = (f"You already called {name} with these arguments. Its "
                                        f"result was: {seen[key]}\nUse it and answer."), True  # fmt: skip
                else:
                    r = dispatch_tool_call(self.registry, ToolCall(name, args, call_id))
                    output, is_error = r.output, r.is_error
                    seen[key] = output[:500]
                record = {"call_id": call_id, "name": name, "arguments": args,
                          "output": output, "is_error": is_error}  # fmt: skip
                turn.tool_calls.append(record)
                yield {"type": "tool_result", "call_id": call_id, "name": name,
                       "output": output, "is_error": is_error}  # fmt: skip
                msgs.append({"role": "assistant",
                             "content": result.content + ToolCall(name, args).to_text(),
                             "tool_calls": [{"id": call_id, "type": "function", "function": {
                                 "name": name, "arguments": json.dumps(args)}}]})  # fmt: skip
                msgs.append({"role": "tool", "tool_call_id": call_id, "name": name,
                             "content": ("ERROR: " if is_error else "") + output})  # fmt: skip
                if repeats >= 2:
                    turn.stopped_reason = "duplicate_action"
                    break
            else:
                turn.stopped_reason = "max_steps"
            # out of steps or looping: one last answer without tools
            stream = self._backend.stream_chat(msgs, **self._sample())
            yield from self._pump(stream, turn, state)
        except Exception as e:  # noqa: BLE001 - a failing backend ends the turn, reported
            yield self._error(turn, e)

    def _react(self, text, msgs, turn, state) -> Iterator[dict[str, Any]]:
        """ReAct through :class:`g2c.agent.Agent`: the conversation so far goes into the task."""
        cfg = self._config
        history = msgs[1:-1]
        task = msgs[-1]["content"]
        if history:
            lines = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in history)
            task = f"Conversation so far:\n{lines}\n\nNow: {task}"
        agent = Agent(self._backend, self.registry, max_steps=cfg.max_steps, plan=cfg.plan,
                      loop_detection=cfg.loop_detection, max_new_tokens=cfg.max_new_tokens,
                      temperature=float(cfg.temperature), system=msgs[0]["content"])  # fmt: skip
        result = agent.run(task)
        for step in result.steps:
            turn.prompt_tokens += int(step.prompt_tokens)
            turn.completion_tokens += int(step.completion_tokens)
            if step.action is None or step.observation is None:
                continue
            call_id = f"react_{step.index}"
            args = dict(step.action.arguments)
            yield {"type": "tool_call", "call_id": call_id, "name": step.action.tool,
                   "arguments": args}  # fmt: skip
            obs = step.observation
            turn.tool_calls.append({"call_id": call_id, "name": step.action.tool,
                                    "arguments": args, "output": obs.output,
                                    "is_error": obs.is_error})  # fmt: skip
            yield {"type": "tool_result", "call_id": call_id, "name": step.action.tool,
                   "output": obs.output, "is_error": obs.is_error}  # fmt: skip
        if result.stopped_reason == "backend_error":
            yield self._error(turn, RuntimeError(result.metadata.get("error", "backend error")))
            return
        turn.stopped_reason = result.stopped_reason
        answer = result.final_answer
        if not answer:
            answer = "I could not finish this task (stopped: " + result.stopped_reason + ")."
        state["parts"].append(answer)
        yield {"type": "token", "text": answer}

    # -- ending ---------------------------------------------------------------------------------
    def _save_answer(self, turn: AssistantTurn, state: dict, t0: float) -> None:
        turn.content = "".join(state["parts"]).strip()
        given = state.get("given") or []
        rag = state.get("rag")
        if given and rag is not None:
            cited = {c.n for c in cited_sources(turn.content, rag.citations)}
            turn.citations = [c for c in given if c["n"] in cited] if cited else list(given)
        turn.latency_ms = (time.perf_counter() - t0) * 1000
        meta: dict[str, Any] = {"model": self._backend.info.model_id,
                                "stopped_reason": turn.stopped_reason,
                                "latency_ms": round(turn.latency_ms, 1)}  # fmt: skip
        if turn.stopped_reason == "stopped":
            meta["stopped"] = True
        if turn.stopped_reason == "error" and not turn.content:
            return
        self._record(Message("assistant", turn.content, tool_calls=tuple(turn.tool_calls),
                             citations=tuple(turn.citations), metadata=meta))  # fmt: skip

    def _finish(self, turn: AssistantTurn, state: dict, t0: float) -> Iterator[dict[str, Any]]:
        self._save_answer(turn, state, t0)
        yield {"type": "done", "turn": turn, "conversation_id": self._conversation_id}
