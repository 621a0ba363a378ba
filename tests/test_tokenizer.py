"""Tests for g2c.tokenizer: BPE training (reference vs fast), encoding, specials, persistence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from g2c.tokenizer import (
    COURSE_SPECIAL_TOKENS,
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
)
from g2c.tokenizer.bpe import _get_pair_counts, _merge
from g2c.tokenizer.pretokenize import compile_pattern, iter_pretokens, pretokenize

GPT2_DIR = Path(os.environ.get("G2C_DATA_DIR", "/nonexistent")) / "gpt2_tokenizer"

MIXED = (
    "Hello world! It's 2024, and we're testing BPE tokenizers... hello HELLO hello.\n"
    "Ünïcödé: naïve café, Straße, Ærø. 日本語のテキストと中文文本。한국어 텍스트.\n"
    "Emoji: 👋🏽 🇫🇷 👨‍👩‍👧‍👦 ❤️ — combining: e\u0301 a\u0308 n\u0303.\r\n"
    "Tabs\tand   spaces\n\n\nnumbers 1234567 3.14159 0xFF\x00NUL\u200bzero-width\n"
    "    def f(x):\n        return x ** 2  # code!\n"
)


def _corpus(n_lines: int = 120, seed: int = 0) -> str:
    """A small deterministic pseudo-English corpus with repeated words (so merges tie often)."""
    import random

    rng = random.Random(seed)
    words = "the of and to in is was he that it his her for with as had you not be on at by".split()
    words += "king queen lord thou thee thy hath doth love death night day sword crown".split()
    lines = []
    for _ in range(n_lines):
        k = rng.randint(3, 12)
        line = " ".join(rng.choice(words) for _ in range(k))
        lines.append(line.capitalize() + rng.choice([".", "!", "?", ",", ";"]))
    return "\n".join(lines) + "\n"


CORPORA = {
    "pseudo_en": _corpus(),
    "mixed": MIXED * 3,
    "pseudo_en_specials": "<|endoftext|>".join([_corpus(30, 1), _corpus(30, 2), MIXED]),
}


# --- construction --------------------------------------------------------------------------
def test_layout_and_course_specials():
    tok = BPETokenizer.with_course_special_tokens()
    assert COURSE_SPECIAL_TOKENS[:4] == ("<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>")
    assert tok.special_to_id["<|endoftext|>"] == 256
    assert tok.base_vocab_size == 256 + len(COURSE_SPECIAL_TOKENS) == tok.vocab_size
    assert all(tok.vocab[i] == bytes([i]) for i in range(256))
    assert tok.id_to_special[257] == "<|user|>"
    assert tok.special_token_ids == tuple(range(256, 256 + len(COURSE_SPECIAL_TOKENS)))
    assert tok.pattern == GPT4_SPLIT_PATTERN


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="must be unique"):
        BPETokenizer(["<|a|>", "<|a|>"])
    with pytest.raises(ValueError, match="special_tokens"):
        BPETokenizer([""])
    with pytest.raises(TypeError, match="special_tokens"):
        BPETokenizer("<|a|>")
    with pytest.raises(ValueError, match="empty string"):
        BPETokenizer(pattern=r"\w*")


# --- teaching helpers ----------------------------------------------------------------------
def test_pair_counts_and_merge():
    assert _get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert _merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert _merge([1, 1, 1], (1, 1), 9) == [9, 1]
    assert _merge([1, 1, 1, 1], (1, 1), 9) == [9, 9]
    assert _merge([], (1, 1), 9) == []


def test_train_step_never_merges_across_specials():
    tok = BPETokenizer(["<|s|>"])
    s = tok.special_to_id["<|s|>"]
    ids = [97, s, 97, s, 97, s, 98, 99]
    new_ids, pair, count = tok.train_step(ids)
    assert pair == (98, 99) and count == 1
    assert new_ids == [97, s, 97, s, 97, s, 256 + 1]
    assert tok.train_step([97, s, 98]) is None
    assert tok.vocab_size == 257  # train_step does not modify the tokenizer
    chunks, pair, count = tok.train_step([[1, 2], [1, 2], [2, 1]])
    assert pair == (1, 2) and count == 2 and chunks == [[257], [257], [2, 1]]


def test_tie_break_is_lexicographically_greatest_pair():
    # every pair occurs once: "ab", " cd" -> candidates (a,b), (' ',c), (c,d); greatest bytes win
    for method in ("train", "train_fast"):
        tok = BPETokenizer(pattern=GPT2_SPLIT_PATTERN)
        getattr(tok, method)("ab cd", 257)
        assert [(tok.vocab[a], tok.vocab[b]) for a, b in tok.merges] == [(b"c", b"d")]
    # higher count beats greater bytes
    tok = BPETokenizer(pattern=GPT2_SPLIT_PATTERN)
    tok.train_fast("ab ab zz", 257)
    assert [(tok.vocab[a], tok.vocab[b]) for a, b in tok.merges] == [(b"a", b"b")]


# --- training: reference == fast --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN], ids=["gpt2", "gpt4"])
def test_train_fast_equals_train(name, pattern):
    text = CORPORA[name]
    for vocab_size in (260, 300, 420):
        ref = BPETokenizer(["<|endoftext|>"], pattern=pattern)
        fast = BPETokenizer(["<|endoftext|>"], pattern=pattern)
        ids_ref = ref.train(text, vocab_size)
        ids_fast = fast.train_fast(text, vocab_size, chunk_chars=97)
        assert fast.merges == ref.merges
        assert fast.vocab == ref.vocab
        assert ids_fast == ids_ref == ref.encode(text, allowed_special="all")
        assert ref.decode(ids_ref) == text


def test_training_stops_when_no_pairs_left_and_checks_vocab_size():
    for method in ("train", "train_fast"):
        tok = BPETokenizer()
        ids = getattr(tok, method)("aaaa", 300)
        assert ids == [257]  # aa, then aaaa; nothing left to merge
        assert tok.vocab_size == 258
        with pytest.raises(ValueError, match="vocab_size"):
            getattr(tok, method)("abc", 255)
    with pytest.raises(TypeError, match="text"):
        BPETokenizer().train_fast(b"bytes", 300)


def test_progress_callback_reports_merges():
    calls = []
    BPETokenizer().train_fast(
        _corpus(), 300, progress_callback=lambda d, t, i: calls.append((d, t, i)), progress_every=10
    )
    assert calls[-1][0] == calls[-1][1] == 44 and len(calls) == 5
    assert isinstance(calls[0][2]["token"], bytes) and calls[0][2]["count"] > 0
    ref_calls = []
    BPETokenizer().train(
        _corpus(),
        300,
        progress_callback=lambda d, t, i: ref_calls.append(i["pair"]),
        progress_every=10,
    )
    assert ref_calls == [c[2]["pair"] for c in calls]


@pytest.mark.skipif(not GPT2_DIR.is_dir(), reason="gpt2_tokenizer fixtures not in $G2C_DATA_DIR")
def test_matches_reference_trainer_fixture():
    """CS336's reference BPE trainer on corpus.en (vocab 500, <|endoftext|>, GPT-2 pattern)."""
    from g2c.tokenizer.interop import bytes_to_unicode

    u2b = {c: b for b, c in bytes_to_unicode().items()}
    text = (GPT2_DIR / "corpus.en").read_text(encoding="utf-8")
    tok = BPETokenizer(["<|endoftext|>"], pattern=GPT2_SPLIT_PATTERN)
    tok.train_fast(text, 500)
    lines = (GPT2_DIR / "train-bpe-reference-merges.txt").read_text(encoding="utf-8").splitlines()
    ref = [tuple(bytes(u2b[c] for c in part) for part in ln.split(" ")) for ln in lines if ln]
    assert [(tok.vocab[a], tok.vocab[b]) for a, b in tok.merges] == ref
    ref_vocab = json.loads(
        (GPT2_DIR / "train-bpe-reference-vocab.json").read_text(encoding="utf-8")
    )
    ref_bytes = sorted(
        k.encode() if k == "<|endoftext|>" else bytes(u2b[c] for c in k) for k in ref_vocab
    )
    assert sorted(tok.vocab.values()) == ref_bytes
    # the clear trainer agrees on the first merges of the same corpus
    ref_tok = BPETokenizer(["<|endoftext|>"], pattern=GPT2_SPLIT_PATTERN)
    ref_tok.train(text[:20000], 300)
    fast_tok = BPETokenizer(["<|endoftext|>"], pattern=GPT2_SPLIT_PATTERN)
    fast_tok.train_fast(text[:20000], 300)
    assert ref_tok.merges == fast_tok.merges


