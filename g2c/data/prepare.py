"""Prepare a pretraining corpus: stream documents, clean them, tokenize in parallel, write shards.

The pipeline (``g2c data prepare``), in the order a document flows::

    sources (files / folders / registered text datasets; plain or gzip)
      → documents (a whole file, or a paragraph = lines between blank lines)
      → workers (K processes): digest, MinHash signature, quality verdict, token ids
      → main process, in document order: exact dedupe → near dedupe → quality → keep
      → split (val when a hash of the document < val_fraction) → shards of shard_tokens ids

Output directory::

    OUT/train-00000.bin   token ids, uint16 (vocab <= 65,536) else uint32, little-endian, no
    OUT/train-00000.bin.json  the g2c.token_ids sidecar (+ split, index, sha256)
    OUT/val-00000.bin ...
    OUT/tokenizer.json    the tokenizer (when it has to_dict): g2c.tokenizer.load_tokenizer(OUT)
    OUT/manifest.json     config, tokenizer, shards (tokens, sha256), sources (files, sha256),
                          per-source counts, the filter funnel, mixture fractions

Every shard is a ``g2c.data.save_token_ids``-format file, so ``g2c.data.load_token_ids`` and
``g2c.pretraining.TokenStream`` (memory map) read it as is; the shards of a split, in index
order, concatenated, are the split's token stream (a document may span two shards; each kept
document is followed by the end-of-text id when the tokenizer has one).

Determinism: documents are read in a fixed order (inputs as given, files sorted by relative
path), workers only compute per-document values, and every decision that depends on earlier
documents (dedupe, mixture, shard boundaries) is made in the main process in document order —
so the output does not depend on the number of workers (tested).

Streaming and resume: documents are read lazily, a bounded batch at a time; memory holds the
dedupe state (16 bytes per document; ``4 * minhash_perm`` bytes per indexed signature plus its
LSH band keys), a batch of documents, and less than one shard of ids per split. After each shard, the state (per-source read cursors,
counts, the ids not yet in a shard, the lengths of the append-only digest and signature files
under ``OUT/state/``) is recorded atomically in ``OUT/state/checkpoint.json``; a rerun with
the same config resumes from it, skips the recorded shards and produces the same output as an
uninterrupted run (tested). ``manifest.json`` is written last; then ``state/`` is removed.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gzip
import hashlib
import io
import json
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from g2c.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_with
from g2c.data.corpus import tokenizer_fingerprint
from g2c.data.dedupe import (
    QUALITY_FILTERS,
    ExactDeduplicator,
    NearDuplicateIndex,
    document_digest,
    minhash_signature,
    quality_reason,
)
from g2c.data.download import sha256_file
from g2c.data.mixture import MixtureScheduler, parse_mixture
from g2c.data.registry import REGISTRY
from g2c.data.resolution import dataset_file
from g2c.data.tokens import (
    TOKEN_IDS_FORMAT,
    TOKEN_IDS_VERSION,
    read_token_ids_metadata,
    sidecar_path,
    token_dtype,
)

PREPARED_FORMAT = "g2c.prepared_corpus"
PREPARED_VERSION = 1
DOCUMENT_UNITS = ("file", "paragraph")
DEDUPE_STAGES = ("exact", "minhash")
MANIFEST = "manifest.json"
STATE_DIR = "state"
_EOT = "<|endoftext|>"
_NP = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


# --- configuration -----------------------------------------------------------------------


@dataclasses.dataclass
class PrepareConfig:
    """What ``g2c data prepare`` does; round-trips through JSON (``to_dict``/``from_dict``).

    ``inputs``: each ``PATH`` (a file or a folder), ``NAME=PATH``, or a registered text dataset
    name (``tinyshakespeare``, ``gutenberg``); one source per entry, named NAME, the dataset
    name, or the path's stem. ``tokenizer``: the spec it was loaded from (recorded only).
    ``shard_tokens``: ids per shard (the last shard of a split may be shorter). ``workers``:
    processes for the per-document work (1 = in-process; does not change the output).
    ``dedupe``: any of ``"exact"``, ``"minhash"``. ``quality``: None or ``"gopher"``.
    ``mixture``: ``{source name: weight > 0}`` for every source, or None (sources in order).
    ``val_fraction``: share of documents held out, chosen by document hash, in [0, 1).
    ``documents``: ``"file"`` (a whole file is one document) or ``"paragraph"``.
    ``include``/``exclude``: glob patterns for files found in folders (``include`` matches the
    file name, e.g. ``"*.py"``; ``exclude`` matches any path component, e.g. ``"test"``).
    ``minhash_*``: near-duplicate threshold (estimated Jaccard), permutations, shingle size in
    words, seed. Every bad value → ValueError naming the field.
    """

    inputs: list[str]
    tokenizer: str = "gpt2"
    shard_tokens: int = 10_000_000
    workers: int = 1
    dedupe: list[str] = dataclasses.field(default_factory=list)
    quality: str | None = None
    mixture: dict[str, float] | None = None
    val_fraction: float = 0.0
    documents: str = "file"
    include: list[str] = dataclasses.field(default_factory=list)
    exclude: list[str] = dataclasses.field(default_factory=list)
    minhash_threshold: float = 0.8
    minhash_perm: int = 128
    minhash_ngram: int = 5
    minhash_seed: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str):
            self.inputs = [self.inputs]
        self.inputs = list(self.inputs)
        if not self.inputs:
            raise ValueError("inputs must name at least one file, folder or dataset (--input)")
        if isinstance(self.dedupe, str):
            self.dedupe = [d for d in self.dedupe.split(",") if d]
        self.dedupe = list(self.dedupe)
        for stage in self.dedupe:
            if stage not in DEDUPE_STAGES:
                raise ValueError(f"dedupe stage {stage!r} unknown; choose from {DEDUPE_STAGES}")
        if self.quality is not None and self.quality not in QUALITY_FILTERS:
            raise ValueError(
                f"quality must be one of {QUALITY_FILTERS} or None, got {self.quality!r}"
            )
        if self.mixture is not None:
            self.mixture = parse_mixture(self.mixture)
        for name in ("shard_tokens", "workers", "minhash_perm", "minhash_ngram"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.documents not in DOCUMENT_UNITS:
            raise ValueError(f"documents must be one of {DOCUMENT_UNITS}, got {self.documents!r}")
        if not 0.0 < self.minhash_threshold < 1.0:
            raise ValueError(f"minhash_threshold must be in (0, 1), got {self.minhash_threshold}")
        self.include, self.exclude = list(self.include), list(self.exclude)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrepareConfig:
        """Inverse of :meth:`to_dict`; an unknown key → ValueError naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PrepareConfig keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        """The fields that determine the output (all but ``workers``)."""
        d = self.to_dict()
        del d["workers"]
        return d


