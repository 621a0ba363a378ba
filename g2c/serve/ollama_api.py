"""The Ollama-compatible API: ``/api/version``, ``/api/tags``, ``/api/show``,
``/api/generate``, ``/api/chat``, ``/api/embed`` (and the older ``/api/embeddings``).

Wire format as Ollama documents it: ``"stream"`` defaults to true and streams NDJSON (one JSON
object per line, the last with ``"done": true``, ``done_reason`` and the counts
``prompt_eval_count`` / ``eval_count`` with durations in nanoseconds); ``"stream": false``
answers one object. ``options``: ``num_predict`` (-1 / -2: up to the context), ``temperature``
(default 0.8), ``top_k`` (40), ``top_p`` (0.9), ``repeat_penalty`` (1.0 here; Ollama's is
1.1), ``seed``, ``stop``; others are ignored. ``format``: ``"json"`` or a JSON Schema object,
enforced by constrained decoding. ``tools`` → ``message.tool_calls`` (arguments as an object).
Errors are ``{"error": "message"}`` with a 4xx status.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi import Request as HTTPRequest
from pydantic import Field

from g2c import __version__
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
from g2c.serve.streaming import NDJSON, EventStream

DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "repeat_penalty": 1.0}


class Options(Body):
    """Ollama's ``options`` (sampling and length): the fields g2c honours."""

    num_predict: int | None = None
    temperature: float | None = Field(default=None, ge=0)
    top_k: int | None = None
    top_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, gt=0)
    seed: int | None = None
    stop: list[str] | str | None = None
    num_ctx: int | None = None


class OllamaMessage(Body):
    """One Ollama chat message (role, content, optional tool calls)."""

    role: str
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None


class _Generation(Body):
    model: str
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: str | int | float | None = None


class GenerateBody(_Generation):
    """The body of ``POST /api/generate``."""

    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: list[str] | None = None


class ChatBody(_Generation):
    """The body of ``POST /api/chat``."""

    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class ShowBody(Body):
    """The body of ``POST /api/show``."""

    model: str | None = None
    name: str | None = None  # older clients
    verbose: bool = False


class EmbedBody(Body):
    """The body of ``POST /api/embed``."""

    model: str
    input: str | list[str]
    truncate: bool = False
    options: Options | None = None
    keep_alive: str | int | float | None = None
    dimensions: int | None = None


class LegacyEmbedBody(Body):
    """The body of the older ``POST /api/embeddings``."""

    model: str
    prompt: str
    options: Options | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _sampling(options: Options | None, n_prompt: int, state: ServerState) -> dict[str, Any]:
    o = options or Options()
    n = o.num_predict
    max_new = default_max_tokens(state.engine, n_prompt) if n is None or n < 0 else n
    stop = [o.stop] if isinstance(o.stop, str) else list(o.stop or [])
    top_k = DEFAULTS["top_k"] if o.top_k is None else o.top_k
    top_p = DEFAULTS["top_p"] if o.top_p is None else o.top_p
    return {
        "max_new_tokens": max_new,
        "temperature": DEFAULTS["temperature"] if o.temperature is None else o.temperature,
        "top_k": top_k if top_k > 0 else None,
        "top_p": top_p if 0 < top_p < 1 else None,
        "repetition_penalty": o.repeat_penalty or DEFAULTS["repeat_penalty"],
        "stop": tuple(s for s in stop if s), "seed": o.seed,
    }  # fmt: skip


def _format(fmt: Any) -> dict[str, Any]:
    if fmt in (None, ""):
        return {}
    if fmt == "json":
        return {"json": "object"}
    if isinstance(fmt, dict):
        return {"json_schema": check_object_schema(fmt, "format")}
    raise APIError(400, f"format must be 'json' or a JSON Schema object, got {fmt!r}")


def _stats(ticket: Ticket, t0: float) -> dict[str, Any]:
    h = ticket.handle
    total = int((time.perf_counter() - t0) * 1e9)
    first = (h.first_token_at or h.finished_at or time.perf_counter()) if h else t0
    end = (h.finished_at or time.perf_counter()) if h else t0
    submitted = h.submitted_at if h else t0
    return {"done_reason": ticket.finish_reason or "stop", "total_duration": total,
            "load_duration": 0, "prompt_eval_count": ticket.prompt_tokens,
            "prompt_eval_duration": max(int((first - submitted) * 1e9), 0),
            "eval_count": ticket.completion_tokens,
            "eval_duration": max(int((end - first) * 1e9), 0)}  # fmt: skip


