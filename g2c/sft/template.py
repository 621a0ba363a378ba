"""Chat templates and loss masks: a conversation → token ids + which of them to learn.

A chat model sees a conversation as ONE token sequence in which template *markers* (special
tokens) say who speaks. SFT trains only on what the assistant says: the loss mask is 1 on
assistant content and the marker that ends the turn (so the model learns to stop), 0 on
system / user / tool turns and on the assistant's opening marker line (Ouyang et al. 2022,
InstructGPT; the Hugging Face "assistant_only_loss").

g2c's own template (:class:`ChatTemplate`, API.md 13), for
``[system "Be brief.", user "Hi", assistant "Hello!"]``::

    <|system|>\\nBe brief.\\n<|user|>\\nHi\\n<|assistant|>\\nHello!<|end|>
                                                      ^^^^^^^^^^^^^ mask 1

Any model's own template (:class:`JinjaChatTemplate`): the Hugging Face ``chat_template``
Jinja source, rendered with ``jinja2`` in a sandbox, unmodified — no ``{% generation %}``
markers needed. Masks come from rendering turn by turn: the text that messages[:i+1] adds to
messages[:i] is turn i; rendering turn i with a placeholder instead of its content splits it
into template text around the content.

Both templates describe a conversation as :class:`ChatSpan` pieces (text, is it message
content, is it trained), and :func:`render_with_mask` tokenizes the pieces: template text with
its markers inserted as special ids, message content as plain text — a special-token string
typed by a user (``"<|user|>"`` inside content) stays plain bytes and can never forge a turn
(the prompt-injection guard).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import jinja2
import jinja2.sandbox

ROLES = ("system", "user", "assistant", "tool")


class SFTExample(NamedTuple):
    """One tokenized conversation: ``ids`` (list of int token ids) and ``mask`` (list of 0/1,
    same length; 1 where the token is a training target — assistant content and its END)."""

    ids: list[int]
    mask: list[int]


class ChatSpan(NamedTuple):
    """A piece of a rendered conversation: ``text``; ``content`` True for message content
    (tokenized as plain text, never special ids) and False for template text (its special
    tokens become special ids); ``train`` True where the loss mask is 1."""

    text: str
    content: bool
    train: bool


def check_messages(
    messages: Any, roles: Sequence[str] = ROLES, *, need_assistant: bool = False
) -> list[dict]:
    """Validate a conversation: a non-empty list of ``{"role", "content"}`` dicts, roles from
    ``roles``, string contents; with ``need_assistant`` at least one assistant turn.

    Returns the list. Empty / not a list / missing keys / unknown role / no assistant turn →
    ValueError naming ``messages``; non-string content → TypeError.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(
            "messages must be a non-empty list of {'role', 'content'} dicts, got "
            f"{messages!r:.80}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(
                f"messages[{i}] must be a dict with 'role' and 'content', got {m!r:.80}"
            )
        if m["role"] not in roles:
            raise ValueError(
                f"messages[{i}] has unknown role {m['role']!r}; roles are {list(roles)}"
            )
        if not isinstance(m["content"], str):
            raise TypeError(
                f"messages[{i}]['content'] must be a str, got {type(m['content']).__name__}"
            )
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        raise ValueError(
            "messages has no assistant turn: SFT learns assistant turns, so a conversation "
            "without one gives nothing to train on; add one or drop the conversation"
        )
    return list(messages)