# --- sources and documents ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
    """One input: a name, its files in reading order, their text encoding."""

    name: str
    files: tuple[Path, ...]
    encoding: str = "utf-8"


def _excluded(rel: Path, exclude: Sequence[str]) -> bool:
    return any(
        part.startswith(".")
        or part == "__pycache__"
        or any(fnmatch.fnmatch(part, p) for p in exclude)
        for part in rel.parts
    )


def _folder_files(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or _excluded(rel, exclude):
            continue
        if include and not any(fnmatch.fnmatch(path.name, p) for p in include):
            continue
        found.append(rel)
    return [root / rel for rel in sorted(found, key=lambda r: r.as_posix())]


def resolve_sources(
    inputs: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Source]:
    """The :class:`Source` of each input (see :class:`PrepareConfig` for the forms).

    Raises FileNotFoundError for a path that does not exist (or a dataset whose files are not
    here — no download), ValueError for a folder with no matching file, a dataset without text
    files, or two inputs with the same name.
    """
    sources: list[Source] = []
    for spec in inputs:
        name, eq, rest = spec.partition("=")
        if eq and name and not Path(spec).exists():
            if not rest:
                raise ValueError(f"input {spec!r}: NAME=PATH needs a path after '='")
            path_text = rest
        else:
            name, path_text = "", spec
        path = Path(path_text).expanduser()
        if not path.exists() and path_text in REGISTRY:
            ds = REGISTRY[path_text]
            if not ds.text_files:
                raise ValueError(f"input {spec!r}: dataset {path_text!r} has no text files")
            files = tuple(dataset_file(path_text, f.name, None, False) for f in ds.text_files)
            encodings = {f.encoding for f in ds.text_files}
            encoding = encodings.pop() if len(encodings) == 1 else "utf-8"
            sources.append(Source(name or path_text, files, encoding))
            continue
        if not path.exists():
            raise FileNotFoundError(
                f"input {spec!r}: no such file or folder {str(path)!r} (nor a registered text "
                "dataset); pass an existing path, NAME=PATH, or tinyshakespeare / gutenberg"
            )
        if path.is_dir():
            files = tuple(_folder_files(path, include, exclude))
            if not files:
                raise ValueError(
                    f"input {spec!r}: folder has no file matching include={list(include)} "
                    f"outside exclude={list(exclude)}"
                )
        else:
            files = (path,)
        stem = path.name.removesuffix(".gz").rsplit(".", 1)[0] if path.is_file() else path.name
        sources.append(Source(name or stem or "input", files))
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"two inputs are named {dupes}; name them apart with NAME=PATH")
    return sources


