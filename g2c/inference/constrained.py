"""Constrained decoding for the engine: JSON values, JSON-Schema-shaped values, tool calls.

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
- ``("string", (min_chars, max_chars))`` — one JSON string of ``min_chars`` to ``max_chars``
  characters (``max_chars`` None: no upper bound). Characters are Unicode code points as JSON
  Schema counts them: an escape (``\\n``, ``\\u00e9``) is one, a UTF-8 sequence is one. So
  that the count is exact, such a string takes only well-formed UTF-8 (RFC 3629) and no ``\\u``
  escape of a UTF-16 surrogate (``\\ud83d``; the character itself is fine);
- ``("array", (item_segments, min_items, max_items))`` — ``[]`` or ``[item, item, ...]``
  (separator ``", "``), each item the item segments, ``min_items`` to ``max_items`` of them
  (``max_items`` None: no upper bound);
- ``("alt", (segments_1, segments_2, ...))`` — any one of the alternatives (JSON Schema
  ``anyOf``). Alternatives may share a prefix (two objects that begin with the same key): the
  automaton follows every alternative still alive at once — its state is then the tuple of
  their states, each alternative joined to the rest of the sequence — until one is left.

:func:`schema_segments` turns a JSON Schema into segments; its docstring lists exactly which
keywords are enforced. As in :func:`g2c.sampling.generate_json`, a token is allowed only if
the shortest completion still fits in the remaining token budget (one byte per token at worst,
every single byte being a token in a byte-level BPE), so the output always finishes:
:func:`cost` is the exact length of the shortest completion from any state, so some byte
always lowers it by one.

Finding the allowed tokens: ``method="scan"`` is the readable reference — step every token's
bytes from the current state (memoized per constraint object); ``method="trie"`` (default)
walks a byte trie over the vocabulary built once per vocabulary and shares computed masks
across requests (:mod:`g2c.inference._vocab_trie`) — the same sets (tests/test_constrained.py),
tens to thousands of times fewer automaton steps. (A string with ``maxLength`` counts its
characters in the state, so each position in it is a new state: one trie walk per character
the first time, cached afterwards.)

Native tool calls (:func:`tool_call_segments`) have the form, documented for every g2c backend::

    <tool_call>{"name": "<one of the tools>", "arguments": {<that tool's parameters>}}</tool_call>

which is also what ``g2c.tools.parse_tool_calls`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch

from g2c.inference._vocab_trie import TokenSet, VocabIndex, VocabTrie, vocab_index
from g2c.sampling.json_constrained import (
    END,
    N_DOT,
    N_EXP,
    VALUE,
    completion,
    step,
    step_bytes,
)

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

# "string" sub-states (mode, characters so far): before the opening quote, inside, after a
# backslash, inside \uXXXX with 4 / 3 / 2 / 1 hex digits left (_U3D: 3 left after a first "d",
# where the next digit must keep the code unit out of the surrogates D800-DFFF)
_S_PRE, _S_IN, _S_ESC, _U4, _U3, _U3D, _U2, _U1 = range(8)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrt')
_U_LEFT = {_U4: 4, _U3: 3, _U3D: 3, _U2: 2, _U1: 1}
_U_NEXT = {_U3: _U2, _U2: _U1}
# a well-formed UTF-8 lead byte → (continuation bytes, the range of the first one), RFC 3629:
# no overlong forms, no surrogates, nothing above U+10FFFF
_UTF8_LEAD = {b: (1, 0x80, 0xBF) for b in range(0xC2, 0xE0)}
_UTF8_LEAD.update({b: (2, 0x80, 0xBF) for b in range(0xE1, 0xF0)})
_UTF8_LEAD.update({0xE0: (2, 0xA0, 0xBF), 0xED: (2, 0x80, 0x9F)})
_UTF8_LEAD.update({0xF0: (3, 0x90, 0xBF), 0xF1: (3, 0x80, 0xBF), 0xF2: (3, 0x80, 0xBF),
                   0xF3: (3, 0x80, 0xBF), 0xF4: (3, 0x80, 0x8F)})  # fmt: skip

# "array" sub-states (phase, items done[, item state]): before "[", after "[", after an item,
# after ",", after ", ", inside an item
_A_OPEN, _A_FIRST, _A_AFTER, _A_COMMA, _A_SPACE, _A_ITEM = range(6)


def _json_cost(sub: tuple) -> int:
    mode, stack, only = sub
    if mode == VALUE and not stack and only is not None:  # typed value not started yet
        return _least_value(only)
    return len(completion(sub))


@lru_cache(maxsize=256)
def _least_value(first: bytes) -> int:
    return min(_MIN_VALUE.get(b, 1) for b in first)


@lru_cache(maxsize=1 << 16)
def _tail_cost(segs: tuple, i: int) -> int:
    """Fewest bytes of the segments ``segs[i:]``."""
    return sum(_segment_cost(s) for s in segs[i:])


def _start(segs: tuple, i: int) -> State:
    """State at the beginning of segment i (skipping nothing: every segment is non-empty)."""
    if i >= len(segs):
        return (segs, len(segs), None)
    kind, arg = segs[i]
    if kind == "lit" or kind == "opt":
        return (segs, i, 0)
    if kind == "array":
        return (segs, i, (_A_OPEN, 0))
    if kind == "string":
        return (segs, i, (_S_PRE, 0))
    if kind == "choice":
        return (segs, i, b"")
    if kind == "alt":  # every alternative followed by the rest of this sequence
        return _union(segs, i, [_start(tuple(alt) + segs[i + 1 :], 0) for alt in arg])
    return (segs, i, (VALUE, (), arg))  # json, integer


def _is_union(state: State) -> bool:
    segs, i, _ = state
    return i < len(segs) and segs[i][0] == "alt"


def _union(segs: tuple, i: int, members: list) -> State | None:
    """The state of alternative ``segs[i]`` whose live alternatives are ``members`` (None: dead;
    nested unions are flattened, duplicates dropped). One left → that one's own state; all
    complete → the first (nothing can follow a complete value but the rest of the sequence,
    which each member already carries)."""
    flat: dict[State, None] = {}
    for m in members:
        if m is None:
            continue
        for s in m[2][1] if _is_union(m) else (m,):
            flat[s] = None
    if not flat:
        return None
    alive = tuple(flat)
    if len(alive) == 1 or all(_is_done(s) for s in alive):
        return alive[0]
    return (segs, i, ("alt", alive))


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
    if kind == "alt":
        return _union(segs, i, [step_segments(m, b) for m in sub[1]])
    if kind == "array":
        return _step_array(segs, i, sub, arg, b)
    if kind == "string":
        nxt = _step_string(sub, arg, b)
        if nxt is None or nxt == END:
            return None if nxt is None else _start(segs, i + 1)
        return (segs, i, nxt)
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


def _count(n: int, low: int, high: int | None) -> int:
    """A count kept in a state: exact under an upper bound, else capped at the lower bound
    (beyond it the count no longer matters, so states — and cached masks — repeat)."""
    return n if high is not None else min(n, low)


def _step_string(sub: tuple, bounds: tuple, b: int) -> Any:
    """One byte of a length-bounded JSON string: the next sub-state, END (closed) or None."""
    mode, n = sub
    low, high = bounds
    if mode == _S_PRE:
        if b in _WS:
            return sub
        return (_S_IN, 0) if b == 0x22 else None
    if mode == _S_IN:
        if b == 0x22:
            return END if n >= low else None
        if b < 0x20:
            return None  # raw control characters are not allowed
        if high is not None and n >= high:
            return None
        if b >= 0x80:  # a UTF-8 lead byte counts its character; its continuation bytes follow
            return (_UTF8_LEAD[b], _count(n + 1, low, high)) if b in _UTF8_LEAD else None
        return (_S_ESC if b == 0x5C else _S_IN, _count(n + 1, low, high))  # \ counts its escape
    if isinstance(mode, tuple):  # inside a UTF-8 sequence: (bytes left, next byte's range)
        left, lo, hi = mode
        if not lo <= b <= hi:
            return None
        return (_S_IN, n) if left == 1 else ((left - 1, 0x80, 0xBF), n)
    if mode == _S_ESC:
        if b in _ESCAPES:
            return (_S_IN, n)
        return (_U4, n) if b == 0x75 else None
    if b not in _HEX:
        return None
    if mode == _U4:
        return (_U3D if b in b"dD" else _U3, n)
    if mode == _U3D:
        return (_U2, n) if b in b"01234567" else None
    return (_S_IN, n) if mode == _U1 else (_U_NEXT[mode], n)


def _string_cost(sub: tuple, bounds: tuple) -> int:
    mode, n = sub
    if mode == _S_PRE:
        return 2 + bounds[0]
    more = max(bounds[0] - n, 0) + 1  # the characters still owed, then the closing quote
    if mode == _S_IN:
        return more
    if isinstance(mode, tuple):
        return mode[0] + more
    return (1 if mode == _S_ESC else _U_LEFT[mode]) + more


def _step_array(segs: tuple, i: int, sub: tuple, arg: tuple, b: int) -> State | None:
    items, low, high = arg
    phase, n = sub[0], sub[1]
    if phase == _A_OPEN:
        return (segs, i, (_A_FIRST, 0)) if b == 0x5B else None
    if phase == _A_AFTER:
        if b == 0x2C:
            return (segs, i, (_A_COMMA, n)) if high is None or n < high else None
        return _start(segs, i + 1) if b == 0x5D and n >= low else None
    if phase == _A_COMMA:
        return (segs, i, (_A_SPACE, n)) if b == 0x20 else None
    if phase == _A_FIRST and (b == 0x5D or high == 0):
        return _start(segs, i + 1) if b == 0x5D and low == 0 else None
    inner = sub[2] if phase == _A_ITEM else _start(items, 0)
    nxt = step_segments(inner, b)
    done = (segs, i, (_A_AFTER, _count(n + 1, low, high)))
    if nxt is None:
        if phase == _A_ITEM and cost(inner) == 0:  # the item (a number) ended: byte goes on
            return _step_array(segs, i, done[2], arg, b)
        return None
    return done if _is_done(nxt) else (segs, i, (_A_ITEM, n, nxt))


def _array_cost(sub: tuple, arg: tuple) -> int:
    items, low, _ = arg
    phase, n = sub[0], sub[1]
    item = _tail_cost(items, 0)

    def tail(k: int) -> int:  # k items written: the ones still owed (", " + item each), "]"
        return max(low - k, 0) * (item + 2) + 1

    if phase in (_A_OPEN, _A_FIRST):
        first = 1 if low == 0 else item + tail(1)
        return first + (phase == _A_OPEN)
    if phase == _A_AFTER:
        return tail(n)
    if phase == _A_ITEM:
        return cost(sub[2]) + tail(n + 1)
    return item + tail(n + 1) + (phase == _A_COMMA)


@lru_cache(maxsize=1 << 16)
def _segment_cost(seg: Segment) -> int:
    """Fewest bytes of one whole segment (cached: segments are immutable tuples)."""
    kind, arg = seg
    if kind == "opt":
        return 0
    if kind == "lit":
        return len(arg)
    if kind == "choice":
        return min(len(opt) + _tail_cost(cont, 0) for opt, cont in arg)
    if kind == "alt":
        return min(_tail_cost(alt, 0) for alt in arg)
    if kind == "array":
        return _array_cost((_A_OPEN, 0), arg)
    if kind == "string":
        return 2 + arg[0]
    return _json_cost((VALUE, (), arg))


def cost(state: State) -> int:
    """Fewest bytes that complete every remaining segment from ``state``."""
    segs, i, sub = state
    if i >= len(segs):
        return 0
    kind, arg = segs[i]
    if kind == "alt":  # each alternative carries the rest of the sequence
        return min(cost(m) for m in sub[1])
    rest = _tail_cost(segs, i + 1)
    if kind == "opt":
        return rest
    if kind == "lit":
        return len(arg) - sub + rest
    if kind == "choice":
        return rest + min(
            len(opt) - len(sub) + _tail_cost(cont, 0) for opt, cont in arg if opt.startswith(sub)
        )
    if kind == "array":
        return _array_cost(sub, arg) + rest
    if kind == "string":
        return _string_cost(sub, arg) + rest
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
            s = step_bytes(state, tb, step_segments)
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
    segs, i, sub = state
    if i < len(segs) and segs[i][0] == "string" and sub[0] == _S_IN:
        return _counted_string_token_set(index, state)
    no_loops = i >= len(segs) or segs[i][0] in ("lit", "choice")  # nothing to find: skip 256 steps
    return index.token_set(state, step_segments, cost, min_loop=257 if no_loops else 32)


_PLAIN = bytes(b for b in range(0x20, 0x80) if b not in b'"\\')  # one character each, no escape


def _plain_tables(index: VocabIndex) -> tuple[torch.Tensor, VocabTrie]:
    """Per vocabulary: the length (long (V,)) of each token made only of plain ASCII string
    characters (-1 for the others), and a trie of the others' bytes."""
    lengths = torch.full((index.size,), -1, dtype=torch.long)
    others = []
    for t, tb in enumerate(index.vocab_bytes):
        if tb and not tb.lstrip(_PLAIN):
            lengths[t] = len(tb)
        elif tb:
            others.append((tb, t))
    return lengths, VocabTrie(others)


