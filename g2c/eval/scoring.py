"""Log-likelihood multiple-choice scoring (lm-evaluation-harness's protocol) and generation scoring.

Multiple choice (Gao et al., lm-evaluation-harness, ``loglikelihood`` requests): every choice
is a continuation of the same prompt; its score is the summed log-probability of the
continuation's tokens given the prompt,

    ll(choice) = Σ_{j} log p(cont_j | prompt, cont_<j)       (float, natural log)

``acc`` takes argmax ll; ``acc_norm`` takes argmax ll / len(choice) (characters of the choice
text, without the target delimiter — lm-eval 0.4's ``completion_len``); ``acc_bytes`` takes
argmax ll / len(choice.encode("utf-8")) (lm-eval's ``acc_bytes``). For ASCII answers the last
two agree.

Tokenisation follows lm-eval's Hugging Face backend (``TemplateLM._encode_pair``): trailing
spaces of the context move to the front of the continuation, then ``whole = encode(context +
continuation)``, ``context_ids = encode(context)`` and ``continuation_ids =
whole[len(context_ids):]``; the model reads ``(context_ids + continuation_ids)[:-1]``, left-
truncated to ``max_seq_len`` tokens as lm-eval does.

Two paths give the same numbers (``batched=`` chooses; tested equal within 1e-4):

* reference (``batched=False``): one full forward per choice, the log-softmax read at the
  continuation's positions — the definition written out;
* fast (``batched=True``, default): the shared context is prefilled once into the model's KV
  cache (``forward_prefill``), the cache is expanded along the batch (``KVCache.reorder``) and
  all choices run as one right-padded batch against it. Right padding needs no mask: causal
  attention never lets a real position see the padding after it. The logits of the context's
  last position score every choice's first token, so one-token answers (MMLU's " A") cost a
  single context forward. Models without a KV cache run the choices as one padded full batch.
* many questions per forward (``run_multiple_choice_eval(questions_per_batch=16)``, the
  default; :func:`choice_logprobs_batch`): each question's context and all its choices share
  one row under a 3-D "tree" attention mask (a choice sees the context and itself, positions
  restart after the context), B questions side by side. At one CPU thread a question is a few
  dozen tokens, and a forward costs the read of every weight (0.5 GB for SmolLM2 in fp32)
  more than the arithmetic: reading them once per 16 questions instead of twice per question
  is where the speed comes from. Only the scored positions are projected onto the vocabulary.

Generation (``score_generation_example``, ``run_generation_eval``): a ``generate(prompt) ->
text`` callable (any backend: ``g2c.inference`` sits above this module and passes its own), or a
model with its tokenizer decoded greedily by ``g2c.sampling.generate``; a matcher from
:mod:`g2c.eval.core` decides correctness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from g2c.eval.core import (
    MATCHERS,
    EvalReport,
    EvalResult,
    GenerationExample,
    MultipleChoiceExample,
    expected_calibration_error,
    normalized_match,
)
from g2c.sampling import generate as sampling_generate

ResultCallback = Callable[[int, EvalResult], None]
ProgressCallback = Callable[[int, int], None]

# -- tokenisation (lm-eval's _encode_pair) ------------------------------------------------------


def _encode(tokenizer: Any, text: str) -> list[int]:
    if tokenizer is None or not hasattr(tokenizer, "encode"):
        raise TypeError(
            "tokenizer must have an encode(text) -> list[int] method (the model's tokenizer; "
            f"load_model(...).tokenizer), got {type(tokenizer).__name__}"
        )
    ids = tokenizer.encode(text)
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context_ids, continuation_ids) exactly as lm-eval's causal HF backend makes them.

    Trailing whitespace of ``context`` moves onto ``continuation``; ``whole = encode(context +
    continuation)``, ``context_ids = encode(context)``, ``continuation_ids =
    whole[len(context_ids):]``. Empty context or a continuation that encodes to no token →
    ValueError.
    """
    if not isinstance(context, str) or not context:
        raise ValueError(f"context (the prompt) must be a non-empty str, got {context!r}")
    if not isinstance(continuation, str) or not continuation:
        raise ValueError(f"continuation must be a non-empty str, got {continuation!r}")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _encode(tokenizer, context + continuation)
    context_ids = _encode(tokenizer, context)
    continuation_ids = whole[len(context_ids) :]
    if not context_ids or not continuation_ids:
        raise ValueError(
            f"context {context!r} / continuation {continuation!r} encode to "
            f"{len(context_ids)} / {len(continuation_ids)} tokens; both need at least one"
        )
    return context_ids, continuation_ids


