"""Language-model data: a token stream split into train/val, and random (x, y) windows.

A corpus is one long 1-D stream of token ids (N,). Pretraining reads random windows of
``context_length + 1`` tokens from it (nanoGPT's ``get_batch``, Karpathy 2022):

    x = ids[s : s + T]          (B, T)   inputs
    y = ids[s + 1 : s + T + 1]  (B, T)   next-token targets (x shifted left by one)

so every window trains T next-token predictions at once, one per prefix length.

The stream is a 1-D id tensor or any *source* object with ``__len__`` and its own
``get_lm_batch(batch_size, context_length, *, generator=None)``: ``TokenStream`` reads a g2c
token-id file (``g2c.data.save_token_ids``) through ``numpy.memmap``, so a corpus larger than
memory trains without being loaded — and gives the same batches as the loaded tensor for the
same generator. ``ShardedTokenStream`` does the same over the shards of a prepared corpus
(``g2c data prepare``), checked against its manifest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g2c.data import (
    check_prepared,
    prepared_dir,
    read_token_ids_metadata,
    tokenizer_fingerprint,
)

_NP_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def _check_ids(ids: torch.Tensor, name: str = "ids") -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{name} must be an integer tensor of token ids, got {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(f"{name} must be a 1-D token stream (N,), got shape {tuple(ids.shape)}")
    return ids


def is_lm_source(obj: Any) -> bool:
    """True for a source object usable in place of a 1-D id tensor (``__len__`` and
    ``get_lm_batch``)."""
    return hasattr(obj, "__len__") and callable(getattr(obj, "get_lm_batch", None))


def check_lm_source(source: Any, name: str = "ids") -> Any:
    """Validate a 1-D integer id tensor or a source object; TypeError / ValueError naming
    ``name`` otherwise. Returns ``source``."""
    if isinstance(source, torch.Tensor) or not is_lm_source(source):
        if not isinstance(source, torch.Tensor):
            raise TypeError(
                f"{name} must be a 1-D torch.Tensor of token ids or a source with __len__ and "
                f"get_lm_batch(batch_size, context_length, *, generator=None) (e.g. TokenStream), "
                f"got {type(source).__name__}"
            )
        return _check_ids(source, name)
    return source


def split_token_stream(
    ids: torch.Tensor, train_fraction: float = 0.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-D token stream (N,) into contiguous ``(train, val)`` pieces.

    The first ``int(N * train_fraction)`` tokens are the training split, the rest validation
    (contiguous, like nanoGPT's 90/10 split, so no window straddles both). Views, not copies.

    Raises ValueError: ids not 1-D ("1-D"), ``train_fraction`` outside (0, 1) ("between 0 and
    1"), or a side that would be empty ("empty"). TypeError for non-integer ids.
    """
    if not isinstance(train_fraction, (int, float)) or not 0.0 < train_fraction < 1.0:
        raise ValueError(
            f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction}"
        )
    ids = _check_ids(ids)
    n_train = int(ids.numel() * train_fraction)
    if n_train == 0 or n_train == ids.numel():
        raise ValueError(
            f"split of {ids.numel()} tokens at train_fraction={train_fraction} leaves an empty "
            "side; pass more tokens or a fraction closer to 0.5"
        )
    return ids[:n_train], ids[n_train:]