# --- encoding --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained() -> BPETokenizer:
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast(CORPORA["pseudo_en_specials"] + MIXED, 600)
    return tok


def test_encode_fast_equals_encode_and_roundtrips(trained):
    fresh = BPETokenizer.from_dict(trained.to_dict())  # empty chunk cache
    for text in [*CORPORA.values(), "", " ", "\n\n", "x", MIXED[::-1]]:
        ids = trained.encode(text, impl="reference")
        assert trained.encode_fast(text) == trained.encode(text) == ids
        assert fresh.encode(text) == fresh.encode_reference(text) == ids
        assert trained.decode(ids) == text
        assert all(isinstance(i, int) and 0 <= i < trained.vocab_size for i in ids)


def test_encode_base_is_bytes_plus_atomic_specials(trained):
    ids = trained.encode_base("hé<|endoftext|>!")
    assert ids == [104, 0xC3, 0xA9, 256, 33]
    assert trained.encode_base("<|user|>", allowed_special=()) == list(b"<|user|>")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_roundtrip_property_arbitrary_unicode(text):
    tok = _PROPERTY_TOK
    ids = tok.encode_fast(text)
    assert tok.decode(ids) == text
    assert tok.encode(text) == ids == tok.encode(text, impl="reference")
    assert tok.decode(tok.encode_fast(text, allowed_special="all")) == text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "\r\n",
                "\x00",
                "👋🏽",
                "e\u0301",
                "日本",
                " the",
                "<|endoftext|>",
                "<|user|>",
                "  ",
                "\t",
                "ß",
            ]
        )
        | st.text(max_size=6),
        max_size=20,
    )
)
def test_roundtrip_property_special_pieces(parts):
    text = "".join(parts)
    tok = _PROPERTY_TOK
    assert tok.decode(tok.encode_fast(text)) == text
    assert tok.decode(tok.encode(text, allowed_special="all")) == text
    assert tok.encode(text, allowed_special="all") == tok.encode_reference(
        text, allowed_special="all"
    )


