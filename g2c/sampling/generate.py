"""Autoregressive generation: feed the sequence, pick the next token, append, repeat.

    logits = model(tokens[-max_seq_len:])[-1]          (V,) next-token scores
    logits → repetition penalty → temperature → top-k → top-p → softmax → sample (or argmax)

With a KV cache (``model.empty_kv_cache()``, ``model.forward_prefill`` for the prompt,
``model.forward_cached`` for each new token) each step feeds only the new token: the prompt is
prefilled once, then every token costs a one-position forward instead of a forward over the
whole context (Pope et al. 2022, "Efficiently Scaling Transformer Inference"). Greedy output is
identical with and without the cache. :func:`generate_cached` is that loop written out, the
course's version: no cropping, it stops at ``max_seq_len``.

Context cropping: the model sees at most ``max_seq_len`` tokens. Without a cache that is the
last ``max_seq_len`` tokens; with a cache, once the cached length would pass ``max_seq_len``,
the cache is rebuilt from the last ``max_seq_len`` tokens at every step — exactly what the
uncached model sees (same tokens), at the uncached cost for the steps past the limit.

Extras: ``stream_generate`` (an iterator of new token ids), ``stop_strings`` (needs ``decode``,
a function ids → text; generation stops once the new text contains one of them — the tokens
that completed it are kept), ``eos_id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from g2c.nn import Module
from g2c.sampling.filters import (
    apply_repetition_penalty,
    apply_temperature,
    top_k_filter,
    top_p_filter,
)


def _model_device(model) -> torch.device:
    params = model.parameters() if hasattr(model, "parameters") else []
    for p in params:
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def inference_mode(model: Module) -> Iterator[None]:
    """No grads and eval mode (dropout off) for the block; the previous mode is restored."""
    was_training = bool(getattr(model, "training", False))
    if was_training:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def has_kv_cache(model) -> bool:
    """True when ``model`` offers the KV-cache protocol (``empty_kv_cache``, ``forward_prefill``)."""
    return hasattr(model, "empty_kv_cache") and hasattr(model, "forward_prefill")


class Decoder:
    """Feeds a growing token sequence to ``model`` and returns next-token logits (V,).

    ``use_cache`` (and a model with ``empty_kv_cache``/``forward_prefill``): only tokens not
    yet in the cache are fed; past ``max_seq_len`` the cache is rebuilt from the last
    ``max_seq_len`` tokens (same logits as the uncached path). Call inside ``inference_mode``.
    """

    def __init__(self, model: Module, tokens: Sequence[int], *, use_cache: bool = True) -> None:
        self.model = model
        self.device = _model_device(model)
        self.tokens: list[int] = [int(t) for t in tokens]
        self.max_len = int(getattr(model, "max_seq_len", 0)) or None
        self.use_cache = bool(use_cache and has_kv_cache(model))
        self.cache = None
        self.n_cached = 0  # number of trailing tokens (from window start) held in the cache
        self.window_start = 0

    def append(self, token: int) -> None:
        """Add one token to the sequence."""
        self.tokens.append(int(token))

    def _ids(self, toks: Sequence[int]) -> torch.Tensor:
        return torch.tensor([toks], dtype=torch.long, device=self.device)  # (1, T)

    def next_logits(self) -> torch.Tensor:
        """Logits (V,) for the token after ``self.tokens``."""
        if not self.use_cache:
            ctx = self.tokens[-self.max_len :] if self.max_len else self.tokens
            return self.model(self._ids(ctx))[0, -1]  # (1, T, V) -> (V,)
        pending = self.tokens[self.window_start + self.n_cached :]
        if self.cache is None or (self.max_len and self.n_cached + len(pending) > self.max_len):
            window = self.tokens[-self.max_len :] if self.max_len else self.tokens
            self.cache = self.model.empty_kv_cache()  # (re)prefill the whole window
            self.window_start = len(self.tokens) - len(window)
            self.n_cached = 0
            pending = window
        logits, self.cache = self.model.forward_prefill(
            self._ids(pending), self.cache
        )  # (1, T_new, V)
        self.n_cached += len(pending)
        return logits[0, -1]


def _as_prompt(prompt) -> list[int]:
    if isinstance(prompt, torch.Tensor):
        if prompt.dtype.is_floating_point or prompt.dtype == torch.bool:
            raise TypeError(f"prompt must hold integer token ids, got {prompt.dtype}")
        if prompt.dim() == 2 and prompt.shape[0] == 1:
            prompt = prompt[0]
        if prompt.dim() != 1:
            raise ValueError(f"prompt must be 1-D (T,) token ids, got shape {tuple(prompt.shape)}")
        prompt = prompt.tolist()
    prompt = [int(t) for t in prompt]
    if not prompt:
        raise ValueError("prompt is empty; give at least one token id (e.g. a newline or BOS)")
    return prompt


def _check_prompt_range(ids: list[int], vocab_size: int | None) -> None:
    """Prompt ids outside [0, vocab_size) → ValueError (before any forward, on every device)."""
    if vocab_size is not None and ids and not 0 <= min(ids) <= max(ids) < vocab_size:
        raise ValueError(
            f"prompt ids must lie in [0, {vocab_size}) (the model's vocab_size), got range "
            f"[{min(ids)}, {max(ids)}]; encode the prompt with the model's own tokenizer"
        )


def _check_sampling_args(temperature, top_k, top_p, repetition_penalty, max_new_tokens) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    prev_ids: Sequence[int] | torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Pick one token id from next-token ``logits`` (V,).

    Order: repetition penalty on ``prev_ids`` → mask to ``allowed`` (bool (V,), for
    constrained decoding) → temperature 0: argmax; else temperature → top-k → top-p →
    softmax → ``torch.multinomial`` with ``generator``.
    """
    logits = logits.float()
    if repetition_penalty != 1.0 and prev_ids is not None and len(prev_ids):
        prev = torch.as_tensor(prev_ids, dtype=torch.long, device=logits.device)
        logits = apply_repetition_penalty(logits, prev, repetition_penalty)
    if allowed is not None:
        logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)  # (V,)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return int(torch.multinomial(probs, 1, generator=generator))


