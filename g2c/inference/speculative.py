"""Speculative decoding: a cheap drafter proposes k tokens, the target checks them in one forward.

Sources: Leviathan, Kalman & Matias 2023, "Fast Inference from Transformers via Speculative
Decoding" (ICML), Algorithm 1; Chen et al. 2023, "Accelerating Large Language Model Decoding
with Speculative Sampling" (arXiv:2302.01318), Algorithm 2. Prompt-lookup drafting: Saxena 2023
("prompt lookup decoding"), an n-gram match in the text so far.

One round, with the target's KV cache holding every token but the last:

    draft x_1..x_k with probabilities q_1..q_k           (drafter)
    target forward_prefill([last, x_1..x_k]) → p_1..p_{k+1}  (ONE forward, k+1 positions)
    for i = 1..k: accept x_i with probability min(1, p_i(x_i) / q_i(x_i));
                  on the first rejection emit y ~ norm(max(0, p_i − q_i)) and stop
    all k accepted: emit the bonus y ~ p_{k+1}
    crop the target cache to the accepted tokens (``cache.crop``)

Every emitted token is then distributed exactly as the target's own sample (Leviathan et al.,
Theorem 1): P(y) = q(y)·min(1, p(y)/q(y)) + (1 − Σ min(p, q))·max(0, p(y) − q(y)) / Σ max(0, p − q)
= min(p, q)(y) + max(0, p − q)(y) = p(y). A deterministic drafter (prompt lookup) has q = a point
mass at x: accept with probability p(x), on rejection sample from p with x removed,
renormalised — the same rule. Greedy (temperature 0): p is a point mass at the argmax, so a
draft token is accepted iff it is the target's argmax, and the output equals plain greedy
decoding token for token.

p and q are both computed with the same temperature / top-k / top-p filters
(``g2c.sampling``), so "the target's own sample" means the filtered distribution that
``g2c.sampling.generate`` samples from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from g2c.sampling.filters import apply_temperature, top_k_filter, top_p_filter
from g2c.sampling.generate import inference_mode

# -- distributions and the acceptance rule -------------------------------------------------------


def _probs(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None):
    """Logits (..., V) → the sampling distribution (..., V) float32 that g2c.sampling uses:
    temperature → top-k → top-p → softmax; temperature 0 → a point mass at the argmax."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def _sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))


def accept_or_resample(
    p: torch.Tensor,
    q: torch.Tensor | None,
    x: int,
    generator: torch.Generator | None = None,
) -> tuple[bool, int]:
    """The exact acceptance rule for one draft token x.

    ``p`` (V,) target distribution, ``q`` (V,) draft distribution or None for a deterministic
    draft (a point mass at x). Accept with probability min(1, p(x)/q(x)) → (True, x); else
    → (False, y) with y ~ norm(max(0, p − q)). The returned token is distributed as p.
    """
    q_x = 1.0 if q is None else float(q[x])
    p_x = float(p[x])
    u = float(torch.rand((), generator=generator))
    if q_x > 0 and u < min(1.0, p_x / q_x):
        return True, x
    if q is None:
        residual = p.clone()
        residual[x] = 0.0
    else:
        residual = (p - q).clamp(min=0.0)
    if float(residual.sum()) <= 0.0:  # p == q up to rounding: nothing to correct
        residual = p
    return False, _sample(residual / residual.sum(), generator)


# -- KV cache rollback -----------------------------------------------------------------------------


def _crop(cache, length: int):
    """Keep the first ``length`` positions of a model KV cache (``cache.crop`` when the cache
    has it, else slicing every ``LayerKVCache``'s keys/values along time)."""
    if hasattr(cache, "crop"):
        cache.crop(length)
        return cache
    for layer in cache.layers:
        if layer.keys is None or layer.length <= length:
            continue
        if length == 0:
            layer.keys, layer.values = None, None
        else:
            layer.keys = layer.keys[..., :length, :]  # (B, H, T, hd) -> (B, H, length, hd)
            layer.values = layer.values[..., :length, :]
    return cache


class _CachedModel:
    """A model plus a KV cache that covers ``tokens`` (the tokens fed so far)."""

    def __init__(self, model) -> None:
        self.model = model
        self.cache = model.empty_kv_cache()
        self.tokens: list[int] = []
        self.device = next(iter(model.parameters()), torch.empty(0)).device
        self.forwards = 0

    def sync(self, seq: Sequence[int]) -> None:
        """Crop the cache to the longest common prefix of what it holds and ``seq``."""
        n = 0
        for a, b in zip(self.tokens, seq):
            if a != b:
                break
            n += 1
        if n < len(self.tokens):
            _crop(self.cache, n)
            self.tokens = self.tokens[:n]

    def feed(self, new: Sequence[int]) -> torch.Tensor:
        """Append ``new`` tokens → logits (len(new), V) for the positions after each."""
        ids = torch.tensor([list(new)], dtype=torch.long, device=self.device)  # (1, T_new)
        logits, self.cache = self.model.forward_prefill(ids, self.cache)  # (1, T_new, V)
        self.tokens += [int(t) for t in new]
        self.forwards += 1
        return logits[0]


