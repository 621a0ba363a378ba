"""What both APIs share: the error type, request bodies, messages → prompt ids, tools and
JSON-schema checks, constrained-decoding requests, embeddings, and the server state."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import jsonschema
import pydantic
from starlette.requests import Request as HTTPRequest

from g2c.inference import TOOL_CALL_OPEN, Engine, Request, ToolCallConstraint, parse_tool_call
from g2c.inference.backends import TOOL_PROMPT
from g2c.inference.constrained import normalize_tools
from g2c.serve.scheduler import QueueFull, Scheduler, SchedulerClosed, Ticket

#: seconds between two checks that a client waiting for a non-streamed answer is still there
DISCONNECT_POLL_S = 0.25


class APIError(Exception):
    """A request the server refuses: ``status`` (HTTP), ``message`` (says what and how to
    fix it), ``param`` (the offending field, OpenAI-style), ``code``, extra ``headers``."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


@dataclasses.dataclass
class ServerState:
    """Everything the routes need: the engine, the scheduler, the model's public name and
    description, the API key (None: open), when the server started, and the web chat
    (:class:`g2c.serve.assistant_api.WebChat`, or None)."""

    engine: Engine
    scheduler: Scheduler
    model_id: str
    details: dict[str, Any]
    api_key: str | None = None
    created: int = dataclasses.field(default_factory=lambda: int(time.time()))
    #: the web chat: page, stored conversations, the assistant (a WebChat; None: none)
    chat: Any = None

    @property
    def context_length(self) -> int:
        """The engine's context per request (tokens)."""
        return self.engine.max_len

    def check_model(self, name: Any) -> None:
        """The request's ``model`` must be the served one (404 otherwise, naming it)."""
        if name != self.model_id:
            raise APIError(404, f"model {name!r} not found; this server serves "
                                f"{self.model_id!r} (see /v1/models or /api/tags)",
                           param="model", code="model_not_found")  # fmt: skip


# -- bodies -----------------------------------------------------------------------------------
class Body(pydantic.BaseModel):
    """Request bodies: unknown fields are ignored (as OpenAI and Ollama do), known fields are
    type-checked strictly (a string where a number belongs is an error, not a guess)."""

    model_config = pydantic.ConfigDict(extra="ignore", strict=True)


def validation_message(err: pydantic.ValidationError) -> tuple[str, str | None]:
    """A one-line message naming each bad field, and the first field's name."""
    parts, first = [], None
    for e in err.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()))
        first = first or loc or None
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    return "invalid request: " + "; ".join(parts), first


async def parse_body(request: HTTPRequest, model: type[Body]) -> Body:
    """Read and validate a JSON body: not JSON → 400; wrong types or values → 422."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"the body is not valid JSON: not UTF-8 ({e.reason} at byte "
                            f"{e.start})", code="invalid_json") from None  # fmt: skip
    try:
        data = json.loads(text or "null")
    except ValueError as e:
        raise APIError(400, f"the body is not valid JSON ({e}); send a JSON object",
                       code="invalid_json") from None  # fmt: skip
    if not isinstance(data, dict):
        raise APIError(400, f"the body must be a JSON object, got {type(data).__name__}",
                       code="invalid_json")  # fmt: skip
    try:
        return model.model_validate_json(text)
    except pydantic.ValidationError as e:
        message, param = validation_message(e)
        raise APIError(422, message, param=param, code="invalid_request") from None


# -- prompts ----------------------------------------------------------------------------------
def message_text(content: Any, where: str) -> str:
    """OpenAI content: a string, None, or a list of ``{"type": "text", "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for n, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise APIError(400, f"{where}[{n}] is a {kind!r} part; this server reads text only",
                           param=where)  # fmt: skip
        if not isinstance(part.get("text"), str):
            raise APIError(422, f"{where}[{n}].text must be a string", param=where)
        texts.append(part["text"])
    return "".join(texts)


def render_tool_call(name: str, arguments: Any) -> str:
    """An earlier tool call, written back as the model writes one."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            pass
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def template_messages(engine: Engine, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` turns the chat template renders: tool results become user
    turns in ``<tool_response>`` when the template has no tool role."""
    roles = getattr(engine.chat_template, "roles", ())
    out = []
    for n, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role not in ("system", "user", "assistant", "tool"):
            raise APIError(400, f"messages[{n}].role {role!r} is not one of system, user, "
                                "assistant, tool", param=f"messages[{n}].role")  # fmt: skip
        if role == "tool" and "tool" not in roles:
            role, content = "user", f"<tool_response>{content}</tool_response>"
        out.append({"role": role, "content": content})
    return out


