"""Neurons and small networks built from scalar ``Value``s, and the XOR / two-moons tasks.

A neuron computes ``act(w·x + b)``; a layer is a list of neurons; an MLP is a list of layers.
Everything is a Python float wrapped in :class:`~g2c.autodiff.Value`, so every multiply-add is
a graph node. Sources: Rosenblatt (1958) for the neuron, Rumelhart, Hinton & Williams (1986)
for training it by backpropagation, micrograd (Karpathy, 2020) for the scalar-engine demo
(2-16-16-1 ReLU MLP + max-margin loss on two moons).
Shapes: an input is a sequence of ``n_inputs`` numbers (or Values); a layer returns a list
of ``n_outputs`` Values (a single Value when ``n_outputs == 1`` in an MLP's last layer).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from g2c.autodiff import reference
from g2c.autodiff.engine import VALUE_TYPES, Number, Value, zero_grad

ACTIVATIONS = ("tanh", "relu", "linear")
# engine name -> Value class: the fast engine (default) or the closure-based reference
ENGINES: dict[str, type] = {"fast": Value, "reference": reference.Value}

XOR_INPUTS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
XOR_TARGETS: tuple[float, ...] = (0.0, 1.0, 1.0, 0.0)


def _make_rng(rng: Any) -> Any:
    """None or the class ``random.Random`` → ``random.Random(0)``; an int → ``random.Random(int)``;
    else anything with ``uniform(a, b)`` (a ``random.Random``, the ``random`` module)."""
    if rng is None:
        return random.Random(0)
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    if isinstance(rng, type) and issubclass(rng, random.Random):  # the class itself
        return rng(0)
    if not hasattr(rng, "uniform"):
        raise TypeError(
            f"rng must be a random.Random, an int seed or None, got {type(rng).__name__}"
        )
    return rng


def _value_class(engine: str) -> type:
    """The Value class of ``engine`` ("fast" or "reference"); another name → ValueError."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {tuple(ENGINES)}, got {engine!r}")
    return ENGINES[engine]


class ScalarNeuron:
    """One neuron: ``act(w·x + b)`` with ``act`` tanh by default.

    Args:
        n_inputs: number of inputs n (>= 1, else ValueError).
        rng: a ``random.Random`` (or the ``random`` module, or an int seed; None → seed 0).
            Weights are drawn ``uniform(-1, 1)``, one per input in order; the bias starts at 0.
        activation: keyword-only, ``"tanh"`` (default), ``"relu"`` or ``"linear"``.
        engine: keyword-only, ``"fast"`` (default, :class:`g2c.autodiff.Value`) or
            ``"reference"`` (the closure-based :class:`g2c.autodiff.ReferenceValue`); same
            weights, same results.

    Attributes: ``w`` (list of n Values), ``b`` (Value).
    Call on a sequence of n numbers or Values → a ``Value``; another length → ValueError.
    """

    def __init__(
        self, n_inputs: int, rng: Any = None, *, activation: str = "tanh", engine: str = "fast"
    ) -> None:
        if not isinstance(n_inputs, int) or n_inputs <= 0:
            raise ValueError(f"n_inputs must be a positive int, got {n_inputs!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        value = _value_class(engine)
        rng = _make_rng(rng)
        self.w = [value(rng.uniform(-1.0, 1.0)) for _ in range(n_inputs)]
        self.b = value(0.0)
        self.activation = activation

    def __call__(self, x: Sequence[Value | Number]) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"x must have {len(self.w)} inputs (n_inputs), got {len(x)}")
        act = self.b
        for wi, xi in zip(self.w, x):
            act = act + wi * xi  # b + w0·x0 + w1·x1 + ..., left to right
        if self.activation == "tanh":
            return act.tanh()
        if self.activation == "relu":
            return act.relu()
        return act

    def parameters(self) -> list[Value]:
        """The n weights then the bias (n + 1 Values)."""
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"ScalarNeuron({len(self.w)}, activation={self.activation!r})"


class ScalarLayer:
    """``n_outputs`` independent neurons reading the same ``n_inputs`` inputs.

    Args: ``n_inputs`` (>= 1), ``n_outputs`` (>= 1, else ValueError), ``rng`` as for
    :class:`ScalarNeuron` (shared, so the neurons differ), keyword-only ``activation`` and
    ``engine`` (``"fast"`` or ``"reference"``).
    Call on n_inputs numbers/Values → list of ``n_outputs`` Values.
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        rng: Any = None,
        *,
        activation: str = "tanh",
        engine: str = "fast",
    ) -> None:
        if not isinstance(n_outputs, int) or n_outputs <= 0:
            raise ValueError(f"n_outputs must be a positive int, got {n_outputs!r}")
        rng = _make_rng(rng)
        self.neurons = [
            ScalarNeuron(n_inputs, rng, activation=activation, engine=engine)
            for _ in range(n_outputs)
        ]

    def __call__(self, x: Sequence[Value | Number]) -> list[Value]:
        return [neuron(x) for neuron in self.neurons]

    def parameters(self) -> list[Value]:
        """Every neuron's parameters, neuron by neuron."""
        return [p for neuron in self.neurons for p in neuron.parameters()]


