"""Beam search: keep the ``num_beams`` highest-scoring partial sequences at every step.

Score of a hypothesis = Σ log p(token | prefix) over its generated tokens. Each step expands
every beam by every token, keeps the best ``2 × num_beams`` candidates; candidates ending in
``eos_id`` become finished hypotheses, the best ``num_beams`` others continue. Finished and
final hypotheses are ranked by score / (generated length ** length_penalty) (Wu et al. 2016,
GNMT, simplified the way Hugging Face does it; length_penalty > 0 favours longer outputs).
Search stops early when ``num_beams`` hypotheses are finished and no running beam can beat
the worst of them (Hugging Face's ``early_stopping=False`` heuristic).

With a KV cache the prompt is prefilled once, copied to every beam, and the cache's rows are
reordered (``cache.reorder(src)``) to follow the surviving beams. Shapes: beams (N, T) ids,
step logits (N, V).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from g2c.nn import Module
from g2c.sampling.generate import (
    _as_prompt,
    _check_prompt_range,
    _model_device,
    has_kv_cache,
    inference_mode,
)


def _beam_logits(model, seqs: torch.Tensor, cache, new_len: int):
    """Next-token logits (N, V) for beams ``seqs`` (N, T); uses/updates ``cache`` or None."""
    max_len = getattr(model, "max_seq_len", None)
    if cache is not None and (max_len is None or seqs.shape[1] <= max_len):
        logits, cache = model.forward_prefill(seqs[:, -new_len:], cache)
        return logits[:, -1], cache
    ctx = seqs[:, -max_len:] if max_len else seqs
    return model(ctx)[:, -1], None  # past the window: full forwards from here on


def beam_search(
    model: Module,
    prompt: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    *,
    use_cache: bool = True,
) -> torch.Tensor:
    """Most likely continuation found by beam search: 1-D LongTensor prompt + new tokens.

    ``prompt`` 1-D ids (T,) or a list. ``num_beams`` ≥ 1 (1 = greedy). ``length_penalty``
    exponent of the length normalisation (0 = raw sum of log-probabilities). Stops a
    hypothesis at ``eos_id`` (kept). Raises ValueError for an empty prompt, num_beams < 1 or
    negative max_new_tokens.
    """
    ids = _as_prompt(prompt)
    _check_prompt_range(ids, getattr(model, "vocab_size", None))
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1, got {num_beams!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    device = _model_device(model)
    seqs = torch.tensor([ids], dtype=torch.long, device=device)  # (1, P)
    if max_new_tokens == 0:
        return seqs[0].cpu()
    scores = torch.zeros(1, device=device)  # (N,) summed log-probs of running beams
    finished: list[tuple[float, torch.Tensor]] = []
    with inference_mode(model):
        cached = use_cache and has_kv_cache(model)
        max_len = getattr(model, "max_seq_len", None)
        cache = model.empty_kv_cache() if cached else None
        new_len = seqs.shape[1] if not max_len else min(seqs.shape[1], max_len)
        if cache is not None and max_len and seqs.shape[1] > max_len:
            cache = None  # prompt longer than the window: no cache
        for step in range(max_new_tokens):
            logits, cache = _beam_logits(model, seqs, cache, new_len)  # (N, V)
            logp = torch.log_softmax(logits.float(), dim=-1)
            V = logp.shape[-1]
            cand = (scores[:, None] + logp).reshape(-1)  # (N·V,)
            top_scores, top_idx = cand.topk(min(2 * num_beams, cand.numel()))
            src, toks, keep_scores = [], [], []
            gen_len = step + 1
            for s, i in zip(top_scores.tolist(), top_idx.tolist()):
                b, t = divmod(i, V)
                if eos_id is not None and t == eos_id:
                    seq = torch.cat([seqs[b], seqs.new_tensor([t])])
                    finished.append((s / gen_len**length_penalty, seq))
                    continue
                src.append(b)
                toks.append(t)
                keep_scores.append(s)
                if len(src) == num_beams:
                    break
            finished = sorted(finished, key=lambda h: h[0], reverse=True)[:num_beams]
            if not src:
                break
            src_t = torch.tensor(src, device=device)
            seqs = torch.cat([seqs[src_t], torch.tensor(toks, device=device)[:, None]], dim=1)
            scores = torch.tensor(keep_scores, device=device)
            new_len = 1
            if cache is not None:
                cache.reorder(src_t)  # follow the surviving beams
            best_running = float(scores.max()) / gen_len**length_penalty
            if len(finished) >= num_beams and best_running <= finished[-1][0]:
                break
        final = list(finished)
        if src:
            gen_len = seqs.shape[1] - len(ids)
            final += [(s / gen_len**length_penalty, seq) for s, seq in zip(scores.tolist(), seqs)]
    best = max(final, key=lambda h: h[0])[1]
    return best.cpu()
