"""01 — scalar reverse-mode autodiff: ``Value``, gradients checked numerically, scalar MLPs.

Two engines with the same behaviour: :class:`Value` is the fast one (what you get by default);
:class:`ReferenceValue` (``g2c/autodiff/reference.py``) is the classic closure-based engine the
lesson reads line by line. ``ScalarNeuron/ScalarLayer/ScalarMLP(..., engine="reference")`` build
networks on it.

Public names (see docs/modules/01-autodiff.md): :class:`Value`, :class:`ReferenceValue`,
:func:`numerical_grad`,
:func:`zero_grad`, :func:`topological_order`; tracing (:func:`trace`, :func:`draw_text`,
:func:`draw_dot`); :class:`ScalarNeuron`, :class:`ScalarLayer`, :class:`ScalarMLP`,
:func:`single_neuron_forward`, :func:`xor_loss`, :func:`train_xor_step`, :func:`sgd_step`,
:func:`max_margin_loss`, :func:`train_moons_step`.
"""

from g2c.autodiff.engine import Value, numerical_grad, topological_order, zero_grad
from g2c.autodiff.graph import draw_dot, draw_text, trace
from g2c.autodiff.nn import (
    ENGINES,
    XOR_INPUTS,
    XOR_TARGETS,
    ScalarLayer,
    ScalarMLP,
    ScalarNeuron,
    max_margin_loss,
    sgd_step,
    single_neuron_forward,
    train_moons_step,
    train_xor_step,
    xor_loss,
)
from g2c.autodiff.reference import Value as ReferenceValue

__all__ = [
    "Value",
    "ReferenceValue",
    "ENGINES",
    "numerical_grad",
    "zero_grad",
    "topological_order",
    "trace",
    "draw_text",
    "draw_dot",
    "ScalarNeuron",
    "ScalarLayer",
    "ScalarMLP",
    "single_neuron_forward",
    "xor_loss",
    "train_xor_step",
    "sgd_step",
    "max_margin_loss",
    "train_moons_step",
    "XOR_INPUTS",
    "XOR_TARGETS",
]