# -- drafters --------------------------------------------------------------------------------------


class DraftModel:
    """Drafts by sampling a smaller / quantized model that shares the target's tokenizer.

    ``propose(seq, k, ...)`` → (k tokens, q (k, V)): the draft model's filtered distributions,
    sampled autoregressively with its own KV cache (rolled back to the accepted prefix on the
    next call).
    """

    deterministic = False

    def __init__(self, model) -> None:
        self.model = model
        self._state: _CachedModel | None = None

    @property
    def forwards(self) -> int:
        """Draft-model forward passes made so far."""
        return 0 if self._state is None else self._state.forwards

    def reset(self) -> None:
        """Start a new sequence from ``tokens`` (prefill the draft's KV cache)."""
        self._state = _CachedModel(self.model)

    def propose(self, seq, k, temperature, top_k, top_p, generator):
        """Up to ``k`` draft tokens and their distributions q (k, V), sampled as the target would."""
        if k < 1:
            return [], None
        st = self._state
        st.sync(seq)
        logits = st.feed(seq[len(st.tokens) :])[-1]  # (V,) after the whole sequence
        tokens, qs = [], []
        for i in range(k):
            q = _probs(logits, temperature, top_k, top_p)  # (V,)
            x = int(q.argmax()) if temperature == 0 else _sample(q, generator)
            tokens.append(x)
            qs.append(q)
            if i < k - 1:
                logits = st.feed([x])[-1]
        return tokens, torch.stack(qs) if qs else None


class PromptLookup:
    """Drafts by copying: find the latest earlier occurrence of the last n tokens (n from
    ``max_ngram`` down to ``min_ngram``) and propose the k tokens that followed it. No model;
    q is a point mass (deterministic draft). Shines when the output repeats the prompt
    (summaries, edits, quoting, code)."""

    deterministic = True
    forwards = 0

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(
                "need 1 <= min_ngram <= max_ngram, got "
                f"min_ngram={min_ngram}, max_ngram={max_ngram}"
            )
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def reset(self) -> None:
        """Start a new sequence from ``tokens`` (nothing to prefill)."""
        pass

    def propose(self, seq, k, temperature, top_k, top_p, generator):
        """Up to ``k`` tokens copied after the longest earlier match of the last n-gram (point-mass q)."""
        for n in range(min(self.max_ngram, len(seq) - 1), self.min_ngram - 1, -1):
            tail = seq[-n:]
            for start in range(len(seq) - n - 1, -1, -1):  # latest match first
                if seq[start : start + n] == tail:
                    follow = seq[start + n : start + n + k]
                    if follow:
                        return list(follow), None
        return [], None


# -- the loop --------------------------------------------------------------------------------------


