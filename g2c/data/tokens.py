"""Token-id files: a flat little-endian uint16/uint32 array plus a small JSON sidecar.

Format (version 1), for ids saved to ``PATH`` (any name, e.g. ``train.bin``):

* ``PATH`` holds the ids as raw unsigned integers, little-endian, no header: ``uint16`` when
  every id is < 65,536 (GPT-2's 50,257-token vocabulary fits), else ``uint32``. N ids take
  2N or 4N bytes, and ``np.memmap(PATH, dtype="<u2")`` reads them without g2c (as nanoGPT does).
* ``PATH.json`` (the sidecar; e.g. ``train.bin.json``) holds
  ``{"format": "g2c.token_ids", "version": 1, "dtype": "uint16", "byteorder": "little",
  "count": N, ...}`` plus any metadata the caller adds (the corpus cache stores its manifest
  here). ``count`` is checked against the file size when loading.

Both files are written atomically (ids first, then the sidecar). Loading returns a 1-D
``torch.long`` tensor, the dtype every g2c model takes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g2c.artifacts import atomic_write_bytes, atomic_write_json

TOKEN_IDS_FORMAT = "g2c.token_ids"
TOKEN_IDS_VERSION = 1
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a token-id file: ``PATH.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _as_int_array(ids: Any) -> np.ndarray:
    """ids (list / NumPy / torch, 1-D integers) → int64 NumPy array; bad input raises."""
    if isinstance(ids, torch.Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"ids must be an integer tensor, got dtype {ids.dtype}")
        array = ids.detach().to("cpu").numpy()
    else:
        array = np.asarray(ids)
        if array.size == 0:
            array = array.astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"ids must be 1-D (a flat token stream), got shape {tuple(array.shape)}")
    return array.astype(np.int64, copy=False)


def token_dtype(max_id: int) -> str:
    """The smallest storage dtype name for ids up to ``max_id``: ``"uint16"`` or ``"uint32"``."""
    if max_id < 0 or max_id >= 2**32:
        raise ValueError(f"token ids must be in [0, 2**32), got max id {max_id}")
    return "uint16" if max_id < 2**16 else "uint32"


def save_token_ids(
    path: str | os.PathLike,
    ids: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save a 1-D stream of token ids to ``path`` (+ sidecar ``path.json``), atomically.

    Args:
        path: destination file (parent directories are created).
        ids: 1-D integer ids (list, NumPy array or tensor, shape (N,)); N may be 0.
        metadata: extra JSON-serialisable fields stored in the sidecar.

    Returns the path. Raises TypeError for non-integer ids and ValueError for a non-1-D input
    or an id outside [0, 2**32).
    """
    array = _as_int_array(ids)
    if array.size and int(array.min()) < 0:
        raise ValueError(f"token ids must be >= 0, got {int(array.min())}")
    dtype = token_dtype(int(array.max()) if array.size else 0)
    path = Path(path)
    atomic_write_bytes(path, array.astype(_DTYPES[dtype]).tobytes())
    sidecar = {
        **dict(metadata or {}),
        "format": TOKEN_IDS_FORMAT,
        "version": TOKEN_IDS_VERSION,
        "dtype": dtype,
        "byteorder": "little",
        "count": int(array.size),
    }
    atomic_write_json(sidecar_path(path), sidecar)
    return path


def read_token_ids_metadata(path: str | os.PathLike) -> dict | None:
    """The sidecar of ``path`` as a dict, or None when there is none.

    A sidecar of another format or version → ValueError naming it.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None
    meta = json.loads(side.read_text(encoding="utf-8"))
    if meta.get("format") != TOKEN_IDS_FORMAT or meta.get("version") != TOKEN_IDS_VERSION:
        raise ValueError(
            f"{side}: not a {TOKEN_IDS_FORMAT} v{TOKEN_IDS_VERSION} sidecar "
            f"(format={meta.get('format')!r}, version={meta.get('version')!r})"
        )
    return meta


def load_token_ids(path: str | os.PathLike, dtype: str | np.dtype | None = None) -> torch.Tensor:
    """Load a token-id file written by :func:`save_token_ids` as a 1-D ``torch.long`` tensor (N,).

    ``dtype`` (``"uint16"`` / ``"uint32"``) is read from the sidecar when omitted; pass it to
    read a raw file without a sidecar (e.g. nanoGPT's ``train.bin`` is ``"uint16"``).
    Raises FileNotFoundError when ``path`` is absent, ValueError when no dtype is known, the
    argument disagrees with the sidecar, or the file size does not match the sidecar's count
    (a file from an interrupted write).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token-id file not found: {path}")
    meta = read_token_ids_metadata(path)
    if dtype is not None:
        name = np.dtype(dtype).newbyteorder("=").name if not isinstance(dtype, str) else dtype
        if name not in _DTYPES:
            raise ValueError(f"dtype must be 'uint16' or 'uint32', got {dtype!r}")
        if meta is not None and meta["dtype"] != name:
            raise ValueError(
                f"dtype={name!r} disagrees with {sidecar_path(path)} ({meta['dtype']!r})"
            )
    elif meta is not None:
        name = meta["dtype"]
    else:
        raise ValueError(
            f"{path} has no sidecar {sidecar_path(path).name}: pass dtype='uint16' or 'uint32'"
        )
    np_dtype = _DTYPES[name]
    size = path.stat().st_size
    if size % np_dtype.itemsize:
        raise ValueError(f"{path}: {size} bytes is not a whole number of {name} ids")
    if meta is not None and size // np_dtype.itemsize != meta["count"]:
        raise ValueError(
            f"{path}: holds {size // np_dtype.itemsize} ids but its sidecar says {meta['count']}; "
            "the file is incomplete or stale, re-create it"
        )
    array = np.fromfile(path, dtype=np_dtype)
    return torch.from_numpy(array.astype(np.int64))
