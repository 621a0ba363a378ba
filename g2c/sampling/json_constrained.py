"""JSON-constrained decoding: only sample tokens that keep the output a valid JSON prefix.

A byte-level pushdown automaton (RFC 8259 grammar) reads the output one byte at a time. Its
state is an immutable tuple ``(mode, stack, aux)``: ``stack`` holds the open containers
(``b"{"``/``b"["``), ``mode`` what may come next (a value, a key, ``:``, ``,``/close, inside a
string / escape / ``\\uXXXX``, a literal's remaining bytes, a number's sub-state), ``aux`` the
mode's detail. ``step(state, byte)`` returns the next state or None when the byte cannot
continue any JSON text. A token (its bytes) is allowed when every byte steps.

``completion(state)`` is the shortest byte string that completes the value (close the string,
finish the number, ``"0"`` for a missing value, close every container). ``generate_json``
allows only tokens after which that completion still fits in the remaining token budget, so
even a random model always ends with a complete value that ``json.loads`` accepts — provided
the vocabulary has single-byte tokens for ``0 " : } ]`` (checked). Bytes ≥ 0x80 are accepted
inside strings (UTF-8 validity is the tokenizer's business).

Idea as in llama.cpp grammars / Outlines (Willard & Louf 2023), written small for JSON only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from g2c.nn import Module
from g2c.sampling.generate import (
    Decoder,
    _check_prompt_range,
    _check_sampling_args,
    inference_mode,
    sample_next_token,
)

# modes
VALUE, ARR_FIRST, OBJ_FIRST, OBJ_KEY, COLON, AFTER, END = range(7)
STR, STR_ESC, STR_U, LIT = range(7, 11)
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_EXP, N_EXP_SIGN, N_EXP_DIG = range(11, 19)
_CAN_END_NUMBER = (N_ZERO, N_INT, N_FRAC, N_EXP_DIG)

_WS = frozenset(b" \t\n\r")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrt')
_LITERALS = {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}
_TOP_LEVEL = {"any": None, "object": b"{", "array": b"["}

State = tuple


def _value_done(stack: tuple) -> State:
    """The state after a complete value: END at top level, else expect ``,`` or a close."""
    return (END, (), None) if not stack else (AFTER, stack, None)


def _start_value(stack: tuple, b: int, only: bytes | None) -> State | None:
    if only is not None and not stack and b not in only:
        return None
    if b == 0x7B:  # {
        return (OBJ_FIRST, stack + (b"{",), None)
    if b == 0x5B:  # [
        return (ARR_FIRST, stack + (b"[",), None)
    if b == 0x22:  # "
        return (STR, stack, False)
    if b == 0x2D:  # -
        return (N_MINUS, stack, None)
    if b == 0x30:  # 0
        return (N_ZERO, stack, None)
    if b in _DIGITS:
        return (N_INT, stack, None)
    if b in _LITERALS:
        return (LIT, stack, _LITERALS[b])
    return None


def step(state: State, b: int) -> State | None:
    """Advance the automaton by one byte ``b`` (0–255); None when ``b`` is not allowed."""
    mode, stack, aux = state
    if mode in (VALUE, ARR_FIRST):
        if b in _WS:
            return state
        if mode == ARR_FIRST and b == 0x5D:  # ]
            return _value_done(stack[:-1])
        return _start_value(stack, b, aux if mode == VALUE else None)
    if mode == STR:
        if b == 0x22:
            return (COLON, stack, None) if aux else _value_done(stack)
        if b == 0x5C:  # backslash
            return (STR_ESC, stack, aux)
        return None if b < 0x20 else state  # raw control characters are not allowed
    if mode == STR_ESC:
        if b in _ESCAPES:
            return (STR, stack, aux)
        return (STR_U, stack, (aux, 4)) if b == 0x75 else None  # \u
    if mode == STR_U:
        if b not in _HEX:
            return None
        is_key, left = aux
        return (STR, stack, is_key) if left == 1 else (STR_U, stack, (is_key, left - 1))
    if mode >= N_MINUS:
        return _step_number(mode, stack, b)
    if mode == LIT:
        if b != aux[0]:
            return None
        return _value_done(stack) if len(aux) == 1 else (LIT, stack, aux[1:])
    if b in _WS:
        return state
    if mode == OBJ_FIRST:
        if b == 0x7D:  # }
            return _value_done(stack[:-1])
        return (STR, stack, True) if b == 0x22 else None
    if mode == OBJ_KEY:
        return (STR, stack, True) if b == 0x22 else None
    if mode == COLON:
        return (VALUE, stack, None) if b == 0x3A else None
    if mode == AFTER:
        top = stack[-1]
        if b == 0x2C:  # ,
            return (OBJ_KEY, stack, None) if top == b"{" else (VALUE, stack, None)
        if (b == 0x7D and top == b"{") or (b == 0x5D and top == b"["):
            return _value_done(stack[:-1])
        return None
    return None  # END: only whitespace (handled above)


def _step_number(mode: int, stack: tuple, b: int) -> State | None:
    digit = b in _DIGITS
    if mode == N_MINUS:
        return (N_ZERO if b == 0x30 else N_INT, stack, None) if digit else None
    if mode in (N_DOT, N_EXP_SIGN):
        return (N_FRAC if mode == N_DOT else N_EXP_DIG, stack, None) if digit else None
    if mode == N_EXP:
        if b in (0x2B, 0x2D):
            return (N_EXP_SIGN, stack, None)
        return (N_EXP_DIG, stack, None) if digit else None
    if digit and mode != N_ZERO:
        return (mode, stack, None)  # more digits (no leading zeros after "0")
    if b == 0x2E and mode in (N_ZERO, N_INT):
        return (N_DOT, stack, None)
    if b in (0x65, 0x45) and mode in (N_ZERO, N_INT, N_FRAC):
        return (N_EXP, stack, None)
    return step(_value_done(stack), b)  # the number ended; this byte belongs to what follows


def _close(stack: tuple) -> bytes:
    return b"".join(b"}" if c == b"{" else b"]" for c in reversed(stack))


def completion(state: State) -> bytes:
    """Shortest bytes that turn the text read so far into one complete JSON value."""
    mode, stack, aux = state
    if mode == VALUE:
        if not stack and aux is not None:
            return aux + _close((aux,))
        return b"0" + _close(stack)
    if mode == ARR_FIRST:
        return b"]" + _close(stack[:-1])
    if mode == OBJ_FIRST:
        return b"}" + _close(stack[:-1])
    if mode == OBJ_KEY:
        return b'"":0' + _close(stack)
    if mode == COLON:
        return b":0" + _close(stack)
    if mode == STR or mode == STR_ESC or mode == STR_U:
        is_key = aux if mode != STR_U else aux[0]
        head = {STR: b"", STR_ESC: b'"', STR_U: b"0" * (aux[1] if mode == STR_U else 0)}[mode]
        return head + b'"' + (b":0" if is_key else b"") + _close(stack)
    if mode == LIT:
        return aux + _close(stack)
    if mode in (N_MINUS, N_DOT, N_EXP, N_EXP_SIGN):
        return b"0" + _close(stack)
    return _close(stack)  # AFTER, END, or a number that may end here


class JsonPrefixAutomaton:
    """Accepts exactly the byte strings that are prefixes of a JSON text (RFC 8259).

    ``top_level``: "any" (default), "object" or "array" restricts the outer value. Methods:
    ``feed(text_or_bytes) -> bool`` (all-or-nothing: on False the state is unchanged),
    ``accepts(data) -> bool`` (without changing the state), ``copy()``, ``completion()``
    (shortest completing suffix, str), properties ``is_complete`` (the text parses now) and
    ``is_done`` (a value ended and only whitespace may follow). ``state`` is a hashable tuple.
    Unknown ``top_level`` → ValueError.
    """

    def __init__(self, top_level: str = "any") -> None:
        if top_level not in _TOP_LEVEL:
            raise ValueError(f"top_level must be one of {tuple(_TOP_LEVEL)}, got {top_level!r}")
        self.top_level = top_level
        self.state: State = (VALUE, (), _TOP_LEVEL[top_level])

    @staticmethod
    def _bytes(data: str | bytes) -> bytes:
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def run(self, data: str | bytes, state: State | None = None) -> State | None:
        """The state after reading ``data`` from ``state`` (default current), or None."""
        s = self.state if state is None else state
        for b in self._bytes(data):
            s = step(s, b)
            if s is None:
                return None
        return s

    def feed(self, data: str | bytes) -> bool:
        """Read ``data``; True and advance when it keeps a valid prefix, else False (unchanged)."""
        s = self.run(data)
        if s is None:
            return False
        self.state = s
        return True

    def accepts(self, data: str | bytes) -> bool:
        """Whether the text so far followed by ``data`` is still a JSON prefix."""
        return self.run(data) is not None

    def copy(self) -> JsonPrefixAutomaton:
        """An independent automaton in the same state."""
        other = JsonPrefixAutomaton(self.top_level)
        other.state = self.state
        return other

    def completion(self) -> str:
        """Shortest suffix (str) that makes the text a complete JSON value."""
        return completion(self.state).decode("ascii")

    @property
    def is_complete(self) -> bool:
        """True when the text read so far is a complete JSON value (``json.loads`` works)."""
        return completion(self.state) == b""

    @property
    def is_done(self) -> bool:
        """True once a complete value is closed (only whitespace may follow)."""
        return self.state[0] == END


def step_bytes(state: Any, data: bytes, step_fn: Any = step) -> Any:
    """The state after feeding ``data`` byte by byte through ``step_fn`` (default :func:`step`;
    any ``(state, byte) -> state | None``), or None as soon as a byte is refused."""
    for b in data:
        state = step_fn(state, b)
        if state is None:
            return None
    return state


def allowed_token_mask(
    automaton_state: JsonPrefixAutomaton | State, vocab_bytes: Sequence[bytes | None]
) -> torch.Tensor:
    """Bool mask (V,): True for tokens whose bytes keep the output a valid JSON prefix.

    ``automaton_state``: a :class:`JsonPrefixAutomaton` or its ``state`` tuple.
    ``vocab_bytes[i]``: the bytes of token i, or None (special tokens — never allowed); empty
    bytes are not allowed either (they would not advance).
    """
    state = (
        automaton_state.state
        if isinstance(automaton_state, JsonPrefixAutomaton)
        else automaton_state
    )
    mask = torch.zeros(len(vocab_bytes), dtype=torch.bool)
    for i, tb in enumerate(vocab_bytes):
        if tb:
            mask[i] = step_bytes(state, tb) is not None
    return mask


def token_vocab_bytes(tokenizer: Any, vocab_size: int) -> list[bytes | None]:
    """The bytes of each token id < ``vocab_size``: ``tokenizer.vocab[i]`` when it maps ids to
    bytes (byte-level BPE; special ids → None), else ``tokenizer.decode([i])`` UTF-8 encoded."""
    vocab = getattr(tokenizer, "vocab", None)
    specials = set(getattr(tokenizer, "special_token_ids", ()) or ())
    out: list[bytes | None] = []
    for i in range(vocab_size):
        if i in specials:
            out.append(None)
        elif isinstance(vocab, dict) and isinstance(vocab.get(i), bytes):
            out.append(vocab[i])
        else:
            try:
                out.append(tokenizer.decode([i]).encode("utf-8") or None)
            except (KeyError, IndexError, ValueError):
                out.append(None)
    return out


def generate_json(
    model: Module,
    tokenizer: Any,
    prompt: str | Sequence[int] | torch.Tensor,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    *,
    top_level: str = "any",
    use_cache: bool = True,
    vocab_bytes: Sequence[bytes | None] | None = None,
) -> str:
    """Sample a JSON value after ``prompt``; returns its text, which ``json.loads`` accepts.

    Every step masks the logits to tokens that keep the output a JSON prefix *and* leave room
    (in tokens) for the shortest completion; stops when the value is closed, or at
    ``max_new_tokens`` with a complete (e.g. top-level number) value. ``prompt``: text
    (encoded with ``tokenizer.encode``) or token ids; must be non-empty. ``tokenizer`` needs
    ``encode``/``decode``; ``vocab_bytes`` defaults to :func:`token_vocab_bytes`.

    Raises ValueError for an empty prompt, bad sampling arguments, a budget too small for any
    value, or a vocabulary without the single-byte tokens needed to close a value.
    """
    _check_sampling_args(temperature, top_k, top_p, 1.0, max_new_tokens)
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else [int(t) for t in ids]
    _check_prompt_range(ids, getattr(model, "vocab_size", None))
    if not ids:
        raise ValueError("prompt is empty; give at least one token (e.g. a newline)")
    V = int(getattr(model, "vocab_size", 0)) or len(vocab_bytes or [])
    vb = list(vocab_bytes) if vocab_bytes is not None else token_vocab_bytes(tokenizer, V)
    have = {tb for tb in vb if tb is not None and len(tb) == 1}
    missing = [c for c in (b"0", b'"', b":", b"}", b"]") if c not in have]
    if missing:
        raise ValueError(
            f"the vocabulary lacks single-byte tokens {[m.decode() for m in missing]} needed to "
            "close JSON values; use a byte-level or JSON-capable tokenizer"
        )
    auto = JsonPrefixAutomaton(top_level)
    if len(completion(auto.state)) > max_new_tokens:
        raise ValueError(f"max_new_tokens={max_new_tokens} is too small for any JSON value")
    memo: dict[State, tuple[torch.Tensor, torch.Tensor]] = {}
    out: list[int] = []
    with inference_mode(model):
        dec = Decoder(model, ids, use_cache=use_cache)
        for i in range(max_new_tokens):
            if auto.state not in memo:
                memo[auto.state] = _mask_and_cost(auto.state, vb)
            valid, cost = memo[auto.state]
            allowed = valid & (cost <= max_new_tokens - i - 1)
            tok = sample_next_token(
                dec.next_logits(),
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                allowed=allowed,
                generator=generator,
            )
            auto.feed(vb[tok])
            dec.append(tok)
            out.append(tok)
            if auto.is_done:
                break
    return tokenizer.decode(out)


def _mask_and_cost(state: State, vocab_bytes: Sequence[bytes | None]):
    """(valid (V,) bool, completion length (V,) long) for every token from ``state``."""
    valid = torch.zeros(len(vocab_bytes), dtype=torch.bool)
    cost = torch.full((len(vocab_bytes),), 1 << 30, dtype=torch.long)
    for i, tb in enumerate(vocab_bytes):
        if not tb:
            continue
        s = step_bytes(state, tb)
        if s is not None:
            valid[i] = True
            cost[i] = len(completion(s))
    return valid, cost