def with_tool_prompt(messages: list[dict[str, str]], fns: list[dict]) -> list[dict[str, str]]:
    """The tools described in the system message (the text g2c's local backend uses)."""
    listing = "\n".join(json.dumps({k: fn.get(k) for k in ("name", "description", "parameters")})
                        for fn in fns)  # fmt: skip
    system = TOOL_PROMPT.format(functions=listing)
    sent = [dict(m) for m in messages]
    if sent and sent[0]["role"] == "system":
        sent[0]["content"] = (sent[0]["content"] or "") + "\n\n" + system
    else:
        sent.insert(0, {"role": "system", "content": system})
    return sent


def chat_ids(engine: Engine, messages: list[dict[str, str]]) -> list[int]:
    """Prompt ids of a conversation through the model's chat template (400 when the model has
    none or the messages do not fit the template)."""
    try:
        return engine.chat_prompt(messages)
    except (ValueError, TypeError) as e:
        raise APIError(400, f"messages: {e}", param="messages") from None


def check_prompt_length(engine: Engine, n: int, what: str = "prompt") -> None:
    """A prompt that does not fit the context → 400 naming both lengths (never truncated)."""
    if n >= engine.max_len:
        raise APIError(400, f"the {what} has {n} tokens but the context holds "
                            f"{engine.max_len} tokens (prompt plus at least one new token); "
                            "shorten it", param="messages" if what == "conversation" else
                       "prompt", code="context_length_exceeded")  # fmt: skip
    if n == 0:
        raise APIError(400, f"the {what} is empty; give at least one token", param="prompt")


def check_json_schema(schema: Any, where: str) -> None:
    """``schema`` must be a valid JSON Schema (checked against its meta-schema) → 400."""
    if not isinstance(schema, dict):
        raise APIError(400, f"{where} must be a JSON Schema object, got "
                            f"{type(schema).__name__}", param=where)  # fmt: skip
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        path = "/".join(str(p) for p in e.path)
        raise APIError(400, f"{where} is not a valid JSON Schema: {e.message}"
                            + (f" (at {path})" if path else ""), param=where) from None  # fmt: skip


def check_object_schema(schema: Any, where: str) -> dict:
    """A response schema: valid JSON Schema whose top level is an object (what the
    constrained decoder writes: keys in order, typed values)."""
    check_json_schema(schema, where)
    kind = schema.get("type", "object")
    if kind != "object":
        raise APIError(400, f"{where}: only object schemas ('type': 'object') are supported, "
                            f"got type {kind!r}", param=where)  # fmt: skip
    return schema


def tool_functions(tools: list[Any], where: str = "tools") -> list[dict]:
    """The function dicts of OpenAI-format tools, each ``parameters`` a valid JSON Schema."""
    try:
        fns = normalize_tools(tools)
    except ValueError as e:
        raise APIError(400, str(e), param=where) from None
    for n, fn in enumerate(fns):
        if fn.get("parameters") is not None:
            check_json_schema(fn["parameters"], f"{where}[{n}].function.parameters")
    return fns


def tool_constraint(engine: Engine, fns: list[dict], required: bool) -> ToolCallConstraint:
    """Free text or one complete call of one of ``fns`` (``required``: a call is forced)."""
    tools = [{"type": "function", "function": fn} for fn in fns]
    return ToolCallConstraint(tools, engine.vocab_bytes(), required=required)


def tool_hold(handle: Any) -> bool:
    """Withhold streamed text while it may still become a tool call (sent whole at the end)."""
    c = handle.constraint
    return isinstance(c, ToolCallConstraint) and c.mode != "free"


def split_tool_call(ticket: Ticket) -> tuple[str, dict[str, Any] | None]:
    """(content, call or None) of a finished ticket whose request could call tools."""
    text = ticket.text
    c = ticket.handle.constraint if ticket.handle is not None else None
    if isinstance(c, ToolCallConstraint) and c.calling:
        call = parse_tool_call(text)
        if call is not None:
            return text[: text.find(TOOL_CALL_OPEN)], call
    return text, None


