"""Small synthetic 2-D datasets for the early modules (moons, circles, a noisy line).

Generated with NumPy from a seed, so every run and every test sees the same points. They
mirror scikit-learn's ``make_moons`` / ``make_circles`` (same geometry, own RNG stream).
"""

from __future__ import annotations

import numpy as np


def make_moons(
    n_samples: int = 100, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles.

    Returns ``X`` float64 (N, 2) and ``y`` int64 (N,) with labels 0/1 (first half 0, second 1).
    ``n_samples < 2`` or ``noise < 0`` → ValueError.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1)
    X = np.concatenate([outer, inner]) + rng.normal(scale=noise, size=(n_samples, 2))
    y = np.concatenate([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    return X, y


def make_circles(
    n_samples: int = 100, noise: float = 0.05, factor: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A small circle (label 1, radius ``factor``) inside a large one (label 0, radius 1).

    Returns ``X`` float64 (N, 2) and ``y`` int64 (N,). ``factor`` outside (0, 1) → ValueError.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if not 0 < factor < 1:
        raise ValueError(f"factor must be between 0 and 1, got {factor}")
    rng = np.random.default_rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = factor * np.stack([np.cos(t_in), np.sin(t_in)], axis=1)
    X = np.concatenate([outer, inner]) + rng.normal(scale=noise, size=(n_samples, 2))
    y = np.concatenate([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    return X, y


def make_line(
    n_samples: int = 100,
    slope: float = 3.0,
    intercept: float = 2.0,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Points on ``y = slope·x + intercept`` plus Gaussian noise; x uniform in [-1, 1].

    Returns ``x`` float64 (N, 1) and ``y`` float64 (N, 1).
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n_samples, 1))
    y = slope * x + intercept + rng.normal(scale=noise, size=(n_samples, 1))
    return x, y
