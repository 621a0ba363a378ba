"""Layers on torch tensors: Linear, activations, Dropout, BatchNorm1d, Sequential.

Each layer holds its own tensors and writes its forward pass with tensor operations; autograd
(torch's) supplies the backward. Shapes: Linear maps (..., in) → (..., out); activations and
Dropout keep the shape; BatchNorm1d normalises (N, C) or (N, T, C) over every axis but the last.
"""

from __future__ import annotations

import math

import torch

from g2c.nn.module import Module


class Linear(Module):
    """Affine map ``y = x @ W + b`` with ``W`` (in_features, out_features), ``b`` (out,).

    Init: ``W ~ N(0, 1/in_features)`` (LeCun: keeps the output variance near the input's),
    ``b`` zeros. Both ``requires_grad``. ``bias=False`` drops ``b`` (``self.b is None``).
    Non-positive sizes → ValueError. Input (..., in_features) → output (..., out_features);
    a wrong last dimension → ValueError naming both sizes.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"in_features and out_features must be positive, got {in_features}, {out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        w = torch.randn(
            in_features, out_features, generator=generator, dtype=dtype or torch.float32
        )
        self.W = (w / math.sqrt(in_features)).to(device).requires_grad_()
        self.b = (
            torch.zeros(out_features, device=device, dtype=dtype or torch.float32).requires_grad_()
            if bias
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) → (..., out_features)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: x must have last dimension {self.in_features} (in_features), "
                f"got shape {tuple(x.shape)}"
            )
        y = x @ self.W
        return y + self.b if self.b is not None else y

    def extra_repr(self) -> str:
        """``in, out, bias=...`` for ``repr``."""
        return f"{self.in_features}, {self.out_features}, bias={self.b is not None}"


class ReLU(Module):
    """max(0, x), elementwise; relu'(0) = 0 as in torch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x``."""
        return torch.where(x > 0, x, 0.0)  # gradient 1 where x > 0, else 0 (clamp gives 1 at 0)


class Tanh(Module):
    """Hyperbolic tangent, elementwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x``."""
        return torch.tanh(x)


class Sigmoid(Module):
    """Logistic function 1 / (1 + e^-x), elementwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x``."""
        return torch.sigmoid(x)


class GELU(Module):
    """Gaussian Error Linear Unit (Hendrycks & Gimpel 2016): x · Φ(x).

    ``approximate="none"`` uses the exact erf form, ``"tanh"`` the GPT-2 tanh approximation
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). Other values → ValueError.
    """

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x``."""
        if self.approximate == "tanh":
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class Dropout(Module):
    """Inverted dropout (Srivastava et al. 2014): in training, zero each element with
    probability ``p`` and scale survivors by 1/(1-p); identity in eval mode or when p == 0.

    ``p`` outside [0, 1) → ValueError. An optional ``generator`` makes masks reproducible.
    """

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p}")
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x``."""
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep / (1.0 - self.p)


class BatchNorm1d(Module):
    """Batch normalisation (Ioffe & Szegedy 2015) over every axis but the last.

    Input (N, C) or (N, T, C) (channels last, as in makemore's WaveNet — torch's BatchNorm1d
    wants (N, C, T) instead). Training: normalise with the batch mean and biased variance and
    update ``running_mean``/``running_var`` (unbiased) with ``momentum``; eval: use the running
    statistics. Parameters ``gamma`` (ones) and ``beta`` (zeros) of shape (C,).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.gamma = torch.ones(num_features, requires_grad=True)
        self.beta = torch.zeros(num_features, requires_grad=True)
        self.running_mean = torch.zeros(num_features)
        self.running_var = torch.ones(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) or (N, T, C) → same shape."""
        if x.shape[-1] != self.num_features or x.dim() not in (2, 3):
            raise ValueError(
                f"BatchNorm1d expects (N, {self.num_features}) or (N, T, {self.num_features}), "
                f"got {tuple(x.shape)}"
            )
        dims = tuple(range(x.dim() - 1))
        if self.training:
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)
            n = x.numel() // self.num_features
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                unbiased = var * n / max(n - 1, 1)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return self.gamma * x_hat + self.beta


class Sequential(Module):
    """Apply ``layers`` in order; ``parameters()`` collects theirs. Indexable and iterable."""

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module) and not callable(layer):
                raise TypeError(f"Sequential layer {i} is not a Module or callable: {layer!r}")
        self.layers = list(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feed ``x`` through every layer in order."""
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)
