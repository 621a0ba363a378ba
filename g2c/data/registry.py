"""The dataset registry: every dataset g2c knows, by name, with its files, checksums and licence.

A :class:`Dataset` is a directory of :class:`DatasetFile` records. Each file carries the
SHA-256 of its *decompressed* content (for ``.gz`` files: the hash of the gunzipped bytes), so
a file re-compressed by a mirror (different gzip header, same data) still verifies; the size
in bytes is the decompressed size too. Checksums were computed from the copies under
``/work/shared/data`` whose provenance (repository and commit) is recorded in its SOURCES.md.

URLs point at the public upstream copies, pinned to a commit where the upstream is a git
repository, so the bytes a user downloads are the bytes we hashed. They are only contacted
when a file is found nowhere locally (see :mod:`g2c.data.resolution`).

To add a dataset: append a :class:`Dataset` to ``_DATASETS`` with the file names as they are
stored, ``sha256`` of the decompressed content (``gunzip -c f.gz | sha256sum``), the upstream
URL, the licence and a homepage; ``g2c data check NAME`` then verifies a local copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset.

    Fields:
        name: file name as stored in the dataset directory (e.g. ``"t10k-images-idx3-ubyte.gz"``).
        sha256: hex SHA-256 of the decompressed content (of the file itself when not compressed);
            ``None`` means "not verifiable" (``check`` reports it as ``unverified``).
        url: canonical download URL (upstream, pinned to a commit where possible).
        compressed: True when the stored file is gzip; ``sha256`` and ``size`` then describe the
            gunzipped bytes.
        size: decompressed size in bytes, or None when unknown.
        text: True for files that belong to the dataset's text (what ``load_text`` concatenates).
        encoding: character encoding used when the file is read as text.
        mirrors: further URLs tried in order when ``url`` fails or serves other bytes.
    """

    name: str
    sha256: str | None
    url: str
    compressed: bool = False
    size: int | None = None
    text: bool = False
    encoding: str = "utf-8"
    mirrors: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """``url`` followed by the mirrors, in the order a download tries them."""
        return (self.url, *self.mirrors)


@dataclass(frozen=True)
class Dataset:
    """A named dataset: its files, licence and provenance.

    Fields:
        name: registry name (``g2c data check NAME``).
        files: the files, in a fixed order (``load_text`` concatenates text files in this order).
        license: licence as stated by the origin.
        homepage: where the dataset is described (paper, project page or repository).
        description: one line for ``g2c data list``.
        dirname: directory name under ``$G2C_DATA_DIR`` and the cache (defaults to ``name``).
        search_dirs: extra directories searched after ``$G2C_DATA_DIR`` (system packages such as
            Debian's ``dataset-fashion-mnist``).
    """

    name: str
    files: tuple[DatasetFile, ...]
    license: str
    homepage: str
    description: str
    dirname: str = ""
    search_dirs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.dirname:
            object.__setattr__(self, "dirname", self.name)

    @property
    def source(self) -> str:
        """Alias of ``homepage`` (where the data comes from)."""
        return self.homepage

    @property
    def text_files(self) -> tuple[DatasetFile, ...]:
        """The files that make up the dataset's text, in registry order (may be empty)."""
        return tuple(f for f in self.files if f.text)

    def file(self, filename: str) -> DatasetFile:
        """The record named ``filename``; unknown name → ValueError listing this dataset's files."""
        for f in self.files:
            if f.name == filename:
                return f
        names = ", ".join(f.name for f in self.files)
        raise ValueError(f"dataset {self.name!r} has no file {filename!r}; its files are: {names}")


