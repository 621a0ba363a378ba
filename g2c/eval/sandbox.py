"""Run untrusted Python code (a model's completion) in a limited subprocess — defined once, used
by HumanEval here and by the tools' ``run_python`` later.

:func:`run_in_sandbox` writes the code to a fresh temporary directory and runs it there with
the same interpreter in isolated mode (``python -I``: no user site-packages, no ``PYTHON*``
variables, the script's directory not on ``sys.path`` beyond the temp dir itself), a minimal
environment (``PATH``, ``LANG``, ``HOME`` = the temp dir; every proxy and credential variable
of the parent is dropped) and POSIX resource limits set between fork and exec:

==================  =========================================================  =============
limit               what it stops                                              enforced
==================  =========================================================  =============
wall clock          ``timeout_s``: the whole process group is killed           always
RLIMIT_CPU          busy loops (``timeout_s`` + 1 CPU seconds, then SIGXCPU)    POSIX
RLIMIT_AS           memory bombs: allocations past ``memory_mb`` fail           Linux
                    (``MemoryError`` in Python)
RLIMIT_FSIZE        filling the disk: a file past ``max_file_bytes`` → SIGXFSZ  POSIX
RLIMIT_NPROC = 0    fork bombs, ``subprocess``: fork fails                      non-root only
RLIMIT_CORE = 0     core dumps                                                  POSIX
network             a new network namespace (only a down loopback) via          Linux, where
                    ``unshare(CLONE_NEWUSER | CLONE_NEWNET)``                   namespaces are
                                                                                allowed
output              stdout's first / stderr's last ``max_output_bytes`` kept    always
                    (the rest is read and dropped, so the child never blocks)
==================  =========================================================  =============

What is **not** enforced — say so wherever this is used: this is a resource sandbox, not a
security boundary. The code runs as the same user with the same file-system view (it can read
every file that user can; it can write outside the temp dir too, within RLIMIT_FSIZE per
file). The kernel ignores RLIMIT_NPROC for root, so a root user gets no fork limit (the
process group is still killed at the timeout). Without unprivileged user namespaces (some
distributions, Docker's default seccomp profile, macOS) there is no network isolation: then
:attr:`SandboxResult.network_isolated` is False, and only the proxy variables are cleared.
For hostile code use a container or VM (gVisor, Firecracker, nsjail).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
#: Environment variables passed to the child (everything else, proxies and tokens included, is
#: dropped).
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run produced.

    Attributes:
        stdout, stderr: decoded output (UTF-8, undecodable bytes replaced), each truncated to
            ``max_output_bytes``: stdout keeps its beginning, stderr its end (the traceback's
            last lines).
        returncode: the exit status; negative = killed by that signal (-9 at the timeout,
            SIGXCPU at the CPU limit, SIGXFSZ at the file-size limit).
        timed_out: True when the wall-clock ``timeout_s`` ran out and the process was killed.
        truncated: True when stdout or stderr was longer than ``max_output_bytes``.
        seconds: wall time of the run.
        network_isolated: True when the code ran in its own network namespace.
    """

    stdout: str
    stderr: str
    returncode: int
    timed_out: bool
    truncated: bool = False
    seconds: float = 0.0
    network_isolated: bool = False

    @property
    def ok(self) -> bool:
        """True when the code exited with status 0 within the time limit."""
        return self.returncode == 0 and not self.timed_out


