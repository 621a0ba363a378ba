"""Constrained decoding (g2c.inference.constrained): the trie path gives the same allowed
tokens and costs as the reference scan on many states, JSON-Schema fidelity (integer vs number,
nested objects, arrays, enums, booleans/null) checked with ``jsonschema`` on randomly sampled
outputs, and SmolLM2's forced tool calls equal on both paths (slow)."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch

from g2c.inference import Engine
from g2c.inference._vocab_trie import VocabTrie, clear_vocab_indexes, vocab_index
from g2c.inference.constrained import (
    SegmentConstraint,
    ToolCallConstraint,
    json_segments,
    schema_segments,
    step_segments,
    tool_call_segments,
)
from g2c.sampling import sample_next_token
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

jsonschema = pytest.importorskip("jsonschema")

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "ok": {"type": "boolean"},
        "none": {"type": "null"},
        "unit": {"enum": ["c", "f", 1, 10]},
        "maybe": {"type": ["string", "null"]},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "tags": {"type": "array",
                                                              "items": {"type": "string"}}},
            "required": ["lat", "tags"],
        },
        "points": {"type": "array", "items": {"type": "object", "properties": {
            "x": {"type": "integer"}, "label": {"enum": ["a", "b"]}}, "required": ["x", "label"]}},
        "sizes": {"type": "array", "items": {"type": "integer"}},
        "free": {"type": "object"},
    },
    "required": ["name", "count", "ratio", "ok", "none", "unit", "maybe", "where", "points",
                 "sizes", "free"],
    "additionalProperties": False,
}  # fmt: skip
TOOLS = [
    {"type": "function", "function": {"name": "calculator", "parameters": {
        "type": "object", "properties": {"expression": {"type": "string"}},
        "required": ["expression"]}}},
    {"type": "function", "function": {"name": "record", "parameters": SCHEMA}},
    {"type": "function", "function": {"name": "ping"}},
]  # fmt: skip
SAMPLE = {"name": "a \"b\" \\ é", "count": -12, "ratio": 1.5e-3, "ok": True, "none": None,
          "unit": 10, "maybe": None, "where": {"lat": 0.25, "tags": ["x", "y z"]},
          "points": [{"x": 3, "label": "b"}, {"x": 0, "label": "a"}], "sizes": [],
          "free": {"k": [1, {"n": None}]}}  # fmt: skip


def _text_vocab(n: int = 1500, seed: int = 0) -> list[bytes | None]:
    """A byte-level vocabulary with multi-byte tokens cut from JSON / tool-call text: every
    single byte, some specials (None), an empty token, and random 2-9 byte pieces."""
    corpus = (
        json.dumps(SAMPLE, ensure_ascii=False)
        + '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>'
        + '<tool_call>{"name": "ping", "arguments": {}}</tool_call> '
        + json.dumps(SAMPLE)
        + "Hello there, the answer is 391.\n\t[1, 2, 3e5, -0.5, true, false, null]"
    ).encode("utf-8")
    rng = random.Random(seed)
    pieces = set()
    while len(pieces) < n:
        k = rng.randrange(len(corpus) - 9)
        pieces.add(corpus[k : k + rng.randint(2, 9)])
    return [bytes([b]) for b in range(256)] + [None, None, b""] + sorted(pieces)


VOCAB = _text_vocab()


def _random_walk(state, vocab, rng: random.Random, n: int) -> list:
    """States reached by feeding random allowed tokens (found by brute force)."""
    out = [state]
    for _ in range(n):
        nxt = []
        for tb in vocab:
            if tb:
                s = state
                for b in tb:
                    s = step_segments(s, b)
                    if s is None:
                        break
                if s is not None:
                    nxt.append(s)
        if not nxt:
            break
        state = rng.choice(nxt)
        out.append(state)
    return out


@pytest.mark.parametrize("grammar", ["tools", "schema", "json"])
def test_trie_masks_equal_the_reference_scan_on_many_states(grammar):
    segs = {"tools": tool_call_segments(TOOLS), "schema": schema_segments(SCHEMA),
            "json": json_segments("any")}[grammar]  # fmt: skip
    fast = SegmentConstraint(segs, VOCAB)
    ref = SegmentConstraint(segs, VOCAB, method="scan")
    rng = random.Random(1)
    states = []
    for _ in range(10):
        states += _random_walk(fast.state, VOCAB, rng, 25)
    assert len(states) > 40
    for s in states:
        valid, costs = ref.masks(s)
        got_valid, got_costs = fast.masks(s)
        assert torch.equal(got_valid, valid) and torch.equal(got_costs, costs)
        fast.state = ref.state = s
        for remaining in (1, 2, 7, 30, 400):
            assert torch.equal(fast.allowed(remaining), ref.allowed(remaining))


def test_tool_call_undecided_masks_equal_the_reference():
    for required in (False, True):
        fast = ToolCallConstraint(TOOLS, VOCAB, required=required)
        ref = ToolCallConstraint(TOOLS, VOCAB, required=required, method="scan")
        text = b'<tool_call>{"name": "ping'
        for k in range(len(text) + 1):
            piece = text[k : k + 1]
            assert torch.equal(fast.allowed(50), ref.allowed(50)), (required, text[:k])
            if not piece:
                break
            for c in (fast, ref):
                c.advance(VOCAB.index(piece))
        assert fast.calling and ref.calling
    free = ToolCallConstraint(TOOLS, VOCAB)
    free.advance(VOCAB.index(b"H"))
    assert free.allowed(10) is None and free.mode == "free"


def test_vocab_index_is_shared_by_identity_and_content():
    clear_vocab_indexes()
    a = vocab_index(VOCAB)
    assert vocab_index(VOCAB) is a and vocab_index(list(VOCAB)) is a
    c1 = SegmentConstraint(json_segments("object"), VOCAB)
    c2 = SegmentConstraint(json_segments("object"), list(VOCAB))
    assert c1.index is c2.index is a
    assert c1.token_set() is c2.token_set()  # the mask computed once serves both
    trie = VocabTrie([(b"ab", 0), (b"ac", 1), (b"ab", 2)])
    node = trie.find(b"ab")
    assert sorted(trie.ids[node]) == [0, 2] and trie.find(b"x") is None
    assert sorted(trie.subtree_ids(trie.find(b"a"))) == [0, 1, 2]
    with pytest.raises(ValueError, match="method"):
        SegmentConstraint(json_segments(), VOCAB, method="fast")


def _accepts(segs, text: str) -> bool:
    s = SegmentConstraint(segs, VOCAB).state
    for b in text.encode("utf-8"):
        s = step_segments(s, b)
        if s is None:
            return False
    return s[1] >= len(s[0])  # complete


def test_schema_grammar_integer_number_arrays_enums():
    def one(prop):
        return schema_segments({"type": "object", "properties": {"v": prop}})

    integer, number = one({"type": "integer"}), one({"type": "number"})
    for v in ("12", "-3", "0"):
        assert _accepts(integer, f'{{"v": {v}}}') and _accepts(number, f'{{"v": {v}}}')
    for v in ("1.5", "1e3", "-0.0", "2E-2"):
        assert not _accepts(integer, f'{{"v": {v}}}') and _accepts(number, f'{{"v": {v}}}')
    for v in ("01", '"1"', "true", ""):  # no leading zero, no other type
        assert not _accepts(integer, f'{{"v": {v}}}')
    # the space after the colon is optional, and JSON whitespace before a value is allowed
    # (SmolLM2 writes `":` + ` ` + ` "` and an empty string without it)
    assert _accepts(integer, '{"v":1}') and _accepts(integer, '{"v":  1}')
    enum = one({"enum": [1, 10, "a", True]})
    assert all(_accepts(enum, f'{{"v": {v}}}') for v in ("1", "10", '"a"', "true"))
    assert not _accepts(enum, '{"v": 100}') and not _accepts(enum, '{"v": 2}')
    arr = one({"type": "array", "items": {"type": "integer"}})
    assert _accepts(arr, '{"v": []}') and _accepts(arr, '{"v": [1, 20, -3]}')
    assert not _accepts(arr, '{"v": [1,2]}') and not _accepts(arr, '{"v": [1.5]}')
    nested = one({"type": "array", "items": {"type": "object", "properties": {
        "k": {"type": "boolean"}, "n": {"type": "null"}}}})  # fmt: skip
    assert _accepts(nested, '{"v": [{"k": false, "n": null}, {"k": true, "n": null}]}')
    assert not _accepts(nested, '{"v": [{"k": 0, "n": null}]}')
    assert _accepts(one({"type": ["integer", "null"]}), '{"v": null}')
    assert not _accepts(one({"type": ["integer", "null"]}), '{"v": 0.5}')
    assert _accepts(one({"const": "x"}), '{"v": "x"}')


def _sample_constrained(segs, vocab, seed: int, budget: int) -> str:
    """Random-logit sampling (temperature 1) under the constraint: a stand-in for any model."""
    c = SegmentConstraint(segs, vocab)
    g = torch.Generator().manual_seed(seed)
    out = b""
    for k in range(budget):
        logits = torch.randn(len(vocab), generator=g) * 3
        tok = sample_next_token(logits, temperature=1.0, allowed=c.allowed(budget - k),
                                generator=g)  # fmt: skip
        c.advance(tok)
        out += vocab[tok]
        if c.done:
            break
    assert c.done
    return out.decode("utf-8", errors="replace")  # raw bytes in strings: the tokenizer's business


def test_random_sampling_under_the_schema_always_validates():
    segs = schema_segments(SCHEMA)
    for seed in range(12):
        budget = 220 if seed % 3 else 120  # tight budgets force the shortest completions
        value = json.loads(_sample_constrained(segs, VOCAB, seed, budget))
        jsonschema.validate(value, SCHEMA)
    call = tool_call_segments(TOOLS)
    for seed in range(6):
        text = _sample_constrained(call, VOCAB, 100 + seed, 260)
        body = json.loads(text.removeprefix("<tool_call>").removesuffix("</tool_call>"))
        fn = {t["function"]["name"]: t["function"] for t in TOOLS}[body["name"]]
        jsonschema.validate(body["arguments"], fn.get("parameters") or {"type": "object"})


def test_engine_with_a_tiny_model_writes_schema_valid_json():
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(len(tok.vocab), 32, 1, 2, 512, positional="rope",
                          generator=torch.Generator().manual_seed(0)).eval()  # fmt: skip
    engine = Engine(model, tok, max_batch_size=2)
    schema = {k: SCHEMA[k] for k in ("type", "properties")}
    schema["required"] = ["count", "ratio", "unit", "where", "sizes"]
    for seed in range(3):
        h = engine.complete("data:", max_new_tokens=150, temperature=1.0, seed=seed,
                            json_schema=schema)  # fmt: skip
        jsonschema.validate(json.loads(h.text), schema)


# -- SmolLM2: same masks and same greedy calls on both paths --------------------------------------
@pytest.mark.slow
def test_smollm2_tool_calls_equal_on_trie_and_scan():
    pytest.importorskip("gguf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from g2c.inference import LocalTransformerBackend, Request
    from g2c.inference.backends import TOOL_PROMPT
    from g2c.transformer import load_model

    try:
        loaded = load_model("smollm2")
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"SmolLM2 not available: {e}")
    torch.set_num_threads(1)
    backend = LocalTransformerBackend.from_loaded(loaded, max_batch_size=2)
    engine, vb = backend.engine, backend.engine.vocab_bytes()
    fn = TOOLS[0]["function"]
    system = TOOL_PROMPT.format(functions=json.dumps(fn))
    ids = backend._chat_ids([{"role": "system", "content": system},
                             {"role": "user", "content": "What is 17*23? use the calculator"}])  # fmt: skip
    handles = [engine.submit(Request(ids, max_new_tokens=80, temperature=0,
                                     constraint=ToolCallConstraint(TOOLS[:1], vb, required=True,
                                                                   method=method)))
               for method in ("scan", "trie")]  # one batch: the two decode together  # fmt: skip
    texts = [h.result() for h in handles]
    assert texts[0] == texts[1] and texts[0].startswith('<tool_call>{"name": "calculator"')
    fast = SegmentConstraint(tool_call_segments(TOOLS[:1]), vb)
    ref = SegmentConstraint(tool_call_segments(TOOLS[:1]), vb, method="scan")
    s = fast.state
    for k, b in enumerate(b'<tool_call>{"name": "calculator", "arguments": {"expression": "1'):
        s = step_segments(s, b)
        if k % 16 == 0 or k > 61:
            assert all(torch.equal(x, y) for x, y in zip(fast.masks(s), ref.masks(s)))
