"""Backends: one interface over every way of running a language model.

:class:`Backend` is what the rest of g2c (synthetic data, RAG, tools, agents, the assistant)
talks to: ``complete(prompt)`` and ``chat(messages)`` → :class:`InferenceResult`,
``stream_complete`` / ``stream_chat`` → a :class:`TextStream` of text pieces (its ``result``
once exhausted), and ``chat_with_tools(messages, tools)`` → :class:`ChatResult` with native
tool calls. Implementations:

- :class:`LocalTransformerBackend` — a g2c model on g2c's own :class:`~g2c.inference.Engine`
  (the model's chat template; tool calls by constrained decoding of ``<tool_call>{"name": ...,
  "arguments": {...}}</tool_call>``, see :mod:`g2c.inference.constrained`);
- :class:`OllamaBackend` — an Ollama server (``/api/generate``, ``/api/chat``: NDJSON streams);
- :class:`OpenAIBackend` — any OpenAI-compatible server (``/v1/completions``,
  ``/v1/chat/completions``: server-sent events), ``g2c serve`` included;
- :class:`TransformersBackend` — a Hugging Face ``transformers`` model, for comparisons;
- :class:`LlamaCppBackend` — a GGUF file through ``llama-cpp-python`` when it is installed.

Sampling arguments everywhere: ``max_new_tokens`` (default 256), ``temperature`` (default 0.0 =
greedy, reproducible), ``top_k``, ``top_p``, plus ``stop`` and ``seed``. Bad values →
ValueError naming the argument, before any request is sent.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import inspect
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import torch

try:  # the HTTP backends need httpx; the local ones do not
    import httpx
except ImportError:  # pragma: no cover - exercised only without httpx
    httpx = None

from g2c.inference.constrained import (
    TOOL_CALL_OPEN,
    ToolCallConstraint,
    normalize_tools,
    parse_tool_call,
)
from g2c.inference.engine import Engine, Request
from g2c.sft import template_for
from g2c.transformer import load_model as _load_model

DEFAULT_OLLAMA_URL = "http://localhost:11434"
DEFAULT_OPENAI_URL = "http://localhost:8000/v1"
DEFAULT_TIMEOUT = 120.0


# -- results ----------------------------------------------------------------------------------
def _check_counts(obj: Any, fields: Sequence[str]) -> None:
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


@dataclasses.dataclass
class BackendInfo:
    """Who answered: ``name`` (the backend kind, e.g. "g2c", "ollama"), ``model_id``, and
    ``extra`` (anything else: base_url, device, ...)."""

    name: str
    model_id: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class InferenceResult:
    """One completion: ``prompt`` (str), ``completion`` (str), ``prompt_tokens``,
    ``completion_tokens`` (ints ≥ 0), ``latency_ms`` (wall time, ≥ 0), ``backend``
    (:class:`BackendInfo`), ``metadata`` (``ttft_ms``, ``finish_reason``, ...). Negative
    counts or latency → ValueError naming the field."""

    prompt: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    backend: BackendInfo
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_counts(self, ("prompt_tokens", "completion_tokens", "latency_ms"))

    @property
    def tokens_per_second(self) -> float:
        """Completion tokens per second of latency (0.0 when the latency is 0)."""
        return self.completion_tokens / (self.latency_ms / 1000) if self.latency_ms > 0 else 0.0


@dataclasses.dataclass
class ChatResult:
    """A chat turn that may call tools: ``messages`` (the conversation sent), ``content``
    (the assistant's text, "" when it only calls tools), ``tool_calls`` (list of ``{"name",
    "arguments" (dict), "call_id"}``), token counts, ``latency_ms``, ``backend``. Negative
    counts or latency → ValueError naming the field."""

    messages: list[dict[str, Any]]
    content: str
    tool_calls: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    backend: BackendInfo

    def __post_init__(self) -> None:
        _check_counts(self, ("prompt_tokens", "completion_tokens", "latency_ms"))
        for n, call in enumerate(self.tool_calls):
            if not isinstance(call, dict) or not {"name", "arguments", "call_id"} <= set(call):
                raise ValueError(f"tool_calls[{n}] must have name, arguments, call_id: {call!r}")


class TextStream:
    """Text pieces as a backend produces them; iterate it. Once exhausted, ``result`` holds
    the :class:`InferenceResult` (None before). ``ttft_ms``: time to the first piece."""

    def __init__(self, pieces: Iterator[str], finish: Callable[[str, float, float | None], Any]):
        self._pieces = pieces
        self._finish = finish
        self.result: InferenceResult | None = None
        self.ttft_ms: float | None = None

    def __iter__(self) -> Iterator[str]:
        t0 = time.perf_counter()
        parts: list[str] = []
        for piece in self._pieces:
            if self.ttft_ms is None:
                self.ttft_ms = (time.perf_counter() - t0) * 1000
            parts.append(piece)
            yield piece
        latency = (time.perf_counter() - t0) * 1000
        self.result = self._finish("".join(parts), latency, self.ttft_ms)

    def text(self) -> str:
        """Consume the stream; the whole text."""
        return "".join(self)


def _check_sampling(max_new_tokens: Any, temperature: Any, top_k: Any, top_p: Any) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise ValueError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """``messages`` checked (a non-empty list of dicts with a ``role`` string and a string or
    None ``content``; else ValueError naming the message) and copied."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for n, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError(f"messages[{n}] must be a dict with a 'role' string, got {m!r}")
        if not isinstance(m.get("content", ""), str) and m.get("content") is not None:
            raise ValueError(f"messages[{n}]['content'] must be a string")
    return [dict(m) for m in messages]


