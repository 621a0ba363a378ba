"""Constrained decoding (g2c.inference.constrained): the trie path gives the same allowed
tokens and costs as the reference scan on many states, JSON-Schema fidelity (integer vs number,
nested objects, arrays, enums, booleans/null, anyOf/oneOf, $ref/$defs, minItems/maxItems,
minLength/maxLength, pydantic schemas) checked with ``jsonschema`` on randomly sampled outputs,
the cost being an achievable completion from any state, and SmolLM2's forced tool calls equal
on both paths (slow)."""

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
    cost,
    json_segments,
    schema_segments,
    step_segments,
    tool_call_segments,
)
from g2c.sampling import sample_next_token
from g2c.sampling.json_constrained import step_bytes
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
RICH = {
    "type": "object",
    "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"},
                                                       "y": {"type": "integer"}},
                     "required": ["x", "y"]}},
    "properties": {
        "id": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 3}]},
        "shape": {"anyOf": [  # both begin with {"r": — followed together, then apart
            {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"]},
            {"type": "object", "properties": {"r": {"type": "integer"}, "h": {"enum": [1, 2]}},
             "required": ["r", "h"]}]},
        "at": {"$ref": "#/$defs/pt", "description": "a sibling kept beside the ref"},
        "path": {"type": "array", "items": {"$ref": "#/$defs/pt"}, "minItems": 1,
                 "maxItems": 3},
        "code": {"type": "string", "minLength": 2, "maxLength": 4},
        "note": {"type": ["object", "null"], "properties": {"t": {"type": "string",
                                                                  "minLength": 1}},
                 "required": ["t"]},
        "pick": {"oneOf": [{"const": 1}, {"const": 10}, {"enum": [{"a": [1]}, None]}]},
        "empty": {"type": "array", "maxItems": 0},
        "many": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
        "either": {"anyOf": [{"type": "array", "items": {"anyOf": [{"const": 1},
                                                                   {"type": "integer"}]},
                              "maxItems": 2},
                             {"type": "string", "minLength": 1}]},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "null"}],
                 "items": False},
        "mail": {"type": "string", "format": "email"},  # not enforced, never an error
    },
    "required": ["id", "shape", "at", "path", "code", "note", "pick", "empty", "many",
                 "either", "pair", "mail"],
    "additionalProperties": False,
}  # fmt: skip
SAMPLE = {"name": "a \"b\" \\ é", "count": -12, "ratio": 1.5e-3, "ok": True, "none": None,
          "unit": 10, "maybe": None, "where": {"lat": 0.25, "tags": ["x", "y z"]},
          "points": [{"x": 3, "label": "b"}, {"x": 0, "label": "a"}], "sizes": [],
          "free": {"k": [1, {"n": None}]}}  # fmt: skip
RICH_SAMPLE = {"id": "ab", "shape": {"r": 2, "h": 1}, "at": {"x": 1, "y": -2},
               "path": [{"x": 0, "y": 5}], "code": "é\\n", "note": None, "pick": {"a": [1]},
               "empty": [], "many": [True, False], "either": [1, 10], "pair": [3, None],
               "mail": "x@y"}  # fmt: skip


