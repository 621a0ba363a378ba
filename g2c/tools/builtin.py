"""The built-in tools: a calculator, files confined to a root, sandboxed Python, search.

- ``calculator`` — :func:`calculator_evaluate` walks the expression's Python AST and allows
  numbers, ``+ - * / // % **``, parentheses and a few math functions; no names, attributes,
  calls to anything else, no ``eval``. Exponents and results are bounded.
- ``read_file`` / ``list_dir`` / ``write_file`` — paths are relative to a root; after
  resolving ``..`` and every symlink the target must still be inside the root (else
  :class:`~g2c.tools.ToolError`). Reads and writes are size-limited; writes are atomic.
- ``run_python`` — :func:`g2c.eval.sandbox.run_in_sandbox` (THE sandbox: time, CPU, memory,
  file-size, process and output limits, no network where namespaces are allowed). It is a
  resource sandbox, not a security boundary: the code runs as the same user and can read what
  that user can read (see the sandbox's module docstring).
- ``web_search`` — any ``search(query, k) -> list[dict]`` callable (``g2c.rag.make_search`` of
  a local index; :func:`keyword_search` over a dict of documents): an offline stand-in for a
  search engine behind the interface a real one would use.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from g2c.artifacts import atomic_write_text
from g2c.eval.sandbox import network_isolation_available, run_in_sandbox
from g2c.tools.core import Tool, ToolError

# -- calculator ----------------------------------------------------------------------------------
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max, "sqrt": math.sqrt, "exp": math.exp,
    "log": math.log, "log10": math.log10, "floor": math.floor, "ceil": math.ceil,
    "sin": math.sin, "cos": math.cos, "tan": math.tan,
}  # fmt: skip
_CONSTS = {"pi": math.pi, "e": math.e}
MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 10_000
MAX_INT_DIGITS = 4_000


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_DIGITS * 3.33:
        raise ValueError(f"result has more than {MAX_INT_DIGITS} digits")
    return value


def _eval_node(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError(f"only numbers are allowed, got {node.value!r}")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval_node(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0 and right * math.log10(abs(left)) > MAX_INT_DIGITS:
                raise ValueError(f"result has more than {MAX_INT_DIGITS} digits")
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ValueError("'^' is not a power here: write ** (2**10)")
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS and not node.keywords):  # fmt: skip
        return _check_size(_FUNCS[node.func.id](*(_eval_node(a) for a in node.args)))
    if isinstance(node, ast.Tuple):
        raise ValueError("a comma is not allowed: write 1234 for 1,234, one expression only")
    raise ValueError(f"{type(node).__name__} is not allowed: use numbers, + - * / // % **, "
                     f"parentheses and {', '.join(_FUNCS)}")  # fmt: skip


def calculator_evaluate(expr: str) -> int | float:
    """Evaluate an arithmetic expression safely (AST walk, no ``eval``).

    Allowed: int/float literals, ``+ - * / // % **``, unary ``+ -``, parentheses, the
    constants ``pi`` and ``e`` and the functions abs, round, min, max, sqrt, exp, log, log10,
    floor, ceil, sin, cos, tan. ``×`` and ``÷`` are read as ``*`` and ``/``.

    Raises:
        TypeError: ``expr`` is not a str.
        ValueError: empty, longer than 500 characters, a syntax error, anything not allowed
            (names, attributes, strings, ``^``), an exponent above 10,000 or a result with
            more than 4,000 digits.
        ZeroDivisionError: division or modulo by zero (``1/0``).
    """
    if not isinstance(expr, str):
        raise TypeError(f"expr must be a str, got {type(expr).__name__}")
    text = expr.replace("×", "*").replace("÷", "/").strip()
    if not text:
        raise ValueError("expr is empty; give an arithmetic expression such as 12*(3+4)")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expr is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as e:
        raise ValueError(f"expr is not a valid expression: {getattr(e, 'msg', e)}") from None
    try:
        return _eval_node(tree)
    except RecursionError:
        raise ValueError("expr is nested too deeply") from None
    except OverflowError:
        raise ValueError("the result overflows a float") from None


def format_number(value: int | float) -> str:
    """A number as the calculator shows it: ints exactly, floats with up to 12 significant
    digits (an integral float as an int)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)


def _calculator(expression: str) -> str:
    try:
        return format_number(calculator_evaluate(expression))
    except (ValueError, ZeroDivisionError) as e:
        raise ToolError(f"cannot evaluate {expression!r}: {e}") from None


def make_calculator() -> Tool:
    """The ``calculator`` tool: required argument ``expression`` (a string)."""
    return Tool(
        "calculator",
        "Evaluate an arithmetic expression exactly, e.g. 1234*5678 or (17+5)/4. Use it for "
        "any arithmetic.",
        {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "arithmetic with + - * / // % ** and parentheses",
                }
            },
            "required": ["expression"],
            "additionalProperties": False,
        },  # fmt: skip
        _calculator,
        timeout_s=5.0,
    )