# -- the reference path: one full forward per choice -------------------------------------------


def _device(model: Any) -> torch.device:
    try:
        return next(iter(model.parameters())).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def _max_len(model: Any) -> int | None:
    return getattr(model, "max_seq_len", None)


class ContinuationTooLong(ValueError):
    """A choice longer than the model's context: it cannot be scored at all (lm-eval would
    slice past the window). :func:`run_multiple_choice_eval` records such a question as
    skipped — wrong, no confidence, counted in the ``skipped`` metric — instead of stopping."""


def _token_logprobs_reference(
    model: Any, context_ids: list[int], continuation_ids: list[int]
) -> float:
    """Σ log p(continuation | context) with one forward of (context + continuation)[:-1],
    left-truncated to max_seq_len like lm-eval."""
    max_len = _max_len(model)
    n = len(continuation_ids)
    seq = context_ids + continuation_ids
    if max_len is not None:
        if n > max_len:
            raise ContinuationTooLong(f"continuation of {n} tokens exceeds max_seq_len {max_len}")
        seq = seq[-(max_len + 1) :]
    inp = torch.tensor([seq[:-1]], dtype=torch.long, device=_device(model))  # (1, T)
    logits = model(inp)[0, -n:].float()  # (n, V): positions that predict the continuation
    logp = F.log_softmax(logits, dim=-1)
    target = torch.tensor(continuation_ids, dtype=torch.long, device=logits.device)
    return float(logp.gather(-1, target[:, None]).sum())


def continuation_logprob(
    model: Any, tokenizer: Any, prompt: str, continuation: str
) -> tuple[float, int]:
    """(sum_logprob, n_tokens): the natural-log probability of ``continuation`` after
    ``prompt`` under ``model`` and the number of continuation tokens it was scored over.

    ``model`` maps ids (1, T) long → logits (1, T, V) (a ``TransformerLM``); ``tokenizer`` has
    ``encode(str) -> list[int]``. Tokenisation as :func:`encode_pair`; the reference path (one
    full forward), no grads, eval mode (restored). Empty prompt/continuation → ValueError.
    """
    context_ids, continuation_ids = encode_pair(tokenizer, prompt, continuation)
    with _eval_mode(model):
        ll = _token_logprobs_reference(model, context_ids, continuation_ids)
    return ll, len(continuation_ids)


