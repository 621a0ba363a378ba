"""Tests for g2c.sampling: filters, generate (with/without KV cache), beam search, streaming,
stop strings and JSON-constrained decoding."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from g2c.sampling import (
    JsonPrefixAutomaton,
    StreamingDetokenizer,
    allowed_token_mask,
    apply_repetition_penalty,
    apply_temperature,
    beam_search,
    generate,
    generate_cached,
    generate_json,
    stream_generate,
    top_k_filter,
    top_p_filter,
)
from g2c.sampling.streaming import complete_prefix_length
from g2c.tokenizer import BPETokenizer, CharTokenizer, UnigramTokenizer, WordPieceTokenizer
from g2c.transformer import TransformerLM

INF = float("-inf")


def _model(V=11, T=32, D=32, L=2, seed=0, **kw):
    torch.manual_seed(seed)
    m = TransformerLM(V, D, L, 4, T, **{"init": "gpt2", **kw})
    with torch.no_grad():  # larger weights than GPT-2 init so greedy paths are not flat
        for p in m.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    return m.eval()


# -- filters ---------------------------------------------------------------------------------
def test_apply_temperature():
    x = torch.tensor([1.0, 2.0, -4.0])
    assert torch.equal(apply_temperature(x, 2.0), x / 2)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(x, bad)


def test_top_k_filter():
    x = torch.tensor([[1.0, 5.0, 3.0, 2.0], [0.0, -1.0, 4.0, 4.5]])
    out = top_k_filter(x, 2)
    assert torch.equal(out, torch.tensor([[INF, 5.0, 3.0, INF], [INF, INF, 4.0, 4.5]]))
    assert torch.equal(top_k_filter(x, 4), x) and torch.equal(top_k_filter(x, 10), x)
    with pytest.raises(ValueError, match="k"):
        top_k_filter(x, 0)


def test_top_p_filter_smallest_prefix_and_argmax():
    probs = torch.tensor([0.1, 0.5, 0.3, 0.1])
    logits = probs.log()
    keep = lambda p: torch.isfinite(top_p_filter(logits, p)).tolist()  # noqa: E731
    assert keep(0.5) == [False, True, False, False]  # 0.5 alone reaches p
    assert keep(0.6) == [False, True, True, False]
    assert keep(0.75) == [False, True, True, False]  # 0.5 + 0.3 reaches 0.75
    k = keep(0.85)  # needs one of the two 0.1 tokens as well, not both
    assert sum(k) == 3 and k[1] and k[2]
    assert keep(1e-9) == [False, True, False, False]  # the argmax always survives
    assert keep(1.0) == [True, True, True, True]
    kept = top_p_filter(logits, 0.6)
    assert torch.equal(kept[torch.isfinite(kept)], logits[[1, 2]])
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="p"):
            top_p_filter(logits, bad)


def test_apply_repetition_penalty_ctrl():
    x = torch.tensor([[2.0, -2.0, 1.0, -1.0], [2.0, -2.0, 1.0, -1.0]])
    out = apply_repetition_penalty(x, torch.tensor([0, 1, 1]), 2.0)  # 1-D broadcasts to rows
    assert torch.equal(out, torch.tensor([[1.0, -4.0, 1.0, -1.0]] * 2))
    out = apply_repetition_penalty(x, torch.tensor([[2], [3]]), 2.0)
    assert torch.equal(out[0], torch.tensor([2.0, -2.0, 0.5, -1.0]))
    assert torch.equal(out[1], torch.tensor([2.0, -2.0, 1.0, -2.0]))
    assert torch.equal(x[0], torch.tensor([2.0, -2.0, 1.0, -1.0]))  # input untouched
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="penalty"):
            apply_repetition_penalty(x, torch.tensor([0]), bad)


def test_repetition_penalty_matches_transformers():
    from transformers import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    scores = torch.randn(3, 20)
    prev = torch.randint(0, 20, (3, 7))
    ref = RepetitionPenaltyLogitsProcessor(1.3)(prev, scores.clone())
    torch.testing.assert_close(apply_repetition_penalty(scores, prev, 1.3), ref)


def test_top_k_top_p_match_transformers():
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    scores = torch.randn(4, 50) * 3
    ids = torch.zeros(4, 1, dtype=torch.long)
    assert torch.equal(top_k_filter(scores, 7), TopKLogitsWarper(7)(ids, scores.clone()))
    for p in (0.3, 0.7, 0.95):
        ref = TopPLogitsWarper(p)(ids, scores.clone())
        assert torch.equal(torch.isfinite(top_p_filter(scores, p)), torch.isfinite(ref))


# -- generate --------------------------------------------------------------------------------
def test_generate_greedy_cache_equals_no_cache_200_tokens():
    model = _model(V=13, T=256, D=32, L=2)
    prompt = torch.tensor([1, 2, 3])
    with_cache = generate(model, prompt, 200, temperature=0)
    without = generate(model, prompt, 200, temperature=0, use_cache=False)
    assert with_cache.shape == (203,) and with_cache.dtype == torch.long
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache[:3], prompt)
    assert len(set(with_cache[3:].tolist())) > 2  # a non-trivial sequence


def test_generate_crops_context_past_max_seq_len():
    model = _model(V=13, T=16)
    prompt = torch.arange(20) % 13  # longer than max_seq_len already
    a = generate(model, prompt, 30, temperature=0)
    b = generate(model, prompt, 30, temperature=0, use_cache=False)
    assert torch.equal(a, b) and a.shape == (50,)
    # and the uncached path really uses only the last 16 tokens
    ctx = a[:-1][-16:]
    nxt = int(model(ctx[None])[0, -1].argmax())
    assert nxt == int(a[-1])
    # a short prompt whose generation runs past the window (the cache gets rebuilt)
    c = generate(model, torch.tensor([1, 2, 3]), 30, temperature=0)
    assert torch.equal(
        c, generate(model, torch.tensor([1, 2, 3]), 30, temperature=0, use_cache=False)
    )


def test_generate_sampling_reproducible_and_filters():
    model = _model()
    prompt = torch.tensor([0])
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = generate(model, prompt, 20, temperature=1.0, top_k=5, top_p=0.9, generator=g(1))
    b = generate(model, prompt, 20, temperature=1.0, top_k=5, top_p=0.9, generator=g(1))
    assert torch.equal(a, b)
    c = generate(model, prompt, 20, temperature=1.0, generator=g(1), use_cache=False)
    d = generate(model, prompt, 20, temperature=1.0, generator=g(1))
    assert torch.equal(c, d)  # cache does not change sampled tokens either
    # top_k=1 is greedy
    assert torch.equal(
        generate(model, prompt, 15, top_k=1, generator=g(3)),
        generate(model, prompt, 15, temperature=0),
    )


def test_generate_eos_stop_and_errors():
    model = _model()
    greedy = generate(model, torch.tensor([0]), 20, temperature=0)
    eos = int(greedy[5])
    out = generate(model, torch.tensor([0]), 20, temperature=0, eos_id=eos)
    first = greedy[1:].tolist().index(eos) + 1
    assert out.tolist() == greedy[: first + 1].tolist()
    with pytest.raises(ValueError, match="prompt"):
        generate(model, torch.tensor([], dtype=torch.long), 5)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.tensor([0]), 5, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, torch.tensor([0]), 5, top_p=0.0)
    with pytest.raises(ValueError, match="decode"):
        generate(model, torch.tensor([0]), 5, stop_strings=["a"])
    assert torch.equal(generate(model, [4, 5], 0), torch.tensor([4, 5]))


@pytest.mark.parametrize("bad", [-1, 11, 500])
def test_generate_rejects_out_of_vocabulary_prompt_before_any_forward(bad):
    model = _model()
    calls = []
    model.forward = lambda *a, **k: calls.append(1)  # would record any forward
    model.forward_prefill = lambda *a, **k: calls.append(1)
    for fn in (generate, generate_cached, stream_generate, beam_search):
        with pytest.raises(ValueError, match=r"\[0, 11\)"):
            fn(model, torch.tensor([1, bad, 2]), 3)
    assert not calls


def test_generate_cached_greedy_equals_generate_and_stops_at_max_seq_len():
    model = _model(V=13, T=24)
    prompt = torch.tensor([1, 2, 3])
    out = generate_cached(model, prompt, 10, temperature=0)
    assert out.dtype == torch.long and out.dim() == 1 and torch.equal(out[:3], prompt)
    assert torch.equal(out, generate(model, prompt, 10, temperature=0))
    assert torch.equal(generate_cached(model, [1, 2, 3], 10, temperature=0), out)
    full = generate_cached(model, prompt, 100, temperature=0)  # would pass max_seq_len
    assert full.shape == (24,)
    assert torch.equal(full, generate(model, prompt, 21, temperature=0))
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    kw = dict(temperature=0.9, top_k=5, top_p=0.95, repetition_penalty=1.2)
    assert torch.equal(
        generate_cached(model, prompt, 12, generator=g(), **kw),
        generate(model, prompt, 12, generator=g(), **kw),
    )
    eos = int(out[6])
    stopped = generate_cached(model, prompt, 10, temperature=0, eos_id=eos)
    assert int(stopped[-1]) == eos and len(stopped) <= 7
    assert torch.equal(generate_cached(model, prompt, 0), prompt)


def test_generate_cached_rejects_bad_arguments():
    model = _model(V=13, T=8)
    for bad in (torch.tensor([], dtype=torch.long), torch.tensor([[1, 2]]), torch.arange(8)):
        with pytest.raises(ValueError):
            generate_cached(model, bad, 3)
    with pytest.raises(ValueError, match="temperature"):
        generate_cached(model, torch.tensor([1]), 3, temperature=-0.5)
    with pytest.raises(TypeError, match="KV cache"):
        generate_cached(torch.nn.Linear(2, 2), torch.tensor([1]), 3)


def test_generate_no_grads_and_restores_train_mode():
    model = _model().train()
    generate(model, torch.tensor([0]), 3)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_repetition_penalty_changes_greedy_output():
    model = _model()
    plain = generate(model, torch.tensor([0]), 30, temperature=0)
    pen = generate(model, torch.tensor([0]), 30, temperature=0, repetition_penalty=5.0)
    assert len(set(pen[1:].tolist())) >= len(set(plain[1:].tolist()))
    assert not torch.equal(plain, pen)


def test_stream_generate_and_stop_strings():
    tok = CharTokenizer(chars=list("abcdefghijk"))
    model = _model(V=11)
    full = generate(model, torch.tensor([0]), 25, temperature=0)
    streamed = list(stream_generate(model, torch.tensor([0]), 25, temperature=0))
    assert streamed == full[1:].tolist()
    assert torch.is_grad_enabled()
    text = tok.decode(full[1:].tolist())
    stop = text[6:8]
    out = generate(model, torch.tensor([0]), 25, temperature=0, stop_strings=[stop],
                   decode=tok.decode)  # fmt: skip
    new_text = tok.decode(out[1:].tolist())
    assert new_text.endswith(stop) and stop not in new_text[:-1]
    assert text.startswith(new_text)


# -- beam search --------------------------------------------------------------------------------
def _seq_logprob(model, prompt, new):
    ids = torch.tensor(prompt + new)[None]
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0].float(), -1)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(new))


def test_beam_search_exhaustive_equals_brute_force():
    model = _model(V=4, T=16)
    prompt = [1, 2]
    best = max(
        itertools.product(range(4), repeat=3), key=lambda s: _seq_logprob(model, prompt, list(s))
    )
    out = beam_search(model, torch.tensor(prompt), 3, num_beams=16, length_penalty=0.0)
    assert out[2:].tolist() == list(best)
    out_nc = beam_search(model, torch.tensor(prompt), 3, num_beams=16, length_penalty=0.0,
                         use_cache=False)  # fmt: skip
    assert torch.equal(out, out_nc)


def test_beam_search_one_beam_is_greedy_and_eos():
    model = _model(V=11)
    greedy = generate(model, torch.tensor([3]), 12, temperature=0)
    assert torch.equal(beam_search(model, torch.tensor([3]), 12, num_beams=1), greedy)
    wide = beam_search(model, torch.tensor([3]), 12, num_beams=4, length_penalty=0.0)
    assert wide.shape == greedy.shape
    eos = int(greedy[4])
    out = beam_search(model, torch.tensor([3]), 12, num_beams=3, eos_id=eos)
    assert eos not in out[1:-1].tolist()
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(model, torch.tensor([3]), 5, num_beams=0)


# -- JSON ----------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(json_values, st.sampled_from([None, 2]))
def test_automaton_accepts_every_prefix_and_completes(value, indent):
    doc = json.dumps(value, indent=indent, ensure_ascii=bool(indent))
    data = doc.encode("utf-8")
    for i in range(len(data) + 1):
        a = JsonPrefixAutomaton()
        assert a.feed(data[:i]), data[:i]
        completed = data[:i] + a.completion().encode()
        json.loads(completed.decode("utf-8", errors="replace"))
    a = JsonPrefixAutomaton()
    a.feed(data)
    assert a.is_complete


@pytest.mark.parametrize(
    "bad",
    ['{,', "[1,]", "01", '"\x01"', "tru e", '{"a" 1}', "1 2", "{1:2}", "[1 2]", '"\\x"',
     "-", "1.e5", "}", '{"a":1]', "nul!", '"\\u12g"', "[]]"],
)  # fmt: skip
def test_automaton_rejects_invalid(bad):
    a = JsonPrefixAutomaton()
    # rejected outright, or (a prefix of valid JSON like "-") not a complete value yet
    assert not a.feed(bad) or not a.is_complete
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)


def test_automaton_states_and_top_level():
    a = JsonPrefixAutomaton()
    assert a.feed("12") and a.is_complete and not a.is_done
    assert a.feed(" ") and a.is_done and not a.accepts("3")
    o = JsonPrefixAutomaton(top_level="object")
    assert not o.accepts("[") and o.accepts(" {") and o.completion() == "{}"
    b = o.copy()
    assert b.feed('{"k": [tr') and b.completion() == "ue]}" and o.state != b.state
    with pytest.raises(ValueError, match="top_level"):
        JsonPrefixAutomaton(top_level="string")


def test_allowed_token_mask():
    vocab = [b"{", b'"a"', b":", b"1", b"}", b"]", b"x", None, b"", b"{}", b" "]
    a = JsonPrefixAutomaton()
    assert allowed_token_mask(a, vocab).tolist() == [
        True, True, False, True, False, False, False, False, False, True, True,
    ]  # fmt: skip
    a.feed("{")
    assert allowed_token_mask(a.state, vocab).tolist() == [
        False, True, False, False, True, False, False, False, False, False, True,
    ]  # fmt: skip


JSON_CHARS = sorted(set('{}[]":,0123456789-.eE+ truefalsnabc\\'))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("top_level", ["any", "object"])
def test_generate_json_random_model_is_valid(seed, top_level):
    tok = CharTokenizer(chars=JSON_CHARS)
    torch.manual_seed(seed)
    model = TransformerLM(tok.vocab_size, 16, 1, 2, 128)
    text = generate_json(model, tok, " ", max_new_tokens=60, top_level=top_level,
                         generator=torch.Generator().manual_seed(seed))  # fmt: skip
    value = json.loads(text)
    if top_level == "object":
        assert isinstance(value, dict)
    assert len(tok.encode(text)) <= 60


def test_generate_json_greedy_and_errors():
    tok = CharTokenizer(chars=JSON_CHARS)
    model = TransformerLM(tok.vocab_size, 16, 1, 2, 64)
    a = generate_json(model, tok, "{", max_new_tokens=30, temperature=0)
    b = generate_json(model, tok, "{", max_new_tokens=30, temperature=0, use_cache=False)
    assert a == b
    json.loads(a)
    with pytest.raises(ValueError, match="too small"):
        generate_json(model, tok, " ", max_new_tokens=1, top_level="object")
    tok2 = CharTokenizer(chars=list("abcdefghijklmnopqrstuvwxyz{}[]\"':, 123456789"))
    model2 = TransformerLM(tok2.vocab_size, 16, 1, 2, 64)
    with pytest.raises(ValueError, match="single-byte"):
        generate_json(model2, tok2, " ")


def test_generate_json_with_bpe_vocab():
    from g2c.tokenizer import BPETokenizer

    tok = BPETokenizer()
    tok.train('{"name": "x", "items": [1, 2, 3], "ok": true}' * 20, 300)
    torch.manual_seed(0)
    model = TransformerLM(300, 16, 1, 2, 128)
    text = generate_json(
        model, tok, "{", max_new_tokens=50, generator=torch.Generator().manual_seed(0)
    )
    json.loads(text)
    assert math.isfinite(len(text))


def test_example_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "11_sampling.py"
    spec = importlib.util.spec_from_file_location("example_11", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "identical=True" in out and "JSON-constrained" in out


# -- streaming detokenizer -----------------------------------------------------------------------
_TEXT = "héllo wörld, naïve café — 日本語のテキスト 😀🎉 ok\n" * 3


def _bpe() -> BPETokenizer:
    tok = BPETokenizer(special_tokens=("<|endoftext|>", "<|user|>"))
    tok.train(_TEXT, 300)
    return tok


def _stream(tok, ids) -> str:
    det = StreamingDetokenizer(tok)
    out = []
    for i in ids:
        out.append(det.push(i))
        assert len(det.pending_bytes) <= 3
    return "".join(out) + det.flush()


_BPE = _bpe()


@given(st.lists(st.integers(0, 299), max_size=40))
@settings(max_examples=200, deadline=None)
def test_streaming_detokenizer_equals_decode_for_random_ids(ids):
    assert _stream(_BPE, ids) == _BPE.decode(ids)


@given(st.lists(st.sampled_from([0xE6, 0x97, 0xA5, 0xF0, 0x9F, 0xED, 0xA0, 0x80, 0xC3, 0x41]),
                max_size=30))  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_streaming_detokenizer_equals_decode_on_byte_soup(ids):
    """Lead bytes, continuations, surrogate encodings (ED A0 80) and ASCII in every order."""
    assert _stream(_BPE, ids) == _BPE.decode(ids)


def test_streaming_detokenizer_holds_back_split_characters():
    tok = _BPE
    det = StreamingDetokenizer(tok)
    emoji = "😀".encode()  # F0 9F 98 80, pushed one byte token at a time
    byte_ids = list(emoji)  # a trained BPE keeps byte b at id b
    assert [det.push(i) for i in byte_ids] == ["", "", "", "😀"]
    assert det.push(byte_ids[0]) == "" and det.flush() == "\ufffd"  # incomplete at the end
    ids = tok.encode("a<|user|>b", allowed_special="all")
    assert _stream(tok, ids) == "a<|user|>b"  # special ids decode to their string
    assert complete_prefix_length(b"ab\xe6\x97") == 2
    assert complete_prefix_length(b"\xe6\x97\xa5") == 3
    assert complete_prefix_length(b"\x80\x80\x80\x80\x80") == 5
    with pytest.raises(ValueError):
        det.push(10**6)
    with pytest.raises(TypeError):
        det.push("a")
    with pytest.raises(TypeError):
        StreamingDetokenizer(object())


def test_streaming_detokenizer_does_not_redecode_the_sequence():
    class CountingBPE(BPETokenizer):
        def decode(self, ids, **kw):  # the streaming path must never call these
            raise AssertionError("decode called")

        def decode_bytes(self, ids):
            raise AssertionError("decode_bytes called")

    tok = CountingBPE.from_dict(_BPE.to_dict())
    ids = _BPE.encode(_TEXT * 5)
    det = StreamingDetokenizer(tok)
    text = "".join(det.push(i) for i in ids) + det.flush()
    assert text == _BPE.decode(ids)


def test_streaming_detokenizer_other_tokenizers():
    char = CharTokenizer(_TEXT)
    ids = char.encode(_TEXT)
    assert _stream(char, ids) == char.decode(ids) == _TEXT
    wp = WordPieceTokenizer()
    wp.train("the quick brown fox jumps over the lazy dog, the end " * 20, 80)
    ids = wp.encode("the quick fox jumps")
    assert _stream(wp, ids) == wp.decode(ids)
    uni = UnigramTokenizer().train("the quick brown fox jumps over the lazy dog " * 20, 40)
    for text in ("the lazy fox", " the  dog", "zebra!"):  # "zebra!" has unknown characters
        ids = uni.encode(text)
        assert _stream(uni, ids) == uni.decode(ids)