_PROPERTY_TOK = BPETokenizer.with_course_special_tokens()
_PROPERTY_TOK.train_fast(CORPORA["pseudo_en_specials"] + MIXED, 500)


def test_lone_surrogates_roundtrip(trained):
    text = "a\ud800b\udfffc"
    assert trained.decode(trained.encode_fast(text)) == text
    # bytes that are not valid UTF-8 decode to U+FFFD instead of raising
    assert (
        trained.decode([0xE6, 0x97]) == "\ufffd\ufffd" or trained.decode([0xE6, 0x97]) == "\ufffd"
    )


def test_decode_accepts_tensors_and_show_progress_path(trained):
    import torch

    ids = trained.encode_fast("the king")
    assert trained.decode(torch.tensor(ids, dtype=torch.long)) == "the king"
    a, b = BPETokenizer(), BPETokenizer()
    assert a.train_fast(_corpus(), 300, show_progress=True) == b.train_fast(_corpus(), 300)
    assert a.merges == b.merges


def test_decode_rejects_unknown_ids(trained):
    with pytest.raises(ValueError, match="not a token id"):
        trained.decode([trained.vocab_size])


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=60))
def test_larger_vocab_never_more_tokens(text):
    tok = _PROPERTY_TOK
    lengths = [
        len(tok.encode_at_vocab(text, v)) for v in (tok.base_vocab_size, 300, 400, tok.vocab_size)
    ]
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[0] == len(text.encode("utf-8"))


