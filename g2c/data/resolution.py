"""Find a dataset's files on disk, downloading them into the user cache when allowed.

Resolution order for dataset ``name`` (its directory name is ``Dataset.dirname``):

1. an explicit ``path``: the dataset directory itself, or a data root holding ``<dirname>/``
   (an explicit path that lacks the files is an error; nothing else is searched);
2. ``$G2C_DATA_DIR/<dirname>/``;
3. the dataset's system directories (``Dataset.search_dirs``, e.g. Debian's
   ``/usr/share/datasets/fashion-mnist``);
4. the user cache ``<cache>/data/<dirname>/`` where ``<cache>`` is ``$G2C_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/g2c``, else ``~/.cache/g2c``;
5. download into that cache (``download=True`` and ``$G2C_OFFLINE`` unset), verified by SHA-256;
   ``$G2C_DATA_MIRROR=<base-url>`` makes downloads use ``<base-url>/<dirname>/<file>`` first;
6. otherwise FileNotFoundError naming the missing file(s) and where to put them.

Presence is checked by existence only (cheap); ``check`` hashes the files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from g2c.data.download import ProgressCallback, download_file, sha256_file
from g2c.data.registry import REGISTRY, Dataset, DatasetFile, get_dataset


def data_dir() -> Path | None:
    """``$G2C_DATA_DIR`` as a Path, or None when unset or empty."""
    value = os.environ.get("G2C_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """Root of g2c's user cache: ``$G2C_CACHE_DIR``, else ``$XDG_CACHE_HOME/g2c``, else ``~/.cache/g2c``."""
    value = os.environ.get("G2C_CACHE_DIR", "").strip()
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "g2c"


def dataset_cache_dir(name: str) -> Path:
    """Where downloads of dataset ``name`` go: ``<cache_root>/data/<dirname>``."""
    return cache_root() / "data" / get_dataset(name).dirname