# --------------------------------------------------------------------------- upstream URLs
_CHAR_RNN = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare"
_NLTK_GUTENBERG = (
    "https://raw.githubusercontent.com/nltk/nltk/4dc39fbf6965509f7b74316eff239bd110a03b49/"
    "nltk_data/corpora/gutenberg"
)
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist"
_MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist",
    "http://yann.lecun.com/exdb/mnist",
)
_FASHION = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion"
_FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
_GSM8K = (
    "https://raw.githubusercontent.com/openai/grade-school-math/"
    "3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data"
)
_TQA_COPY = (
    "https://raw.githubusercontent.com/benedictflorance/truthfulqa_experiments/"
    "6fdfd38288e86296582a584694df5cf43d1f634a/datasets"
)
_HUMANEVAL = (
    "https://raw.githubusercontent.com/openai/human-eval/"
    "6d43fb980f9fee3c892a914eda09951f772ad10d/data"
)
_SELF_INSTRUCT = "https://raw.githubusercontent.com/yizhongw/self-instruct/0b26ccaa415992100fa32df62d41b994cf928e23"
_ALPACA = "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/761dc5bfbdeeffa89b8bff5d038781a4055f796a"
_HH = (
    "https://raw.githubusercontent.com/anthropics/hh-rlhf/354e5c3cb8960630860dd5774a6ac2a58313bf4d"
)
_ALPACA_EVAL = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20/results"
_CS336 = (
    "https://raw.githubusercontent.com/stanford-cs336/assignment1-basics/"
    "25a8a49f6460c83a30416d42348f2ef11d1dd185/tests/fixtures"
)


def _idx_files(
    base: str, mirrors: tuple[str, ...], hashes: dict[str, tuple[str, int]]
) -> tuple[DatasetFile, ...]:
    """MNIST-style file records: same names under every mirror."""
    return tuple(
        DatasetFile(
            name,
            sha,
            f"{base}/{name}",
            compressed=True,
            size=size,
            mirrors=tuple(f"{m}/{name}" for m in mirrors),
        )
        for name, (sha, size) in hashes.items()
    )


# Gutenberg (NLTK selection, 2008): 13 books + the corpus README (not text).
# bible-kjv.txt belongs to the NLTK selection but is not registered: no verified copy (> 4 MiB).
_GUTENBERG_BOOKS: dict[str, tuple[str, int]] = {
    "austen-emma.txt": ("71b0923d75fcf2f1faa897b22da8de8e2476d7478a2b22388eb58a3420e00215", 887071),
    "austen-persuasion.txt": (
        "cec097657cbfeb62aafe178973f514fa07ab66a5e28ea025ebd5d51ca870e40f",
        466292,
    ),
    "austen-sense.txt": (
        "57b169c7cfa502896dee25bd66616f61cc1d21084caf31f015176ee46fda9718",
        673022,
    ),
    "blake-poems.txt": ("840897a66e23a47dd1fd56b864f421b2be0af074dc081244f7995bf26939eee9", 38153),
    "chesterton-ball.txt": (
        "c6b6d4e8c09a3f49a09f37f4e47663d4d6f048b62d86c70ccafdfd8f27059a58",
        457450,
    ),
    "chesterton-brown.txt": (
        "67027976205b4b30e367c704807f56c8ffac3e8ea6037d993e57ab1fe28447ec",
        406629,
    ),
    "chesterton-thursday.txt": (
        "8b431a2a8db84089cd6f83fa66610c3b12c04114609df6e90137c0c58f2c5493",
        320525,
    ),
    "melville-moby_dick.txt": (
        "dc2466ee3c2e6e2ea1f86233d142e4b5578fdc1d6f0ca657bee7572202a980c7",
        1242990,
    ),
    "milton-paradise.txt": (
        "49028a77c557de1459e96c026edbe72997be2d9015925f7baefb793cd6fe706f",
        468220,
    ),
    "shakespeare-caesar.txt": (
        "7c46bd32fc84d9596bcad55b61ec3c1a390239acb190b286422855aafc2774b3",
        112310,
    ),
    "shakespeare-hamlet.txt": (
        "1eceab7027ad7e0cc25c6b6aadcb2e6bb070395cb2085f775ac732d63d5db240",
        162881,
    ),
    "shakespeare-macbeth.txt": (
        "d4a204352cfe5924cbae76f764225d120e9f7617d39cb8c949dedd3f306353ac",
        100351,
    ),
    "whitman-leaves.txt": (
        "93ebaf1dccc8f1514b4b1c2f52e64e81829113fc58cff63fb51ada0c72f99c3e",
        711215,
    ),
}

