"""A multi-turn chat with a language model: history → template → ids → streamed reply.

Each turn renders the whole conversation (system turn, the history, the new user message) with
the model's chat template, followed by the *generation prompt* (the opening of an assistant
turn), and samples the reply token by token with the KV cache (:class:`g2c.sampling.Decoder`)
until the template's end-of-turn marker (``<|end|>`` for :class:`~g2c.sft.template.
ChatTemplate`, ``<|im_end|>`` for SmolLM2), an end-of-sequence token, ``max_new_tokens``, or the
model's context (``max_seq_len``). The reply's text is streamed as its characters complete
(:class:`g2c.sampling.StreamingDetokenizer`), then appended to the history.

The template inserts its markers as special ids; what the user types is encoded as plain
text, so a typed ``"<|assistant|>"`` can never forge a turn (the prompt-injection guard).

A model sees at most ``max_seq_len`` tokens. When the conversation does not fit (leaving room
for the reply: ``max_new_tokens``, at most a quarter of the context), the oldest exchanges are
left out of the prompt *whole* — a user message together with the assistant replies after it,
never part of a message; the system turn always stays — and :attr:`ChatSession.last_turn`
says how many messages were left out (``dropped_messages``). The history itself keeps
everything (``save`` writes the full transcript).

Shapes: the prompt is a list of int ids (T,) with T ≤ max_seq_len − reserve; each decoding
step produces next-token logits (V,).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import atomic_write_json
from g2c.sampling import Decoder, StreamingDetokenizer, sample_next_token
from g2c.sampling.generate import inference_mode
from g2c.sft.template import BaseChatTemplate, ChatTemplate, JinjaChatTemplate

CHAT_FORMAT = "g2c.chat"
CHAT_FORMAT_VERSION = 1
#: Special tokens that end generation when the tokenizer has them (besides the template's own
#: end-of-turn markers and the model's eos token).
EOS_TOKENS = ("<|endoftext|>",)


@dataclasses.dataclass
class TurnInfo:
    """What happened in the latest :meth:`ChatSession.send` (``ChatSession.last_turn``).

    Attributes:
        prompt_tokens: length of the prompt the model saw (ids, markers included).
        dropped_messages: oldest history messages left out of the prompt because the
            conversation did not fit in the model's context (0 when everything fit); always a
            whole number of exchanges.
        reply_tokens: tokens generated (the stop token included when one was generated).
        finish_reason: ``"stop"`` (end-of-turn or eos token), ``"length"`` (max_new_tokens),
            ``"context"`` (the model's max_seq_len reached), ``"interrupted"`` (the consumer
            stopped iterating, e.g. Ctrl-C), or ``""`` while the reply is running.
        seconds: wall time of the reply so far.
        reply_ids: the generated ids (the stop token included when one was generated).
    """

    prompt_tokens: int
    dropped_messages: int = 0
    reply_tokens: int = 0
    finish_reason: str = ""
    seconds: float = 0.0
    reply_ids: list[int] = dataclasses.field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second (0.0 before the first)."""
        return self.reply_tokens / self.seconds if self.seconds > 0 else 0.0


def _check_number(name: str, value: Any, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what}, got {value!r}")


