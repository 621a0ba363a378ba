"""The perceptron and its learning rule (Rosenblatt, 1958), in NumPy.

Idea: predict ``1`` when ``w·x + b > 0`` else ``0``; after each mistake move the boundary toward
the misclassified point: ``w += lr·(y - ŷ)·x``, ``b += lr·(y - ŷ)``. On linearly separable data
the rule stops making mistakes after finitely many updates (Novikoff, 1962); on XOR no line
separates the classes, so it never does (Minsky & Papert, "Perceptrons", 1969).
Shapes: ``X`` (N, D) float64, labels ``y`` (N,) in {0, 1}; ``w`` (D,), ``b`` a float.
"""

from __future__ import annotations

import numpy as np


def _check_xy(
    X: np.ndarray, y: np.ndarray | None = None, n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate and convert ``X`` (N, D) and optional labels ``y`` (N,) in {0, 1}."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (N, D), got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X must have {n_features} columns (n_features), got {X.shape[1]}")
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold labels 0 or 1")
    return X, y.astype(np.float64)


class Perceptron:
    """A linear threshold unit trained with the perceptron rule.

    Args:
        n_features: input width D (>= 1, else ValueError).
        lr: step size of each update (> 0, else ValueError); with ``w, b`` starting at zero
            the mistakes made do not depend on it.

    Attributes: ``w`` (D,) float64 zeros, ``b`` 0.0, ``lr``.
    Source: Rosenblatt, "The perceptron", Psychological Review 65 (1958).
    """

    def __init__(self, n_features: int, lr: float = 1.0) -> None:
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features must be a positive int, got {n_features!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.w = np.zeros(n_features)
        self.b = 0.0
        self.lr = lr

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Scores ``X @ w + b``: (N, D) → (N,). Wrong width → ValueError."""
        X, _ = _check_xy(X, n_features=self.w.shape[0])
        return X @ self.w + self.b

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels (N,) int64: 1 where the score is > 0, else 0."""
        return (self.decision_function(X) > 0).astype(np.int64)

    def update(self, x: np.ndarray, target: float) -> bool:
        """Apply the rule to one example ``x`` (D,) with label ``target`` in {0, 1}.

        Returns True when it was a mistake (and the weights moved), else False.
        """
        pred = float(x @ self.w + self.b > 0)
        error = target - pred  # -1, 0 or +1
        if error != 0:
            self.w += self.lr * error * x
            self.b += self.lr * error
        return error != 0

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        epochs: int = 100,
        rng: np.random.Generator | None = None,
    ) -> list[int]:
        """Run the rule over the data ``epochs`` times (stops early after an error-free epoch).

        Args:
            X: (N, D) inputs; y: (N,) labels in {0, 1} (else ValueError).
            epochs: number of passes (>= 1).
            rng: when given, the example order is shuffled each epoch.

        Returns the number of mistakes in each epoch (a list, ends with 0 if it converged).
        """
        X, y = _check_xy(X, y, self.w.shape[0])
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        mistakes_per_epoch = []
        for _ in range(epochs):
            order = rng.permutation(len(X)) if rng is not None else range(len(X))
            mistakes = sum(self.update(X[i], y[i]) for i in order)
            mistakes_per_epoch.append(int(mistakes))
            if mistakes == 0:
                break
        return mistakes_per_epoch
