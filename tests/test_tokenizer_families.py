"""Tokenizer families (module 04b): WordPiece and Unigram, checked against HF ``tokenizers``."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from g2c.tokenizer import unigram as ug
from g2c.tokenizer import wordpiece as wp
from g2c.tokenizer.unigram import SPACE, UnigramTokenizer
from g2c.tokenizer.wordpiece import WordPieceTokenizer

REPO = Path(__file__).resolve().parents[1]

# A small English corpus with repeated stems, so merges and pruning have something to find.
_STEMS = ["token", "train", "play", "read", "walk", "talk", "learn", "speak", "think", "build"]
_ENDINGS = ["", "s", "ed", "ing", "er", "ers", "able"]
_FILLER = "the a of and to in is it that was he for on are with as his they at be this".split()


def _corpus(n_lines: int = 160) -> str:
    lines = []
    for i in range(n_lines):
        stem = _STEMS[(i * 7) % len(_STEMS)]
        end = _ENDINGS[(i * 3) % len(_ENDINGS)]
        f1, f2 = _FILLER[i % len(_FILLER)], _FILLER[(i * 5 + 3) % len(_FILLER)]
        other = _STEMS[(i * 3 + 1) % len(_STEMS)] + _ENDINGS[(i + 2) % len(_ENDINGS)]
        punct = ",.;!?"[i % 5]
        lines.append(f"{f1.capitalize()} {stem}{end} {f2} {other}{punct} ({i % 13}) qu'il")
    return "\n".join(lines)


CORPUS = _corpus()
PROBES = [
    "The players were reading, walking and talking: unthinkable!",
    "He buildable learns (7) tokens; quietly?",
    "Zebra \u00e9t\u00e9 \u65e5\u672c qqq xyz",  # unseen characters
    "tokenizers " * 3 + "a",
    "",
]


# --- WordPiece ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wp_tok() -> WordPieceTokenizer:
    return WordPieceTokenizer().train(CORPUS, 150)


def test_wordpiece_pre_tokenize_matches_bert_pre_tokenizer():
    pre = pytest.importorskip("tokenizers").pre_tokenizers.BertPreTokenizer()
    for text in [*PROBES, "a\x1cb c\u00a0d \u3000e $x+y=z \u00a3 5 \u2014 \u00bfqu\u00e9?"]:
        assert wp.pre_tokenize(text) == [w for w, _ in pre.pre_tokenize_str(text)]


def test_wordpiece_encoder_matches_hf(wp_tok):
    pytest.importorskip("tokenizers")
    hf = wp_tok.to_hf_tokenizer()
    assert wp_tok.tokenize("players") != ["[UNK]"]  # the probes exercise real pieces
    long_word = "x" * (wp_tok.max_input_chars_per_word + 1)
    for text in [*PROBES, CORPUS[:500], long_word + " ok"]:
        enc = hf.encode(text)
        assert wp_tok.tokenize(text) == enc.tokens
        assert wp_tok.encode(text) == enc.ids


def test_wordpiece_trainer_properties(wp_tok):
    assert len(wp_tok.vocab) == 150
    assert wp_tok.id_to_token[:5] == list(wp.DEFAULT_SPECIAL_TOKENS)
    for ch in set(CORPUS) - set(" \n"):  # every training character, in both positions
        assert ch in wp_tok.vocab and "##" + ch in wp_tok.vocab
    assert all(tok != "[UNK]" for tok in wp_tok.tokenize(CORPUS))
    # merged tokens are spelled by their merge, in merge order
    for a, b, score, count in wp_tok.merges:
        assert wp._join_pair(a, b) in wp_tok.vocab and count >= 2 and 0 < score <= 1


def test_wordpiece_each_merge_is_the_argmax_of_the_likelihood_score():
    """Replay training: before each merge, recount from scratch and check it had the best score."""
    tok = WordPieceTokenizer().train(CORPUS, 140)
    words_freq = Counter(wp.pre_tokenize(CORPUS))
    words, freqs = [wp._word_to_chars(w) for w in words_freq], list(words_freq.values())
    for a, b, score, count in tok.merges:
        piece_count, pair_count = wp._count_all(words, freqs)
        best = max(
            c / (piece_count[x] * piece_count[y]) for (x, y), c in pair_count.items() if c >= 2
        )
        assert pair_count[a, b] == count
        assert math.isclose(score, pair_count[a, b] / (piece_count[a] * piece_count[b]))
        assert score == best
        words = [wp._merge_word(w, a, b, wp._join_pair(a, b)) for w in words]


def test_wordpiece_fast_trainer_equals_reference_and_is_deterministic():
    fast = WordPieceTokenizer().train(CORPUS, 170, fast=True)
    ref = WordPieceTokenizer().train(CORPUS, 170, fast=False)
    again = WordPieceTokenizer().train(CORPUS, 170)
    assert fast.merges == ref.merges == again.merges
    assert fast.id_to_token == ref.id_to_token == again.id_to_token


def test_wordpiece_score_beats_count_and_ties_are_deterministic():
    base = len(wp.DEFAULT_SPECIAL_TOKENS)
    # score(a,##b) = 3/(6*3) = 1/6 < score(c,##d) = 1/(1*1): the rarer but "sticky" pair wins
    tok = WordPieceTokenizer().train("ab ab ab a a a cd", base + 8 + 1, min_frequency=1)
    assert tok.merges[0][:2] == ("c", "##d")
    # score(r,##s) = 2/(4*2) = score(p,##q) = 1/(2*2) = 1/4 → higher pair count wins: (r, ##s)
    text = "rs rs r r pq p xq x x x x"
    tok = WordPieceTokenizer().train(text, base + 10 + 1, min_frequency=1)
    assert tok.merges[0][:2] == ("r", "##s") and tok.merges[0][2] == 0.25
    # equal score and count → lexicographically smallest pair: (a, ##b) before (c, ##d)
    tok = WordPieceTokenizer().train("cd ab cd ab cd ab", base + 8 + 1, min_frequency=1)
    assert tok.merges[0][:2] == ("a", "##b")


def test_wordpiece_min_frequency_stops_training():
    tok = WordPieceTokenizer().train("ab ab cd", 100, min_frequency=2)
    assert [m[:2] for m in tok.merges] == [("a", "##b")]
    assert len(tok.vocab) == 5 + 8 + 1


def test_wordpiece_decode_and_round_trip(wp_tok):
    text = "The players were reading, quietly."
    assert wp_tok.decode(wp_tok.encode(text)) == " ".join(wp.pre_tokenize(text))
    cls_sep = wp_tok.encode(text, add_special_tokens=True)
    assert cls_sep[0] == wp_tok.vocab["[CLS]"] and cls_sep[-1] == wp_tok.vocab["[SEP]"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=sorted(set(CORPUS)), max_size=60))
def test_wordpiece_decode_is_words_joined_by_spaces(wp_tok, text):
    assert wp_tok.decode(wp_tok.encode(text)) == " ".join(wp.pre_tokenize(text))


def test_wordpiece_persistence_round_trip(tmp_path, wp_tok):
    path = wp_tok.save(tmp_path / "wp.json")
    loaded = WordPieceTokenizer.load(path)
    assert loaded.id_to_token == wp_tok.id_to_token and loaded.merges == wp_tok.merges
    assert loaded.encode(CORPUS[:300]) == wp_tok.encode(CORPUS[:300])
    assert json.loads(path.read_text())["format"] == "g2c.wordpiece"


def test_wordpiece_bad_input():
    with pytest.raises(ValueError, match="vocab_size"):
        WordPieceTokenizer().train("abc", 8)
    with pytest.raises(ValueError, match="min_frequency"):
        WordPieceTokenizer().train("abc", 100, min_frequency=0)
    with pytest.raises(ValueError, match="duplicates"):
        WordPieceTokenizer(("[UNK]", "[UNK]"))
    with pytest.raises(ValueError, match="unk_token"):
        WordPieceTokenizer(("[PAD]",))
    with pytest.raises(TypeError, match="text"):
        WordPieceTokenizer().encode(b"bytes")
    with pytest.raises(ValueError, match="out of range"):
        WordPieceTokenizer().decode([99])
    with pytest.raises(ValueError, match="g2c.wordpiece"):
        WordPieceTokenizer.from_dict({"format": "g2c.unigram", "version": 1})


# --- Unigram -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ug_tok() -> UnigramTokenizer:
    return UnigramTokenizer().train(CORPUS, 120)


def test_unigram_pre_tokenize_matches_metaspace():
    pre = pytest.importorskip("tokenizers").pre_tokenizers.Metaspace(
        prepend_scheme="always", split=True
    )
    for text in ["a  b\nc ", "Hello world", *PROBES]:
        assert ug.pre_tokenize(text) == [w for w, _ in pre.pre_tokenize_str(text)]
    assert ug.pre_tokenize(" a") == [SPACE, SPACE + "a"]  # we keep the leading space; HF drops it


def test_unigram_viterbi_matches_hf(ug_tok):
    pytest.importorskip("tokenizers")
    hf = ug_tok.to_hf_tokenizer()
    probes = [p for p in PROBES if not p.startswith(" ")] + [CORPUS[:600], "token" * 5]
    n_multi = 0
    for text in probes:
        enc = hf.encode(text)
        assert ug_tok.encode(text) == enc.ids
        ours = ug_tok.tokenize(text)  # HF shows an unknown span's text where we show <unk>
        assert [o if o != "<unk>" else t for o, t in zip(ours, enc.tokens)] == enc.tokens
        n_multi += sum(len(p) > 2 for p in ours)
    assert n_multi > 10  # the lattice really had choices to make


def test_unigram_viterbi_ties_break_like_hf():
    """Three segmentations of "▁ab" score exactly -3.0; the first-found path wins, as in HF."""
    pytest.importorskip("tokenizers")
    pieces = [(SPACE, -1.0), ("a", -1.0), ("b", -1.0), (SPACE + "a", -2.0), ("ab", -2.0)]
    tok = UnigramTokenizer(pieces)
    assert tok.tokenize("ab") == [SPACE, "ab"]
    for text in ["ab", "ab ab", "ba ab", "aab", "abab"]:
        assert tok.encode(text) == tok.to_hf_tokenizer().encode(text).ids


def test_unigram_viterbi_is_the_best_segmentation():
    """Brute force over all segmentations of short words equals the Viterbi answer."""
    scores = {"a": -2.0, "b": -2.5, "ab": -3.0, "ba": -4.0, "aba": -4.2, "bab": -6.0}

    def best(word):
        if not word:
            return 0.0, []
        cands = []
        for k in range(1, len(word) + 1):
            if word[:k] in scores:
                s, rest = best(word[k:])
                cands.append((scores[word[:k]] + s, [word[:k], *rest]))
        return max(cands, key=lambda c: c[0])

    for word in ["ab", "aba", "abab", "babab", "aabba", "bbaab"]:
        path = ug._viterbi(word, scores, ug._prefixes(scores), -99.0)
        assert math.isclose(sum(scores[p] for p in path), best(word)[0])


def test_unigram_forward_backward_expected_counts():
    """Expected counts sum over segmentations weighted by their probability (brute force)."""
    scores = {"a": math.log(0.3), "b": math.log(0.2), "ab": math.log(0.4), "ba": math.log(0.1)}
    word = "abab"
    segs = [
        ["a", "b", "a", "b"],
        ["ab", "a", "b"],
        ["a", "ba", "b"],
        ["a", "b", "ab"],
        ["ab", "ab"],
    ]
    probs = [math.exp(sum(scores[p] for p in s)) for s in segs]
    log_z, expected = ug._forward_backward(word, scores, ug._prefixes(scores))
    assert math.isclose(log_z, math.log(sum(probs)))
    for piece in scores:
        want = sum(p * s.count(piece) for p, s in zip(probs, segs)) / sum(probs)
        assert math.isclose(expected.get(piece, 0.0), want, rel_tol=1e-12, abs_tol=1e-15)


def test_unigram_training_properties(ug_tok):
    assert len(ug_tok.vocab) == 120 and ug_tok.vocab[0] == "<unk>"
    assert set(CORPUS.replace(" ", SPACE)) <= set(ug_tok.vocab)  # every character kept
    assert ug_tok.scores[1:] == sorted(ug_tok.scores[1:], reverse=True)
    assert all(s < 0 for s in ug_tok.scores[1:])
    assert any(len(p) >= 4 for p in ug_tok.vocab)  # learned real subwords
    assert len(ug_tok.tokenize(CORPUS)) < 0.5 * len(CORPUS)
    again = UnigramTokenizer().train(CORPUS, 120)
    assert again.vocab == ug_tok.vocab and again.scores == ug_tok.scores


def test_unigram_em_raises_likelihood_and_vocab_size_is_respected():
    logs = []
    tok = UnigramTokenizer().train(CORPUS, 60, num_sub_iterations=3, progress_callback=logs.append)
    assert len(tok.vocab) == 60
    first_round = [d["log_likelihood"] for d in logs if d["round"] == 0]
    # EM steps (before any pruning) raise the corpus log-likelihood; we check it on this corpus
    # (the digamma M-step is variational Bayes, not plain maximum likelihood)
    assert first_round == sorted(first_round) and first_round[0] < first_round[-1]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=sorted(set(CORPUS)), max_size=80))
def test_unigram_round_trip_is_lossless(ug_tok, text):
    ids = ug_tok.encode(text)
    assert 0 not in ids
    assert ug_tok.decode(ids) == text


def test_unigram_unknown_characters_fuse_into_one_unk(ug_tok):
    ids = ug_tok.encode("token\u65e5\u672cZ")
    assert ids.count(0) == 1
    assert ug_tok.decode(ids).endswith("\u2047")


def test_unigram_persistence_round_trip(tmp_path, ug_tok):
    loaded = UnigramTokenizer.load(ug_tok.save(tmp_path / "ug.json"))
    assert loaded.vocab == ug_tok.vocab and loaded.scores == ug_tok.scores
    assert loaded.encode(CORPUS[:400]) == ug_tok.encode(CORPUS[:400])


def test_unigram_bad_input():
    with pytest.raises(ValueError, match="vocab_size"):
        UnigramTokenizer().train("abcdef", 5)
    with pytest.raises(ValueError, match="shrinking_factor"):
        UnigramTokenizer().train("abc", 50, shrinking_factor=1.5)
    with pytest.raises(ValueError, match="unique"):
        UnigramTokenizer([("a", -1.0), ("a", -2.0)])
    with pytest.raises(TypeError, match="text"):
        UnigramTokenizer().encode(None)
    with pytest.raises(ValueError, match="out of range"):
        UnigramTokenizer([("a", -1.0)]).decode([5])
    with pytest.raises(ValueError, match="g2c.unigram"):
        UnigramTokenizer.from_dict({"format": "g2c.wordpiece", "version": 1})


# --- the lesson's example -----------------------------------------------------------------------


def test_example_smoke(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import importlib

        example = importlib.import_module("04_tokenizer_families")
    finally:
        sys.path.pop(0)
    assert example.main(["--smoke", "--out", str(tmp_path / "table.json")]) == 0
    result = json.loads((tmp_path / "table.json").read_text())
    rows = result["rows"]
    assert {r["family"] for r in rows} == {"BPE", "WordPiece", "Unigram"}
    assert all(
        r["vocab_len"] <= 300 and r["tokens"] > 0 and r["chars_per_token"] > 1.0 for r in rows
    )
    for r in rows:  # the visible split really is the passage, cut into the counted pieces
        split = result["splits"][f"{r['family']}@{r['vocab_size']}"]
        assert len(split) == r["tokens"]
    assert "".join(result["splits"]["BPE@300"]) == result["passage"]
    assert "BPE" in capsys.readouterr().out