def _token_iter(
    model,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float,
    eos_id: int | None,
    generator: torch.Generator | None,
    use_cache: bool,
    stop_strings: Sequence[str] | None,
    decode: Callable[[list[int]], str] | None,
) -> Iterator[int]:
    """The decoding loop shared by ``generate`` and ``stream_generate`` (yields new ids)."""
    dec = Decoder(model, prompt, use_cache=use_cache)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = dec.next_logits()  # (V,)
        tok = sample_next_token(
            logits,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            prev_ids=dec.tokens,
            generator=generator,
        )
        dec.append(tok)
        new.append(tok)
        yield tok
        if eos_id is not None and tok == eos_id:
            return
        if stop_strings and any(s in decode(new) for s in stop_strings):
            return


def _prepare(model, prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
             eos_id, generator, use_cache, stop_strings, decode):  # fmt: skip
    """Validate the arguments now; returns (prompt ids, the not-yet-started ``_token_iter``)."""
    ids = _as_prompt(prompt)
    _check_sampling_args(temperature, top_k, top_p, repetition_penalty, max_new_tokens)
    V = getattr(model, "vocab_size", None)
    _check_prompt_range(ids, V)
    if eos_id is not None and V is not None and not 0 <= eos_id < V:
        raise ValueError(f"eos_id must be a token id in [0, {V}), got {eos_id}")
    if stop_strings:
        if isinstance(stop_strings, str):
            raise TypeError("stop_strings must be a list of strings, not one string")
        if decode is None:
            raise ValueError("stop_strings needs decode= (a function ids -> text), e.g. tok.decode")
    it = _token_iter(model, ids, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                     eos_id, generator, use_cache, stop_strings, decode)  # fmt: skip
    return ids, it


def stream_generate(
    model: Module,
    prompt: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    *,
    use_cache: bool = True,
    stop_strings: Sequence[str] | None = None,
    decode: Callable[[list[int]], str] | None = None,
) -> Iterator[int]:
    """Like :func:`generate` but yields each new token id (int) as soon as it is chosen.

    Arguments are validated when this is called (before the first ``next``). Between yields
    grad mode and the model's train/eval mode are the caller's own.
    """
    _, it = _prepare(model, prompt, max_new_tokens, temperature, top_k, top_p,
                     repetition_penalty, eos_id, generator, use_cache, stop_strings,
                     decode)  # fmt: skip

    def stream() -> Iterator[int]:
        while True:
            with inference_mode(model):
                tok = next(it, None)
            if tok is None:
                return
            yield tok

    return stream()


