"""The classic closure-based scalar autodiff engine: the readable reference (module 01's lesson).

Idea: every :class:`Value` keeps the Values it was computed from (``_children``) and a
``_backward`` closure, written right next to the forward computation of its operation, that
applies the chain rule for that one operation: ``child.grad += ∂out/∂child · out.grad``.
``backward()`` orders the graph topologically and calls each node's ``_backward`` from the
output down. Source: Karpathy's micrograd (2020, github.com/karpathy/micrograd, engine.py),
re-typed with the behaviours of API.md 01 (numbers on either side, ``exp``/``log``/``tanh``/
``sigmoid``, clear errors, an *iterative* topological sort, and interior nodes that do not
double count when ``backward()`` is called twice).

This is the reference; :class:`g2c.autodiff.Value` (``engine.py``) is the fast path with the same
behaviour, tested equal on random expression graphs and on the moons MLP
(``tests/test_autodiff.py``). Why it is faster: the closure here captures ``out`` itself, so each
node is a reference cycle that only CPython's cyclic garbage collector can free, and a plain
number becomes a leaf node. The fast engine stores local derivatives as floats and points only
down. Use this one to read, the fast one to run: ``g2c.autodiff.ReferenceValue`` is this class.
Shapes: everything is a Python float.
"""

from __future__ import annotations

import math

Number = int | float


def _number(x: object, op: str) -> float:
    """Check that ``x`` is a plain number for operator ``op`` (TypeError otherwise)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return x
    got = type(x).__name__
    if got == "Value":  # a Value of the other engine
        got = f"{type(x).__module__}.Value (the fast and reference engines do not mix)"
    raise TypeError(f"Value {op}: the other operand must be a Value, int or float, got {got}")


class Value:
    """A scalar node: ``data``, ``grad`` and a ``_backward`` closure (the reference engine).

    Args:
        data: an int or float (stored as ``float``); anything else → TypeError.
        _children: the Values this one was computed from (set by the operators).
        _op: the operation's name, for :func:`g2c.autodiff.draw_text`.
        label: keyword-only, an optional name for tracing.

    Same public behaviour as :class:`g2c.autodiff.Value` (API.md 01); a plain number in an
    operation is wrapped in a leaf Value, as in micrograd.
    """

    def __init__(
        self, data: Number, _children: tuple[Value, ...] = (), _op: str = "", *, label: str = ""
    ) -> None:
        if not isinstance(data, (int, float)) or isinstance(data, bool):
            raise TypeError(f"Value(data=...) needs an int or float, got {type(data).__name__}")
        self.data = float(data)
        self.grad = 0.0
        self._backward = lambda: None  # a leaf has nothing to pass down
        self._children = tuple(_children)
        self._op = _op
        self.label = label

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # ---- binary operators: forward value, then the closure with the local derivatives -------
    def __add__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(_number(other, "+"))
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:  # ∂(a+b)/∂a = ∂(a+b)/∂b = 1
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(_number(other, "*"))
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:  # ∂(a·b)/∂a = b, ∂(a·b)/∂b = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, exponent: Number) -> Value:
        if isinstance(exponent, Value):
            raise TypeError("Value ** exponent needs a number exponent, not a Value; use exp/log")
        n = _number(exponent, "**")
        x = self.data
        if x < 0 and not float(n).is_integer():
            raise ValueError(f"Value ** {n}: a negative base ({x}) needs an integer exponent")
        if x == 0 and n < 0:
            raise ZeroDivisionError(f"Value ** {n} at data=0.0")
        out = Value(float(x**n), (self,), f"**{n:g}")

        def _backward() -> None:  # ∂(x**n)/∂x = n·x**(n-1) (0 for n = 0; inf at x = 0, n < 1)
            local = 0.0 if n == 0 else (math.inf if x == 0 and n < 1 else n * x ** (n - 1))
            self.grad += local * out.grad

        out._backward = _backward
        return out

    def __neg__(self) -> Value:  # -self
        return self * -1

    def __sub__(self, other: Value | Number) -> Value:  # self - other
        other = other if isinstance(other, Value) else Value(_number(other, "-"))
        return self + (-other)

    def __truediv__(self, other: Value | Number) -> Value:  # self / other
        other = other if isinstance(other, Value) else Value(_number(other, "/"))
        return self * other**-1

    def __radd__(self, other: Number) -> Value:  # other + self
        return self + other

    def __rmul__(self, other: Number) -> Value:  # other * self
        return self * other

    def __rsub__(self, other: Number) -> Value:  # other - self
        return Value(_number(other, "-")) + (-self)

    def __rtruediv__(self, other: Number) -> Value:  # other / self
        return Value(_number(other, "/")) * self**-1

    # ---- unary functions ---------------------------------------------------------------------
    def exp(self) -> Value:
        """e**x; local derivative e**x. Overflow (x > ~709) raises OverflowError."""
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward() -> None:
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def log(self) -> Value:
        """Natural log; local derivative 1/x. ``data <= 0`` → ValueError."""
        if self.data <= 0:
            raise ValueError(f"log needs data > 0, got {self.data}")
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:
            self.grad += (1.0 / self.data) * out.grad

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        """Hyperbolic tangent; local derivative 1 - tanh(x)**2."""
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward() -> None:
            self.grad += (1.0 - out.data**2) * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        """max(0, x); local derivative 1 for x > 0 and 0 otherwise (relu'(0) = 0, as torch)."""
        out = Value(self.data if self.data > 0 else 0.0, (self,), "relu")

        def _backward() -> None:
            self.grad += (1.0 if out.data > 0 else 0.0) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        """1 / (1 + e**-x), computed without overflow; local derivative s·(1 - s)."""
        x = self.data
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward() -> None:
            self.grad += s * (1.0 - s) * out.grad

        out._backward = _backward
        return out

    # ---- reverse mode ------------------------------------------------------------------------
    def backward(self, gradient: float = 1.0) -> None:
        """Set ``grad`` of every node reachable from ``self`` to ∂self/∂node (chain rule).

        Same semantics as :meth:`g2c.autodiff.Value.backward`: leaves accumulate over calls
        (as in torch); interior nodes are reset first, so they never double count. Iterative
        topological sort: a 100,000-node chain does not hit the recursion limit.
        """
        seed = _number(gradient, "backward(gradient=...)")
        order = topological_order(self)  # children before parents
        for node in order:
            if node._children:  # interior node: holds only this call's gradient
                node.grad = 0.0
        self.grad += seed
        for node in reversed(order):  # parents before children
            node._backward()


def topological_order(root: Value) -> list[Value]:
    """All nodes reachable from ``root``, each after all of its children (root last).

    micrograd's recursive ``build_topo`` written with an explicit stack of (node, next child
    index), so depth is limited by memory, not by Python's recursion limit.
    """
    if not isinstance(root, Value):
        raise TypeError(f"root must be a Value, got {type(root).__name__}")
    order: list[Value] = []
    visited = {root}
    stack = [(root, 0)]
    while stack:
        node, i = stack.pop()
        if i < len(node._children):
            stack.append((node, i + 1))  # come back for the next child
            child = node._children[i]
            if child not in visited:
                visited.add(child)
                stack.append((child, 0))
        else:  # every child placed: place the node
            order.append(node)
    return order
