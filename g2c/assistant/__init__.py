"""20 assistant — a tiny ChatGPT: memory, tools, retrieval and a model you can swap.

- :mod:`g2c.assistant.conversation`: :class:`Message`, :class:`Conversation` (turns and the
  context policy), :class:`AssistantError`.
- :mod:`g2c.assistant.store`: :class:`ConversationStore` (SQLite; conversations survive
  restarts), :class:`ConversationInfo`, :class:`StoredConversation`, :func:`conversations_path`.
- :mod:`g2c.assistant.core`: :class:`AssistantConfig`, :class:`AssistantTurn`,
  :class:`Assistant` (``chat``, ``stream`` of events).
- :mod:`g2c.assistant.factory`: :func:`build_assistant` (model spec → backend, tools, RAG).
- :mod:`g2c.assistant.cli`: :func:`run_cli`, a plain-text chat loop.
- :mod:`g2c.assistant.evaluation`: the "does this still work" gate (EvalCase ... run_evaluation).
"""

from g2c.assistant.cli import run_cli
from g2c.assistant.conversation import AssistantError, Conversation, Message
from g2c.assistant.core import (
    DEFAULT_SYSTEM,
    STOP_REASONS,
    TOOL_MODES,
    Assistant,
    AssistantConfig,
    AssistantTurn,
    has_native_tools,
)
from g2c.assistant.evaluation import (
    EvalCase,
    EvalCaseResult,
    EvalReport,
    assistant_cases,
    run_evaluation,
)
from g2c.assistant.factory import DEFAULT_TOOLS, build_assistant, open_rag_index
from g2c.assistant.store import (
    ConversationInfo,
    ConversationNotFound,
    ConversationStore,
    StoredConversation,
    conversation_markdown,
    conversations_path,
)

__all__ = [
    "Message",
    "Conversation",
    "AssistantError",
    "AssistantConfig",
    "AssistantTurn",
    "Assistant",
    "DEFAULT_SYSTEM",
    "STOP_REASONS",
    "TOOL_MODES",
    "has_native_tools",
    "ConversationStore",
    "ConversationInfo",
    "ConversationNotFound",
    "StoredConversation",
    "conversation_markdown",
    "conversations_path",
    "build_assistant",
    "open_rag_index",
    "DEFAULT_TOOLS",
    "run_cli",
    "EvalCase",
    "EvalCaseResult",
    "EvalReport",
    "run_evaluation",
    "assistant_cases",
]