def _open_text(path: Path, encoding: str) -> io.TextIOBase:
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline=None)


def iter_documents(source: Source, unit: str = "file") -> Iterator[str]:
    """The documents of ``source`` in order, streamed (one file / paragraph in memory at once).

    ``unit="file"``: each file's text (universal newlines, gunzipped when gzip); a
    ``"paragraph"``: the lines between blank lines, joined by ``"\\n"``. Whitespace-only
    documents are skipped. Undecodable bytes become U+FFFD.
    """
    if unit not in DOCUMENT_UNITS:
        raise ValueError(f"unit must be one of {DOCUMENT_UNITS}, got {unit!r}")
    for path in source.files:
        with _open_text(path, source.encoding) as fh:
            if unit == "file":
                text = fh.read()
                if text.strip():
                    yield text
                continue
            lines: list[str] = []
            for line in fh:
                line = line.rstrip("\n")
                if line.strip():
                    lines.append(line)
                elif lines:
                    yield "\n".join(lines)
                    lines = []
            if lines:
                yield "\n".join(lines)


# --- per-document work (runs in the workers) ---------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer: Any, config: PrepareConfig) -> None:
    _WORKER["tokenizer"], _WORKER["config"] = tokenizer, config


def _process(text: str) -> tuple[bytes, np.ndarray | None, str | None, np.ndarray | None]:
    """(digest, MinHash signature or None, quality failure or None, ids uint32 or None)."""
    cfg: PrepareConfig = _WORKER["config"]
    sig = None
    if "minhash" in cfg.dedupe:
        sig = minhash_signature(
            text, num_perm=cfg.minhash_perm, seed=cfg.minhash_seed, ngram=cfg.minhash_ngram
        )
    reason = quality_reason(text, cfg.quality)
    ids = None if reason else np.asarray(_WORKER["tokenizer"].encode(text), dtype=np.uint32)
    return document_digest(text), sig, reason, ids


class _DocumentBatches:
    """A source's documents, a bounded batch at a time, after skipping ``skip`` of them."""

    def __init__(self, source: Source, unit: str, skip: int, batch: int) -> None:
        self._docs = iter_documents(source, unit)
        self._batch = batch
        for _ in range(skip):
            next(self._docs)

    def take(self) -> list[str]:
        out: list[str] = []
        chars = 0
        for text in self._docs:
            out.append(text)
            chars += len(text)
            if len(out) >= self._batch or chars >= 4_000_000:
                break
        return out


# --- the run -----------------------------------------------------------------------------


def _tokenizer_info(tokenizer: Any, eot_id: int | None) -> dict[str, Any]:
    if not callable(getattr(tokenizer, "encode", None)):
        raise TypeError(f"tokenizer must have encode(text), got {type(tokenizer).__name__}")
    vocab_size = getattr(tokenizer, "vocab_size", None)
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise TypeError(f"tokenizer must have an int vocab_size, got {vocab_size!r}")
    if eot_id is None:
        eot_id = (getattr(tokenizer, "special_to_id", None) or {}).get(_EOT)
    try:
        fingerprint = tokenizer_fingerprint(tokenizer)
    except TypeError:
        fingerprint = None
    return {"vocab_size": vocab_size, "eot_id": eot_id, "fingerprint": fingerprint}


