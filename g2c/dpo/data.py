"""Preference pairs as token ids, and their padded (x, y, mask) batches.

A preference example is one prompt with two responses, the preferred ("chosen") and the
dispreferred ("rejected"). Each side is scored as the sequence ``prompt + response``; only the
response tokens count, so the mask is 1 exactly where the *target* y is a response token:

    seq  = prompt_ids + response_ids                          length n <= max_seq_len
    x    = seq[:-1]  then pad_id            (W,)
    y    = seq[1:]   then pad_id            (W,)   W = max_seq_len - 1 (or the batch's longest)
    mask = 1 on y[len(prompt) - 1 : n - 1], else 0

A pair longer than ``max_seq_len`` is truncated — its response tail is cut (the prompt is kept
whole; only a prompt that leaves no room for one response token loses its *start*, keeping the
question that ends it) — and the number of truncated pairs is reported (a warning here; the
trainer also stores it), never silent. Source: the (prompt, chosen, rejected) format of TRL's
``DPOTrainer`` (von Werra et al. 2020) and Rafailov et al. 2023, "Direct Preference Optimization".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from g2c.sft import BaseChatTemplate, render_with_mask

PAD_TO = ("max_seq_len", "longest")


class PreferenceExample(NamedTuple):
    """One preference pair as token ids: ``prompt_ids``, ``chosen_ids``, ``rejected_ids``.

    Each field is a sequence of non-negative ints or a 1-D integer tensor. The prompt must hold
    at least one token (the first response token is predicted from it); responses at least one.
    """

    prompt_ids: Sequence[int] | torch.Tensor
    chosen_ids: Sequence[int] | torch.Tensor
    rejected_ids: Sequence[int] | torch.Tensor


class PreferenceBatch(NamedTuple):
    """``chosen`` and ``rejected``, each a tuple ``(x, y, mask)`` of (B, W) long tensors."""

    chosen: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    rejected: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _ids(value: Any, where: str) -> tuple[int, ...]:
    """A tuple of non-negative ints from a list/tuple of ints or a 1-D integer tensor."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise ValueError(
                f"{where} must be a 1-D integer tensor, got {value.dtype} {tuple(value.shape)}"
            )
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{where} must be a sequence of token ids, got {type(value).__name__}")
    out = tuple(value)
    for t in out:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"{where} must hold non-negative int token ids, got {t!r}")
    return out


def as_preference_examples(examples: Any, name: str = "examples") -> list[PreferenceExample]:
    """Validate and normalise ``examples`` (a non-empty sequence of PreferenceExample or
    3-tuples) into PreferenceExamples of int tuples. Empty → ValueError naming ``name``; an
    empty prompt or response → ValueError naming the example and field."""
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
        raise TypeError(
            f"{name} must be a list of PreferenceExample, got {type(examples).__name__}"
        )
    if len(examples) == 0:
        raise ValueError(f"{name} is empty: DPO needs at least one (prompt, chosen, rejected) pair")
    out = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, (tuple, list)) or len(ex) != 3:
            raise TypeError(
                f"{name}[{i}] must be a PreferenceExample(prompt_ids, chosen_ids, rejected_ids)"
            )
        fields = [_ids(v, f"{name}[{i}].{f}") for v, f in zip(ex, PreferenceExample._fields)]
        for f, ids in zip(PreferenceExample._fields, fields):
            if not ids:
                raise ValueError(
                    f"{name}[{i}].{f} is empty; a prompt needs >= 1 token (e.g. BOS or the user "
                    "marker) and each response >= 1 token (e.g. the END marker)"
                )
        out.append(PreferenceExample(*fields))
    return out


def _fit(prompt: tuple[int, ...], response: tuple[int, ...], L: int):
    """(prompt, response, truncated) with len(prompt) + len(response) <= L, response >= 1."""
    if len(prompt) + len(response) <= L:
        return prompt, response, False
    if len(prompt) >= L:  # no room for a response token: keep the prompt's end
        prompt = prompt[len(prompt) - (L - 1) :]
    return prompt, response[: L - len(prompt)], True


def count_truncated(examples: Sequence[PreferenceExample], max_seq_len: int) -> int:
    """Number of pairs whose prompt + chosen or prompt + rejected exceeds ``max_seq_len``."""
    return sum(
        len(ex.prompt_ids) + max(len(ex.chosen_ids), len(ex.rejected_ids)) > max_seq_len
        for ex in examples
    )


def _check_collate_args(max_seq_len: Any, pad_id: Any, pad_to: str) -> None:
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 2:
        raise ValueError(f"max_seq_len must be an integer >= 2, got {max_seq_len!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative int token id, got {pad_id!r}")
    if pad_to not in PAD_TO:
        raise ValueError(f"pad_to must be one of {list(PAD_TO)}, got {pad_to!r}")


