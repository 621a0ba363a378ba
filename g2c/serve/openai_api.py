"""The OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``.

Wire format as OpenAI documents it: JSON answers with ``usage`` counts; with ``"stream":
true`` server-sent events (``data: {chunk}`` lines, then ``data: [DONE]``), the usage in a last
chunk when ``stream_options.include_usage`` is set. Errors are ``{"error": {"message", "type",
"param", "code"}}`` with a 4xx status. Supported: ``max_tokens`` / ``max_completion_tokens``,
``temperature``, ``top_p``, ``stop``, ``seed``, ``tools`` + ``tool_choice`` (auto / required /
none / a named function) returning ``tool_calls``, ``response_format`` (``json_object``,
``json_schema``) enforced by constrained decoding; extras ``top_k`` and
``repetition_penalty``. Refused with 400: ``n`` > 1, ``logprobs``, ``echo``, ``suffix``,
``best_of`` > 1, ``dimensions``, non-text content parts. Other unknown fields are ignored.

g2c's extensions: ``"model": "g2c-assistant"`` (when the server runs the assistant) answers
through :func:`g2c.serve.assistant_api.assistant_completion`; ``conversation_id`` appends the
exchange to a stored conversation (the web chat sends it).
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse
from pydantic import Field

from g2c.inference.backends import new_call_id
from g2c.serve import assistant_api
from g2c.serve._common import (
    APIError,
    Body,
    ServerState,
    chat_ids,
    check_object_schema,
    check_prompt_length,
    default_max_tokens,
    embed,
    embedding_rows,
    finished,
    make_request,
    message_text,
    parse_body,
    render_tool_call,
    split_tool_call,
    started,
    submit,
    template_messages,
    tool_constraint,
    tool_functions,
    tool_hold,
    with_tool_prompt,
)
from g2c.serve.scheduler import Ticket
from g2c.serve.streaming import EventStream

FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


class ChatMessage(Body):
    """One OpenAI chat message (role, content, tool calls / tool call id)."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(Body):
    """OpenAI's ``stream_options`` (``include_usage``)."""

    include_usage: bool = False


class Sampling(Body):
    """The sampling fields shared by chat and text completions."""

    model: str
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, gt=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None


class ChatBody(Sampling):
    """The body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    top_logprobs: int | None = None
    #: g2c's extension: append this exchange to the stored conversation (the web chat sends it)
    conversation_id: str | None = None


class CompletionBody(Sampling):
    """The body of ``POST /v1/completions``."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)


class EmbeddingBody(Body):
    """The body of ``POST /v1/embeddings``."""

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def _unsupported(body: Sampling) -> None:
    if (body.n or 1) > 1:
        raise APIError(400, "n > 1 is not supported; send n requests", param="n")
    if body.logprobs:
        raise APIError(400, "logprobs are not supported by this server", param="logprobs")
    if body.presence_penalty or body.frequency_penalty:
        raise APIError(400, "presence_penalty / frequency_penalty are not supported; use "
                            "repetition_penalty", param="presence_penalty")  # fmt: skip


def _sampling(body: Sampling, n_prompt: int, state: ServerState, max_tokens: int | None) -> dict:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4 or not all(stop):
        raise APIError(400, "stop must be up to 4 non-empty strings", param="stop")
    top_p = body.top_p
    if top_p is not None and top_p >= 1:
        top_p = None
    if top_p == 0:
        raise APIError(400, "top_p must be > 0 (use temperature 0 for greedy)", param="top_p")
    return {
        "max_new_tokens": max_tokens if max_tokens is not None
        else default_max_tokens(state.engine, n_prompt),
        "temperature": 1.0 if body.temperature is None else float(body.temperature),
        "top_p": top_p, "top_k": body.top_k, "stop": tuple(stop), "seed": body.seed,
        "repetition_penalty": body.repetition_penalty or 1.0,
    }  # fmt: skip


