"""Batches of conversations: padding, shifting, truncation, and packing.

``pad_and_collate`` (API.md 13) turns SFTExamples into next-token training tensors:

    ids   [u u u a a a E p p]          (one row, padded with pad_id to max_seq_len)
    x     [u u u a a a E p]            ids[:-1]
    y     [u u a a a E p p]            ids[1:]         — y[t] is the token after x[t]
    mask  [0 0 1 1 1 1 0 0]            mask[1:]        — learn y[t] only where it is a target

Packing (``pack_examples`` + ``collate_packed``) puts several conversations into one row of at
most ``max_seq_len`` tokens instead of padding each to it; ``segment_ids`` (B, T) tell the model
where each conversation starts, so attention stays inside it and positions restart
(``TransformerLM.forward(idx, segment_ids=...)``). The target that would cross from one
conversation into the next is masked out, so a packed batch has exactly the loss and gradients
of the same conversations unpacked (tests/test_sft.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from g2c.sft.template import SFTExample


def check_examples(examples: Any, name: str = "examples") -> list[SFTExample]:
    """A non-empty list of SFTExample (or (ids, mask) pairs) with equal-length ids and mask and
    at least two tokens; returns them as SFTExamples. Else ValueError naming ``name``."""
    if not isinstance(examples, (list, tuple)) or not examples:
        raise ValueError(f"{name} must be a non-empty list of SFTExample, got {examples!r:.60}")
    out = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, tuple) or len(ex) != 2:
            raise ValueError(f"{name}[{i}] must be an SFTExample(ids, mask), got {ex!r:.60}")
        ids, mask = ex
        if len(ids) != len(mask):
            raise ValueError(
                f"{name}[{i}]: ids ({len(ids)}) and mask ({len(mask)}) differ in length"
            )
        if len(ids) < 2:
            raise ValueError(f"{name}[{i}] has {len(ids)} token(s); a training example needs >= 2")
        out.append(ex if isinstance(ex, SFTExample) else SFTExample(ids, mask))
    return out


def _row(values: Sequence[int] | torch.Tensor, width: int, fill: int) -> torch.Tensor:
    """First ``width`` values as a long tensor, right-padded with ``fill``."""
    t = torch.as_tensor(values, dtype=torch.long)[:width]
    if len(t) < width:
        t = torch.cat((t, torch.full((width - len(t),), fill, dtype=torch.long)))
    return t


def pad_and_collate(
    examples: Sequence[SFTExample],
    max_seq_len: int,
    pad_id: int,
    *,
    pad_to_longest: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Examples → ``(x, y, loss_mask)``, each (B, max_seq_len − 1) long.

    Every example is truncated to ``max_seq_len`` tokens and right-padded with ``pad_id``
    (mask 0); x = ids[:, :-1], y = ids[:, 1:], loss_mask = mask[:, 1:] (1 where y is a target).
    ``pad_to_longest=True`` pads only to the longest (truncated) example of the batch — the
    same losses, fewer wasted positions (what SFTTrainer uses). Bad arguments → ValueError.
    """
    examples = check_examples(examples)
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 2:
        raise ValueError(f"max_seq_len must be an integer >= 2, got {max_seq_len!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative integer token id, got {pad_id!r}")
    width = max_seq_len
    if pad_to_longest:
        width = min(max_seq_len, max(len(ex.ids) for ex in examples))
    ids = torch.stack([_row(ex.ids, width, pad_id) for ex in examples])  # (B, width)
    mask = torch.stack([_row(ex.mask, width, 0) for ex in examples])
    return ids[:, :-1], ids[:, 1:], mask[:, 1:]  # each (B, width - 1)


class PackedRow(NamedTuple):
    """One packed row: ``ids``, ``mask`` and ``segment_ids`` (lists of equal length ≤
    max_seq_len); segment k holds the k-th conversation packed into the row."""

    ids: list[int]
    mask: list[int]
    segment_ids: list[int]


def pack_examples(examples: Sequence[SFTExample], max_seq_len: int) -> list[PackedRow]:
    """Greedy first-fit packing, in order: each example (truncated to ``max_seq_len``) goes
    into the first row with room for it, else starts a new row. Returns the rows."""
    examples = check_examples(examples)
    rows: list[PackedRow] = []
    for ex in examples:
        ids, mask = list(ex.ids[:max_seq_len]), list(ex.mask[:max_seq_len])
        row = next((r for r in rows if len(r.ids) + len(ids) <= max_seq_len), None)
        if row is None:
            row = PackedRow([], [], [])
            rows.append(row)
        seg = row.segment_ids[-1] + 1 if row.segment_ids else 0
        row.ids.extend(ids)
        row.mask.extend(mask)
        row.segment_ids.extend([seg] * len(ids))
    return rows


def collate_packed(
    rows: Sequence[PackedRow], pad_id: int, max_seq_len: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed rows → ``(x, y, loss_mask, segment_ids)``, each (B, W − 1), W the longest row
    (or ``max_seq_len``). Padding is its own segment (−1) with mask 0; the target at each
    boundary between two conversations is masked out."""
    width = max(len(r.ids) for r in rows) if max_seq_len is None else max_seq_len
    ids = torch.stack([_row(r.ids, width, pad_id) for r in rows])  # (B, W)
    mask = torch.stack([_row(r.mask, width, 0) for r in rows])
    seg = torch.stack([_row(r.segment_ids, width, -1) for r in rows])
    same = seg[:, 1:] == seg[:, :-1]  # y[t] belongs to x[t]'s conversation
    return ids[:, :-1], ids[:, 1:], mask[:, 1:] * same, seg[:, :-1]


__all__ = ["PackedRow", "check_examples", "collate_packed", "pack_examples", "pad_and_collate"]