def pad_and_collate_pref(
    examples: Sequence[PreferenceExample],
    max_seq_len: int,
    pad_id: int,
    *,
    pad_to: str = "max_seq_len",
    warn: bool = True,
) -> PreferenceBatch:
    """Pad B preference pairs into ``PreferenceBatch(chosen=(x, y, mask), rejected=(x, y,
    mask))``, each tensor (B, W) long, W = ``max_seq_len - 1``.

    y is x shifted by one; ``mask`` is 1 where y is a response token (prompt and padding 0);
    padding uses ``pad_id`` in x and y. ``pad_to="longest"`` makes W the longest sequence of the
    batch minus one (both sides the same W, so they concatenate into one forward) — same
    log-probabilities, less padding. Pairs longer than ``max_seq_len`` are truncated (module
    docstring); with ``warn`` a UserWarning gives their count.

    Raises: empty ``examples``, an empty prompt/response, ids that are not non-negative ints
    → ValueError/TypeError naming them; ``max_seq_len`` < 2, a negative ``pad_id``, an unknown
    ``pad_to`` → ValueError.
    """
    _check_collate_args(max_seq_len, pad_id, pad_to)
    examples = as_preference_examples(examples)
    sides: list[list[tuple[tuple[int, ...], tuple[int, ...]]]] = [[], []]
    truncated = 0
    for ex in examples:
        cut = False
        for side, response in zip(sides, (ex.chosen_ids, ex.rejected_ids)):
            p, r, c = _fit(ex.prompt_ids, response, max_seq_len)
            side.append((p, r))
            cut |= c
        truncated += cut
    if truncated and warn:
        warnings.warn(
            f"{truncated} of {len(examples)} preference pairs exceed max_seq_len={max_seq_len}; "
            "their responses were truncated (raise max_seq_len to keep them whole)",
            stacklevel=2,
        )
    if pad_to == "longest":
        W = max(len(p) + len(r) for side in sides for p, r in side) - 1
    else:
        W = max_seq_len - 1
    return PreferenceBatch(*(_collate_side(side, W, pad_id) for side in sides))


def _collate_side(pairs: list[tuple[tuple[int, ...], tuple[int, ...]]], W: int, pad_id: int):
    B = len(pairs)
    x = torch.full((B, W), pad_id, dtype=torch.long)
    y = torch.full((B, W), pad_id, dtype=torch.long)
    mask = torch.zeros((B, W), dtype=torch.long)
    for i, (prompt, response) in enumerate(pairs):
        seq = torch.tensor(prompt + response, dtype=torch.long)  # (n,)
        n = seq.numel()
        x[i, : n - 1] = seq[:-1]
        y[i, : n - 1] = seq[1:]
        mask[i, len(prompt) - 1 : n - 1] = 1  # targets that are response tokens
    return x, y, mask


# -- text pairs → token ids -------------------------------------------------------------------
def _last_trained_run(mask: Sequence[int]) -> tuple[int, int]:
    """(start, end) of the last run of 1s in ``mask``."""
    end = len(mask)
    while end and not mask[end - 1]:
        end -= 1
    start = end
    while start and mask[start - 1]:
        start -= 1
    return start, end


def encode_preference_pairs(
    pairs: Sequence[dict[str, Any]], tokenizer: Any, *, template: BaseChatTemplate | None = None
) -> list[PreferenceExample]:
    """Text pairs ``{"prompt": messages, "chosen": str, "rejected": str}`` (the loaders of
    ``g2c.data.preferences``) → :class:`PreferenceExample` token ids.

    Each side is rendered with ``g2c.sft.render_with_mask`` as the prompt messages plus one
    assistant turn (``template`` defaults to g2c's ``ChatTemplate``; any model's
    ``JinjaChatTemplate`` plugs in): ``prompt_ids`` are the ids before that turn's trained
    tokens (the whole conversation and the assistant marker), the response ids are its trained
    tokens (content + end-of-turn marker). Markers are special ids, content plain text.
    An empty ``pairs``, a pair without "prompt"/"chosen"/"rejected", or sides whose prompts
    render differently → ValueError naming ``pairs[i]``.
    """
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise ValueError("pairs must be a non-empty list of {'prompt', 'chosen', 'rejected'} dicts")
    out = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict) or not {"prompt", "chosen", "rejected"} <= set(pair):
            raise ValueError(f"pairs[{i}] must be a dict with 'prompt', 'chosen', 'rejected'")
        sides = []
        for key in ("chosen", "rejected"):
            turn = {"role": "assistant", "content": pair[key]}
            ids, mask = render_with_mask(
                list(pair["prompt"]) + [turn], tokenizer, template=template
            )
            start, end = _last_trained_run(mask)
            sides.append((tuple(ids[:start]), tuple(ids[start:end])))
        if sides[0][0] != sides[1][0]:
            raise ValueError(f"pairs[{i}]: chosen and rejected render different prompts")
        out.append(PreferenceExample(sides[0][0], sides[0][1], sides[1][1]))
    return out


__all__ = [
    "PreferenceBatch",
    "PreferenceExample",
    "as_preference_examples",
    "count_truncated",
    "encode_preference_pairs",
    "pad_and_collate_pref",
]
