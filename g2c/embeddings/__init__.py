"""05 embeddings — token tables, learned / sinusoidal / rotary positions, and word vectors."""

from g2c.embeddings.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    TokenEmbedding,
    rotate_half,
    sinusoidal_table,
)
from g2c.embeddings.word2vec import (
    SkipGramConfig,
    SkipGramNS,
    build_vocab,
    keep_probability,
    log_sigmoid,
    noise_distribution,
    sgd_step_sparse,
    sgns_loss,
    skipgram_pairs,
    tokenize_words,
    train_skipgram,
)
from g2c.embeddings.wordvectors import (
    ANALOGY_PAIRS,
    WordVectors,
    analogy_questions,
    evaluate_analogies,
    glove_package_dir,
    load_glove,
    load_glove_text,
    load_word_vectors,
    pca_2d,
    save_word_vectors,
)

__all__ = [
    "TokenEmbedding",
    "LearnedPositionalEmbedding",
    "SinusoidalPositionalEmbedding",
    "RotaryEmbedding",
    "rotate_half",
    "sinusoidal_table",
    # word vectors
    "WordVectors",
    "load_glove",
    "load_glove_text",
    "glove_package_dir",
    "save_word_vectors",
    "load_word_vectors",
    "pca_2d",
    "ANALOGY_PAIRS",
    "analogy_questions",
    "evaluate_analogies",
    # skip-gram with negative sampling
    "SkipGramConfig",
    "SkipGramNS",
    "train_skipgram",
    "tokenize_words",
    "build_vocab",
    "noise_distribution",
    "keep_probability",
    "skipgram_pairs",
    "log_sigmoid",
    "sgns_loss",
    "sgd_step_sparse",
]