def _file_entries(sources: Sequence[Source]) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "files": [
                {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
                for p in s.files
            ],
        }
        for s in sources
    ]


def _check_out_dir(out: Path, identity: dict[str, Any]) -> str:
    """ "fresh" | "resume" | "done"; another directory's content → ValueError (no write)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a new or empty directory")
    if not out.exists() or not any(out.iterdir()):
        return "fresh"
    if [p.name for p in out.iterdir()] == [STATE_DIR] and not (
        out / STATE_DIR / "checkpoint.json"
    ).exists():
        return "fresh"  # killed before its first checkpoint: nothing to keep
    for name, status in ((MANIFEST, "done"), (f"{STATE_DIR}/checkpoint.json", "resume")):
        path = out / name
        if path.is_file():
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                raise ValueError(f"{path} is damaged; remove {out} and prepare again") from None
            if d.get("format") != PREPARED_FORMAT:
                break
            if identity is not None and d.get("identity") != identity:
                raise ValueError(
                    f"--out {out} holds a corpus prepared with another config, tokenizer or "
                    "inputs; pass a new --out (or delete it to start over)"
                )
            return status
    raise ValueError(
        f"--out {out} already holds other files (no {MANIFEST} or {STATE_DIR}/checkpoint.json "
        "of g2c data prepare); pass a new or empty directory"
    )


class _Run:
    """The sequential state of one preparation (restorable from a checkpoint)."""

    def __init__(
        self, cfg: PrepareConfig, sources: list[Source], out: Path, tokenizer: Any, info: dict
    ) -> None:
        self.cfg, self.sources, self.out, self.info = cfg, sources, out, info
        self.tokenizer = tokenizer
        self.dtype = token_dtype(info["vocab_size"] - 1)
        self.state = out / STATE_DIR
        self.exact = ExactDeduplicator() if "exact" in cfg.dedupe else None
        self.near = (
            NearDuplicateIndex(
                cfg.minhash_threshold, num_perm=cfg.minhash_perm, seed=cfg.minhash_seed
            )
            if "minhash" in cfg.dedupe
            else None
        )
        self.mixture = MixtureScheduler(cfg.mixture) if cfg.mixture is not None else None
        self.funnel = dict.fromkeys(
            ("documents_in", "exact_duplicates", "near_duplicates", "quality_dropped", "kept"), 0
        )
        self.reasons: dict[str, int] = {}
        self.per_source = {
            s.name: {"documents": 0, "kept": 0, "tokens": {"train": 0, "val": 0}} for s in sources
        }
        self.consumed = {s.name: 0 for s in sources}
        self.pending: dict[str, list[np.ndarray]] = {"train": [], "val": []}
        self.next_index = {"train": 0, "val": 0}
        self.shards: list[dict[str, Any]] = []
        self.stopped_by: str | None = None
        self.seq = 0

    # -- checkpoint ---------------------------------------------------------------------
    def open_state(self, resume: bool) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        if resume:
            self._restore()
        else:
            for name in ("exact.bin", "minhash.bin"):
                (self.state / name).write_bytes(b"")
        self._exact_f = open(self.state / "exact.bin", "ab")  # noqa: SIM115
        self._near_f = open(self.state / "minhash.bin", "ab")  # noqa: SIM115

    def close_state(self) -> None:
        self._exact_f.close()
        self._near_f.close()

    def _restore(self) -> None:
        ck = json.loads((self.state / "checkpoint.json").read_text(encoding="utf-8"))
        s = ck["state"]
        self.funnel, self.reasons, self.per_source = s["funnel"], s["reasons"], s["per_source"]
        self.consumed, self.next_index, self.shards = s["consumed"], s["next_index"], s["shards"]
        self.seq = s["seq"]
        if self.mixture is not None:
            self.mixture = MixtureScheduler(self.cfg.mixture, s["mixture_tokens"])
        with np.load(self.state / s["pending"]) as z:
            self.pending = {
                k: [z[k].astype(np.uint32)] if z[k].size else [] for k in ("train", "val")
            }
        exact_bytes, near_bytes = s["exact_count"] * 16, s["near_count"] * self.cfg.minhash_perm * 4
        for name, size in (("exact.bin", exact_bytes), ("minhash.bin", near_bytes)):
            with open(self.state / name, "r+b") as f:  # drop what came after the checkpoint
                f.truncate(size)
        if self.exact is not None:
            data = (self.state / "exact.bin").read_bytes()
            for i in range(0, len(data), 16):
                self.exact.seen(data[i : i + 16])
        if self.near is not None:
            sigs = np.fromfile(self.state / "minhash.bin", dtype="<u4")
            for sig in sigs.reshape(-1, self.cfg.minhash_perm):
                self.near.check_insert(sig)  # re-insert (each was new when first seen)

    def checkpoint(self, identity: dict[str, Any]) -> None:
        self._exact_f.flush()
        self._near_f.flush()
        self.seq += 1
        pending = f"pending-{self.seq:06d}.npz"

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **{k: self._pending_array(k) for k in ("train", "val")})

        atomic_write_with(self.state / pending, write)
        state = {
            "funnel": self.funnel,
            "reasons": self.reasons,
            "per_source": self.per_source,
            "consumed": self.consumed,
            "next_index": self.next_index,
            "shards": self.shards,
            "seq": self.seq,
            "pending": pending,
            "mixture_tokens": self.mixture.tokens if self.mixture is not None else None,
            "exact_count": len(self.exact) if self.exact is not None else 0,
            "near_count": len(self.near) if self.near is not None else 0,
        }
        ck = {"format": PREPARED_FORMAT, "identity": identity, "state": state}
        atomic_write_json(self.state / "checkpoint.json", ck)
        for old in self.state.glob("pending-*.npz"):
            if old.name != pending:
                old.unlink()

    # -- documents and shards -------------------------------------------------------------
    def _pending_array(self, split: str) -> np.ndarray:
        parts = self.pending[split]
        return np.concatenate(parts) if parts else np.zeros(0, np.uint32)

    def _write_shard(self, split: str, ids: np.ndarray) -> dict[str, Any]:
        index = self.next_index[split]
        name = f"{split}-{index:05d}.bin"
        data = ids.astype(_NP[self.dtype]).tobytes()
        sha = hashlib.sha256(data).hexdigest()
        atomic_write_bytes(self.out / name, data)
        entry = {
            "file": name,
            "split": split,
            "index": index,
            "tokens": int(ids.size),
            "sha256": sha,
        }
        sidecar = {
            "format": TOKEN_IDS_FORMAT,
            "version": TOKEN_IDS_VERSION,
            "dtype": self.dtype,
            "byteorder": "little",
            "count": int(ids.size),
            "prepared": {k: v for k, v in entry.items() if k != "file"},
        }
        atomic_write_json(sidecar_path(self.out / name), sidecar)
        self.next_index[split] += 1
        self.shards.append(entry)
        return entry

    def add(self, source: str, result: tuple) -> list[dict[str, Any]]:
        """Run one processed document through the funnel; returns the shards it completed."""
        digest, sig, reason, ids = result
        self.consumed[source] += 1
        self.funnel["documents_in"] += 1
        self.per_source[source]["documents"] += 1
        if self.exact is not None:
            if self.exact.seen(digest):
                self.funnel["exact_duplicates"] += 1
                return []
            self._exact_f.write(digest)
        if self.near is not None:
            if self.near.check_insert(sig):
                self.funnel["near_duplicates"] += 1
                return []
            self._near_f.write(np.asarray(sig, dtype="<u4").tobytes())
        if reason is not None:
            self.funnel["quality_dropped"] += 1
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
            return []
        self.funnel["kept"] += 1
        if self.info["eot_id"] is not None:
            ids = np.append(ids, np.uint32(self.info["eot_id"]))
        cut = self.cfg.val_fraction
        split = "val" if cut and int.from_bytes(digest[8:], "big") / 2**64 < cut else "train"
        self.per_source[source]["kept"] += 1
        self.per_source[source]["tokens"][split] += int(ids.size)
        if self.mixture is not None:
            self.mixture.record(source, ids.size)
        self.pending[split].append(ids)
        return self._flush(split, final=False)

    def _flush(self, split: str, final: bool) -> list[dict[str, Any]]:
        size = sum(p.size for p in self.pending[split])
        if size < self.cfg.shard_tokens and not (final and size):
            return []
        ids = self._pending_array(split)
        written, n = [], self.cfg.shard_tokens
        while ids.size >= n or (final and ids.size):
            written.append(self._write_shard(split, ids[:n]))
            ids = ids[n:]
        self.pending[split] = [ids] if ids.size else []
        return written

    def finish(self) -> list[dict[str, Any]]:
        return self._flush("train", final=True) + self._flush("val", final=True)


def prepare_corpus(
    config: PrepareConfig,
    tokenizer: Any,
    out_dir: str | os.PathLike,
    *,
    eot_id: int | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Tokenize ``config.inputs`` into shards under ``out_dir``; returns the manifest (a dict).

    Args:
        config: :class:`PrepareConfig`.
        tokenizer: object with ``encode(text) -> list[int]`` and an int ``vocab_size`` (every
            g2c tokenizer); picklable when ``config.workers > 1``. ``to_dict()`` (for the
            fingerprint that guards a resume) is used when present.
        out_dir: a new or empty directory, or one this function wrote with the same config,
            tokenizer and inputs (an interrupted run resumes; a finished one returns its
            manifest without work).
        eot_id: id appended after every document; default the tokenizer's ``<|endoftext|>``
            (no separator when it has none).
        on_event: ``on_event(kind, info)`` for progress: ``"start"`` (sources, resume),
            ``"batch"`` (documents read so far), ``"shard"`` (a shard entry, after its
            checkpoint), ``"done"`` (the manifest).

    Raises (before any work or write): FileNotFoundError for a missing input, ValueError for a
    mixture that does not name exactly the sources, an ``out_dir`` holding something else (or
    another preparation), TypeError for a tokenizer without ``encode``/``vocab_size``; and
    ValueError when a token id is >= ``vocab_size``.
    """
    if not isinstance(config, PrepareConfig):
        raise TypeError(f"config must be a PrepareConfig, got {type(config).__name__}")
    emit = on_event or (lambda kind, info: None)
    sources = resolve_sources(config.inputs, config.include, config.exclude)
    names = [s.name for s in sources]
    if config.mixture is not None and sorted(config.mixture) != sorted(names):
        raise ValueError(
            f"mixture names {sorted(config.mixture)} must be exactly the sources {names} "
            "(name an input with NAME=PATH)"
        )
    info = _tokenizer_info(tokenizer, eot_id)
    out = Path(out_dir)
    _check_out_dir(out, None)  # a file or foreign content → ValueError before hashing inputs
    files = _file_entries(sources)
    identity = {
        "config": config.identity(),
        "tokenizer": info,
        "sources": [[f["sha256"] for f in s["files"]] for s in files],
    }
    status = _check_out_dir(out, identity)
    if status == "done":
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        emit("done", manifest)
        return manifest
    run = _Run(config, sources, out, tokenizer, info)
    run.open_state(resume=status == "resume")
    if status == "fresh":
        run.checkpoint(identity)  # from here on, a kill leaves a resumable directory
    emit("start", {"sources": names, "resume": status == "resume", "shards": len(run.shards)})
    try:
        _drive(run, identity, emit)
    finally:
        run.close_state()
    return _finish(run, files, identity, emit)


