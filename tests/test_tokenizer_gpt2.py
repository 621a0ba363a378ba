"""GPT-2 compatibility and exports: g2c ids must equal HF tokenizers' and tiktoken's ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from g2c.tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer

DATA = Path(os.environ.get("G2C_DATA_DIR", "/nonexistent"))
GPT2_DIR = DATA / "gpt2_tokenizer"
needs_gpt2 = pytest.mark.skipif(
    not (GPT2_DIR / "gpt2_vocab.json").is_file(),
    reason="GPT-2 vocab/merges not in $G2C_DATA_DIR/gpt2_tokenizer",
)

MULTILINGUAL = [
    "Hello world! It's a test, isn't it? We'll see... I'd say you're right; they've gone.",
    "Привет, мир! Как дела? Ёлка.",
    "مرحبا بالعالم — שלום עולם",
    "नमस्ते दुनिया। ভাষা",
    "こんにちは世界、元気ですか？カタカナ ひらがな",
    "你好，世界！中文文本测试。",
    "안녕하세요 세계",
    "Ελληνικά γράμματα, Ünïcödé, Straße, naïve café, Ærø",
    "Thai: สวัสดีชาวโลก",
    "🙂🙃🤖👩‍💻🏳️‍🌈 ✨🔥💯 👋🏽 🇫🇷 👨‍👩‍👧‍👦 ❤️",
    "Zalgo: Z̴̧̛a̷l̸g̵o̶, combining e\u0301 a\u0308",
    "ℌ𝔢𝔩𝔩𝔬 𝕨𝕠𝕣𝕝𝕕 (mathematical letters, outside the BMP)",
    "\u00a0nbsp\u2003em-space\u3000ideographic space",
    "\x85next-line\u2028line-sep\u2029para-sep",
    "tab\t\tx\r\n\r\ny   \n\n\n  z\x00NUL \u200b\u200d\ufeff",
    "numbers 1234567890 3.14159 1,000,000 0xDEADBEEF",
    "    def f(x):\n        return x ** 2  # code!\n",
    "<|endoftext|> appears as text here",
]


def _text_files() -> dict[str, str]:
    """TinyShakespeare and the Gutenberg books, read through g2c.data when it is available."""
    try:
        from g2c.data import load_text

        return {
            "tinyshakespeare": load_text("tinyshakespeare"),
            "gutenberg": load_text("gutenberg"),
        }
    except (ImportError, FileNotFoundError, ValueError):
        out = {}
        for f in sorted(
            [DATA / "tinyshakespeare" / "input.txt", *(DATA / "gutenberg").glob("*.txt")]
        ):
            out[f.name] = f.read_bytes().decode("utf-8", "replace")
        return out


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return BPETokenizer.from_gpt2_files(GPT2_DIR / "gpt2_vocab.json", GPT2_DIR / "gpt2_merges.txt")


@pytest.fixture(scope="module")
def hf_gpt2():
    tokenizers = pytest.importorskip("tokenizers")
    return tokenizers.ByteLevelBPETokenizer(
        str(GPT2_DIR / "gpt2_vocab.json"), str(GPT2_DIR / "gpt2_merges.txt")
    )


@needs_gpt2
def test_gpt2_layout(gpt2):
    assert gpt2.vocab_size == 50257 and len(gpt2.merges) == 50000
    assert gpt2.special_to_id == {"<|endoftext|>": 50256}
    assert gpt2.pattern == GPT2_SPLIT_PATTERN
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert gpt2.vocab[0] == b"!" and gpt2.vocab[220] == b" "


@needs_gpt2
def test_gpt2_roundtrips_through_to_dict(gpt2, tmp_path):
    again = BPETokenizer.load(gpt2.save(tmp_path / "gpt2.json"))
    assert again.vocab == gpt2.vocab and again.special_to_id == gpt2.special_to_id
    assert again.encode(MULTILINGUAL[0]) == gpt2.encode(MULTILINGUAL[0])
    with pytest.raises(ValueError, match="foreign id layout"):
        again.train_fast("some text", 50300)


@needs_gpt2
def test_gpt2_matches_hf_multilingual(gpt2, hf_gpt2):
    for text in MULTILINGUAL:
        ids = gpt2.encode_fast(text)
        assert ids == hf_gpt2.encode(text).ids, text
        assert gpt2.encode(text) == ids
        assert gpt2.decode(ids) == text


@needs_gpt2
def test_gpt2_matches_hf_on_a_book_excerpt(gpt2, hf_gpt2):
    texts = _text_files()
    text = next(iter(texts.values()))[:100_000]
    assert gpt2.encode_fast(text) == hf_gpt2.encode(text).ids


@needs_gpt2
@pytest.mark.slow
def test_gpt2_matches_hf_on_all_books(gpt2, hf_gpt2):
    texts = _text_files()
    assert len(texts) >= 2
    for name, text in texts.items():
        assert gpt2.encode_fast(text) == hf_gpt2.encode(text).ids, name


@needs_gpt2
def test_gpt2_tiktoken_export(gpt2):
    tiktoken = pytest.importorskip("tiktoken")
    enc = gpt2.to_tiktoken()
    assert isinstance(enc, tiktoken.Encoding)
    for text in MULTILINGUAL:
        assert enc.encode(text, disallowed_special=()) == gpt2.encode(text), text
    assert enc.encode("a<|endoftext|>", allowed_special="all") == gpt2.encode(
        "a<|endoftext|>", allowed_special="all"
    )


def _trained(pattern: str) -> tuple[BPETokenizer, str]:
    from test_tokenizer import CORPORA, MIXED

    text = "".join(CORPORA.values()) + MIXED + "\n".join(MULTILINGUAL)
    book = DATA / "tinyshakespeare" / "input.txt"
    if book.is_file():
        text += book.read_text(encoding="utf-8")[:150_000]
    tok = BPETokenizer.with_course_special_tokens(pattern=pattern)
    tok.train_fast(text, 1200)
    return tok, text


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN], ids=["gpt2", "gpt4"])
def test_trained_exports_give_identical_ids(pattern):
    pytest.importorskip("tiktoken")
    pytest.importorskip("tokenizers")
    tok, corpus = _trained(pattern)
    enc = tok.to_tiktoken()
    hf = tok.to_hf_tokenizer()
    texts = [
        *MULTILINGUAL,
        corpus[:20000],
        corpus[-20000:],
        "<|user|>hi<|end|>\n<|assistant|>ok<|endoftext|>",
    ]
    for text in texts:
        ids = tok.encode_fast(text, allowed_special="all")
        assert enc.encode(text, allowed_special="all") == ids, text[:40]
        assert hf.encode(text).ids == ids, text[:40]
        assert hf.decode(ids, skip_special_tokens=False) == text
        assert enc.decode(ids) == text
        # tiktoken with g2c's default: special-token strings are plain text
        assert enc.encode(text, disallowed_special=()) == tok.encode_fast(text)


def test_export_rejects_duplicate_token_bytes():
    # two merge orders that spell the same bytes: (a,b)+c and a+(b,c)
    d = {
        "format": "g2c.bpe",
        "version": 2,
        "special_tokens": [],
        "merges": [[97, 98, 256], [98, 99, 257], [256, 99, 258], [97, 257, 259]],
    }
    dup = BPETokenizer.from_dict(d)
    assert dup.vocab[258] == dup.vocab[259] == b"abc"
    with pytest.raises(ValueError, match="unique token bytes"):
        dup.to_tiktoken()
    with pytest.raises(ValueError, match="unique token bytes"):
        dup.to_hf_tokenizer()