class ChatSession:
    """A conversation with ``model``: history, settings, and :meth:`send` to stream a reply.

    Args:
        model: a language model with ``max_seq_len`` and ``vocab_size`` (a ``TransformerLM``;
            its KV cache is used when it has one), called without grads in eval mode.
        tokenizer: its tokenizer (``encode``, ``decode``, ``special_to_id``; a byte-level
            ``BPETokenizer``) holding the template's special tokens.
        template: a :class:`~g2c.sft.template.BaseChatTemplate`; None → :class:`ChatTemplate`.
        system: the system message (None or "" → no system turn).
        temperature: ≥ 0 (0 = greedy). top_k: positive int or None. top_p: in (0, 1] or None.
        max_new_tokens: positive int, the most tokens per reply.
        repetition_penalty: > 0 (1.0 = off). seed: int or None (None = a random seed).

    Settings are attributes, changeable between turns; a bad value → ValueError naming the
    setting (at construction too). A tokenizer without the template's special tokens →
    ValueError naming tokenizer. ``history`` is the list of ``{"role", "content"}`` user and
    assistant turns (the system turn is :attr:`system`, kept out of it); :attr:`messages` is
    the whole conversation.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: BaseChatTemplate | None = None,
        *,
        system: str | None = None,
        temperature: float = 0.7,
        top_k: int | None = None,
        top_p: float | None = 0.9,
        max_new_tokens: int = 256,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
    ) -> None:
        template = ChatTemplate() if template is None else template
        if not isinstance(template, BaseChatTemplate):
            raise TypeError(f"template must be a BaseChatTemplate, got {type(template).__name__}")
        max_len = getattr(model, "max_seq_len", None)
        if not isinstance(max_len, int) or max_len < 4:
            raise ValueError(f"model must have an int max_seq_len ≥ 4, got {max_len!r}")
        probe = [{"role": r, "content": "x"} for r in ("user", "assistant", "user")]
        template.encode_prompt(probe, tokenizer)  # markers missing → ValueError naming tokenizer
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.stop_ids = self._stop_ids()
        self.history: list[dict[str, str]] = []
        self.last_turn: TurnInfo | None = None
        self.system = system
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty
        self.seed = seed

    # -- settings (validated on every assignment) --------------------------------------------
    @property
    def system(self) -> str | None:
        """The system message, or None."""
        return self._system

    @system.setter
    def system(self, value: str | None) -> None:
        """Set the system message (a string, or None for none); another type → ValueError."""
        if value is not None and not isinstance(value, str):
            raise ValueError(f"system must be a string or None, got {type(value).__name__}")
        self._system = value or None

    @property
    def temperature(self) -> float:
        """Sampling temperature, ≥ 0 (0 = greedy)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        """Set the temperature; negative or not a number → ValueError."""
        _check_number("temperature", value)
        if value < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {value}")
        self._temperature = float(value)

    @property
    def top_k(self) -> int | None:
        """Keep the k most likely tokens (None = off)."""
        return self._top_k

    @top_k.setter
    def top_k(self, value: int | None) -> None:
        """Set top-k (a positive int, or None = off); anything else → ValueError."""
        if value is not None:
            _check_number("top_k", value, integer=True)
            if value <= 0:
                raise ValueError(f"top_k must be a positive integer or None (off), got {value}")
        self._top_k = value

    @property
    def top_p(self) -> float | None:
        """Nucleus sampling mass in (0, 1] (None = off)."""
        return self._top_p

    @top_p.setter
    def top_p(self, value: float | None) -> None:
        """Set top-p (in (0, 1], or None = off); anything else → ValueError."""
        if value is not None:
            _check_number("top_p", value)
            if not 0 < value <= 1:
                raise ValueError(f"top_p must be in (0, 1] or None (off), got {value}")
            value = float(value)
        self._top_p = value

    @property
    def max_new_tokens(self) -> int:
        """The most tokens one reply may have."""
        return self._max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, value: int) -> None:
        """Set the reply length limit (a positive int); anything else → ValueError."""
        _check_number("max_new_tokens", value, integer=True)
        if value <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {value}")
        self._max_new_tokens = value

    @property
    def repetition_penalty(self) -> float:
        """CTRL repetition penalty, > 0 (1.0 = off)."""
        return self._repetition_penalty

    @repetition_penalty.setter
    def repetition_penalty(self, value: float) -> None:
        """Set the repetition penalty (> 0; 1 = off); anything else → ValueError."""
        _check_number("repetition_penalty", value)
        if not value > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {value}")
        self._repetition_penalty = float(value)

    @property
    def seed(self) -> int | None:
        """The sampler's seed (setting it reseeds; None = a random seed)."""
        return self._seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        """Set the sampling seed (an int, or None for a random one); anything else → ValueError."""
        if value is not None:
            _check_number("seed", value, integer=True)
        self._seed = value
        self.generator = torch.Generator()
        if value is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(value)

    def settings(self) -> dict[str, Any]:
        """The sampling settings as a dict (what :meth:`save` writes)."""
        names = ("temperature", "top_k", "top_p", "max_new_tokens", "repetition_penalty", "seed")
        return {n: getattr(self, n) for n in names}

    # -- the conversation ---------------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, str]]:
        """The whole conversation: the system turn (if any), then the history."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [dict(m) for m in self.history]

    @property
    def reserve(self) -> int:
        """Context tokens kept free for the reply: max_new_tokens, at most max_seq_len // 4."""
        return max(1, min(self.max_new_tokens, self.model.max_seq_len // 4))

    def clear(self) -> None:
        """Forget the history (the system message and settings stay)."""
        self.history = []
        self.last_turn = None

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Ids of ``messages`` + the generation prompt (markers as special ids, content as
        plain text)."""
        return self.template.encode_prompt(messages, self.tokenizer)

    def fit(self, text: str) -> tuple[list[int], int]:
        """The prompt for a new user message ``text``: ``(ids, dropped)`` where ``dropped``
        oldest history messages (whole exchanges) were left out so that the prompt fits in
        ``max_seq_len − reserve`` tokens.

        Raises ValueError (naming text) when even the system turn and ``text`` alone do not fit.
        """
        head = [{"role": "system", "content": self.system}] if self.system else []
        user = [{"role": "user", "content": text}]
        limit = self.model.max_seq_len - self.reserve
        start = 0
        while True:
            ids = self.encode(head + self.history[start:] + user)
            if len(ids) <= limit:
                return ids, start
            if start >= len(self.history):
                raise ValueError(
                    f"text is too long for the model: the prompt is {len(ids)} tokens and "
                    f"must be at most {limit} (max_seq_len {self.model.max_seq_len} minus "
                    f"{self.reserve} for the reply); shorten the message or the system prompt"
                )
            # drop the oldest exchange whole: up to the next user message
            start += 1
            while start < len(self.history) and self.history[start]["role"] != "user":
                start += 1

    def send(self, text: str) -> Iterator[str]:
        """Send the user message ``text``; returns an iterator of the reply's text pieces.

        The prompt is built now (bad ``text`` raises here: TypeError for a non-string,
        ValueError when it cannot fit); :attr:`last_turn` then tells the prompt length and how
        many old messages were left out. Iterating generates: each piece is the text its
        token completes (a character split across tokens comes whole); the pieces joined equal
        ``tokenizer.decode(reply ids)`` without the stop token. When iteration ends — or stops
        early (``close()``, Ctrl-C: ``finish_reason`` "interrupted") — the user turn and the
        assistant turn (the text so far) are appended to :attr:`history`. An iterator never
        started leaves the history as it was.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids, dropped = self.fit(text)
        self.last_turn = TurnInfo(prompt_tokens=len(ids), dropped_messages=dropped)
        return self._reply(text, ids, self.last_turn)

    def reply(self, text: str) -> str:
        """:meth:`send` ``text`` and return the whole reply."""
        return "".join(self.send(text))

    def _stop_ids(self) -> set[int]:
        special = self.tokenizer.special_to_id
        names = list(self.template.stop_tokens) + list(EOS_TOKENS)
        eos = getattr(self.template, "eos_token", None)
        if eos:
            names.append(eos)
        return {special[n] for n in names if n in special}

    def _reply(self, text: str, ids: list[int], info: TurnInfo) -> Iterator[str]:
        """The decoding loop (a generator): sample, stream text, then record the turn."""
        model, max_len = self.model, self.model.max_seq_len
        s = self.settings()
        detok = StreamingDetokenizer(self.tokenizer)
        parts: list[str] = []
        t0 = time.perf_counter()
        try:
            dec = Decoder(model, ids)  # KV cache: prefill once, then one token per step
            for _ in range(s["max_new_tokens"]):
                if len(dec.tokens) >= max_len:
                    info.finish_reason = "context"
                    break
                with inference_mode(model):  # re-entered per token: the consumer runs between
                    logits = dec.next_logits()  # (V,)
                    tok = sample_next_token(
                        logits,
                        temperature=s["temperature"],
                        top_k=s["top_k"],
                        top_p=s["top_p"],
                        repetition_penalty=s["repetition_penalty"],
                        prev_ids=dec.tokens,
                        generator=self.generator,
                    )
                dec.append(tok)
                info.reply_ids.append(tok)
                info.reply_tokens += 1
                info.seconds = time.perf_counter() - t0
                if tok in self.stop_ids:
                    info.finish_reason = "stop"
                    break
                piece = detok.push(tok)
                if piece:
                    parts.append(piece)
                    yield piece
            else:
                info.finish_reason = "length"
            piece = detok.flush()
            if piece:
                parts.append(piece)
                yield piece
        finally:  # also on close() / Ctrl-C / an error: the turn is recorded as it stands
            info.finish_reason = info.finish_reason or "interrupted"
            info.seconds = time.perf_counter() - t0
            parts.append(detok.flush())
            self.history.append({"role": "user", "content": text})
            self.history.append({"role": "assistant", "content": "".join(parts)})

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"format": "g2c.chat", "version", "system", "settings", "messages"}``."""
        return {
            "format": CHAT_FORMAT,
            "version": CHAT_FORMAT_VERSION,
            "system": self.system,
            "settings": self.settings(),
            "messages": self.messages,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the conversation (:meth:`to_dict`) as JSON at ``path``, atomically (temp file +
        rename; a crash never leaves half a file). Returns the path. An empty path or a
        directory → ValueError naming path."""
        if not str(path).strip():
            raise ValueError("path must name a file, got an empty string")
        path = Path(path).expanduser()
        if path.is_dir():
            raise ValueError(f"path {path} is a directory; give a file name such as chat.json")
        return atomic_write_json(path, self.to_dict())

    def __repr__(self) -> str:
        return (
            f"ChatSession(template={self.template!r}, messages={len(self.history)}, "
            f"system={self.system!r:.40}, {self.settings()})"
        )


def template_for(loaded: Any) -> BaseChatTemplate:
    """The chat template to talk to a model returned by ``g2c.transformer.load_model``.

    A model whose loader gives a ``chat_template`` (SmolLM2: the Jinja source stored in its
    GGUF, with the bos / eos tokens of ``chat_info``): that template as a
    :class:`JinjaChatTemplate`; else g2c's :class:`ChatTemplate` (g2c runs: the tokenizer
    reserves its markers). The Jinja template's special tokens are the
    tokenizer's special tokens that its source writes. No tokenizer → ValueError.
    """
    tok = getattr(loaded, "tokenizer", None)
    if tok is None or not isinstance(getattr(tok, "special_to_id", None), dict):
        raise ValueError(
            f"the model at {getattr(loaded, 'source', '?')} comes without a tokenizer g2c can "
            "chat with (a BPETokenizer with special tokens)"
        )
    info = getattr(loaded, "chat_info", None)  # GGUFChatInfo: bos / eos token strings
    source = getattr(loaded, "chat_template", None) or getattr(info, "template", None)
    bos, eos = getattr(info, "bos_token", None), getattr(info, "eos_token", None)
    if not source:
        return ChatTemplate()
    specials = [t for t in tok.special_to_id if t in source]
    return JinjaChatTemplate(source, special_tokens=specials, bos_token=bos, eos_token=eos)


__all__ = ["CHAT_FORMAT", "ChatSession", "TurnInfo", "template_for"]