class ScalarMLP:
    """A multilayer perceptron of scalar neurons; by default the 2-2-1 tanh net for XOR.

    Args:
        rng: as for :class:`ScalarNeuron` (one stream for all layers; None → seed 0).
        layer_sizes: keyword-only, ``(n_inputs, hidden..., n_outputs)``; default ``(2, 2, 1)``
            (9 parameters). Fewer than two sizes or a size < 1 → ValueError.
        activation: keyword-only, hidden-layer activation (default ``"tanh"``).
        output_activation: keyword-only, last-layer activation (default ``"tanh"``; the moons
            classifier uses ``"linear"`` scores).
        engine: keyword-only, ``"fast"`` (default) or ``"reference"`` (closure-based engine);
            the same rng gives the same weights in both.

    Call on ``n_inputs`` numbers/Values → a ``Value`` when the last layer has one output, else
    a list of Values. Wrong input width → ValueError.
    """

    def __init__(
        self,
        rng: Any = None,
        *,
        layer_sizes: Sequence[int] = (2, 2, 1),
        activation: str = "tanh",
        output_activation: str = "tanh",
        engine: str = "fast",
    ) -> None:
        sizes = list(layer_sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"layer_sizes must be >= 2 positive ints, got {layer_sizes!r}")
        _value_class(engine)  # unknown engine → ValueError before any weight is drawn
        rng = _make_rng(rng)
        self.layer_sizes = tuple(sizes)
        self.engine = engine
        self.layers = [
            ScalarLayer(
                n_in,
                n_out,
                rng,
                activation=activation if i < len(sizes) - 2 else output_activation,
                engine=engine,
            )
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))
        ]

    def __call__(self, x: Sequence[Value | Number]) -> Value | list[Value]:
        out: Sequence[Value | Number] = x
        for layer in self.layers:
            out = layer(out)  # (n_in,) -> (n_out,)
        return out[0] if len(out) == 1 else list(out)

    def parameters(self) -> list[Value]:
        """Every layer's parameters, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"ScalarMLP(layer_sizes={self.layer_sizes})"


def single_neuron_forward(
    x1: Value | Number,
    x2: Value | Number,
    w1: Value | Number,
    w2: Value | Number,
    b: Value | Number,
) -> Value:
    """``tanh(w1·x1 + w2·x2 + b)`` as a Value (arguments are numbers or Values).

    Numbers are wrapped in the engine of the first Value argument (the fast ``Value`` when all
    are numbers); a non-number raises TypeError.
    """
    args = (x1, x2, w1, w2, b)
    value = next((type(a) for a in args if isinstance(a, VALUE_TYPES)), Value)
    w1 = w1 if isinstance(w1, VALUE_TYPES) else value(w1)
    return (w1 * x1 + w2 * x2 + b).tanh()


def xor_loss(model: Any) -> Value:
    """Mean squared error of ``model`` over the four XOR points (targets 0, 1, 1, 0); >= 0.

    ``model`` is any callable taking a pair of numbers and returning a Value (e.g.
    :class:`ScalarMLP`). Returns the loss as a Value (call ``.backward()`` on it).
    """
    total: Value | int = 0
    for x, target in zip(XOR_INPUTS, XOR_TARGETS):
        pred = model(x)
        if not isinstance(pred, VALUE_TYPES):
            raise TypeError(f"model must return one Value for a pair, got {type(pred).__name__}")
        total = (pred - target) ** 2 + total
    return total / len(XOR_INPUTS)


def sgd_step(params: Sequence[Value], lr: float) -> None:
    """Plain gradient descent in place: ``p.data -= lr · p.grad`` for each parameter."""
    for p in params:
        p.data -= lr * p.grad


def train_xor_step(model: Any, lr: float = 0.05) -> float:
    """One full-batch gradient step on the XOR loss: zero grads, loss, backward, update.

    ``model`` needs ``parameters()`` and to be callable on a pair. ``lr`` > 0 else ValueError.
    Returns the loss *before* the step (float); repeated calls drive it down.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    params = model.parameters()
    zero_grad(params)
    loss = xor_loss(model)
    loss.backward()
    sgd_step(params, lr)
    return loss.data


def max_margin_loss(
    model: Any, X: Sequence[Sequence[float]], y: Sequence[float], alpha: float = 1e-4
) -> tuple[Value, float]:
    """SVM hinge loss ``mean(relu(1 - y_i·score_i)) + alpha·Σ p²`` and the accuracy.

    Args:
        model: callable on one row of ``X`` returning a score Value; has ``parameters()``.
        X: N rows of inputs (N, n_inputs); y: N labels in {-1, +1} (else ValueError).
        alpha: L2 weight (>= 0).

    Returns ``(loss Value, accuracy float in [0, 1])``. Source: micrograd's moons demo.
    """
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"X and y must be non-empty and equally long, got {len(X)} and {len(y)}")
    if any(t not in (-1, 1) for t in y):
        raise ValueError("y must hold labels -1 or +1 (map 0/1 labels with 2*y - 1)")
    scores = [model(row) for row in X]  # N score Values
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum(p * p for p in model.parameters())
    accuracy = sum((yi > 0) == (si.data > 0) for yi, si in zip(y, scores)) / len(y)
    return data_loss + reg_loss, accuracy


def train_moons_step(
    model: Any, X: Sequence[Sequence[float]], y: Sequence[float], lr: float, alpha: float = 1e-4
) -> tuple[float, float]:
    """One full-batch SGD step of :func:`max_margin_loss`; returns ``(loss, accuracy)`` before it."""
    params = model.parameters()
    loss, accuracy = max_margin_loss(model, X, y, alpha)
    zero_grad(params)
    loss.backward()
    sgd_step(params, lr)
    return loss.data, accuracy
