"""Constrained decoding for the engine: JSON values, JSON-Schema-shaped objects, tool calls.

A constraint is a byte-level automaton over a *sequence of segments*; the engine asks it for a
mask of the tokens allowed next (``allowed(remaining)``) and tells it the token it chose
(``advance(token)``). Segments:

- ``("lit", b"...")`` — exactly these bytes;
- ``("choice", ((option_bytes, continuation_segments), ...))`` — one of the options, then that
  option's own continuation (a tool call's arguments depend on the function's name);
- ``("json", first)`` — one JSON value (``g2c.sampling.json_constrained``'s pushdown automaton);
  ``first`` restricts its first byte (``b'"'`` a string, ``b"{"`` an object, ``None`` any).

:func:`schema_segments` turns a flat JSON Schema object (``properties`` with ``type`` /
``enum``, ``required``) into segments that write the keys in schema order with values of the
right JSON type; nested objects and arrays are constrained to be well-formed JSON of the right
kind, not further. As in :func:`g2c.sampling.generate_json`, a token is allowed only if the
shortest completion still fits in the remaining token budget (one byte per token at worst,
every single byte being a token in a byte-level BPE), so the output always finishes.

Native tool calls (:func:`tool_call_segments`) have the form, documented for every g2c backend::

    <tool_call>{"name": "<one of the tools>", "arguments": {<that tool's parameters>}}</tool_call>

which is also what ``g2c.tools.parse_tool_calls`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from g2c.sampling.json_constrained import END, VALUE, completion, step

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

Segment = tuple
State = tuple  # (segments, index, sub-state); index == len(segments): done

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
    if kind == "lit":
        return (segs, i, 0)
    if kind == "choice":
        return (segs, i, b"")
    return (segs, i, (VALUE, (), arg))  # json


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
    if kind == "choice":
        t = sub + bytes([b])
        alive = [(opt, cont) for opt, cont in arg if opt.startswith(t)]
        if not alive:
            return None
        for opt, cont in alive:
            if opt == t:  # options never prefix one another (they end with a closing quote)
                rest = tuple(cont) + segs[i + 1 :]
                return _start(rest, 0)
        return (segs, i, t)
    nxt = step(sub, b)  # json
    if nxt is None:
        if completion(sub) == b"" and not (sub[0] == VALUE and sub[2] is not None):
            return step_segments(_start(segs, i + 1), b)  # a number ended: byte goes on
        return None
    if nxt[0] == END:  # the value is closed
        return _start(segs, i + 1)
    return (segs, i, nxt)


def _segment_cost(seg: Segment) -> int:
    kind, arg = seg
    if kind == "lit":
        return len(arg)
    if kind == "choice":
        return min(len(opt) + sum(_segment_cost(s) for s in cont) for opt, cont in arg)
    return _json_cost((VALUE, (), arg))


def cost(state: State) -> int:
    """Fewest bytes that complete every remaining segment from ``state``."""
    segs, i, sub = state
    if i >= len(segs):
        return 0
    rest = sum(_segment_cost(s) for s in segs[i + 1 :])
    kind, arg = segs[i]
    if kind == "lit":
        return len(arg) - sub + rest
    if kind == "choice":
        return rest + min(
            len(opt) - len(sub) + sum(_segment_cost(s) for s in cont)
            for opt, cont in arg
            if opt.startswith(sub)
        )
    return _json_cost(sub) + rest


class SegmentConstraint:
    """A constraint over ``segments`` for a vocabulary given as ``vocab_bytes`` (token id →
    bytes, None for special tokens, which are never allowed).

    ``allowed(remaining) -> bool (V,)``: tokens that keep the output a prefix of the language
    and leave a completion of at most ``remaining - 1`` tokens. ``advance(token_id)``;
    ``done`` once every segment is complete. Masks are memoized per automaton state.
    """

    def __init__(self, segments: Sequence[Segment], vocab_bytes: Sequence[bytes | None]) -> None:
        self.vocab_bytes = vocab_bytes
        self.state: State = _start(tuple(segments), 0)
        self._memo: dict[State, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def done(self) -> bool:
        """True once the whole sequence has been written."""
        return self.state[1] >= len(self.state[0])

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

    def allowed(self, remaining: int) -> torch.Tensor:
        """Bool (V,) mask of the tokens allowed with ``remaining`` tokens of budget left."""
        if self.state not in self._memo:
            self._memo[self.state] = self._scan(self.state)
        valid, costs = self._memo[self.state]
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


def json_segments(top_level: str = "any") -> list[Segment]:
    """One JSON value; ``top_level`` "any", "object" or "array" (else ValueError)."""
    first = {"any": None, "object": b"{", "array": b"["}
    if top_level not in first:
        raise ValueError(f"top_level must be one of {tuple(first)}, got {top_level!r}")
    return [("json", first[top_level])]


def _value_segments(prop: dict[str, Any]) -> list[Segment]:
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        opts = tuple((json.dumps(v).encode("utf-8"), ()) for v in prop["enum"])
        return [("choice", opts)]
    kind = prop.get("type")
    return [("json", _FIRST.get(kind) if isinstance(kind, str) else None)]


def schema_segments(schema: dict[str, Any] | None) -> list[Segment]:
    """Segments for a JSON object matching a flat JSON Schema (``type: object``): keys in
    ``properties`` order — the ``required`` ones when the schema lists them, else all — each
    followed by a value of its ``type`` (or one of its ``enum`` values). No properties → any
    JSON object. A schema that is not a dict → TypeError."""
    if schema is None:
        return [("json", b"{")]
    if not isinstance(schema, dict):
        raise TypeError(f"schema must be a dict (JSON Schema), got {type(schema).__name__}")
    props = schema.get("properties") or {}
    if not isinstance(props, dict) or not props:
        return [("json", b"{")]
    required = schema.get("required")
    keys = [k for k in props if not isinstance(required, list) or k in required]
    if not keys:
        return [("lit", b"{}")]
    segs: list[Segment] = []
    for n, key in enumerate(keys):
        head = ("{" if n == 0 else ", ") + json.dumps(key) + ": "
        segs.append(("lit", head.encode("utf-8")))
        segs += _value_segments(props[key] if isinstance(props[key], dict) else {})
    segs.append(("lit", b"}"))
    return segs


def tool_call_segments(tools: Sequence[dict[str, Any]], *, open_marker: bool = True) -> list:
    """``<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>`` over OpenAI-format
    ``tools`` (``{"type": "function", "function": {name, description, parameters}}``), the
    arguments shaped by each tool's ``parameters`` schema. ``open_marker=False`` leaves out
    the opening marker (already written). No tools or a malformed entry → ValueError."""
    options = []
    for fn in normalize_tools(tools):
        name = json.dumps(fn["name"]).encode("utf-8")
        cont = [("lit", b', "arguments": ')] + schema_segments(fn.get("parameters"))
        cont.append(("lit", ("}" + TOOL_CALL_CLOSE).encode("utf-8")))
        options.append((name, tuple(cont)))
    head = (TOOL_CALL_OPEN if open_marker else "") + '{"name": '
    return [("lit", head.encode("utf-8")), ("choice", tuple(options))]


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
    """

    def __init__(
        self,
        tools: Sequence[dict[str, Any]],
        vocab_bytes: Sequence[bytes | None],
        *,
        required: bool = False,
    ) -> None:
        self.vocab_bytes = vocab_bytes
        self.marker = TOOL_CALL_OPEN.encode("utf-8")
        self.inner = SegmentConstraint(tool_call_segments(tools), vocab_bytes)
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
        if self.text not in self._memo:
            mask = torch.ones(len(self.vocab_bytes), dtype=torch.bool)
            for i, tb in enumerate(self.vocab_bytes):
                if tb and self.marker.startswith((self.text + tb)[: len(self.marker)]):
                    s = self.inner.state  # the text so far + tb must stay in the grammar
                    for b in self.text + tb:
                        s = step_segments(s, b)
                        if s is None:
                            break
                    mask[i] = s is not None
            self._memo[self.text] = mask
        return self._memo[self.text]

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