class _eval_mode:
    """``with _eval_mode(model):`` no grads and eval mode, the previous mode restored."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.was_training = bool(getattr(model, "training", False))
        self.grad = torch.no_grad()

    def __enter__(self) -> None:
        self.grad.__enter__()
        if hasattr(self.model, "eval"):
            self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        if self.was_training:
            self.model.train()
        self.grad.__exit__(*exc)


# -- the fast path: shared context once, choices as one batch ----------------------------------


def _padded(rows: list[list[int]], fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``rows`` → ids (N, L) long and a mask (N, L) bool of the real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), fill, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids, mask


def _gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (..., V), targets (...) long → log p(target) (...) float32."""
    logits = logits.float()
    picked = logits.gather(-1, targets[..., None]).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def _choices_cached(model: Any, context_ids: list[int], conts: list[list[int]]) -> list[float]:
    """Prefill the context once (1, Tc), expand the cache to N rows, run the choices (minus
    their last token) as one right-padded batch (N, L-1) against it.

    Models with ``logits_from_hidden`` (g2c's TransformerLM) project onto the vocabulary only
    the positions that are scored — the context's last one and the choices' real tokens — not
    the whole context and the padding: with a 49k-token vocabulary the head is a quarter of
    the model's multiply-adds per token."""
    dev = _device(model)
    project = getattr(model, "logits_from_hidden", None)
    kw = {"hidden": True} if project is not None else {}
    cache = model.empty_kv_cache()
    ctx = torch.tensor([context_ids], dtype=torch.long, device=dev)  # (1, Tc)
    out, cache = model.forward_prefill(ctx, cache, **kw)  # (1, Tc, D) hidden or (1, Tc, V)
    last = project(out[0, -1:]) if project is not None else out[0, -1:]  # (1, V)
    first = torch.tensor([c[0] for c in conts], dtype=torch.long, device=dev)  # (N,)
    total = _gather_logprobs(last.expand(len(conts), -1), first)  # (N,): every choice's token 0
    if max(len(c) for c in conts) > 1:
        cache.reorder(torch.zeros(len(conts), dtype=torch.long, device=dev))  # (1,..) -> (N,..)
        inp, _ = _padded([c[:-1] for c in conts], fill=conts[0][0])  # (N, L-1)
        tgt, mask = _padded([c[1:] for c in conts], fill=0)  # (N, L-1)
        out, _ = model.forward_prefill(inp.to(dev), cache, **kw)  # (N, L-1, D or V)
        mask = mask.to(dev)
        if project is not None:  # only the real tokens: (n_real, D) -> (n_real, V)
            rest = torch.zeros(mask.shape, dtype=torch.float32, device=dev)
            rest[mask] = _gather_logprobs(project(out[mask]), tgt.to(dev)[mask])
        else:
            rest = _gather_logprobs(out, tgt.to(dev)) * mask  # (N, L-1)
        total = total + rest.sum(dim=1)
    return total.tolist()


def _choices_padded(model: Any, context_ids: list[int], conts: list[list[int]]) -> list[float]:
    """Models without a KV cache: (context + choice)[:-1] for every choice as one right-padded
    full batch (N, Tc + L - 1)."""
    dev = _device(model)
    rows = [(context_ids + c)[:-1] for c in conts]
    inp, _ = _padded(rows, fill=context_ids[0])
    logits = model(inp.to(dev))  # (N, T, V)
    out = []
    for i, c in enumerate(conts):
        start = len(context_ids) - 1  # the position that predicts the choice's first token
        lp = _gather_logprobs(logits[i, start : start + len(c)], torch.tensor(c, device=dev))
        out.append(float(lp.sum()))
    return out


def _choices_tree(
    model: Any, items: Sequence[tuple[list[int], list[list[int]]]]
) -> list[list[float]]:
    """Several questions in one forward: row b = question b's context followed by all its
    choices (each minus its last token), right-padded to one width (B, T).

    A 3-D attention mask lets a choice's tokens see the context and the earlier tokens of the
    same choice only ("tree" attention: the shared prefix once, the branches side by side),
    and positions restart at the context length for every choice, so each choice is scored
    exactly as in :func:`_choices_cached`. The model's weights are read once for the whole
    group instead of twice per question — at one thread and a few dozen tokens a question,
    reading 0.5 GB of weights, not arithmetic, is what a forward costs. Only the scored
    positions are projected onto the vocabulary. Needs ``forward_prefill`` with 3-D masks and
    ``logits_from_hidden`` (g2c's TransformerLM)."""
    dev = _device(model)
    rows, spans = [], []  # spans[b] = [(start of choice i's tokens in row b, choice ids)]
    for ctx, conts in items:
        row, sp = list(ctx), []
        for c in conts:
            sp.append((len(row), c))
            row.extend(c[:-1])
        rows.append(row)
        spans.append(sp)
    B, T = len(rows), max(len(r) for r in rows)
    ids = torch.zeros((B, T), dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)
    allowed = torch.zeros((B, T, T), dtype=torch.bool)
    causal = torch.ones((T, T), dtype=torch.bool).tril()
    src, tgt, owner = [], [], []  # flat (row, position) that predicts each scored token
    for b, ((ctx, _), row, sp) in enumerate(zip(items, rows, spans)):
        n_ctx = len(ctx)
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        pos[b, :n_ctx] = torch.arange(n_ctx)
        allowed[b, :n_ctx, :n_ctx] = causal[:n_ctx, :n_ctx]
        for i, (start, c) in enumerate(sp):
            n = len(c) - 1  # this choice's tokens in the row
            pos[b, start : start + n] = torch.arange(n_ctx, n_ctx + n)
            allowed[b, start : start + n, :n_ctx] = True
            allowed[b, start : start + n, start : start + n] = causal[:n, :n]
            src.append((b, n_ctx - 1))  # the context's last position predicts token 0
            tgt.append(c[0])
            owner.append((b, i))
            for j in range(1, len(c)):
                src.append((b, start + j - 1))
                tgt.append(c[j])
                owner.append((b, i))
        for t in range(len(row), T):  # padding: sees itself only (no empty softmax row)
            allowed[b, t, t] = True
    hidden, _ = model.forward_prefill(ids.to(dev), model.empty_kv_cache(),
                                      attention_mask=allowed.to(dev), position_ids=pos.to(dev),
                                      hidden=True)  # fmt: skip
    index = torch.tensor(src, dtype=torch.long, device=dev)  # (n_scored, 2)
    picked = hidden[index[:, 0], index[:, 1]]  # (n_scored, D)
    lp = _gather_logprobs(model.logits_from_hidden(picked),
                          torch.tensor(tgt, dtype=torch.long, device=dev)).tolist()  # fmt: skip
    out = [[0.0] * len(conts) for _, conts in items]
    for (b, i), value in zip(owner, lp):
        out[b][i] += value
    return out


