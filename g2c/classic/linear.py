"""Linear and logistic regression with gradients derived by hand, checked by finite differences.

Linear regression: ``ŷ = X w + b``, loss ``L = mean((ŷ - y)²)``. With ``r = ŷ - y``:
``∂L/∂ŷ = 2r/N``, so ``∂L/∂w = Xᵀ(2r/N)`` and ``∂L/∂b = Σ 2r/N``.
Logistic regression: ``p = σ(z)``, ``z = X w + b``, loss the mean binary cross-entropy
``L = mean(-y log p - (1 - y) log(1 - p)) = mean(log(1 + eᶻ) - y z)``. Since
``∂/∂z log(1 + eᶻ) = σ(z)``: ``∂L/∂z = (p - y)/N``, ``∂L/∂w = Xᵀ(p - y)/N``, ``∂L/∂b = Σ(p - y)/N``.
Sources: Bishop, "Pattern Recognition and Machine Learning" (2006), §3.1 and §4.3.2.
Shapes: ``X`` (N, D) float64, ``y`` (N,) float64 (0/1 for logistic), ``w`` (D,), ``b`` float.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + e^-z)`` elementwise, without overflow for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))  # in (0, 1], never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def finite_difference_grad(
    f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6
) -> np.ndarray:
    """Central-difference gradient of a scalar function ``f`` of an array, entry by entry.

    ``(f(x + h eᵢ) - f(x - h eᵢ)) / 2h`` for each index i; returns an array shaped like ``x``.
    ``x`` is restored afterwards. ``h <= 0`` → ValueError; a non-float ``x`` is copied to float64.
    Cost: 2·x.size calls of ``f``. Source: Nocedal & Wright, "Numerical Optimization", §8.1.
    """
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h}")
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f(x)
        x[i] = old - h
        f_minus = f(x)
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """max |a - b| / max(|a| + |b|, eps) over all entries: the usual gradient-check measure."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), eps)))


def _check_data(X: np.ndarray, y: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """X → (N, D) float64; y → (N,) float64 (an (N, 1) column is flattened)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (N, {n_features}), got {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (X.shape[0],):
        raise ValueError(
            f"y must have shape ({X.shape[0]},) or ({X.shape[0]}, 1) to match X, got {y.shape}"
        )
    return X, y


class _GradientDescentModel:
    """Shared parameters ``w`` (D,), ``b`` and the gradient-descent loop."""

    def __init__(self, n_features: int) -> None:
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features must be a positive int, got {n_features!r}")
        self.w = np.zeros(n_features)
        self.b = 0.0

    def loss_and_gradients(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray, lr: float = 0.1, epochs: int = 100) -> list[float]:
        """Full-batch gradient descent; returns the loss before each step (list of floats).

        ``lr`` > 0 and ``epochs`` >= 1, else ValueError.
        """
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        losses = []
        for _ in range(epochs):
            loss, dw, db = self.loss_and_gradients(X, y)
            self.w -= lr * dw
            self.b -= lr * db
            losses.append(loss)
        return losses


class LinearRegression(_GradientDescentModel):
    """Least-squares linear regression ``ŷ = X w + b`` trained by gradient descent on the MSE.

    Args: ``n_features`` D (>= 1). Attributes ``w`` (D,) zeros, ``b`` 0.0.
    ``X`` (N, D), ``y`` (N,) or (N, 1); other shapes → ValueError.
    """

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X @ w + b``: (N, D) → (N,)."""
        X = np.asarray(X, dtype=np.float64)
        return X @ self.w + self.b

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean squared error ``mean((ŷ - y)²)``."""
        X, y = _check_data(X, y, self.w.shape[0])
        return float(np.mean((self.predict(X) - y) ** 2))

    def loss_and_gradients(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
        """``(L, ∂L/∂w (D,), ∂L/∂b)`` for the MSE, derived by hand (see the module docstring)."""
        X, y = _check_data(X, y, self.w.shape[0])
        r = self.predict(X) - y  # (N,) residuals
        d_pred = 2.0 * r / len(y)  # ∂L/∂ŷ, (N,)
        return float(np.mean(r**2)), X.T @ d_pred, float(d_pred.sum())

    def fit_closed_form(self, X: np.ndarray, y: np.ndarray) -> LinearRegression:
        """Set ``w, b`` to the exact least-squares solution (``np.linalg.lstsq``); returns self."""
        X, y = _check_data(X, y, self.w.shape[0])
        A = np.hstack([X, np.ones((len(X), 1))])  # (N, D+1): a column of ones for the bias
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        self.w, self.b = coef[:-1].copy(), float(coef[-1])
        return self


class LogisticRegression(_GradientDescentModel):
    """Binary logistic regression ``p = σ(X w + b)`` trained on the mean cross-entropy.

    Args: ``n_features`` D (>= 1). Attributes ``w`` (D,) zeros, ``b`` 0.0.
    ``X`` (N, D), ``y`` (N,) in {0, 1} (other values → ValueError).
    """

    def _check(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, y = _check_data(X, y, self.w.shape[0])
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("y must hold labels 0 or 1")
        return X, y

    def logits(self, X: np.ndarray) -> np.ndarray:
        """``z = X @ w + b``: (N, D) → (N,)."""
        return np.asarray(X, dtype=np.float64) @ self.w + self.b

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1 | x) = σ(z), (N,)."""
        return sigmoid(self.logits(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels (N,) int64: 1 where p > 0.5 (z > 0)."""
        return (self.logits(X) > 0).astype(np.int64)

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean binary cross-entropy ``mean(log(1 + e^z) - y z)`` (stable via ``logaddexp``)."""
        X, y = self._check(X, y)
        z = self.logits(X)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def loss_and_gradients(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
        """``(L, ∂L/∂w (D,), ∂L/∂b)``: ``∂L/∂z = (σ(z) - y)/N`` (see the module docstring)."""
        X, y = self._check(X, y)
        z = self.logits(X)
        dz = (sigmoid(z) - y) / len(y)  # (N,)
        return float(np.mean(np.logaddexp(0.0, z) - y * z)), X.T @ dz, float(dz.sum())
