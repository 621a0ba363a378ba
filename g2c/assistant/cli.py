"""``run_cli``: the assistant as a plain-text chat loop (no colours, no terminal tricks), for
pipes, tests and dumb terminals. ``g2c chat`` is the rich version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from g2c.artifacts import atomic_write_text
from g2c.assistant.conversation import AssistantError
from g2c.assistant.core import Assistant
from g2c.assistant.store import conversation_markdown

HELP = """commands:
  /help         this help
  /clear        forget the conversation (a new one starts)
  /save PATH    write the conversation to PATH (.json: JSON, else Markdown)
  /exit         leave (so does end of input)
anything else is a message to the assistant"""


def _save(assistant: Assistant, path: str) -> str:
    messages = assistant.conversation.messages
    if path.endswith(".json"):
        text = json.dumps({"conversation_id": assistant.conversation_id,
                           "model": assistant.backend.info.model_id,
                           "messages": [m.to_dict() for m in messages]},
                          indent=2, ensure_ascii=False) + "\n"  # fmt: skip
    else:
        text = conversation_markdown(messages, model=assistant.backend.info.model_id)
    atomic_write_text(Path(path), text)
    return f"saved {len(messages)} messages to {path}"


def run_cli(assistant: Assistant, inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """Read lines from ``inp``, answer on ``out`` until ``/exit`` or end of input; returns 0.

    Each answer streams as it is generated; tool calls print as ``[tool NAME {args}] →
    output`` and sources as ``[n] source, lines a-b`` under the answer; notices as ``(...)``.
    Ctrl-C during an answer stops it (the partial answer is kept) and the chat goes on.
    """
    if not isinstance(assistant, Assistant):
        raise AssistantError(f"assistant must be an Assistant, got {type(assistant).__name__}")
    name = assistant.config.name
    out.write(f"{name} ({assistant.backend.info.model_id}) — /help for commands, /exit to leave\n")
    while True:
        out.write("> ")
        out.flush()
        line = inp.readline()
        if not line:
            out.write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            cmd, _, arg = text.partition(" ")
            arg = arg.strip()
            if cmd in ("/exit", "/quit"):
                return 0
            if cmd == "/help":
                out.write(HELP + "\n")
            elif cmd == "/clear":
                assistant.reset()
                out.write("(conversation cleared)\n")
            elif cmd == "/save":
                if not arg:
                    out.write("usage: /save PATH\n")
                    continue
                try:
                    out.write(_save(assistant, arg) + "\n")
                except OSError as e:
                    out.write(f"cannot save to {arg}: {e}\n")
            else:
                out.write(f"unknown command {cmd}; /help lists them\n")
            continue
        _answer(assistant, text, out)


def _answer(assistant: Assistant, text: str, out: TextIO) -> None:
    events = assistant.stream(text)
    at_line_start = True
    try:
        for event in events:
            kind = event["type"]
            if kind == "token":
                out.write(event["text"])
                at_line_start = event["text"].endswith("\n")
            elif kind in ("notice", "tool_call", "tool_result"):
                if not at_line_start:
                    out.write("\n")
                if kind == "notice":
                    out.write(f"({event['text']})\n")
                elif kind == "tool_call":
                    args = json.dumps(event["arguments"], ensure_ascii=False)
                    out.write(f"[tool {event['name']} {args}]\n")
                else:
                    shown = " ".join(str(event["output"]).split())[:200]
                    flag = " (error)" if event["is_error"] else ""
                    out.write(f"  → {shown}{flag}\n")
                at_line_start = True
            elif kind == "done":
                turn = event["turn"]
                if not at_line_start:
                    out.write("\n")
                for c in turn.citations:
                    span = (f", lines {c['start_line']}-{c['end_line']}"
                            if c.get("start_line") is not None else "")  # fmt: skip
                    out.write(f"  [{c['n']}] {c['source']}{span}\n")
                at_line_start = True
            out.flush()
    except KeyboardInterrupt:
        events.close()
        out.write("\n(stopped)\n")
