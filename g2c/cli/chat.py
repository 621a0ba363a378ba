"""`g2c chat RUN` — a multi-turn chat with a model in the terminal (or through a pipe).

    g2c chat runs/speedrun                       # a g2c run directory (or a run name)
    g2c chat smollm2 --temperature 0.2 --max-tokens 100
    printf 'Hi\\n/exit\\n' | g2c chat runs/speedrun   # from a pipe: answers, then exits 0

RUN is a run directory, a run name from `g2c models list`, a saved model directory, or
`smollm2`. The chat template is the model's own (SmolLM2: the Jinja template in its GGUF) or
g2c's ChatTemplate (g2c runs). Replies stream as they are generated; Ctrl-C stops a reply and
returns to the prompt; Ctrl-D (end of input) or /exit leaves. Slash commands (/help lists
them) change the sampling settings between turns. A line ending in a backslash continues on
the next line; a message that starts with "/" is typed as "//...".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape

from g2c.cli._common import add_runtime_flags, err_console, set_threads
from g2c.nn import resolve_device
from g2c.runs.sft import load_any
from g2c.sft.chat import ChatSession, template_for

HELP = """commands:
  /temp X            sampling temperature, ≥ 0 (0 = greedy)        alias /temperature
  /top_p P | off     nucleus sampling: smallest set with probability ≥ P, P in (0, 1]
  /top_k N | off     keep the N most likely tokens
  /max_tokens N      the most tokens per reply
  /rep X             repetition penalty, > 0 (1 = off)
  /seed N            reseed the sampler
  /system TEXT       set the system message (/system off removes it; /system shows it)
  /clear             forget the conversation (system message and settings stay)
  /save PATH         write the conversation as JSON
  /settings          show the settings
  /help              this help
  /exit              leave (also /quit, Ctrl-D); Ctrl-C stops a reply
anything else is your message; end a line with \\ to continue it; start it with // to send
a message that begins with /"""

# command → (session attribute, parser of the value; "off" means None where allowed)
SETTINGS = {
    "temp": ("temperature", float),
    "temperature": ("temperature", float),
    "top_p": ("top_p", float),
    "top_k": ("top_k", int),
    "max_tokens": ("max_new_tokens", int),
    "rep": ("repetition_penalty", float),
    "repetition_penalty": ("repetition_penalty", float),
    "seed": ("seed", int),
}
OFF = ("off", "none")
FINISH_NOTES = {
    "length": "reply cut at max_tokens ({n}); /max_tokens N allows more",
    "context": "reply cut: the model's context ({ctx} tokens) is full",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `chat` sub-command."""
    p = sub.add_parser("chat", help="chat with a model: a run directory, a saved model, smollm2")
    p.add_argument("run", help="run directory or name (`g2c models list`), model dir, or smollm2")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default: 0.7)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus mass, 1 = off (default 0.9)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k likeliest (default: off)")
    p.add_argument(
        "--max-tokens", type=int, default=256, help="most tokens per reply (default: 256)"
    )
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off (default)")
    p.add_argument("--system", default=None, help="system message (default: none)")
    add_runtime_flags(p)
    p.set_defaults(func=run)


def load_chat_model(name: str, device: str):
    """The model for a path, a model name (``smollm2``), a run name under G2C_HOME, or a LoRA
    run (its base with the adapters merged): ``g2c.runs.sft.load_any``."""
    return load_any(name, device=device)[1]


class Terminal:
    """Where the chat reads and writes: a terminal (prompts, colours, live streaming) or
    pipes (plain text: the user's line echoed, replies, notes on stderr)."""

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty() and sys.stdout.isatty()
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
        """Text on stdout, flushed (a reply streams piece by piece)."""
        sys.stdout.write(text)
        sys.stdout.flush()

    def note(self, text: str, style: str = "dim") -> None:
        """A side remark (truncation, stats) on stderr; dim on a terminal."""
        err_console.print(f"[{style}]{escape(text)}[/{style}]", soft_wrap=True, highlight=False)

    def error(self, text: str) -> None:
        """One line ``error: ...`` on stderr; the chat goes on."""
        self.note(f"error: {text}", "red")


def apply_setting(session: ChatSession, command: str, value: str) -> str:
    """``/command value`` → set the session's setting; returns what was set. A value that is
    not a number, or out of range → ValueError naming the setting."""
    name, parse = SETTINGS[command]
    value = value.strip()
    if not value:
        return f"{name} = {getattr(session, name)}"
    if value.lower() in OFF and name in ("top_p", "top_k"):
        setattr(session, name, None)
        return f"{name} off"
    try:
        number = parse(value)
    except ValueError:
        kind = "an integer" if parse is int else "a number"
        raise ValueError(f"/{command} needs {kind}, got {value!r}") from None
    setattr(session, name, number)  # the session checks the range, naming the setting
    return f"{name} = {getattr(session, name)}"