@dataclass
class SpeculativeResult:
    """Output of :func:`speculative_generate`.

    ``tokens``: prompt + new ids, 1-D LongTensor (CPU). ``proposed``: draft tokens checked;
    ``accepted``: of those, accepted; ``target_forwards`` / ``draft_forwards``: model calls
    (prompt prefill included); ``new_tokens``: tokens generated.
    """

    tokens: torch.Tensor
    new_tokens: int
    proposed: int
    accepted: int
    target_forwards: int
    draft_forwards: int

    @property
    def acceptance_rate(self) -> float:
        """accepted / proposed (0.0 when nothing was proposed)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_forward(self) -> float:
        """New tokens per target forward after the prompt (1.0 = plain decoding)."""
        steps = max(1, self.target_forwards - 1)
        return self.new_tokens / steps


def speculative_generate(
    target,
    prompt: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    *,
    draft=None,
    num_draft_tokens: int = 4,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> SpeculativeResult:
    """Generate up to ``max_new_tokens`` after ``prompt`` with speculative decoding.

    ``target``: a model with a KV cache (``empty_kv_cache``, ``forward_prefill``; a g2c
    TransformerLM, quantized or not). ``draft``: a model sharing the target's vocabulary (wrapped
    in :class:`DraftModel`), a :class:`DraftModel` / :class:`PromptLookup`, or None for
    prompt lookup. ``num_draft_tokens`` k ≥ 1 per round. Sampling as ``g2c.sampling.generate``:
    temperature 0 = greedy (same tokens as plain greedy decoding), else temperature → top_k →
    top_p, sampled with ``generator``; stops after ``eos_id`` (kept). No context sliding: prompt
    + max_new_tokens must fit in ``target.max_seq_len``.

    Raises ValueError (naming the argument) for an empty prompt, prompt ids outside the
    vocabulary, negative max_new_tokens or temperature, num_draft_tokens < 1, bad top_k/top_p,
    a draft with another vocabulary size, or a sequence longer than max_seq_len; TypeError for
    a target without a KV cache.
    """
    ids, drafter = _check_args(target, prompt, max_new_tokens, draft, num_draft_tokens,
                               temperature, top_k, top_p)  # fmt: skip
    seq = list(ids)
    proposed = accepted = 0
    tgt = _CachedModel(target)
    drafter.reset()
    with inference_mode(target), _maybe_inference_mode(drafter):
        if len(seq) > 1:
            tgt.feed(seq[:-1])  # the cache holds every token but the last
        new = 0
        while new < max_new_tokens and not (eos_id is not None and new and seq[-1] == eos_id):
            k = min(num_draft_tokens, max_new_tokens - new - 1)
            drafts, qs = drafter.propose(seq, k, temperature, top_k, top_p, generator)
            drafts = drafts[:k]
            ps = _probs(tgt.feed([seq[-1], *drafts]), temperature, top_k, top_p)  # (n+1, V)
            emitted = []
            for i, x in enumerate(drafts):
                q = None if qs is None else qs[i]
                if temperature == 0:
                    ok, y = (x == int(ps[i].argmax())), int(ps[i].argmax())
                else:
                    ok, y = accept_or_resample(ps[i], q, x, generator)
                emitted.append(y)
                if not ok:
                    break
            else:  # every draft accepted (or none proposed): the bonus token from p_{n+1}
                last = ps[len(drafts)]
                emitted.append(int(last.argmax()) if temperature == 0 else _sample(last, generator))
            proposed += len(drafts)
            accepted += len(emitted) - 1
            tgt.sync(seq + emitted[:-1])  # roll back rejected drafts (cache: all but last)
            if eos_id is not None and eos_id in emitted:
                emitted = emitted[: emitted.index(eos_id) + 1]
            emitted = emitted[: max_new_tokens - new]
            seq += emitted
            new += len(emitted)
    return SpeculativeResult(
        tokens=torch.tensor(seq, dtype=torch.long),
        new_tokens=new,
        proposed=proposed,
        accepted=accepted,
        target_forwards=tgt.forwards,
        draft_forwards=drafter.forwards,
    )


class _maybe_inference_mode:
    """inference_mode for a draft model (eval mode restored afterwards); nothing for lookup."""

    def __init__(self, drafter) -> None:
        model = getattr(drafter, "model", None)
        self._ctx = inference_mode(model) if model is not None else None

    def __enter__(self):
        return None if self._ctx is None else self._ctx.__enter__()

    def __exit__(self, *exc):
        return None if self._ctx is None else self._ctx.__exit__(*exc)


def _check_args(target, prompt, max_new_tokens, draft, k, temperature, top_k, top_p):
    if not (hasattr(target, "empty_kv_cache") and hasattr(target, "forward_prefill")):
        raise TypeError(
            f"target must have a KV cache (empty_kv_cache, forward_prefill), got "
            f"{type(target).__name__}"
        )
    if isinstance(prompt, torch.Tensor):
        prompt = prompt.reshape(-1).tolist()
    ids = [int(t) for t in prompt]
    V = target.vocab_size
    if not ids:
        raise ValueError("prompt is empty; give at least one token id")
    if not 0 <= min(ids) <= max(ids) < V:
        raise ValueError(f"prompt ids must lie in [0, {V}) (the target's vocab_size)")
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 0
    ):
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"num_draft_tokens must be an integer >= 1, got {k!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    if len(ids) + max_new_tokens > target.max_seq_len:
        raise ValueError(
            f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"target's max_seq_len {target.max_seq_len}; lower max_new_tokens or crop the prompt"
        )
    if draft is None:
        drafter = PromptLookup()
    elif isinstance(draft, (DraftModel, PromptLookup)):
        drafter = draft
    elif hasattr(draft, "empty_kv_cache") and hasattr(draft, "forward_prefill"):
        drafter = DraftModel(draft)
    else:
        raise TypeError(
            f"draft must be a model with a KV cache, a DraftModel, a PromptLookup or None, got "
            f"{type(draft).__name__}"
        )
    dmodel = getattr(drafter, "model", None)
    if dmodel is not None and getattr(dmodel, "vocab_size", V) != V:
        raise ValueError(
            f"draft vocab_size {dmodel.vocab_size} differs from the target's {V}; the draft "
            "must share the target's tokenizer"
        )
    return ids, drafter


__all__ = [
    "DraftModel",
    "PromptLookup",
    "SpeculativeResult",
    "accept_or_resample",
    "speculative_generate",
]