def _counted_string_token_set(index: VocabIndex, state: State) -> TokenSet:
    """Inside a length-bounded string each character changes the state (its count), so no byte
    loops and a plain trie walk would visit the whole vocabulary. Instead: a token of ``k``
    plain ASCII characters is allowed when ``k`` fits under ``maxLength`` and costs the
    characters still owed after it plus the closing quote and the rest (tensor arithmetic);
    only the other tokens (quotes, escapes, non-ASCII) are walked. Same set as the scan."""
    segs, i, (_, n) = state
    low, high = segs[i][1]
    lengths, others = index.derived("counted-string", _plain_tables)
    rest = _tail_cost(segs, i + 1)
    ok = lengths >= 0 if high is None else (lengths >= 0) & (lengths <= high - n)
    owed = low - n  # characters still owed before the string may close
    base = ok & (lengths >= owed)
    short = (ok & (lengths < owed)).nonzero().flatten()
    ids, costs = [short], [owed - lengths[short] + 1 + rest]
    for tids, s in others.walk(state, step_segments):
        ids.append(torch.tensor(tids, dtype=torch.long))
        costs.append(torch.full((len(tids),), cost(s), dtype=torch.long))
    return TokenSet(index.size, base if bool(base.any()) else None, 1 + rest, torch.cat(ids),
                    torch.cat(costs))  # fmt: skip


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


