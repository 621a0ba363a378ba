"""01B — classic models in NumPy with hand-derived gradients (before ``g2c.nn``).

The perceptron rule (and why it fails on XOR), linear regression (MSE) and logistic regression
(sigmoid + cross-entropy) with gradients derived by hand and checked by finite differences, and
an MLP whose every layer (Linear, ReLU, Tanh, BatchNorm1d, softmax cross-entropy) writes its own
backward pass — "backprop by hand", checked against torch.autograd in the tests.
See docs/modules/01B-classic.md.
"""

from g2c.classic.linear import (
    LinearRegression,
    LogisticRegression,
    finite_difference_grad,
    relative_error,
    sigmoid,
)
from g2c.classic.mlp import (
    MLP,
    BatchNorm1d,
    Layer,
    Linear,
    ReLU,
    SoftmaxCrossEntropy,
    Tanh,
    sgd_step,
    train_classifier,
)
from g2c.classic.perceptron import Perceptron

__all__ = [
    "Perceptron",
    "LinearRegression",
    "LogisticRegression",
    "sigmoid",
    "finite_difference_grad",
    "relative_error",
    "Layer",
    "Linear",
    "ReLU",
    "Tanh",
    "BatchNorm1d",
    "SoftmaxCrossEntropy",
    "MLP",
    "sgd_step",
    "train_classifier",
]
