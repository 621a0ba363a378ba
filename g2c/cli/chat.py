"""`g2c chat [MODEL]` — the assistant in the terminal (or through a pipe).

    g2c chat                                     # the last speedrun's chat model, else smollm2
    g2c chat smollm2 --rag docs.sqlite           # answers from a `g2c rag index` file, cited
    g2c chat runs/speedrun/dpo --no-tools        # a g2c run directory, plain chat
    g2c chat http://localhost:8000/v1#g2c        # any OpenAI-compatible server; ollama:NAME
    g2c chat smollm2 --conversation 3f2a9c01b7de # resume a stored conversation
    printf 'Hi\\n/exit\\n' | g2c chat smollm2     # from a pipe: plain text, exits 0

The assistant (``g2c.assistant.build_assistant``: the model, the tools — calculator, files under
``--tools-root``, run_python in the sandbox, web_search — and RAG over ``--rag INDEX``) answers;
this module only reads lines and draws. On a terminal the answer streams as Markdown (rich
``Live``), each tool call is one dim line (``⚙ calculator(expression='2+2') → 4``) and the
sources one line; ``/details`` shows them in full. Conversations are stored (SQLite, ``--store``
or ``$G2C_CONVERSATIONS``, default ``$G2C_HOME/conversations.sqlite``): ``/list``, ``/open ID``,
``/new``. Ctrl-C stops an answer (the chat goes on); Ctrl-C at the prompt clears the line;
Ctrl-D or /exit leaves. Off a terminal: plain text, the typed line echoed after ``you>``, the
answer after ``assistant>``, remarks on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from rich.console import Group
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from g2c.artifacts import atomic_write_text, g2c_home
from g2c.cli._common import add_runtime_flags, console, err_console, set_threads
from g2c.nn import resolve_device

HELP = """commands:
  /new               start a new conversation (the current one stays stored)
  /list              the stored conversations, newest first (* = this one)
  /open ID           resume a stored conversation (its id, or the first characters of it)
  /clear             forget this conversation's messages (settings stay)
  /save PATH         write this conversation: PATH.md → Markdown, anything else → JSON
  /details           the last answer's tool calls and sources in full  (/show N: call N only)
  /model NAME        switch the model: smollm2, a run dir, http://HOST:PORT/v1#MODEL, ollama:NAME
  /tools [on|off]    list the tools; let the assistant use them or not (or: auto|native|react)
  /rag INDEX | off   answer from a `g2c rag index` file, with citations; off stops retrieval
  /temp X            sampling temperature, ≥ 0 (0 = greedy)            alias /temperature
  /top_p P | off     nucleus sampling: smallest set with probability ≥ P, P in (0, 1]
  /top_k N | off     keep the N most likely tokens
  /max_tokens N      the most tokens per answer
  /seed N            reseed the sampler (models on g2c's engine)
  /system TEXT       set the system message (/system off: the default one; /system shows it)
  /settings          show the model and the settings
  /help              this help
  /exit              leave (also /quit, Ctrl-D); Ctrl-C stops an answer
anything else is your message; end a line with \\ to continue it; start it with // to send
a message that begins with /"""

# command → (AssistantConfig field, parser of the value; "off" → None where allowed)
SETTINGS = {
    "temp": ("temperature", float),
    "temperature": ("temperature", float),
    "top_p": ("top_p", float),
    "top_k": ("top_k", int),
    "max_tokens": ("max_new_tokens", int),
}
OFF = ("off", "none")
SHOWN = ("temperature", "top_p", "top_k", "max_new_tokens", "tool_mode", "rag_k", "max_steps")
NOT_HERE = {
    "rep": "the assistant has no repetition penalty; /settings lists what can be set",
    "repetition_penalty": "the assistant has no repetition penalty; /settings lists what can "
    "be set",
}
FINISH_NOTES = {  # AssistantTurn.stopped_reason → what the user is told
    "max_steps": "stopped after {steps} tool steps; ask more simply, or /tools off",
    "duplicate_action": "stopped: the model repeated the same tool call",
    "no_progress": "stopped: the tool steps made no progress",
}
SUMMARY_CHARS = 60  # a collapsed tool call line: arguments and output cut to this


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `chat` sub-command."""
    p = sub.add_parser(
        "chat",
        help="the assistant: chat with tools, RAG and stored conversations",
        description="Chat with the g2c assistant: a model (g2c run, smollm2, an OpenAI- or "
        "Ollama-compatible server) with tools and retrieval. /help inside lists the commands.",
    )
    p.add_argument("model", nargs="?", default=None,
                   help="run dir or name, smollm2, http(s)://HOST:PORT/v1#MODEL, ollama:NAME "
                   "(default: the last `g2c speedrun` chat model, else smollm2)")  # fmt: skip
    p.add_argument("--rag", default=None, metavar="INDEX", help="a `g2c rag index` file to cite")
    p.add_argument("--tools-root", default=None, metavar="DIR",
                   help="folder the file tools and run_python see (default: the current one)")  # fmt: skip
    p.add_argument("--no-tools", action="store_true", help="plain chat: no tool calls")
    p.add_argument("--tool-mode", choices=("auto", "native", "react"), default="auto",
                   help="native tool calls, ReAct text, or auto: native where the model has "
                   "them (default)")  # fmt: skip
    p.add_argument("--conversation", default=None, metavar="ID", help="resume a conversation")
    p.add_argument("--store", default=None, metavar="PATH",
                   help="conversation store (default: $G2C_CONVERSATIONS or "
                   "$G2C_HOME/conversations.sqlite)")  # fmt: skip
    p.add_argument("--system", default=None, help="system message (default: the assistant's)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus mass (default: off)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k likeliest (default: off)")
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens per answer (256)")
    add_runtime_flags(p)
    p.set_defaults(func=run)


def default_model() -> str:
    """The chat model of the newest ``g2c speedrun`` under ``$G2C_HOME`` (its ``dpo`` stage,
    full or ``--smoke``), else ``"smollm2"``."""
    runs = [g2c_home() / name / "dpo" for name in ("speedrun", "speedrun-smoke")]
    runs = [r for r in runs if (r / "manifest.json").is_file()]
    if not runs:
        return "smollm2"
    return str(max(runs, key=lambda r: (r / "manifest.json").stat().st_mtime))


# -- reading and writing ---------------------------------------------------------------------------
class Terminal:
    """Where the chat reads and writes: a terminal (prompt with line editing, Markdown streamed
    live, colours) or pipes (plain text: the user's line echoed, answers on stdout, remarks on
    stderr)."""

    def __init__(self, tty: bool | None = None) -> None:
        self.tty = sys.stdin.isatty() and sys.stdout.isatty() if tty is None else tty
        self.console = console
        if self.tty:  # line editing and ↑ history for input(), where available
            try:
                import readline  # noqa: F401, PLC0415
            except ImportError:  # pragma: no cover (Windows)
                pass

    def read(self) -> str | None:
        """The next message or command (continued lines joined); None at end of input."""
        lines: list[str] = []
        while True:
            line = self._line("you> " if not lines else "...> ")
            if line is None:
                return "\n".join(lines) if lines else None
            if line.endswith("\\"):
                lines.append(line[:-1])
                continue
            lines.append(line)
            return "\n".join(lines)

    def _line(self, prompt: str) -> str | None:
        if self.tty:
            try:
                return input(prompt)
            except EOFError:
                self.write("\n")
                return None
        line = sys.stdin.readline()
        if not line:
            return None
        line = line.rstrip("\r\n")
        self.write(prompt + line + "\n")  # echo: the transcript reads like the terminal's
        return line

    def write(self, text: str) -> None:
        """Text on stdout, flushed (an answer streams piece by piece)."""
        sys.stdout.write(text)
        sys.stdout.flush()

    def show(self, renderable: Any) -> None:
        """A rich renderable (table, styled text) on stdout; plain off a terminal."""
        self.console.print(renderable, soft_wrap=not self.tty, highlight=False)

    def note(self, text: str, style: str = "dim") -> None:
        """A side remark (banner, notices, stats) on stderr; dim on a terminal."""
        err_console.print(f"[{style}]{escape(text)}[/{style}]", soft_wrap=True, highlight=False)

    def error(self, text: str) -> None:
        """One line ``error: ...`` on stderr; the chat goes on."""
        self.note(f"error: {text}", "red")


def _short(value: Any, limit: int = SUMMARY_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_summary(call: dict[str, Any]) -> str:
    """``calculator(expression='2+2')`` — a tool call in one line (arguments cut short)."""
    args = call.get("arguments")
    if isinstance(args, dict):
        inner = ", ".join(f"{k}={_short(v, 40) if not isinstance(v, str) else repr(_short(v, 40))}"
                          for k, v in args.items())  # fmt: skip
    else:
        inner = _short(args if args is not None else "")
    return f"{call.get('name', '?')}({_short(inner)})"


def result_summary(call: dict[str, Any]) -> str:
    """``⚙ calculator(expression='2+2') → 4`` (``✗`` and the error for a failed call; ``…``
    while it runs)."""
    line = f"⚙ {call_summary(call)}"
    if "output" not in call:
        return line + " …"
    arrow = "✗" if call.get("is_error") else "→"
    return f"{line} {arrow} {_short(call.get('output', ''))}"


def citation_label(c: dict[str, Any]) -> str:
    """``[2] docs/setup.md:10-24`` — where a cited passage comes from."""
    where = str(c.get("source", "?"))
    if c.get("start_line") is not None:
        end = c.get("end_line")
        where += f":{c['start_line']}" + (f"-{end}" if end not in (None, c["start_line"]) else "")
    return f"[{c.get('n', '?')}] {where}"


def citations_summary(citations: list[dict[str, Any]]) -> str:
    """``sources: [1] a.md:3-9, [2] b.txt:1`` — one line (``/details`` shows the passages)."""
    return "sources: " + ", ".join(citation_label(c) for c in citations)


class TurnView:
    """Draws one answer from the assistant's events as they come.

    On a terminal: a rich ``Live`` region holding the tool call / sources lines (dim, one
    each) and the answer so far as Markdown, redrawn at most ``fps`` times a second. Off a
    terminal: plain lines — ``⚙ ...`` per finished tool call, ``sources: ...``, then
    ``assistant> `` and the text as it arrives. Notices go to stderr (``[...]``) either way.
    Collects what it saw (``tool_calls``, ``citations``, ``text``) for ``/details``.
    """

    def __init__(self, term: Terminal, fps: float = 12.0) -> None:
        self.term = term
        self.text = ""
        self.tool_calls: list[dict[str, Any]] = []
        self.citations: list[dict[str, Any]] = []
        self.notices: list[str] = []
        self.lines: list[tuple[str, str]] = []  # (kind, key) in the order they came
        self._live: Live | None = None
        self._last_draw = 0.0
        self._every = 1.0 / fps
        self._started_answer = False  # plain mode: "assistant> " printed
        self._at_line_start = True

    # event intake
    def event(self, ev: dict[str, Any]) -> None:
        """Draw one event of ``Assistant.stream``."""
        kind = ev.get("type")
        if kind == "notice":
            self.notice(str(ev.get("text", "")))
        elif kind == "citations":
            self.citations = [dict(c) for c in ev.get("citations") or []]
            if self.citations:
                self._add_line("citations", "")
        elif kind == "tool_call":
            call = {k: ev.get(k) for k in ("call_id", "name", "arguments")}
            if self.text and not self.text.endswith("\n"):
                self.text += "\n\n"  # text before a call: its own paragraph
            self.tool_calls.append(call)
            self._add_line("call", str(len(self.tool_calls) - 1))
        elif kind == "tool_result":
            call = self._call_for(ev)
            call.update(output=ev.get("output", ""), is_error=bool(ev.get("is_error")))
            self._tool_done(call)
        elif kind == "token":
            self.token(str(ev.get("text", "")))

    def thinking(self) -> None:
        """On a terminal: start the live region now, showing "…" until something arrives."""
        if self.term.tty and self._live is None:
            self._draw(force=True)

    def _call_for(self, ev: dict[str, Any]) -> dict[str, Any]:
        for call in reversed(self.tool_calls):
            if call.get("call_id") == ev.get("call_id") and "output" not in call:
                return call
        call = {k: ev.get(k) for k in ("call_id", "name")} | {"arguments": None}
        self.tool_calls.append(call)  # a result without its call event: show it anyway
        self._add_line("call", str(len(self.tool_calls) - 1))
        return call

    def notice(self, text: str) -> None:
        """A notice (context trimmed, model switched ...), now: on stderr, or above the live
        answer on a terminal while one is drawn."""
        self.notices.append(text)
        if self._live is not None:
            self._live.console.print(Text(f"[{text}]", style="yellow"), highlight=False)
            return
        if not self.term.tty:
            self._newline()
        self.term.note(f"[{text}]", "yellow" if self.term.tty else "dim")

    def _line_text(self, kind: str, key: str) -> str:
        if kind == "citations":
            return citations_summary(self.citations)
        return result_summary(self.tool_calls[int(key)])

    def _add_line(self, kind: str, key: str) -> None:
        self.lines.append((kind, key))
        if self.term.tty:
            self._draw(force=True)
        elif kind == "citations":  # plain: a call is printed once its result is in
            self._newline()
            self.term.write(self._line_text(kind, key) + "\n")

    def _tool_done(self, call: dict[str, Any]) -> None:
        if self.term.tty:
            self._draw(force=True)
        else:
            self._newline()
            self.term.write(result_summary(call) + "\n")

    def token(self, piece: str) -> None:
        """More answer text."""
        if not piece:
            return
        self.text += piece
        if self.term.tty:
            self._draw()
            return
        if not self._started_answer:
            self._newline()
            self.term.write("assistant> ")
            self._started_answer = True
        self.term.write(piece)
        self._at_line_start = piece.endswith("\n")

    def _newline(self) -> None:
        if not self._at_line_start:
            self.term.write("\n")
            self._at_line_start = True

    # drawing on a terminal
    def renderable(self) -> Group:
        """The tool / sources lines (dim) and the answer so far as Markdown."""
        parts: list[Any] = []
        for kind, key in self.lines:
            style = (
                "dim red" if kind == "call" and self.tool_calls[int(key)].get("is_error") else "dim"
            )
            parts.append(Text(self._line_text(kind, key), style=style, overflow="ellipsis",
                              no_wrap=True))  # fmt: skip
        if self.text:
            parts.append(Markdown(self.text))
        elif not self.lines:
            parts.append(Text("…", style="dim"))  # thinking
        return Group(*parts)

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self._live is None:
            self._live = Live(self.renderable(), console=self.term.console, auto_refresh=False,
                              vertical_overflow="visible", transient=False)  # fmt: skip
            self._live.start()
            self._last_draw = now
            return
        if force or now - self._last_draw >= self._every:
            self._live.update(self.renderable(), refresh=True)
            self._last_draw = now

    def close(self) -> None:
        """The last redraw (the whole answer) and the end of the live region / the line."""
        if self._live is not None:
            self._live.update(self.renderable(), refresh=True)
            self._live.stop()
            self._live = None
        elif not self.term.tty:
            if self._started_answer or not (self.lines or self.text):
                if not self._started_answer:
                    self.term.write("assistant> ")
                self.term.write("\n" if not self._at_line_start or not self.text else "")
            self._at_line_start = True


class StopOnInterrupt:
    """While an answer streams, Ctrl-C (SIGINT) only raises a flag: the event loop sees it
    between two events and closes the generator cleanly (the partial answer is kept). A second
    Ctrl-C before that raises KeyboardInterrupt at once (a stuck backend)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnInterrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: plain KeyboardInterrupt semantics
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class ChatState:
    """What the commands act on: the assistant, its store, how it was built, the last turn."""

    def __init__(self, assistant: Any, store: Any, model: str, rag: str | None,
                 tools_root: str | None, device: str,
                 names: dict[str, str] | None = None) -> None:  # fmt: skip
        self.assistant = assistant
        self.store = store
        self.model = model
        self.rag = rag
        self.tools_root = tools_root
        self.device = device
        self.names = names if names is not None else {}  # spec → the model's display name
        self.last: TurnView | None = None
        self.tool_mode = assistant.config.tool_mode  # restored by /tools on


def answer(state: ChatState, text: str, term: Terminal) -> Any:
    """Stream the assistant's answer to ``text``; returns the ``AssistantTurn`` (None when
    stopped or failed). Ctrl-C stops it: the generator is closed, the partial answer kept."""
    from g2c.inference.backends import BackendError  # noqa: PLC0415

    view = TurnView(term)
    state.last = view
    turn = None
    stopped = False
    events: Iterator[dict[str, Any]] | None = None
    with StopOnInterrupt() as stop:  # the whole answer, drawing included: Ctrl-C only flags
        try:
            events = state.assistant.stream(text)
            if term.tty:
                view.thinking()  # "…" until the first event (a long prompt takes a while)
            for ev in events:
                if ev.get("type") == "done":
                    turn = ev.get("turn")
                else:
                    view.event(ev)
                if stop.requested:
                    stopped = True
                    break
        except KeyboardInterrupt:  # a second Ctrl-C: at once
            stopped = True
        except (ValueError, TypeError, OSError, BackendError) as exc:
            view.close()
            term.error(str(exc))
            return None
        finally:
            if events is not None and hasattr(events, "close"):
                try:
                    events.close()  # generation stops; the partial answer is kept
                except (ValueError, RuntimeError):  # pragma: no cover - already finished
                    pass
        try:
            view.close()
            if stopped:
                term.note("[stopped]")
                return None
            _after_turn(state, turn, term)
        except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C while drawing the end
            term.write("\n")
    return turn


def _after_turn(state: ChatState, turn: Any, term: Terminal) -> None:
    if turn is None:
        return
    reason = getattr(turn, "stopped_reason", "")
    note = FINISH_NOTES.get(reason, "").format(steps=state.assistant.config.max_steps)
    if term.tty:
        ms = getattr(turn, "latency_ms", 0.0) or 0.0
        n = getattr(turn, "completion_tokens", 0) or 0
        stats = f"{n} tokens, {ms / 1000:.1f} s" + (f", {n / ms * 1000:.1f} tokens/s" if ms else "")
        calls = len(getattr(turn, "tool_calls", ()) or ())
        if calls:
            stats += f", {calls} tool call{'s' * (calls > 1)} (/details)"
        term.note(f"[{stats}{'; ' + note if note else ''}]")
    elif note:
        term.note(f"[{note}]")


# -- commands ----------------------------------------------------------------------------------------
def apply_setting(state: ChatState, command: str, value: str) -> str:
    """``/command value`` → update the assistant's config; returns what was set. Not a number
    or out of range → ValueError naming the setting and the fix."""
    name, parse = SETTINGS[command]
    value = value.strip()
    config = state.assistant.config
    if not value:
        return f"{name} = {getattr(config, name)}"
    if value.lower() in OFF and name in ("top_p", "top_k"):
        state.assistant.update_config(**{name: None})
        return f"{name} off"
    try:
        number = parse(value)
    except ValueError:
        kind = "an integer" if parse is int else "a number"
        raise ValueError(f"/{command} needs {kind}, got {value!r}") from None
    if name == "top_p" and number >= 1:  # 1 keeps every token: the same as off
        state.assistant.update_config(top_p=None)
        return "top_p off"
    state.assistant.update_config(**{name: number})  # validated: AssistantError names it
    return f"{name} = {getattr(state.assistant.config, name)}"


def _settings_line(state: ChatState) -> str:
    config = state.assistant.config
    return " ".join(f"{k}={getattr(config, k, None)}" for k in SHOWN)


def _model_line(state: ChatState) -> str:
    a = state.assistant
    info = getattr(a.backend, "info", None)
    name = getattr(info, "model_id", None) or state.model
    name = state.names.get(name, name)
    tools = _tool_names(state)
    tool_mode = (
        "off" if a.config.tool_mode == "none" else getattr(a, "tool_mode", a.config.tool_mode)
    )
    rag = state.rag or "off"
    cid = a.conversation_id or "new (stored at the first message)"
    return (f"model {name} ({getattr(info, 'name', '?')}); tools: {', '.join(tools) or 'none'} "
            f"({tool_mode}); rag: {rag}; conversation {cid}")  # fmt: skip


def _tool_names(state: ChatState) -> list[str]:
    return list(state.assistant.registry.names)


def _resolve_id(state: ChatState, prefix: str) -> str:
    prefix = prefix.strip()
    if not prefix:
        raise ValueError("/open needs a conversation id; /list shows them")
    ids = [c.id for c in state.store.list()]
    if prefix in ids:
        return prefix
    hits = [i for i in ids if i.startswith(prefix)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ValueError(f"no conversation {prefix!r}; /list shows the stored ones")
    raise ValueError(f"{prefix!r} matches {len(hits)} conversations; type more of the id")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def list_conversations(state: ChatState, term: Terminal) -> None:
    """The stored conversations, newest first; ``*`` marks the open one."""
    infos = state.store.list()
    if not infos:
        term.write("no stored conversations yet\n")
        return
    current = state.assistant.conversation_id
    if term.tty:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("", "id", "messages", "updated", "title"):
            table.add_column(col)
        for c in infos:
            table.add_row("*" if c.id == current else "", c.id, str(c.n_messages),
                          _when(c.updated_at), escape(c.title or "(untitled)"))  # fmt: skip
        term.show(table)
        return
    for c in infos:
        mark = "*" if c.id == current else " "
        term.write(f"{mark} {c.id}  {c.n_messages:>3} messages  {_when(c.updated_at)}  "
                   f"{c.title or '(untitled)'}\n")  # fmt: skip


def replay(state: ChatState, term: Terminal, turns: int = 3) -> None:
    """The last ``turns`` exchanges of the open conversation (after /open)."""
    groups = [g for g in state.assistant.conversation.turns() if g and g[0].role == "user"]
    if len(groups) > turns:
        term.note(f"[{len(groups) - turns} earlier turns not shown; /save PATH.md has them all]")
    for group in groups[-turns:]:
        for m in group:
            if m.role == "user":
                term.write(f"you> {m.content}\n")
            elif m.role == "assistant" and m.content:
                if term.tty:
                    term.show(Markdown(m.content))
                else:
                    term.write(f"assistant> {m.content}\n")


def save(state: ChatState, path_text: str) -> tuple[Path, int]:
    """Write the open conversation to ``path_text``: ``.md`` → Markdown (tool calls and
    sources under each answer), else JSON (the messages, the model, the settings). Atomic."""
    from g2c.assistant.store import conversation_markdown  # noqa: PLC0415

    path_text = path_text.strip()
    if not path_text:
        raise ValueError("/save needs a file name, e.g. /save chat.json or /save chat.md")
    path = Path(path_text).expanduser()
    if path.is_dir():
        raise ValueError(f"/save needs a file name, {path} is a directory")
    messages = list(state.assistant.conversation.messages)
    if path.suffix.lower() in (".md", ".markdown"):
        title = state.assistant.conversation_id or "Conversation"
        if state.store is not None and state.assistant.conversation_id:
            title = state.store.info(state.assistant.conversation_id).title or title
        text = conversation_markdown(messages, title=title)
    else:
        config = state.assistant.config
        data = {"format": "g2c.chat", "id": state.assistant.conversation_id,
                "model": state.model, "system": config.system,
                "settings": {k: getattr(config, k, None) for k in SHOWN},
                "messages": [m.to_dict() for m in messages]}  # fmt: skip
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(path, text)
    return path, len(messages)


def details(state: ChatState, term: Terminal, which: str = "") -> None:
    """The last answer's tool calls (arguments and output in full) and sources (passages);
    ``which`` = N shows tool call N only."""
    view = state.last
    if view is None or not (view.tool_calls or view.citations):
        term.write("the last answer used no tools and no sources\n")
        return
    calls = list(enumerate(view.tool_calls, start=1))
    if which.strip():
        try:
            n = int(which.strip().strip("[]#"))
        except ValueError:
            raise ValueError(f"/show needs a tool call number, got {which.strip()!r}") from None
        if not 1 <= n <= len(calls):
            raise ValueError(f"/show N: N is 1 to {len(calls)} (the last answer's tool calls)"
                             if calls else "the last answer made no tool calls")  # fmt: skip
        calls = [calls[n - 1]]
    for n, call in calls:
        status = "error" if call.get("is_error") else "ok" if "output" in call else "stopped"
        term.show(Text(f"⚙ {n}. {call.get('name')} ({status})", style="bold"))
        args = json.dumps(call.get("arguments"), indent=2, ensure_ascii=False)
        term.write(f"arguments: {args}\n")
        term.write(f"output:\n{call.get('output', '')}\n")
    if which.strip():
        return
    for c in view.citations:
        score = c.get("score")
        head = citation_label(c) + (f"  (score {score:.3f})" if isinstance(score, float) else "")
        term.show(Text(head, style="bold"))
        term.write(f"{str(c.get('text', '')).rstrip()}\n")


def set_model(state: ChatState, name: str, term: Terminal) -> None:
    """``/model NAME``: a new backend for the same assistant (conversation, tools and settings
    stay; the next answer starts with a notice)."""
    name = name.strip()
    if not name:
        term.write(_model_line(state) + "\n")
        return
    term.note(f"[loading {name} ...]")
    config = state.assistant.config
    fresh = build(name, state.names, state.device, tools_root=state.tools_root,
                  config=dataclasses.replace(config, tool_mode="auto"))  # fmt: skip
    if config.tool_mode == "native" and fresh.tool_mode != "native":
        state.assistant.update_config(tool_mode="auto")  # the new model has no native calls
    state.assistant.set_backend(fresh.backend)
    state.model = name
    term.write(f"model = {name} (tools: {state.assistant.tool_mode})\n")


def set_rag(state: ChatState, value: str, term: Terminal) -> None:
    """``/rag INDEX`` retrieves from a ``g2c rag index`` file; ``/rag off`` stops."""
    from g2c.assistant import open_rag_index  # noqa: PLC0415

    value = value.strip()
    if not value:
        term.write(f"rag = {state.rag or 'off'}\n")
        return
    if value.lower() in OFF:
        state.assistant.set_retriever(None)
        state.rag = None
        term.write("rag off\n")
        return
    state.assistant.set_retriever(open_rag_index(value))
    state.rag = value
    term.write(f"rag = {value}\n")


def set_tools(state: ChatState, value: str, term: Terminal) -> None:
    """``/tools`` lists them; ``/tools off`` plain chat; ``/tools on`` back to the tool mode
    (``/tools auto|native|react`` picks one)."""
    value = value.strip().lower()
    if value in OFF:
        state.assistant.update_config(tool_mode="none")
        term.write("tools off\n")
        return
    if value in ("on", "auto", "native", "react"):
        mode = value if value != "on" else state.tool_mode if state.tool_mode != "none" else "auto"
        state.assistant.update_config(tool_mode=mode)  # native without native calls: an error
        state.tool_mode = mode
        term.write(f"tools on ({state.assistant.tool_mode})\n")
        return
    if value:
        raise ValueError(f"/tools takes on, off, auto, native or react, got {value!r}")
    registry = state.assistant.registry
    state_word = "off" if state.assistant.config.tool_mode == "none" else "on"
    term.write(f"tools {state_word} ({state.assistant.tool_mode}):\n")
    for name in _tool_names(state):
        tool = registry.get(name)
        desc = " ".join(str(getattr(tool, "description", "")).split())
        term.write(f"  {name:<12} {_short(desc, 80)}\n")


def command(state: ChatState, line: str, term: Terminal) -> bool:
    """Run one slash command; returns False when the chat should end. A mistake prints one
    ``error:`` line naming the fix; the chat goes on."""
    from g2c.assistant.store import ConversationNotFound  # noqa: PLC0415

    cmd, _, value = line[1:].partition(" ")
    cmd = cmd.strip().lower()
    assistant = state.assistant
    try:
        if cmd in ("exit", "quit", "q"):
            return False
        if cmd in ("help", "h", "?"):
            term.write(HELP + "\n")
        elif cmd == "settings":
            term.write(_settings_line(state) + "\n")
            term.write(f"system = {assistant.config.system!r}\n")
            term.write(_model_line(state) + "\n")
        elif cmd in SETTINGS:
            term.write(apply_setting(state, cmd, value) + "\n")
        elif cmd == "seed":
            try:
                seed = int(value.strip())
            except ValueError:
                raise ValueError(f"/seed needs an integer, got {value.strip()!r}") from None
            torch.manual_seed(seed)
            term.write(f"seed = {seed}\n")
        elif cmd in NOT_HERE:
            raise ValueError(f"/{cmd}: {NOT_HERE[cmd]}")
        elif cmd == "system":
            text = value.strip()
            if text.lower() in OFF:
                assistant.update_config(system=None)
            elif text:
                assistant.update_config(system=text)
            term.write(f"system = {assistant.config.system!r}\n")
        elif cmd == "clear":
            assistant.conversation.clear()
            if state.store is not None and assistant.conversation_id:
                state.store.clear(assistant.conversation_id)
            state.last = None
            term.write("conversation cleared\n")
        elif cmd == "new":
            assistant.reset()
            state.last = None
            term.write(f"new conversation {assistant.conversation_id or ''}".rstrip() + "\n")
        elif cmd in ("list", "ls"):
            list_conversations(state, term)
        elif cmd == "open":
            cid = _resolve_id(state, value)
            assistant.open(cid)
            state.last = None
            info = state.store.info(cid)
            term.write(f"opened {cid} {info.title or '(untitled)'!r}: {info.n_messages} "
                       "messages\n")  # fmt: skip
            replay(state, term)
        elif cmd == "save":
            path, n = save(state, value)
            term.write(f"saved {n} messages to {path}\n")
        elif cmd in ("details", "show"):
            details(state, term, value if cmd == "show" else "")
        elif cmd == "model":
            set_model(state, value, term)
        elif cmd == "tools":
            set_tools(state, value, term)
        elif cmd == "rag":
            set_rag(state, value, term)
        else:
            raise ValueError(f"unknown command /{cmd}; /help lists the commands")
    except ConversationNotFound as exc:
        term.error(f"{exc}; /list shows the stored ones")
    except KeyError as exc:  # str() of a KeyError is quoted
        term.error(str(exc.args[0]) if exc.args else "not found")
    except (ValueError, TypeError, OSError) as exc:
        term.error(str(exc))
    return True


def chat_loop(state: ChatState, term: Terminal) -> int:
    """Read messages and commands until /exit or end of input; returns the exit code (0)."""
    while True:
        try:
            line = term.read()
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh prompt (Ctrl-D leaves)
            term.write("\n")
            continue
        if line is None:
            return 0
        if not line.strip():
            continue
        if line.startswith("/") and not line.startswith("//"):
            if not command(state, line.strip(), term):
                return 0
            continue
        try:
            answer(state, line[1:] if line.startswith("//") else line, term)
        except KeyboardInterrupt:  # Ctrl-C just before the answer began: back to the prompt
            term.note("[stopped]")


def model_loader(device: str, names: dict[str, str]) -> Any:
    """The ``load`` for ``backend_from_spec``: ``g2c.runs.sft.load_any`` (run dirs, run names
    under ``$G2C_HOME``, ``smollm2``, LoRA runs with their adapters merged); records each
    model's display name (its manifest's ``name``) in ``names``."""
    from g2c.runs.sft import load_any  # noqa: PLC0415

    def load(spec: str) -> Any:
        loaded = load_any(spec, device=device)[1]
        names[spec] = (loaded.manifest or {}).get("name") or Path(str(loaded.source)).name
        return loaded

    return load


def build(model: str, state_names: dict[str, str], device: str, **kwargs: Any) -> Any:
    """``g2c.assistant.build_assistant`` with g2c's loader on ``device``; a server that cannot
    be reached → ValueError (one line, no traceback)."""
    from g2c.assistant import build_assistant  # noqa: PLC0415
    from g2c.inference.backends import BackendError  # noqa: PLC0415

    try:
        return build_assistant(model, device=device, max_len=None,  # the model's context, ≤ 2048
                               load=model_loader(device, state_names),
                               **kwargs)  # fmt: skip
    except BackendError as exc:
        raise ValueError(f"model {model}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Build the assistant (``g2c.assistant.build_assistant``), then chat."""
    from g2c.assistant import AssistantConfig, ConversationStore  # noqa: PLC0415

    set_threads(args.threads)
    _check_flags(args)  # before loading: a model takes seconds to load
    torch.manual_seed(args.seed)
    device = str(resolve_device(args.device))
    model = args.model or default_model()
    config = AssistantConfig(
        temperature=args.temperature, top_p=args.top_p if args.top_p and args.top_p < 1 else None,
        top_k=args.top_k, max_new_tokens=args.max_tokens, system=args.system,
        tool_mode="none" if args.no_tools else args.tool_mode,
    )  # fmt: skip
    if args.rag is not None and not Path(args.rag).expanduser().is_file():
        raise FileNotFoundError(f"--rag: no index file {args.rag}; build one with "
                                f"`g2c rag index DOCS --db {args.rag}`")  # fmt: skip
    if args.tools_root is not None and not Path(args.tools_root).expanduser().is_dir():
        raise FileNotFoundError(f"--tools-root: no folder {args.tools_root}")
    store = ConversationStore(args.store)
    if args.conversation is not None:
        store.info(args.conversation)  # an unknown id: the error comes before the model loads
    term = Terminal()
    if term.tty:
        term.note(f"[loading {model} ...]")
    names: dict[str, str] = {}
    assistant = build(model, names, device, rag_index=args.rag, tools_root=args.tools_root,
                      config=config, store=store, conversation_id=args.conversation)  # fmt: skip
    state = ChatState(assistant, store, model, args.rag, args.tools_root, device, names)
    term.note(f"g2c chat — {_model_line(state)}. /help for commands; /exit or Ctrl-D to leave.",
              "bold" if term.tty else "dim")  # fmt: skip
    if args.conversation is not None:
        replay(state, term)
    return chat_loop(state, term)


def _check_flags(args: argparse.Namespace) -> None:
    """The flags' ranges, named as flags (the assistant's config names its own fields)."""
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1] (1 = off), got {args.top_p}")
    if args.top_k is not None and args.top_k <= 0:
        raise ValueError(f"--top-k must be a positive integer, got {args.top_k}")
    if args.max_tokens <= 0:
        raise ValueError(f"--max-tokens must be a positive integer, got {args.max_tokens}")