def test_encode_at_vocab_equals_smaller_trained_tokenizer():
    text = CORPORA["pseudo_en"]
    big = BPETokenizer()
    big.train_fast(text, 500)
    small = BPETokenizer()
    small.train_fast(text, 320)
    assert big.encode_at_vocab(MIXED + text, 320) == small.encode(MIXED + text)
    assert big.encode_at_vocab(text, big.vocab_size) == big.encode(text)
    with pytest.raises(ValueError, match="vocab_size"):
        big.encode_at_vocab(text, 100)
    # above the learned size: every merge is used (API.md Addendum 04)
    assert big.encode_at_vocab(text, big.vocab_size + 1) == big.encode(text)


# --- API.md Addendum 04 ------------------------------------------------------------------------
def test_encode_defaults_to_fast_and_reference_is_one_argument_away(trained):
    tok = BPETokenizer.from_dict(trained.to_dict())
    text = CORPORA["pseudo_en"]
    ids = tok.encode_reference(text)
    assert tok._cache == {}  # the reference path caches nothing
    assert tok.encode(text, impl="reference") == ids and tok._cache == {}
    assert tok.encode(text) == ids and tok._cache  # the default filled the fast path's cache
    assert tok.encode_fast(text) == ids  # alias kept
    with pytest.raises(ValueError, match="impl must be one of"):
        tok.encode(text, impl="slow")


def test_special_tokens_must_be_unique():
    with pytest.raises(ValueError, match="must be unique"):
        BPETokenizer(["<|a|>", "<|b|>", "<|a|>"])


@pytest.mark.parametrize("method", ["train", "train_fast"])
def test_train_below_base_names_the_base(method):
    tok = BPETokenizer.with_course_special_tokens()
    base = 256 + len(COURSE_SPECIAL_TOKENS)
    with pytest.raises(ValueError, match=f"base_vocab_size = {base}"):
        getattr(tok, method)("hello hello", base - 1)
    assert len(getattr(tok, method)("hello hello", base)) == len("hello hello")  # 0 merges ok


def test_pair_helpers_are_static_on_the_class():
    assert BPETokenizer._get_pair_counts([1, 2, 1, 2]) == {(1, 2): 2, (2, 1): 1}
    assert BPETokenizer._merge([1, 1, 1, 2], (1, 1), 300) == [300, 1, 2]
    tok = BPETokenizer()
    assert tok._merge([5, 6], (5, 6), 7) == [7] and tok._get_pair_counts([]) == {}


def test_merges_are_the_source_of_truth_for_every_encoder(trained):
    tok = BPETokenizer.from_dict(trained.to_dict())
    text = "the king zqxj"
    before = tok.encode(text)  # warms the chunk cache and the rank table
    tok.truncated(300)  # and a prefix tokenizer
    word = tok.encode(" zqxj")  # one pre-token chunk of several tokens
    assert len(word) >= 3 and before[-len(word) :] == word
    a, b = word[0], word[1]
    new_id = tok.vocab_size
    assert new_id not in tok.vocab
    tok.merges[(a, b)] = new_id  # a merge added by hand
    for ids in (
        tok.encode(text),
        tok.encode(text, impl="reference"),
        tok.encode_fast(text),
        tok.encode_at_vocab(text, new_id + 1),
    ):
        assert new_id in ids and len(ids) == len(before) - 1
    assert tok.vocab[new_id] == tok.vocab[a] + tok.vocab[b]  # derived vocab entry
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_at_vocab(text, new_id) == before  # below the new id: without it
    del tok.merges[(a, b)]
    assert tok.encode(text) == before
    tok.merges = {}  # a new dict: bytes only
    assert tok.encode(text) == list(text.encode())


def test_encode_at_vocab_after_early_stopped_training():
    tok = BPETokenizer()
    tok.train("aaaa", 1000)  # stops after a few merges: no pair left
    assert tok.vocab_size < 1000
    assert tok.encode_at_vocab("aaaaaaa", 1000) == tok.encode("aaaaaaa")
    assert tok.encode_at_vocab("aaaaaaa", 256) == [97] * 7
    with pytest.raises(ValueError, match="base_vocab_size = 256"):
        tok.encode_at_vocab("a", 255)