def _usage(ticket: Ticket) -> dict[str, int]:
    p, c = ticket.prompt_tokens, ticket.completion_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _tool_call_obj(call: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    obj = {"id": new_call_id(), "type": "function",
           "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}  # fmt: skip
    return obj if index is None else {"index": index, **obj}


def _chat_messages(body: ChatBody) -> list[dict[str, Any]]:
    out = []
    for n, m in enumerate(body.messages):
        content = message_text(m.content, f"messages[{n}].content")
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for c in m.tool_calls:
                fn = c.get("function") or {}
                calls.append(render_tool_call(str(fn.get("name", "")), fn.get("arguments", {})))
            content = content + "".join(calls)
        out.append({"role": m.role, "content": content})
    return out


def _response_format(body: ChatBody) -> dict[str, Any]:
    rf = body.response_format
    if rf is None:
        return {}
    kind = rf.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"json": "object"}
    if kind == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise APIError(400, "response_format.json_schema must be {'name': ..., 'schema': "
                                "{...}}", param="response_format")  # fmt: skip
        return {"json_schema": check_object_schema(spec["schema"],
                                                   "response_format.json_schema.schema")}  # fmt: skip
    raise APIError(400, f"response_format.type must be text, json_object or json_schema, got "
                        f"{kind!r}", param="response_format")  # fmt: skip


def _tool_setup(body: ChatBody) -> tuple[list[dict] | None, bool]:
    """(functions to offer or None, a call required)."""
    if not body.tools:
        if body.tool_choice not in (None, "none", "auto"):
            raise APIError(400, "tool_choice needs tools", param="tool_choice")
        return None, False
    fns = tool_functions(body.tools)
    choice = body.tool_choice or "auto"
    if choice == "none":
        return None, False
    if choice in ("auto", "required"):
        return fns, choice == "required"
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        chosen = [fn for fn in fns if fn["name"] == name]
        if not chosen:
            raise APIError(400, f"tool_choice names {name!r}, which is not among the tools "
                                f"{[fn['name'] for fn in fns]}", param="tool_choice")  # fmt: skip
        return chosen, True
    raise APIError(400, f"tool_choice must be none, auto, required or {{'type': 'function', "
                        f"'function': {{'name': ...}}}}, got {choice!r}", param="tool_choice")  # fmt: skip


def router(state: ServerState) -> APIRouter:
    """The ``/v1`` routes over ``state``."""
    api = APIRouter(prefix="/v1")
    engine = state.engine

    def model_card() -> dict[str, Any]:
        return {"id": state.model_id, "object": "model", "created": state.created,
                "owned_by": "g2c", "context_length": state.context_length}  # fmt: skip

    def extra_cards() -> list[dict[str, Any]]:
        return state.chat.model_cards() if state.chat is not None else []

    @api.get("/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card(), *extra_cards()]}

    @api.get("/models/{model_id:path}")
    async def get_model(model_id: str) -> dict:
        for card in extra_cards():
            if card["id"] == model_id:
                return card
        state.check_model(model_id)
        return model_card()

    @api.post("/chat/completions")
    async def chat_completions(request: HTTPRequest):
        body = await parse_body(request, ChatBody)
        chat = state.chat
        if chat is not None and chat.name is not None and body.model == chat.name:
            _unsupported(body)
            return await assistant_api.assistant_completion(chat, body, request)
        state.check_model(body.model)
        _unsupported(body)
        cid = user = None
        if body.conversation_id is not None:
            if chat is None:
                raise APIError(400, "conversation_id needs the web chat's conversation store",
                               param="conversation_id")  # fmt: skip
            cid = chat.conversation(body.conversation_id)
            user = assistant_api.last_user_text(body)
        fns, required = _tool_setup(body)
        fmt = _response_format(body)
        if fns and fmt:
            raise APIError(400, "tools and response_format cannot be combined",
                           param="response_format")  # fmt: skip
        messages = template_messages(engine, _chat_messages(body))
        if fns:
            messages = with_tool_prompt(messages, fns)
        ids = chat_ids(engine, messages)
        check_prompt_length(engine, len(ids), "conversation")
        max_tokens = body.max_completion_tokens
        max_tokens = body.max_tokens if max_tokens is None else max_tokens
        fields = _sampling(body, len(ids), state, max_tokens) | fmt
        if fns:
            fields["constraint"] = tool_constraint(engine, fns, required)
        ticket = await submit(state, make_request(ids, **fields), hold=tool_hold if fns else None)
        await started(ticket)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "created": created, "model": state.model_id,
                "system_fingerprint": "g2c"}  # fmt: skip
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            chunks = _chat_stream(ticket, head, usage)
            if cid is not None:
                chunks = assistant_api.stored_stream(
                    chunks, chat, cid, user, ticket, state.model_id
                )
            return EventStream(chunks, ticket)
        t0 = time.perf_counter()
        await finished(ticket, request)
        content, call = split_tool_call(ticket)
        if cid is not None:
            assistant_api.store_exchange(chat, cid, user, content, model=state.model_id,
                                         stopped=ticket.cancelled,
                                         latency_ms=(time.perf_counter() - t0) * 1000)  # fmt: skip
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        reason = FINISH.get(ticket.finish_reason or "stop", "stop")
        if call is not None:
            message.update(content=content or None, tool_calls=[_tool_call_obj(call)])
            reason = "tool_calls"
        return {**head, "object": "chat.completion", "usage": _usage(ticket),
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": reason}]}  # fmt: skip

    async def _chat_stream(ticket: Ticket, head: dict, usage: bool) -> AsyncIterator[str]:
        def chunk(delta: dict, reason: str | None = None) -> str:
            return _sse({**head, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]})  # fmt: skip

        yield chunk({"role": "assistant", "content": ""})
        held = []
        async for piece in ticket.pieces():
            if ticket.hold is not None and ticket.handle.finished:
                held.append(piece)  # the last piece of a request that may be a tool call
                continue
            yield chunk({"content": piece})
        content, call = split_tool_call(ticket)
        reason = FINISH.get(ticket.finish_reason or "stop", "stop")
        if call is not None:
            if content:
                yield chunk({"content": content})
            yield chunk({"tool_calls": [_tool_call_obj(call, 0)]})
            reason = "tool_calls"
        elif held:
            yield chunk({"content": "".join(held)})
        yield chunk({}, reason)
        if usage:
            yield _sse({**head, "object": "chat.completion.chunk", "choices": [],
                        "usage": _usage(ticket)})  # fmt: skip
        yield "data: [DONE]\n\n"

    @api.post("/completions")
    async def completions(request: HTTPRequest):
        body = await parse_body(request, CompletionBody)
        state.check_model(body.model)
        _unsupported(body)
        if body.echo or body.suffix or (body.best_of or 1) > 1:
            raise APIError(400, "echo, suffix and best_of > 1 are not supported",
                           param="echo" if body.echo else "suffix")  # fmt: skip
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            if len(prompt) != 1:
                raise APIError(400, "one prompt per request; send a list of prompts as separate "
                                    "requests", param="prompt")  # fmt: skip
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = engine.encode(prompt) if prompt else []
        else:
            ids = list(prompt)
            V = engine.model.vocab_size
            if ids and not 0 <= min(ids) <= max(ids) < V:
                raise APIError(400, f"prompt token ids must lie in [0, {V})", param="prompt")
        check_prompt_length(engine, len(ids))
        fields = _sampling(body, len(ids), state, 16 if body.max_tokens is None
                           else body.max_tokens)  # fmt: skip
        ticket = await submit(state, make_request(ids, **fields))
        await started(ticket)
        head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": state.model_id, "object": "text_completion",
                "system_fingerprint": "g2c"}  # fmt: skip
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStream(_completion_stream(ticket, head, usage), ticket)
        await finished(ticket, request)
        reason = FINISH.get(ticket.finish_reason or "stop", "stop")
        return {**head, "usage": _usage(ticket), "choices": [
            {"index": 0, "text": ticket.text, "logprobs": None, "finish_reason": reason}]}  # fmt: skip

    async def _completion_stream(ticket: Ticket, head: dict, usage: bool) -> AsyncIterator[str]:
        def chunk(text: str, reason: str | None = None) -> str:
            return _sse({**head, "choices": [{"index": 0, "text": text, "logprobs": None,
                                               "finish_reason": reason}]})  # fmt: skip

        async for piece in ticket.pieces():
            yield chunk(piece)
        yield chunk("", FINISH.get(ticket.finish_reason or "stop", "stop"))
        if usage:
            yield _sse({**head, "choices": [], "usage": _usage(ticket)})
        yield "data: [DONE]\n\n"

    @api.post("/embeddings")
    async def embeddings(request: HTTPRequest):
        body = await parse_body(request, EmbeddingBody)
        state.check_model(body.model)
        if body.dimensions is not None and body.dimensions != engine.model.embedding_dim:
            raise APIError(400, f"dimensions: this model's embeddings have "
                                f"{engine.model.embedding_dim} dimensions, got "
                                f"{body.dimensions}", param="dimensions")  # fmt: skip
        rows = embedding_rows(engine, body.input, truncate=False, where="input")
        vectors = await embed(state, rows)
        data = []
        for n, v in enumerate(vectors):
            value: Any = v
            if body.encoding_format == "base64":
                value = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode("ascii")
            data.append({"object": "embedding", "index": n, "embedding": value})
        n_tokens = sum(map(len, rows))
        return JSONResponse({"object": "list", "data": data, "model": state.model_id,
                             "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})  # fmt: skip

    return api