# -- files confined to a root --------------------------------------------------------------------
def _check_root(root: str | os.PathLike, name: str = "root") -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, got {type(root).__name__}")
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"{name} must be an existing directory, got {str(root)!r}")
    return Path(os.path.realpath(path))


def resolve_in_root(root: Path, path: Any) -> Path:
    """``path`` (relative, may contain ``..`` that stays inside) resolved against ``root``
    with every symlink followed; ToolError unless the result is inside ``root``."""
    if not isinstance(path, str) or not path.strip():
        raise ToolError(f"path must be a non-empty string relative to the root, got {path!r}")
    if "\x00" in path:
        raise ToolError("path must not contain NUL characters")
    if os.path.isabs(path) or path.startswith("~"):
        raise ToolError(f"{path!r} is an absolute path; give a path relative to the root "
                        "(e.g. notes/a.txt)")  # fmt: skip
    target = Path(os.path.realpath(root / path))
    if os.path.commonpath([root, target]) != str(root):
        raise ToolError(f"{path!r} points outside the root folder; only files under it can be "
                        "used")  # fmt: skip
    return target


def _read_text(path: Path, max_bytes: int) -> tuple[str, int]:
    """Up to ``max_bytes`` of a regular file, opened without following a symlink swapped in
    after the check (O_NOFOLLOW); (text, total size)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ToolError(f"{path.name!r} does not exist") from None
    except IsADirectoryError:
        raise ToolError(f"{path.name!r} is a directory; use list_dir") from None
    except OSError as e:
        raise ToolError(f"cannot open {path.name!r}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"{path.name!r} is not a regular file")
        data = f.read(max_bytes)
    if b"\x00" in data[:4096]:
        raise ToolError(f"{path.name!r} looks binary; only text files can be read")
    return data.decode("utf-8", errors="replace"), st.st_size


def make_read_file(root: str | os.PathLike, max_chars: int = 20_000) -> Tool:
    """The ``read_file`` tool: argument ``path`` relative to ``root``; returns the file's text,
    cut to ``max_chars`` (the model is told). ``..``, absolute paths and symlinks that leave the
    root → ToolError. A missing root → ValueError."""
    base = _check_root(root)
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars <= 0:
        raise ValueError(f"max_chars must be a positive int, got {max_chars!r}")

    def read_file(path: str) -> str:
        target = resolve_in_root(base, path)
        text, size = _read_text(target, max_chars * 4)
        if len(text) > max_chars or size > max_chars * 4:
            return text[:max_chars] + f"\n[truncated: file has {size} bytes, first {max_chars} " \
                                      "characters shown]"  # fmt: skip
        return text

    return Tool("read_file", "Read a text file in the working folder.",
                {"type": "object", "properties": {"path": {"type": "string", "description":
                 "file path relative to the working folder"}}, "required": ["path"],
                 "additionalProperties": False}, read_file, timeout_s=10.0,
                max_output_chars=max_chars + 200)  # fmt: skip


def make_list_dir(root: str | os.PathLike, max_entries: int = 200) -> Tool:
    """The ``list_dir`` tool: optional argument ``path`` (default the root); one entry per line,
    directories with a trailing ``/``, files with their size; at most ``max_entries``."""
    base = _check_root(root)

    def list_dir(path: str = ".") -> str:
        target = resolve_in_root(base, path)
        if not target.is_dir():
            raise ToolError(f"{path!r} is not a directory")
        entries = sorted(target.iterdir(), key=lambda p: p.name)
        lines = []
        for p in entries[:max_entries]:
            if p.is_symlink() and os.path.commonpath([base, os.path.realpath(p)]) != str(base):
                lines.append(f"{p.name} -> (outside the root)")
            elif p.is_dir():
                lines.append(p.name + "/")
            else:
                lines.append(f"{p.name} ({p.stat().st_size} bytes)")
        if len(entries) > max_entries:
            lines.append(f"[{len(entries) - max_entries} more entries not shown]")
        return "\n".join(lines) if lines else "(empty directory)"

    return Tool("list_dir", "List the files in a folder of the working folder.",
                {"type": "object", "properties": {"path": {"type": "string", "description":
                 "folder relative to the working folder (default: the working folder)"}},
                 "additionalProperties": False}, list_dir, timeout_s=10.0)  # fmt: skip


def make_write_file(root: str | os.PathLike, max_chars: int = 100_000) -> Tool:
    """The ``write_file`` tool: arguments ``path`` and ``content``; writes atomically (temp file
    + rename) under ``root``, creating folders inside it; content longer than ``max_chars`` or a
    path outside the root → ToolError, nothing written."""
    base = _check_root(root)

    def write_file(path: str, content: str) -> str:
        target = resolve_in_root(base, path)
        if len(content) > max_chars:
            raise ToolError(f"content has {len(content)} characters; at most {max_chars}")
        if target.is_dir():
            raise ToolError(f"{path!r} is a directory")
        parent = target.parent
        resolve_in_root(base, os.path.relpath(parent, base))  # folders to create stay inside
        parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, content)
        return f"wrote {len(content.encode('utf-8'))} bytes to {os.path.relpath(target, base)}"

    return Tool("write_file", "Write a text file in the working folder (replaces it).",
                {"type": "object", "properties": {
                    "path": {"type": "string", "description": "file path relative to the "
                             "working folder"},
                    "content": {"type": "string", "description": "the whole text to write"}},
                 "required": ["path", "content"], "additionalProperties": False},
                write_file, timeout_s=10.0)  # fmt: skip


def make_file_tools(root: str | os.PathLike, max_chars: int = 20_000) -> list[Tool]:
    """``read_file``, ``list_dir`` and ``write_file`` over one root."""
    return [make_read_file(root, max_chars), make_list_dir(root), make_write_file(root)]


# -- sandboxed python ----------------------------------------------------------------------------
_DATA_PRELUDE = "import sys as _g2c_sys\ndata = _g2c_sys.stdin.read()\ndel _g2c_sys\n"


def make_run_python(
    timeout: float = 10.0,
    cwd: str | os.PathLike | None = None,
    *,
    memory_mb: int = 256,
    max_output_chars: int = 10_000,
    max_data_chars: int = 1_000_000,
) -> Tool:
    """The ``run_python`` tool: required ``code``; optional ``path`` of a text file under
    ``cwd`` whose content the code gets as the string variable ``data``. Returns what the code
    printed (stdout, and stderr's end if any).

    Runs in :func:`g2c.eval.sandbox.run_in_sandbox`: a fresh temporary directory (not ``cwd``:
    the code sees ``cwd``'s files only through ``data``), ``timeout`` seconds wall clock and CPU,
    ``memory_mb`` address space, no fork (non-root), output cut, no network where the OS allows
    user namespaces. NOT isolated: the file system (the code can read what this user can read)
    — a resource sandbox, not a security boundary. A non-zero exit, a timeout or a memory
    error → ToolError with stderr's end.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    base = _check_root(cwd, "cwd") if cwd is not None else None

    def run_python(code: str, path: str | None = None) -> str:
        stdin = None
        if path is not None:
            if base is None:
                raise ToolError("path needs a working folder, and this run_python has none")
            stdin, _ = _read_text(resolve_in_root(base, path), max_data_chars)
            code = _DATA_PRELUDE + code
        r = run_in_sandbox(code, timeout_s=float(timeout), memory_mb=memory_mb,
                           max_output_bytes=max_output_chars, stdin=stdin)  # fmt: skip
        if r.timed_out:
            raise ToolError(f"the code did not finish within {timeout:g} s and was killed")
        out = r.stdout + ("\n[output truncated]" if r.truncated else "")
        if r.returncode != 0:
            why = "killed by the CPU or file-size limit" if r.returncode < 0 else "an error"
            raise ToolError(f"the code stopped with {why} (exit {r.returncode}):\n"
                            f"{r.stderr.strip()[-2000:]}\n{out}".rstrip())  # fmt: skip
        if r.stderr.strip():
            out += "\n[stderr]\n" + r.stderr.strip()[-2000:]
        return out if out.strip() else "(no output; print what you want to see)"

    isolation = "no network" if network_isolation_available() else "network NOT isolated here"
    return Tool(
        "run_python",
        f"Run Python 3 code and return what it prints ({timeout:g} s, {memory_mb} MB, "
        f"{isolation}). Optional path: a file whose text the code receives as the variable "
        "data.",
        {"type": "object", "properties": {
            "code": {"type": "string", "description": "Python source; print the results"},
            "path": {"type": "string", "description": "optional text file given as `data`"}},
         "required": ["code"], "additionalProperties": False},
        run_python, timeout_s=float(timeout) + 10.0, max_output_chars=max_output_chars + 2200,
    )  # fmt: skip


# -- search --------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")


def keyword_search(documents: Mapping[str, str]) -> Callable[[str, int], list[dict]]:
    """A tiny in-memory search over ``{source: text}`` (BM25 over paragraphs), with the same
    hit format as ``g2c.rag.make_search``: ``{"rank", "score", "source", "text", "start",
    "end"}`` (``start``/``end``: character offsets). For tests and offline demos."""
    if not isinstance(documents, Mapping) or not documents:
        raise ValueError("documents must be a non-empty {source: text} mapping")
    chunks = []
    for source, text in documents.items():
        if not isinstance(text, str):
            raise TypeError(f"documents[{source!r}] must be a str")
        for m in re.finditer(r"[^\n]+(?:\n[^\n]+)*", text):
            chunks.append((source, m.group(0), m.start(), m.end(),
                           Counter(_WORD.findall(m.group(0).lower()))))  # fmt: skip
    n = len(chunks)
    avg = sum(sum(c[4].values()) for c in chunks) / max(n, 1)
    df = Counter(w for c in chunks for w in c[4])

    def search(query: str, k: int = 5) -> list[dict]:
        words = _WORD.findall(str(query).lower())
        scored = []
        for source, text, start, end, tf in chunks:
            length = sum(tf.values())
            s = 0.0
            for w in words:
                if tf[w]:
                    idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                    s += idf * tf[w] * 2.2 / (tf[w] + 1.2 * (0.25 + 0.75 * length / avg))
            if s > 0:
                scored.append((s, source, text, start, end))
        scored.sort(key=lambda x: -x[0])
        return [{"rank": i + 1, "score": round(s, 4), "source": src, "text": t, "start": a,
                 "end": b} for i, (s, src, t, a, b) in enumerate(scored[:k])]  # fmt: skip

    return search


def _format_hits(hits: Any, max_chars: int) -> str:
    if not isinstance(hits, (list, tuple)):
        raise ToolError("the search index returned something that is not a list of hits")
    if not hits:
        return "no results; try other words"
    lines = []
    for n, hit in enumerate(hits, 1):
        if isinstance(hit, str):
            lines.append(f"[{n}] {hit[:max_chars]}")
            continue
        hit = dict(hit) if isinstance(hit, Mapping) else {"text": str(hit)}
        where = str(hit.get("source", "?"))
        if hit.get("start") is not None and hit.get("end") is not None:
            where += f":{hit['start']}-{hit['end']}"
        score = hit.get("score")
        score_s = f" (score {score:.3g})" if isinstance(score, (int, float)) else ""
        text = " ".join(str(hit.get("text", "")).split())[:max_chars]
        lines.append(f"[{hit.get('rank', n)}] {where}{score_s}\n{text}")
    return "\n".join(lines)


def make_web_search(
    search: Callable[[str, int], list[Any]] | None = None,
    *,
    k: int = 3,
    max_chars_per_hit: int = 400,
) -> Tool:
    """The ``web_search`` tool: argument ``query`` (and optional ``k``, 1–10, default ``k``).

    ``search(query, k)`` returns hits — dicts with ``rank, score, source, text, start, end``
    (``g2c.rag.make_search(index)``, :func:`keyword_search`) or plain strings. Without
    ``search`` the tool is a stub: it answers that no index is configured and repeats the
    query. Results are numbered ``[n] source:start-end`` so answers can cite them.
    """
    if search is not None and not callable(search):
        raise TypeError(f"search must be a callable (query, k) -> hits, got {type(search)}")

    def web_search(query: str, k: int = k) -> str:
        if not query.strip():
            raise ToolError("query is empty; give a few keywords")
        if search is None:
            return (f"web_search is a stub (no search index is configured), so there are no "
                    f"results for: {query}")  # fmt: skip
        return _format_hits(search(query, k), max_chars_per_hit)

    return Tool("web_search", "Search the document collection; returns numbered passages with "
                "their source to cite as [n].",
                {"type": "object", "properties": {
                    "query": {"type": "string", "description": "keywords to search for"},
                    "k": {"type": "integer", "minimum": 1, "maximum": 10}},
                 "required": ["query"], "additionalProperties": False},
                web_search, timeout_s=30.0)  # fmt: skip


def default_registry_tools(
    names: list[str],
    *,
    root: str | os.PathLike | None = None,
    search: Callable[[str, int], list[Any]] | None = None,
    timeout: float = 10.0,
) -> list[Tool]:
    """Built-in tools by name (calculator, read_file, list_dir, write_file, run_python,
    web_search); file tools need ``root``. Unknown name or a missing root → ValueError."""
    known = ("calculator", "read_file", "list_dir", "write_file", "run_python", "web_search")
    tools = []
    for name in names:
        if name not in known:
            raise ValueError(f"unknown tool {name!r}; known: {', '.join(known)}")
        if name in ("read_file", "list_dir", "write_file") and root is None:
            raise ValueError(f"tool {name!r} needs a root folder (--root DIR)")
        tools.append({
            "calculator": make_calculator,
            "read_file": lambda: make_read_file(root),
            "list_dir": lambda: make_list_dir(root),
            "write_file": lambda: make_write_file(root),
            "run_python": lambda: make_run_python(timeout, root),
            "web_search": lambda: make_web_search(search),
        }[name]())  # fmt: skip
    return tools