def _text_vocab(n: int = 1500, seed: int = 0) -> list[bytes | None]:
    """A byte-level vocabulary with multi-byte tokens cut from JSON / tool-call text: every
    single byte, some specials (None), an empty token, and random 2-9 byte pieces."""
    corpus = (
        json.dumps(SAMPLE, ensure_ascii=False)
        + '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>'
        + '<tool_call>{"name": "ping", "arguments": {}}</tool_call> '
        + json.dumps(SAMPLE)
        + json.dumps(RICH_SAMPLE, ensure_ascii=False)
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
            s = step_bytes(state, tb, step_segments) if tb else None
            if s is not None:
                nxt.append(s)
        if not nxt:
            break
        state = rng.choice(nxt)
        out.append(state)
    return out


@pytest.mark.parametrize("grammar", ["tools", "schema", "rich", "json"])
def test_trie_masks_equal_the_reference_scan_on_many_states(grammar):
    segs = {"tools": tool_call_segments(TOOLS), "schema": schema_segments(SCHEMA),
            "rich": schema_segments(RICH), "json": json_segments("any")}[grammar]  # fmt: skip
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


# -- richer schemas: anyOf/oneOf, $ref, item counts, string lengths ---------------------------------
def _one(prop, **defs):
    return schema_segments({"type": "object", "properties": {"v": prop}, "$defs": defs})


def test_schema_grammar_item_counts_and_string_lengths():
    arr = _one({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2})
    assert _accepts(arr, '{"v": [1]}') and _accepts(arr, '{"v": [12, -3]}')
    assert not _accepts(arr, '{"v": []}') and not _accepts(arr, '{"v": [1, 2, 3]}')
    at_least = _one({"type": "array", "minItems": 2})  # no items: any values, counted
    assert _accepts(at_least, '{"v": [1, "a", {"b": [2]}]}')
    assert not _accepts(at_least, '{"v": [[1, 2]]}')
    none = _one({"type": "array", "items": {"type": "string"}, "maxItems": 0})
    assert _accepts(none, '{"v": []}') and not _accepts(none, '{"v": [""]}')
    text = _one({"type": "string", "minLength": 2, "maxLength": 3})
    for v in ("ab", "abc", "é€", r"a\n", r"\u00e9\"", r"a\ud7ff", r"\\\\"):  # escape: 1 char
        assert _accepts(text, f'{{"v": "{v}"}}'), v
    for v in ("", "a", "abcd", "é€x😀", r"\\" * 4, r"\ud83d\ude00"):  # no surrogate escapes
        assert not _accepts(text, f'{{"v": "{v}"}}'), v
    assert _accepts(_one({"type": "string", "minLength": 1}), '{"v": "' + "x" * 50 + '"}')
    # counted strings take only well-formed UTF-8 (else the count would not be the length)
    for raw in (b"\xc3", b"\xa9a", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"):
        state = _run(SegmentConstraint(text, VOCAB).state, b'{"v": "a' + raw + b'"}')
        assert state is None or state[1] < len(state[0]), raw
    assert _run(SegmentConstraint(text, VOCAB).state, '{"v": "a\U0010ffff"}'.encode()) is not None


def test_schema_grammar_any_of_ref_and_tuples():
    shapes = _one({"anyOf": [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}},
         "required": ["a", "b"]}]})  # fmt: skip
    assert _accepts(shapes, '{"v": {"a": 1}}') and _accepts(shapes, '{"v": {"a": "x", "b": true}}')
    assert not _accepts(shapes, '{"v": {"a": 1, "b": true}}')
    assert not _accepts(shapes, '{"v": {"a": "x"}}')
    ones = _one({"type": "array", "items": {"anyOf": [{"const": 1}, {"type": "integer"}]}})
    assert _accepts(ones, '{"v": [1, 10, 1]}') and not _accepts(ones, '{"v": [1.5]}')
    # keywords beside anyOf apply to every alternative
    either = _one({"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "null"}},
                   "anyOf": [{"required": ["a"]}, {"required": ["b"]}]})  # fmt: skip
    assert _accepts(either, '{"v": {"a": null}}') and _accepts(either, '{"v": {"b": null}}')
    assert not _accepts(either, '{"v": {}}')
    ref = _one({"$ref": "#/$defs/P"}, P={"type": "object", "properties": {
        "q": {"$ref": "#/$defs/Q"}}}, Q={"enum": ["x", "y"]})  # fmt: skip
    assert _accepts(ref, '{"v": {"q": "y"}}') and not _accepts(ref, '{"v": {"q": "z"}}')
    # a recursive ref: the recursion point is any value of the type its target names
    tree = schema_segments({"$ref": "#/$defs/N", "$defs": {"N": {"type": "object", "properties": {
        "k": {"type": "array", "items": {"$ref": "#/$defs/N"}}}, "required": ["k"]}}})  # fmt: skip
    assert _accepts(tree, '{"k": [{"k": []}, {"any": 1}]}') and not _accepts(tree, '{"k": [1]}')
    pair = _one({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                 "minItems": 2, "maxItems": 2})  # fmt: skip
    assert _accepts(pair, '{"v": [1, "a"]}') and not _accepts(pair, '{"v": [1]}')
    opt = _one({"type": ["object", "null"], "properties": {"t": {"type": "integer"}}})
    assert _accepts(opt, '{"v": null}') and _accepts(opt, '{"v": {"t": 2}}')
    assert not _accepts(opt, '{"v": {}}')


