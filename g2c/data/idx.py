"""IDX files and the MNIST / Fashion-MNIST loaders.

IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a tiny binary format: a 4-byte magic
``00 00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the values in
C order, big-endian. MNIST images are ``(N, 28, 28)`` uint8 (magic 0x00000803), labels ``(N,)``
uint8 (magic 0x00000801). Files are usually gzipped; gzip is detected from the first bytes,
not from the file name.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from g2c.artifacts import atomic_write_bytes
from g2c.data.resolution import dataset_file

# IDX dtype byte → big-endian NumPy dtype.
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({exc})") from exc
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a NumPy array of its declared shape and dtype.

    Returns a writable array in native byte order (uint8 files → ``np.uint8``).
    Raises ValueError naming the file when the magic number, dtype byte, or data length does
    not match the header; FileNotFoundError when the file is absent.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic must start with two zero bytes)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype byte 0x{dtype_code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[dtype_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX data has {len(data) - header} bytes, header shape {shape} needs {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)  # native order, writable


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress``), atomically. Returns the path.

    Supports the IDX dtypes (uint8, int8, int16, int32, float32, float64); others → ValueError.
    Used to build tiny test files and to export data in MNIST's format.
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    if dtype not in codes:
        raise ValueError(
            f"array dtype {array.dtype} has no IDX code; use one of {sorted(map(str, codes))}"
        )
    if array.ndim > 255:
        raise ValueError(f"array has {array.ndim} dimensions; IDX allows at most 255")
    header = (
        bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    )
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        payload = gzip.compress(payload, mtime=0)
    return atomic_write_bytes(path, payload)


_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def _load_idx_pair(
    dataset: str, split: str, path: str | os.PathLike | None, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = _SPLIT_PREFIX[split]
    images_path = dataset_file(dataset, f"{prefix}-images-idx3-ubyte.gz", path, download)
    labels_path = dataset_file(dataset, f"{prefix}-labels-idx1-ubyte.gz", path, download)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path}"
        )
    if labels.size and int(labels.max()) > 9:
        raise ValueError(f"{labels_path}: labels must be in 0..9, found {int(labels.max())}")
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_mnist(
    split: str = "train", path: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST handwritten digits (LeCun, Cortes, Burges 1998).

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000); other → ValueError.
        path: explicit directory holding the IDX files (gzipped or not); default: resolution
            through ``$G2C_DATA_DIR/mnist``, the user cache, then download (see ``resolve``).
        download: allow downloading missing files.

    Returns:
        ``images`` uint8 (N, 28, 28) in 0..255 and ``labels`` uint8 (N,) in 0..9.

    Raises:
        ValueError: a file with the wrong magic number, shape, or label range (names the file).
        FileNotFoundError: files missing and not downloadable (names them and where to put them).
    """
    return _load_idx_pair("mnist", split, path, download)


def load_fashion_mnist(
    split: str = "train", path: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 10 clothing classes, MNIST's format and sizes.

    Same arguments, returns and errors as :func:`load_mnist`. Also found in
    ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package ``dataset-fashion-mnist``).
    Class names: ``FASHION_MNIST_CLASSES``.
    """
    return _load_idx_pair("fashion-mnist", split, path, download)


FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