# --- special tokens: tiktoken-style allowed / disallowed -------------------------------------------
def test_special_string_is_plain_text_by_default(trained):
    text = "hi <|endoftext|> there"
    ids = trained.encode(text)
    assert 256 not in ids and trained.encode_fast(text) == ids
    assert trained.decode(ids) == text


def test_allowed_special_all_and_subset(trained):
    text = "<|user|>hi<|end|><|endoftext|>"
    ids = trained.encode(text, allowed_special="all")
    assert ids[0] == trained.special_to_id["<|user|>"] and ids[-1] == 256
    assert trained.encode_fast(text, allowed_special="all") == ids
    sub = trained.encode(text, allowed_special={"<|endoftext|>"})
    assert sub[-1] == 256 and trained.special_to_id["<|user|>"] not in sub
    assert trained.decode(sub) == text


def test_disallowed_special_raises(trained):
    with pytest.raises(ValueError, match="disallowed_special"):
        trained.encode("x <|endoftext|>", disallowed_special="all")
    with pytest.raises(ValueError, match="<\\|user\\|>"):
        trained.encode_fast("<|user|>", disallowed_special={"<|user|>"})
    # allowed wins over disallowed; clean text passes
    assert trained.encode("<|user|>", allowed_special="all", disallowed_special="all") == [257]
    assert trained.encode("plain", disallowed_special="all") == trained.encode("plain")


def test_unknown_special_names_raise(trained):
    with pytest.raises(ValueError, match="allowed_special"):
        trained.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(TypeError, match="allowed_special"):
        trained.encode("x", allowed_special="<|endoftext|>")


def test_specials_never_merged_in_training():
    text = ("ab<|endoftext|>ab<|endoftext|>" * 50) + "<|endoftext|>"
    for method in ("train", "train_fast"):
        tok = BPETokenizer(["<|endoftext|>"])
        ids = getattr(tok, method)(text, 300)
        assert all(b"<|" not in v for i, v in tok.vocab.items() if i >= tok.base_vocab_size)
        assert ids.count(256) == 101


# --- pre-tokenization -------------------------------------------------------------------------
def test_chunked_pretokenization_equals_one_pass():
    compiled = compile_pattern(GPT4_SPLIT_PATTERN)
    text = MIXED * 4 + "a" * 50 + "   \n\n  x"
    one = pretokenize(text, compiled)
    for chunk_chars in (1, 3, 7, 64, 10_000):
        pieces = [p for window in iter_pretokens(text, compiled, chunk_chars) for p in window]
        assert pieces == one


def test_pattern_that_drops_text_is_rejected():
    tok = BPETokenizer(pattern=r"\p{L}+")
    with pytest.raises(ValueError, match="unmatched"):
        tok.encode("hello world")


# --- persistence ------------------------------------------------------------------------------
def test_to_dict_from_dict_save_load(trained, tmp_path):
    d = trained.to_dict()
    assert d["format"] == "g2c.bpe" and d["version"] == 2
    assert d["special_tokens"] == list(COURSE_SPECIAL_TOKENS)
    assert d["merges"][0][2] == trained.base_vocab_size
    json.dumps(d)
    again = BPETokenizer.from_dict(d)
    assert again.merges == trained.merges and again.vocab == trained.vocab
    path = trained.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(path)
    assert loaded.encode(MIXED, allowed_special="all") == trained.encode(
        MIXED, allowed_special="all"
    )
    with pytest.raises(ValueError, match="g2c.bpe"):
        BPETokenizer.from_dict({"format": "g2c.char", "version": 1})
    with pytest.raises(ValueError, match="version"):
        BPETokenizer.from_dict({**d, "version": 1})
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load(tmp_path / "missing.json")