def new_call_id() -> str:
    """A fresh tool-call id in OpenAI's form: ``call_`` + 24 hex digits."""
    return "call_" + uuid.uuid4().hex[:24]


class Backend(abc.ABC):
    """A language model behind one interface.

    Subclasses implement ``info``, ``stream_complete`` and ``stream_chat``; ``complete`` and
    ``chat`` consume those streams. ``chat_with_tools`` is native tool calling, for backends
    that support it (others raise NotImplementedError naming the backend).
    """

    @property
    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Name and model id of this backend."""

    @abc.abstractmethod
    def stream_complete(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> TextStream:
        """Continue ``prompt`` (raw text, no chat template); a stream of text pieces."""

    @abc.abstractmethod
    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> TextStream:
        """The assistant's reply to ``messages`` (``[{"role", "content"}]``), streamed."""

    def complete(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> InferenceResult:
        """``stream_complete`` run to the end: the :class:`InferenceResult`."""
        stream = self.stream_complete(
            prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
            top_p=top_p, stop=stop, seed=seed,
        )  # fmt: skip
        stream.text()
        return stream.result

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> InferenceResult:
        """``stream_chat`` run to the end: the :class:`InferenceResult` (``prompt`` is the
        conversation as JSON, ``completion`` the reply)."""
        stream = self.stream_chat(
            messages, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
            top_p=top_p, stop=stop, seed=seed,
        )  # fmt: skip
        stream.text()
        return stream.result

    def chat_with_tools(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        **options: Any,
    ) -> ChatResult:
        """One assistant turn that may call ``tools`` (OpenAI function format). A backend that
        streams tool calls itself (overrides :meth:`stream_chat_with_tools`) gets this for free:
        its stream, drained (``options`` such as ``tool_choice`` "auto" / "required" / "none"
        pass through). Any other backend must override it, else NotImplementedError."""
        if type(self).stream_chat_with_tools is Backend.stream_chat_with_tools:
            raise NotImplementedError(f"{type(self).__name__} has no native tool calling")
        stream = self.stream_chat_with_tools(
            messages, tools, max_new_tokens=max_new_tokens, temperature=temperature,
            top_k=top_k, top_p=top_p, **options,
        )  # fmt: skip
        stream.text()
        return stream.result

    def stream_chat_with_tools(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        **sampling: Any,
    ) -> TextStream:
        """``chat_with_tools`` as a stream: the answer text in pieces (never the tool-call
        markup); once exhausted, ``result`` is the :class:`ChatResult` (not an
        InferenceResult). This default runs ``chat_with_tools`` and yields its ``content`` in
        one piece; g2c's engine streams token by token."""
        holder: dict[str, ChatResult] = {}

        def pieces() -> Iterator[str]:
            holder["result"] = self.chat_with_tools(messages, tools, **sampling)
            if holder["result"].content:
                yield holder["result"].content

        return TextStream(pieces(), lambda text, latency, ttft: holder["result"])

    def _result(self, prompt: str, text: str, n_prompt: int, n_new: int, latency: float,
                **metadata: Any) -> InferenceResult:  # fmt: skip
        return InferenceResult(prompt, text, int(n_prompt), int(n_new), float(latency),
                               self.info, metadata)  # fmt: skip


# -- g2c's own engine ------------------------------------------------------------------------------
TOOL_PROMPT = (
    "You can call these functions (parameters as JSON Schema):\n{functions}\n"
    "To call one, reply with exactly one line:\n"
    '<tool_call>{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}</tool_call>\n'
    "Otherwise answer normally."
)


class LocalTransformerBackend(Backend):
    """A g2c model through g2c's :class:`~g2c.inference.Engine`.

    ``LocalTransformerBackend(model, tokenizer, *, chat_template=None, model_id="g2c-local",
    engine=None, **engine_kwargs)``; ``from_loaded(load_model(...))`` takes the model's own
    chat template. Without one, g2c's ``ChatTemplate`` (needs the course's special tokens).

    Native tool calls: the tools are described in a system message (:data:`TOOL_PROMPT`) and
    the reply is decoded under :class:`~g2c.inference.ToolCallConstraint`: free text, or —
    once the model writes ``<tool_call>`` (forced from the first token with
    ``tool_choice="required"``) — a call whose name is one of the tools and whose arguments
    follow that tool's parameter schema (keys, value types, enums), always complete JSON.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        chat_template: Any = None,
        model_id: str = "g2c-local",
        engine: Engine | None = None,
        **engine_kwargs: Any,
    ) -> None:
        if tokenizer is None:
            raise ValueError("tokenizer is required (LocalTransformerBackend works on text)")
        if chat_template is None:
            loaded = SimpleNamespace(tokenizer=tokenizer, chat_template=None, chat_info=None)
            try:
                chat_template = template_for(loaded)
            except ValueError:
                chat_template = None
        engine_kwargs.setdefault("max_batch_size", 1)
        self.engine = engine or Engine(model, tokenizer, chat_template=chat_template,
                                       **engine_kwargs)  # fmt: skip
        self.model_id = model_id

    @classmethod
    def from_loaded(cls, loaded: Any, **kwargs: Any) -> LocalTransformerBackend:
        """From ``g2c.transformer.load_model(...)``: model, tokenizer, the model's template."""
        kwargs.setdefault("model_id", str(getattr(loaded, "source", "g2c-local")))
        if "chat_template" not in kwargs and loaded.tokenizer is not None:
            try:
                kwargs["chat_template"] = template_for(loaded)
            except ValueError:
                pass
        return cls(loaded.model, loaded.tokenizer, **kwargs)

    @property
    def info(self) -> BackendInfo:
        """Name ``g2c``, the model id and the engine's ``max_len``."""
        return BackendInfo("g2c", self.model_id, {"max_len": self.engine.max_len})

    def _stream(self, prompt_text: str, ids: list[int], sampling: dict, **extra: Any):
        _check_sampling(sampling.get("max_new_tokens", 256), sampling.get("temperature", 0.0),
                        sampling.get("top_k"), sampling.get("top_p"))  # fmt: skip
        stop = sampling.pop("stop", None) or ()
        request = Request(ids, stop=tuple(stop), **{"max_new_tokens": 256, "temperature": 0.0,
                                                    **sampling}, **extra)  # fmt: skip
        handle = self.engine.submit(request)

        def finish(text: str, latency: float, ttft: float | None) -> InferenceResult:
            t_first = handle.first_token_at
            ttft_ms = (t_first - handle.submitted_at) * 1000 if t_first else ttft
            return self._result(prompt_text, text, len(ids), len(handle.token_ids), latency,
                                ttft_ms=ttft_ms, finish_reason=handle.finish_reason)  # fmt: skip

        stream = TextStream(iter(handle), finish)
        stream.handle = handle
        return stream

    def stream_complete(self, prompt: str, **sampling: Any) -> TextStream:
        """Continue raw ``prompt`` on g2c's engine; text pieces as they decode (see :class:`Backend`)."""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        return self._stream(prompt, self.engine._prompt_ids(prompt), dict(sampling))

    def _chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        template = self.engine.chat_template
        roles = getattr(template, "roles", ())
        out = []
        for m in messages:
            m = {"role": m["role"], "content": m.get("content") or ""}
            if m["role"] == "tool" and "tool" not in roles:
                m = {"role": "user", "content": f"<tool_response>{m['content']}</tool_response>"}
            out.append(m)
        return self.engine._prompt_ids(self.engine.chat_prompt(out))

    def stream_chat(self, messages: list[dict[str, Any]], **sampling: Any) -> TextStream:
        """The reply to ``messages`` rendered with the model's chat template, streamed."""
        messages = check_messages(messages)
        ids = self._chat_ids(messages)
        return self._stream(json.dumps(messages), ids, dict(sampling))

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
        """:meth:`chat_with_tools` streamed token by token (``tool_choice`` "auto": the model
        decides, "required": a call is forced, "none": plain chat; another → ValueError): the
        pieces are the answer text; while
        the reply could still be the start of ``<tool_call>`` it is held back, and a call is
        never yielded. Once exhausted, ``result`` is the :class:`ChatResult`; ``handle`` is the
        engine request (``handle.cancel()`` stops it)."""
        messages = check_messages(messages)
        _check_sampling(max_new_tokens, temperature, top_k, top_p)
        if tool_choice not in ("auto", "required", "none"):
            raise ValueError(f"tool_choice must be auto, required or none, got {tool_choice!r}")
        sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p)  # fmt: skip
        if not tools or tool_choice == "none":
            inner = self.stream_chat(messages, **sampling)

            def plain(text: str, latency: float, ttft: float | None) -> ChatResult:
                r = inner.result
                return ChatResult(messages, r.completion, [], r.prompt_tokens,
                                  r.completion_tokens, r.latency_ms, self.info)  # fmt: skip

            stream = TextStream(iter(inner), plain)
            stream.handle = getattr(inner, "handle", None)
            return stream
        fns = normalize_tools(tools)
        listing = "\n".join(json.dumps({k: fn.get(k) for k in ("name", "description",
                                                                "parameters")}) for fn in fns)  # fmt: skip
        system = TOOL_PROMPT.format(functions=listing)
        sent = [dict(m) for m in messages]
        if sent[0]["role"] == "system":
            sent[0]["content"] = (sent[0].get("content") or "") + "\n\n" + system
        else:
            sent.insert(0, {"role": "system", "content": system})
        constraint = ToolCallConstraint(tools, self.engine.vocab_bytes(),
                                        required=tool_choice == "required")  # fmt: skip
        t0 = time.perf_counter()
        ids = self._chat_ids(sent)
        handle = self.engine.submit(Request(ids, constraint=constraint, **sampling))

        def pieces() -> Iterator[str]:
            sent_upto = 0  # characters of handle.text already yielded
            for _ in handle:
                text = handle.text
                if constraint.calling or TOOL_CALL_OPEN.startswith(text.lstrip()):
                    continue  # a call (or possibly its start): hold back
                if len(text) > sent_upto:
                    yield text[sent_upto:]
                    sent_upto = len(text)

        def finish(streamed: str, latency: float, ttft: float | None) -> ChatResult:
            text = handle.text
            calls = []
            call = parse_tool_call(text) if constraint.calling else None
            if call is not None:
                calls.append({**call, "call_id": new_call_id()})
                text = text[: text.find(TOOL_CALL_OPEN)]
            return ChatResult(messages, text, calls, len(ids), len(handle.token_ids),
                              (time.perf_counter() - t0) * 1000, self.info)  # fmt: skip

        stream = TextStream(pieces(), finish)
        stream.handle = handle
        return stream


