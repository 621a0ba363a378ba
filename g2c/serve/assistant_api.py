"""The web chat's server side: the page, stored conversations, and the assistant as a model.

- ``GET /`` (a browser, ``Accept: text/html``) → the chat page; ``GET /static/{app.js,
  style.css}``. No build step, nothing from a CDN; the page talks to this server only (its
  Content-Security-Policy says so) and is readable without the API key (it asks for the key
  when a call answers 401).
- ``/api/conversations`` — the :class:`~g2c.assistant.ConversationStore` as JSON:
  ``GET`` (list, newest first), ``POST {"title", "model", "system"}`` (create → 201),
  ``GET /{id}`` (header and messages), ``PATCH /{id} {"title"}``, ``DELETE /{id}``,
  ``GET /{id}/export?format=markdown|json``.
- ``POST /v1/chat/completions`` with ``"model": "g2c-assistant"`` (``AssistantConfig.name``)
  runs :meth:`g2c.assistant.Assistant.stream` and maps its events onto OpenAI chunks (see
  :func:`assistant_completion`). The extension field ``conversation_id`` (any model) appends
  the exchange to that stored conversation.

The assistant runs on its own thread per request; its model calls go through the server's
scheduler (:class:`~g2c.serve.server_backend.ServerBackend`), so it shares the batch with every
other client, and a client that goes away stops it (the partial answer is stored, marked
stopped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi import Request as HTTPRequest
from fastapi.responses import Response

from g2c.assistant import (
    Assistant,
    AssistantError,
    ConversationNotFound,
    ConversationStore,
    Message,
)
from g2c.assistant.conversation import Conversation
from g2c.serve._common import (
    APIError,
    Body,
    ServerState,
    message_text,
    parse_body,
    split_tool_call,
)
from g2c.serve.server_backend import ServerBackend, set_stop_event
from g2c.serve.streaming import EventStream

#: the page's files, served from memory: name → media type
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}  # fmt: skip
#: the page may load and call this server only; nothing inline runs
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")  # fmt: skip
#: paths the API key does not guard (the health check and the page's files: no model use)
PUBLIC_PATHS = ("/health", "/", "/static/app.js", "/static/style.css", "/static/index.html",
                "/favicon.ico")  # fmt: skip


def static_file(name: str) -> bytes:
    """The packaged file ``g2c/serve/static/NAME`` (``name`` one of :data:`STATIC`)."""
    if name not in STATIC:
        raise KeyError(name)
    return resources.files("g2c.serve").joinpath("static", name).read_bytes()


class WebChat:
    """What the web chat needs besides the engine: the conversation store (opened on first
    use: default :func:`g2c.assistant.conversations_path`), the assistant (None: the model
    ``AssistantConfig.name`` is not served) and a bound on concurrent assistant runs."""

    def __init__(self, state: ServerState, *, assistant: Any = None,
                 store: ConversationStore | str | None = None, web_ui: bool = True,
                 max_runs: int = 8) -> None:  # fmt: skip
        self.state = state
        self.web_ui = web_ui
        self._store = store
        self._store_lock = threading.Lock()
        self.backend = ServerBackend(state)
        if callable(assistant) and not isinstance(assistant, Assistant):
            assistant = assistant(self.backend)
        if assistant is not None and not isinstance(assistant, Assistant):
            raise TypeError(f"assistant must be a g2c.assistant.Assistant, a callable(backend) "
                            f"returning one, or None; got {type(assistant).__name__}")  # fmt: skip
        self.template: Assistant | None = assistant
        self.name = assistant.config.name if assistant is not None else None
        if self.name is not None and self.name == state.model_id:
            raise ValueError(f"the assistant's name {self.name!r} is the served model's id; "
                             "give the model another --model-id")  # fmt: skip
        self.runs = threading.BoundedSemaphore(max_runs)
        self.files = {name: static_file(name) for name in STATIC} if web_ui else {}

    @property
    def store(self) -> ConversationStore:
        """The conversation store (opened now if it was not)."""
        with self._store_lock:
            if not isinstance(self._store, ConversationStore):
                try:
                    self._store = ConversationStore(self._store)
                except AssistantError as e:
                    raise APIError(500, str(e), code="store_unavailable") from None
            return self._store

    def conversation(self, conversation_id: Any) -> str:
        """A stored conversation's id, checked: not a string → 422, unknown → 404."""
        if not isinstance(conversation_id, str) or not conversation_id.strip():
            raise APIError(422, "conversation_id must be a non-empty string",
                           param="conversation_id")  # fmt: skip
        try:
            return self.store.info(conversation_id).id
        except ConversationNotFound as e:
            raise APIError(404, str(e), param="conversation_id",
                           code="conversation_not_found") from None  # fmt: skip

    def model_cards(self) -> list[dict[str, Any]]:
        """The assistant's entry in ``/v1/models`` (none without an assistant)."""
        if self.template is None:
            return []
        t = self.template
        return [{"id": self.name, "object": "model", "created": self.state.created,
                 "owned_by": "g2c", "context_length": self.state.context_length,
                 "g2c": {"assistant": True, "backend": self.state.model_id,
                         "tools": [tool.name for tool in t.registry],
                         "rag": t.retriever is not None}}]  # fmt: skip