def _pairs(tokenizer: Any, example: MultipleChoiceExample) -> list[tuple[list[int], list[int]]]:
    if not isinstance(example, MultipleChoiceExample):
        raise TypeError(f"example must be a MultipleChoiceExample, got {type(example).__name__}")
    return [encode_pair(tokenizer, example.prompt, c) for c in example.continuations]


def _tree_ready(model: Any, pairs: list[tuple[list[int], list[int]]]) -> bool:
    """The question can join a tree batch: one shared context, everything fits, a g2c model."""
    max_len = _max_len(model)
    n = len(pairs[0][0]) + sum(len(c) - 1 for _, c in pairs)
    return (
        all(ctx == pairs[0][0] for ctx, _ in pairs)
        and (max_len is None or n <= max_len)
        and hasattr(model, "logits_from_hidden")
        and hasattr(model, "forward_prefill")
        and hasattr(model, "empty_kv_cache")
    )


def choice_logprobs_batch(
    model: Any,
    tokenizer: Any,
    examples: Sequence[MultipleChoiceExample],
    *,
    questions_per_batch: int = 16,
    max_tokens_per_batch: int = 2048,
) -> list[tuple[list[float], list[int]] | Exception]:
    """:func:`choice_logprobs` for many questions, several per forward (:func:`_choices_tree`).

    Questions are grouped in order, up to ``questions_per_batch`` and ``max_tokens_per_batch``
    tokens (B × widest row) per forward; a question that cannot join a tree batch (contexts
    differ, too long for the model, a model without the hooks) takes :func:`choice_logprobs`.
    Returns one ``(lls, n_tokens)`` per example, in order — or the exception (e.g.
    :class:`ContinuationTooLong`) that scoring that example raised. Equal to the per-question
    path within 1e-4 (tested). ``questions_per_batch`` < 1 → ValueError.
    """
    if not isinstance(questions_per_batch, int) or questions_per_batch < 1:
        raise ValueError(f"questions_per_batch must be an int >= 1, got {questions_per_batch!r}")
    out: list[Any] = [None] * len(examples)
    group: list[tuple[int, list[tuple[list[int], list[int]]]]] = []

    def flush() -> None:
        if group:
            lls = _choices_tree(model, [(p[0][0], [c for _, c in p]) for _, p in group])
            for (k, p), ll in zip(group, lls):
                out[k] = (ll, [len(c) for _, c in p])
            group.clear()

    def width(p: list[tuple[list[int], list[int]]]) -> int:
        return len(p[0][0]) + sum(len(c) - 1 for _, c in p)

    with _eval_mode(model):
        for k, ex in enumerate(examples):
            pairs = _pairs(tokenizer, ex)
            if questions_per_batch == 1 or not _tree_ready(model, pairs):
                try:
                    out[k] = choice_logprobs(model, tokenizer, ex)
                except ContinuationTooLong as exc:
                    out[k] = exc
                continue
            widest = max([width(p) for _, p in group] + [width(pairs)])
            if group and (len(group) >= questions_per_batch
                          or widest * (len(group) + 1) > max_tokens_per_batch):  # fmt: skip
                flush()
            group.append((k, pairs))
        flush()
    return out