def make_request(ids: list[int], **fields: Any) -> Request:
    """An engine request; a field the engine refuses → 400 with its message."""
    try:
        return Request(ids, **fields)
    except (ValueError, TypeError) as e:
        raise APIError(400, str(e)) from None


def default_max_tokens(engine: Engine, n_prompt: int) -> int:
    """No limit given: the rest of the context."""
    return max(engine.max_len - n_prompt, 1)


async def submit(state: ServerState, request: Request, *, hold: Any = None) -> Ticket:
    """Queue a request; full → 503 + Retry-After, shutting down → 503."""
    try:
        return state.scheduler.submit(request, hold=hold)
    except QueueFull as e:
        raise APIError(503, str(e), code="server_busy",
                       headers={"Retry-After": str(e.retry_after)}) from None  # fmt: skip
    except SchedulerClosed as e:
        raise APIError(503, str(e), code="shutting_down", headers={"Retry-After": "5"}) from None


async def finished(ticket: Ticket, request: HTTPRequest) -> Ticket:
    """Wait for a non-streamed answer; a client that hangs up cancels it (frees its slot)."""
    while True:
        try:
            await asyncio.wait_for(asyncio.shield(ticket.wait()), DISCONNECT_POLL_S)
        except TimeoutError:
            if await request.is_disconnected():
                ticket.cancel()
                await ticket.wait()
                return ticket
            continue
        except asyncio.CancelledError:
            ticket.cancel()
            raise
        break
    if ticket.error is not None:
        raise APIError(400, str(ticket.error))
    return ticket


async def started(ticket: Ticket, max_field: str = "max_tokens") -> Ticket:
    """Wait until the engine took the request; its refusal (prompt too long, budget too small
    for the constrained output, ...) → 400, raised before any byte of a stream is sent, in the
    API's words (``max_field``: the API's name for the engine's ``max_new_tokens``)."""
    await ticket.started()
    if ticket.error is not None:
        message = str(ticket.error).replace("max_new_tokens", max_field)
        raise APIError(400, message, param=max_field if max_field in message else None)
    return ticket


# -- embeddings -------------------------------------------------------------------------------
def embed_ids(engine: Engine, rows: list[list[int]]) -> list[list[float]]:
    """``engine.embed(rows)`` (kept under this name for existing callers). Runs on the
    scheduler's thread (the model is not shared with a decode step)."""
    return engine.embed(rows)


def embedding_rows(engine: Engine, inputs: Any, *, truncate: bool, where: str) -> list[list[int]]:
    """Token ids of each input (a string, a list of strings, a list of ids or of id lists);
    too long → 400 naming both lengths unless ``truncate``."""
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs
                                   and all(isinstance(t, int) for t in inputs)):  # fmt: skip
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise APIError(400, f"{where} must be a string or a non-empty list of strings",
                       param=where)  # fmt: skip
    rows = []
    limit = engine.model.max_seq_len
    for n, item in enumerate(inputs):
        if isinstance(item, str):
            ids = engine.encode(item) if item else []
        elif isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                            for t in item):  # fmt: skip
            ids = list(item)
            V = engine.model.vocab_size
            if ids and not 0 <= min(ids) <= max(ids) < V:
                raise APIError(400, f"{where}[{n}]: token ids must lie in [0, {V})", param=where)
        else:
            raise APIError(422, f"{where}[{n}] must be a string or a list of token ids",
                           param=where)  # fmt: skip
        if not ids:
            raise APIError(400, f"{where}[{n}] is empty; give some text", param=where)
        if len(ids) > limit:
            if not truncate:
                raise APIError(400, f"{where}[{n}] has {len(ids)} tokens but the context holds "
                                    f"{limit} tokens; shorten it", param=where,
                               code="context_length_exceeded")  # fmt: skip
            ids = ids[:limit]
        rows.append(ids)
    return rows


async def embed(state: ServerState, rows: list[list[int]]) -> list[list[float]]:
    """``Engine.embed`` on the scheduler thread, awaited."""
    try:
        fut = state.scheduler.run_exclusive(lambda: state.engine.embed(rows))
    except SchedulerClosed as e:
        raise APIError(503, str(e), code="shutting_down", headers={"Retry-After": "5"}) from None
    return await asyncio.wrap_future(fut)