def _line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def router(state: ServerState) -> APIRouter:
    """The ``/api`` routes over ``state``."""
    api = APIRouter(prefix="/api")
    engine = state.engine

    def details() -> dict[str, Any]:
        d = state.details
        return {"parent_model": "", "format": d.get("format", "safetensors"),
                "family": d.get("family", "g2c"), "families": [d.get("family", "g2c")],
                "parameter_size": d.get("parameter_size", ""),
                "quantization_level": d.get("quantization_level", "F32")}  # fmt: skip

    def model_name(body: Any) -> str:
        name = getattr(body, "model", None) or getattr(body, "name", None)
        if name is None:
            raise APIError(400, "model is required", param="model")
        return name

    def check(name: str) -> None:
        # Ollama clients may add the default tag
        state.check_model(name[: -len(":latest")] if name.endswith(":latest") else name)

    @api.get("/version")
    async def version() -> dict:
        return {"version": __version__}

    @api.get("/tags")
    async def tags() -> dict:
        created = datetime.fromtimestamp(state.created, UTC).isoformat()
        return {"models": [{"name": state.model_id, "model": state.model_id,
                            "modified_at": created, "size": state.details.get("size", 0),
                            "digest": state.details.get("digest", ""),
                            "details": details()}]}  # fmt: skip

    @api.get("/ps")
    async def ps() -> dict:
        return {"models": [{"name": state.model_id, "model": state.model_id,
                            "size": state.details.get("size", 0), "details": details(),
                            "context_length": state.context_length}]}  # fmt: skip

    @api.post("/show")
    async def show(request: HTTPRequest) -> dict:
        body = await parse_body(request, ShowBody)
        check(model_name(body))
        m = engine.model
        template = state.details.get("template", "")
        return {"modelfile": f"FROM {state.details.get('source', state.model_id)}\n",
                "parameters": "\n".join(f"{k} {v}" for k, v in DEFAULTS.items()),
                "template": template, "details": details(),
                "model_info": {"general.architecture": state.details.get("family", "g2c"),
                               "general.parameter_count": state.details.get("parameters", 0),
                               "g2c.context_length": state.context_length,
                               "g2c.embedding_length": m.embedding_dim,
                               "g2c.block_count": m.num_layers,
                               "g2c.attention.head_count": m.num_heads,
                               "g2c.vocab_size": m.vocab_size},
                "capabilities": ["completion", "tools", "embedding"],
                "modified_at": _now()}  # fmt: skip

    @api.post("/generate")
    async def generate(request: HTTPRequest):
        t0 = time.perf_counter()
        body = await parse_body(request, GenerateBody)
        check(body.model)
        if body.images:
            raise APIError(400, "images are not supported by this model", param="images")
        if body.suffix:
            raise APIError(400, "suffix (fill-in-the-middle) is not supported", param="suffix")
        if body.template:
            raise APIError(400, "template overrides are not supported", param="template")
        fmt = _format(body.format)
        if not body.prompt:  # Ollama: an empty prompt loads the model
            return {"model": state.model_id, "created_at": _now(), "response": "",
                    "done": True, "done_reason": "load"}  # fmt: skip
        if body.raw:
            ids = engine.encode(body.prompt)
        else:
            messages = [{"role": "user", "content": body.prompt}]
            if body.system:
                messages.insert(0, {"role": "system", "content": body.system})
            ids = chat_ids(engine, messages) if engine.chat_template is not None \
                else engine.encode(body.prompt)  # fmt: skip
        check_prompt_length(engine, len(ids))
        fields = _sampling(body.options, len(ids), state) | fmt
        ticket = await submit(state, make_request(ids, **fields))
        await started(ticket, "num_predict")

        def part(response: str) -> dict:
            return {"model": state.model_id, "created_at": _now(), "response": response,
                    "done": False}  # fmt: skip

        if body.stream:

            async def lines() -> AsyncIterator[str]:
                async for piece in ticket.pieces():
                    yield _line(part(piece))
                yield _line({**part(""), "done": True, **_stats(ticket, t0)})

            return EventStream(lines(), ticket, media_type=NDJSON)
        await finished(ticket, request)
        return {**part(ticket.text), "done": True, **_stats(ticket, t0)}

    @api.post("/chat")
    async def chat(request: HTTPRequest):
        t0 = time.perf_counter()
        body = await parse_body(request, ChatBody)
        check(body.model)
        if not body.messages:  # Ollama: no messages loads the model
            return {"model": state.model_id, "created_at": _now(), "done": True,
                    "done_reason": "load",
                    "message": {"role": "assistant", "content": ""}}  # fmt: skip
        fmt = _format(body.format)
        fns = tool_functions(body.tools) if body.tools else None
        if fns and fmt:
            raise APIError(400, "tools and format cannot be combined", param="format")
        messages = []
        for n, m in enumerate(body.messages):
            if m.images:
                raise APIError(400, f"messages[{n}].images: images are not supported")
            content = m.content
            for c in m.tool_calls or []:
                fn = c.get("function") or {}
                content += render_tool_call(str(fn.get("name", "")), fn.get("arguments", {}))
            messages.append({"role": m.role, "content": content})
        messages = template_messages(engine, messages)
        if fns:
            messages = with_tool_prompt(messages, fns)
        ids = chat_ids(engine, messages)
        check_prompt_length(engine, len(ids), "conversation")
        fields = _sampling(body.options, len(ids), state) | fmt
        if fns:
            fields["constraint"] = tool_constraint(engine, fns, required=False)
        ticket = await submit(state, make_request(ids, **fields), hold=tool_hold if fns else None)
        await started(ticket, "num_predict")

        def part(message: dict) -> dict:
            return {"model": state.model_id, "created_at": _now(),
                    "message": {"role": "assistant", **message}, "done": False}  # fmt: skip

        def final_message() -> dict:
            content, call = split_tool_call(ticket)
            msg: dict[str, Any] = {"content": content}
            if call is not None:
                msg["tool_calls"] = [{"function": {"name": call["name"],
                                                   "arguments": call["arguments"]}}]  # fmt: skip
            return msg

        if body.stream:

            async def lines() -> AsyncIterator[str]:
                held = []
                async for piece in ticket.pieces():
                    if fns and ticket.handle.finished:
                        held.append(piece)
                        continue
                    yield _line(part({"content": piece}))
                last = {"content": ""}
                if fns:
                    msg = final_message()
                    if "tool_calls" in msg:
                        yield _line(part(msg))
                    elif held:
                        yield _line(part({"content": "".join(held)}))
                yield _line({**part(last), "done": True, **_stats(ticket, t0)})

            return EventStream(lines(), ticket, media_type=NDJSON)
        await finished(ticket, request)
        return {**part(final_message()), "done": True, **_stats(ticket, t0)}

    async def _embed(inputs: Any, truncate: bool) -> tuple[list[list[float]], int]:
        rows = embedding_rows(engine, inputs, truncate=truncate, where="input")
        return await embed(state, rows), sum(map(len, rows))

    @api.post("/embed")
    async def embed_route(request: HTTPRequest) -> dict:
        t0 = time.perf_counter()
        body = await parse_body(request, EmbedBody)
        check(body.model)
        if body.dimensions is not None and body.dimensions != engine.model.embedding_dim:
            raise APIError(400, f"dimensions: this model's embeddings have "
                                f"{engine.model.embedding_dim} dimensions")  # fmt: skip
        vectors, n = await _embed(body.input, body.truncate)
        return {"model": state.model_id, "embeddings": vectors,
                "total_duration": int((time.perf_counter() - t0) * 1e9), "load_duration": 0,
                "prompt_eval_count": n}  # fmt: skip

    @api.post("/embeddings")
    async def legacy_embeddings(request: HTTPRequest) -> dict:
        body = await parse_body(request, LegacyEmbedBody)
        check(body.model)
        vectors, _ = await _embed(body.prompt, False)
        return {"embedding": vectors[0]}

    return api
