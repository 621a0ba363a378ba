"""Conversations that survive restarts: one SQLite file (stdlib ``sqlite3``).

Location: :func:`conversations_path` — ``$G2C_CONVERSATIONS`` when set, else
``g2c_home() / "conversations.sqlite"`` (``$G2C_HOME``, default ``./runs``). Schema
(``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    conversations(id TEXT PRIMARY KEY,            -- 12 hex chars
                  title TEXT, model TEXT,
                  created_at REAL, updated_at REAL)  -- unix seconds
    messages(conversation_id TEXT REFERENCES conversations(id) ON DELETE CASCADE,
             seq INTEGER,                          -- 0, 1, 2 ... within a conversation
             role TEXT, content TEXT,
             tool_calls TEXT, citations TEXT, metadata TEXT,   -- JSON
             created_at REAL,
             PRIMARY KEY (conversation_id, seq))

Journal mode WAL (readers never block the writer); one transaction per write; a new connection
per call, so one store may be used from several threads (the web server does). A file that is
not a g2c conversation store → :class:`~g2c.assistant.AssistantError` naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from g2c.artifacts import g2c_home
from g2c.assistant.conversation import AssistantError, Message

SCHEMA_VERSION = 1
TITLE_CHARS = 60
EXPORT_FORMATS = ("json", "markdown")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, title TEXT, model TEXT, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,
    tool_calls TEXT NOT NULL DEFAULT '[]', citations TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, seq));
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated_at);
"""


def conversations_path() -> Path:
    """``$G2C_CONVERSATIONS`` when set, else ``g2c_home() / "conversations.sqlite"``."""
    env = os.environ.get("G2C_CONVERSATIONS")
    return Path(env) if env else g2c_home() / "conversations.sqlite"