def choice_logprobs(
    model: Any,
    tokenizer: Any,
    example: MultipleChoiceExample,
    *,
    batched: bool = True,
) -> tuple[list[float], list[int]]:
    """Summed log-probability and token count of each of ``example``'s continuations.

    ``batched=True`` (default) uses the fast path (shared context prefilled once into the KV
    cache, choices as one padded batch; a padded full batch for models without a cache);
    ``batched=False`` the per-choice reference. Sequences longer than ``max_seq_len`` always
    take the reference path (lm-eval's left truncation). Returns (lls, n_tokens), lists of
    length N = number of choices.
    """
    if not isinstance(example, MultipleChoiceExample):
        raise TypeError(f"example must be a MultipleChoiceExample, got {type(example).__name__}")
    pairs = [encode_pair(tokenizer, example.prompt, c) for c in example.continuations]
    counts = [len(cont) for _, cont in pairs]
    shared = all(ctx == pairs[0][0] for ctx, _ in pairs)  # one context (always, unless spaces)
    max_len = _max_len(model)
    fits = max_len is None or len(pairs[0][0]) + max(counts) - 1 <= max_len
    with _eval_mode(model):
        if batched and shared and fits:
            conts = [cont for _, cont in pairs]
            if hasattr(model, "forward_prefill") and hasattr(model, "empty_kv_cache"):
                return _choices_cached(model, pairs[0][0], conts), counts
            return _choices_padded(model, pairs[0][0], conts), counts
        return [_token_logprobs_reference(model, ctx, cont) for ctx, cont in pairs], counts


# -- one question → EvalResult -----------------------------------------------------------------

_NORMALIZE = {False: "none", True: "chars", "none": "none", "chars": "chars", "bytes": "bytes"}