def get_lm_batch(
    ids: torch.Tensor | Any,
    batch_size: int,
    context_length: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` random windows: ``x`` (B, T) and ``y`` (B, T) long, y = x shifted by 1.

    Start offsets are uniform in [0, N − T − 1] drawn with ``torch.randint`` from
    ``generator`` (a CPU ``torch.Generator``; the global RNG when None), so the same generator
    state gives the same batch. The batch lives on ``ids``' device.

    ``ids`` may also be a source object (``__len__`` + ``get_lm_batch(batch_size,
    context_length, *, generator=None)``, e.g. :class:`TokenStream`); the call is delegated to
    it after the checks below.

    Raises ValueError when ``ids`` has fewer than ``context_length + 1`` tokens ("too short"),
    or batch_size / context_length < 1; TypeError / ValueError for non-1-D or non-integer ids.
    """
    ids = check_lm_source(ids)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if (
        isinstance(context_length, bool)
        or not isinstance(context_length, int)
        or context_length < 1
    ):
        raise ValueError(f"context_length must be an integer >= 1, got {context_length!r}")
    n = len(ids)
    if n < context_length + 1:
        raise ValueError(
            f"ids is too short: {n} tokens, need at least context_length + 1 = "
            f"{context_length + 1}; use a smaller context_length or more data"
        )
    if not isinstance(ids, torch.Tensor):
        return ids.get_lm_batch(batch_size, context_length, generator=generator)
    starts = torch.randint(0, n - context_length, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(context_length + 1)  # (T+1,)
    windows = ids[(starts[:, None] + offsets[None, :]).to(ids.device)]  # (B, T+1)
    return windows[:, :-1].long(), windows[:, 1:].long()  # (B, T), (B, T)


class _RangeStream:
    """What :class:`TokenStream` and :class:`ShardedTokenStream` share: a contiguous range
    ``[start, stop)`` of ids that subclasses read with ``_gather(positions) -> int64 array``."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def _gather(self, positions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_tensor(self) -> torch.Tensor:
        """The whole range as a 1-D ``torch.long`` tensor (N,)."""
        return self[:]

    def split(self, train_fraction: float = 0.9) -> tuple[Any, Any]:
        """Contiguous ``(train, val)`` views, cut as ``split_token_stream`` cuts a tensor."""
        if not isinstance(train_fraction, (int, float)) or not 0.0 < train_fraction < 1.0:
            raise ValueError(
                f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction}"
            )
        n_train = int(len(self) * train_fraction)
        if n_train == 0 or n_train == len(self):
            raise ValueError(
                f"split of {len(self)} tokens at train_fraction={train_fraction} leaves an empty "
                "side; pass more tokens or a fraction closer to 0.5"
            )
        cut = self.start + n_train
        views = []
        for a, b in ((self.start, cut), (cut, self.stop)):
            view = object.__new__(type(self))
            view.__dict__.update(self.__dict__, start=a, stop=b)
            views.append(view)
        return views[0], views[1]

    def get_lm_batch(
        self, batch_size: int, context_length: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows x, y (B, T) long on CPU, drawn as ``get_lm_batch`` draws them."""
        n = len(self)
        if n < context_length + 1:
            raise ValueError(
                f"{self} is too short: {n} tokens, need at least context_length + 1 = "
                f"{context_length + 1}"
            )
        starts = torch.randint(0, n - context_length, (batch_size,), generator=generator)  # (B,)
        pos = self.start + starts.numpy()[:, None] + np.arange(context_length + 1)[None, :]
        windows = torch.from_numpy(self._gather(pos))  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)


class TokenStream(_RangeStream):
    """A memory-mapped 1-D token stream over a g2c token-id file (no load into memory).

    ``TokenStream(path)`` opens a file written by ``g2c.data.save_token_ids`` (dtype from its
    ``PATH.json`` sidecar; pass ``dtype="uint16"``/``"uint32"`` for a raw file such as
    nanoGPT's ``train.bin``) with ``numpy.memmap``. ``start``/``stop`` select a contiguous range
    of ids (a view; ``split`` makes train/val views like ``split_token_stream``).

    - ``len(stream)``: number of ids N in the range.
    - ``stream[i]`` → int; ``stream[a:b]`` → 1-D ``torch.long`` tensor (a copy of that range).
    - ``get_lm_batch(batch_size, context_length, *, generator=None)`` → (x, y) long (B, T):
      the start offsets are drawn exactly as ``get_lm_batch`` draws them for a tensor, so the
      same generator state gives the same batch as the loaded stream.
    - ``to_tensor()`` loads the range as a (N,) long tensor.

    Raises FileNotFoundError for a missing file; ValueError for an unknown dtype, a file size
    that is not a whole number of ids or disagrees with the sidecar's count (an interrupted
    write), or a bad range.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dtype: str | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"token-id file not found: {self.path}")
        meta = read_token_ids_metadata(self.path)
        if dtype is None:
            if meta is None:
                raise ValueError(
                    f"{self.path} has no sidecar {self.path.name}.json: pass dtype='uint16' or "
                    "'uint32'"
                )
            dtype = meta["dtype"]
        if dtype not in _NP_DTYPES:
            raise ValueError(f"dtype must be 'uint16' or 'uint32', got {dtype!r}")
        if meta is not None and meta["dtype"] != dtype:
            raise ValueError(f"dtype={dtype!r} disagrees with {self.path}.json ({meta['dtype']!r})")
        np_dtype = _NP_DTYPES[dtype]
        size = self.path.stat().st_size
        if size % np_dtype.itemsize:
            raise ValueError(f"{self.path}: {size} bytes is not a whole number of {dtype} ids")
        total = size // np_dtype.itemsize
        if meta is not None and total != meta["count"]:
            raise ValueError(
                f"{self.path}: holds {total} ids but its sidecar says {meta['count']}; the file "
                "is incomplete or stale, re-create it"
            )
        stop = total if stop is None else stop
        if not (0 <= start <= stop <= total):
            raise ValueError(f"need 0 <= start <= stop <= {total}, got start={start}, stop={stop}")
        self.dtype = dtype
        self.start, self.stop = start, stop
        self._data = (
            np.memmap(self.path, dtype=np_dtype, mode="r") if total else np.zeros(0, np_dtype)
        )

    def __repr__(self) -> str:
        return f"TokenStream({str(self.path)!r}, start={self.start}, stop={self.stop})"

    def __getitem__(self, index: int | slice) -> int | torch.Tensor:
        n = len(self)
        if isinstance(index, slice):
            a, b, step = index.indices(n)
            if step != 1:
                raise ValueError("TokenStream slices must have step 1")
            chunk = self._data[self.start + a : self.start + max(a, b)]
            return torch.from_numpy(chunk.astype(np.int64))
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a stream of {n} ids")
        return int(self._data[self.start + index % n])

    def _gather(self, positions: np.ndarray) -> np.ndarray:
        """int64 ids at absolute positions (any shape) of the file."""
        return self._data[positions].astype(np.int64)


class ShardedTokenStream(_RangeStream):
    """The shards of one split of a prepared corpus as one memory-mapped 1-D token stream.

    ``ShardedTokenStream(paths, dtype=...)`` concatenates token-id files (each opened with
    ``numpy.memmap``; nothing is loaded) in the order given; :meth:`from_prepared` opens a split
    of a directory written by ``g2c data prepare`` after checking it against its manifest
    (``g2c.data.check_prepared``: dtype, every shard's token count, the tokenizer).
    ``start``/``stop`` select a contiguous range of the concatenation (``split`` cuts
    train/val views as ``split_token_stream`` cuts a tensor).

    It is a source object: ``len``, ``stream[i]`` → int, ``stream[a:b]`` → (b-a,) long tensor,
    ``to_tensor()``, and ``get_lm_batch(batch_size, context_length, *, generator=None)`` →
    (x, y) long (B, T) on CPU. The start offsets are drawn exactly as ``get_lm_batch`` draws
    them for a tensor (``torch.randint(0, N - T, (B,))``), over the whole concatenation, so
    the same generator state gives the same batch as the concatenated ids loaded in memory
    (tested), and a window may span two shards. Batches are deterministic for a seeded
    generator; under DDP/FSDP every rank draws the same global batch and keeps its own slice
    (``g2c.training.TrainingLoop``), as with a tensor or a :class:`TokenStream`.

    Raises FileNotFoundError for a missing file; ValueError for no files, an unknown dtype, a
    file whose size is not a whole number of ids or disagrees with its sidecar, a bad range.
    """

    def __init__(
        self,
        paths: list[str | os.PathLike],
        *,
        dtype: str | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise ValueError("paths must name at least one token-id file (a split's shards)")
        parts = [TokenStream(p, dtype=dtype) for p in paths]
        dtypes = {p.dtype for p in parts}
        if len(dtypes) > 1:
            raise ValueError(f"the shards mix dtypes {sorted(dtypes)}; they must share one")
        self.paths = [p.path for p in parts]
        self.dtype = parts[0].dtype
        self._maps = [p._data for p in parts]
        self.bounds = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        total = int(self.bounds[-1])
        stop = total if stop is None else stop
        if not (0 <= start <= stop <= total):
            raise ValueError(f"need 0 <= start <= stop <= {total}, got start={start}, stop={stop}")
        self.start, self.stop = start, stop
        self.manifest: dict | None = None

    @classmethod
    def from_prepared(
        cls,
        path: str | os.PathLike,
        split: str = "train",
        *,
        tokenizer: Any = None,
        verify: bool = False,
    ) -> ShardedTokenStream:
        """Split ``split`` ("train" / "val") of the prepared directory ``path`` (or its
        ``manifest.json``), checked against the manifest; with ``tokenizer`` also its
        vocabulary size and fingerprint. ``verify`` recomputes every shard's SHA-256.
        ``stream.manifest`` holds the manifest. A split without tokens → ValueError."""
        from_dir = prepared_dir(path)
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        fingerprint = vocab = None
        if tokenizer is not None:
            vocab = getattr(tokenizer, "vocab_size", None)
            try:
                fingerprint = tokenizer_fingerprint(tokenizer)
            except TypeError:
                fingerprint = None
        manifest = check_prepared(from_dir, vocab_size=vocab, fingerprint=fingerprint,
                                  verify=verify)  # fmt: skip
        files = [from_dir / s["file"] for s in manifest["shards"] if s["split"] == split]
        if not files or not manifest["tokens"].get(split):
            raise ValueError(
                f"{from_dir}: the {split!r} split has no tokens (prepare with --val-fraction > 0 "
                "for a validation split)"
            )
        stream = cls(files, dtype=manifest["dtype"])
        stream.manifest = manifest
        return stream

    def __repr__(self) -> str:
        return (
            f"ShardedTokenStream({len(self.paths)} shards from {str(self.paths[0].parent)!r}, "
            f"start={self.start}, stop={self.stop})"
        )

    def _gather(self, positions: np.ndarray) -> np.ndarray:
        """int64 ids at absolute positions (any shape) of the concatenation."""
        shard = np.searchsorted(self.bounds, positions, side="right") - 1
        out = np.empty(positions.shape, dtype=np.int64)
        for s in np.unique(shard):
            mask = shard == s
            out[mask] = self._maps[s][positions[mask] - self.bounds[s]]
        return out

    def __getitem__(self, index: int | slice) -> int | torch.Tensor:
        n = len(self)
        if isinstance(index, slice):
            a, b, step = index.indices(n)
            if step != 1:
                raise ValueError("ShardedTokenStream slices must have step 1")
            b = max(a, b)
            chunks = []
            for s, data in enumerate(self._maps):  # the pieces of [start+a, start+b) per shard
                lo = max(self.start + a, int(self.bounds[s]))
                hi = min(self.start + b, int(self.bounds[s + 1]))
                if lo < hi:
                    chunks.append(data[lo - self.bounds[s] : hi - self.bounds[s]].astype(np.int64))
            return torch.from_numpy(np.concatenate(chunks) if chunks else np.zeros(0, np.int64))
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a stream of {n} ids")
        return int(self._gather(np.array([self.start + index % n]))[0])
