"""Backprop by hand: a NumPy MLP where every layer writes its own backward pass.

Each layer has ``forward(x)`` (caching what its backward needs) and ``backward(dout)`` that
takes ``∂L/∂out`` and returns ``∂L/∂x``, storing ``∂L/∂param`` in ``grads``. Chaining the
backwards in reverse order is backpropagation (Rumelhart, Hinton & Williams, 1986).
BatchNorm: Ioffe & Szegedy (2015); its backward is the compact form from Kratzert (2016) /
CS231n assignment 2. Softmax cross-entropy: ``∂L/∂logits = (softmax - onehot)/N``.
Shapes: inputs (N, D_in), hidden (N, H), logits (N, C), integer targets (N,) in [0, C).
No torch here: the tests check every gradient against ``torch.autograd``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Layer:
    """Base class: ``params`` and ``grads`` (dicts name → array), a ``training`` flag."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output and cache what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Given ``∂L/∂out`` return ``∂L/∂x`` and fill ``grads``."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)


class Linear(Layer):
    """Affine map ``x @ W + b``: (N, in_features) → (N, out_features).

    ``W`` (in, out) ~ N(0, 1/in) (std 1/√in), ``b`` zeros (out,). ``rng`` is a
    ``np.random.Generator`` or an int seed (None → seed 0). Sizes < 1 → ValueError.
    Backward: ``dW = xᵀ dout``, ``db = Σₙ dout``, ``dx = dout Wᵀ``.
    """

    def __init__(
        self, in_features: int, out_features: int, rng: np.random.Generator | int | None = None
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features}, {out_features}"
            )
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng or 0)
        self.params["W"] = rng.standard_normal((in_features, out_features)) / np.sqrt(in_features)
        self.params["b"] = np.zeros(out_features)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, in) → (N, out). Wrong width → ValueError."""
        if x.ndim != 2 or x.shape[1] != self.params["W"].shape[0]:
            raise ValueError(f"x must have shape (N, {self.params['W'].shape[0]}), got {x.shape}")
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """(N, out) → (N, in); sets grads W (in, out) and b (out,)."""
        self.grads["W"] = self.x.T @ dout  # (in, N) @ (N, out) -> (in, out)
        self.grads["b"] = dout.sum(axis=0)  # (out,)
        return dout @ self.params["W"].T  # (N, out) @ (out, in) -> (N, in)


class ReLU(Layer):
    """``max(0, x)`` elementwise; backward passes ``dout`` where x > 0 (relu'(0) = 0)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Same shape in and out."""
        self.mask = x > 0
        return np.where(self.mask, x, 0.0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """``dout · 1[x > 0]``."""
        return dout * self.mask


class Tanh(Layer):
    """``tanh(x)`` elementwise; backward ``dout · (1 - tanh²)``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Same shape in and out."""
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """``dout · (1 - out²)``."""
        return dout * (1.0 - self.out**2)


class BatchNorm1d(Layer):
    """Batch normalization over the batch axis of (N, D) activations.

    Training: ``x̂ = (x - μ_B)/√(σ²_B + eps)`` with the batch mean and *biased* variance,
    ``out = γ x̂ + β``; running stats ``r ← (1 - momentum) r + momentum·stat`` (unbiased
    variance, as torch). Eval: uses the running stats. ``gamma`` ones, ``beta`` zeros (D,).
    Training with N < 2 → ValueError. Source: Ioffe & Szegedy, "Batch Normalization" (2015).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.eps, self.momentum = eps, momentum
        self.params["gamma"] = np.ones(num_features)
        self.params["beta"] = np.zeros(num_features)
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, D) → (N, D)."""
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ValueError(
                    f"BatchNorm1d in training mode needs a batch of >= 2 rows, got {n}"
                )
            mean, var = x.mean(axis=0), x.var(axis=0)  # (D,), biased variance
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var * n / (
                n - 1
            )
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1.0 / np.sqrt(var + self.eps)  # (D,)
        self.x_hat = (x - mean) * self.inv_std  # (N, D)
        return self.params["gamma"] * self.x_hat + self.params["beta"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """(N, D) → (N, D); sets grads gamma, beta (D,).

        Training (μ and σ² depend on every row):
        ``dx = inv_std/N · (N·dx̂ - Σₙ dx̂ - x̂·Σₙ(dx̂·x̂))`` with ``dx̂ = dout·γ``.
        Eval (stats are constants): ``dx = dout·γ·inv_std``.
        """
        self.grads["gamma"] = (dout * self.x_hat).sum(axis=0)
        self.grads["beta"] = dout.sum(axis=0)
        dx_hat = dout * self.params["gamma"]  # (N, D)
        if not self.training:
            return dx_hat * self.inv_std
        n = dout.shape[0]
        return (
            self.inv_std
            / n
            * (n * dx_hat - dx_hat.sum(axis=0) - self.x_hat * (dx_hat * self.x_hat).sum(axis=0))
        )


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer targets, with its gradient.

    ``forward(logits (N, C), targets (N,) ints in [0, C)) -> float``; ``backward() -> (N, C)``
    ``= (softmax(logits) - onehot(targets)) / N``. Stable: logits are shifted by their row max
    (finite for logits of ±1e4). Bad shapes / out-of-range targets → ValueError.
    """

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        """Mean negative log-likelihood over the N rows."""
        targets = np.asarray(targets)
        if logits.ndim != 2 or targets.shape != (logits.shape[0],):
            raise ValueError(
                f"logits must be (N, C) and targets (N,), got {logits.shape} and {targets.shape}"
            )
        if (
            not np.issubdtype(targets.dtype, np.integer)
            or targets.min() < 0
            or targets.max() >= logits.shape[1]
        ):
            raise ValueError(f"targets must be integers in [0, {logits.shape[1]})")
        shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C), max 0 per row
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # log softmax
        self.probs, self.targets = np.exp(log_probs), targets
        return float(-log_probs[np.arange(len(targets)), targets].mean())

    def backward(self) -> np.ndarray:
        """∂L/∂logits, (N, C)."""
        d = self.probs.copy()
        d[np.arange(len(self.targets)), self.targets] -= 1.0
        return d / len(self.targets)

    def __call__(self, logits: np.ndarray, targets: np.ndarray) -> float:
        return self.forward(logits, targets)


class MLP:
    """Linear → [BatchNorm1d] → activation, repeated, then a final Linear producing logits.

    Args:
        layer_sizes: ``(D_in, hidden..., C)``, at least two sizes (else ValueError).
        activation: ``"relu"`` (default) or ``"tanh"``.
        batchnorm: insert a :class:`BatchNorm1d` after each hidden Linear (default False).
        rng: a ``np.random.Generator`` or an int seed for the weights (None → seed 0).

    ``forward(x (N, D_in)) -> logits (N, C)``; ``backward(dlogits) -> dx``.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "relu",
        batchnorm: bool = False,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        if len(layer_sizes) < 2:
            raise ValueError(f"layer_sizes needs at least (D_in, C), got {layer_sizes!r}")
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng or 0)
        self.layers: list[Layer] = []
        sizes = list(layer_sizes)
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.layers.append(Linear(n_in, n_out, rng))
            if i < len(sizes) - 2:  # hidden layer
                if batchnorm:
                    self.layers.append(BatchNorm1d(n_out))
                self.layers.append(ReLU() if activation == "relu" else Tanh())

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, D_in) → logits (N, C)."""
        x = np.asarray(x, dtype=np.float64)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Backpropagate ``∂L/∂logits`` (N, C) through every layer in reverse; returns ∂L/∂x."""
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def parameters(self) -> list[np.ndarray]:
        """Every parameter array, layer by layer (updated in place by :func:`sgd_step`)."""
        return [p for layer in self.layers for p in layer.params.values()]

    def gradients(self) -> list[np.ndarray]:
        """The gradients from the last ``backward``, in the order of :meth:`parameters`."""
        return [layer.grads[name] for layer in self.layers for name in layer.params]

    def train(self) -> MLP:
        """Training mode (BatchNorm uses batch statistics); returns self."""
        for layer in self.layers:
            layer.training = True
        return self

    def eval(self) -> MLP:
        """Evaluation mode (BatchNorm uses running statistics); returns self."""
        for layer in self.layers:
            layer.training = False
        return self


def sgd_step(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
    """In-place gradient descent ``p -= lr·g`` for each (parameter, gradient) pair.

    Mismatched lengths or shapes → ValueError.
    """
    if len(params) != len(grads):
        raise ValueError(f"params and grads must pair up, got {len(params)} and {len(grads)}")
    for p, g in zip(params, grads):
        if p.shape != g.shape:
            raise ValueError(
                f"a gradient of shape {g.shape} does not match its parameter {p.shape}"
            )
        p -= lr * g


def train_classifier(
    model: MLP, X: np.ndarray, y: np.ndarray, lr: float = 0.5, steps: int = 500
) -> list[float]:
    """Full-batch training of ``model`` with softmax cross-entropy; returns the loss per step."""
    loss_fn = SoftmaxCrossEntropy()
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model.forward(X), y)
        model.backward(loss_fn.backward())
        sgd_step(model.parameters(), model.gradients(), lr)
        losses.append(loss)
    return losses