class ConversationNotFound(KeyError, AssistantError):
    """No conversation with this id in the store (a ``KeyError`` and an ``AssistantError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "conversation not found"


@dataclasses.dataclass(frozen=True)
class ConversationInfo:
    """A stored conversation's header: ``id``, ``title`` (None until the first user message),
    ``model``, ``created_at`` / ``updated_at`` (unix seconds), ``n_messages``."""

    id: str
    title: str | None
    model: str | None
    created_at: float
    updated_at: float
    n_messages: int

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StoredConversation:
    """``info`` (:class:`ConversationInfo`) and ``messages`` (list of :class:`Message`)."""

    info: ConversationInfo
    messages: list[Message]

    def to_dict(self) -> dict:
        """``{**info, "messages": [...]}``, JSON-safe."""
        return {**self.info.to_dict(), "messages": [m.to_dict() for m in self.messages]}


def _check_id(conversation_id: object) -> str:
    if not isinstance(conversation_id, str) or not conversation_id.strip():
        raise AssistantError(f"conversation id must be a non-empty string, got "
                             f"{conversation_id!r}")  # fmt: skip
    return conversation_id.strip()


class ConversationStore:
    """``ConversationStore(path=None)``: the SQLite file at ``path`` (default
    :func:`conversations_path`), created with its folder when missing.

    Raises:
        AssistantError: ``path`` is a folder, or the file is not a g2c conversation store
            (damaged, another program's database, a newer schema) — the message names the
            path and says to move the file away or point ``$G2C_CONVERSATIONS`` elsewhere.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise AssistantError(f"path must be a file path or None, got {type(path).__name__}")
        self.path = Path(path) if path is not None else conversations_path()
        if self.path.is_dir():
            raise AssistantError(f"conversation store {self.path} is a folder; give a file path")
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")
                    if not r[0].startswith("sqlite_")}  # fmt: skip
                if version > SCHEMA_VERSION:
                    raise self._damaged(f"schema version {version} is newer than this g2c's "
                                        f"{SCHEMA_VERSION}")  # fmt: skip
                if tables and tables != {"conversations", "messages"}:
                    raise self._damaged(f"it holds other tables ({', '.join(sorted(tables))})")
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("SELECT count(*) FROM messages").fetchone()
        except sqlite3.DatabaseError as e:
            raise self._damaged(str(e)) from None

    def _damaged(self, detail: str) -> AssistantError:
        return AssistantError(f"{self.path} is not a g2c conversation store ({detail}); move it "
                              "away or delete it, or set G2C_CONVERSATIONS to another "
                              "file")  # fmt: skip

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction: committed on success, rolled back on error."""
        db = sqlite3.connect(self.path, timeout=30.0)
        try:
            db.execute("PRAGMA foreign_keys=ON")
            with db:
                yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._connect() as db:
                    yield db
            except sqlite3.DatabaseError as e:
                raise self._damaged(str(e)) from None

    def __repr__(self) -> str:
        return f"ConversationStore({str(self.path)!r})"

    # -- conversations ----------------------------------------------------------------------
    def create(self, title: str | None = None, model: str | None = None,
               system: str | None = None) -> str:  # fmt: skip
        """A new conversation; its id (12 hex chars). ``system``: stored as its first message."""
        for name, value in (("title", title), ("model", model), ("system", system)):
            if value is not None and not isinstance(value, str):
                raise AssistantError(f"{name} must be a string or None, got {value!r}")
        cid = uuid.uuid4().hex[:12]
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?)",
                       (cid, title or None, model, now, now))  # fmt: skip
            if system:
                self._insert(db, cid, 0, Message("system", system), now)
        return cid

    def _info(self, db: sqlite3.Connection, cid: str) -> ConversationInfo:
        row = db.execute(
            "SELECT c.id, c.title, c.model, c.created_at, c.updated_at, "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) "
            "FROM conversations c WHERE c.id = ?", (cid,)).fetchone()  # fmt: skip
        if row is None:
            raise ConversationNotFound(f"no conversation {cid!r} in {self.path}; list them "
                                       "with /list (or ConversationStore.list())")  # fmt: skip
        return ConversationInfo(*row)

    def list(self) -> list[ConversationInfo]:
        """Every conversation, the most recently updated first."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT c.id, c.title, c.model, c.created_at, c.updated_at, "
                "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) "
                "FROM conversations c ORDER BY c.updated_at DESC, c.rowid DESC").fetchall()  # fmt: skip
        return [ConversationInfo(*r) for r in rows]

    def get(self, conversation_id: str) -> StoredConversation:
        """The conversation's header and messages; unknown id → :class:`ConversationNotFound`."""
        cid = _check_id(conversation_id)
        with self._tx() as db:
            info = self._info(db, cid)
            rows = db.execute("SELECT role, content, tool_calls, citations, metadata FROM "
                              "messages WHERE conversation_id = ? ORDER BY seq",
                              (cid,)).fetchall()  # fmt: skip
        try:
            messages = [Message(r[0], r[1], tuple(json.loads(r[2])), tuple(json.loads(r[3])),
                                json.loads(r[4])) for r in rows]  # fmt: skip
        except (ValueError, TypeError) as e:
            raise self._damaged(f"conversation {cid}: a message does not read back: {e}") from None
        return StoredConversation(info, messages)

    def info(self, conversation_id: str) -> ConversationInfo:
        """The conversation's header; unknown id → :class:`ConversationNotFound`."""
        with self._tx() as db:
            return self._info(db, _check_id(conversation_id))

    def _insert(self, db: sqlite3.Connection, cid: str, seq: int, m: Message, now: float) -> None:
        db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (cid, seq, m.role, m.content, json.dumps(list(m.tool_calls)),
                    json.dumps(list(m.citations)), json.dumps(m.metadata), now))  # fmt: skip

    def append(self, conversation_id: str, message: Message) -> None:
        """Add ``message`` at the end; updates ``updated_at``; the first user message sets the
        title (its first 60 characters) when there is none."""
        cid = _check_id(conversation_id)
        if not isinstance(message, Message):
            raise AssistantError(f"message must be a Message, got {type(message).__name__}")
        now = time.time()
        with self._tx() as db:
            info = self._info(db, cid)
            seq = db.execute("SELECT coalesce(max(seq) + 1, 0) FROM messages WHERE "
                             "conversation_id = ?", (cid,)).fetchone()[0]  # fmt: skip
            self._insert(db, cid, seq, message, now)
            title = info.title
            if not title and message.role == "user" and message.content.strip():
                title = " ".join(message.content.split())[:TITLE_CHARS]
            db.execute("UPDATE conversations SET updated_at = ?, title = ? WHERE id = ?",
                       (max(now, info.updated_at), title, cid))  # fmt: skip

    def rename(self, conversation_id: str, title: str) -> None:
        """Set the title (non-empty string)."""
        cid = _check_id(conversation_id)
        if not isinstance(title, str) or not title.strip():
            raise AssistantError(f"title must be a non-empty string, got {title!r}")
        with self._tx() as db:
            self._info(db, cid)
            db.execute("UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
                       (title.strip(), time.time(), cid))  # fmt: skip

    def set_model(self, conversation_id: str, model: str | None) -> None:
        """Record the model the conversation now talks to."""
        cid = _check_id(conversation_id)
        with self._tx() as db:
            self._info(db, cid)
            db.execute("UPDATE conversations SET model = ? WHERE id = ?", (model, cid))

    def delete(self, conversation_id: str) -> None:
        """Remove the conversation and its messages; unknown id → ConversationNotFound."""
        cid = _check_id(conversation_id)
        with self._tx() as db:
            self._info(db, cid)
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (cid,))
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    def clear(self, conversation_id: str) -> None:
        """Remove the messages (the system message stays); keep the conversation."""
        cid = _check_id(conversation_id)
        with self._tx() as db:
            self._info(db, cid)
            db.execute("DELETE FROM messages WHERE conversation_id = ? AND NOT (seq = 0 AND "
                       "role = 'system')", (cid,))  # fmt: skip
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), cid))

    def replace_messages(self, conversation_id: str, messages: list[Message]) -> None:
        """Replace all messages at once (one transaction), e.g. after editing a turn."""
        cid = _check_id(conversation_id)
        if not all(isinstance(m, Message) for m in messages):
            raise AssistantError("messages must be a list of Message")
        now = time.time()
        with self._tx() as db:
            self._info(db, cid)
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (cid,))
            for seq, m in enumerate(messages):
                self._insert(db, cid, seq, m, now)
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, cid))

    # -- export -----------------------------------------------------------------------------
    def export(self, conversation_id: str, fmt: str = "json") -> str:
        """The conversation as ``"json"`` (``StoredConversation.to_dict()``, indented) or
        ``"markdown"`` (a readable transcript: tool calls and citations under each answer).
        Unknown format → AssistantError."""
        if fmt not in EXPORT_FORMATS:
            raise AssistantError(f"fmt must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
        conv = self.get(conversation_id)
        if fmt == "json":
            return json.dumps(conv.to_dict(), indent=2, ensure_ascii=False) + "\n"
        return conversation_markdown(conv.messages, title=conv.info.title or conv.info.id,
                                     model=conv.info.model)  # fmt: skip


def conversation_markdown(messages: list[Message], title: str = "Conversation",
                          model: str | None = None) -> str:  # fmt: skip
    """A Markdown transcript of ``messages``: a heading per message, tool calls as a list with
    their arguments and outputs, citations as numbered sources."""
    lines = [f"# {title}", ""]
    if model:
        lines += [f"Model: `{model}`", ""]
    names = {"system": "System", "user": "You", "assistant": "Assistant", "tool": "Tool"}
    for m in messages:
        lines += [f"## {names[m.role]}", ""]
        for call in m.tool_calls:
            args = json.dumps(call.get("arguments", {}), ensure_ascii=False)
            out = str(call.get("output", "")).strip().replace("\n", " ")
            err = " (error)" if call.get("is_error") else ""
            lines.append(f"- tool `{call.get('name')}` {args} → {out[:300]}{err}")
        if m.tool_calls:
            lines.append("")
        lines += [m.content.strip() or "_(empty)_", ""]
        if m.metadata.get("stopped"):
            lines += ["_(stopped by the user)_", ""]
        if m.citations:
            lines.append("Sources:")
            for c in m.citations:
                span = (f", lines {c.get('start_line')}-{c.get('end_line')}"
                        if c.get("start_line") is not None else "")  # fmt: skip
                lines.append(f"- [{c.get('n')}] {c.get('source')}{span}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
