"""g2c.data — datasets by name: registry, checksums, resolution/download, loaders, corpus cache.

* :mod:`~g2c.data.registry` — ``REGISTRY`` of :class:`Dataset` (files, SHA-256 of decompressed
  content, licence, upstream URL).
* :mod:`~g2c.data.resolution` — explicit path → ``$G2C_DATA_DIR/<dirname>`` → system dirs → user
  cache → verified download → FileNotFoundError saying which file is missing and where to put it.
* :mod:`~g2c.data.download` — streaming, checksummed, atomic ``download_file``.
* :mod:`~g2c.data.idx` — IDX parser, ``load_mnist`` / ``load_fashion_mnist`` → uint8 (N, 28, 28), (N,).
* :mod:`~g2c.data.text` — ``load_text``, ``load_corpus``, contiguous ``split_text``.
* :mod:`~g2c.data.tokens` — uint16/uint32 token-id files with a JSON sidecar.
* :mod:`~g2c.data.corpus` — ``encode_corpus_cached``: encoded ids cached per tokenizer.
* :mod:`~g2c.data.prepare` — ``prepare_corpus``: streamed, cleaned, tokenized, sharded corpora;
  ``check_prepared``: a prepared directory's shards checked against its manifest.
* :mod:`~g2c.data.python_code` — the running Python's stdlib as a corpus (``python-stdlib``).
* :mod:`~g2c.data.dedupe` — exact / MinHash-LSH de-duplication, the Gopher quality rules.
* :mod:`~g2c.data.mixture` — a weighted mixture of sources with observed fractions.
* :mod:`~g2c.data.toy` — moons, circles, a noisy line.
* :mod:`~g2c.data.chat` — instruction data as conversations (self-instruct, GSM8K, hh-rlhf).
* :mod:`~g2c.data.preferences` — preference pairs (hh-rlhf harmless, TruthfulQA best vs incorrect).
* :mod:`~g2c.data.benchmarks` — multiple-choice benchmarks as records (OpenBookQA, ARC, MMLU,
  HellaSwag, PIQA, TruthfulQA MC) for ``g2c.eval``.

A base package: imports only the standard library, NumPy, PyTorch and ``g2c.artifacts``.
"""

from g2c.data.benchmarks import (
    MMLU_SUBJECTS,
    load_arc,
    load_hellaswag,
    load_mmlu,
    load_openbookqa,
    load_piqa,
    load_truthfulqa_mc,
)
from g2c.data.chat import (
    load_gsm8k,
    load_hh_rlhf_chosen,
    load_self_instruct,
    parse_hh_transcript,
)
from g2c.data.corpus import corpus_cache_path, encode_corpus_cached, tokenizer_fingerprint
from g2c.data.dedupe import (
    GOPHER_THRESHOLDS,
    ExactDeduplicator,
    NearDuplicateIndex,
    document_digest,
    gopher_failures,
    minhash_signature,
)
from g2c.data.download import DownloadError, download_file, sha256_file
from g2c.data.idx import (
    FASHION_MNIST_CLASSES,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)
from g2c.data.mixture import MixtureScheduler, parse_mixture
from g2c.data.preferences import (
    hh_pair,
    load_hh_rlhf,
    load_truthfulqa_pairs,
    split_pairs_by_prompt,
)
from g2c.data.prepare import (
    PrepareConfig,
    check_prepared,
    load_prepared,
    load_prepared_ids,
    prepare_corpus,
    prepared_dir,
    resolve_sources,
    shard_paths,
)
from g2c.data.python_code import (
    PYTHON_STDLIB,
    is_python_stdlib,
    python_stdlib_config,
    python_stdlib_root,
    python_stdlib_sample,
)
from g2c.data.registry import REGISTRY, Dataset, DatasetFile, get_dataset
from g2c.data.resolution import (
    cache_root,
    check,
    data_dir,
    dataset_cache_dir,
    dataset_file,
    download_dataset,
    locate,
    resolve,
)
from g2c.data.text import DEFAULT_CORPUS, load_corpus, load_text, split_text
from g2c.data.tokens import load_token_ids, read_token_ids_metadata, save_token_ids
from g2c.data.toy import make_circles, make_line, make_moons

__all__ = [
    "GOPHER_THRESHOLDS",
    "ExactDeduplicator",
    "MixtureScheduler",
    "NearDuplicateIndex",
    "PrepareConfig",
    "PYTHON_STDLIB",
    "check_prepared",
    "is_python_stdlib",
    "prepared_dir",
    "python_stdlib_config",
    "python_stdlib_root",
    "python_stdlib_sample",
    "document_digest",
    "gopher_failures",
    "load_prepared",
    "load_prepared_ids",
    "minhash_signature",
    "parse_mixture",
    "prepare_corpus",
    "resolve_sources",
    "shard_paths",
    "MMLU_SUBJECTS",
    "load_arc",
    "load_hellaswag",
    "load_mmlu",
    "load_openbookqa",
    "load_piqa",
    "load_truthfulqa_mc",
    "hh_pair",
    "load_hh_rlhf",
    "load_truthfulqa_pairs",
    "split_pairs_by_prompt",
    "DEFAULT_CORPUS",
    "FASHION_MNIST_CLASSES",
    "REGISTRY",
    "Dataset",
    "DatasetFile",
    "DownloadError",
    "cache_root",
    "check",
    "corpus_cache_path",
    "data_dir",
    "dataset_cache_dir",
    "dataset_file",
    "download_dataset",
    "download_file",
    "encode_corpus_cached",
    "get_dataset",
    "load_corpus",
    "load_fashion_mnist",
    "load_gsm8k",
    "load_hh_rlhf_chosen",
    "load_mnist",
    "load_self_instruct",
    "load_text",
    "load_token_ids",
    "locate",
    "make_circles",
    "make_line",
    "make_moons",
    "parse_hh_transcript",
    "read_idx",
    "read_token_ids_metadata",
    "resolve",
    "save_token_ids",
    "sha256_file",
    "split_text",
    "tokenizer_fingerprint",
    "write_idx",
]
