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

# Evaluation sets (shared/data SOURCES.md, "Evaluation sets"): origin repositories pinned to the
# commits the copies were taken from.
_ARC = (
    "https://raw.githubusercontent.com/zhaoxlpku/HKU-DASC7606-A2/"
    "fcca017f3468a25901ad298913e976c42ad9165e/data"
)
_MMLU = (
    "https://raw.githubusercontent.com/HaeChan0305/MLILAB-FedLLM/"
    "d92730e8bacd7b3a61e551e015e40588e10234b4/data/mmlu"
)
_HELLASWAG = (
    "https://raw.githubusercontent.com/klosax/hellaswag_text_data/"
    "1105d370f8340eac3c63a91fd1fa58e8999f9505"
)
_PIQA = (
    "https://raw.githubusercontent.com/declare-lab/TEAM/"
    "e43753fde8e53e498cf3056b85ae2f306902121f/data/piqa"
)
# OpenBookQA's additional files are members of the official zip; the byte-identical files are
# Git-LFS objects in genggui001/opencompass (same sha256 as the LFS oids).
_OBQA_LFS = (
    "https://media.githubusercontent.com/media/genggui001/opencompass/"
    "5649a0f7e3d246ed58ffaef865f8b818cd8e0044/data/openbookqa"
)

# SciFact in BEIR's layout. corpus.jsonl is byte-identical to BEIR's (its sha256 equals the
# Git-LFS oid that moorateeahtashil/Information-Retrieval records); queries.jsonl likewise.
_SCIFACT_IR = (
    "https://media.githubusercontent.com/media/moorateeahtashil/Information-Retrieval/"
    "00b74e83a48f52e6588946861a3bd6cfe9f7fede/scifact"
)
_SCIFACT_QRELS = (
    "https://raw.githubusercontent.com/moorateeahtashil/Information-Retrieval/"
    "00b74e83a48f52e6588946861a3bd6cfe9f7fede/scifact/qrels"
)

