"""`g2c chat` in a pseudo-terminal (pexpect), typed at as a person would: the answer streams
through rich's Live Markdown, slash commands, conversations listed / resumed / saved, Ctrl-C
during an answer stops it and the chat goes on, Ctrl-C at the prompt clears the line, /exit and
Ctrl-D leave with exit code 0. The model is a tiny untrained g2c run (a 4096-token context, its
end-of-turn tokens disabled so that a reply runs as long as asked); the tool-call test uses the
agent's ScriptedBackend as the model, everything else (assistant, tools, terminal) is real."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tiny_runs import save_tiny_run

from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

pexpect = pytest.importorskip("pexpect", reason="pexpect is not installed")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

TEXT = "hello there, how are you? I am fine. the cat sat on the mat.\n" * 10
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROMPT = "you> "
HIDE_CURSOR = "\x1b[?25l"  # rich's Live hides the cursor when it starts drawing
REDRAW = "\x1b[2K"  # ... and erases its lines to draw them again


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast(TEXT, tok.base_vocab_size + 40)
    model = TransformerLM(tok.vocab_size, 128, 4, 4, 4096,
                          generator=torch.Generator().manual_seed(0)).eval()  # fmt: skip
    # never ends a turn by itself: Ctrl-C has a long answer to stop
    return save_tiny_run(tmp_path_factory.mktemp("term") / "run", model, tok, name="TinyTerm-0K",
                         family="TinyChat", never_end=("<|end|>", "<|endoftext|>"))  # fmt: skip


def _spawn(args: list[str], tmp_path: Path):
    env = {**os.environ, "G2C_CONVERSATIONS": str(tmp_path / "conversations.sqlite"),
           "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40",
           "G2C_HOME": str(tmp_path / "home")}  # fmt: skip
    env.pop("NO_COLOR", None)
    # Ctrl-C must reach the chat as on a terminal, even when this test runs as a background
    # job of a non-interactive shell (which starts with SIGINT ignored, inherited by children)
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", codec_errors="replace",
                          timeout=60, dimensions=(40, 120), cwd=str(tmp_path),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    child.logfile_read = open(tmp_path / "terminal.log", "w", encoding="utf-8")  # noqa: SIM115
    child.expect_exact(PROMPT)
    return child


def _log(child, tmp_path: Path) -> str:
    """The end of what the terminal showed (for a failing test's message)."""
    child.logfile_read.flush()
    return ANSI.sub("", (tmp_path / "terminal.log").read_text(encoding="utf-8"))[-3000:]


@contextlib.contextmanager
def _driving(child, tmp_path: Path) -> Iterator[None]:
    """Drive ``child`` inside: a pexpect timeout or EOF fails the test with what the terminal
    showed; the child is closed either way."""
    try:
        yield
    except pexpect.ExceptionPexpect as exc:
        raise AssertionError(
            f"{type(exc).__name__}; the terminal showed:\n{_log(child, tmp_path)}"
        ) from None
    finally:
        child.close()


def _say(child, line: str) -> str:
    """Type ``line`` + Enter; the terminal's output up to the next prompt, without colours."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return ANSI.sub("", child.before)


def test_terminal_chat_streams_lists_resumes_saves_and_survives_ctrl_c(run_dir, tmp_path):
    from g2c.assistant import ConversationStore

    child = _spawn(["-m", "g2c", "chat", str(run_dir), "--no-tools", "--system", "Be brief.",
                    "--threads", "1", "--max-tokens", "12"], tmp_path)  # fmt: skip
    with _driving(child, tmp_path):
        out = _say(child, "hello there")  # streamed, then the dim stats line
        assert re.search(r"\[12 tokens, [0-9.]+ s", out), out
        out = _say(child, "/list")
        first = re.search(r"\*\s+([0-9a-f]{12})\s+2\s", out).group(1)
        assert "hello there" in out
        assert "new conversation" in _say(child, "/new")
        assert "max_new_tokens = 3000" in _say(child, "/max_tokens 3000")
        child.sendline("tell me a very long story")
        child.expect_exact(HIDE_CURSOR)  # the live answer view has started ("…")
        child.expect_exact(REDRAW)  # and is redrawn: tokens are streaming
        child.delaybeforesend = None
        child.send("\x03")  # Ctrl-C: stops the 3000-token answer, not the chat
        child.delaybeforesend = 0.05
        child.expect_exact("[stopped]", timeout=20)
        child.expect_exact(PROMPT)
        _say(child, "/max_tokens 5")
        out = _say(child, "and now a short one")  # the chat goes on
        assert re.search(r"\[5 tokens", out), out
        out = _say(child, "/list")
        second = re.search(r"\*\s+([0-9a-f]{12})\s+4\s", out).group(1)
        assert re.search(rf"\s{first}\s+2\s", out) and second != first
        child.sendline(f"/open {first[:6]}")  # a unique prefix; the last turns are replayed
        child.expect_exact(f"opened {first}")
        child.expect_exact("you> hello there")
        child.expect_exact(PROMPT)
        out = _say(child, f"/save {tmp_path / 'first.md'}")
        assert "saved 2 messages" in out
        out = _say(child, "/temp hot")
        assert "error: /temp needs a number, got 'hot'" in out and "Traceback" not in out
        child.send("half a line")  # Ctrl-C at the prompt: the line is dropped, the chat stays
        child.expect_exact("half a line")  # readline has it (and waits for more keys)
        time.sleep(0.2)  # a person's pause: ^C lands while input() waits, not mid-keystroke
        child.send("\x03")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF, timeout=20)
    assert child.exitstatus == 0, ANSI.sub("", child.before or "")
    assert "hello there" in (tmp_path / "first.md").read_text()
    store = ConversationStore(tmp_path / "conversations.sqlite")
    stopped = [m for m in store.get(second).messages if m.role == "assistant"]
    assert stopped[0].metadata.get("stopped") is True and stopped[0].content  # partial kept
    assert "stopped" not in stopped[1].metadata
    assert len(store.list()) == 2  # /open added nothing; "half a line" was never sent


LAUNCHER = """
import sys
from g2c.agent import ScriptedBackend
from g2c.cli import chat, main

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>'
real = chat.build

def build(model, names, device, **kw):  # the model is a script; the rest is g2c chat's own
    if model == "scripted":
        names["scripted"] = "Scripted"
        return real(ScriptedBackend([CALL, "The sum is **4**, computed with `calculator`."]),
                    names, device, **kw)
    return real(model, names, device, **kw)

chat.build = build
sys.exit(main(sys.argv[1:]))
"""


def test_terminal_shows_tool_calls_collapsed_markdown_rendered_details_expand(tmp_path):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    child = _spawn([str(launcher), "chat", "scripted", "--threads", "1"], tmp_path)
    with _driving(child, tmp_path):
        out = _say(child, "What is 2+2?")
        assert "⚙ calculator(expression='2+2') → 4" in out, out
        assert "The sum is 4, computed with calculator." in out  # Markdown rendered, no **
        assert "**" not in out and "1 tool call (/details)" in out
        out = _say(child, "/details")
        assert "⚙ 1. calculator (ok)" in out and '"expression": "2+2"' in out
        out = _say(child, "/tools")
        assert "tools on (native)" in out and "calculator" in out and "run_python" in out
        child.sendeof()  # Ctrl-D leaves
        child.expect(pexpect.EOF, timeout=20)
    assert child.exitstatus == 0
