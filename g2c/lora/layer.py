"""LoRALinear: a frozen linear layer plus a trainable low-rank update (course module 13B).

The idea (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3): keep
the pretrained weight W (in, out) frozen and learn its change as a product of two thin
matrices, ΔW = A·B with A (in, r) and B (r, out), r ≪ min(in, out):

    y = x W + b + (x A B) · alpha / r                    x (..., in) → y (..., out)

B starts at zero, so the adapted layer computes exactly the base layer at step 0; A starts
random (U(−1/√in, 1/√in), peft's ``kaiming_uniform_(a=√5)``) so the first gradient reaching B
is not zero. ``scaling = alpha / r`` keeps the size of the update comparable across ranks
(alpha = r gives scaling 1). Training touches r·(in + out) numbers instead of in·out.

Merging folds the update into the weight, W ← W + A·B·scaling, so inference costs nothing
extra; unmerging subtracts it again (restores W up to float rounding). Optional dropout acts
on the adapter's input only, as in peft: y = base(x) + (dropout(x) A B) · scaling.

Two flavours, one name: ``LoRALinear(base, r)`` over the course ``g2c.nn.Linear`` (weight ``W``
(in, out)) is a g2c ``Module``; over a ``torch.nn.Linear`` (weight (out, in)) it returns a
:class:`TorchLoRALinear`, a ``torch.nn.Module`` subclass of LoRALinear, so it registers in a
torch model (``parameters()``, ``state_dict()``, ``to()``). A and B keep the course layout
(in, r) and (r, out) in both.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from g2c.nn import Linear, Module

LINEAR_TYPES = (Linear, torch.nn.Linear)


def check_lora_args(rank: Any, alpha: Any, dropout: Any) -> None:
    """ValueError/TypeError naming ``rank``, ``alpha`` or ``dropout`` unless rank is an int
    >= 1, alpha a finite number > 0 (or None) and dropout in [0, 1)."""
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"rank must be an int >= 1, got {type(rank).__name__} {rank!r}")
    if rank < 1:
        raise ValueError(f"rank must be an int >= 1 (the adapter's inner width r), got {rank}")
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"alpha must be a number > 0, got {type(alpha).__name__}")
        if not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(
                f"alpha must be a finite number > 0 (scaling = alpha / rank), got {alpha}"
            )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"dropout must be a float in [0, 1), got {type(dropout).__name__}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class LoRALinear(Module):
    """``base(x) + (x @ lora_A @ lora_B) · scaling`` over a frozen linear layer.

    Args:
        base: a course ``g2c.nn.Linear`` (``W`` (in, out), ``b``) or a ``torch.nn.Linear``
            (``weight`` (out, in), ``bias``; then a :class:`TorchLoRALinear` is returned). Its
            weight and bias are frozen (``requires_grad=False``) here.
        rank: r >= 1, the inner width of the update.
        alpha: the update is scaled by ``alpha / rank``; default ``rank`` (scaling 1).
        dropout: probability of dropping adapter-input elements in training (default 0).
        generator: a ``torch.Generator`` for a reproducible ``lora_A``.

    Attributes: ``base``; ``lora_A`` (in, r), U(−1/√in, 1/√in) like peft; ``lora_B`` (r, out),
    zeros — both trainable, in the base weight's dtype and device; ``rank``, ``alpha``,
    ``scaling``, ``dropout``, ``in_features``, ``out_features``; ``merged`` (the update is
    folded into the base weight) and ``enabled`` (False inside :func:`g2c.lora.disable_lora`).

    Shapes: x (..., in) → (..., out). Raises TypeError when ``base`` is not a linear layer,
    ValueError for rank < 1, alpha <= 0 or dropout outside [0, 1) — before touching ``base``.
    """

    def __new__(cls, base: Any = None, *args: Any, **kwargs: Any) -> LoRALinear:
        if cls is LoRALinear and isinstance(base, torch.nn.Linear):
            cls = TorchLoRALinear  # same math, registered the torch way
        return object.__new__(cls)

    def __init__(
        self,
        base: Linear | torch.nn.Linear,
        rank: int,
        alpha: float | None = None,
        *,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(base, LINEAR_TYPES) or isinstance(base, LoRALinear):
            raise TypeError(
                "base must be a g2c.nn.Linear or a torch.nn.Linear (not already adapted), "
                f"got {type(base).__name__}"
            )
        check_lora_args(rank, alpha, dropout)
        alpha = rank if alpha is None else alpha
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.dropout = float(dropout)
        self.merged, self.enabled = False, True
        w = self._base_weight()  # (in, out) view
        self._base_trainable = [t.requires_grad for t in self._base_tensors()]  # for unload
        for t in self._base_tensors():
            t.requires_grad_(False)  # the base stays as pretrained
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform_(a=√5) on (r, in), as peft
        A = torch.rand(self.in_features, rank, generator=generator, dtype=torch.float32)
        A = (A * 2.0 - 1.0) * bound
        self.lora_A = self._param(A.to(device=w.device, dtype=w.dtype))  # (in, r)
        self.lora_B = self._param(
            torch.zeros(rank, self.out_features, device=w.device, dtype=w.dtype)
        )

    # -- hooks the torch flavour overrides ------------------------------------------------
    def _param(self, t: torch.Tensor) -> torch.Tensor:
        return t.requires_grad_()  # a g2c parameter is a tensor with requires_grad

    def _base_weight(self) -> torch.Tensor:
        """The base weight as (in, out) — the course layout (a view, no copy)."""
        return self.base.W

    def _base_tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.base.W, self.base.b) if t is not None]

    # -- the math ---------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """The update ΔW = A·B·scaling, (in, r) @ (r, out) → (in, out)."""
        return (self.lora_A @ self.lora_B) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) → (..., out): base(x), plus the low-rank path unless merged or disabled."""
        y = self.base(x)  # (..., out)
        if self.merged or not self.enabled:
            return y
        if self.dropout and self.training:
            x = F.dropout(x, self.dropout, training=True)
        return y + (x @ self.lora_A @ self.lora_B) * self.scaling  # (..., in)→(..., r)→(..., out)

    def effective_weight(self) -> torch.Tensor:
        """The (in, out) weight this layer applies: W + ΔW while the adapter is active and not
        merged, else W (which holds ΔW once merged). Differentiable in A and B."""
        w = self._base_weight()
        if self.merged or not self.enabled:
            return w
        return w + self.delta_weight().to(w.dtype)

    @property
    def W(self) -> torch.Tensor:
        """``effective_weight()`` (in, out), for callers that read a course Linear's ``W``
        instead of calling it (g2c's fused kernels call ``F.linear(x, layer.W.T, layer.b)``).

        Such a caller gets the right output but no LoRA dropout: with dropout > 0 in training
        this raises RuntimeError (call the layer instead; ``fused=False`` models do)."""
        if self.dropout and self.training and self.enabled and not self.merged:
            raise RuntimeError(
                "LoRALinear with dropout > 0 was read through .W (a fused kernel that bypasses "
                "the layer call): LoRA dropout would be skipped; build the model with "
                "fused=False, or use dropout=0.0"
            )
        return self.effective_weight()

    @property
    def b(self) -> torch.Tensor | None:
        """The base layer's bias (out,) or None (LoRA leaves the bias alone)."""
        return self._base_bias()

    def _base_bias(self) -> torch.Tensor | None:
        return self.base.b

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (W ← W + ΔW); afterwards the forward is
        base(x) alone. Idempotent: merging a merged layer does nothing."""
        if self.merged:
            return
        w = self._base_weight()
        w.add_(self.delta_weight().to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of the base weight again (W ← W − ΔW, exact up to float
        rounding); the low-rank path is used again. Idempotent."""
        if not self.merged:
            return
        w = self._base_weight()
        w.sub_(self.delta_weight().to(w.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        """``in, out, rank=…, alpha=…`` for ``repr``."""
        return (
            f"{self.in_features}, {self.out_features}, rank={self.rank}, alpha={self.alpha}, "
            f"dropout={self.dropout}, merged={self.merged}"
        )


class TorchLoRALinear(torch.nn.Module, LoRALinear):
    """:class:`LoRALinear` over a ``torch.nn.Linear``, registered as a ``torch.nn.Module``
    (``lora_A``/``lora_B`` are ``nn.Parameter``s, ``base`` a sub-module), so it works inside
    any torch model. Built by ``LoRALinear(torch_linear, rank, ...)``. Same math and layout:
    A (in, r), B (r, out); the base weight is (out, in), so ΔW is applied transposed.

    ``weight`` / ``bias`` are the effective weight (out, in) and the base bias.
    """

    def __init__(
        self,
        base: torch.nn.Linear,
        rank: int,
        alpha: float | None = None,
        *,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        torch.nn.Module.__init__(self)
        LoRALinear.__init__(self, base, rank, alpha, dropout=dropout, generator=generator)

    forward = LoRALinear.forward  # torch.nn.Module's placeholder would win the MRO
    extra_repr = LoRALinear.extra_repr

    def _param(self, t: torch.Tensor) -> torch.Tensor:
        return torch.nn.Parameter(t)

    def _base_weight(self) -> torch.Tensor:
        return self.base.weight.T  # (out, in) -> (in, out) view: in-place edits reach weight

    def _base_tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.base.weight, self.base.bias) if t is not None]

    def _base_bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight in torch's layout (out, in)."""
        return self.effective_weight().T

    @property
    def bias(self) -> torch.Tensor | None:
        """The base layer's bias (out,) or None."""
        return self.base.bias
