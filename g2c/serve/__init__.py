"""20 serve — one model behind the OpenAI and the Ollama HTTP APIs.

``g2c serve MODEL`` (:func:`serve`) loads a model and runs :func:`create_app` under uvicorn:
``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` (OpenAI) and
``/api/version``, ``/api/tags``, ``/api/show``, ``/api/generate``, ``/api/chat``, ``/api/embed``
(Ollama). Every request goes through one :class:`~g2c.inference.Engine` driven by a
:class:`Scheduler` thread (continuous batching, a bounded queue). See docs/guides/serve.md.

The web chat (:mod:`g2c.serve.assistant_api`): the page at ``/``, stored conversations at
``/api/conversations``, and the assistant as the model ``g2c-assistant`` — its model calls go
through the same scheduler via :class:`ServerBackend`. See docs/guides/web-chat.md.
"""

from g2c.serve._common import APIError, ServerState, embed_ids
from g2c.serve.app import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    check_bind,
    create_app,
    default_model_id,
    is_loopback,
    serve,
)
from g2c.serve.assistant_api import WebChat
from g2c.serve.scheduler import QueueFull, Scheduler, SchedulerClosed, Ticket
from g2c.serve.server_backend import ServerBackend

__all__ = [
    "create_app",
    "serve",
    "check_bind",
    "is_loopback",
    "default_model_id",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Scheduler",
    "Ticket",
    "QueueFull",
    "SchedulerClosed",
    "APIError",
    "ServerState",
    "embed_ids",
    "ServerBackend",
    "WebChat",
]