_DATASETS: tuple[Dataset, ...] = (
    Dataset(
        name="tinyshakespeare",
        files=(
            DatasetFile(
                "input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                f"{_CHAR_RNN}/input.txt",
                size=1115394,
                text=True,
            ),
        ),
        license="public domain text (Shakespeare); char-rnn repository MIT",
        homepage="https://github.com/karpathy/char-rnn",
        description="40,000 lines of Shakespeare plays (1.1 MB), Karpathy's char-rnn corpus",
    ),
    Dataset(
        name="gutenberg",
        files=(
            DatasetFile(
                "README",
                "791b8a01e866fb107e045c712e8421fc752b672218886c2b5ce71601db1e56ae",
                f"{_NLTK_GUTENBERG}/README",
                size=9275,
            ),
            *(
                # The etexts are Latin-1 (two contain é/æ bytes); ASCII for the rest.
                DatasetFile(
                    name, sha, f"{_NLTK_GUTENBERG}/{name}", size=size, text=True, encoding="latin-1"
                )
                for name, (sha, size) in _GUTENBERG_BOOKS.items()
            ),
        ),
        license="public domain (Project Gutenberg etexts)",
        homepage="https://www.nltk.org/nltk_data/ (corpus 'gutenberg')",
        description="13 Project Gutenberg books, NLTK selection (6.0 MB); README is not text",
    ),
    Dataset(
        name="mnist",
        files=_idx_files(
            _MNIST,
            _MNIST_MIRRORS,
            {
                "train-images-idx3-ubyte.gz": (
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    47040016,
                ),
                "train-labels-idx1-ubyte.gz": (
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    60008,
                ),
                "t10k-images-idx3-ubyte.gz": (
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    7840016,
                ),
                "t10k-labels-idx1-ubyte.gz": (
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                    10008,
                ),
            },
        ),
        license="CC BY-SA 3.0 (as commonly cited; LeCun, Cortes, Burges)",
        homepage="http://yann.lecun.com/exdb/mnist/",
        description="handwritten digits, 60k train + 10k test, 28x28 uint8 (IDX)",
    ),
    Dataset(
        name="fashion-mnist",
        files=_idx_files(
            _FASHION,
            (_FASHION_MIRROR,),
            {
                "train-images-idx3-ubyte.gz": (
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    47040016,
                ),
                "train-labels-idx1-ubyte.gz": (
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    60008,
                ),
                "t10k-images-idx3-ubyte.gz": (
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    7840016,
                ),
                "t10k-labels-idx1-ubyte.gz": (
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                    10008,
                ),
            },
        ),
        license="MIT (Zalando Research)",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        description="Zalando article images, 10 classes, 60k train + 10k test, 28x28 uint8 (IDX)",
        search_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
    Dataset(
        name="gsm8k",
        files=(
            DatasetFile(
                "train.jsonl",
                "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
                f"{_GSM8K}/train.jsonl",
                size=4166206,
            ),
            DatasetFile(
                "test.jsonl",
                "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
                f"{_GSM8K}/test.jsonl",
                size=749738,
            ),
        ),
        license="MIT",
        homepage="https://github.com/openai/grade-school-math",
        description="grade-school math word problems, 7,473 train + 1,319 test (JSONL)",
    ),
    Dataset(
        name="truthfulqa",
        dirname="evals",
        files=(
            DatasetFile(
                "TruthfulQA.csv",
                "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697",
                f"{_TQA_COPY}/TruthfulQA.csv",
                size=443719,
            ),
        ),
        license="Apache-2.0",
        homepage="https://github.com/sylinrl/TruthfulQA",
        description="817 questions that some humans answer falsely (CSV, 2021 release)",
    ),
    Dataset(
        name="openbookqa",
        dirname="evals",
        files=(
            DatasetFile(
                "openbookqa.jsonl",
                "feb2bd9bfa6161dca4c44ce90e51e8cdada83eb5061407fcdc5005e44aaf2313",
                f"{_TQA_COPY}/openbookqa.jsonl",
                size=153259,
            ),
        ),
        license="Apache-2.0 (AllenAI)",
        homepage="https://allenai.org/data/open-book-qa",
        description="OpenBookQA test set, 500 four-choice science questions (JSONL)",
    ),
    Dataset(
        name="humaneval",
        dirname="evals",
        files=(
            DatasetFile(
                "HumanEval.jsonl.gz",
                "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2",
                f"{_HUMANEVAL}/HumanEval.jsonl.gz",
                compressed=True,
                size=214438,
            ),
        ),
        license="MIT",
        homepage="https://github.com/openai/human-eval",
        description="164 Python programming problems with unit tests (JSONL, gzipped)",
    ),
    Dataset(
        name="self-instruct",
        dirname="instruct",
        files=(
            DatasetFile(
                "self_instruct_seed_tasks_175.jsonl",
                "7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48",
                f"{_ALPACA}/seed_tasks.jsonl",
                size=110934,
                mirrors=(f"{_SELF_INSTRUCT}/data/seed_tasks.jsonl",),
            ),
            DatasetFile(
                "self_instruct_user_oriented_252.jsonl",
                "81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e",
                f"{_SELF_INSTRUCT}/human_eval/user_oriented_instructions.jsonl",
                size=170193,
            ),
        ),
        license="Apache-2.0",
        homepage="https://github.com/yizhongw/self-instruct",
        description="175 seed tasks + 252 user-oriented instructions (JSONL)",
    ),
    Dataset(
        name="hh-rlhf",
        files=(
            DatasetFile(
                "harmless-base-test.jsonl.gz",
                "14d765196c9f18d84f9bb3a78bac608c8f2915110ebcbd74ec95db7b7198b008",
                f"{_HH}/harmless-base/test.jsonl.gz",
                compressed=True,
                size=3280164,
            ),
        ),
        license="MIT (content warning: offensive text by design)",
        homepage="https://github.com/anthropics/hh-rlhf",
        description="Anthropic HH harmless-base test: 2,312 chosen/rejected pairs (JSONL, gzipped)",
    ),
    Dataset(
        name="alpaca-eval",
        dirname="alpaca_eval",
        files=(
            DatasetFile(
                "gpt4_model_outputs.json",
                "9c5149c146fadc99285f23abbaec2a62ba94ffa35c1dddacb70686571d9d780e",
                f"{_ALPACA_EVAL}/gpt4/model_outputs.json",
                size=1329994,
            ),
            DatasetFile(
                "gpt4_1106_vs_davinci003_annotations.json",
                "ee0f02243b76628d54ac64bd5310183874ca7c72548d5381bf2b35018ad58027",
                f"{_ALPACA_EVAL}/text_davinci_003/weighted_alpaca_eval_gpt4_turbo/annotations.json",
                size=3513915,
            ),
        ),
        license="CC BY-NC 4.0 (data); outputs generated by OpenAI models",
        homepage="https://github.com/tatsu-lab/alpaca_eval",
        description="805 AlpacaEval instructions with GPT-4 outputs and judge preferences (JSON)",
    ),
    Dataset(
        name="gpt2-tokenizer",
        dirname="gpt2_tokenizer",
        files=tuple(
            DatasetFile(name, sha, f"{_CS336}/{name}", size=size)
            for name, sha, size in (
                (
                    "gpt2_vocab.json",
                    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
                    1042301,
                ),
                (
                    "gpt2_merges.txt",
                    "ac33235097fe06d4a8fff0feac994644809e6eb6ab70669e1e9fd40ae032428e",
                    456304,
                ),
                (
                    "corpus.en",
                    "617f603a49eeb8a20de9d922d11a5d70e1d362327b9e91718bea2cdcdf9816ff",
                    133027,
                ),
                (
                    "train-bpe-reference-merges.txt",
                    "f74582742501ca5edd5be2b66adb83d7ae2b8d6363fd276771792e70de1428ed",
                    1271,
                ),
                (
                    "train-bpe-reference-vocab.json",
                    "e28bfb2a4fa95ec786faf462cb0d504bc15773360f4891bdf262be171ab86c18",
                    7610,
                ),
                (
                    "tinystories_sample.txt",
                    "defaedb58bf28079f3e29c6142cb7f3568d331a577e0911c5d7925c465c50c43",
                    3794,
                ),
            )
        ),
        license="MIT (GPT-2 vocabulary/merges by OpenAI; CS336 test fixtures)",
        homepage="https://github.com/stanford-cs336/assignment1-basics",
        description="GPT-2 byte-level BPE vocab (50,257) + merges, and BPE-trainer reference fixtures",
    ),
)

REGISTRY: dict[str, Dataset] = {d.name: d for d in _DATASETS}
"""Registry name → :class:`Dataset`. Add entries here (see the module docstring)."""


def get_dataset(name: str) -> Dataset:
    """The registered dataset ``name``; unknown name → ValueError listing the known names."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a dataset name (str), got {type(name).__name__}")
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}") from None