_MMLU_SUBJECTS: dict[str, tuple[str, str]] = {  # subject → (test sha256, dev sha256)
    "abstract_algebra": (
        "afdfc6f71eb42297a51f53bd221429671a4065a6425bd7631acb84fef011bfd4",
        "f5bc2f1c0e4098ddba357af2b02919269b1a0bbab9e7c11b31c1c20da36a3263",
    ),
    "anatomy": (
        "b27ce42f40482ba735cf0de8e8bbba3382d506c099d8483c55e9cacdac4e3eec",
        "44f3842ff1451edabb6356feb452e7fa36fa60f71b857e1a768b4833f23c167c",
    ),
    "astronomy": (
        "1008ecdf7f88a336001b04f739f3fcfff72b3e15fb746880ace2d05f0002c957",
        "0a6f1573c324bcef3684933833f273b12f1b22c7a05eefc3bb5b2e38d8eaa034",
    ),
    "business_ethics": (
        "7ce6063b0ed2ba08ac51cc94be1708ce91aeecd17f71cabbb2f86b4e80f3876a",
        "27987aed70d9550924d6af037c38597bfd67a4fe9513814cac0d052ab9a8e048",
    ),
    "clinical_knowledge": (
        "9ba57061f15ae7263a12eeb413b73d876038e0ce21734ffce411e1ae22662737",
        "f2fb6824881a33ebaafe79d4c0ce6a930807d8eafe4cb2beb44132af55e2e1ea",
    ),
    "college_biology": (
        "872bae5fe76cecb083603a7ba95adc436a8e345f50c5ee232cc8bfa9f9f56713",
        "450fe9d4b89b9e8909c45276e284f8ebaa6ec158046d1e0e0ad60585a6231bd5",
    ),
    "college_chemistry": (
        "6335fe0f7da7a3ec76a9067869445253111080261df1c560a2527df01f34ae67",
        "94d6391dc090c327add1fb351de67876be8a530ae0b53b019233a5992940e5f5",
    ),
    "college_computer_science": (
        "f06e071452389e4a9f0aa7c5bc07401b282ffd659f9ec08c2d301b1fca471024",
        "3c5cf94f26d6bfa8c19df7df3214032f95d29139f6018f03d99f92f6db637d52",
    ),
    "college_mathematics": (
        "2929eb3851fa6f37de8188f0a7fa817bec44fb5f5a04efa06f89ea272eae2f0b",
        "acc7b15a61aa4a069237a7841db7154eef6baf707a49e9c8f39fcf4735aaf459",
    ),
    "college_medicine": (
        "65876236acf78e813e62b78cdc2217c2651785324b8c51148aaffa6d89436d0d",
        "bb192ae79ca686b5f383ef49b3a196f0531e269f0b5743429198b1766741b4de",
    ),
    "college_physics": (
        "3f67202a7a62da0f0ab3028e0a0cf26a3cffc041283044f51f3e058258eab281",
        "9918560ec781b0fb0aaa46d165b899f03bd5d933c24106ed7cf8cd4543a775f2",
    ),
    "computer_security": (
        "f4b8b8f107144acd0c2b343553986c161a759cd459706cb72f9bb72752655162",
        "029054135a2122654866880966bb9c81b16b1301caae5a1d18092093b223caa7",
    ),
    "conceptual_physics": (
        "7186a0cdcd18dff2183dbd26d44f2d59d01f42687092e1229088735d508c06e1",
        "bac7a74663e5f892418034692895176873f0a6560cd2512c71da6994c7437337",
    ),
    "econometrics": (
        "13f21181bb3a26bfd290284ab80850f9c1e1ba90f00df6f17112b8c68e934cee",
        "77980477843f293d2cca9d9d05f2c4d46b5d9e31393a6456378a082f23d74847",
    ),
    "electrical_engineering": (
        "d78bba02efa107c61a82f2f82ee93e99366f5626fdf772a03eb3b749073cd1c1",
        "a7283d58a362697323fb49e80bbb047004596c44e21aad2b5afa66e8081b9760",
    ),
    "elementary_mathematics": (
        "701d8bbc120fd210a309f5e43c9cbfca8e1f01f6b9a26f43f669f0d29acc45ef",
        "ca4a3213aa3171042ee6b428600bc72e1d7d07e3026ed2ef12e96254916bba48",
    ),
    "formal_logic": (
        "c72df82993166fc1c9b3f145964b1b4791ce512c0d3f22919e9b46aaea17ef4b",
        "9e8985f49563f9817a76a715358c501fb8c263ade6a7c1af47e1f90f1dd11513",
    ),
    "global_facts": (
        "b80c9b31bc56727ebb3f1f980fbf40dbbd48565f609d1be9642ebe10a1c747a2",
        "6b3da0cce9ff48e7357783ad7390c488eb07bc26d00a3ceb42c81e2cd2e671b9",
    ),
    "high_school_biology": (
        "4ffe58996b33947fae8f374124c20f95560b773cbd3c9cafea0a3e90bcf4140b",
        "18b65297f30fb31daddde1f69f07aabdbd9013830436888f9c9b410ac2153aa1",
    ),
    "high_school_chemistry": (
        "42dcc80210a4cd861529e2cbaa04584d1d1cfd32d5515b385343df724d37408f",
        "359ab179e37c5c0475636e771877ef16af4d5df27dc0f07f9a5c0783790ba916",
    ),
    "high_school_computer_science": (
        "3865e92ef308c42ad7d653301647c6cd5bfa6d67f20c9fbbdfe14c2c1eb5bbbc",
        "e012aba074b95dcdf9875ef956e6800da5193ee1afe409dd6e9d71beebb8129d",
    ),
    "high_school_european_history": (
        "696d4b82f27792ac04915a7f6822370b4a42133fcd83c9a13fe5d74aaba37fbb",
        "8165a942ee996813de76199cc08cdddcee26128e09c99c9ecd014fed8f9a6fc6",
    ),
    "high_school_geography": (
        "4c0c06e32b73ec3f5b55bdab2a124b3b9736e888d2edadc6f40d6172052f7507",
        "55d2bcd20524a0d0c8b39fb9b48aec36adfdb93ca2009271a58cc02d60fc89e3",
    ),
    "high_school_government_and_politics": (
        "a3e20fbcff3bb0bdc613db7b56257c4e72d83d6e04e60db25c84e81d8c70a7d2",
        "631449be21ebdc3cf14ee6399b0a463c7b3990506ca6a97079e6c1888954be27",
    ),
    "high_school_macroeconomics": (
        "a06fba67bf6b92e5174d049fdb484df8c6e663586a910e725e195ebf43116b9c",
        "a8326c37a99fa81631b539cb66823b08c18990a94276f60d1a2c1af78cc21d4d",
    ),
    "high_school_mathematics": (
        "56b119f139ba07c0e2a9616e60397e3415cdca1532ae217ac6d8fd1bddfc96f7",
        "36aa098c79f22f75415dd74c306de1faa07082257ed9fa8fe650111f78b35d74",
    ),
    "high_school_microeconomics": (
        "a6acbf0d864e51540e0c219e433dc0f54a56d8a35255bf294d4de8d09b7ef00d",
        "023578120d0c4b9e3c317dffcca4552494fbfc9ed1dd4daff3f2e7a4b9ca2573",
    ),
    "high_school_physics": (
        "e5258c55a5e67a62c26fa0d2564b5263b69d38810e51204c59017789a771e253",
        "fd3f3c1153270806012fbdbf9b5dedde4e63527f1b4a423cdfae521ac405fd4e",
    ),
    "high_school_psychology": (
        "c7aabf2ccfee7489bf1494cfa1504a679eb69e27caa7d64bd1e9e63cff5c3fe9",
        "3a055107cbe9855a68483c2a8f816aada2294a9b1c078365e88c91ed62bec745",
    ),
    "high_school_statistics": (
        "c305647bc50d6e049ab0d33e79a3455a964421a54023ba14fa6b3c72e19a8d1d",
        "7948fd0d32ff30ac414c97928895da40990519c702768eb293d5f01a8d6261f7",
    ),
    "high_school_us_history": (
        "cd6c60e147dd70dde6b523c6ca0be07a78f7a1be7492278aa06641bc1f12680e",
        "df7936a6c422e655f9f79c432595b87232fef93c3b13e7feb74d2e7060b560b1",
    ),
    "high_school_world_history": (
        "cb083c69f1a4efb316ea8645899872d2528d55a7bf7cad1d625fcf369db0e943",
        "ae90f590e6452acac0b517e13b2ec285ac00004f46094fe68748fee98e496178",
    ),
    "human_aging": (
        "ce44b96c0d5bb9f0491f34a6b30d8feb2e82092e5f094990a9632b67bf75277b",
        "eaf8402a34af0529feed70d52eb0a4a4c707205609005e8267bdade008ca1728",
    ),
    "human_sexuality": (
        "98af8223edc66de68cfd9dfb18e19a65b94ad1559204f3f239ebb227112732f6",
        "0800691d14de81e90be7a949be3bda268731997590bd3d9a5a14b15e88d8cdf8",
    ),
    "international_law": (
        "e4fb345f044b54ef01ddda7126b61c328202cf0160e8f27831f082cc63da8ed9",
        "712493120d7112ca187666ef8ff75886a9dfdae3aeac9b5e6a309d0c6a8c7265",
    ),
    "jurisprudence": (
        "26780d8e35636af29b00b26b808d43aa466d9c06fa7b27a9b4c753b335883286",
        "67bf7563f8b90c6682e716ff1faada4be62be12ec967c8d03c4d7cac99d01158",
    ),
    "logical_fallacies": (
        "f40e1e6098a69cd8511c009f024c7d7caaad4a2f7cb9501be5a377167a5def60",
        "721672e4daf2ea761545776077c4825d90b2132ed847126fdf9b21f1b594da43",
    ),
    "machine_learning": (
        "50d163266dbc8672b8097c32a4765ff4a5e8767ac4a8971e70ddccbd5b817bd3",
        "25b78353edd62f6b4d17fe6e2ea391018c23e61e2a0fe6e8807eb32cea2561af",
    ),
    "management": (
        "423261b2633e20df5b4febfba4ecc7366917cdbabdb7e3ede4b1be98adf5dce5",
        "bb5b1bffac34f751762e98ff6185b523202b62f42081f6b13df79b37a445254c",
    ),
    "marketing": (
        "1853316726e9fa72eba8d74a67fc45da9a2c7ed1cb892496359d87426a7f7c8a",
        "c3ea3899945cb1e49da36c5693fba97bbcea7029a1087843e976a987091b2311",
    ),
    "medical_genetics": (
        "b330e63b2e60345285490ff495d5f4aea1981d738cc303c559903ec1c12238c1",
        "a7cc3670c44f8c09c157476ffe1863b9e8fe1c4113d2fea9bc557b22ecb5f374",
    ),
    "miscellaneous": (
        "58f67b35c1890985ccdd1c6b4e9a4e8bfd4f8e0e5fadf5726860ae789c65d5e8",
        "deee26422c1befff224f0da1a587c2a6051252c290e8f6ac40feaed2a7683429",
    ),
    "moral_disputes": (
        "2f3379380a469cbc2ed5d03372bae01306a19c65d053cc638435b92808b439f2",
        "ce86707de1a10887c14abfaedc3daa6a6b19fa5d0216c2fc593cf8dc54c21e56",
    ),
    "moral_scenarios": (
        "1776d1bf56388452ef80112bb1b5e94a6017abcb79b11540927e98f92cee8fba",
        "d6c0dcd5f9fe19c5bbb8de7d3218428c587b96f932498a44820a21d55c2917ed",
    ),
    "nutrition": (
        "acb668e8064655eab8869d8cc65ebc40af39acfe6eb40e0e1a83dfb87bffdc2a",
        "da8a99b9a9ecdc79b880c7ebaa59b30eb2f5bb043336932f7b0fb3cecaf3b8ae",
    ),
    "philosophy": (
        "74576271e2f9e3a01b4c437209323e833fb09a4e3a79217b16caa65e94ee8ba0",
        "42d9b8146f5dda534ad75bac24defcc9e41d61957cdfd9060c79d837274eccdd",
    ),
    "prehistory": (
        "5ff0349229f3bddf399ec0bf2c28c46a32d18997dd4bd93436702ba8bfccba78",
        "e7efa2839f8151b0de1284c21023ae9f7de8589ac5f3a6e44225d46cc5d07e79",
    ),
    "professional_accounting": (
        "728c6030e2e2e882a73305279b149b34b44c8f0203bdf6c5c75d48602bfb883a",
        "8a27c1e2ca406f477d7755b30fea6e4affb9ec64285c57b47aa847812ce7b79d",
    ),
    "professional_law": (
        "59884277f245b8332d6d02ba16fdefd7ca5bdc7ed51dca5f19147094f087c28d",
        "0814eebe7943bfb5aa927a494b20f029a2383499fa2250a14e9b19eb6dc77199",
    ),
    "professional_medicine": (
        "3490aa679090fdfd94f1a887219f2a85bb4028f4d0e6d49d6242fb9a99b846a1",
        "510bd154f87714cfc9b09fef10bda4789237ddf703198c476dac684b491f2382",
    ),
    "professional_psychology": (
        "5a3847f67470bff48c551dc80ac2a272a4378311d988ba5cad6325ba5d94e779",
        "e1db35cdee39b0266295a5f960c6eeaa6600357b03b0d842df3d0ca5292b2b1a",
    ),
    "public_relations": (
        "6f12b33facda9e0ab191debe3fb638d86c61c66a6205ed333b0890815f53b9be",
        "8d9a821e0ea6a03da946b96e3031c999e52f0baaf51f1fa2fbb05924971e402f",
    ),
    "security_studies": (
        "df86d642637dcada2f62ccb793739d0d6384552616c11bb3941d201cf3ab4ef1",
        "128a6ccb816854ce8973888e43cefb3b21c106ba425fa93bd80dee4590e9ff16",
    ),
    "sociology": (
        "7ee6baaa0082e04a03a64a722ab50b495edb49c26306e850a49e26b1a4edc88d",
        "6221f18fd45181970c705606c7692e7218fc1aee33970fd55cd432ddfd6fe320",
    ),
    "us_foreign_policy": (
        "5fbff75d8a6f1bfa1e4ca696a2db9ffbf11e3b97809ab97c00c813b96bd27e08",
        "e75e2e201b5eeb949de35640c58f107bbeba4e7d53acf88688eec27b1e2b69c2",
    ),
    "virology": (
        "cfb95d550d800b600a1d802bdb4ab4b5018b168d74f87af5fdbea5b623d279c1",
        "a32c63aaefafbf4227326b9701c986d40c979fb2169b3d67be7ac1f7758a8357",
    ),
    "world_religions": (
        "203c71d35b4d667a4010b032ad57cc75a561209c94e2235eb5c549310bf23789",
        "13404d8d076006e6c4aa13cd05a7ff4691be0e59b7630bdf7e9826244464ecdd",
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
    Dataset(
        name="arc",
        files=tuple(
            DatasetFile(name, sha, f"{_ARC}/{name}", size=size)
            for name, sha, size in (
                (
                    "ARC-Easy-test.jsonl",
                    "c9757629cb775832c3c67b4aa1425e3eda01708a2b02fa229b0c3ed1bcb70fe1",
                    757655,
                ),
                (
                    "ARC-Easy-validation.jsonl",
                    "e45dbcd2d8e8235af16302f4be0dd00c5d173878c583f4dfe55b70f9df07b2f8",
                    181359,
                ),
                (
                    "ARC-Challenge-test.jsonl",
                    "c0e7635ee91b9ca47bf388f1f6cd5140fda083a71dccda44de72c364645df3f3",
                    425043,
                ),
                (
                    "ARC-Challenge-validation.jsonl",
                    "c63650471eaf4c5076d9c913b77e42e10878739ec4e9e69d3a5f31210f5775a5",
                    109266,
                ),
            )
        ),
        license="CC BY-SA 4.0 (AllenAI)",
        homepage="https://allenai.org/data/arc",
        description="AI2 Reasoning Challenge: Easy 2,376 test + 570 dev, Challenge 1,172 + 299",
    ),
    Dataset(
        name="mmlu",
        files=tuple(
            DatasetFile(
                f"{split}/{subject}_{split}.csv", sha, f"{_MMLU}/{split}/{subject}_{split}.csv"
            )
            for subject, (test_sha, dev_sha) in _MMLU_SUBJECTS.items()
            for split, sha in (("test", test_sha), ("dev", dev_sha))
        ),
        license="MIT (hendrycks/test)",
        homepage="https://github.com/hendrycks/test",
        description="MMLU, 57 subjects: 14,042 test + 285 dev questions (CSV, answer index 0-3)",
    ),
    Dataset(
        name="hellaswag",
        files=(
            DatasetFile(
                "hellaswag_val_full.txt.bz2",
                "50b637899e4263c2bc456c2dc726c95d2c8cd8e2a552ea5bd7719ce3cb03fe5b",
                f"{_HELLASWAG}/hellaswag_val_full.txt.bz2",
                size=1964544,
            ),
        ),
        license="MIT (rowanz/hellaswag)",
        homepage="https://rowanzellers.com/hellaswag/",
        description="HellaSwag validation, 10,042 items, preprocessed text form (6 lines/item, bz2)",
    ),
    Dataset(
        name="piqa",
        files=(
            DatasetFile(
                "dev.jsonl",
                "a73f46cb5d72b2cc399522a79f27728a429d9b89d9a236243fcfda8c02588d54",
                f"{_PIQA}/dev.jsonl",
                size=580477,
            ),
            DatasetFile(
                "dev-labels.lst",
                "b4192dc3a2a0363d9d60ccf79800cbbe2f32ebb17726efdde6970e0b8131bceb",
                f"{_PIQA}/dev-labels.lst",
                size=3676,
            ),
        ),
        license="Academic Free License 3.0 (PIQA dataset card)",
        homepage="https://yonatanbisk.com/piqa/",
        description="PIQA physical commonsense, 1,838 dev goal/sol1/sol2 items + labels",
    ),
    Dataset(
        name="openbookqa-additional",
        dirname="openbookqa",
        files=tuple(
            DatasetFile(name, sha, f"{_OBQA_LFS}/{name}", size=size)
            for name, sha, size in (
                (
                    "openbook.txt",
                    "42daf7849bd9ad1096599279e8875038fe8bf55e35c4757d67ec5a2f51ad795c",
                    75914,
                ),
                (
                    "test_complete.jsonl",
                    "2a5566ba69bb7196e3b24aa26fcfeea717272dfad6527aebd5e3a6fc0a121ace",
                    223201,
                ),
                (
                    "dev_complete.jsonl",
                    "aa697e2c1ea4cd4ce7bbf1c64dc3385940a1399448a00a9d62a78b85109f627d",
                    228416,
                ),
            )
        ),
        license="Apache-2.0 (AllenAI)",
        homepage="https://allenai.org/data/open-book-qa",
        description="OpenBookQA with facts: 1,326-fact open book, 500 test + 500 dev questions",
    ),
    Dataset(
        name="scifact",
        files=(
            DatasetFile(
                "corpus.jsonl",
                "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6",
                f"{_SCIFACT_IR}/corpus.jsonl",
                size=8106566,
            ),
            DatasetFile(
                "queries.jsonl",
                "8ff84a7c903f722981cd8d595c022660140c51867b27608a6d4910db86080313",
                f"{_SCIFACT_IR}/queries.jsonl",
                size=209731,
            ),
            DatasetFile(
                "qrels/test.tsv",
                "0864bb985e0ca2367ba217977e72004d549054b2b06666ed9d4825ac7c21284c",
                f"{_SCIFACT_QRELS}/test.tsv",
                size=5389,
            ),
            DatasetFile(
                "qrels/train.tsv",
                "a53f2114831916c096b6c37d9e54da68cef4efdcdbd5ed46533601af972acf1d",
                f"{_SCIFACT_QRELS}/train.tsv",
                size=14502,
            ),
        ),
        license="CC BY-NC 2.0 (allenai/scifact; non-commercial)",
        homepage="https://github.com/beir-cellar/beir",
        description="SciFact (BEIR): 5,183 abstracts, 1,109 claims, test qrels 339 pairs / 300 Qs",
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