# -- stored conversations ---------------------------------------------------------------------
class NewConversation(Body):
    """``POST /api/conversations``."""

    title: str | None = None
    model: str | None = None
    system: str | None = None


class ConversationPatch(Body):
    """``PATCH /api/conversations/{id}``."""

    title: str


def _store_call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ConversationNotFound as e:
        raise APIError(404, str(e), code="conversation_not_found") from None
    except AssistantError as e:
        raise APIError(400, str(e)) from None


def router(chat: WebChat) -> APIRouter:
    """The page, its files and ``/api/conversations``."""
    api = APIRouter()

    def page(name: str) -> Response:
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if name == "index.html":
            headers |= {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
        return Response(chat.files[name], media_type=STATIC[name], headers=headers)

    if chat.web_ui:

        @api.get("/static/{name}")
        async def static(name: str) -> Response:
            if name not in chat.files:
                raise APIError(404, f"no file {name!r}; the page uses "
                                    f"{', '.join(sorted(STATIC))}")  # fmt: skip
            return page(name)

        @api.get("/favicon.ico")
        async def favicon() -> Response:
            return Response(status_code=204)

    chat.page = page if chat.web_ui else None

    @api.get("/api/conversations")
    async def list_conversations() -> dict:
        infos = _store_call(chat.store.list)
        return {"conversations": [i.to_dict() for i in infos]}

    @api.post("/api/conversations", status_code=201)
    async def create_conversation(request: HTTPRequest) -> dict:
        body = await parse_body(request, NewConversation)
        store = chat.store
        cid = _store_call(lambda: store.create(body.title, body.model, body.system))
        return store.info(cid).to_dict()

    @api.get("/api/conversations/{cid}")
    async def get_conversation(cid: str) -> dict:
        return _store_call(lambda: chat.store.get(cid)).to_dict()

    @api.patch("/api/conversations/{cid}")
    async def rename_conversation(cid: str, request: HTTPRequest) -> dict:
        body = await parse_body(request, ConversationPatch)
        store = chat.store
        _store_call(lambda: store.rename(cid, body.title))
        return store.info(cid).to_dict()

    @api.delete("/api/conversations/{cid}")
    async def delete_conversation(cid: str) -> dict:
        _store_call(lambda: chat.store.delete(cid))
        return {"deleted": cid}

    @api.get("/api/conversations/{cid}/export")
    async def export_conversation(cid: str, format: str = "markdown") -> Response:
        text = _store_call(lambda: chat.store.export(cid, format))
        kind = "application/json" if format == "json" else "text/markdown; charset=utf-8"
        ext = "json" if format == "json" else "md"
        return Response(text, media_type=kind, headers={
            "Content-Disposition": f'attachment; filename="conversation-{cid}.{ext}"'})  # fmt: skip

    return api


# -- the plain model, stored ------------------------------------------------------------------
def last_user_text(body: Any) -> str:
    """The request's last message, which must be a user message with text (400 otherwise)."""
    last = body.messages[-1]
    if last.role != "user":
        raise APIError(400, f"the last message must be the user's (role 'user'), got role "
                            f"{last.role!r}", param="messages")  # fmt: skip
    text = message_text(last.content, f"messages[{len(body.messages) - 1}].content")
    if not text.strip():
        raise APIError(400, "the last user message is empty", param="messages")
    return text


def store_exchange(chat: WebChat, cid: str, user: str, answer: str, *, model: str,
                   stopped: bool, latency_ms: float) -> None:  # fmt: skip
    """Append a user message and the plain model's answer to stored conversation ``cid``
    (errors are logged, never raised: the answer was already sent)."""
    try:
        store = chat.store
        store.append(cid, Message("user", user))
        meta: dict[str, Any] = {"model": model, "latency_ms": round(latency_ms, 1)}
        if stopped:
            meta["stopped"] = True
        store.append(cid, Message("assistant", answer, metadata=meta))
    except Exception:  # noqa: BLE001 - the client has its answer; the log has the failure
        logging.getLogger("g2c.serve").exception("could not store conversation %s", cid)


async def stored_stream(chunks: AsyncIterator[str], chat: WebChat, cid: str, user: str,
                        ticket: Any, model: str) -> AsyncIterator[str]:  # fmt: skip
    """``chunks`` unchanged; when the stream ends (finished, or the client left) the exchange
    is stored."""
    t0 = time.perf_counter()
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        if not ticket.done:
            ticket.cancel()
        content = split_tool_call(ticket)[0] if ticket.handle is not None else ""
        store_exchange(chat, cid, user, content, model=model, stopped=ticket.cancelled,
                       latency_ms=(time.perf_counter() - t0) * 1000)  # fmt: skip


# -- the assistant ------------------------------------------------------------------------------
class AssistantRun:
    """``Assistant.stream(text)`` on its own thread, its events read on the event loop.

    ``events()`` yields the event dicts (an exception in the assistant is raised there);
    ``cancel()`` (any thread) stops it: the thread's :class:`ServerBackend` calls cancel their
    tickets, the generator is closed after the current event (the assistant stores the partial
    answer as stopped). ``done``: the thread has finished. Shaped like a
    :class:`~g2c.serve.scheduler.Ticket` for :class:`~g2c.serve.streaming.EventStream`.
    """

    def __init__(self, start: Callable[[], Iterator[dict[str, Any]]],
                 release: Callable[[], None]) -> None:  # fmt: skip
        self.stop = threading.Event()
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self._start = start
        self._release = release
        self._finished = threading.Event()
        self.thread = threading.Thread(target=self._work, name="g2c-assistant", daemon=True)
        self.thread.start()

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody listens any more
            pass

    def _work(self) -> None:
        set_stop_event(self.stop)
        gen = None
        try:
            gen = self._start()
            for event in gen:
                self._put(("event", event))
                if self.stop.is_set():
                    break
        except BaseException as e:  # handed to the request
            self._put(("error", e))
        finally:
            try:
                if gen is not None:
                    gen.close()  # stopped: the assistant keeps the partial answer
            except Exception as e:  # noqa: BLE001
                self._put(("error", e))
            set_stop_event(None)
            self._finished.set()
            self._release()
            self._put(("end", None))

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The assistant's events, in order."""
        while True:
            kind, item = await self.queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item

    @property
    def done(self) -> bool:
        """True once the assistant's thread has finished."""
        return self._finished.is_set()

    def cancel(self) -> None:
        """Stop the assistant (the client went away or pressed stop)."""
        self.stop.set()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def assistant_config(chat: WebChat, body: Any, system: str | None) -> Any:
    """The template's config with the request's sampling fields and system prompt (a bad
    value → 422 naming it)."""
    changes: dict[str, Any] = {}
    if body.temperature is not None:
        changes["temperature"] = float(body.temperature)
    if body.top_p is not None:
        changes["top_p"] = float(body.top_p) if body.top_p > 0 else None
    if body.top_k is not None:
        changes["top_k"] = body.top_k
    max_tokens = body.max_completion_tokens
    max_tokens = body.max_tokens if max_tokens is None else max_tokens
    if max_tokens is not None:
        changes["max_new_tokens"] = max_tokens
    if system is not None:
        changes["system"] = system
    try:
        return dataclasses.replace(chat.template.config, **changes)
    except AssistantError as e:
        field = next((f for f in ("max_new_tokens", "temperature", "top_p", "top_k")
                      if str(e).startswith(f)), None)  # fmt: skip
        param = {"max_new_tokens": "max_tokens"}.get(field, field)
        raise APIError(422, str(e).replace("max_new_tokens", "max_tokens"), param=param) from None


def _history(body: Any) -> tuple[str | None, Conversation]:
    """(system prompt or None, the earlier user/assistant messages) of a request without a
    stored conversation."""
    system, messages = None, []
    for n, m in enumerate(body.messages[:-1]):
        text = message_text(m.content, f"messages[{n}].content")
        if m.role == "system":
            system = text if system is None else system + "\n\n" + text
        elif m.role in ("user", "assistant"):
            messages.append(Message(m.role, text))
    return system, Conversation(messages)


async def assistant_completion(chat: WebChat, body: Any, request: HTTPRequest) -> Any:
    """``POST /v1/chat/completions`` for the assistant.

    The last message is the user's new text; with ``conversation_id`` the stored conversation
    is the memory (earlier messages in the request are not read), else the request's messages
    are. A system message → ``AssistantConfig.system``; ``temperature``, ``top_p``, ``top_k``,
    ``max_tokens`` → the config (per model call). Streamed, the events become chunks:
    ``token`` → ``delta.content``; ``tool_call`` → ``delta.tool_calls`` (OpenAI's streaming
    shape; the assistant has already run it, so ``finish_reason`` stays ``stop``);
    ``tool_result``, ``citations``, ``notice`` → an extension field ``"g2c"`` on the chunk
    (``{"tool_result": {...}}``, ``{"citations": [...]}``, ``{"notice": "..."}``) that OpenAI
    clients ignore; the first chunk carries ``g2c.conversation_id``, the last ``g2c.turn``.
    Not streamed: one ``chat.completion`` whose message has the answer and ``g2c`` (tool calls
    with their outputs, citations, notices, stopped_reason).
    """
    if body.tools or body.response_format or body.stop:
        raise APIError(400, f"{chat.name} brings its own tools and output format; send the "
                            "request without tools, response_format and stop",
                       param="tools" if body.tools else "response_format")  # fmt: skip
    text = last_user_text(body)
    cid = chat.conversation(body.conversation_id) if body.conversation_id is not None else None
    system, conversation = _history(body)  # with a stored conversation: the system only
    config = assistant_config(chat, body, system)
    t = chat.template
    if not chat.runs.acquire(blocking=False):
        raise APIError(503, f"server busy: every {chat.name} run is taken; retry in 1 s",
                       code="server_busy", headers={"Retry-After": "1"})  # fmt: skip
    try:
        assistant = Assistant(t.backend, t.registry, t.retriever,
                              None if cid is not None else conversation, config,
                              store=chat.store if cid is not None else None,
                              conversation_id=cid)  # fmt: skip
    except AssistantError as e:
        chat.runs.release()
        raise APIError(400, str(e)) from None
    except BaseException:
        chat.runs.release()
        raise
    run = AssistantRun(lambda: assistant.stream(text), chat.runs.release)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    head = {"id": rid, "created": created, "model": chat.name, "system_fingerprint": "g2c"}
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventStream(_assistant_chunks(run, head, usage, cid), run)
    return await _assistant_reply(run, head, request, cid)


async def _assistant_chunks(run: AssistantRun, head: dict, usage: bool,
                            cid: str | None) -> AsyncIterator[str]:  # fmt: skip
    def chunk(delta: dict, reason: str | None = None, **g2c: Any) -> str:
        obj = {**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}  # fmt: skip
        if g2c:
            obj["g2c"] = g2c
        return _sse(obj)

    yield chunk({"role": "assistant", "content": ""}, conversation_id=cid)
    n_calls = 0
    turn = None
    try:
        async for event in run.events():
            kind = event.get("type")
            if kind == "token":
                yield chunk({"content": event["text"]})
            elif kind == "tool_call":
                call = {"index": n_calls, "id": event["call_id"], "type": "function",
                        "function": {"name": event["name"],
                                     "arguments": json.dumps(event["arguments"],
                                                             ensure_ascii=False)}}  # fmt: skip
                n_calls += 1
                yield chunk({"tool_calls": [call]})
            elif kind == "tool_result":
                yield chunk({}, tool_result={k: event.get(k) for k in
                                             ("call_id", "name", "output", "is_error")})  # fmt: skip
            elif kind == "citations":
                yield chunk({}, citations=event["citations"])
            elif kind == "notice":
                yield chunk({}, notice=event["text"])
            elif kind == "done":
                turn = event["turn"]
                cid = event.get("conversation_id", cid)
    except Exception as e:  # noqa: BLE001 - the headers are sent: say it in the stream
        yield _sse({"error": {"message": f"the assistant failed: {type(e).__name__}: {e}",
                              "type": "server_error", "param": None, "code": None}})  # fmt: skip
        return
    done = turn.to_dict() if turn is not None else None
    reason = "length" if turn is not None and turn.stopped_reason == "max_steps" else "stop"
    yield chunk({}, reason, turn=done, conversation_id=cid)
    if usage and turn is not None:
        p, c = turn.prompt_tokens, turn.completion_tokens
        yield _sse({**head, "object": "chat.completion.chunk", "choices": [],
                    "usage": {"prompt_tokens": p, "completion_tokens": c,
                              "total_tokens": p + c}})  # fmt: skip
    yield "data: [DONE]\n\n"


async def _assistant_reply(run: AssistantRun, head: dict, request: HTTPRequest,
                           cid: str | None) -> dict:  # fmt: skip
    turn = None
    events = run.events()
    watch = asyncio.ensure_future(_watch_disconnect(request, run))
    try:
        async for event in events:
            if event.get("type") == "done":
                turn = event["turn"]
                cid = event.get("conversation_id", cid)
    except Exception as e:
        raise APIError(500, f"the assistant failed: {type(e).__name__}: {e}") from None
    finally:
        watch.cancel()
        if not run.done:
            run.cancel()
    if turn is None:
        raise APIError(500, "the assistant ended without an answer")
    p, c = turn.prompt_tokens, turn.completion_tokens
    message = {"role": "assistant", "content": turn.content, "refusal": None}
    return {**head, "object": "chat.completion",
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "length" if turn.stopped_reason == "max_steps"
                         else "stop"}],
            "g2c": {"conversation_id": cid, "turn": turn.to_dict()}}  # fmt: skip


async def _watch_disconnect(request: HTTPRequest, run: AssistantRun) -> None:
    """A client that gave up waiting for a non-streamed answer stops the assistant."""
    while not run.done:
        await asyncio.sleep(0.25)
        if await request.is_disconnected():
            run.cancel()
            return
