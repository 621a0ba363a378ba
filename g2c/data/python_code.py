"""The "Specialist" corpus: the running interpreter's own standard library as Python source.

No download: the ``.py`` files under ``sysconfig.get_paths()["stdlib"]`` of the Python that runs
g2c (PSF licence), found at run time. :func:`python_stdlib_config` is the
:class:`~g2c.data.PrepareConfig` that ``g2c data prepare`` runs on it (one document per file,
exact + MinHash dedupe, documents held out by hash), and :data:`PYTHON_STDLIB` is the name a
run config uses for it (``data.shards = "python-stdlib"`` or ``"python-stdlib/json"`` for one
package of it — see ``g2c.runs.pretrain``).

Excluded (not the Python a specialist should learn): third-party packages, the test suites, and
two folders of generated data — ``encodings/`` (codec tables) and ``pydoc_data/`` (one string).
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path

from g2c.data.prepare import PrepareConfig, iter_documents, resolve_sources

PYTHON_STDLIB = "python-stdlib"
PYTHON_INCLUDE = ["*.py"]
PYTHON_EXCLUDE = [
    "site-packages",
    "test",
    "tests",
    "idle_test",
    "*_test*",
    "encodings",
    "pydoc_data",
]


def python_stdlib_root() -> Path:
    """The running interpreter's standard-library folder (``sysconfig``'s ``stdlib`` path)."""
    return Path(sysconfig.get_paths()["stdlib"])


def is_python_stdlib(spec: str | None) -> bool:
    """True for ``"python-stdlib"`` and ``"python-stdlib/<package>"``."""
    return isinstance(spec, str) and (spec == PYTHON_STDLIB or spec.startswith(PYTHON_STDLIB + "/"))


def python_stdlib_input(spec: str = PYTHON_STDLIB) -> str:
    """``"python=<stdlib folder>"`` (or a package of it for ``"python-stdlib/json"``).

    Raises ValueError for another spec or a package that is not a folder of the stdlib.
    """
    if not is_python_stdlib(spec):
        raise ValueError(f"expected 'python-stdlib' or 'python-stdlib/<package>', got {spec!r}")
    root = python_stdlib_root()
    sub = spec[len(PYTHON_STDLIB) :].strip("/")
    path = root / sub if sub else root
    if not path.is_dir() or ".." in Path(sub).parts:
        raise ValueError(
            f"{spec!r}: {path} is not a package folder of this Python's standard library "
            f"({root}); use 'python-stdlib' or e.g. 'python-stdlib/json'"
        )
    return f"python={path}"


def python_stdlib_config(
    spec: str = PYTHON_STDLIB,
    *,
    tokenizer: str = "bpe",
    val_fraction: float = 0.05,
    workers: int = 1,
    shard_tokens: int = 50_000_000,
) -> PrepareConfig:
    """The preparation of the stdlib (or one package of it): ``*.py`` files outside
    :data:`PYTHON_EXCLUDE`, one document per file, exact + MinHash dedupe, ``val_fraction`` of
    the files held out by hash. ``tokenizer`` is recorded in the manifest only."""
    return PrepareConfig(
        inputs=[python_stdlib_input(spec)],
        tokenizer=tokenizer,
        shard_tokens=shard_tokens,
        workers=workers,
        dedupe=["exact", "minhash"],
        val_fraction=val_fraction,
        documents="file",
        include=list(PYTHON_INCLUDE),
        exclude=list(PYTHON_EXCLUDE),
    )


def python_stdlib_documents(spec: str = PYTHON_STDLIB) -> Iterator[str]:
    """The stdlib files' texts in the preparation's order (sorted relative paths), streamed."""
    source = resolve_sources([python_stdlib_input(spec)], PYTHON_INCLUDE, PYTHON_EXCLUDE)[0]
    return iter_documents(source, "file")


def python_stdlib_sample(spec: str = PYTHON_STDLIB, chars: int = 2_000_000) -> str:
    """The first ``chars`` characters of the stdlib documents joined by ``<|endoftext|>`` —
    the text a BPE for this corpus is trained on."""
    parts, total = [], 0
    for doc in python_stdlib_documents(spec):
        parts.append(doc)
        total += len(doc)
        if total >= chars:
            break
    return "<|endoftext|>".join(parts)[:chars]