def test_schema_unsupported_keywords_are_ignored_and_bad_bounds_raise():
    plain = {"type": "object", "properties": {"n": {"type": "number"}, "s": {"type": "string"},
                                              "a": {"type": "array"}}}  # fmt: skip
    noisy = json.loads(json.dumps(plain))
    noisy["properties"]["n"].update(minimum=0, exclusiveMaximum=3, multipleOf=0.5)
    noisy["properties"]["s"].update(pattern="^x", format="date")
    noisy["properties"]["a"].update(uniqueItems=True, contains={"type": "null"})
    noisy.update({"not": {"required": ["z"]}, "if": {}, "then": {}, "minProperties": 1})
    assert schema_segments(noisy) == schema_segments(plain)
    for bad, match in [({"type": "string", "minLength": 3, "maxLength": 2}, "minLength 3"),
                       ({"type": "array", "minItems": -1}, "minItems"),
                       ({"type": "array", "maxItems": 1.5}, "maxItems"),
                       ({"$ref": "#/$defs/Missing"}, "Missing"),
                       ({"$ref": "https://example.com/s.json"}, "same schema")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            _one(bad)
    assert schema_segments({"type": "object"}) == json_segments("object")


def _complete_greedily(state, text: bytes) -> bytes:
    """Follow bytes that lower :func:`cost` by one until it is 0: the cost is achievable."""
    order = b'"0}], :{[1tfnrue\\\\a' + bytes(range(256))
    need = cost(state)
    for _ in range(need):
        for b in order:
            nxt = step_segments(state, b)
            if nxt is not None and cost(nxt) == cost(state) - 1:
                state, text = nxt, text + bytes([b])
                break
        else:
            raise AssertionError(f"no byte lowers the cost from {text!r}")
    assert cost(state) == 0
    return text


def test_cost_is_an_achievable_completion_from_any_state():
    segs = schema_segments(RICH)
    rng = random.Random(3)
    n = 0
    for _ in range(5):
        state, text = SegmentConstraint(segs, VOCAB).state, b""
        for _ in range(50):
            done = _complete_greedily(state, text)
            value = json.loads(done.decode("utf-8", errors="replace"))  # raw bytes: see below
            jsonschema.validate(value, RICH)
            n += 1
            some = rng.sample(VOCAB[259:], 150) + VOCAB[32:127]  # a few tokens; every ASCII byte
            nxt = [(s, tb) for tb in some if (s := _run(state, tb)) is not None]
            if not nxt:
                break
            state, tb = rng.choice(nxt)
            text += tb
    assert n > 150


def _run(state, data: bytes):
    for b in data:
        state = step_segments(state, b)
        if state is None:
            return None
    return state


def _pydantic_schema() -> dict:
    pydantic = pytest.importorskip("pydantic")
    from typing import Literal

    class Address(pydantic.BaseModel):
        city: str = pydantic.Field(max_length=6)
        zip: str | None = None

    class Cat(pydantic.BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(pydantic.BaseModel):
        kind: Literal["dog"]
        good: bool

    class Person(pydantic.BaseModel):
        name: str = pydantic.Field(min_length=2, max_length=5, description="the name")
        age: int | None
        tags: list[str] = pydantic.Field(min_length=1, max_length=3)
        home: Address
        work: Address | None
        pet: Cat | Dog = pydantic.Field(discriminator="kind")
        pair: tuple[int, str]
        score: float | str

    return Person.model_json_schema()


def test_random_sampling_under_rich_and_pydantic_schemas_always_validates():
    person = _pydantic_schema()
    for schema in (RICH, person):
        segs = schema_segments(schema)
        least = cost(SegmentConstraint(segs, VOCAB).state)
        for seed in range(16):
            budget = least + (4 if seed % 4 == 0 else 60 if seed % 2 else 250)
            value = json.loads(_sample_constrained(segs, VOCAB, seed, budget))
            jsonschema.validate(value, schema)


def test_engine_with_a_tiny_model_writes_pydantic_valid_json():
    schema = _pydantic_schema()
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(len(tok.vocab), 32, 1, 2, 512, positional="rope",
                          generator=torch.Generator().manual_seed(1)).eval()  # fmt: skip
    engine = Engine(model, tok, max_batch_size=2)
    for seed in range(3):
        h = engine.complete("person:", max_new_tokens=160, temperature=1.0, seed=seed,
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
