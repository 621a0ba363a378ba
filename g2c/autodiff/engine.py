"""A scalar reverse-mode autodiff engine: every number remembers how it was made.

Idea: each :class:`Value` stores its float ``data``, the (one or two) children it was computed
from and, right next to them, the *local derivatives* ``∂self/∂child`` evaluated at forward time.
``backward()`` walks the graph in reverse topological order and applies the chain rule:
``child.grad += local · node.grad``. Source: Karpathy's micrograd (2020) and the chain rule of
reverse-mode automatic differentiation (Linnainmaa 1970; Griewank & Walther, "Evaluating
Derivatives", 2008).

This is the fast path. The readable reference is the classic closure-based engine in
``g2c/autodiff/reference.py`` (``g2c.autodiff.ReferenceValue``): same behaviour, tested equal on
random expression graphs and on the moons MLP. Design (where this differs from the reference):
local derivatives are stored as plain data, not as a ``_backward`` closure. A closure that captures its own output node forms
a reference cycle, so the classic engine's graphs can only be freed by CPython's cyclic garbage
collector, which then spends most of the run walking live graphs. Here a node only points *down*
to its children, so a graph is freed by reference counting the moment the last reference to its
output goes away. ``__slots__`` (children and local derivatives included) keeps each node one
small object. Shapes: everything is a Python float.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from g2c.autodiff import reference

Number = int | float


class Value:
    """A scalar (Python float) node in a computation graph, with its gradient.

    Args:
        data: the value, an int or float (stored as ``float``).
        label: keyword-only, an optional name shown by :func:`g2c.autodiff.draw_text`.

    Attributes:
        data (float): the forward value.
        grad (float): ``∂output/∂self`` after ``output.backward()``; starts at 0.0.

    Operators ``+ - * / **`` work with Values and plain numbers on either side; ``**`` takes a
    number exponent. Methods ``exp``, ``log``, ``tanh``, ``relu`` (relu'(0) = 0), ``sigmoid``.
    A non-number ``data`` raises TypeError. Source: micrograd (Karpathy, 2020).

    Every operation here has one or two inputs, so a node stores at most two children, each
    with its local derivative: ``_a`` with ``∂self/∂_a`` in ``_da``, ``_b`` with ``∂self/∂_b``
    in ``_db`` (``None`` / 0.0 when absent). Storing them in slots rather than in tuples keeps
    each node a single object: fewer allocations and less for the garbage collector to track.
    """

    __slots__ = ("data", "grad", "_a", "_da", "_b", "_db", "_op", "label")

    def __init__(
        self,
        data: Number,
        _a: Value | None = None,
        _da: float = 0.0,
        _b: Value | None = None,
        _db: float = 0.0,
        _op: str = "",
        *,
        label: str = "",
    ) -> None:
        if not isinstance(data, (int, float)) or isinstance(data, bool):
            raise TypeError(f"Value(data=...) needs an int or float, got {type(data).__name__}")
        self.data = float(data)
        self.grad = 0.0
        self._a, self._da = _a, _da  # first child and ∂self/∂child
        self._b, self._db = _b, _db  # second child (binary ops only) and ∂self/∂child
        self._op = _op
        self.label = label

    @property
    def _children(self) -> tuple[Value, ...]:
        """The nodes this one was computed from (0, 1 or 2 of them)."""
        return tuple(c for c in (self._a, self._b) if c is not None)

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # ---- binary operators: Value(forward value, child, ∂out/∂child, child, ∂out/∂child, op) ---
    def __add__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):
            return Value(self.data + other.data, self, 1.0, other, 1.0, "+")
        return Value(self.data + _number(other, "+"), self, 1.0, _op="+")

    def __mul__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):
            return Value(self.data * other.data, self, other.data, other, self.data, "*")
        other = _number(other, "*")
        return Value(self.data * other, self, other, _op="*")

    def __pow__(self, exponent: Number) -> Value:
        if isinstance(exponent, Value):
            raise TypeError("Value ** exponent needs a number exponent, not a Value; use exp/log")
        n = _number(exponent, "**")
        x = self.data
        if x < 0 and not float(n).is_integer():
            raise ValueError(f"Value ** {n}: a negative base ({x}) needs an integer exponent")
        if x == 0 and n < 1:  # d/dx x**n is infinite (or x**n itself is) at 0
            if n < 0:
                raise ZeroDivisionError(f"Value ** {n} at data=0.0")
            local = 0.0 if n == 0 else math.inf
        else:
            local = n * x ** (n - 1)
        return Value(float(x**n), self, local, _op=f"**{n:g}")

    def __neg__(self) -> Value:
        return Value(-self.data, self, -1.0, _op="neg")

    def __sub__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):
            return Value(self.data - other.data, self, 1.0, other, -1.0, "-")
        return Value(self.data - _number(other, "-"), self, 1.0, _op="-")

    def __truediv__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):
            return self * other**-1
        return self * (1.0 / _number(other, "/"))

    def __radd__(self, other: Number) -> Value:  # other + self
        return self + other

    def __rmul__(self, other: Number) -> Value:  # other * self
        return self * other

    def __rsub__(self, other: Number) -> Value:  # other - self
        return Value(_number(other, "-") - self.data, self, -1.0, _op="-")

    def __rtruediv__(self, other: Number) -> Value:  # other / self
        return self**-1 * other

    # ---- unary functions ---------------------------------------------------------------------
    def exp(self) -> Value:
        """e**x; local derivative e**x. Overflow (x > ~709) raises OverflowError."""
        out = math.exp(self.data)
        return Value(out, self, out, _op="exp")

    def log(self) -> Value:
        """Natural log; local derivative 1/x. ``data <= 0`` → ValueError."""
        if self.data <= 0:
            raise ValueError(f"log needs data > 0, got {self.data}")
        return Value(math.log(self.data), self, 1.0 / self.data, _op="log")

    def tanh(self) -> Value:
        """Hyperbolic tangent; local derivative 1 - tanh(x)**2."""
        t = math.tanh(self.data)
        return Value(t, self, 1.0 - t * t, _op="tanh")

    def relu(self) -> Value:
        """max(0, x); local derivative 1 for x > 0 and 0 otherwise (relu'(0) = 0, as torch)."""
        if self.data > 0:
            return Value(self.data, self, 1.0, _op="relu")
        return Value(0.0, self, 0.0, _op="relu")

    def sigmoid(self) -> Value:
        """1 / (1 + e**-x), computed without overflow; local derivative s·(1 - s)."""
        x = self.data
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        return Value(s, self, s * (1.0 - s), _op="sigmoid")

    # ---- reverse mode ------------------------------------------------------------------------
    def backward(self, gradient: float = 1.0) -> None:
        """Set ``grad`` of every node reachable from ``self`` to ∂self/∂node (chain rule).

        Nodes are visited in reverse topological order (an iterative sort, so a chain of
        100,000+ nodes does not hit the recursion limit). Gradients accumulate over shared
        sub-expressions (f = a·a + a gives a.grad = 2a + 1).

        Calling it twice: *leaves* (Values built by the user, with no children) accumulate,
        as in torch (two calls give 2× the gradient; call :func:`zero_grad` between steps).
        *Interior* nodes (results of operations) are reset to 0 at the start of every call,
        so they hold this call's gradient and never double count into the leaves.

        Args:
            gradient: seed ∂output/∂self (default 1.0); a non-number raises TypeError.
        """
        seed = _number(gradient, "backward(gradient=...)")
        order = topological_order(self)  # children before parents
        for node in order:
            if node._a is not None:  # interior node: holds only this call's gradient
                node.grad = 0.0
        self.grad += seed
        for node in reversed(order):  # parents before children: chain rule
            if node._a is not None:
                node._a.grad += node._da * node.grad
                if node._b is not None:
                    node._b.grad += node._db * node.grad


VALUE_TYPES = (Value, reference.Value)  # the fast engine and the reference, for isinstance


_number = reference._number  # one operand check for both engines


def topological_order(root: Value | reference.Value) -> list[Value]:
    """All nodes reachable from ``root``, each after all of its children (root last).

    Iterative depth-first search with an explicit stack, so graph depth is limited by memory,
    not by Python's recursion limit. A reference-engine root uses the reference's sort.
    ``root`` not a Value → TypeError.
    """
    if isinstance(root, reference.Value):
        return reference.topological_order(root)
    if not isinstance(root, Value):
        raise TypeError(f"root must be a Value, got {type(root).__name__}")
    order: list[Value] = []
    visited: set[Value] = set()  # children pushed (DFS entered the node)
    placed: set[Value] = set()  # appended to ``order`` (DFS left the node)
    stack = [root]
    while stack:
        node = stack[-1]
        if node not in visited:  # first time on top: push the children above it
            visited.add(node)
            if node._a is not None and node._a not in visited:
                stack.append(node._a)
            if node._b is not None and node._b not in visited:
                stack.append(node._b)
        else:  # second time on top: every child is finished, so the node is too
            stack.pop()
            if node not in placed:  # a node pushed by two parents is placed once
                placed.add(node)
                order.append(node)
    return order


def numerical_grad(
    f: Callable[[Value], Value | Number], value: Value | reference.Value | Number, h: float = 1e-5
) -> float:
    """Central difference ``(f(x + h) - f(x - h)) / 2h`` at ``x = value.data``.

    Args:
        f: a function of one ``Value`` returning a ``Value`` (or a number).
        value: the point, a ``Value`` (either engine; ``f`` gets a Value of the same engine)
            or a number (``f`` gets a fast ``Value``).
        h: step, > 0 (error O(h²) plus rounding O(ε/h); 1e-5 suits float64).

    Returns: the estimated derivative df/dx (float). ``h <= 0`` → ValueError.
    Source: any numerical-analysis text (e.g. Nocedal & Wright, "Numerical Optimization", §8.1).
    """
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h}")
    engine = type(value) if isinstance(value, VALUE_TYPES) else Value
    x = (
        value.data
        if isinstance(value, VALUE_TYPES)
        else _number(value, "numerical_grad(value=...)")
    )

    def at(point: float) -> float:
        out = f(engine(point))
        return out.data if isinstance(out, VALUE_TYPES) else float(out)

    return (at(x + h) - at(x - h)) / (2 * h)


def zero_grad(params: Iterable[Value | reference.Value]) -> None:
    """Set ``grad = 0.0`` on each Value (either engine) in ``params`` (a non-Value → TypeError)."""
    for p in params:
        if not isinstance(p, VALUE_TYPES):
            raise TypeError(f"params must hold Values, got {type(p).__name__}")
        p.grad = 0.0
