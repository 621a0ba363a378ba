"""``build_assistant``: THE way the terminal chat, the web server and the gate make an assistant.

A model spec goes through :func:`g2c.inference.backend_from_spec` (a run dir, ``smollm2``,
``http(s)://...`` OpenAI-compatible, ``ollama:NAME``); the tools come from
:func:`g2c.tools.default_registry_tools`; a ``g2c rag index`` SQLite file becomes the retriever
(and the ``web_search`` tool's corpus).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from g2c.assistant.conversation import AssistantError
from g2c.assistant.core import Assistant, AssistantConfig
from g2c.assistant.store import ConversationStore
from g2c.inference import Backend, backend_from_spec
from g2c.rag import RAGIndexError, SQLiteIndex, index_retriever, make_embedder, make_search
from g2c.tools import ToolRegistry, default_registry_tools

DEFAULT_TOOLS = ("calculator", "read_file", "list_dir", "run_python", "web_search")


def open_rag_index(path: str | os.PathLike, mode: str = "hybrid") -> Any:
    """The retriever over a ``g2c rag index`` file, opened with the embedder it was built with
    (``mode``: "bm25", "dense", "hybrid"). Missing or damaged file → AssistantError naming it."""
    path = Path(path)
    if not path.is_file():
        raise AssistantError(f"rag_index {str(path)!r} does not exist; build one with "
                             f"`g2c rag index DOCS --db {path}`")  # fmt: skip
    try:
        probe = SQLiteIndex(path)
        spec = probe.meta.get("embedder_spec")
        probe.close()
        if mode == "bm25" or not spec:
            return index_retriever(SQLiteIndex(path), "bm25")
        return index_retriever(SQLiteIndex(path, make_embedder(spec)), mode)
    except (RAGIndexError, ValueError) as e:
        raise AssistantError(f"rag_index {str(path)!r} cannot be used: {e}") from None


def build_assistant(
    model: str | Backend = "smollm2",
    *,
    rag_index: str | os.PathLike | None = None,
    tools_root: str | os.PathLike | None = None,
    config: AssistantConfig | None = None,
    store: ConversationStore | None = None,
    web_search: Callable[[str, int], list[Any]] | None = None,
    tools: tuple[str, ...] | list[str] = DEFAULT_TOOLS,
    conversation_id: str | None = None,
    **backend_kwargs: Any,
) -> Assistant:
    """An :class:`Assistant` ready to chat.

    ``model``: a spec for :func:`g2c.inference.backend_from_spec` (``"smollm2"``, a run
    folder, ``http://host:port[#MODEL]``, ``ollama:NAME``) or a ready :class:`Backend`;
    ``backend_kwargs`` go to ``backend_from_spec`` (``api``, ``model_id``, ``max_len``...).
    ``rag_index``: a ``g2c rag index`` SQLite file → the retriever (hybrid search with the
    index's embedder) and the ``web_search`` tool's corpus. ``tools_root``: the folder the
    file tools and run_python see (default: the current folder). ``web_search``: a search
    callable ``(query, k) -> hits`` (default: the RAG index when given, else the tool's
    stub). ``tools``: names from :data:`DEFAULT_TOOLS` and ``write_file``; ``()`` = no tools.
    ``store``/``conversation_id``: persist conversations (see :class:`Assistant`).

    Raises:
        AssistantError: a missing/damaged ``rag_index``, a ``tools_root`` that is not a folder,
            an unknown tool name.
        FileNotFoundError / ValueError / OpenAIError: from ``backend_from_spec`` (bad model).
    """
    root = Path(tools_root) if tools_root is not None else Path.cwd()
    if not root.is_dir():
        raise AssistantError(f"tools_root {str(root)!r} is not a folder")
    if isinstance(tools, str) or not all(isinstance(t, str) for t in tools):
        raise AssistantError(f"tools must be a list of tool names, got {tools!r}")
    retriever = open_rag_index(rag_index) if rag_index is not None else None
    search = web_search
    if search is None and retriever is not None:
        search = make_search(retriever)
    try:
        registry = ToolRegistry(default_registry_tools(list(tools), root=root, search=search))
    except ValueError as e:
        raise AssistantError(f"tools: {e}") from None
    backend = model if isinstance(model, Backend) else backend_from_spec(model, **backend_kwargs)
    return Assistant(backend, registry, retriever, None, config, store=store,
                     conversation_id=conversation_id)  # fmt: skip