def _drive(run: _Run, identity: dict, emit: Callable[[str, dict[str, Any]], None]) -> None:
    cfg = run.cfg
    batch = 64 * cfg.workers
    streams = {
        s.name: _DocumentBatches(s, cfg.documents, run.consumed[s.name], batch) for s in run.sources
    }
    buffers: dict[str, deque] = {s.name: deque() for s in run.sources}
    order = [s.name for s in run.sources]
    pool = None
    if cfg.workers > 1:
        pool = multiprocessing.get_context().Pool(
            cfg.workers, initializer=_init_worker, initargs=(run.tokenizer, cfg)
        )
    else:
        _init_worker(run.tokenizer, cfg)
    try:
        exhausted: set[str] = set()
        while True:
            if run.mixture is not None:
                name = run.mixture.next_source()
            else:
                active = [n for n in order if n not in exhausted]
                if not active:
                    break
                name = active[0]
            if not buffers[name]:
                texts = streams[name].take()
                if not texts:
                    exhausted.add(name)
                    if run.mixture is not None:
                        run.stopped_by = name
                        break
                    continue
                if pool is not None:
                    chunk = max(1, len(texts) // (cfg.workers * 4))
                    buffers[name].extend(pool.map(_process, texts, chunksize=chunk))
                else:
                    buffers[name].extend(map(_process, texts))
                emit("batch", {"documents": run.funnel["documents_in"] + len(texts)})
            result = buffers[name].popleft()
            if (
                result[3] is not None
                and result[3].size
                and int(result[3].max()) >= run.info["vocab_size"]
            ):
                raise ValueError(
                    f"the tokenizer produced id {int(result[3].max())} >= its vocab_size "
                    f"{run.info['vocab_size']}; it is inconsistent"
                )
            written = run.add(name, result)
            if written:
                run.checkpoint(identity)
                for entry in written:
                    emit("shard", entry)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _finish(run: _Run, files: list[dict], identity: dict, emit: Callable) -> dict[str, Any]:
    for entry in run.finish():
        emit("shard", entry)
    tokens = {
        split: sum(s["tokens"] for s in run.shards if s["split"] == split)
        for split in ("train", "val")
    }
    sources = [{**f, **run.per_source[f["name"]]} for f in files]
    mixture = None
    if run.mixture is not None:
        mixture = {
            "weights": run.mixture.weights,
            "target_fractions": run.mixture.target_fractions(),
            "observed_fractions": run.mixture.observed_fractions(),
            "tokens": run.mixture.tokens,
            "stopped_by": run.stopped_by,
        }
    manifest = {
        "format": PREPARED_FORMAT,
        "version": PREPARED_VERSION,
        "identity": identity,
        "config": run.cfg.identity(),
        "tokenizer": {"spec": run.cfg.tokenizer, **run.info},
        "dtype": run.dtype,
        "tokens": tokens,
        "shards": run.shards,
        "sources": sources,
        "funnel": {**run.funnel, "quality_reasons": dict(sorted(run.reasons.items()))},
        "mixture": mixture,
    }
    if callable(getattr(run.tokenizer, "to_dict", None)):  # the directory is self-contained
        atomic_write_json(run.out / "tokenizer.json", run.tokenizer.to_dict(), indent=None)
    atomic_write_json(run.out / MANIFEST, manifest)
    shutil.rmtree(run.state, ignore_errors=True)
    emit("done", manifest)
    return manifest


# --- reading a prepared directory ---------------------------------------------------------


def load_prepared(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a finished preparation; no/unfinished/other manifest → ValueError."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        hint = (
            " (interrupted: rerun g2c data prepare)" if (Path(out_dir) / STATE_DIR).is_dir() else ""
        )
        raise ValueError(f"{out_dir} has no {MANIFEST}{hint}; prepare it with g2c data prepare")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != PREPARED_FORMAT or manifest.get("version") != PREPARED_VERSION:
        raise ValueError(f"{path} is not a {PREPARED_FORMAT} v{PREPARED_VERSION} manifest")
    return manifest


def shard_paths(out_dir: str | os.PathLike, split: str = "train") -> list[Path]:
    """The shard files of ``split`` ("train" / "val") in stream order (each a TokenStream file)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    manifest = load_prepared(out_dir)
    return [Path(out_dir) / s["file"] for s in manifest["shards"] if s["split"] == split]


def load_prepared_ids(out_dir: str | os.PathLike, split: str = "train") -> np.ndarray:
    """A split's ids, all shards concatenated, as a read-only memory map when there is one shard
    (else an int64 copy): shape (N,). Checks each shard's size against the manifest."""
    manifest = load_prepared(out_dir)
    dtype = _NP[manifest["dtype"]]
    arrays = []
    for s in manifest["shards"]:
        if s["split"] != split:
            continue
        path = Path(out_dir) / s["file"]
        if path.stat().st_size != s["tokens"] * dtype.itemsize:
            raise ValueError(f"{path}: size does not match the manifest; prepare it again")
        arrays.append(np.memmap(path, dtype=dtype, mode="r"))
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate([a.astype(np.int64) for a in arrays]) if arrays else np.zeros(0, np.int64)


def prepared_dir(path: str | os.PathLike) -> Path:
    """The directory of a prepared corpus given the directory or its ``manifest.json``."""
    path = Path(path).expanduser()
    return path.parent if path.name == MANIFEST and path.is_file() else path


def check_prepared(
    path: str | os.PathLike,
    *,
    vocab_size: int | None = None,
    fingerprint: str | None = None,
    verify: bool = False,
) -> dict[str, Any]:
    """The manifest of a prepared corpus after checking its shards against it.

    ``path``: the directory ``g2c data prepare`` wrote, or its ``manifest.json``. Checked: the
    manifest's format and dtype (uint16 / uint32); every shard file exists, holds exactly the
    manifest's token count in that dtype, and its ``.json`` sidecar (when present) names the
    same dtype and count; the per-split totals add up. ``vocab_size`` / ``fingerprint`` (see
    ``g2c.data.tokenizer_fingerprint``), when given, must equal the manifest's tokenizer ones
    (a manifest without a fingerprint is checked on ``vocab_size`` only). ``verify=True`` also
    recomputes every shard's SHA-256 (reads every byte).

    Raises FileNotFoundError for a missing directory, ValueError naming the file and the fix
    for anything else (an unfinished preparation, a truncated shard, another tokenizer).
    """
    root = prepared_dir(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data.shards {str(path)!r}: no such directory; pass the --out directory of "
            "g2c data prepare (or its manifest.json)"
        )
    manifest = load_prepared(root)
    dtype_name = manifest.get("dtype")
    if dtype_name not in _NP:
        raise ValueError(f"{root / MANIFEST}: dtype {dtype_name!r} is not uint16 or uint32")
    dtype = _NP[dtype_name]
    tok = manifest.get("tokenizer") or {}
    if vocab_size is not None and tok.get("vocab_size") not in (None, vocab_size):
        raise ValueError(
            f"{root}: the shards were tokenized with a {tok.get('vocab_size')}-id vocabulary, "
            f"this tokenizer has {vocab_size}; prepare the corpus again with this tokenizer or "
            "train with the one in the manifest"
        )
    want = tok.get("fingerprint")
    if fingerprint is not None and want is not None and fingerprint != want:
        raise ValueError(
            f"{root}: the shards were tokenized with another tokenizer (manifest fingerprint "
            f"{want[:12]}…, this tokenizer {fingerprint[:12]}…); prepare the corpus again with "
            "this tokenizer or train with the one in the manifest"
        )
    totals = {"train": 0, "val": 0}
    for shard in manifest["shards"]:
        file = root / shard["file"]
        if not file.is_file():
            raise ValueError(f"{file}: shard listed in the manifest is missing; prepare again")
        size = file.stat().st_size
        if size != shard["tokens"] * dtype.itemsize:
            raise ValueError(
                f"{file}: {size} bytes, the manifest says {shard['tokens']} {dtype_name} ids "
                f"({shard['tokens'] * dtype.itemsize} bytes); the shard is truncated or stale, "
                "prepare the corpus again"
            )
        meta = read_token_ids_metadata(file)
        if meta is not None and (meta["dtype"] != dtype_name or meta["count"] != shard["tokens"]):
            raise ValueError(
                f"{file}.json says {meta['count']} {meta['dtype']} ids, the manifest "
                f"{shard['tokens']} {dtype_name}; prepare the corpus again"
            )
        if verify and sha256_file(file) != shard["sha256"]:
            raise ValueError(f"{file}: SHA-256 differs from the manifest; prepare again")
        totals[shard["split"]] += shard["tokens"]
    if totals != {k: manifest["tokens"].get(k, 0) for k in totals}:
        raise ValueError(
            f"{root / MANIFEST}: shard token counts {totals} do not add up to its totals "
            f"{manifest['tokens']}; prepare the corpus again"
        )
    return manifest