def _kinds(prop: dict[str, Any]) -> list[str]:
    """The schema's ``type`` as a list (``[]`` when absent)."""
    kind = prop.get("type")
    if isinstance(kind, str):
        return [kind]
    return [k for k in kind if isinstance(k, str)] if isinstance(kind, list) else []


class _Schema:
    """Compiles one JSON Schema (``root``, where local ``$ref`` s point) to segments."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    # -- $ref / allOf --------------------------------------------------------------------------
    def resolve(self, ref: Any, where: str) -> Any:
        """The sub-schema a local ref (``#``, ``#/$defs/X``, ``#/definitions/X``, any JSON
        pointer into the schema) names; anything else → ValueError."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"{where}: $ref {ref!r} cannot be resolved; only refs into the same "
                             "schema ('#/$defs/Name', '#/definitions/Name') are supported")  # fmt: skip
        node: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise ValueError(f"{where}: $ref {ref!r} names nothing in the schema; add the "
                                 "definition under $defs")  # fmt: skip
        return node

    def expand(self, prop: Any, where: str, active: frozenset) -> tuple[Any, frozenset]:
        """``prop`` with its ``$ref`` inlined (the target's keywords win over the siblings) and
        a single-schema or disjoint ``allOf`` merged in; ``(None, ...)`` for a recursive ref."""
        while isinstance(prop, dict) and "$ref" in prop:
            ref = prop["$ref"]
            if ref in active:
                return None, active
            target = self.resolve(ref, where)
            siblings = {k: v for k, v in prop.items() if k != "$ref"}
            prop = {**siblings, **target} if isinstance(target, dict) else target
            active = active | {ref}
        if isinstance(prop, dict) and isinstance(prop.get("allOf"), list):
            merged = {k: v for k, v in prop.items() if k != "allOf"}
            for n, sub in enumerate(prop["allOf"]):
                sub, active = self.expand(sub, f"{where}.allOf[{n}]", active)
                if not isinstance(sub, dict):
                    continue
                for k, v in sub.items():
                    if k == "properties" and isinstance(merged.get(k), dict):
                        v = {**merged[k], **v}
                    elif k == "required" and isinstance(merged.get(k), list):
                        v = list(dict.fromkeys(merged[k] + list(v)))
                    merged[k] = v
            prop = merged
        return prop, active

    # -- values ----------------------------------------------------------------------------------
    def value(self, prop: Any, where: str, active: frozenset) -> list[Segment]:
        """Segments for one value of the schema ``prop`` (see :func:`schema_segments`)."""
        expanded, active = self.expand(prop, where, active)
        if expanded is None:  # a recursive ref: any value of the type it names
            target = self.resolve(prop["$ref"], where)
            return [("json", _first_bytes(_kinds(target) if isinstance(target, dict) else []))]
        prop = expanded
        if not isinstance(prop, dict):  # true / false / garbage: any value
            return [("json", None)]
        if "const" in prop:
            return [("choice", ((json.dumps(prop["const"]).encode("utf-8"), ()),))]
        if isinstance(prop.get("enum"), list) and prop["enum"]:
            opts = dict.fromkeys(json.dumps(v).encode("utf-8") for v in prop["enum"])
            return [("choice", tuple((opt, ()) for opt in opts))]
        for key in ("anyOf", "oneOf"):
            if isinstance(prop.get(key), list) and prop[key]:
                rest = {k: v for k, v in prop.items() if k != key}
                alts = [{**rest, **a} if isinstance(a, dict) else rest for a in prop[key]]
                return self.union(alts, [f"{where}.{key}[{n}]" for n in range(len(alts))],
                                  active)  # fmt: skip
        kinds = _kinds(prop)
        if not kinds:  # shape given without a type
            shaped = {"object": ("properties", "required"), "array": ("items", "minItems",
                      "maxItems", "prefixItems"), "string": ("minLength", "maxLength")}  # fmt: skip
            kinds = [k for k, keys in shaped.items() if any(x in prop for x in keys)][:1]
        if len(kinds) > 1 and any(self._shaped(prop, k) for k in kinds):
            alts = [{**prop, "type": k} for k in kinds]
            return self.union(alts, [f"{where}(type {k})" for k in kinds], active)
        kind = kinds[0] if len(kinds) == 1 else None
        if kind == "object" and self._shaped(prop, "object"):
            return self.object(prop, where, active)
        if kind == "array" and self._shaped(prop, "array"):
            return self.array(prop, where, active)
        if kind == "string" and self._shaped(prop, "string"):
            low, high = _bounds(prop, "minLength", "maxLength", where)
            if low or high is not None:
                return [("string", (low, high))]
        integer_only = "integer" in kinds and "number" not in kinds
        return [("integer" if integer_only else "json", _first_bytes(kinds))]

    @staticmethod
    def _shaped(prop: dict[str, Any], kind: str) -> bool:
        """Whether ``prop`` constrains a value of ``kind`` beyond its first byte."""
        if kind == "object":
            return bool(prop.get("properties")) or bool(prop.get("required"))
        if kind == "array":
            return any(k in prop for k in ("items", "minItems", "maxItems", "prefixItems"))
        return kind == "string" and ("minLength" in prop or "maxLength" in prop)

    def union(self, alts: list, wheres: list[str], active: frozenset) -> list[Segment]:
        """``anyOf``: the alternatives' segments, simplified where possible — alternatives of
        plain types merge into one typed value, enums/consts into one choice."""
        options = list(dict.fromkeys(tuple(self.value(a, w, active)) for a, w in zip(alts,
                                                                                    wheres)))  # fmt: skip
        if len(options) == 1:
            return list(options[0])
        if any(o == (("json", None),) for o in options):
            return [("json", None)]  # one alternative takes any value
        if all(len(o) == 1 and o[0][0] in _JSON_KINDS and o[0][1] for o in options):
            first = bytes(sorted(set(b"".join(o[0][1] for o in options))))
            number = any(o[0][0] == "json" and b"0"[0] in o[0][1] for o in options)
            integer = not number and any(o[0][0] == "integer" for o in options)
            return [("integer" if integer else "json", first)]
        if all(len(o) == 1 and o[0][0] == "choice" and not any(c for _, c in o[0][1])
               for o in options):  # fmt: skip
            return [("choice", tuple(dict.fromkeys(x for o in options for x in o[0][1])))]
        return [("alt", tuple(options))]

    def object(self, schema: dict[str, Any], where: str, active: frozenset) -> list[Segment]:
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        keys = [k for k in props if not isinstance(required, list) or k in required]
        if isinstance(required, list):  # required keys the properties do not describe
            keys += [k for k in required if isinstance(k, str) and k not in props]
        if not keys:
            return [("lit", b"{}")]
        segs: list[Segment] = []
        for n, key in enumerate(keys):
            head = ("{" if n == 0 else ", ") + json.dumps(key) + ":"
            segs += [("lit", head.encode("utf-8")), _SPACE]
            segs += self.value(props.get(key, True), f"{where}.{key}", active)
        segs.append(("lit", b"}"))
        return segs

    def array(self, schema: dict[str, Any], where: str, active: frozenset) -> list[Segment]:
        low, high = _bounds(schema, "minItems", "maxItems", where)
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(prefix, list) and prefix and (items is False or high == len(prefix)):
            if low > len(prefix):  # a tuple: exactly its items (or as many as maxItems allows)
                raise ValueError(f"{where}: minItems {low} > the {len(prefix)} prefixItems")
            segs: list[Segment] = [("lit", b"[")]
            for n, sub in enumerate(prefix):
                segs += [("lit", b", ")] if n else []
                segs += self.value(sub, f"{where}.prefixItems[{n}]", active)
            return segs + [("lit", b"]")]
        if items is False and not prefix:  # no items allowed
            high = 0
            if low:
                raise ValueError(f"{where}: minItems {low} but items is false")
        item = self.value(items, f"{where}.items", active)
        return [("array", (tuple(item), low, high))]