def command(session: ChatSession, line: str, term: Terminal) -> bool:
    """Run one slash command; returns False when the chat should end."""
    cmd, _, value = line[1:].partition(" ")
    cmd = cmd.strip().lower()
    try:
        if cmd in ("exit", "quit", "q"):
            return False
        if cmd in ("help", "h", "?"):
            term.write(HELP + "\n")
        elif cmd == "settings":
            settings = session.settings()
            term.write(" ".join(f"{k}={v}" for k, v in settings.items()) + "\n")
            term.write(f"system={session.system!r}\n")
        elif cmd in SETTINGS:
            term.write(apply_setting(session, cmd, value) + "\n")
        elif cmd == "system":
            if value.strip().lower() in OFF:
                session.system = None
            elif value.strip():
                session.system = value.strip()
            term.write(f"system = {session.system!r}\n")
        elif cmd == "clear":
            session.clear()
            term.write("conversation cleared\n")
        elif cmd == "save":
            if not value.strip():
                raise ValueError("/save needs a file name, e.g. /save chat.json")
            path = session.save(value.strip())
            term.write(f"saved {len(session.messages)} messages to {path}\n")
        else:
            raise ValueError(f"unknown command /{cmd}; /help lists the commands")
    except (ValueError, TypeError, OSError) as exc:
        term.error(str(exc))
    return True


def answer(session: ChatSession, text: str, term: Terminal) -> None:
    """Stream the reply to ``text``; Ctrl-C stops it (the text so far is kept)."""
    try:
        pieces = session.send(text)
    except ValueError as exc:
        term.error(str(exc))
        return
    info = session.last_turn
    if info.dropped_messages:
        term.note(
            f"[the conversation is longer than the model's context ({session.model.max_seq_len} "
            f"tokens): the oldest {info.dropped_messages} messages are left out of the prompt]"
        )
    term.write("assistant> ")
    try:
        for piece in pieces:
            term.write(piece)
    except KeyboardInterrupt:
        pieces.close()  # records the partial reply in the history
        term.write("\n")
        term.note("[stopped]")
        return
    term.write("\n")
    note = FINISH_NOTES.get(info.finish_reason, "")
    note = note.format(n=session.max_new_tokens, ctx=session.model.max_seq_len)
    if term.tty:
        stats = f"{info.reply_tokens} tokens, {info.tokens_per_s:.1f} tokens/s"
        term.note(f"[{stats}{'; ' + note if note else ''}]")
    elif note:
        term.note(f"[{note}]")


def chat_loop(session: ChatSession, term: Terminal) -> int:
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
            if not command(session, line.strip(), term):
                return 0
            continue
        answer(session, line[1:] if line.startswith("//") else line, term)


def run(args: argparse.Namespace) -> int:
    """Load the model and its template, then chat."""
    set_threads(args.threads)
    device = resolve_device(args.device)
    _check_flags(args)  # before loading: a model takes seconds to load
    top_p = None if args.top_p is not None and args.top_p >= 1 else args.top_p  # 1 = off
    flags = dict(temperature=args.temperature, top_k=args.top_k, top_p=top_p,
                 max_new_tokens=args.max_tokens, repetition_penalty=args.repetition_penalty,
                 seed=args.seed)  # fmt: skip
    loaded = load_chat_model(args.run, str(device))
    template = template_for(loaded)
    session = ChatSession(loaded.model, loaded.tokenizer, template, system=args.system, **flags)
    term = Terminal()
    name = loaded.manifest.get("name") or Path(loaded.source).name
    term.note(
        f"g2c chat — {name} ({loaded.kind}, {type(template).__name__}, context "
        f"{loaded.model.max_seq_len} tokens). /help for commands; /exit or Ctrl-D to leave.",
        "bold" if term.tty else "dim",
    )
    return chat_loop(session, term)


def _check_flags(args: argparse.Namespace) -> None:
    """The flags' ranges, named as flags (ChatSession names its own settings)."""
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1] (1 = off), got {args.top_p}")
    if args.top_k is not None and args.top_k <= 0:
        raise ValueError(f"--top-k must be a positive integer, got {args.top_k}")
    if args.max_tokens <= 0:
        raise ValueError(f"--max-tokens must be a positive integer, got {args.max_tokens}")
    if args.repetition_penalty <= 0:
        raise ValueError(f"--repetition-penalty must be > 0, got {args.repetition_penalty}")
