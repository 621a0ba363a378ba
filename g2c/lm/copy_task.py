"""The copy / reverse-sequence task: where attention beats recurrence.

A sequence of L random symbols, a separator, then the same L symbols again (``copy``) or in
reverse order (``reverse``); a causal model reads the whole line and is scored on predicting
the second half. A recurrent model must squeeze all L symbols into its fixed-size state before
the separator; attention can look back at position i directly, so its accuracy stays high as L
grows while a recurrent model of the same size falls off. Source: the copy task of Graves,
Wayne & Danihelka 2014 ("Neural Turing Machines", §4.1); reversal as in Sutskever, Vinyals &
Le 2014 ("Sequence to Sequence Learning with Neural Networks").

Layout (V = num_symbols + 1, separator id = num_symbols):
    line    = x_1 … x_L  SEP  y_1 … y_L          (2L + 1 tokens; y = x or reversed x)
    inputs  = line[:-1]  (B, 2L)                  targets = line[1:] (B, 2L)
    mask    (B, 2L) bool, True on the L positions whose target is a y (the scored ones).
Any causal model mapping inputs (B, 2L) → logits (B, 2L, V) fits: ``TransformerLM`` directly,
``RNNLanguageModel.sequence_logits`` for the recurrent ones.
"""

from __future__ import annotations

import torch

from g2c.nn import cross_entropy

COPY_TASKS: tuple[str, ...] = ("copy", "reverse")


def make_copy_batch(
    batch_size: int,
    length: int,
    *,
    num_symbols: int = 8,
    task: str = "copy",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of copy (or reverse) lines: ``(inputs, targets, mask)``, each (B, 2L).

    Args:
        batch_size: B (>= 1); length: L symbols to remember (>= 1).
        num_symbols: alphabet size (>= 2); ids 0 … num_symbols−1, separator = num_symbols, so
            the model's vocabulary is ``num_symbols + 1``.
        task: ``"copy"`` or ``"reverse"``.
        generator: CPU ``torch.Generator`` for the symbols (reproducible batches).

    Returns:
        inputs (B, 2L) long, targets (B, 2L) long (inputs shifted by one), mask (B, 2L) bool
        (True at positions L … 2L−1, the second half). Bad sizes or task → ValueError.
    """
    for name, value, low in (("batch_size", batch_size, 1), ("length", length, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(num_symbols, int) or num_symbols < 2:
        raise ValueError(f"num_symbols must be an int >= 2, got {num_symbols!r}")
    if task not in COPY_TASKS:
        raise ValueError(f"task must be one of {COPY_TASKS}, got {task!r}")
    x = torch.randint(0, num_symbols, (batch_size, length), generator=generator)  # (B, L)
    y = x if task == "copy" else x.flip(1)  # (B, L)
    sep = torch.full((batch_size, 1), num_symbols, dtype=torch.long)  # (B, 1)
    line = torch.cat([x, sep, y], dim=1)  # (B, 2L + 1)
    mask = torch.zeros(batch_size, 2 * length, dtype=torch.bool)
    mask[:, length:] = True  # targets line[L+1 …] are the y's
    return line[:, :-1], line[:, 1:], mask


def copy_task_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over the scored positions: logits (B, T, V), targets/mask (B, T)."""
    _check_shapes(logits, targets, mask)
    return cross_entropy(logits[mask], targets[mask])  # (N, V), (N,) -> scalar


@torch.no_grad()
def copy_task_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> tuple[float, float]:
    """``(token accuracy, sequence accuracy)`` of the argmax predictions on the scored positions.

    Token accuracy: the share of scored positions predicted right (chance = 1/num_symbols);
    sequence accuracy: the share of lines whose whole second half is right. Teacher forcing:
    each prediction sees the true earlier tokens.
    """
    _check_shapes(logits, targets, mask)
    right = (logits.argmax(-1) == targets) | ~mask  # (B, T): unscored positions count as right
    token = float(right[mask].float().mean())
    return token, float(right.all(dim=1).float().mean())


def _check_shapes(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
    if logits.dim() != 3 or targets.shape != logits.shape[:2] or mask.shape != targets.shape:
        raise ValueError(
            f"need logits (B, T, V), targets (B, T), mask (B, T); got {tuple(logits.shape)}, "
            f"{tuple(targets.shape)}, {tuple(mask.shape)}"
        )
