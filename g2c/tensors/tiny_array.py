"""TinyArray: an n-dimensional array as a flat list plus a shape, with NumPy broadcasting.

The idea: every array library (NumPy, PyTorch) stores an array as one flat block of numbers
plus *metadata* that says how to read it: the ``shape`` (size of each axis) and the
``strides`` (how many flat elements to skip to move one step along each axis). For a
row-major (C-order) array of shape ``(d0, d1, ..., dk)`` the stride of axis ``i`` is the
product of the sizes after it, and element ``(i0, ..., ik)`` lives at flat offset
``sum(i_a * stride_a)``.

Broadcasting (NumPy's rules, which PyTorch follows) lets ``+`` and ``*`` combine arrays of
different shapes without copying: align the shapes on the right, pad the shorter one with 1s
on the left, and on each axis the sizes must be equal or one of them must be 1. An axis of
size 1 is "stretched" by giving it stride 0, so the same element is read again and again.

Source: NumPy broadcasting rules,
https://numpy.org/doc/stable/user/basics.broadcasting.html ; strides as in
https://numpy.org/doc/stable/reference/arrays.ndarray.html#internal-memory-layout-of-an-ndarray

Shapes: ``TinyArray(flat_data, shape)`` with ``len(flat_data) == prod(shape)``;
``a + b`` and ``a * b`` have shape ``broadcast_shapes(a.shape, b.shape)``.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["TinyArray", "broadcast_shapes"]


def _check_shape(shape: Any, name: str) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of non-negative ints, or raise naming ``name``."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
        raise TypeError(f"{name} must be a tuple of ints such as (2, 3), got {shape!r}")
    out = tuple(shape)
    for d in out:
        if not isinstance(d, numbers.Integral) or isinstance(d, bool):
            raise TypeError(f"{name} must contain only ints, got {d!r} in {out!r}")
        if d < 0:
            raise ValueError(f"{name} must contain non-negative sizes, got {out!r}")
    return tuple(int(d) for d in out)


def broadcast_shapes(s1: Sequence[int], s2: Sequence[int]) -> tuple[int, ...]:
    """Shape of the result of combining arrays of shapes ``s1`` and ``s2`` (NumPy rules).

    Align the shapes on the right; the missing leading axes of the shorter shape count as 1.
    On each axis the two sizes must be equal, or one of them must be 1 (it is stretched to
    the other; a 1 against a 0 gives 0, as in NumPy).

    Args:
        s1, s2: shapes, tuples (or lists) of non-negative ints. ``()`` is a scalar.

    Returns:
        The broadcast shape as a tuple of ints, e.g. ``(8, 1, 6, 1)`` and ``(7, 1, 5)``
        give ``(8, 7, 6, 5)``.

    Raises:
        TypeError: a shape that is not a sequence of ints.
        ValueError: negative sizes, or shapes that cannot be broadcast together; the message
            names both shapes and the first clashing axis.

    Source: https://numpy.org/doc/stable/user/basics.broadcasting.html
    (same result as ``numpy.broadcast_shapes``).
    """
    s1 = _check_shape(s1, "s1")
    s2 = _check_shape(s2, "s2")
    ndim = max(len(s1), len(s2))
    p1 = (1,) * (ndim - len(s1)) + s1  # left-pad with 1s so both have ndim axes
    p2 = (1,) * (ndim - len(s2)) + s2
    out = []
    for axis, (a, b) in enumerate(zip(p1, p2)):
        if a == b or b == 1:
            out.append(a)
        elif a == 1:
            out.append(b)
        else:
            raise ValueError(
                f"shapes {s1} and {s2} cannot be broadcast: on axis {axis - ndim} "
                f"(counting from the right) the sizes are {a} and {b}; sizes must be equal "
                f"or one of them must be 1 (reshape one operand, e.g. add a size-1 axis)"
            )
    return tuple(out)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major (C-order) strides in elements: the stride of axis i is prod(shape[i+1:]).

    Size-0 axes count as 1 in the product, as in NumPy (no element is ever read anyway).
    """
    strides = []
    step = 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


