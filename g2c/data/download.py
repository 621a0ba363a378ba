"""Streaming, verified, atomic downloads (stdlib ``urllib.request`` only).

``download_file`` streams a URL into a temporary file next to the destination, hashing the
*decompressed* content as it goes (gzip streams are inflated incrementally with ``zlib``), and
renames the temporary file onto the destination only when the transfer is complete and the
checksum matches (``g2c.artifacts.atomic_write_with``). On any failure the temporary file is
removed: the destination is either the old file, or absent, never half-written.

Checks, in order: HTTP status (urllib raises), byte count against ``Content-Length``
(truncated transfer → :class:`DownloadError`), gzip stream complete (→ DownloadError),
SHA-256 of the decompressed content (mismatch → ValueError naming both hashes).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from g2c.artifacts import atomic_write_with

ProgressCallback = Callable[[int, "int | None"], None]
"""``callback(bytes_done, bytes_total)``; ``bytes_total`` is None when the server sends no length."""

CHUNK_BYTES = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"


class DownloadError(OSError):
    """A transfer that did not complete (connection closed early, truncated gzip stream)."""


class _GunzipHasher:
    """Incrementally gunzip a byte stream (multi-member aware) and hash the inflated bytes."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        """Inflate ``data``; return the inflated bytes (also hashed)."""
        out = []
        while data:
            chunk = self._z.decompress(data)
            out.append(chunk)
            if self._z.eof:  # a member ended; the rest (if any) is the next gzip member
                data = self._z.unused_data
                if data:
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                data = b""
        inflated = b"".join(out)
        self.sha.update(inflated)
        self.size += len(inflated)
        return inflated

    def finish(self, what: str) -> None:
        """Raise DownloadError when the gzip stream stopped mid-member."""
        if not self._z.eof:
            raise DownloadError(f"{what}: gzip stream is truncated (incomplete download)")


def _read_chunk(response, url: str) -> bytes:
    """One chunk of the body; a connection dropped mid-body becomes DownloadError."""
    try:
        return response.read(CHUNK_BYTES)
    except http.client.IncompleteRead as exc:
        raise DownloadError(f"{url}: connection closed mid-transfer ({exc}); try again") from exc


def sha256_file(path: str | os.PathLike, *, decompress: bool | None = None) -> str:
    """Hex SHA-256 of a file's content; of its gunzipped content when it is gzip.

    ``decompress=None`` detects gzip from the first two bytes (``1f 8b``); True/False force it.
    A truncated gzip file → DownloadError (OSError).
    """
    path = Path(path)
    with open(path, "rb") as f:
        if decompress is None:
            decompress = f.read(2) == GZIP_MAGIC
            f.seek(0)
        if not decompress:
            return hashlib.file_digest(f, "sha256").hexdigest()
        gz = _GunzipHasher()
        while chunk := f.read(1 << 20):
            gz.feed(chunk)
        gz.finish(str(path))
        return gz.sha.hexdigest()


def download_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    progress_callback: ProgressCallback | None = None,
    decompress: bool | None = None,
    *,
    gzipped: bool | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying length and checksum. Returns ``dest``.

    Args:
        url: http(s) or file URL.
        dest: destination file path; its directory is created. An existing file is replaced
            only after the new one is complete and verified.
        sha256: expected hex SHA-256 of the decompressed content (None: no check).
        progress_callback: called as ``(bytes_done, bytes_total)`` with transferred (compressed)
            bytes after each chunk; ``bytes_total`` is None when the length is unknown.
        decompress: store the gunzipped bytes instead of the transferred ones. Default: True
            when the transfer is gzip and ``dest`` does not end in ``.gz``.
        gzipped: whether the transferred bytes are gzip. Default: the URL path ends in ``.gz``.
        timeout: socket timeout in seconds.

    Raises:
        urllib.error.URLError / HTTPError: the server cannot be reached or answers an error.
        DownloadError: fewer bytes than ``Content-Length`` arrived, or the gzip stream is cut.
        ValueError: checksum mismatch (message names expected and actual hash), or a bad
            ``sha256`` argument. Nothing is left at ``dest`` or next to it in every case.
    """
    dest = Path(dest)
    if sha256 is not None and (
        len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())
    ):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if gzipped is None:
        gzipped = urllib.parse.urlparse(url).path.endswith(".gz")
    if decompress is None:
        decompress = gzipped and not dest.name.endswith(".gz")
    if decompress and not gzipped:
        raise ValueError("decompress=True needs a gzip transfer (pass gzipped=True)")

    def write(tmp: Path) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "g2c-data/1"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
            gz = _GunzipHasher() if gzipped else None
            plain_sha = hashlib.sha256()
            done = 0
            if progress_callback is not None:
                progress_callback(0, total)
            while chunk := _read_chunk(response, url):
                done += len(chunk)
                if gz is not None:
                    inflated = gz.feed(chunk)
                    out.write(inflated if decompress else chunk)
                else:
                    plain_sha.update(chunk)
                    out.write(chunk)
                if progress_callback is not None:
                    progress_callback(done, total)
            if total is not None and done != total:
                raise DownloadError(
                    f"{url}: transfer truncated, received {done} of {total} bytes; try again"
                )
            if gz is not None:
                gz.finish(url)
            actual = gz.sha.hexdigest() if gz is not None else plain_sha.hexdigest()
            if sha256 is not None and actual != sha256.lower():
                raise ValueError(
                    f"{url}: checksum mismatch for {dest.name}: expected sha256 {sha256.lower()}, "
                    f"got {actual} (corrupt download or a different version of the file)"
                )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a data file is world-readable like `cp` makes it

    return atomic_write_with(dest, write)
