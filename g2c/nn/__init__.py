"""03 nn — layers, losses and SGD on torch tensors, without torch.nn or torch.optim.

``Module`` collects parameters by walking attributes; ``Linear`` is ``x @ W + b``; the
activations, ``Dropout``, ``BatchNorm1d`` and ``Sequential`` are a few lines each;
``CrossEntropyLoss`` uses the log-sum-exp trick; ``SGD`` updates under ``no_grad``.
"""

from g2c.nn.layers import GELU, BatchNorm1d, Dropout, Linear, ReLU, Sequential, Sigmoid, Tanh
from g2c.nn.losses import CrossEntropyLoss, MSELoss, cross_entropy, log_softmax
from g2c.nn.module import Module
from g2c.nn.optim import SGD, resolve_device

__all__ = [
    "Module",
    "Linear",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "GELU",
    "Dropout",
    "BatchNorm1d",
    "Sequential",
    "MSELoss",
    "CrossEntropyLoss",
    "cross_entropy",
    "log_softmax",
    "SGD",
    "resolve_device",
]