def _broadcast_strides(
    shape: tuple[int, ...], strides: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[int, ...]:
    """Strides that read an array of ``shape`` as if it had ``out_shape``.

    Axes added on the left and axes of size 1 that are stretched get stride 0, so moving
    along them re-reads the same element: broadcasting without copying.
    """
    pad = len(out_shape) - len(shape)
    out = [0] * pad  # new leading axes: stride 0
    for d, st, od in zip(shape, strides, out_shape[pad:]):
        out.append(0 if (d == 1 and od != 1) else st)
    return tuple(out)


class TinyArray:
    """An n-dimensional array stored as a flat Python list plus a shape (row-major order).

    Args:
        flat_data: the elements in row-major order (last axis fastest), any iterable of real
            numbers (ints, floats, NumPy scalars). Stored as a list in ``.data``.
        shape: tuple of non-negative ints; ``()`` is a 0-d (scalar) array with one element.
            A single int is accepted as a 1-D shape.

    Attributes:
        data: the flat list of elements (length ``prod(shape)``).
        shape: tuple of ints.
        strides: row-major strides in *elements* (not bytes, unlike NumPy's ``.strides``).

    Operators ``+``, ``-`` and ``*`` work elementwise with another TinyArray (NumPy
    broadcasting, any rank) or a plain number on either side; the result is a new
    TinyArray of shape ``broadcast_shapes(a.shape, b.shape)``. Element values follow Python
    arithmetic (int + int stays int, as with NumPy integer arrays).

    Raises:
        ValueError: ``len(flat_data) != prod(shape)`` (the message gives both numbers), or
            negative sizes in ``shape``; ``+``/``*`` on shapes that cannot broadcast.
        TypeError: a ``shape`` that is not a sequence of ints, or non-numeric elements.

    Example:
        >>> a = TinyArray([1, 2, 3, 4, 5, 6], (2, 3))
        >>> (a + TinyArray([10, 20, 30], (3,))).data
        [11, 22, 33, 14, 25, 36]
    """

    __array_ufunc__ = None  # `ndarray + TinyArray` raises TypeError instead of looping

    def __init__(self, flat_data: Iterable[float], shape: Sequence[int]) -> None:
        shape = _check_shape(shape, "shape")
        if isinstance(flat_data, (str, bytes)) or not isinstance(flat_data, Iterable):
            raise TypeError(
                f"flat_data must be a flat list of numbers, got {type(flat_data).__name__}"
            )
        data = list(flat_data)
        for x in data:
            if not isinstance(x, numbers.Real):
                raise TypeError(
                    f"flat_data must contain only real numbers, got {x!r} "
                    f"({type(x).__name__}); pass a flat list, e.g. [1.0, 2.0, 3.0]"
                )
        size = math.prod(shape)
        if len(data) != size:
            raise ValueError(
                f"flat_data has {len(data)} elements but shape {shape} needs {size} "
                f"(the product of the sizes); fix the shape or the data"
            )
        self.data: list = data
        self.shape: tuple[int, ...] = shape
        self.strides: tuple[int, ...] = _contiguous_strides(shape)

    # ---- construction helpers -------------------------------------------------------------
    @classmethod
    def from_nested(cls, nested: Any) -> TinyArray:
        """Build a TinyArray from a nested list such as ``[[1, 2, 3], [4, 5, 6]]`` (shape (2, 3)).

        A plain number gives a 0-d array. Ragged lists (rows of different lengths or depths)
        raise ValueError naming the first inconsistent position.
        """
        shape = _nested_shape(nested, ())
        flat: list = []
        _flatten(nested, flat)
        return cls(flat, shape)

    @classmethod
    def full(cls, shape: Sequence[int], value: float) -> TinyArray:
        """A TinyArray of ``shape`` whose every element is ``value``."""
        shape = _check_shape(shape, "shape")
        return cls([value] * math.prod(shape), shape)

    # ---- metadata ---------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of axes, ``len(shape)``."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements, ``prod(shape)`` (1 for a 0-d array)."""
        return len(self.data)

    def reshape(self, *shape: Any) -> TinyArray:
        """The same flat data read with a new shape of the same size (no copy of the order).

        Accepts ``reshape(2, 3)`` or ``reshape((2, 3))``; one ``-1`` is inferred. A size
        mismatch raises ValueError naming both shapes.
        """
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = tuple(shape[0])
        if sum(1 for d in shape if d == -1) > 1:
            raise ValueError(f"reshape: at most one -1 is allowed, got {shape}")
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            if known == 0 or self.size % known != 0:
                raise ValueError(f"reshape: cannot infer -1 in {shape} for {self.size} elements")
            shape = tuple(self.size // known if d == -1 else d for d in shape)
        shape = _check_shape(shape, "shape")
        if math.prod(shape) != self.size:
            raise ValueError(
                f"reshape: cannot view {self.size} elements of shape {self.shape} as {shape}"
            )
        return TinyArray(self.data, shape)

    # ---- element access ---------------------------------------------------------------------
    def _offset(self, index: tuple[int, ...]) -> int:
        """Flat offset of a full multi-index: sum(i_a * stride_a), negatives counted from the end."""
        if len(index) != self.ndim:
            raise IndexError(f"index {index} has {len(index)} entries, array has {self.ndim} axes")
        offset = 0
        for axis, (i, d, st) in enumerate(zip(index, self.shape, self.strides)):
            if not isinstance(i, numbers.Integral) or isinstance(i, bool):
                raise TypeError(f"indices must be ints, got {i!r} on axis {axis}")
            if not -d <= i < d:
                raise IndexError(f"index {i} is out of range for axis {axis} of size {d}")
            offset += (i % d) * st
        return offset

    def __getitem__(self, index: int | tuple[int, ...]) -> Any:
        """The element at a full multi-index ``a[i, j, ...]`` (ints only, no slicing)."""
        if not isinstance(index, tuple):
            index = (index,)
        return self.data[self._offset(index)]

    def tolist(self) -> Any:
        """The elements as nested Python lists (a plain number for a 0-d array)."""
        if self.ndim == 0:
            return self.data[0]

        def build(axis: int, offset: int) -> list:
            if axis == self.ndim - 1:
                return self.data[offset : offset + self.shape[axis]]
            st = self.strides[axis]
            return [build(axis + 1, offset + i * st) for i in range(self.shape[axis])]

        return build(0, 0)

    def to_nested(self) -> Any:
        """The elements as nested lists of floats in the array's shape (a float for a 0-d array).

        Like :meth:`tolist` but every element converted with ``float`` (ints become 1.0, ...),
        e.g. ``TinyArray([1, 2, 3, 4], (2, 2)).to_nested() == [[1.0, 2.0], [3.0, 4.0]]``;
        an axis of size 0 gives an empty list there.
        """
        return TinyArray([float(x) for x in self.data], self.shape).tolist()

    def numpy(self) -> Any:
        """A NumPy array with the same shape and elements (for comparisons and plotting)."""
        import numpy as np

        return np.asarray(self.data).reshape(self.shape)

    # ---- elementwise arithmetic with broadcasting -------------------------------------------
    def _binary(self, other: Any, op: Callable[[Any, Any], Any], reverse: bool = False) -> Any:
        """Apply ``op`` elementwise to ``self`` and ``other`` with broadcasting."""
        if isinstance(other, numbers.Real):  # a plain number acts as a 0-d array
            other = TinyArray([other], ())
        elif not isinstance(other, TinyArray):
            if hasattr(other, "shape") and hasattr(other, "tolist"):  # ndarray / tensor
                raise TypeError(
                    f"cannot combine TinyArray with {type(other).__name__}; convert it with "
                    f"TinyArray.from_nested(x.tolist())"
                )
            return NotImplemented  # Python then raises TypeError naming both types
        a, b = (other, self) if reverse else (self, other)
        out_shape = broadcast_shapes(a.shape, b.shape)
        sa = _broadcast_strides(a.shape, a.strides, out_shape)  # stride 0 on stretched axes
        sb = _broadcast_strides(b.shape, b.strides, out_shape)
        out = []
        # Walk every output multi-index in row-major order; read each operand through its
        # broadcast strides.
        for index in itertools.product(*(range(d) for d in out_shape)):
            ia = sum(i * s for i, s in zip(index, sa))
            ib = sum(i * s for i, s in zip(index, sb))
            out.append(op(a.data[ia], b.data[ib]))
        return TinyArray(out, out_shape)

    def __add__(self, other: Any) -> TinyArray:
        """Elementwise ``self + other`` with broadcasting (TinyArray or number)."""
        return self._binary(other, operator.add)

    def __radd__(self, other: Any) -> TinyArray:
        """``number + self``."""
        return self._binary(other, operator.add, reverse=True)

    def __sub__(self, other: Any) -> TinyArray:
        """Elementwise ``self - other`` with broadcasting (TinyArray or number)."""
        return self._binary(other, operator.sub)

    def __rsub__(self, other: Any) -> TinyArray:
        """``number - self``."""
        return self._binary(other, operator.sub, reverse=True)

    def __mul__(self, other: Any) -> TinyArray:
        """Elementwise ``self * other`` with broadcasting (TinyArray or number)."""
        return self._binary(other, operator.mul)

    def __rmul__(self, other: Any) -> TinyArray:
        """``number * self``."""
        return self._binary(other, operator.mul, reverse=True)

    def __neg__(self) -> TinyArray:
        """Elementwise negation."""
        return TinyArray([-x for x in self.data], self.shape)

    def __eq__(self, other: object) -> bool:
        """True when ``other`` is a TinyArray with the same shape and elements (not elementwise)."""
        if not isinstance(other, TinyArray):
            return NotImplemented
        return self.shape == other.shape and self.data == other.data

    __hash__ = None  # mutable container: not hashable

    def __len__(self) -> int:
        """Size of the first axis (TypeError for a 0-d array, like NumPy)."""
        if self.ndim == 0:
            raise TypeError("len() of a 0-d TinyArray")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TinyArray({self.tolist()!r}, shape={self.shape})"


def _nested_shape(nested: Any, where: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of a rectangular nested list; ValueError at the first ragged position."""
    if isinstance(nested, numbers.Real):
        return ()
    if isinstance(nested, (str, bytes)) or not isinstance(nested, Sequence):
        raise TypeError(f"from_nested: expected a number or a list at {where}, got {nested!r}")
    if len(nested) == 0:
        return (0,)
    inner = _nested_shape(nested[0], (*where, 0))
    for i, item in enumerate(nested[1:], start=1):
        if _nested_shape(item, (*where, i)) != inner:
            raise ValueError(
                f"from_nested: ragged list, element {(*where, i)} does not have shape {inner} "
                f"like element {(*where, 0)}"
            )
    return (len(nested), *inner)


def _flatten(nested: Any, out: list) -> None:
    """Append the numbers of a nested list to ``out`` in row-major order."""
    if isinstance(nested, numbers.Real):
        out.append(nested)
        return
    for item in nested:
        _flatten(item, out)
