"""Tests for g2c.data: registry, resolution, verified downloads, IDX/MNIST, text, token files, cache.

Downloads are tested against a local ``http.server`` on 127.0.0.1; nothing reaches the internet
(every test that could download points ``G2C_DATA_MIRROR`` at the local server or disables
downloads). Real datasets are used when ``$G2C_DATA_DIR`` has them, and skipped otherwise; tiny
in-test files cover the same code paths.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import http.server
import json
import os
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import g2c.data as data
from g2c.data import Dataset, DatasetFile

SHARED = Path(os.environ.get("G2C_DATA_DIR", "/nonexistent"))
BODY = b"hello g2c\n" * 1000  # 10 kB
BODY_SHA = hashlib.sha256(BODY).hexdigest()


# --------------------------------------------------------------------------- local HTTP server
class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[bytes, str]] = {}
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server API)
        self.hits.append(self.path)
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, mode = self.routes[self.path]
        self.send_response(200)
        if mode == "truncated":  # promise more bytes than we send, then close
            self.send_header("Content-Length", str(len(body) * 2))
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if mode == "truncated":
            self.close_connection = True

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server():
    """A ThreadingHTTPServer on 127.0.0.1 (port 0); yields (base_url, routes, hits)."""
    routes: dict[str, tuple[bytes, str]] = {}
    hits: list[str] = []
    handler = type("H", (_Handler,), {"routes": routes, "hits": hits})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes, hits
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty data dir and cache, no mirror, downloads allowed (only to the local server)."""
    monkeypatch.setenv("G2C_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("G2C_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("G2C_DATA_MIRROR", raising=False)
    monkeypatch.delenv("G2C_OFFLINE", raising=False)
    (tmp_path / "data").mkdir()
    return tmp_path


def _toy_dataset(monkeypatch, base_url="http://127.0.0.1:9/unreachable", files=None) -> Dataset:
    """Register a two-file dataset 'toy-test' (one plain, one gzipped) for the duration of a test."""
    files = files or (
        DatasetFile(
            "a.txt", hashlib.sha256(b"first file\n\n").hexdigest(), f"{base_url}/a.txt", text=True
        ),
        DatasetFile(
            "b.txt.gz",
            hashlib.sha256(b"second\n").hexdigest(),
            f"{base_url}/b.txt.gz",
            compressed=True,
            text=True,
        ),
    )
    ds = Dataset(
        "toy-test", files, "CC0", "https://example.invalid", "test dataset", dirname="toy_dir"
    )
    monkeypatch.setitem(data.REGISTRY, ds.name, ds)
    return ds


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --------------------------------------------------------------------------- download_file
def test_download_good_checksum(server, tmp_path):
    base, routes, _ = server
    routes["/f.bin"] = (BODY, "ok")
    seen = []
    dest = data.download_file(
        f"{base}/f.bin",
        tmp_path / "dl" / "f.bin",
        sha256=BODY_SHA,
        progress_callback=lambda d, t: seen.append((d, t)),
    )
    assert dest.read_bytes() == BODY
    assert _leftovers(tmp_path / "dl") == ["f.bin"]  # no temp file left
    assert seen[0] == (0, len(BODY)) and seen[-1] == (len(BODY), len(BODY))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_download_bad_checksum_leaves_nothing(server, tmp_path):
    base, routes, _ = server
    routes["/f.bin"] = (BODY, "ok")
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.download_file(f"{base}/f.bin", tmp_path / "dl" / "f.bin", sha256="0" * 64)
    assert _leftovers(tmp_path / "dl") == []


def test_download_truncated_leaves_nothing(server, tmp_path):
    base, routes, _ = server
    routes["/f.bin"] = (BODY, "truncated")
    with pytest.raises(OSError, match="truncated|closed"):
        data.download_file(f"{base}/f.bin", tmp_path / "dl" / "f.bin", sha256=BODY_SHA)
    assert _leftovers(tmp_path / "dl") == []


def test_failed_download_keeps_previous_file(server, tmp_path):
    base, routes, _ = server
    routes["/f.bin"] = (BODY, "truncated")
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(OSError):
        data.download_file(f"{base}/f.bin", dest)
    assert dest.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["f.bin"]


def test_download_gzip_checksums_decompressed_content(server, tmp_path):
    base, routes, _ = server
    routes["/f.txt.gz"] = (gzip.compress(BODY, mtime=0), "ok")
    kept = data.download_file(f"{base}/f.txt.gz", tmp_path / "f.txt.gz", sha256=BODY_SHA)
    assert gzip.decompress(kept.read_bytes()) == BODY  # stored as transferred
    plain = data.download_file(f"{base}/f.txt.gz", tmp_path / "f.txt", sha256=BODY_SHA)
    assert plain.read_bytes() == BODY  # decompressed on the fly (dest has no .gz)
    gz_sha = hashlib.sha256(routes["/f.txt.gz"][0]).hexdigest()
    with pytest.raises(ValueError, match="checksum"):  # the .gz hash is not the content hash
        data.download_file(f"{base}/f.txt.gz", tmp_path / "g.txt.gz", sha256=gz_sha)
    assert _leftovers(tmp_path) == ["f.txt", "f.txt.gz"]


def test_download_cut_gzip_stream_is_an_error(server, tmp_path):
    base, routes, _ = server
    blob = gzip.compress(os.urandom(5000), mtime=0)
    routes["/cut.gz"] = (blob[: len(blob) // 2], "ok")  # length header matches: only gzip can tell
    with pytest.raises(data.DownloadError, match="gzip stream is truncated"):
        data.download_file(f"{base}/cut.gz", tmp_path / "cut.gz")
    assert _leftovers(tmp_path) == []


def test_download_http_error_and_bad_sha_argument(server, tmp_path):
    base, _, _ = server
    with pytest.raises(urllib.error.HTTPError):
        data.download_file(f"{base}/absent", tmp_path / "x")
    with pytest.raises(ValueError, match="sha256 must be 64 hex"):
        data.download_file(f"{base}/absent", tmp_path / "x", sha256="abc")
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- registry
def test_registry_names_and_records():
    required = {
        "tinyshakespeare": "tinyshakespeare", "gutenberg": "gutenberg", "mnist": "mnist",
        "fashion-mnist": "fashion-mnist", "gsm8k": "gsm8k", "truthfulqa": "evals",
        "openbookqa": "evals", "humaneval": "evals", "self-instruct": "instruct",
        "hh-rlhf": "hh-rlhf", "alpaca-eval": "alpaca_eval", "gpt2-tokenizer": "gpt2_tokenizer",
    }  # fmt: skip
    for name, dirname in required.items():
        ds = data.REGISTRY[name]
        assert ds.dirname == dirname and ds.license and ds.homepage
        for f in ds.files:
            assert f.sha256 is not None and len(f.sha256) == 64 and int(f.sha256, 16) >= 0
            assert f.url.startswith(("https://", "http://"))
            assert f.compressed == f.name.endswith(".gz")
    gut = data.REGISTRY["gutenberg"]
    assert "README" in [f.name for f in gut.files] and "README" not in [
        f.name for f in gut.text_files
    ]
    assert len(gut.text_files) == 13
    with pytest.raises(ValueError, match="known datasets: .*mnist"):
        data.get_dataset("no-such-dataset")
    with pytest.raises(ValueError, match="has no file"):
        gut.file("nope.txt")


@pytest.mark.skipif(
    not (SHARED / "tinyshakespeare").is_dir(), reason="G2C_DATA_DIR has no shared datasets"
)
def test_registry_checksums_match_shared_data(monkeypatch):
    """Every registered file present in the shared data dir verifies (hash of decompressed bytes)."""
    monkeypatch.setenv("G2C_DATA_DIR", str(SHARED))
    rows = [r for r in data.check() if r["path"] is not None and r["path"].startswith(str(SHARED))]
    assert len(rows) >= 30
    bad = [(r["dataset"], r["file"], r["status"]) for r in rows if r["status"] != "ok"]
    assert bad == []


# --------------------------------------------------------------------------- resolution
def _put(directory: Path, ds: Dataset) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "a.txt").write_bytes(b"first file\n\n")
    (directory / "b.txt.gz").write_bytes(gzip.compress(b"second\n", mtime=0))


def test_resolve_order_explicit_then_data_dir_then_cache(isolated, monkeypatch):
    ds = _toy_dataset(monkeypatch)
    monkeypatch.setenv("G2C_OFFLINE", "1")
    cache = data.dataset_cache_dir("toy-test")
    assert cache == isolated / "cache" / "data" / "toy_dir"
    _put(cache, ds)
    assert data.resolve("toy-test") == cache
    _put(isolated / "data" / "toy_dir", ds)
    assert data.resolve("toy-test") == isolated / "data" / "toy_dir"  # G2C_DATA_DIR wins
    explicit = isolated / "mine"
    _put(explicit, ds)
    assert data.resolve("toy-test", path=explicit) == explicit
    assert (
        data.resolve("toy-test", path=isolated / "data") == isolated / "data" / "toy_dir"
    )  # a root
    assert data.dataset_file("toy-test", "b.txt.gz", path=explicit) == explicit / "b.txt.gz"
    with pytest.raises(FileNotFoundError, match="explicit path"):
        data.resolve("toy-test", path=isolated / "empty")


def test_resolve_missing_offline_names_file_and_place(isolated, monkeypatch):
    _toy_dataset(monkeypatch)
    with pytest.raises(FileNotFoundError) as err:
        data.resolve("toy-test", download=False)
    msg = str(err.value)
    assert "a.txt" in msg and "b.txt.gz" in msg
    assert (
        str(isolated / "data" / "toy_dir") in msg
        and str(isolated / "cache" / "data" / "toy_dir") in msg
    )
    monkeypatch.setenv("G2C_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="downloads disabled"):
        data.dataset_file("toy-test", "a.txt")
    with pytest.raises(ValueError, match="known datasets"):
        data.resolve("nope")


def test_resolve_downloads_into_cache_once(server, isolated, monkeypatch):
    base, routes, hits = server
    _toy_dataset(monkeypatch)  # registry URLs are unreachable; the mirror serves the files
    routes["/toy_dir/a.txt"] = (b"first file\n\n", "ok")
    routes["/toy_dir/b.txt.gz"] = (gzip.compress(b"second\n"), "ok")
    monkeypatch.setenv("G2C_DATA_MIRROR", base)
    got = data.resolve("toy-test")
    assert got == isolated / "cache" / "data" / "toy_dir"
    assert _leftovers(got) == ["a.txt", "b.txt.gz"]
    n = len(hits)
    assert data.resolve("toy-test") == got and len(hits) == n  # cached: no new request
    assert data.load_text("toy-test") == "first file\n\nsecond\n"


def test_resolve_bad_mirror_content_is_checksum_error(server, isolated, monkeypatch):
    base, routes, _ = server
    _toy_dataset(monkeypatch)
    routes["/toy_dir/a.txt"] = (b"tampered\n", "ok")
    routes["/toy_dir/b.txt.gz"] = (gzip.compress(b"second\n"), "ok")
    monkeypatch.setenv("G2C_DATA_MIRROR", base)
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.resolve("toy-test")
    assert "a.txt" not in _leftovers(isolated / "cache" / "data" / "toy_dir")


def test_resolve_truncated_download_becomes_file_not_found(server, isolated, monkeypatch):
    base, routes, _ = server
    _toy_dataset(monkeypatch)
    routes["/toy_dir/a.txt"] = (b"first file\n\n", "truncated")
    monkeypatch.setenv("G2C_DATA_MIRROR", base)
    with pytest.raises(FileNotFoundError, match="download failed"):
        data.dataset_file("toy-test", "a.txt")
    assert _leftovers(isolated / "cache" / "data" / "toy_dir") == []


def test_check_statuses(isolated, monkeypatch):
    ds = _toy_dataset(monkeypatch)
    rows = data.check("toy-test")
    assert [r["status"] for r in rows] == ["missing", "missing"]
    _put(isolated / "data" / "toy_dir", ds)
    assert [r["status"] for r in data.check("toy-test")] == ["ok", "ok"]
    (isolated / "data" / "toy_dir" / "a.txt").write_bytes(b"changed")
    rows = data.check("toy-test")
    assert [r["status"] for r in rows] == ["mismatch", "ok"]
    assert rows[0]["actual"] == hashlib.sha256(b"changed").hexdigest()
    assert [r["status"] for r in data.check("toy-test", verify=False)] == ["present", "present"]


# --------------------------------------------------------------------------- IDX / MNIST
def _tiny_mnist(
    directory: Path, n: int = 5, compress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    suffix = ".gz" if compress else ""
    data.write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", images, compress=compress)
    data.write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", labels, compress=compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_tiny_idx(tmp_path, compress):
    images, labels = _tiny_mnist(tmp_path, compress=compress)
    x, y = data.load_mnist("test", path=tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (5, 28, 28) and y.shape == (5,)
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)
    raw = (tmp_path / f"t10k-images-idx3-ubyte{'.gz' if compress else ''}").read_bytes()
    header = gzip.decompress(raw)[:16] if compress else raw[:16]
    assert (
        header == bytes([0, 0, 8, 3]) + np.array([5, 28, 28], ">u4").tobytes()
    )  # MNIST magic 2051


def test_read_idx_other_dtypes(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    data.write_idx(tmp_path / "a.idx", a)
    assert np.array_equal(data.read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(-1, 1, 7).astype(np.float32)
    data.write_idx(tmp_path / "f.idx.gz", f, compress=True)
    assert np.array_equal(data.read_idx(tmp_path / "f.idx.gz"), f)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x08\x03" + bytes(12))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*not an IDX"):
        data.read_idx(bad)
    data.write_idx(bad, np.zeros((2, 28, 28), np.uint8))
    bad.write_bytes(bad.read_bytes()[:-1])  # one byte short
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: IDX data has"):
        data.read_idx(bad)
    data.write_idx(bad, np.zeros((2, 28, 27), np.uint8))
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(
        ValueError, match=r"images-idx3-ubyte: expected uint8 images of shape \(N, 28, 28\)"
    ):
        data.load_mnist("test", path=tmp_path)
    data.write_idx(bad, np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        data.load_mnist("test", path=tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_mnist("validation", path=tmp_path)
    (tmp_path / "t.gz").write_bytes(gzip.compress(bytes(100))[:20])
    with pytest.raises(ValueError, match="t.gz: corrupt or truncated gzip"):
        data.read_idx(tmp_path / "t.gz")


def test_load_mnist_missing_offline(isolated, monkeypatch):
    monkeypatch.setenv("G2C_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz.*mnist"):
        data.load_mnist("test")


@pytest.mark.skipif(
    not (SHARED / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="MNIST not in G2C_DATA_DIR",
)
def test_load_mnist_real_test_split():
    x, y = data.load_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.uint8
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # canonical first test labels
    assert torch.bincount(y.long()).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert int(x.max()) == 255 and int(x.min()) == 0


@pytest.mark.skipif(
    data.locate("fashion-mnist", "t10k-labels-idx1-ubyte.gz") is None,
    reason="Fashion-MNIST not found (apt-get install dataset-fashion-mnist, or put it in G2C_DATA_DIR)",
)
def test_load_fashion_mnist_real_test_split():
    x, y = data.load_fashion_mnist("test", download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y.long()).tolist() == [1000] * 10
    assert len(data.FASHION_MNIST_CLASSES) == 10


# --------------------------------------------------------------------------- text
def test_load_text_joins_with_one_blank_line(isolated, monkeypatch):
    ds = _toy_dataset(monkeypatch)
    _put(isolated / "data" / "toy_dir", ds)
    assert data.load_text("toy-test") == "first file\n\nsecond\n"
    (isolated / "data" / "toy_dir" / "a.txt").write_bytes(b"dos\r\nline")
    assert data.load_text("toy-test") == "dos\nline\n\nsecond\n"
    with pytest.raises(ValueError, match="has no text files; text datasets are: .*tinyshakespeare"):
        data.load_text("mnist")
    with pytest.raises(ValueError, match="at least one"):
        data.load_corpus([])


@pytest.mark.skipif(not (SHARED / "gutenberg").is_dir(), reason="text corpora not in G2C_DATA_DIR")
def test_load_real_corpus():
    shakespeare = data.load_text("tinyshakespeare")
    assert len(shakespeare) == 1115394 and shakespeare.startswith("First Citizen:")
    gutenberg = data.load_text("gutenberg")
    assert gutenberg.startswith("[Emma by Jane Austen 1816]") and "\r" not in gutenberg
    assert "Project Gutenberg Selections" not in gutenberg  # README is not part of the text
    assert "Cæsar" in gutenberg or "C\u00e6sar" in gutenberg  # Latin-1 decoded
    corpus = data.load_corpus()
    assert corpus == shakespeare.rstrip("\n") + "\n\n" + gutenberg


def test_split_text_contiguous():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    train, val = data.split_text(text, val_fraction=0.1)
    assert train + val == text and len(train) == 900 and len(val) == 100
    for bad in (0.0, 1.0, -0.5, 2):
        with pytest.raises(ValueError, match="between 0 and 1"):
            data.split_text(text, bad)
    with pytest.raises(ValueError, match="empty"):
        data.split_text("a", 0.5)
    with pytest.raises(TypeError):
        data.split_text(b"bytes")


# --------------------------------------------------------------------------- token files
def test_token_ids_roundtrip_dtype_choice(tmp_path):
    small = torch.tensor([0, 5, 65535, 17])
    p = data.save_token_ids(tmp_path / "small.bin", small)
    assert p.stat().st_size == 8  # 4 ids x 2 bytes
    assert json.loads((tmp_path / "small.bin.json").read_text())["dtype"] == "uint16"
    assert torch.equal(data.load_token_ids(p), small) and data.load_token_ids(p).dtype == torch.long
    big = [1, 65536, 2**32 - 1]
    p = data.save_token_ids(tmp_path / "big.bin", big)
    assert p.stat().st_size == 12
    assert np.array_equal(np.fromfile(p, dtype="<u4"), big)  # raw little-endian, no header
    assert data.load_token_ids(p).tolist() == big
    assert data.load_token_ids(data.save_token_ids(tmp_path / "empty.bin", [])).numel() == 0


def test_token_ids_errors(tmp_path):
    with pytest.raises(ValueError, match=">= 0"):
        data.save_token_ids(tmp_path / "x.bin", [1, -2])
    with pytest.raises(ValueError, match="1-D"):
        data.save_token_ids(tmp_path / "x.bin", [[1, 2]])
    with pytest.raises(TypeError, match="integer"):
        data.save_token_ids(tmp_path / "x.bin", torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        data.save_token_ids(tmp_path / "x.bin", [2**32])
    assert not (tmp_path / "x.bin").exists()
    raw = tmp_path / "raw.bin"
    np.array([3, 1, 2], dtype="<u2").tofile(raw)
    with pytest.raises(ValueError, match="pass dtype"):
        data.load_token_ids(raw)
    assert data.load_token_ids(raw, dtype="uint16").tolist() == [3, 1, 2]
    p = data.save_token_ids(tmp_path / "t.bin", [1, 2, 3])
    with pytest.raises(ValueError, match="disagrees"):
        data.load_token_ids(p, dtype="uint32")
    p.write_bytes(p.read_bytes()[:4])  # an interrupted write
    with pytest.raises(ValueError, match="sidecar says 3"):
        data.load_token_ids(p)
    with pytest.raises(FileNotFoundError):
        data.load_token_ids(tmp_path / "absent.bin")


# --------------------------------------------------------------------------- corpus cache
class ByteTokenizer:
    """Test fixture: ids are UTF-8 bytes plus an offset; counts encode calls."""

    def __init__(self, offset: int = 0):
        self.offset = offset
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        return [b + self.offset for b in text.encode("utf-8")]

    def to_dict(self) -> dict:
        return {"format": "bytes", "offset": self.offset}


def test_encode_corpus_cached_hits_and_invalidates(tmp_path):
    text = "to be, or not to be\n" * 50
    tok = ByteTokenizer()
    events = []
    ids = data.encode_corpus_cached(
        text, tok, cache_dir=tmp_path, on_event=lambda e, p: events.append(e)
    )
    assert ids.dtype == torch.long and ids.tolist() == list(text.encode())
    again = data.encode_corpus_cached(
        text, tok, cache_dir=tmp_path, on_event=lambda e, p: events.append(e)
    )
    assert torch.equal(ids, again) and tok.calls == 1 and events == ["encoded", "hit"]
    bins = sorted(p.name for p in tmp_path.glob("*.bin"))
    assert len(bins) == 1 and bins[0].startswith("text-")
    manifest = json.loads((tmp_path / (bins[0] + ".json")).read_text())
    assert manifest["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert manifest["tokenizer_fingerprint"] == data.tokenizer_fingerprint(tok)
    assert (
        manifest["tokenizer_fingerprint"]
        == hashlib.sha256(json.dumps(tok.to_dict(), sort_keys=True).encode()).hexdigest()
    )
    assert manifest["count"] == len(text) and manifest["dtype"] == "uint16"
    # Another tokenizer (different to_dict) → different file and fresh encoding.
    other = ByteTokenizer(offset=70000)
    ids2 = data.encode_corpus_cached(text, other, cache_dir=tmp_path)
    assert other.calls == 1 and int(ids2.min()) >= 70000 and len(list(tmp_path.glob("*.bin"))) == 2
    # A damaged cache file is detected and rewritten.
    path = tmp_path / bins[0]
    path.write_bytes(path.read_bytes()[:10])
    assert (
        torch.equal(data.encode_corpus_cached(text, tok, cache_dir=tmp_path), ids)
        and tok.calls == 2
    )


def test_encode_corpus_cached_splits_and_names(isolated, monkeypatch):
    ds = _toy_dataset(monkeypatch)
    _put(isolated / "data" / "toy_dir", ds)
    tok = ByteTokenizer()
    full = data.encode_corpus_cached("toy-test", tok)  # a registry name, default cache dir
    assert bytes(full.tolist()).decode() == data.load_text("toy-test")
    assert list((isolated / "cache" / "tokens").glob("toy-test-*.bin"))
    train = data.encode_corpus_cached(["toy-test"], tok, split="train", val_fraction=0.25)
    val = data.encode_corpus_cached(["toy-test"], tok, split="val", val_fraction=0.25)
    assert torch.equal(torch.cat([train, val]), full)
    t, v = data.split_text(data.load_text("toy-test"), 0.25)
    assert len(train) == len(t.encode()) and len(val) == len(v.encode())
    # The text changes → the cache entry is stale and re-encoded.
    (isolated / "data" / "toy_dir" / "a.txt").write_bytes(b"new words\n")
    calls = tok.calls
    assert (
        bytes(data.encode_corpus_cached("toy-test", tok).tolist()).decode().startswith("new words")
    )
    assert tok.calls == calls + 1
    with pytest.raises(ValueError, match="split must be"):
        data.encode_corpus_cached("toy-test", tok, split="test")
    with pytest.raises(TypeError, match="to_dict"):
        data.encode_corpus_cached("abc", object())


# --------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    from g2c.cli import main

    return main(argv)


def test_cli_list_and_check(isolated, monkeypatch, capsys):
    ds = _toy_dataset(monkeypatch)
    assert _cli(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "tinyshakespeare" in out and "toy-test" in out and "0/2" in out
    assert _cli(["data", "check", "toy-test"]) != 0  # missing files for a named dataset
    _put(isolated / "data" / "toy_dir", ds)
    assert _cli(["data", "check", "toy-test"]) == 0
    assert "ok" in capsys.readouterr().out
    (isolated / "data" / "toy_dir" / "a.txt").write_bytes(b"changed")
    assert _cli(["data", "check", "toy-test"]) == 1
    assert "mismatch" in capsys.readouterr().out
    assert _cli(["data", "check", "--json", "toy-test"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["mismatch", "ok"]
    assert _cli(["data", "check", "no-such"]) == 2


def test_cli_download_from_local_mirror(server, isolated, monkeypatch, capsys):
    base, routes, _ = server
    _toy_dataset(monkeypatch)
    routes["/toy_dir/a.txt"] = (b"first file\n\n", "ok")
    routes["/toy_dir/b.txt.gz"] = (gzip.compress(b"second\n"), "ok")
    assert _cli(["data", "download", "toy-test", "--mirror", base]) == 0
    assert _leftovers(isolated / "cache" / "data" / "toy_dir") == ["a.txt", "b.txt.gz"]
    routes["/toy_dir/a.txt"] = (b"evil\n", "ok")
    assert _cli(["data", "download", "toy-test", "--mirror", base, "--force"]) != 0
    assert (isolated / "cache" / "data" / "toy_dir" / "a.txt").read_bytes() == b"first file\n\n"


def test_base_package_imports_nothing_else_of_g2c():
    """g2c.data is a base package: stdlib, NumPy, torch and g2c.artifacts only (no rich)."""
    import subprocess
    import sys

    code = (
        "import sys, g2c.data; "
        "print(sorted(m for m in sys.modules if m.startswith(('g2c', 'rich'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = ast.literal_eval(out)  # a printed list of module names
    assert all(m == "g2c" or m.startswith(("g2c.data", "g2c.artifacts")) for m in loaded), loaded