def _argmax(values: Sequence[float]) -> int:
    """First index of the maximum (NumPy's argmax tie rule, as lm-eval uses)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def score_multiple_choice(
    model: Any,
    tokenizer: Any,
    example: MultipleChoiceExample,
    length_normalize: bool | str = False,
    *,
    batched: bool = True,
) -> EvalResult:
    """Score one question the lm-evaluation-harness way → :class:`EvalResult`.

    ``length_normalize`` picks the prediction: ``False``/``"none"`` = ``acc`` (argmax of the
    summed log-likelihood), ``True``/``"chars"`` = ``acc_norm`` (argmax of ll / characters of
    the choice — lm-eval's ``acc_norm``), ``"bytes"`` = ``acc_bytes`` (ll / UTF-8 bytes).
    ``confidence`` = softmax over the choices' summed log-likelihoods at the prediction.
    ``metadata``: ``logprobs``, ``n_tokens``, ``probs``, ``pred``/``pred_norm``/``pred_bytes``,
    ``acc``/``acc_norm``/``acc_bytes`` (bools), ``answer_idx``, and ``mc2`` (probability mass
    on the true answers, TruthfulQA-MC2) when ``example.metadata["labels"]`` holds one 0/1 per
    choice. ``batched`` as in :func:`choice_logprobs`. Unknown ``length_normalize`` →
    ValueError.
    """
    mode = _NORMALIZE.get(length_normalize) if isinstance(length_normalize, (bool, str)) else None
    if mode is None:
        raise ValueError(
            "length_normalize must be False/'none' (acc), True/'chars' (acc_norm) or 'bytes' "
            f"(acc_bytes), got {length_normalize!r}"
        )
    lls, counts = choice_logprobs(model, tokenizer, example, batched=batched)
    return _mc_result(example, lls, counts, mode)


def _mc_result(
    example: MultipleChoiceExample, lls: list[float], counts: list[int], mode: str
) -> EvalResult:
    """The :class:`EvalResult` of one question from its choices' log-likelihoods."""
    chars = [len(c) for c in example.choices]
    nbytes = [len(c.encode("utf-8")) for c in example.choices]
    preds = {
        "none": _argmax(lls),
        "chars": _argmax([ll / n for ll, n in zip(lls, chars)]),
        "bytes": _argmax([ll / n for ll, n in zip(lls, nbytes)]),
    }
    probs = _softmax(lls)
    gold = example.answer_idx
    meta: dict[str, Any] = {
        "logprobs": lls,
        "n_tokens": counts,
        "probs": probs,
        "answer_idx": gold,
        "pred": preds["none"],
        "pred_norm": preds["chars"],
        "pred_bytes": preds["bytes"],
        "acc": preds["none"] == gold,
        "acc_norm": preds["chars"] == gold,
        "acc_bytes": preds["bytes"] == gold,
    }
    labels = example.metadata.get("labels")
    if labels is not None:
        if len(labels) != len(lls):
            raise ValueError(f"metadata labels has {len(labels)} entries for {len(lls)} choices")
        meta["mc2"] = sum(p for p, label in zip(probs, labels) if label)
    pred = preds[mode]
    return EvalResult(correct=pred == gold, prediction=pred, confidence=probs[pred], metadata=meta)


# -- a whole task ------------------------------------------------------------------------------


def _check_callbacks(on_result: Any, progress: Any, completed: Any) -> dict[int, EvalResult]:
    for name, fn in (("on_result", on_result), ("progress", progress)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
    if completed is not None and not isinstance(completed, Mapping):
        raise TypeError(f"completed must map example index → EvalResult, got {completed!r}")
    return dict(completed or {})


def _report(
    task_name: str,
    results: list[EvalResult],
    metrics: dict[str, float],
    metadata: dict[str, Any] | None,
    n_bins: int,
) -> EvalReport:
    n = len(results)
    accuracy = sum(r.correct for r in results) / n if n else 0.0
    scored = [r for r in results if r.confidence is not None]  # skipped ones have none
    mean_conf = ece = None
    if scored:
        confs = [r.confidence for r in scored]
        mean_conf = sum(confs) / len(scored)
        ece = expected_calibration_error(confs, [r.correct for r in scored], n_bins=n_bins)
        metrics = {**metrics, "mean_confidence": mean_conf, "ece": ece}
    skipped = sum(1 for r in results if r.metadata.get("skipped"))
    if skipped:
        metrics = {**metrics, "skipped": skipped}
    return EvalReport(
        task_name=task_name,
        n=n,
        accuracy=accuracy,
        mean_confidence=mean_conf,
        ece=ece,
        results=results,
        metrics={"accuracy": accuracy, **metrics},
        metadata=dict(metadata or {}),
    )


def run_multiple_choice_eval(
    model: Any,
    tokenizer: Any,
    examples: Sequence[MultipleChoiceExample],
    *,
    task_name: str = "multiple_choice",
    length_normalize: bool | str = False,
    batched: bool = True,
    questions_per_batch: int = 16,
    n_bins: int = 10,
    metadata: dict[str, Any] | None = None,
    completed: Mapping[int, EvalResult] | None = None,
    on_result: ResultCallback | None = None,
    progress: ProgressCallback | None = None,
) -> EvalReport:
    """Score every example → :class:`EvalReport`.

    ``accuracy`` follows ``length_normalize`` (see :func:`score_multiple_choice`); ``metrics``
    holds ``acc``, ``acc_norm``, ``acc_bytes`` (and ``mc2`` when the examples carry labels),
    ``mean_confidence`` and ``ece`` (``n_bins`` equal-width bins). ``metadata`` (prompt format,
    shots, ...) is copied into the report. Resuming: ``completed`` maps example index → an
    earlier :class:`EvalResult` that is reused, not rescored; ``on_result(index, result)`` is
    called after each newly scored example (write it out there) and ``progress(done, total)``
    after every example. ``questions_per_batch`` (with ``batched=True``): questions scored
    in one forward by :func:`choice_logprobs_batch` (1 = one question at a time, the
    :func:`choice_logprobs` fast path). An empty ``examples`` → ValueError.
    """
    examples = list(examples)
    if not examples:
        raise ValueError("examples must not be empty (nothing to evaluate)")
    bad = next((e for e in examples if not isinstance(e, MultipleChoiceExample)), None)
    if bad is not None:
        raise TypeError(f"examples must be MultipleChoiceExample, got {type(bad).__name__}")
    done = _check_callbacks(on_result, progress, completed)
    mode = _NORMALIZE.get(length_normalize) if isinstance(length_normalize, (bool, str)) else None
    if mode is None:
        raise ValueError(
            "length_normalize must be False/'none' (acc), True/'chars' (acc_norm) or 'bytes' "
            f"(acc_bytes), got {length_normalize!r}"
        )
    if not isinstance(questions_per_batch, int) or questions_per_batch < 1:
        raise ValueError(f"questions_per_batch must be an int >= 1, got {questions_per_batch!r}")
    results: list[EvalResult] = []
    scored: dict[int, Any] = {}
    chunk = max(questions_per_batch, 1) * 4  # results are written every chunk (resumable)
    for i, ex in enumerate(examples):
        result = done.get(i)
        if result is None:
            if i not in scored:  # score this and the next pending questions together
                todo = [j for j in range(i, min(i + chunk, len(examples))) if j not in done]
                if batched and questions_per_batch > 1:
                    got = choice_logprobs_batch(model, tokenizer, [examples[j] for j in todo],
                                                questions_per_batch=questions_per_batch)  # fmt: skip
                else:
                    got = []
                    for j in todo:
                        try:
                            got.append(choice_logprobs(model, tokenizer, examples[j],
                                                       batched=batched))  # fmt: skip
                        except ContinuationTooLong as exc:
                            got.append(exc)
                scored.update(zip(todo, got))
            value = scored.pop(i)
            if isinstance(value, ContinuationTooLong):
                zeros = {k: 0.0 for k in ("acc", "acc_norm", "acc_bytes")}
                if ex.metadata.get("labels") is not None:
                    zeros["mc2"] = 0.0
                result = EvalResult(False, None, None, {**zeros, "skipped": str(value)})
            else:
                result = _mc_result(ex, value[0], value[1], mode)
            if on_result is not None:
                on_result(i, result)
        results.append(result)
        if progress is not None:
            progress(i + 1, len(examples))
    metrics = {
        key: sum(float(r.metadata[key]) for r in results) / len(results)
        for key in ("acc", "acc_norm", "acc_bytes", "mc2")
        if all(key in r.metadata for r in results)
    }
    return _report(task_name, results, metrics, metadata, n_bins)


# -- generation --------------------------------------------------------------------------------

Matcher = Callable[[str, Sequence[str]], bool]


def _matcher(matcher: Matcher | str) -> Matcher:
    if isinstance(matcher, str):
        if matcher not in MATCHERS:
            raise ValueError(f"unknown matcher {matcher!r}; known: {', '.join(MATCHERS)}")
        return MATCHERS[matcher]
    if not callable(matcher):
        raise TypeError(f"matcher must be a matcher name or callable, got {matcher!r}")
    return matcher


def _generate_with_model(
    model: Any,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int,
    eos_id: int | None,
    stop_strings: Sequence[str] | None,
) -> tuple[str, str]:
    """Greedy decoding with g2c.sampling → (text, stop reason)."""
    ids = _encode(tokenizer, prompt)
    out = sampling_generate(
        model, ids, max_new_tokens, temperature=0.0, eos_id=eos_id,
        stop_strings=stop_strings or None, decode=tokenizer.decode,
    )  # fmt: skip
    new = out[len(ids) :].tolist() if len(out) > len(ids) else []
    if eos_id is not None and new and new[-1] == eos_id:
        return tokenizer.decode(new[:-1]), "eos"
    text = tokenizer.decode(new)
    for stop in stop_strings or ():
        if stop in text:
            return text[: text.index(stop)], "stop_string"
    return text, "max_new_tokens" if len(new) >= max_new_tokens else "context_length"


def score_generation_example(
    generate: Callable[[str], str] | Any,
    example: GenerationExample,
    *,
    matcher: Matcher | str = normalized_match,
    extract: Callable[[str], str] | None = None,
    tokenizer: Any = None,
    max_new_tokens: int = 256,
    eos_id: int | None = None,
    stop_strings: Sequence[str] | None = None,
) -> EvalResult:
    """Generate an answer for ``example.prompt`` and match it against its references.

    ``generate``: a ``generate(prompt) -> text`` callable (any backend), or — with
    ``tokenizer`` given — a g2c model decoded greedily (``g2c.sampling.generate``) for at most
    ``max_new_tokens`` tokens, stopping at ``eos_id`` or a ``stop_strings`` entry (cut off).
    ``extract(text) -> answer`` (e.g. the text after "####") runs before ``matcher`` (a
    function or a name of :data:`~g2c.eval.core.MATCHERS`). ``prediction`` = the (extracted)
    answer; ``metadata``: ``completion`` (raw text), ``stop`` (``"eos"``, ``"stop_string"``,
    ``"max_new_tokens"`` — a generation that never stopped — or ``"context_length"``; None for a
    callable). No confidence.
    """
    if not isinstance(example, GenerationExample):
        raise TypeError(f"example must be a GenerationExample, got {type(example).__name__}")
    match = _matcher(matcher)
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    stop = None
    if tokenizer is not None:
        text, stop = _generate_with_model(
            generate, tokenizer, example.prompt, max_new_tokens, eos_id, stop_strings
        )
    elif callable(generate):
        text = generate(example.prompt)
        if not isinstance(text, str):
            raise TypeError(f"generate(prompt) must return a str, got {type(text).__name__}")
    else:
        raise TypeError(
            "generate must be a generate(prompt) -> str callable, or a model with tokenizer=..."
        )
    answer = extract(text) if extract is not None else text
    correct = bool(match(answer, example.references))
    return EvalResult(
        correct=correct,
        prediction=answer,
        confidence=None,
        metadata={"completion": text, "stop": stop, "references": list(example.references)},
    )


def run_generation_eval(
    generate: Callable[[str], str] | Any,
    examples: Sequence[GenerationExample],
    *,
    task_name: str = "generation",
    matcher: Matcher | str = normalized_match,
    extract: Callable[[str], str] | None = None,
    tokenizer: Any = None,
    max_new_tokens: int = 256,
    eos_id: int | None = None,
    stop_strings: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    completed: Mapping[int, EvalResult] | None = None,
    on_result: ResultCallback | None = None,
    progress: ProgressCallback | None = None,
) -> EvalReport:
    """Score every generation example (:func:`score_generation_example`) → :class:`EvalReport`
    with ``accuracy`` = fraction matched, no confidence/ECE, ``metrics`` = ``accuracy`` and
    ``stopped_at_max_tokens`` (fraction of generations cut by ``max_new_tokens``). Resuming and
    callbacks as in :func:`run_multiple_choice_eval`. Empty ``examples`` → ValueError."""
    examples = list(examples)
    if not examples:
        raise ValueError("examples must not be empty (nothing to evaluate)")
    done = _check_callbacks(on_result, progress, completed)
    results: list[EvalResult] = []
    for i, ex in enumerate(examples):
        result = done.get(i)
        if result is None:
            result = score_generation_example(
                generate, ex, matcher=matcher, extract=extract, tokenizer=tokenizer,
                max_new_tokens=max_new_tokens, eos_id=eos_id, stop_strings=stop_strings,
            )  # fmt: skip
            if on_result is not None:
                on_result(i, result)
        results.append(result)
        if progress is not None:
            progress(i + 1, len(examples))
    capped = sum(r.metadata.get("stop") == "max_new_tokens" for r in results) / len(results)
    return _report(task_name, results, {"stopped_at_max_tokens": capped}, metadata, 10)
