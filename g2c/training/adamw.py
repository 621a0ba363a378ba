"""AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization").

For each parameter p with gradient g, at step t (counted per parameter, like torch):

    p ← p · (1 − lr·wd)                       decoupled decay (even when g is all zeros)
    m ← β1·m + (1 − β1)·g                     first moment   (written as m.lerp_(g, 1 − β1))
    v ← β2·v + (1 − β2)·g²                    second moment
    p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)

``no_decay`` names parameters that get no weight decay (nanoGPT and the HF Trainer exempt
biases and normalisation gains, the 1-D tensors: :func:`one_dim_params`); the rest decay.

The loop over parameters is the reference path. ``foreach=True`` (the default) does the same
arithmetic with ``torch._foreach_*`` kernels — one kernel launch per operation for the whole
list instead of one per tensor — and is tested equal to the loop. Both match
``torch.optim.AdamW`` within 1e-6 over 100 steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

# elements per _foreach launch group (16 Mi fp32 = 64 MiB of temporary per group; bigger
# than glibc's largest mmap threshold, so each temporary is its own mapping, returned on free)
FOREACH_CHUNK_NUMEL = 1 << 24


class AdamW:
    """Adam with decoupled weight decay, bias-corrected moments.

    Attributes: ``params`` (list), ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``,
    ``step_count`` (number of ``step()`` calls), ``m``/``v`` (moment tensors, one per param).
    ``no_decay``: parameters (the same tensor objects as in ``params``) updated without weight
    decay — torch's equivalent is two param groups, one with ``weight_decay=0``. ``decays``:
    one bool per parameter.

    Raises ValueError naming the argument for lr < 0, betas outside [0, 1), eps < 0,
    weight_decay < 0, a ``no_decay`` tensor that is not among ``params``; TypeError when a
    param is not a tensor.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        foreach: bool = True,
        no_decay: Iterable[torch.Tensor] | None = None,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.params = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"AdamW params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        exempt = {id(t) for t in no_decay} if no_decay is not None else set()
        if exempt - {id(p) for p in self.params}:
            raise ValueError("no_decay holds a tensor that is not one of params; pass the "
                             "parameter tensors themselves")  # fmt: skip
        self.decays = [id(p) not in exempt for p in self.params]
        self.lr = lr
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = eps
        self.weight_decay = weight_decay
        self.foreach = foreach
        self.step_count = 0
        self.param_steps = [0] * len(self.params)  # per-parameter t (skipped params don't advance)
        self.m = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.v = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Apply one AdamW update to every parameter that has a gradient."""
        self.step_count += 1
        active = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in active:
            self.param_steps[i] += 1
        if self.foreach and active:
            # group by step (all equal unless some params skipped earlier steps) and by decay
            groups: dict[tuple[int, bool], list[int]] = {}
            for i in active:
                groups.setdefault((self.param_steps[i], self.decays[i]), []).append(i)
            for (t, decay), idx in groups.items():
                for chunk in self._chunks(self._pieces(idx)):
                    self._step_foreach(chunk, t, decay)
        else:
            for i in active:
                self._step_one(i, self.param_steps[i])

    def _pieces(self, idx: list[int]) -> list[tuple[torch.Tensor, ...]]:
        """(param, grad, m, v) for each parameter in ``idx``; a contiguous one larger than
        ``FOREACH_CHUNK_NUMEL`` elements as several flat slices (views: the update writes
        through them), so no temporary of the update is bigger than one chunk — not even for a
        (49,152 × 576) embedding."""
        out = []
        for i in idx:
            p = self.params[i]
            quad = (p, p.grad, self.m[i], self.v[i])
            n = p.numel()
            if n <= FOREACH_CHUNK_NUMEL or not all(x.is_contiguous() for x in quad):
                out.append(quad)
                continue
            flat = [x.view(-1) for x in quad]
            for a in range(0, n, FOREACH_CHUNK_NUMEL):
                out.append(tuple(x[a : a + FOREACH_CHUNK_NUMEL] for x in flat))
        return out

    @staticmethod
    def _chunks(pieces: list[tuple[torch.Tensor, ...]]) -> list[list[tuple[torch.Tensor, ...]]]:
        """``pieces`` cut into runs of at most ``FOREACH_CHUNK_NUMEL`` elements, so the update's
        one temporary (√v) never holds a copy of every parameter at once — for a
        135M-parameter model that is 0.5 GB saved at the step's peak."""
        chunks: list[list[tuple[torch.Tensor, ...]]] = [[]]
        size = 0
        for piece in pieces:
            n = piece[0].numel()
            if chunks[-1] and size + n > FOREACH_CHUNK_NUMEL:
                chunks.append([])
                size = 0
            chunks[-1].append(piece)
            size += n
        return chunks

    def _step_one(self, i: int, t: int) -> None:
        """The reference update for parameter ``i`` at its step ``t``."""
        p, g, m, v = self.params[i], self.params[i].grad, self.m[i], self.v[i]
        if self.decays[i]:
            p.mul_(1 - self.lr * self.weight_decay)  # decoupled weight decay
        m.lerp_(g, 1 - self.beta1)  # m ← β1 m + (1-β1) g
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)  # v ← β2 v + (1-β2) g²
        bias_correction1 = 1 - self.beta1**t
        bias_correction2_sqrt = math.sqrt(1 - self.beta2**t)
        denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
        p.addcdiv_(m, denom, value=-self.lr / bias_correction1)

    def _step_foreach(
        self, pieces: list[tuple[torch.Tensor, ...]], t: int, decay: bool = True
    ) -> None:
        """Same arithmetic as :meth:`_step_one`, fused over the (param, grad, m, v) pieces with
        ``_foreach`` ops (``decay``: whether these pieces take weight decay)."""
        ps, gs, ms, vs = (list(x) for x in zip(*pieces))
        if self.weight_decay and decay:
            torch._foreach_mul_(ps, 1 - self.lr * self.weight_decay)
        torch._foreach_lerp_(ms, gs, 1 - self.beta1)
        torch._foreach_mul_(vs, self.beta2)
        torch._foreach_addcmul_(vs, gs, gs, 1 - self.beta2)
        bias_correction1 = 1 - self.beta1**t
        bias_correction2_sqrt = math.sqrt(1 - self.beta2**t)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(ps, ms, denom, -self.lr / bias_correction1)

    def state_dict(self) -> dict:
        """Moments, steps and hyper-parameters as tensors and plain values
        (readable with ``torch.load(..., weights_only=True)``)."""
        return {
            "lr": self.lr,
            "betas": (self.beta1, self.beta2),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "step_count": self.step_count,
            "param_steps": list(self.param_steps),
            "m": [t.clone() for t in self.m],
            "v": [t.clone() for t in self.v],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; a different number or shape of moments → ValueError."""
        if len(state["m"]) != len(self.params) or len(state["v"]) != len(self.params):
            raise ValueError(
                f"optimizer state has {len(state['m'])} moment tensors, model has {len(self.params)} params"
            )
        for i, (p, m) in enumerate(zip(self.params, state["m"])):
            if m.shape != p.shape:
                raise ValueError(
                    f"optimizer state m[{i}] shape {tuple(m.shape)} != param {tuple(p.shape)}"
                )
        self.lr = state["lr"]
        self.beta1, self.beta2 = state["betas"]
        self.eps = state["eps"]
        self.weight_decay = state["weight_decay"]
        self.step_count = int(state["step_count"])
        self.param_steps = [int(s) for s in state["param_steps"]]
        self.m = [t.to(p.device, p.dtype).clone() for t, p in zip(state["m"], self.params)]
        self.v = [t.to(p.device, p.dtype).clone() for t, p in zip(state["v"], self.params)]


def one_dim_params(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters with fewer than 2 dimensions — biases, LayerNorm/RMSNorm gains — which
    nanoGPT (``configure_optimizers``) and the HF Trainer leave out of weight decay; pass them
    as ``AdamW(..., no_decay=one_dim_params(params))``."""
    return [p for p in params if p.dim() < 2]