# -- HTTP backends -----------------------------------------------------------------------------
class BackendError(RuntimeError):
    """A backend could not answer (connection refused, HTTP error, malformed reply)."""


class OllamaError(BackendError):
    """An Ollama server failed or is unreachable; the message says which and how."""


class OpenAIError(BackendError):
    """An OpenAI-compatible server failed or is unreachable."""


class _HTTPBackend(Backend):
    error: type[BackendError] = BackendError
    kind = "http"

    def __init__(self, model_id: str, base_url: str, timeout: float,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        if httpx is None:
            raise ImportError(f"{type(self).__name__} needs httpx: pip install 'httpx>=0.27'")
        if not isinstance(model_id, str) or not model_id:
            raise ValueError(f"model_id must be a non-empty string, got {model_id!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.model_id = model_id
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.client = httpx.Client(timeout=self.timeout, headers=headers or {})

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(self.kind, self.model_id, {"base_url": self.base_url})

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def _post(self, path: str, payload: dict) -> dict:
        return post_json(self.client, self.base_url + path, payload, self.error)

    def _lines(self, path: str, payload: dict) -> Iterator[str]:
        url = self.base_url + path
        try:
            with self.client.stream("POST", url, json=payload) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self.error(f"{url} answered HTTP {r.status_code}: {r.text[:500]}")
                yield from r.iter_lines()
        except httpx.HTTPError as e:
            raise self.error(f"cannot reach {url}: {e}; is the server running?") from e


def takes_tool_choice(backend: Any) -> bool:
    """Whether ``backend``'s tool-call stream takes ``tool_choice`` (g2c's engine and server:
    a call can be forced with "required"); HTTP backends and stand-ins without it → False."""
    try:
        params = inspect.signature(backend.stream_chat_with_tools).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "tool_choice" in params


def post_json(client: Any, url: str, payload: dict, error: type[Exception]) -> Any:
    """POST ``payload`` as JSON with an ``httpx.Client`` and return the decoded JSON answer.
    An unreachable server, an HTTP status ≥ 400 or a body that is not JSON → ``error`` (the
    backend's exception class) with the URL and the server's words, never an httpx traceback.
    Shared by the HTTP backends and ``g2c.rag.HTTPEmbedder``."""
    try:
        r = client.post(url, json=payload)
    except httpx.HTTPError as e:
        raise error(f"cannot reach {url}: {e}; is the server running?") from e
    if r.status_code >= 400:
        raise error(f"{url} answered HTTP {r.status_code}: {r.text[:500]}")
    try:
        return r.json()
    except ValueError as e:
        raise error(f"{url} did not answer JSON: {r.text[:200]!r}") from e


class OllamaBackend(_HTTPBackend):
    """An Ollama server: ``OllamaBackend(model_id, base_url=DEFAULT_OLLAMA_URL,
    timeout=120.0)``. ``stream_complete`` posts to ``/api/generate`` (``raw``: no template),
    ``stream_chat`` and ``chat_with_tools`` to ``/api/chat``; NDJSON streams. Token counts
    are the server's ``prompt_eval_count`` / ``eval_count``. Failures → :class:`OllamaError`.
    """

    error = OllamaError
    kind = "ollama"

    def __init__(self, model_id: str, base_url: str = DEFAULT_OLLAMA_URL,
                 timeout: float = DEFAULT_TIMEOUT) -> None:  # fmt: skip
        super().__init__(model_id, base_url, timeout)

    @staticmethod
    def _options(max_new_tokens=256, temperature=0.0, top_k=None, top_p=None, stop=None,
                 seed=None) -> dict:  # fmt: skip
        _check_sampling(max_new_tokens, temperature, top_k, top_p)
        opts = {"num_predict": max_new_tokens, "temperature": temperature, "top_k": top_k,
                "top_p": top_p, "stop": list(stop) if stop else None, "seed": seed}  # fmt: skip
        return {k: v for k, v in opts.items() if v is not None}

    def _ndjson(self, path: str, payload: dict, key: Callable[[dict], str], final: dict):
        for line in self._lines(path, payload):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise OllamaError(f"malformed NDJSON line from {path}: {line[:200]!r}") from e
            if "error" in obj:
                raise OllamaError(f"{path}: {obj['error']}")
            piece = key(obj)
            if piece:
                yield piece
            if obj.get("done"):
                final.update(obj)
                return

    def _stream(self, path: str, payload: dict, key, prompt_text: str) -> TextStream:
        final: dict = {}

        def finish(text: str, latency: float, ttft: float | None) -> InferenceResult:
            return self._result(prompt_text, text, final.get("prompt_eval_count", 0),
                                final.get("eval_count", 0), latency, ttft_ms=ttft,
                                finish_reason=final.get("done_reason"))  # fmt: skip

        return TextStream(self._ndjson(path, payload, key, final), finish)

    def stream_complete(self, prompt: str, **sampling: Any) -> TextStream:
        """``/api/generate`` with ``raw`` prompt, NDJSON pieces streamed; errors → :class:`OllamaError`."""
        payload = {"model": self.model_id, "prompt": prompt, "stream": True, "raw": True,
                   "options": self._options(**sampling)}  # fmt: skip
        return self._stream("/api/generate", payload, lambda o: o.get("response", ""), prompt)

    def stream_chat(self, messages: list[dict[str, Any]], **sampling: Any) -> TextStream:
        """``/api/chat``, NDJSON pieces streamed; errors → :class:`OllamaError`."""
        messages = check_messages(messages)
        payload = {"model": self.model_id, "messages": messages, "stream": True,
                   "options": self._options(**sampling)}  # fmt: skip
        key = lambda o: (o.get("message") or {}).get("content", "")  # noqa: E731
        return self._stream("/api/chat", payload, key, json.dumps(messages))

    def chat_with_tools(self, messages, tools=None, *, max_new_tokens=256, temperature=0.0,
                        top_k=None, top_p=None) -> ChatResult:  # fmt: skip
        """``/api/chat`` with ``tools`` (the server's native tool calls) → :class:`ChatResult`."""
        messages = check_messages(messages)
        payload = {"model": self.model_id, "messages": messages, "stream": False,
                   "options": self._options(max_new_tokens, temperature, top_k, top_p)}  # fmt: skip
        if tools:
            payload["tools"] = tools
        t0 = time.perf_counter()
        obj = self._post("/api/chat", payload)
        latency = (time.perf_counter() - t0) * 1000
        if "error" in obj:
            raise OllamaError(f"/api/chat: {obj['error']}")
        msg = obj.get("message") or {}
        calls = []
        for c in msg.get("tool_calls") or []:
            fn = c.get("function") or {}
            args = fn.get("arguments") or {}
            if isinstance(args, str):
                args = json.loads(args) if args.strip() else {}
            calls.append({"name": fn.get("name", ""), "arguments": args,
                          "call_id": c.get("id") or new_call_id()})  # fmt: skip
        return ChatResult(messages, msg.get("content") or "", calls,
                          int(obj.get("prompt_eval_count", 0)), int(obj.get("eval_count", 0)),
                          latency, self.info)  # fmt: skip


class OpenAIBackend(_HTTPBackend):
    """An OpenAI-compatible server (``g2c serve``, vLLM, llama.cpp's server, OpenAI itself):
    ``OpenAIBackend(model_id, base_url=DEFAULT_OPENAI_URL, api_key=None, timeout=120.0)``.
    ``stream_complete`` → ``/v1/completions``, ``stream_chat`` / ``chat_with_tools`` →
    ``/v1/chat/completions``; streams are server-sent events (``data: {...}``, ``data:
    [DONE]``) with ``stream_options.include_usage`` for the token counts. ``top_k`` is sent
    as an extra field (servers that do not know it ignore it). Failures → :class:`OpenAIError`.
    """

    error = OpenAIError
    kind = "openai"

    def __init__(self, model_id: str, base_url: str = DEFAULT_OPENAI_URL,
                 api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:  # fmt: skip
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        super().__init__(model_id, base_url, timeout, headers)

    @staticmethod
    def _params(max_new_tokens=256, temperature=0.0, top_k=None, top_p=None, stop=None,
                seed=None) -> dict:  # fmt: skip
        _check_sampling(max_new_tokens, temperature, top_k, top_p)
        p = {"max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
             "top_k": top_k, "stop": list(stop) if stop else None, "seed": seed}  # fmt: skip
        return {k: v for k, v in p.items() if v is not None}

    def _sse(self, path: str, payload: dict, key, final: dict) -> Iterator[str]:
        for line in self._lines(path, payload):
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                obj = json.loads(data)
            except ValueError as e:
                raise OpenAIError(f"malformed server-sent event from {path}: {data[:200]!r}") from e
            if "error" in obj:
                raise OpenAIError(f"{path}: {obj['error']}")
            if obj.get("usage"):
                final["usage"] = obj["usage"]
            for choice in obj.get("choices") or []:
                if choice.get("finish_reason"):
                    final["finish_reason"] = choice["finish_reason"]
                piece = key(choice)
                if piece:
                    yield piece

    def _stream(self, path: str, payload: dict, key, prompt_text: str) -> TextStream:
        final: dict = {}
        payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}

        def finish(text: str, latency: float, ttft: float | None) -> InferenceResult:
            usage = final.get("usage") or {}
            return self._result(prompt_text, text, usage.get("prompt_tokens", 0),
                                usage.get("completion_tokens", 0), latency, ttft_ms=ttft,
                                finish_reason=final.get("finish_reason"))  # fmt: skip

        return TextStream(self._sse(path, payload, key, final), finish)

    def stream_complete(self, prompt: str, **sampling: Any) -> TextStream:
        """``/v1/completions`` with SSE streaming; errors → :class:`OpenAIError`."""
        payload = {"model": self.model_id, "prompt": prompt, **self._params(**sampling)}
        return self._stream("/completions", payload, lambda c: c.get("text", ""), prompt)

    def stream_chat(self, messages: list[dict[str, Any]], **sampling: Any) -> TextStream:
        """``/v1/chat/completions`` with SSE streaming; errors → :class:`OpenAIError`."""
        messages = check_messages(messages)
        payload = {"model": self.model_id, "messages": messages, **self._params(**sampling)}
        key = lambda c: (c.get("delta") or {}).get("content") or ""  # noqa: E731
        return self._stream("/chat/completions", payload, key, json.dumps(messages))

    def chat_with_tools(self, messages, tools=None, *, max_new_tokens=256, temperature=0.0,
                        top_k=None, top_p=None) -> ChatResult:  # fmt: skip
        """``/v1/chat/completions`` with ``tools`` (native ``tool_calls``) → :class:`ChatResult`."""
        messages = check_messages(messages)
        payload = {"model": self.model_id, "messages": messages,
                   **self._params(max_new_tokens, temperature, top_k, top_p)}  # fmt: skip
        if tools:
            payload["tools"] = tools
        t0 = time.perf_counter()
        obj = self._post("/chat/completions", payload)
        latency = (time.perf_counter() - t0) * 1000
        try:
            msg = obj["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as e:
            raise OpenAIError(f"/chat/completions reply has no choices[0].message: {obj}") from e
        calls = []
        for c in msg.get("tool_calls") or []:
            fn = c.get("function") or {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError as e:
                raise OpenAIError(f"tool call arguments are not JSON: {fn!r}") from e
            calls.append({"name": fn.get("name", ""), "arguments": args,
                          "call_id": c.get("id") or new_call_id()})  # fmt: skip
        usage = obj.get("usage") or {}
        return ChatResult(messages, msg.get("content") or "", calls,
                          int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), latency, self.info)  # fmt: skip


# -- other engines, for comparisons --------------------------------------------------------------
def _optional(module: str, pip_name: str, why: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{why} needs the optional package {pip_name!r}: pip install "
                          f"{pip_name}") from e  # fmt: skip


class TransformersBackend(Backend):
    """A Hugging Face ``transformers`` causal LM (for comparisons with g2c's engine).

    ``TransformersBackend(model, tokenizer, *, model_id=None)``: a loaded model and tokenizer
    (``chat`` uses ``tokenizer.apply_chat_template``). Streams come back in one piece
    (``model.generate``; time to first token = latency). ImportError when transformers is
    missing.
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str | None = None) -> None:
        _optional("transformers", "transformers", "TransformersBackend")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id or getattr(getattr(model, "config", None), "_name_or_path", "hf")

    @property
    def info(self) -> BackendInfo:
        """Name ``transformers`` and the model id."""
        return BackendInfo("transformers", str(self.model_id))

    def _generate(self, ids: list[int], prompt_text: str, max_new_tokens=256, temperature=0.0,
                  top_k=None, top_p=None, stop=None, seed=None) -> TextStream:  # fmt: skip
        _check_sampling(max_new_tokens, temperature, top_k, top_p)

        def run() -> Iterator[str]:
            if seed is not None:
                torch.manual_seed(seed)
            kw = {"do_sample": temperature > 0}
            if temperature > 0:
                kw.update(temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
            with torch.no_grad():
                out = self.model.generate(
                    torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.eos_token_id,
                    **kw,
                )  # fmt: skip
            new = out[0, len(ids) :].tolist()
            if new and new[-1] == self.tokenizer.eos_token_id:
                new = new[:-1]
            state["n"] = len(new)
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            for s in stop or ():
                text = text.split(s)[0]
            yield text

        state = {"n": 0}
        return TextStream(run(), lambda text, lat, ttft: self._result(
            prompt_text, text, len(ids), state["n"], lat, ttft_ms=ttft))  # fmt: skip

    def stream_complete(self, prompt: str, **sampling: Any) -> TextStream:
        """``model.generate`` on raw ``prompt`` (for comparisons); the text as a :class:`TextStream`."""
        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        return self._generate(ids, prompt, **sampling)

    def stream_chat(self, messages: list[dict[str, Any]], **sampling: Any) -> TextStream:
        """The tokenizer's chat template + ``model.generate``; the reply as a :class:`TextStream`."""
        messages = check_messages(messages)
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)  # fmt: skip
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return self._generate(ids, json.dumps(messages), **sampling)


class LlamaCppBackend(Backend):
    """A GGUF model through ``llama-cpp-python`` (optional: it builds from source):
    ``LlamaCppBackend(model_path, *, n_ctx=2048, n_threads=1, model_id=None)``. Without
    ``llama_cpp`` installed → ImportError saying how to install it."""

    def __init__(self, model_path: str, *, n_ctx: int = 2048, n_threads: int = 1,
                 model_id: str | None = None) -> None:  # fmt: skip
        llama_cpp = _optional("llama_cpp", "llama-cpp-python", "LlamaCppBackend")
        # verbose=True: llama-cpp-python 0.3.36 crashes (SIGSEGV) on the first eval with
        # verbose=False, in its stderr suppression; its log then goes to stderr
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads,
                                   verbose=True)  # fmt: skip
        self.model_id = model_id or str(model_path)

    @property
    def info(self) -> BackendInfo:
        """Name ``llama.cpp`` and the GGUF path (or the given model id)."""
        return BackendInfo("llama.cpp", self.model_id)

    @staticmethod
    def _kw(max_new_tokens=256, temperature=0.0, top_k=None, top_p=None, stop=None, seed=None):
        _check_sampling(max_new_tokens, temperature, top_k, top_p)
        kw = {"max_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k or 0,
              "top_p": top_p or 1.0, "stop": list(stop) if stop else None, "seed": seed}  # fmt: skip
        return {k: v for k, v in kw.items() if v is not None}

    def _stream(self, chunks: Iterator[dict], key, prompt_text: str, n_prompt: int):
        count = {"n": 0}

        def pieces() -> Iterator[str]:
            for chunk in chunks:
                piece = key(chunk["choices"][0])
                if piece:
                    count["n"] += 1  # llama.cpp streams one token per chunk
                    yield piece

        return TextStream(pieces(), lambda text, lat, ttft: self._result(
            prompt_text, text, n_prompt, count["n"], lat, ttft_ms=ttft))  # fmt: skip

    def stream_complete(self, prompt: str, **sampling: Any) -> TextStream:
        """``Llama.create_completion`` on raw ``prompt``, one token per piece."""
        n_prompt = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False))
        chunks = self.llm(prompt, stream=True, **self._kw(**sampling))
        return self._stream(chunks, lambda c: c.get("text", ""), prompt, n_prompt)

    def stream_chat(self, messages: list[dict[str, Any]], **sampling: Any) -> TextStream:
        """``Llama.create_chat_completion`` with the GGUF's own template, one token per piece."""
        messages = check_messages(messages)
        chunks = self.llm.create_chat_completion(messages=messages, stream=True,
                                                 **self._kw(**sampling))  # fmt: skip
        key = lambda c: (c.get("delta") or {}).get("content") or ""  # noqa: E731
        return self._stream(chunks, key, json.dumps(messages), 0)