def _bounds(schema: dict[str, Any], lo_key: str, hi_key: str, where: str) -> tuple:
    """``(low, high)`` from two non-negative integer keywords (high None when absent);
    a bad value or low > high → ValueError."""
    out = []
    for key in (lo_key, hi_key):
        v = schema.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{where}: {key} must be a non-negative integer, got {v!r}")
        out.append(v)
    low, high = out[0] or 0, out[1]
    if high is not None and low > high:
        raise ValueError(f"{where}: {lo_key} {low} > {hi_key} {high}; no value can match")
    return low, high


def schema_segments(schema: dict[str, Any] | None) -> list[Segment]:
    """Segments for a JSON value matching the JSON Schema ``schema`` (a dict; a root without
    any type or shape is an object, as for OpenAI's ``response_format`` and Ollama's
    ``format``; None → any JSON object). Not a dict → TypeError; an unresolvable ``$ref``,
    a negative or non-integer length / item bound, or a minimum above its maximum → ValueError
    naming where in the schema.

    Enforced (the output always validates against these keywords):

    - ``type``: string, integer (no fraction or exponent), number, boolean, null, object,
      array, or a list of these (an alternative per shaped type);
    - ``properties`` / ``required``: keys written in ``properties`` order — the ``required``
      ones when the schema lists ``required``, else all — then any required key that
      ``properties`` does not describe (any value); no other key is ever written, so
      ``additionalProperties: false`` holds by construction;
    - ``items``, ``minItems``, ``maxItems``; ``prefixItems`` when it fixes the whole array
      (``items: false`` or ``maxItems`` = its length: a tuple, as pydantic writes them);
    - string ``minLength`` / ``maxLength`` in characters (code points: an escape or a UTF-8
      sequence is one; such strings are well-formed UTF-8 without surrogate ``\\u`` escapes);
    - ``enum`` and ``const`` of any JSON values (written as ``json.dumps`` writes them);
    - ``anyOf`` over any of these, nested too; the keywords beside an ``anyOf`` apply to
      every alternative (``{"type": "object", "properties": ..., "anyOf": [{"required":
      ["a"]}, {"required": ["b"]}]}``). ``oneOf`` is generated as ``anyOf``: when two
      alternatives overlap (``integer`` and ``number``), the output may match both;
    - ``$ref`` to ``#/$defs/...``, ``#/definitions/...`` or any ``#/`` pointer (inlined; the
      siblings of a ``$ref`` — ``description``, ``default`` — are kept, the target wins);
      ``allOf`` (merged: exact for one sub-schema or sub-schemas about different keys) —
      what ``pydantic``'s ``model_json_schema()`` writes, ``Optional`` fields included.

    Not enforced (ignored, never an error; validate the output when they matter): a recursive
    ``$ref`` (the recursion point is any JSON value of the type its target names), ``pattern``,
    ``format``, ``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum`` /
    ``multipleOf``, ``additionalProperties`` / ``patternProperties`` / ``propertyNames`` /
    ``minProperties`` / ``maxProperties`` of objects without ``properties`` (any JSON
    object), ``uniqueItems``, ``contains``, ``prefixItems`` with open-ended items, ``not``,
    ``if`` / ``then`` / ``else``, ``dependentRequired`` / ``dependentSchemas``, and the
    exclusivity of ``oneOf``. The optional properties of an object that lists ``required``
    are never written."""
    if schema is None:
        return [("json", b"{")]
    if not isinstance(schema, dict):
        raise TypeError(f"schema must be a dict (JSON Schema), got {type(schema).__name__}")
    structural = ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const")
    root = schema if any(k in schema for k in structural) else {**schema, "type": "object"}
    return _Schema(schema).value(root, "schema", frozenset({"#"}))


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
