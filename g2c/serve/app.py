"""``g2c serve``: one model behind the OpenAI and the Ollama HTTP APIs (FastAPI + uvicorn).

:func:`create_app` builds the ASGI app around an :class:`~g2c.inference.Engine` (continuous
batching) driven by a :class:`~g2c.serve.scheduler.Scheduler` thread that starts and stops
with the app's lifespan; :func:`serve` loads a model and runs uvicorn. Routes:
:mod:`g2c.serve.openai_api` (``/v1/...``) and :mod:`g2c.serve.ollama_api` (``/api/...``),
``GET /health`` (the scheduler's counters), and the web chat —
:mod:`g2c.serve.assistant_api`: the page at ``/``, ``/api/conversations``, and the assistant
as the model ``g2c-assistant``.

Errors are answers, never tracebacks: malformed JSON → 400, wrong field types or values →
422, a prompt longer than the context → 400 naming both lengths, an unknown model → 404, a
missing or wrong API key → 401, a full queue → 503 with ``Retry-After``; an unexpected
failure inside one request → 500 for that request only. Each error in the API's own shape
(``{"error": {"message", ...}}`` on ``/v1``, ``{"error": "..."}`` on ``/api``).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from g2c import __version__
from g2c.assistant import ConversationStore
from g2c.inference import Engine
from g2c.serve import assistant_api, ollama_api, openai_api
from g2c.serve._common import APIError, ServerState
from g2c.serve.assistant_api import PUBLIC_PATHS, WebChat
from g2c.serve.scheduler import Scheduler
from g2c.transformer import load_model

log = logging.getLogger("g2c.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404:
               "invalid_request_error", 405: "invalid_request_error", 422:
               "invalid_request_error", 503: "server_busy"}  # fmt: skip


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Binding anything but loopback without an API key → ValueError saying how to fix it."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a host name or IP address, got {host!r}")
    if not is_loopback(host) and not api_key:
        raise ValueError(
            f"--host {host} would let other machines use this model; pass --api-key KEY "
            "(clients then send 'Authorization: Bearer KEY') or keep the default --host "
            f"{DEFAULT_HOST}"
        )


def _error(request: HTTPRequest | str, status: int, message: str, *, param: str | None = None,
           code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    path = request if isinstance(request, str) else request.url.path
    message = message.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    if path.startswith("/api/"):
        body: dict[str, Any] = {"error": message}
    else:
        body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                          "param": param, "code": code}}  # fmt: skip
    return JSONResponse(body, status_code=status, headers=headers)


class _BearerAuth:
    """ASGI middleware: with an API key set, every HTTP route but ``/health`` and the chat
    page's files (:data:`PUBLIC_PATHS`) needs ``Authorization: Bearer KEY`` (compared in
    constant time); else 401."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        key = self.state.api_key
        if key and scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            header = dict(scope.get("headers") or ()).get(b"authorization", b"")
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), key.encode()
            ):
                response = _error(scope["path"], 401, "missing or wrong API key: send "
                                  "'Authorization: Bearer KEY'", code="invalid_api_key",
                                  headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _describe(loaded: Any, engine: Engine, source: str | None) -> dict[str, Any]:
    """What /api/tags and /api/show say about the model."""
    model = engine.model
    n = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
    kind = str(getattr(loaded, "kind", "") or "")
    manifest = getattr(loaded, "manifest", None) or {}
    family = manifest.get("family") or (manifest.get("config") or {}).get("architecture")
    dtype = str(getattr(getattr(model.token_embed, "weight", None), "dtype", "float32"))
    return {
        "source": source or str(getattr(loaded, "source", "")),
        "format": "gguf" if "gguf" in kind else "safetensors",
        "family": str(family or "g2c"),
        "parameters": int(n),
        "parameter_size": f"{n / 1e6:.1f}M" if n >= 1e5 else str(n),
        "quantization_level": dtype.replace("torch.", "").upper(),
        "size": int(n * 4),
        "template": str(getattr(loaded, "chat_template", "") or ""),
    }


def create_app(
    model: Any,
    *,
    model_id: str = "g2c",
    api_key: str | None = None,
    max_batch_size: int = 8,
    max_queue: int = 64,
    max_len: int | None = None,
    retry_after: int = 1,
    assistant: Any = None,
    store: ConversationStore | str | Path | None = None,
    web_ui: bool = True,
    compile: bool | str = False,
) -> FastAPI:
    """The ASGI app serving ``model``.

    Args:
        model: what ``g2c.transformer.load_model`` returned (model, tokenizer, the model's own
            chat template), or a ready :class:`~g2c.inference.Engine`.
        model_id: the name clients use (``/v1/models``, ``/api/tags``); other names → 404.
        api_key: when set, every route but ``/health`` needs ``Authorization: Bearer KEY``
            (401 otherwise).
        max_batch_size: requests decoded together (engine slots; ignored for an Engine).
        max_queue: requests that may wait for a slot; one more → 503 with ``Retry-After``.
        max_len: KV-cache columns per slot, the context a request may use (default
            ``min(max_seq_len, 2048)``; ignored for an Engine).
        retry_after: seconds in the ``Retry-After`` header of a 503.
        assistant: None (no assistant), a :class:`g2c.assistant.Assistant`, or a callable
            ``(backend) -> Assistant`` called once with a
            :class:`~g2c.serve.server_backend.ServerBackend` (the server's own engine, e.g.
            ``lambda b: build_assistant(b, tools_root=...)``): requests for the model named
            ``assistant.config.name`` ("g2c-assistant") run it, each on a fresh
            :class:`~g2c.assistant.Assistant` sharing its backend, tools, retriever and config.
        store: the web chat's :class:`~g2c.assistant.ConversationStore` (or its path; default
            :func:`g2c.assistant.conversations_path`, opened on first use).
        web_ui: serve the chat page at ``/`` (to browsers; other clients get the JSON
            description) and ``/static/...``.
        compile: run the engine's decode steps through one ``torch.compile``-d graph
            (:class:`~g2c.inference.compiled.CompiledDecoder`; True = inductor, or a backend
            name); the first steps compile. Ignored for an Engine.

    The scheduler thread starts with the app (its lifespan) and, on shutdown, lets accepted
    requests finish. Bad arguments → ValueError / TypeError naming them, before any work.
    """
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"model_id must be a non-empty string, got {model_id!r}")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ValueError("api_key must be a non-empty string or None")
    if isinstance(model, Engine):
        engine, loaded = model, None
    else:
        if getattr(model, "tokenizer", None) is None or not hasattr(model, "model"):
            raise ValueError("model must be what g2c.transformer.load_model returns, with a "
                             "tokenizer (the server works on text), or an Engine")  # fmt: skip
        engine = Engine.from_loaded(model, max_batch_size=max_batch_size, max_len=max_len,
                                    compile=compile)  # fmt: skip
        loaded = model
    if engine.tokenizer is None:
        raise ValueError("the engine has no tokenizer; the server works on text")
    scheduler = Scheduler(engine, max_queue=max_queue, retry_after=retry_after)
    state = ServerState(engine, scheduler, model_id, _describe(loaded, engine, None), api_key)
    state.chat = WebChat(state, assistant=assistant, store=store, web_ui=web_ui,
                         max_runs=max(4, engine.max_batch_size))  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop(drain=True)  # uvicorn waited for open requests; finish the rest

    app = FastAPI(title="g2c serve", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)  # fmt: skip
    app.state.g2c = state

    app.add_middleware(_BearerAuth, state=state)

    @app.exception_handler(APIError)
    async def api_error(request: HTTPRequest, exc: APIError) -> JSONResponse:
        return _error(request, exc.status, exc.message, param=exc.param, code=exc.code,
                      headers=exc.headers)  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: HTTPRequest, exc: RequestValidationError):
        return _error(request, 422, f"invalid request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: HTTPRequest, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see docs/guides/serve.md"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return _error(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: HTTPRequest, exc: Exception) -> JSONResponse:
        log.exception("request %s %s failed", request.method, request.url.path)
        return _error(request, 500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/")
    async def root(request: HTTPRequest) -> Any:
        if web_ui and "text/html" in request.headers.get("accept", ""):
            return state.chat.page("index.html")  # a browser: the chat page
        return {"name": "g2c serve", "version": __version__, "model": model_id,
                "assistant": state.chat.name, "web_chat": "/" if web_ui else None,
                "apis": ["/v1 (OpenAI)", "/api (Ollama)"]}  # fmt: skip

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok" if scheduler.running else "stopping", "model": model_id,
                **scheduler.stats()}  # fmt: skip

    app.include_router(assistant_api.router(state.chat))
    app.include_router(openai_api.router(state))
    app.include_router(ollama_api.router(state))
    return app


def default_model_id(spec: str) -> str:
    """The name a model is served under: ``smollm2`` stays, a path becomes its last part
    (without ``.gguf``)."""
    path = Path(spec)
    name = path.name or spec
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def serve(
    model: str | Any,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    model_id: str | None = None,
    device: str = "cpu",
    max_batch_size: int = 8,
    max_queue: int = 64,
    max_len: int | None = None,
    log_level: str = "info",
    assistant: Any = None,
    store: ConversationStore | str | Path | None = None,
    web_ui: bool = True,
    compile: bool | str = False,
) -> None:
    """Load ``model`` (a run directory, ``"smollm2"``, a GGUF or safetensors path — anything
    ``g2c.transformer.load_model`` reads — or an already loaded model) and serve it until
    interrupted; ``assistant``, ``store``, ``web_ui``, ``compile`` as in :func:`create_app`. A non-loopback
    ``host`` without ``api_key`` → ValueError before loading."""
    check_bind(host, api_key)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    if isinstance(model, (str, Path)):
        model_id = model_id or default_model_id(str(model))
        model = load_model(model, device=device)
    app = create_app(model, model_id=model_id or "g2c", api_key=api_key,
                     max_batch_size=max_batch_size, max_queue=max_queue, max_len=max_len,
                     assistant=assistant, store=store, web_ui=web_ui, compile=compile)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level=log_level)
