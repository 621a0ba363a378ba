"""04 — tokenizers: byte-level BPE (GPT-2/GPT-4 style) and a character tokenizer.

``BPETokenizer`` learns merges from text (clear ``train`` and fast ``train_fast``, same merges),
encodes losslessly with atomic special tokens, saves to JSON, loads GPT-2's files and exports to
tiktoken / HF tokenizers. ``CharTokenizer`` maps characters to ids for char-level models.
``WordPieceTokenizer`` (BERT) and ``UnigramTokenizer`` (SentencePiece) show the other families.
``load_tokenizer(path)`` reads any of them (or GPT-2's files), the class chosen by the format.
``BPETokenizer.from_gguf(path)`` reads a GGUF's tokenizer (SmolLM2's) with the GGUF's ids, and
``read_gguf_chat_info(path)`` its chat template source and special-token strings.
``encode`` is the fast path by default; ``encode(text, impl="reference")`` is the clear one.
Shapes: ``encode``: ``str`` → ``list[int]`` (T ids); ``decode``: ``list[int]`` → ``str``.
"""

from g2c.tokenizer.bpe import COURSE_SPECIAL_TOKENS, BPETokenizer
from g2c.tokenizer.char import CharTokenizer
from g2c.tokenizer.gguf import GGUFChatInfo, read_gguf_chat_info
from g2c.tokenizer.loader import TOKENIZER_FORMATS, load_tokenizer
from g2c.tokenizer.pretokenize import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    SMOLLM_SPLIT_PATTERN,
    SPLIT_PATTERNS,
)
from g2c.tokenizer.unigram import UnigramTokenizer
from g2c.tokenizer.wordpiece import WordPieceTokenizer

__all__ = [
    "BPETokenizer",
    "COURSE_SPECIAL_TOKENS",
    "CharTokenizer",
    "GGUFChatInfo",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "SMOLLM_SPLIT_PATTERN",
    "SPLIT_PATTERNS",
    "TOKENIZER_FORMATS",
    "UnigramTokenizer",
    "WordPieceTokenizer",
    "load_tokenizer",
    "read_gguf_chat_info",
]