def offline() -> bool:
    """True when ``$G2C_OFFLINE`` is set to 1/true/yes: downloads are then never attempted."""
    return os.environ.get("G2C_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def _alternatives(filename: str) -> tuple[str, ...]:
    """Names under which a file may be stored: ``x.gz`` may also be present uncompressed as ``x``."""
    return (filename, filename[:-3]) if filename.endswith(".gz") else (filename,)


def _explicit_dirs(ds: Dataset, path: str | os.PathLike) -> list[Path]:
    path = Path(path).expanduser()
    return [path, path / ds.dirname]


def _search_dirs(ds: Dataset, path: str | os.PathLike | None) -> list[Path]:
    """Candidate directories in resolution order (download target excluded)."""
    if path is not None:
        return _explicit_dirs(ds, path)
    dirs = []
    root = data_dir()
    if root is not None:
        dirs.append(root / ds.dirname)
    dirs.extend(Path(d) for d in ds.search_dirs)
    dirs.append(dataset_cache_dir(ds.name))
    return dirs


def _find_in(directory: Path, filename: str) -> Path | None:
    for alt in _alternatives(filename):
        candidate = directory / alt
        if candidate.is_file():
            return candidate
    return None


def _where_to_put(ds: Dataset, path: str | os.PathLike | None) -> str:
    if path is not None:
        return f"the explicit path {Path(path)} (or {Path(path) / ds.dirname})"
    places = []
    root = data_dir()
    if root is not None:
        places.append(str(root / ds.dirname))
    else:
        places.append(f"$G2C_DATA_DIR/{ds.dirname} (set G2C_DATA_DIR)")
    places.append(str(dataset_cache_dir(ds.name)))
    return " or ".join(places)


def _missing_error(ds: Dataset, missing: list[str], path, reason: str) -> FileNotFoundError:
    files = ", ".join(missing)
    urls = "; ".join(ds.file(m).url for m in missing[:2]) + (" ..." if len(missing) > 2 else "")
    return FileNotFoundError(
        f"dataset {ds.name!r}: missing file(s) {files} ({reason}). Put them in "
        f"{_where_to_put(ds, path)}; download from {urls} (licence: {ds.license})"
    )


def _mirror_urls(ds: Dataset, f: DatasetFile, mirror: str | None) -> tuple[str, ...]:
    base = mirror if mirror is not None else os.environ.get("G2C_DATA_MIRROR", "").strip()
    own = (f"{base.rstrip('/')}/{ds.dirname}/{f.name}",) if base else ()
    return own + f.urls


def _download_one(
    ds: Dataset,
    f: DatasetFile,
    dest_dir: Path,
    progress_callback: ProgressCallback | None,
    mirror: str | None,
) -> Path:
    """Try each URL in turn; raise the last error when all fail."""
    errors: list[Exception] = []
    for url in _mirror_urls(ds, f, mirror):
        try:
            return download_file(
                url,
                dest_dir / f.name,
                sha256=f.sha256,
                progress_callback=progress_callback,
                decompress=False,
                gzipped=f.compressed,
            )
        except (ValueError, OSError) as exc:  # OSError covers URLError and DownloadError
            errors.append(exc)
    # A checksum mismatch is the more useful message; otherwise the last network error.
    raise next((e for e in errors if isinstance(e, ValueError)), errors[-1])


def download_dataset(
    name: str,
    *,
    dest: str | os.PathLike | None = None,
    force: bool = False,
    mirror: str | None = None,
    progress_callback: ProgressCallback | None = None,
    file_callback: Callable[[DatasetFile], None] | None = None,
) -> Path:
    """Download every file of dataset ``name`` that is not yet in ``dest``. Returns ``dest``.

    ``dest`` defaults to the user cache (``dataset_cache_dir(name)``). ``force`` re-downloads
    files already there. ``mirror`` (or ``$G2C_DATA_MIRROR``) is a base URL tried first as
    ``<mirror>/<dirname>/<file>``. ``file_callback(file)`` is called before each transfer and
    ``progress_callback(bytes_done, bytes_total)`` during it. Errors propagate from
    :func:`~g2c.data.download.download_file` (checksum mismatch → ValueError; network →
    URLError/DownloadError); files already completed stay.
    """
    ds = get_dataset(name)
    dest_dir = Path(dest) if dest is not None else dataset_cache_dir(name)
    for f in ds.files:
        if not force and _find_in(dest_dir, f.name) is not None:
            continue
        if file_callback is not None:
            file_callback(f)
        _download_one(ds, f, dest_dir, progress_callback, mirror)
    return dest_dir


def resolve(
    name: str,
    path: str | os.PathLike | None = None,
    download: bool = True,
    progress_callback: ProgressCallback | None = None,
) -> Path:
    """The directory holding every file of dataset ``name`` (see the module docstring for the order).

    Args:
        name: registry name (``g2c.data.REGISTRY``); unknown → ValueError listing known names.
        path: explicit dataset directory (or a data root containing ``<dirname>/``).
        download: allow downloading missing files into the user cache (``$G2C_OFFLINE=1``
            disables it too).
        progress_callback: ``(bytes_done, bytes_total)`` during each file's download.

    Raises:
        FileNotFoundError: files missing and not downloadable; the message names the missing
            files, where to put them and the upstream URL.
        ValueError: unknown name, or a downloaded file's checksum does not match.
    """
    ds = get_dataset(name)
    dirs = _search_dirs(ds, path)
    for d in dirs:
        if all(_find_in(d, f.name) is not None for f in ds.files):
            return d
    if path is not None:
        missing = [f.name for f in ds.files if _find_in(dirs[0], f.name) is None]
        raise _missing_error(ds, missing, path, "not in the explicit path")
    cache = dataset_cache_dir(name)
    missing = [f.name for f in ds.files if _find_in(cache, f.name) is None]
    if not download or offline():
        raise _missing_error(ds, missing, path, "downloads disabled")
    try:
        download_dataset(name, progress_callback=progress_callback)
    except OSError as exc:  # URLError, DownloadError, timeouts
        still = [f.name for f in ds.files if _find_in(cache, f.name) is None]
        raise _missing_error(ds, still, path, f"download failed: {exc}") from exc
    return cache


def dataset_file(
    name: str,
    filename: str,
    path: str | os.PathLike | None = None,
    download: bool = True,
    progress_callback: ProgressCallback | None = None,
) -> Path:
    """Path of one file of dataset ``name``, found (or downloaded) like :func:`resolve`.

    A registered ``x.gz`` is also found stored uncompressed as ``x``. ``filename`` not in the
    dataset → ValueError listing its files; missing and not downloadable → FileNotFoundError.
    """
    ds = get_dataset(name)
    f = ds.file(filename)
    for d in _search_dirs(ds, path):
        found = _find_in(d, filename)
        if found is not None:
            return found
    if path is not None:
        raise _missing_error(ds, [filename], path, "not in the explicit path")
    if not download or offline():
        raise _missing_error(ds, [filename], path, "downloads disabled")
    try:
        return _download_one(ds, f, dataset_cache_dir(name), progress_callback, None)
    except OSError as exc:  # URLError, DownloadError, timeouts
        raise _missing_error(ds, [filename], path, f"download failed: {exc}") from exc


def locate(name: str, filename: str, path: str | os.PathLike | None = None) -> Path | None:
    """Where ``filename`` of dataset ``name`` is found locally (no download), or None."""
    ds = get_dataset(name)
    for d in _search_dirs(ds, path):
        found = _find_in(d, filename)
        if found is not None:
            return found
    return None


def check(
    name: str | None = None,
    path: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    progress_callback: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Status of each file of one dataset (or of all registered ones when ``name`` is None).

    Returns one dict per file, in registry order, with keys ``dataset``, ``file``, ``path``
    (str or None), ``license``, ``expected`` (sha256 or None), ``actual`` (sha256 or None) and
    ``status``: ``"ok"`` (checksum matches), ``"mismatch"``, ``"missing"``, ``"unverified"``
    (present, registry has no hash) or ``"present"`` (present, ``verify=False``). Hashes are
    of decompressed content. ``progress_callback(files_done, files_total)`` after each file.
    Never downloads.
    """
    names = [name] if name is not None else list(REGISTRY)
    datasets = [get_dataset(n) for n in names]
    total = sum(len(d.files) for d in datasets)
    rows: list[dict] = []
    for ds in datasets:
        for f in ds.files:
            found = locate(ds.name, f.name, path)
            row = {
                "dataset": ds.name,
                "file": f.name,
                "path": str(found) if found is not None else None,
                "license": ds.license,
                "expected": f.sha256,
                "actual": None,
            }
            if found is None:
                row["status"] = "missing"
            elif not verify:
                row["status"] = "present"
            elif f.sha256 is None:
                row["status"] = "unverified"
            else:
                try:
                    row["actual"] = sha256_file(found)
                except (OSError, EOFError) as exc:  # truncated gzip, unreadable file
                    row["actual"] = f"error: {exc}"
                row["status"] = "ok" if row["actual"] == f.sha256 else "mismatch"
            rows.append(row)
            if progress_callback is not None:
                progress_callback(len(rows), total)
    return rows
