"""Sequence log-probabilities and the DPO family of preference losses.

DPO (Rafailov et al. 2023) trains the policy π directly on preference pairs, with the frozen
reference π_ref standing in for the KL anchor of RLHF. With summed response log-probabilities
log π(y|x) of the chosen (w) and rejected (l) responses,

    z      = [log π(w) − log π(l)] − [log π_ref(w) − log π_ref(l)]      (B,)
    sigmoid  loss = −log σ(β z)                 Rafailov et al. 2023, eq. 7
             (label_smoothing ε: −(1−ε) log σ(β z) − ε log σ(−β z), "conservative DPO",
              Mitchell 2023 — TRL's ``label_smoothing``)
    ipo      loss = (z − 1/(2β))²               Azar et al. 2023, eq. 17 (β is their τ)
    hinge    loss = relu(1 − β z)               SLiC, Zhao et al. 2023

each averaged over the batch. The implicit rewards are r = β (log π − log π_ref) per side.
These are TRL's formulas (``DPOTrainer.dpo_loss``). For IPO, TRL feeds *per-token averaged*
log-probabilities (sum / response length) instead of sums; ``dpo_loss`` computes the formula
on whatever it is given, and ``DPOTrainer(loss_type="ipo")`` averages, as TRL does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def _float(t: torch.Tensor) -> torch.Tensor:
    """float32 for half/bf16 tensors (log-softmax precision); float32/float64 unchanged."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def sequence_logprob(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *, average: bool = False
) -> torch.Tensor:
    """Σ_t mask[b, t] · log softmax(logits[b, t])[targets[b, t]] → (B,) float.

    Args: ``logits`` (B, T, V) float, ``targets`` (B, T) integer, ``mask`` (B, T) bool/int/float
    (0 excludes a position; the target there may be any value, e.g. padding or −100).
    ``average=True`` divides each row by its mask count (per-token mean; an all-zero row gives
    0, never NaN). Computed in float32 (float64 kept). Shape or dtype mismatch → ValueError /
    TypeError naming the argument.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError(f"logits must be a (B, T, V) tensor, got {_shape(logits)}")
    B, T, _ = logits.shape
    for name, t in (("targets", targets), ("mask", mask)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (B, T):
            raise ValueError(
                f"{name} must be a ({B}, {T}) tensor like logits' (B, T), got {_shape(t)}"
            )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer (long) tensor, got {targets.dtype}")
    keep = mask.bool()
    safe = torch.where(keep, targets, torch.zeros_like(targets))  # padding / -100 → valid id
    logp = torch.log_softmax(_float(logits), dim=-1)  # (B, T, V)
    tok = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T, V) -> (B, T)
    total = torch.where(keep, tok, torch.zeros_like(tok)).sum(-1)  # (B,)
    if average:
        total = total / keep.sum(-1).clamp_min(1)
    return total


def _shape(t: Any) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def check_beta(beta: Any) -> None:
    """ValueError naming beta unless it is a finite number > 0."""
    ok = isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta)
    if not ok or beta <= 0:
        raise ValueError(
            f"beta must be a finite number > 0 (the KL strength; 0.1 is the usual start), "
            f"got {beta!r}"
        )


def check_loss_options(loss_type: Any, label_smoothing: Any) -> None:
    """ValueError naming loss_type / label_smoothing for an unknown type, ε outside [0, 0.5),
    or ε > 0 with a loss other than "sigmoid" (only conservative DPO defines it)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {loss_type!r}")
    ok = isinstance(label_smoothing, (int, float)) and not isinstance(label_smoothing, bool)
    if not ok or not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be a number in [0, 0.5), got {label_smoothing!r}")
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError(
            f"label_smoothing applies only to loss_type='sigmoid' (conservative DPO); got "
            f"label_smoothing={label_smoothing} with loss_type={loss_type!r}"
        )


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    *,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss of B pairs and its metrics (module docstring for the formulas).

    Args: four (B,) float tensors of sequence log-probabilities (``sequence_logprob``) — the
    policy's for the chosen / rejected responses and the reference's (detached here: gradients
    reach only the policy); ``beta`` > 0; ``loss_type`` "sigmoid" | "ipo" | "hinge";
    ``label_smoothing`` ε in [0, 0.5) ("sigmoid" only).

    Returns ``(loss, metrics)``: loss a scalar (mean over the batch; exactly log 2 for
    "sigmoid" when policy equals reference, 1/(4β²) for "ipo", 1 for "hinge"); metrics, each a
    detached 0-d tensor: ``chosen_reward`` = mean β(log π(w) − log π_ref(w)), ``rejected_reward``
    likewise for l, ``reward_margin`` = mean(chosen − rejected reward), ``accuracy`` = fraction of
    pairs with chosen reward > rejected reward (strictly: ties count as wrong), and
    ``chosen_logp`` / ``rejected_logp`` = the policy's mean log-probabilities.

    Raises ValueError for beta <= 0, an unknown loss_type, a bad label_smoothing, inputs that
    are not four 1-D tensors of one shape.
    """
    check_beta(beta)
    check_loss_options(loss_type, label_smoothing)
    args = (policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    names = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")
    for name, t in zip(names, args):
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            raise ValueError(
                f"{name} must be a 1-D (B,) tensor of log-probabilities, got {_shape(t)}"
            )
        if t.shape != policy_chosen.shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)}, policy_chosen {tuple(policy_chosen.shape)}; "
                "all four must be (B,)"
            )
    ref_chosen, ref_rejected = ref_chosen.detach(), ref_rejected.detach()
    pi_logratio = policy_chosen - policy_rejected  # (B,)
    ref_logratio = ref_chosen - ref_rejected  # (B,)
    z = pi_logratio - ref_logratio.to(pi_logratio.dtype)  # (B,)
    if loss_type == "sigmoid":
        eps = label_smoothing
        losses = -F.logsigmoid(beta * z) * (1 - eps) - F.logsigmoid(-beta * z) * eps
    elif loss_type == "ipo":
        losses = (z - 1 / (2 * beta)) ** 2
    else:  # hinge
        losses = torch.relu(1 - beta * z)
    with torch.no_grad():
        chosen_r = beta * (policy_chosen - ref_chosen)  # (B,)
        rejected_r = beta * (policy_rejected - ref_rejected)  # (B,)
        metrics = {
            "chosen_reward": chosen_r.mean(),
            "rejected_reward": rejected_r.mean(),
            "reward_margin": (chosen_r - rejected_r).mean(),
            "accuracy": (chosen_r > rejected_r).float().mean(),
            "chosen_logp": policy_chosen.detach().mean(),
            "rejected_logp": policy_rejected.detach().mean(),
        }
    return losses.mean(), metrics


__all__ = ["LOSS_TYPES", "check_beta", "check_loss_options", "dpo_loss", "sequence_logprob"]