def generate(
    model: Module,
    prompt: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    *,
    use_cache: bool = True,
    stop_strings: Sequence[str] | None = None,
    decode: Callable[[list[int]], str] | None = None,
) -> torch.Tensor:
    """Generate up to ``max_new_tokens`` tokens after ``prompt``; returns prompt + new tokens
    as a 1-D LongTensor (T_prompt + n,) on the CPU.

    ``prompt``: 1-D LongTensor (T,) (or (1, T), or a list of ints). ``temperature`` 0 =
    greedy (argmax), else softmax sampling with ``generator`` after the optional
    ``repetition_penalty`` (CTRL), ``top_k`` and ``top_p`` filters. Stops after emitting
    ``eos_id`` (kept in the output) or when the new text (``decode(new_ids)``) contains one of
    ``stop_strings``. The context is cropped to ``model.max_seq_len``. Uses the model's KV
    cache when it has one and ``use_cache`` (same tokens as without for greedy decoding).
    Runs without grads, in eval mode (restored afterwards).

    Raises ValueError for an empty prompt, temperature < 0, top_k ≤ 0, top_p outside (0, 1],
    repetition_penalty ≤ 0, negative max_new_tokens, an eos_id outside the vocabulary, or
    stop_strings without decode.
    """
    ids, it = _prepare(model, prompt, max_new_tokens, temperature, top_k, top_p,
                       repetition_penalty, eos_id, generator, use_cache, stop_strings,
                       decode)  # fmt: skip
    with inference_mode(model):  # the loop runs here, inside one no-grad/eval block
        new = list(it)
    return torch.tensor(ids + new, dtype=torch.long)


def generate_cached(
    model: Module,
    prompt_ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """KV-cached generation written out (course module 11): prefill, then one token at a time.

    ``prompt_ids``: 1-D ids (T,) (tensor or list), 1 ≤ T < ``model.max_seq_len``; ``model``
    needs ``empty_kv_cache``, ``forward_prefill`` and ``forward_cached`` (a TransformerLM).
    Returns prompt + new tokens as a 1-D LongTensor on the CPU; stops after ``eos_id`` or when
    the sequence reaches ``max_seq_len`` (no cropping). Greedy (temperature 0) gives the same
    tokens as :func:`generate`. Sampling as in :func:`sample_next_token`. No grads, eval mode
    (restored).

    Raises ValueError for an empty or not 1-D prompt, a prompt of max_seq_len tokens or more,
    prompt ids outside [0, vocab_size), temperature < 0 and the other bad arguments
    :func:`generate` rejects; TypeError for non-integer ids or a model without a KV cache.
    """
    if not (has_kv_cache(model) and hasattr(model, "forward_cached")):
        raise TypeError(
            f"generate_cached needs a model with a KV cache (empty_kv_cache, forward_prefill, "
            f"forward_cached), got {type(model).__name__}; use generate"
        )
    if isinstance(prompt_ids, torch.Tensor) and prompt_ids.dim() != 1:
        raise ValueError(f"prompt_ids must be 1-D (T,), got shape {tuple(prompt_ids.shape)}")
    ids = _as_prompt(prompt_ids)
    _check_sampling_args(temperature, top_k, top_p, repetition_penalty, max_new_tokens)
    _check_prompt_range(ids, model.vocab_size)
    T_max = model.max_seq_len
    if len(ids) >= T_max:
        raise ValueError(
            f"prompt has {len(ids)} tokens; generate_cached needs fewer than max_seq_len "
            f"({T_max}); crop it or use generate, which slides the window"
        )
    if eos_id is not None and not 0 <= eos_id < model.vocab_size:
        raise ValueError(f"eos_id must be a token id in [0, {model.vocab_size}), got {eos_id}")
    device = _model_device(model)
    tokens = list(ids)
    if max_new_tokens == 0:
        return torch.tensor(tokens, dtype=torch.long)
    with inference_mode(model):
        cache = model.empty_kv_cache()
        prompt = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        logits, cache = model.forward_prefill(prompt, cache)  # (1, T, V)
        for step in range(max_new_tokens):
            tok = sample_next_token(
                logits[0, -1], temperature=temperature, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, prev_ids=tokens, generator=generator,
            )  # fmt: skip
            tokens.append(tok)
            if tok == eos_id or len(tokens) >= T_max or step == max_new_tokens - 1:
                break
            new = torch.tensor([[tok]], dtype=torch.long, device=device)  # (1, 1)
            logits, cache = model.forward_cached(new, cache)  # (1, 1, V)
    return torch.tensor(tokens, dtype=torch.long)