# -- a MODEL string → a backend (the one place every CLI and helper resolves ``--model``) --------
BACKEND_APIS = ("openai", "ollama")


def served_model(backend: OpenAIBackend) -> str:
    """The first model id an OpenAI-compatible server lists at ``/v1/models`` (``g2c serve``
    serves one). Unreachable server or empty list → :class:`OpenAIError` saying to pass a
    model name."""
    url = backend.base_url + "/models"
    try:
        reply = backend.client.get(url)
        ids = [m["id"] for m in reply.json()["data"]]
    except Exception as exc:  # httpx errors, non-JSON, another shape: all say the same
        raise OpenAIError(
            f"cannot list the models at {url} ({type(exc).__name__}: {exc}); "
            "is the server running? Or name the model (URL#MODEL or model_id)"
        ) from None
    if not ids:
        raise OpenAIError(f"{url} lists no model; name one (URL#MODEL or model_id)")
    return ids[0]


def backend_from_spec(
    spec: str,
    *,
    api: str | None = None,
    model_id: str | None = None,
    api_key: str | None = None,
    device: str = "cpu",
    max_len: int | None = 2048,
    load: Callable[[str], Any] | None = None,
) -> Backend:
    """A :class:`Backend` for a ``--model`` string.

    - ``ollama:NAME`` → :class:`OllamaBackend` on localhost;
    - ``http(s)://HOST[:PORT][/v1|/api][#MODEL]`` → an HTTP backend: ``api`` "ollama" (the
      default when the port is 11434 or the URL ends in ``/api``; needs a model name) or
      "openai" (otherwise; "/v1" is appended when missing); the model is ``#MODEL``, else
      ``model_id``, else (OpenAI) the first one the server lists (:func:`served_model`);
    - anything else → ``load(spec)`` (default ``g2c.transformer.load_model(spec,
      device=device)``; a caller above the loader may pass one that also reads LoRA runs) on
      g2c's engine with the model's own chat template; its KV cache holds ``max_len``
      positions, capped at the model's ``max_seq_len`` (None: the engine's default).

    Raises:
        ValueError: an empty spec, an unknown ``api``, Ollama without a model name, a local
            model without a tokenizer.
        FileNotFoundError: nothing at ``spec`` (from the loader).
        OpenAIError: no model name and the server's model list cannot be read.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("model must be a model name/path or an http(s):// URL, got an empty value")
    if api is not None and api not in BACKEND_APIS:
        raise ValueError(f"api must be one of {list(BACKEND_APIS)}, got {api!r}")
    if spec.startswith("ollama:"):
        return OllamaBackend(spec.split(":", 1)[1] or model_id or "default")
    if spec.startswith(("http://", "https://")):
        url, _, name = spec.partition("#")
        name = name or model_id
        base = url.rstrip("/")
        ollama = base.endswith("/api") or ":11434" in base
        if (api or ("ollama" if ollama else "openai")) == "ollama":
            if not name:
                raise ValueError("an Ollama model needs a name (URL#MODEL or model_id)")
            return OllamaBackend(name, base.removesuffix("/api"))
        base = base if base.endswith("/v1") else base + "/v1"
        backend = OpenAIBackend(name or "unknown", base, api_key=api_key)
        if not name:
            backend.model_id = served_model(backend)
        return backend
    loaded = load(spec) if load is not None else _load_model(spec, device=device)
    if loaded.tokenizer is None:
        raise ValueError(f"model {spec} comes without a tokenizer; it cannot read prompts")
    if max_len is not None:  # never more than the model's own context (a small g2c run)
        max_len = min(int(max_len), int(getattr(loaded.model, "max_seq_len", max_len)))
    return LocalTransformerBackend.from_loaded(loaded, model_id=model_id or spec, max_len=max_len)