def _unshare_network() -> bool:
    """Move the calling process into new user + network namespaces; False where not allowed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 or libc.unshare(CLONE_NEWNET) == 0
    except (OSError, AttributeError):
        return False


def _limits(memory_mb: int, cpu_s: int, max_file_bytes: int, isolate: bool):
    """The ``preexec_fn``: runs in the child between fork and exec."""

    def apply() -> None:
        if isolate:
            _unshare_network()
        mem = memory_mb * 1024 * 1024
        for which, value in (
            (resource.RLIMIT_CPU, cpu_s),
            (resource.RLIMIT_FSIZE, max_file_bytes),
            (resource.RLIMIT_CORE, 0),
            (getattr(resource, "RLIMIT_AS", None), mem),
            (getattr(resource, "RLIMIT_NPROC", None), 0),
        ):
            if which is None:
                continue
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):  # not lowerable here (e.g. macOS RLIMIT_AS)
                pass

    return apply


@functools.lru_cache(maxsize=1)
def network_isolation_available() -> bool:
    """True when a child can be given its own network namespace here (probed once: a child
    unshares, then lists its network interfaces — only ``lo`` must be left)."""
    if not sys.platform.startswith("linux"):
        return False
    code = "print(open('/proc/self/net/dev').read())"
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=10,
            preexec_fn=_unshare_network, env={}, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    lines = [ln.split(":")[0].strip() for ln in out.stdout.splitlines() if ":" in ln]
    return out.returncode == 0 and lines == ["lo"]


def _drain(stream: IO[bytes], keep: int, tail: bool, sink: list, total: list) -> None:
    """Read ``stream`` to its end (a reader thread), keeping its first ``keep`` bytes, or its
    last ``keep`` with ``tail`` (a traceback's end is the useful part)."""
    kept, size = bytearray(), 0
    while chunk := stream.read(65536):
        size += len(chunk)
        if tail:
            kept += chunk
            del kept[: max(0, len(kept) - keep)]
        elif len(kept) < keep:
            kept += chunk[: keep - len(kept)]
    sink.append(bytes(kept))
    total.append(size)


def _check_positive(name: str, value: object, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise TypeError(f"{name} must be a {'number' if kind is float else 'int'}, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def run_in_sandbox(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_output_bytes: int = 65536,
    max_file_bytes: int = 16 * 1024 * 1024,
    stdin: str | None = None,
    isolate_network: bool = True,
) -> SandboxResult:
    """Run Python ``code`` in a subprocess with the limits above and return what it printed.

    Args:
        code: Python source, run as ``main.py`` in a fresh temporary directory (also the
            working directory and ``HOME``; deleted afterwards).
        timeout_s: wall-clock seconds before the process group is killed (``timed_out``).
        memory_mb: address-space limit (RLIMIT_AS) in MiB; the interpreter itself needs ~30.
        max_output_bytes: bytes of stdout (its first) and of stderr (its last) kept.
        max_file_bytes: largest file the code may write (RLIMIT_FSIZE).
        stdin: text fed to the program's standard input (None: empty input).
        isolate_network: run in a new network namespace where the OS allows it.

    Returns:
        :class:`SandboxResult`. The code's own failures (exceptions, limits, timeouts) are
        results, never exceptions here.

    Raises:
        TypeError / ValueError: ``code`` not a str, a non-positive or non-numeric limit.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    _check_positive("timeout_s", timeout_s, float)
    for name, value in (("memory_mb", memory_mb), ("max_output_bytes", max_output_bytes),
                        ("max_file_bytes", max_file_bytes)):  # fmt: skip
        _check_positive(name, value)
    if stdin is not None and not isinstance(stdin, str):
        raise TypeError(f"stdin must be a str or None, got {type(stdin).__name__}")
    isolate = isolate_network and network_isolation_available()
    with tempfile.TemporaryDirectory(prefix="g2c-sandbox-") as tmp:
        script = Path(tmp) / "main.py"
        script.write_text(code, encoding="utf-8")
        env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
        env.update(HOME=tmp, TMPDIR=tmp, PYTHONIOENCODING="utf-8")
        cpu_s = int(timeout_s) + 1
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(script)], cwd=tmp, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_limits(memory_mb, cpu_s, max_file_bytes, isolate),
            start_new_session=True,  # its own process group: the timeout kills children too
        )  # fmt: skip
        outs: dict[str, tuple[list, list]] = {"out": ([], []), "err": ([], [])}
        readers = [
            threading.Thread(
                target=_drain, args=(s, max_output_bytes, k == "err", *outs[k]), daemon=True
            )  # fmt: skip
            for k, s in (("out", proc.stdout), ("err", proc.stderr))
        ]
        for r in readers:
            r.start()
        try:
            if stdin:
                proc.stdin.write(stdin.encode("utf-8"))  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # grandchildren left in the group (when forking was allowed)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for r in readers:
            r.join(timeout=5)
        seconds = time.perf_counter() - t0
    text = {k: b"".join(v[0]).decode("utf-8", errors="replace") for k, v in outs.items()}
    truncated = any(v[1] and v[1][0] > max_output_bytes for v in outs.values())
    return SandboxResult(text["out"], text["err"], proc.returncode, timed_out, truncated,
                         seconds, isolate)  # fmt: skip


__all__ = ["SandboxResult", "network_isolation_available", "run_in_sandbox"]
