"""On-disk artifacts: atomic writes, manifests and safetensors weights.

Every file g2c writes goes through these helpers: the bytes land in a temporary file in the
target directory, are flushed and fsync'ed, then renamed over the destination
(``os.replace`` is atomic on POSIX and Windows), so a crash never leaves a half-written file.

A run directory holds ``manifest.json`` (``{"format": ..., "format_version": ..., ...}``);
:func:`read_manifest` checks the format name and version and raises ``ValueError`` naming both
on a mismatch. A file that exists but cannot be read back (truncated, corrupt, not JSON) raises
:class:`ArtifactError` (a ``ValueError``) naming the file and what to do instead, never a raw
parser traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError  # the Rust core only: importing it loads no torch

from g2c import __version__

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
#: ``format`` of a training run directory's manifest (written by ``g2c.runs``, read by loaders).
RUN_FORMAT = "g2c.run"

DAMAGED_HINT = "re-create it (re-run the training or save it again), or delete the directory"


class ArtifactError(ValueError):
    """An artifact file exists but is damaged (truncated, corrupt, unparsable).

    The message names the file and what to do instead; the CLI prints it without a traceback
    (it is a ``ValueError``).
    """


def damaged(path: str | os.PathLike, detail: str, hint: str = DAMAGED_HINT) -> ArtifactError:
    """The :class:`ArtifactError` for a damaged ``path``: ``"<path> is damaged (<detail>); <hint>"``."""
    return ArtifactError(f"{path} is damaged or not a valid file ({detail}); {hint}")


def read_json(path: str | os.PathLike, hint: str = DAMAGED_HINT) -> Any:
    """Parse the UTF-8 JSON file at ``path``.

    Missing file → FileNotFoundError naming it; unreadable bytes or invalid JSON →
    :class:`ArtifactError` naming it, with ``hint`` (what to do instead).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, f"{type(exc).__name__}: {exc}", hint) from None


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path`` atomically.

    ``write`` receives a fresh temporary path in the same directory and must create the file.
    On any exception the temporary file is removed and the destination is untouched.
    Returns the destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; artifacts are ordinary readable files
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename). Returns the path."""
    return atomic_write_with(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically. Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Serialise ``obj`` as JSON (UTF-8, sorted keys off, trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def save_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> Path:
    """Save a name → tensor mapping as safetensors, atomically.

    Tensors are made contiguous and detached and moved to CPU; tensors that share storage
    (tied weights) are cloned so safetensors accepts them. ``metadata`` values must be strings.
    """
    from safetensors.torch import save_file  # third-party, lazy: keeps this module torch-free

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write_with(
        path, lambda p: save_file(clean, str(p), metadata=dict(metadata or {}))
    )


def load_safetensors(
    path: str | os.PathLike, device: str = "cpu", hint: str = DAMAGED_HINT
) -> dict:
    """Load a safetensors file into a name → tensor dict (no pickle involved).

    Missing file → FileNotFoundError; a truncated or corrupt file → :class:`ArtifactError`
    naming it, with ``hint`` (what to do instead) instead of safetensors' own error.
    """
    from safetensors.torch import load_file  # third-party, lazy: keeps this module torch-free

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device=device)
    except SafetensorError as exc:
        raise damaged(path, f"safetensors: {exc}", hint) from None


def check_safetensors(path: str | os.PathLike, hint: str = DAMAGED_HINT) -> Path:
    """Check that ``path`` is a complete safetensors file (header parsed, every tensor's bytes
    present) without reading the tensors. Missing → FileNotFoundError; truncated or corrupt →
    :class:`ArtifactError` naming it, with ``hint``. Returns the path."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except SafetensorError as exc:
        raise damaged(path, f"safetensors: {exc}", hint) from None
    return path


def code_version() -> str:
    """The g2c version plus the git commit of the checkout when available (e.g. ``0.1.0+abc1234``)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def write_manifest(directory: str | os.PathLike, format: str, **fields: Any) -> Path:
    """Write ``directory/manifest.json`` atomically with format name/version, code version, time.

    ``fields`` (config dicts, data names, parent artifact, metrics ...) must be JSON-serialisable.
    """
    manifest = {
        "format": format,
        "format_version": MANIFEST_VERSION,
        "code_version": code_version(),
        "created_unix": time.time(),
        **fields,
    }
    return atomic_write_json(Path(directory) / MANIFEST_NAME, manifest)


def read_manifest(directory: str | os.PathLike, format: str | None = None) -> dict:
    """Read ``directory/manifest.json``; check its format name (when given) and version.

    Raises FileNotFoundError when absent, :class:`ArtifactError` when it is damaged (not a JSON
    object) and ValueError on a format or version mismatch.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {directory}: is this a g2c artifact directory?"
        )
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise damaged(path, f"a JSON {type(manifest).__name__}, not an object")
    if format is not None and manifest.get("format") != format:
        raise ValueError(f"{path}: format is {manifest.get('format')!r}, expected {format!r}")
    version = manifest.get("format_version")
    if version != MANIFEST_VERSION:
        raise ValueError(
            f"{path}: format_version {version!r} is not supported (this g2c reads version "
            f"{MANIFEST_VERSION}); re-create the artifact with this version of g2c"
        )
    return manifest


def g2c_home() -> Path:
    """Root directory for runs: ``$G2C_HOME`` when set, else ``./runs``."""
    return Path(os.environ.get("G2C_HOME", "runs"))


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON line to ``path`` (metrics logs) and flush it to disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())
