"""Constrained decoding for the engine: JSON values, JSON-Schema-shaped objects, tool calls.

A constraint is a byte-level automaton over a *sequence of segments*; the engine asks it for a
mask of the tokens allowed next (``allowed(remaining)``) and tells it the token it chose
(``advance(token)``). Segments:

- ``("lit", b"...")`` — exactly these bytes;
- ``("opt", b"x")`` — that one byte or nothing (the space after a key's colon);
- ``("choice", ((option_bytes, continuation_segments), ...))`` — one of the options, then that
  option's own continuation (a tool call's arguments depend on the function's name; an enum's
  options may extend one another, as ``1`` and ``10``);
- ``("json", first)`` — one JSON value (``g2c.sampling.json_constrained``'s pushdown automaton);
  ``first`` restricts its first byte (``b'"'`` a string, ``b"{"`` an object, ``None`` any);
- ``("integer", first)`` — the same, but a number at its top level takes no fraction or
  exponent (JSON Schema ``integer``: ``12``, ``-3``, not ``1.5`` or ``1e3``);
- ``("array", item_segments)`` — ``[]`` or ``[item, item, ...]`` (separator ``", "``), each item
  the item segments.

:func:`schema_segments` turns a JSON Schema object into segments: the keys of ``properties`` in
schema order (the ``required`` ones when the schema lists them, else all), each followed by a
value of its ``type`` (``string``, ``integer``, ``number``, ``boolean``, ``null``, a list of
those), ``enum``/``const`` value, nested object (recursively) or ``array`` of ``items``
(recursively). Objects without ``properties`` and arrays without ``items`` are any well-formed
JSON object / array; string formats, patterns, lengths, numeric ranges and ``minItems`` are not
enforced. As in :func:`g2c.sampling.generate_json`, a token is allowed only if the shortest
completion still fits in the remaining token budget (one byte per token at worst, every single
byte being a token in a byte-level BPE), so the output always finishes.

Finding the allowed tokens: ``method="scan"`` is the readable reference — step every token's
bytes from the current state (memoized per constraint object); ``method="trie"`` (default)
walks a byte trie over the vocabulary built once per vocabulary and shares computed masks
across requests (:mod:`g2c.inference._vocab_trie`) — the same sets (tests/test_constrained.py),
tens to thousands of times fewer automaton steps.

Native tool calls (:func:`tool_call_segments`) have the form, documented for every g2c backend::

    <tool_call>{"name": "<one of the tools>", "arguments": {<that tool's parameters>}}</tool_call>

which is also what ``g2c.tools.parse_tool_calls`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from g2c.inference._vocab_trie import TokenSet, VocabIndex, vocab_index
from g2c.sampling.json_constrained import END, N_DOT, N_EXP, VALUE, completion, step

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

Segment = tuple
State = tuple  # (segments, index, sub-state); index == len(segments): done
METHODS = ("trie", "scan")
_WS = b" \t\n\r"
_JSON_KINDS = ("json", "integer")
#: after a key's colon: one optional space. Models write ``"key": "value"`` with the space
#: and the quote in one token (`` "``); a grammar that wrote the space itself would force the
#: split ``" "`` + ``"\""``, a tokenisation the model never saw, and SmolLM2 then closes the
#: string at once (``""``).
_SPACE = ("opt", b" ")

# shortest JSON value for each allowed first byte set (typed values)
_FIRST = {
    "string": b'"',
    "integer": b"-0123456789",
    "number": b"-0123456789",
    "boolean": b"tf",
    "null": b"n",
    "object": b"{",
    "array": b"[",
}
_MIN_VALUE = {ord('"'): 2, ord("{"): 2, ord("["): 2, ord("t"): 4, ord("f"): 5, ord("n"): 4}


def _json_cost(sub: tuple) -> int:
    mode, stack, only = sub
    if mode == VALUE and not stack and only is not None:  # typed value not started yet
        return min(_MIN_VALUE.get(b, 1) for b in only)
    return len(completion(sub))


def _start(segs: tuple, i: int) -> State:
    """State at the beginning of segment i (skipping nothing: every segment is non-empty)."""
    if i >= len(segs):
        return (segs, len(segs), None)
    kind, arg = segs[i]
    if kind == "lit" or kind == "array" or kind == "opt":
        return (segs, i, 0)
    if kind == "choice":
        return (segs, i, b"")
    return (segs, i, (VALUE, (), arg))  # json, integer


def _is_done(state: State) -> bool:
    return state[1] >= len(state[0])


def step_segments(state: State, b: int) -> State | None:
    """Advance by one byte; None when the byte is not allowed."""
    segs, i, sub = state
    if i >= len(segs):
        return None
    kind, arg = segs[i]
    if kind == "lit":
        if arg[sub] != b:
            return None
        return _start(segs, i + 1) if sub + 1 == len(arg) else (segs, i, sub + 1)
    if kind == "opt":  # the optional byte, or straight on to the next segment
        return _start(segs, i + 1) if b == arg[0] else step_segments(_start(segs, i + 1), b)
    if kind == "choice":
        return _step_choice(segs, i, sub, arg, b)
    if kind == "array":
        return _step_array(segs, i, sub, arg, b)
    # whitespace before a value stays allowed (JSON allows it): SmolLM2 writes the
    # calculator's expression after `":` + ` ` + ` "`, and an empty string ("") without it
    nxt = step(sub, b)  # json, integer
    if kind == "integer" and nxt is not None and nxt[0] in (N_DOT, N_EXP) and not nxt[1]:
        nxt = None  # an integer takes no fraction or exponent
    if nxt is None:
        if completion(sub) == b"" and not (sub[0] == VALUE and sub[2] is not None):
            return step_segments(_start(segs, i + 1), b)  # a number ended: byte goes on
        return None
    if nxt[0] == END:  # the value is closed
        return _start(segs, i + 1)
    return (segs, i, nxt)


def _step_choice(segs: tuple, i: int, sub: bytes, options: tuple, b: int) -> State | None:
    t = sub + bytes([b])
    alive = [(opt, cont) for opt, cont in options if opt.startswith(t)]
    if not alive:
        for opt, cont in options:
            if opt == sub:  # a complete option that others extend (1 and 10): byte goes on
                return step_segments(_start(tuple(cont) + segs[i + 1 :], 0), b)
        return None
    if all(opt == t for opt, _ in alive):  # one option (strings never prefix one another)
        return _start(tuple(alive[0][1]) + segs[i + 1 :], 0)
    return (segs, i, t)


# array sub-states: 0 before "[", 1 after "[", 2 after an item, 3 after ",", 4 after ", ",
# ("item", state of the item segments) inside an item
def _step_array(segs: tuple, i: int, sub: Any, items: tuple, b: int) -> State | None:
    if sub == 0:
        return (segs, i, 1) if b == 0x5B else None
    if sub == 2:
        if b == 0x2C:
            return (segs, i, 3)
        return _start(segs, i + 1) if b == 0x5D else None
    if sub == 3:
        return (segs, i, 4) if b == 0x20 else None
    if sub == 1 and b == 0x5D:
        return _start(segs, i + 1)
    inner = _start(items, 0) if sub in (1, 4) else sub[1]
    nxt = step_segments(inner, b)
    if nxt is None:
        if sub not in (1, 4) and cost(inner) == 0:  # the item (a number) ended: byte goes on
            return _step_array(segs, i, 2, items, b)
        return None
    return (segs, i, 2) if _is_done(nxt) else (segs, i, ("item", nxt))


def _segment_cost(seg: Segment) -> int:
    kind, arg = seg
    if kind == "opt":
        return 0
    if kind == "lit":
        return len(arg)
    if kind == "choice":
        return min(len(opt) + sum(_segment_cost(s) for s in cont) for opt, cont in arg)
    if kind == "array":
        return 2
    return _json_cost((VALUE, (), arg))


def _array_cost(sub: Any, items: tuple) -> int:
    if sub == 0:
        return 2
    if sub in (1, 2):
        return 1
    item = sum(_segment_cost(s) for s in items)
    if sub == 3:
        return item + 2
    return item + 1 if sub == 4 else cost(sub[1]) + 1


def cost(state: State) -> int:
    """Fewest bytes that complete every remaining segment from ``state``."""
    segs, i, sub = state
    if i >= len(segs):
        return 0
    rest = sum(_segment_cost(s) for s in segs[i + 1 :])
    kind, arg = segs[i]
    if kind == "opt":
        return rest
    if kind == "lit":
        return len(arg) - sub + rest
    if kind == "choice":
        return rest + min(
            len(opt) - len(sub) + sum(_segment_cost(s) for s in cont)
            for opt, cont in arg
            if opt.startswith(sub)
        )
    if kind == "array":
        return _array_cost(sub, arg) + rest
    return _json_cost(sub) + rest


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


class SegmentConstraint:
    """A constraint over ``segments`` for a vocabulary given as ``vocab_bytes`` (token id →
    bytes, None for special tokens, which are never allowed).

    ``allowed(remaining) -> bool (V,)``: tokens that keep the output a prefix of the language
    and leave a completion of at most ``remaining - 1`` tokens. ``advance(token_id)``;
    ``done`` once every segment is complete. ``method``: "trie" (default; masks from the
    vocabulary's shared byte trie, cached across requests by state) or "scan" (the reference:
    every token stepped, memoized per object); both give the same masks. Unknown method →
    ValueError.
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        vocab_bytes: Sequence[bytes | None],
        *,
        method: str = "trie",
    ) -> None:
        self.method = _check_method(method)
        self.vocab_bytes = vocab_bytes
        self.state: State = _start(tuple(segments), 0)
        self._memo: dict[State, tuple[torch.Tensor, torch.Tensor]] = {}
        self._index: VocabIndex | None = None

    @property
    def done(self) -> bool:
        """True once the whole sequence has been written."""
        return _is_done(self.state)

    @property
    def index(self) -> VocabIndex:
        """The vocabulary's shared :class:`~g2c.inference._vocab_trie.VocabIndex` (built on
        first use, ~0.3 s for 49,152 tokens, then found again by every constraint)."""
        if self._index is None:
            self._index = vocab_index(self.vocab_bytes)
        return self._index

    # -- reference: step every token -------------------------------------------------------------
    def _scan(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        V = len(self.vocab_bytes)
        valid = torch.zeros(V, dtype=torch.bool)
        costs = torch.full((V,), 1 << 30, dtype=torch.long)
        for i, tb in enumerate(self.vocab_bytes):
            if not tb:
                continue
            s = state
            for b in tb:
                s = step_segments(s, b)
                if s is None:
                    break
            if s is not None:
                valid[i] = True
                costs[i] = cost(s)
        return valid, costs

    # -- fast: walk the vocabulary's trie, share the result --------------------------------------
    def token_set(self, state: State | None = None) -> TokenSet:
        """The allowed tokens and their completion costs from ``state`` (default: the current
        one), computed on the vocabulary trie and cached in the shared index."""
        state = self.state if state is None else state
        return self.index.cached(("seg", state), lambda: _token_set(self.index, state))

    def masks(self, state: State | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(valid bool (V,), costs long (V,))`` from ``state`` (default current) by this
        constraint's method; cost 2**30 where not valid."""
        state = self.state if state is None else state
        if self.method == "scan":
            if state not in self._memo:
                self._memo[state] = self._scan(state)
            return self._memo[state]
        return self.token_set(state).dense()

    def allowed(self, remaining: int) -> torch.Tensor:
        """Bool (V,) mask of the tokens allowed with ``remaining`` tokens of budget left."""
        if self.method == "trie":
            return self.token_set().allowed(remaining)
        valid, costs = self.masks()
        ok = valid & (costs <= max(remaining - 1, 0))
        if not bool(ok.any()) and bool(valid.any()):  # over budget: head for the end
            ok = valid & (costs == costs[valid].min())
        return ok

    def min_tokens(self) -> int:
        """Fewest tokens (one byte each at worst) that finish the output from here."""
        return cost(self.state)

    def advance(self, token_id: int) -> None:
        """Read the chosen token's bytes (a token the mask did not allow → ValueError)."""
        s = self.state
        for b in self.vocab_bytes[token_id] or b"":
            s = step_segments(s, b)
            if s is None:
                raise ValueError(f"token {token_id} is not allowed by the constraint here")
        self.state = s


def _token_set(index: VocabIndex, state: State) -> TokenSet:
    segs, i, _ = state
    no_loops = i >= len(segs) or segs[i][0] in ("lit", "choice")  # nothing to find: skip 256 steps
    return index.token_set(state, step_segments, cost, min_loop=257 if no_loops else 32)


def json_segments(top_level: str = "any") -> list[Segment]:
    """One JSON value; ``top_level`` "any", "object" or "array" (else ValueError)."""
    first = {"any": None, "object": b"{", "array": b"["}
    if top_level not in first:
        raise ValueError(f"top_level must be one of {tuple(first)}, got {top_level!r}")
    return [("json", first[top_level])]


def _first_bytes(kinds: list[str]) -> bytes | None:
    """The allowed first bytes of a value of one of ``kinds`` (None: any value)."""
    if not kinds or any(k not in _FIRST for k in kinds):
        return None
    return bytes(sorted(set(b"".join(_FIRST[k] for k in kinds))))


def _value_segments(prop: dict[str, Any]) -> list[Segment]:
    """Segments for one value of the schema ``prop`` (see :func:`schema_segments`)."""
    if "const" in prop:
        return [("choice", ((json.dumps(prop["const"]).encode("utf-8"), ()),))]
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        opts = dict.fromkeys(json.dumps(v).encode("utf-8") for v in prop["enum"])
        return [("choice", tuple((opt, ()) for opt in opts))]
    kind = prop.get("type")
    if kind is None:  # shape given without a type
        kind = "object" if "properties" in prop else "array" if "items" in prop else None
    if kind == "object" and isinstance(prop.get("properties"), dict) and prop["properties"]:
        return _object_segments(prop)
    items = prop.get("items")
    if kind == "array" and isinstance(items, dict) and items:
        return [("array", tuple(_value_segments(items)))]
    kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []
    integer_only = "integer" in kinds and "number" not in kinds
    return [("integer" if integer_only else "json", _first_bytes(kinds))]


def _object_segments(schema: dict[str, Any]) -> list[Segment]:
    props = schema["properties"]
    required = schema.get("required")
    keys = [k for k in props if not isinstance(required, list) or k in required]
    if not keys:
        return [("lit", b"{}")]
    segs: list[Segment] = []
    for n, key in enumerate(keys):
        head = ("{" if n == 0 else ", ") + json.dumps(key) + ":"
        segs += [("lit", head.encode("utf-8")), _SPACE]
        segs += _value_segments(props[key] if isinstance(props[key], dict) else {})
    segs.append(("lit", b"}"))
    return segs


def schema_segments(schema: dict[str, Any] | None) -> list[Segment]:
    """Segments for a JSON object matching a JSON Schema (``type: object``): keys in
    ``properties`` order — the ``required`` ones when the schema lists them, else all — each
    followed by a value of its schema: ``type`` string / integer (no fraction or exponent) /
    number / boolean / null / a list of these, ``enum`` or ``const``, a nested object with
    ``properties`` (recursively), an ``array`` of ``items`` (recursively; ``[]`` or
    ``[a, b, ...]``). No properties → any JSON object. A schema that is not a dict → TypeError.
    Not enforced: string ``format``/``pattern``/lengths, numeric ranges, ``minItems``/
    ``maxItems``, ``anyOf``/``oneOf`` (their values are any JSON value)."""
    if schema is None:
        return [("json", b"{")]
    if not isinstance(schema, dict):
        raise TypeError(f"schema must be a dict (JSON Schema), got {type(schema).__name__}")
    props = schema.get("properties") or {}
    if not isinstance(props, dict) or not props:
        return [("json", b"{")]
    return _object_segments(schema)


def tool_call_segments(tools: Sequence[dict[str, Any]], *, open_marker: bool = True) -> list:
    """``<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>`` over OpenAI-format
    ``tools`` (``{"type": "function", "function": {name, description, parameters}}``), the
    arguments shaped by each tool's ``parameters`` schema. ``open_marker=False`` leaves out
    the opening marker (already written). No tools or a malformed entry → ValueError."""
    options = []
    for fn in normalize_tools(tools):
        name = json.dumps(fn["name"]).encode("utf-8")
        cont = [("lit", b', "arguments":'), _SPACE] + schema_segments(fn.get("parameters"))
        cont.append(("lit", ("}" + TOOL_CALL_CLOSE).encode("utf-8")))
        options.append((name, tuple(cont)))
    head = (TOOL_CALL_OPEN if open_marker else "") + '{"name":'
    return [("lit", head.encode("utf-8")), _SPACE, ("choice", tuple(options))]


def normalize_tools(tools: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The ``function`` dicts of OpenAI-format tools (a bare function dict is accepted too);
    each needs a string ``name`` and, if given, a dict ``parameters`` → ValueError otherwise."""
    if not tools:
        raise ValueError("tools must be a non-empty list of OpenAI-format function tools")
    out = []
    for n, tool in enumerate(tools):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValueError(
                f"tools[{n}] must be {{'type': 'function', 'function': {{'name': ..., "
                f"'parameters': {{...}}}}}}, got {tool!r}"
            )
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise ValueError(f"tools[{n}].function.parameters must be a JSON Schema dict")
        out.append(fn)
    return out


class ToolCallConstraint:
    """Lets the model answer in free text OR start a tool call; once its text begins with
    ``<tool_call>`` the rest is forced into the tool-call grammar (:func:`tool_call_segments`).

    ``required=True`` forces a tool call from the first token. While undecided, only tokens
    that would break the call's grammar right after the marker are masked. ``done`` once a
    call is complete (the engine stops there); ``calling`` tells whether a call started.
    ``method`` as for :class:`SegmentConstraint` ("trie" default, "scan" the reference).
    """

    def __init__(
        self,
        tools: Sequence[dict[str, Any]],
        vocab_bytes: Sequence[bytes | None],
        *,
        required: bool = False,
        method: str = "trie",
    ) -> None:
        self.vocab_bytes = vocab_bytes
        self.marker = TOOL_CALL_OPEN.encode("utf-8")
        self.inner = SegmentConstraint(tool_call_segments(tools), vocab_bytes, method=method)
        self.method = method
        self.text = b""
        self.mode = "call" if required else "undecided"  # undecided → call | free
        self._memo: dict[bytes, torch.Tensor] = {}

    @property
    def done(self) -> bool:
        """True once a tool call has been opened and its JSON closed (plain text never ends it)."""
        return self.mode == "call" and self.inner.done

    @property
    def calling(self) -> bool:
        """True while inside a ``<tool_call>`` block (the JSON is being constrained)."""
        return self.mode == "call"

    def min_tokens(self) -> int:
        """Fewest tokens that finish a call (0 while the model may still answer in text)."""
        return self.inner.min_tokens() if self.mode == "call" else 0

    def allowed(self, remaining: int) -> torch.Tensor | None:
        """Bool mask (V,) of the token ids allowed next with ``remaining`` tokens of budget (None:
        any token — free text)."""
        if self.mode == "free":
            return None
        if self.mode == "call":
            return self.inner.allowed(remaining)
        if self.method == "trie":
            key = ("undecided", self.inner.state, self.text)
            return self.inner.index.cached(key, self._undecided_trie)
        if self.text not in self._memo:
            self._memo[self.text] = self._undecided_scan()
        return self._memo[self.text]

    def _undecided_scan(self) -> torch.Tensor:
        """Reference: every token that could begin ``<tool_call>`` is run through the grammar."""
        mask = torch.ones(len(self.vocab_bytes), dtype=torch.bool)
        for i, tb in enumerate(self.vocab_bytes):
            if tb and self.marker.startswith((self.text + tb)[: len(self.marker)]):
                s = self.inner.state  # the text so far + tb must stay in the grammar
                for b in self.text + tb:
                    s = step_segments(s, b)
                    if s is None:
                        break
                mask[i] = s is not None
        return mask

    def _undecided_trie(self) -> torch.Tensor:
        """Fast: only tokens on the trie path of the rest of the marker, and below its end, can
        start a call; the others stay allowed without being looked at."""
        trie = self.inner.index.trie
        mask = torch.ones(len(self.vocab_bytes), dtype=torch.bool)
        s: State | None = self.inner.state
        for b in self.text:
            s = None if s is None else step_segments(s, b)
        node: int | None = 0
        for b in self.marker[len(self.text) :]:
            node = trie.children[node].get(b)
            if node is None:
                return mask  # no token spells the whole rest of the marker
            s = None if s is None else step_segments(s, b)
            mask[trie.ids[node]] = s is not None  # tokens that end inside the marker
        below = [t for child in trie.children[node].values() for t in trie.subtree_ids(child)]
        mask[below] = False  # tokens that go on past the marker: the grammar decides
        if s is not None:
            for tids, _ in trie.walk(s, step_segments, node):
                mask[tids] = True
        return mask

    def advance(self, token_id: int) -> None:
        """Read the decoded token ``token_id``: inside a call the JSON grammar advances (a token it
        forbids → ValueError); before one, the text is matched against ``<tool_call>``."""
        tb = self.vocab_bytes[token_id] or b""
        if self.mode == "call":
            self.inner.advance(token_id)
            return
        if self.mode == "free":
            return
        text = self.text + tb
        if text.startswith(self.marker):
            self.mode = "call"
            for b in text:
                self.inner.state = step_segments(self.inner.state, b)
        elif self.marker.startswith(text):
            self.text = text
        else:
            self.mode = "free"


def parse_tool_call(text: str) -> dict[str, Any] | None:
    """``{"name", "arguments"}`` from the first ``<tool_call>{json}</tool_call>`` in ``text``,
    or None when there is none or it does not parse."""
    start = text.find(TOOL_CALL_OPEN)
    if start < 0:
        return None
    body = text[start + len(TOOL_CALL_OPEN) :]
    end = body.find(TOOL_CALL_CLOSE)
    body = body if end < 0 else body[:end]
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", {})
    return {"name": obj["name"], "arguments": args if isinstance(args, dict) else {}}
