"""Stochastic gradient descent and device selection.

SGD: p ← p − lr·(g + weight_decay·p), done under ``torch.no_grad()`` so the update is not part
of the graph; parameters whose ``.grad`` is None are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def _check_params(params: Iterable[torch.Tensor], who: str) -> list[torch.Tensor]:
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{who} params[{i}] must be a torch.Tensor, got {type(p).__name__}")
    return params


class SGD:
    """Plain SGD with optional L2 weight decay (and optional heavy-ball momentum).

    ``lr < 0`` → ValueError("lr ..."); ``weight_decay < 0`` → ValueError; ``momentum``
    outside [0, 1) → ValueError. ``lr`` may be changed between steps (schedules do).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        weight_decay: float = 0.0,
        *,
        momentum: float = 0.0,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.params = _check_params(params, "SGD")
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.velocity: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update p ← p − lr·(g + wd·p) (with momentum: v ← μv + g', p ← p − lr·v)."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.velocity[i]
                v = g.clone() if v is None else v.mul_(self.momentum).add_(g)
                self.velocity[i] = v
                g = v
            p.sub_(self.lr * g)

    def state_dict(self) -> dict:
        """Plain-Python/tensor state (``torch.load(weights_only=True)`` safe)."""
        return {
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "velocity": list(self.velocity),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.lr = state["lr"]
        self.weight_decay = state["weight_decay"]
        self.momentum = state.get("momentum", 0.0)
        self.velocity = list(state.get("velocity", [None] * len(self.params)))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "mps"`` (or "cuda:N") to a ``torch.device``.

    "auto" → cuda if available, else mps if available, else cpu. Asking for an unavailable
    accelerator or an unknown name → ValueError naming the device and the choices.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    mps_ok = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    kind = device.split(":")[0]
    if kind == "cpu":
        return torch.device(device)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "device 'cuda' requested but CUDA is not available; use 'cpu' or 'auto'"
            )
        return torch.device(device)
    if kind == "mps":
        if not mps_ok:
            raise ValueError("device 'mps' requested but MPS is not available; use 'cpu' or 'auto'")
        return torch.device(device)
    raise ValueError(f"device must be one of 'auto', 'cpu', 'cuda', 'mps', got {device!r}")