class BaseChatTemplate:
    """What every chat template provides (g2c's :class:`ChatTemplate`, any model's
    :class:`JinjaChatTemplate`), so :func:`render_with_mask` takes either.

    Subclasses set ``special_tokens`` (marker strings the tokenizer must know as special
    tokens), ``roles``, and write :meth:`spans`; :meth:`render` is the spans' text joined.
    :attr:`required_tokens` are the markers every system/user/assistant conversation needs
    (default: all of them); markers of other roles (a tool turn) are checked when a
    conversation uses them.
    """

    special_tokens: tuple[str, ...] = ()
    roles: tuple[str, ...] = ROLES

    @property
    def required_tokens(self) -> tuple[str, ...]:
        """Markers a system / user / assistant conversation writes (checked up front)."""
        return self.special_tokens

    def spans(self, messages: list[dict], *, add_generation_prompt: bool = False) -> list[ChatSpan]:
        """The conversation as :class:`ChatSpan` pieces in order."""
        raise NotImplementedError

    def render(self, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
        """The conversation as one string (markers included); ``add_generation_prompt`` ends
        it with the opening of an assistant turn, for generation."""
        spans = self.spans(messages, add_generation_prompt=add_generation_prompt)
        return "".join(s.text for s in spans)

    @property
    def stop_tokens(self) -> tuple[str, ...]:
        """Special tokens that end an assistant turn (trained template text after its content):
        generation stops at the first of them."""
        spans = self.spans(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        )
        stops = []
        for s in spans:
            if s.train and not s.content:
                stops += [t for t in self.special_tokens if t in s.text and t not in stops]
        return tuple(stops)

    def check_tokenizer(
        self, tokenizer: Any, needed: Sequence[str] | None = None
    ) -> dict[str, int]:
        """``tokenizer.special_to_id`` restricted to the markers ``needed`` (default: all of
        this template's); a tokenizer without ``encode`` / ``special_to_id`` or lacking a
        needed marker → ValueError naming tokenizer and the missing tokens."""
        if not callable(getattr(tokenizer, "encode", None)) or not isinstance(
            getattr(tokenizer, "special_to_id", None), dict
        ):
            raise ValueError(
                "tokenizer must have encode(text) and a special_to_id dict (a g2c BPETokenizer), "
                f"got {type(tokenizer).__name__}"
            )
        needed = self.special_tokens if needed is None else tuple(needed)
        missing = [t for t in needed if t not in tokenizer.special_to_id]
        if missing:
            raise ValueError(
                f"tokenizer lacks the chat template's special tokens {missing}; build it with "
                "them (BPETokenizer.with_course_special_tokens() has g2c's markers) — a marker "
                "encoded as plain text would not be a marker"
            )
        return {t: tokenizer.special_to_id[t] for t in needed}

    def encode_template_text(
        self, text: str, tokenizer: Any, specials: dict[str, int]
    ) -> list[int]:
        """Template text → ids: each marker string becomes its special id, the rest plain."""
        ids: list[int] = []
        rest = text
        while rest:
            hits = [(rest.find(t), t) for t in specials if t in rest]
            if not hits:
                ids += tokenizer.encode(rest)
                break
            at, tok = min(hits, key=lambda h: (h[0], -len(h[1])))  # leftmost, longest
            if at:
                ids += tokenizer.encode(rest[:at])
            ids.append(specials[tok])
            rest = rest[at + len(tok) :]
        return ids

    def encode_prompt(self, messages: list[dict], tokenizer: Any) -> list[int]:
        """Ids of the conversation followed by the generation prompt (what a chat model is
        given to answer the last turn); markers as special ids, content as plain text."""
        spans = self.spans(messages, add_generation_prompt=True)
        return _tokenize_spans(self, spans, tokenizer)[0]


# -- g2c's own template ---------------------------------------------------------------------------
class ChatTemplate(BaseChatTemplate):
    """g2c's chat template (API.md 13): markers ``USER``, ``ASSISTANT``, ``END``, ``SYSTEM``,
    ``TOOL`` (all in ``BPETokenizer.with_course_special_tokens()``).

    A system / user / tool turn renders as marker, newline, content, newline; an assistant
    turn as marker, newline, content, then END (no trailing newline). The generation prompt
    is ``ASSISTANT + "\\n"``. ``render(messages)``: an empty list or an unknown role →
    ValueError.
    """

    USER = "<|user|>"
    ASSISTANT = "<|assistant|>"
    END = "<|end|>"
    SYSTEM = "<|system|>"
    TOOL = "<|tool|>"

    def __init__(self) -> None:
        self.markers = {
            "system": self.SYSTEM,
            "user": self.USER,
            "assistant": self.ASSISTANT,
            "tool": self.TOOL,
        }
        self.special_tokens = (self.SYSTEM, self.USER, self.ASSISTANT, self.TOOL, self.END)

    @property
    def required_tokens(self) -> tuple[str, ...]:
        """``<|system|> <|user|> <|assistant|> <|end|>``: a run whose tokenizer predates the
        tool markers can still be fine-tuned and chatted with (tool turns then refuse)."""
        return (self.SYSTEM, self.USER, self.ASSISTANT, self.END)

    def spans(self, messages: list[dict], *, add_generation_prompt: bool = False) -> list[ChatSpan]:
        """Pieces: marker line (template), content, then "\\n" — or END, trained, after an
        assistant's content (its content is trained too)."""
        check_messages(messages, self.roles)
        out: list[ChatSpan] = []
        for m in messages:
            out.append(ChatSpan(self.markers[m["role"]] + "\n", False, False))
            if m["role"] == "assistant":
                out.append(ChatSpan(m["content"], True, True))
                out.append(ChatSpan(self.END, False, True))
            else:
                out.append(ChatSpan(m["content"], True, False))
                out.append(ChatSpan("\n", False, False))
        if add_generation_prompt:
            out.append(ChatSpan(self.ASSISTANT + "\n", False, False))
        return [s for s in out if s.text]

    def __repr__(self) -> str:
        return "ChatTemplate()"


# -- any model's own template (Hugging Face chat_template, Jinja) ---------------------------------
_PLACEHOLDER = "\x00g2c-message-content\x00"


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


class JinjaChatTemplate(BaseChatTemplate):
    """A Hugging Face-style Jinja chat template (the ``chat_template`` string of a model's
    tokenizer config or GGUF metadata), rendered as ``transformers`` renders it: a sandboxed
    ``jinja2`` environment (``ImmutableSandboxedEnvironment``, ``trim_blocks``,
    ``lstrip_blocks``), variables ``messages``, ``add_generation_prompt``, ``bos_token``,
    ``eos_token``, the function ``raise_exception`` and a ``tojson`` filter.

    Args: ``template_source`` (the Jinja text), ``special_tokens`` (the marker strings the
    template writes, e.g. ``("<|im_start|>", "<|im_end|>")``; bos/eos are added), ``bos_token``,
    ``eos_token``, ``roles`` (accepted roles). Spans are computed by rendering turn by turn, so
    the template must render a conversation as the concatenation of its turns (a prefix of
    messages renders a prefix of the text) and write each message's content verbatim — else
    ValueError naming the template. Jinja syntax errors and ``raise_exception`` → ValueError.
    """

    def __init__(
        self,
        template_source: str,
        *,
        special_tokens: Sequence[str],
        bos_token: str | None = None,
        eos_token: str | None = None,
        roles: Sequence[str] = ROLES,
    ) -> None:
        if not isinstance(template_source, str) or not template_source.strip():
            raise ValueError("template_source must be a non-empty Jinja template string")
        specials = [t for t in special_tokens if t]
        for extra in (bos_token, eos_token):
            if extra and extra not in specials:
                specials.append(extra)
        if not specials:
            raise ValueError("special_tokens must name the template's marker tokens")
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(template_source)
        except jinja2.TemplateError as exc:
            raise ValueError(f"template_source is not a valid Jinja template: {exc}") from exc
        self.template_source = template_source
        self.special_tokens = tuple(specials)
        self.bos_token, self.eos_token = bos_token, eos_token
        self.roles = tuple(roles)

    def _render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except jinja2.TemplateError as exc:
            raise ValueError(f"the chat template refused the messages: {exc}") from exc

    def render(self, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
        """The template's own rendering of ``messages`` (validated first)."""
        check_messages(messages, self.roles)
        return self._render(list(messages), add_generation_prompt)

    def spans(self, messages: list[dict], *, add_generation_prompt: bool = False) -> list[ChatSpan]:
        """Turn by turn: turn i is render(messages[:i+1]) minus render(messages[:i]); the same
        turn rendered with a placeholder content splits it into template text before and after
        the content. Assistant turns train their content and the special tokens right after it
        (the end-of-turn marker, e.g. ``<|im_end|>``), not what follows (a newline)."""
        messages = check_messages(messages, self.roles)
        out: list[ChatSpan] = []
        try:
            done = self._render([])
        except ValueError:  # templates that index messages[0] cannot render no messages
            done = ""
        for i, m in enumerate(messages):
            full = self._render(messages[: i + 1])
            probe = self._render(messages[:i] + [{**m, "content": _PLACEHOLDER}])
            if not full.startswith(done) or not probe.startswith(done):
                raise ValueError(
                    f"template_source does not render turn by turn: messages[:{i + 1}] does "
                    f"not extend the rendering of messages[:{i}], so turn masks are undefined"
                )
            before, sep, after = probe[len(done) :].partition(_PLACEHOLDER)
            if not sep or full[len(done) :] != before + m["content"] + after:
                raise ValueError(
                    f"template_source changes the content of messages[{i}] (e.g. strips it); "
                    "masks need the content written verbatim"
                )
            trained = m["role"] == "assistant"
            head = self._leading_specials(after) if trained else ""
            out += [
                ChatSpan(before, False, False),
                ChatSpan(m["content"], True, trained),
                ChatSpan(head, False, True),
                ChatSpan(after[len(head) :], False, False),
            ]
            done = full
        if add_generation_prompt:
            prompt = self._render(messages, add_generation_prompt=True)
            if not prompt.startswith(done):
                raise ValueError("template_source: the generation prompt does not extend the text")
            out.append(ChatSpan(prompt[len(done) :], False, False))
        return [s for s in out if s.text]

    def _leading_specials(self, text: str) -> str:
        """The run of special tokens at the start of ``text`` (the turn's end markers)."""
        n = 0
        while True:
            tok = next((t for t in self.special_tokens if text.startswith(t, n)), None)
            if tok is None:
                return text[:n]
            n += len(tok)

    def __repr__(self) -> str:
        return f"JinjaChatTemplate(special_tokens={list(self.special_tokens)})"


# -- tokens and masks ---------------------------------------------------------------------------
def _tokenize_spans(
    template: BaseChatTemplate, spans: list[ChatSpan], tokenizer: Any
) -> tuple[list[int], list[int]]:
    used = [t for t in template.special_tokens if any(t in s.text for s in spans if not s.content)]
    specials = template.check_tokenizer(tokenizer, used)  # markers this conversation writes
    ids: list[int] = []
    mask: list[int] = []
    for span in spans:
        if span.content:  # typed by a user / the data: plain text, never special ids
            piece = list(tokenizer.encode(span.text))
        else:
            piece = template.encode_template_text(span.text, tokenizer, specials)
        ids += piece
        mask += [int(span.train)] * len(piece)
    return ids, mask


def render_with_mask(
    messages: list[dict], tokenizer: Any, *, template: BaseChatTemplate | None = None
) -> SFTExample:
    """Tokenize a conversation and mark its training targets → ``SFTExample(ids, mask)``.

    ``template`` defaults to :class:`ChatTemplate`; any :class:`BaseChatTemplate` (a model's
    :class:`JinjaChatTemplate`) plugs in. Markers are inserted as special ids; message content
    is encoded with ``tokenizer.encode(text)`` (no specials allowed: a ``"<|user|>"`` typed in
    content stays plain bytes). ``mask`` is 1 exactly on assistant content and the end-of-turn
    marker after it, 0 elsewhere. ``tokenizer.decode(ids) == template.render(messages)``.

    Raises ValueError for an empty conversation, an unknown role, no assistant turn (naming
    messages), or a tokenizer without the template's special tokens (naming tokenizer).
    """
    template = ChatTemplate() if template is None else template
    if not isinstance(template, BaseChatTemplate):
        raise TypeError(f"template must be a BaseChatTemplate, got {type(template).__name__}")
    check_messages(messages, template.roles, need_assistant=True)
    ids, mask = _tokenize_spans(template, template.spans(messages), tokenizer)
    return SFTExample(ids, mask)


__all__ = [
    "ROLES",
    "BaseChatTemplate",
    "ChatSpan",
    "ChatTemplate",
    "JinjaChatTemplate",
    "SFTExample",
    "check_messages",
    "render_with_mask",
]