def test_artifact_roundtrip(trained, tmp_path):
    from g2c.tokenizer.persistence import (
        load_artifact,
        load_token_ids,
        save_artifact,
        save_token_ids,
    )

    ids = trained.encode_fast(CORPORA["pseudo_en"])
    save_artifact(trained, ids, {"data": "pseudo_en", "seconds": 0.1}, tmp_path / "art")
    tok, loaded_ids, manifest = load_artifact(BPETokenizer, tmp_path / "art")
    assert loaded_ids.tolist() == ids
    assert manifest["vocab_size"] == trained.vocab_size and manifest["data"] == "pseudo_en"
    assert tok.merges == trained.merges
    save_token_ids(tmp_path / "x.bin", [1, 70000])
    assert load_token_ids(tmp_path / "x.bin").tolist() == [1, 70000]
    with pytest.raises(ValueError, match="format"):
        save_artifact(trained, ids, {"format": "x"}, tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        load_artifact(BPETokenizer, tmp_path / "nothing")


# --- CharTokenizer -------------------------------------------------------------------------------
def test_char_tokenizer(tmp_path):
    text = "hello world\nHELLO"
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text)) and tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert CharTokenizer(text).to_dict() == tok.to_dict()
    again = CharTokenizer.load(tok.save(tmp_path / "c.json"))
    assert again.encode("hole") == tok.encode("hole")
    with pytest.raises(ValueError, match="vocabulary"):
        tok.encode("xyz")
    with pytest.raises(ValueError, match="outside"):
        tok.decode([99])
    with pytest.raises(ValueError, match="g2c.char"):
        CharTokenizer.from_dict({"format": "g2c.bpe"})
    with pytest.raises(ValueError):
        CharTokenizer("")


# --- CLI -----------------------------------------------------------------------------------------
def test_cli_train_encode_decode_view(tmp_path, capsys):
    from g2c.cli import main
    from g2c.tokenizer.persistence import load_artifact

    data = tmp_path / "tiny.txt"
    data.write_text(CORPORA["pseudo_en"], encoding="utf-8")
    out = tmp_path / "tok"
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--text-file",
                str(data),
                "--vocab",
                "300",
                "--out",
                str(out),
                "--pattern",
                "gpt2",
                "--special",
                "course",
            ]
        )
        == 0
    )
    tok, ids, manifest = load_artifact(BPETokenizer, out)
    assert tok.vocab_size == 300 and manifest["config"]["pattern"] == "gpt2"
    assert tok.decode(ids.tolist()) == CORPORA["pseudo_en"]
    capsys.readouterr()

    assert (
        main(
            [
                "tokenizer",
                "encode",
                "--tokenizer",
                str(out),
                "--text",
                "the king<|end|>",
                "--allow-special",
            ]
        )
        == 0
    )
    printed = [int(x) for x in capsys.readouterr().out.split()]
    assert printed == tok.encode("the king<|end|>", allowed_special="all")
    assert printed[-1] == tok.special_to_id["<|end|>"]

    assert main(["tokenizer", "decode", "--tokenizer", str(out), *map(str, printed)]) == 0
    assert capsys.readouterr().out == "the king<|end|>\n"

    assert (
        main(
            [
                "tokenizer",
                "view",
                "--text-file",
                str(data),
                "--text",
                "the queen and the king",
                "--vocabs",
                "256,280,400",
            ]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert "vocab 256: 22 tokens" in shown and "vocab 280" in shown
    assert "the|" in shown or "t|h|e" in shown

    assert main(["tokenizer", "decode", "--tokenizer", str(out), "999999"]) == 2
    assert (
        main(["tokenizer", "train", "--text-file", str(data), "--vocab", "10", "--out", str(out)])
        == 2
    )


def test_train_fast_equals_train_on_real_text_prefix():
    path = Path(os.environ.get("G2C_DATA_DIR", "/nonexistent")) / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip("tinyshakespeare not in $G2C_DATA_DIR")
    text = path.read_text(encoding="utf-8")[:15_000]
    ref, fast = BPETokenizer(), BPETokenizer()
    assert ref.train(text, 350) == fast.train_fast(text, 350, chunk_chars=1000)
    assert ref.merges == fast.merges
