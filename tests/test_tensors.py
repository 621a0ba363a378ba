"""Tests for g2c.tensors (module 02): TinyArray and broadcasting against NumPy, matmul three
ways against ``A @ B``, linear against torch.nn.functional.linear, softmax against torch."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from g2c.tensors import (
    TinyArray,
    broadcast_shapes,
    classifier_forward,
    linear,
    log_softmax,
    matmul_flops,
    matmul_loops,
    matmul_numpy,
    matmul_torch,
    softmax,
)

REPO = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=60, deadline=None)


def _load_script(path: Path, name: str):
    """Import a script (bench/ or examples/) as a module so its main(argv) can be called."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _tiny(arr: np.ndarray) -> TinyArray:
    return TinyArray(arr.ravel().tolist(), arr.shape)


def _assert_same(t: TinyArray, expected: np.ndarray) -> None:
    """Exact match of shape and elements (same IEEE operations as NumPy float64)."""
    assert t.shape == expected.shape
    assert len(t.data) == expected.size
    np.testing.assert_array_equal(np.asarray(t.data, dtype=expected.dtype), expected.ravel())


# ============================================================================================
# TinyArray: construction and metadata
# ============================================================================================
def test_tinyarray_stores_flat_data_shape_and_row_major_strides():
    a = TinyArray([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3))
    assert a.shape == (2, 3) and isinstance(a.shape, tuple)
    assert a.data == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and isinstance(a.data, list)
    assert a.strides == (3, 1)
    assert a.ndim == 2 and a.size == 6 and len(a) == 2
    assert a[1, 0] == 4.0 and a[0, 2] == 3.0 and a[-1, -1] == 6.0


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 3, 4), (1, 4, 1, 2), (3, 0, 2)])
def test_tinyarray_strides_and_tolist_match_numpy(shape):
    arr = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    a = _tiny(arr)
    assert a.strides == tuple(s // arr.itemsize for s in arr.strides)
    assert a.tolist() == arr.tolist()
    np.testing.assert_array_equal(a.numpy(), arr)
    if arr.size:
        idx = tuple(d - 1 for d in shape)
        assert a[idx] == arr[idx]


def test_tinyarray_copies_input_list():
    src = [1.0, 2.0]
    a = TinyArray(src, (2,))
    src[0] = 99.0
    assert a.data == [1.0, 2.0]


def test_tinyarray_length_mismatch_raises_valueerror_with_both_numbers():
    with pytest.raises(ValueError, match=r"3 elements.*\(2, 2\).*4"):
        TinyArray([1.0, 2.0, 3.0], (2, 2))
    with pytest.raises(ValueError, match="elements"):
        TinyArray([], (1,))
    with pytest.raises(ValueError, match="elements"):
        TinyArray([1.0, 2.0], ())  # a 0-d array holds exactly one element


def test_tinyarray_bad_shape_and_data_types():
    with pytest.raises(ValueError, match="non-negative"):
        TinyArray([], (2, -1))
    with pytest.raises(TypeError, match="shape"):
        TinyArray([1.0, 2.0], (2.0,))
    with pytest.raises(TypeError, match="shape"):
        TinyArray([1.0], "1")
    with pytest.raises(TypeError, match="real numbers"):
        TinyArray(["a", "b"], (2,))
    with pytest.raises(TypeError, match="flat_data"):
        TinyArray(3.0, ())
    assert TinyArray([1, 2, 3], 3).shape == (3,)  # an int is a 1-D shape


def test_tinyarray_zero_d_and_empty():
    s = TinyArray([7.0], ())
    assert s.shape == () and s.size == 1 and s.tolist() == 7.0 and s[()] == 7.0
    with pytest.raises(TypeError):
        len(s)
    e = TinyArray([], (3, 0))
    assert e.size == 0 and e.tolist() == [[], [], []]


def test_tinyarray_from_nested_full_reshape():
    a = TinyArray.from_nested([[1, 2, 3], [4, 5, 6]])
    assert a.shape == (2, 3) and a.data == [1, 2, 3, 4, 5, 6]
    assert TinyArray.from_nested(3.5).shape == ()
    with pytest.raises(ValueError, match="ragged"):
        TinyArray.from_nested([[1, 2], [3]])
    with pytest.raises(ValueError, match="ragged"):
        TinyArray.from_nested([[1, 2], 3])
    assert TinyArray.full((2, 2), 0.5).data == [0.5] * 4
    r = a.reshape(3, -1)
    assert r.shape == (3, 2) and r.data == a.data
    assert a.reshape((6,)).shape == (6,)
    with pytest.raises(ValueError, match="reshape"):
        a.reshape(4, 2)


def test_tinyarray_index_errors():
    a = TinyArray([1.0, 2.0, 3.0, 4.0], (2, 2))
    with pytest.raises(IndexError):
        a[2, 0]
    with pytest.raises(IndexError):
        a[0]  # a full multi-index is required


# ============================================================================================
# broadcast_shapes
# ============================================================================================
@pytest.mark.parametrize(
    "s1, s2, expected",
    [
        ((8, 1, 6, 1), (7, 1, 5), (8, 7, 6, 5)),  # the NumPy docs example
        ((5, 4), (1,), (5, 4)),
        ((5, 4), (4,), (5, 4)),
        ((15, 3, 5), (15, 1, 5), (15, 3, 5)),
        ((), (3, 2), (3, 2)),
        ((), (), ()),
        ((0,), (1,), (0,)),
        ([2, 1], [1, 3], (2, 3)),
    ],
)
def test_broadcast_shapes_known_cases(s1, s2, expected):
    assert broadcast_shapes(s1, s2) == expected
    assert broadcast_shapes(s2, s1) == expected
    assert np.broadcast_shapes(tuple(s1), tuple(s2)) == expected


@pytest.mark.parametrize("s1, s2", [((3,), (4,)), ((2, 1), (8, 4, 3)), ((0,), (2,))])
def test_broadcast_shapes_incompatible_raises_naming_shapes(s1, s2):
    with pytest.raises(ValueError, match="cannot be broadcast") as info:
        broadcast_shapes(s1, s2)
    assert str(s1) in str(info.value) and str(s2) in str(info.value)


def test_broadcast_shapes_bad_types():
    with pytest.raises(TypeError, match="s1"):
        broadcast_shapes(None, (2,))
    with pytest.raises(TypeError, match="s2"):
        broadcast_shapes((2,), (2.5,))
    with pytest.raises(ValueError, match="non-negative"):
        broadcast_shapes((-2,), (2,))


@FAST
@given(
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
)
def test_broadcast_shapes_agrees_with_numpy_on_random_pairs(s1, s2):
    try:
        expected = np.broadcast_shapes(s1, s2)
    except ValueError:
        with pytest.raises(ValueError):
            broadcast_shapes(s1, s2)
        return
    assert broadcast_shapes(s1, s2) == expected


# ============================================================================================
# TinyArray arithmetic with broadcasting, against NumPy
# ============================================================================================
_ELEMENTS = st.floats(-1e6, 1e6, allow_nan=False, width=64)


@FAST
@given(
    data=st.data(), shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4)
)
def test_add_sub_mul_match_numpy_on_broadcastable_shapes(data, shapes):
    s1, s2 = shapes.input_shapes
    x = data.draw(hnp.arrays(np.float64, s1, elements=_ELEMENTS))
    y = data.draw(hnp.arrays(np.float64, s2, elements=_ELEMENTS))
    a, b = _tiny(x), _tiny(y)
    _assert_same(a + b, x + y)
    _assert_same(a * b, x * y)
    _assert_same(a - b, x - y)
    _assert_same(b + a, y + x)
    assert (a + b).shape == shapes.result_shape


@FAST
@given(
    x=hnp.arrays(
        np.int64,
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
        elements=st.integers(-99, 99),
    ),
    c=st.one_of(st.integers(-5, 5), st.floats(-3, 3, allow_nan=False)),
)
def test_scalars_on_either_side_match_numpy(x, c):
    a = _tiny(x)
    xf = x.astype(np.float64) if isinstance(c, float) else x
    _assert_same(a + c, xf + c)
    _assert_same(c + a, c + xf)
    _assert_same(a * c, xf * c)
    _assert_same(c * a, c * xf)
    _assert_same(c - a, c - xf)
    _assert_same(-a, -x)


def test_integer_arrays_stay_integer():
    a = TinyArray([1, 2, 3], (3,))
    assert all(type(v) is int for v in (a + a * 2).data)


def test_broadcast_row_plus_column_gives_outer_sum():
    col = TinyArray([0.0, 10.0, 20.0], (3, 1))
    row = TinyArray([1.0, 2.0], (2,))
    out = col + row
    assert out.shape == (3, 2)
    assert out.tolist() == [[1.0, 2.0], [11.0, 12.0], [21.0, 22.0]]


def test_arithmetic_does_not_mutate_operands():
    a = TinyArray([1.0, 2.0], (2, 1))
    b = TinyArray([3.0, 4.0, 5.0], (3,))
    _ = a * b + a
    assert a.data == [1.0, 2.0] and b.data == [3.0, 4.0, 5.0] and a.shape == (2, 1)


def test_incompatible_shapes_raise_valueerror_naming_shapes():
    a = TinyArray([1.0] * 6, (2, 3))
    b = TinyArray([1.0] * 4, (4,))
    for op in (lambda: a + b, lambda: a * b, lambda: b * a):
        with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)|\(4,\) and \(2, 3\)"):
            op()


def test_unsupported_operands_raise_typeerror():
    a = TinyArray([1.0, 2.0], (2,))
    with pytest.raises(TypeError):
        a + "x"
    with pytest.raises(TypeError):
        a * [1.0, 2.0]
    with pytest.raises(TypeError, match="from_nested"):
        a + np.ones(2)
    with pytest.raises(TypeError, match="from_nested"):
        np.ones(2) + a
    with pytest.raises(TypeError, match="from_nested"):
        a * torch.ones(2)


def test_equality_is_whole_array():
    a = TinyArray([1.0, 2.0], (2,))
    assert a == TinyArray([1.0, 2.0], (2,))
    assert a != TinyArray([1.0, 2.0], (1, 2))
    assert a != TinyArray([1.0, 3.0], (2,))


# ============================================================================================
# matmul three ways
# ============================================================================================
_dims = st.integers(1, 7)


@FAST
@given(n=_dims, k=_dims, m=_dims, seed=st.integers(0, 2**31 - 1))
def test_matmul_loops_matches_numpy_float64(n, k, m, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, k))
    B = rng.standard_normal((k, m))
    C = matmul_loops(A.tolist(), B.tolist())
    assert isinstance(C, list) and len(C) == n and all(len(row) == m for row in C)
    np.testing.assert_allclose(np.asarray(C), A @ B, rtol=1e-6, atol=1e-12)


def test_matmul_loops_small_exact_example_and_ints():
    A = [[1, 2, 3], [4, 5, 6]]  # (2, 3)
    B = [[7, 8], [9, 10], [11, 12]]  # (3, 2)
    assert matmul_loops(A, B) == [[58, 64], [139, 154]]
    assert matmul_loops(((1.5,),), ((2.0, -1.0),)) == [[3.0, -1.5]]  # tuples work too


def test_matmul_loops_errors():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        matmul_loops([[1.0] * 3] * 2, [[1.0] * 5] * 4)
    with pytest.raises(ValueError, match="ragged"):
        matmul_loops([[1.0, 2.0], [3.0]], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="1-D"):
        matmul_loops([1.0, 2.0], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="empty"):
        matmul_loops([], [[1.0]])
    with pytest.raises(TypeError, match="matmul_numpy"):
        matmul_loops(np.ones((2, 2)), [[1.0], [2.0]])
    with pytest.raises(TypeError, match="number"):
        matmul_loops([["a"]], [[1.0]])


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((3, 4), (4, 5)),
        ((4,), (4, 2)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 3, 4), (4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
    ],
)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-5)])
def test_matmul_numpy_and_torch_match_at_operator(sa, sb, dtype, rtol):
    rng = np.random.default_rng(0)
    A = rng.standard_normal(sa).astype(dtype)
    B = rng.standard_normal(sb).astype(dtype)
    expected = A @ B
    got_np = matmul_numpy(A, B)
    assert got_np.shape == expected.shape and got_np.dtype == dtype
    np.testing.assert_allclose(got_np, expected, rtol=rtol, atol=rtol)
    At, Bt = torch.from_numpy(A), torch.from_numpy(B)
    got_t = matmul_torch(At, Bt)
    assert tuple(got_t.shape) == expected.shape and got_t.dtype == At.dtype
    torch.testing.assert_close(got_t, At @ Bt, rtol=rtol, atol=rtol)
    # and against the float64 product, at the tolerance of the input precision
    np.testing.assert_allclose(
        got_t.numpy(), A.astype(np.float64) @ B.astype(np.float64), rtol=rtol, atol=rtol
    )


def test_three_ways_agree_on_one_matrix():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((17, 23))
    B = rng.standard_normal((23, 9))
    ref = A @ B
    np.testing.assert_allclose(
        np.asarray(matmul_loops(A.tolist(), B.tolist())), ref, rtol=1e-6, atol=1e-12
    )
    np.testing.assert_allclose(matmul_numpy(A, B), ref, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(
        matmul_torch(torch.from_numpy(A), torch.from_numpy(B)).numpy(), ref, rtol=1e-6, atol=1e-12
    )
    # float32: torch and NumPy against the float64 reference within 1e-5
    A32, B32 = A.astype(np.float32), B.astype(np.float32)
    np.testing.assert_allclose(matmul_numpy(A32, B32), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        matmul_torch(torch.from_numpy(A32), torch.from_numpy(B32)).numpy(),
        ref,
        rtol=1e-5,
        atol=1e-5,
    )


def test_matmul_numpy_accepts_nested_lists():
    out = matmul_numpy([[1, 2], [3, 4]], [[1.0], [1.0]])
    assert isinstance(out, np.ndarray) and out.tolist() == [[3.0], [7.0]]


@pytest.mark.parametrize("fn, wrap", [(matmul_numpy, np.ones), (matmul_torch, torch.ones)])
def test_matmul_shape_errors_name_both_shapes(fn, wrap):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        fn(wrap((2, 3)), wrap((4, 5)))
    with pytest.raises(ValueError, match="batch"):
        fn(wrap((2, 3, 4)), wrap((3, 4, 5)))
    with pytest.raises(ValueError, match="1-D"):
        fn(wrap(()), wrap((3,)))


def test_matmul_numpy_rejects_non_numeric():
    with pytest.raises(TypeError, match="numeric"):
        matmul_numpy([["a"]], [["b"]])


def test_matmul_torch_errors():
    with pytest.raises(TypeError, match="torch.as_tensor"):
        matmul_torch(np.ones((2, 2)), torch.ones(2, 2))
    with pytest.raises(ValueError, match="dtype"):
        matmul_torch(torch.ones(2, 2), torch.ones(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="meta"):
        matmul_torch(torch.ones(2, 2), torch.ones(2, 2, device="meta"))
    with pytest.raises(TypeError, match="bool"):
        matmul_torch(torch.ones(2, 2, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool))


def test_matmul_torch_keeps_device():
    # the meta device stands in for an accelerator: no data, but a real, different device
    out = matmul_torch(torch.empty(3, 4, device="meta"), torch.empty(4, 5, device="meta"))
    assert out.device.type == "meta" and tuple(out.shape) == (3, 5)
    assert matmul_torch(torch.ones(2, 2), torch.ones(2, 2)).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_matmul_torch_on_cuda_matches_cpu():
    A, B = torch.randn(64, 32), torch.randn(32, 16)
    out = matmul_torch(A.cuda(), B.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), A @ B, rtol=1e-5, atol=1e-5)


def test_matmul_torch_is_differentiable():
    A = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    B = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(matmul_torch, (A, B))


def test_matmul_flops():
    assert matmul_flops(2, 3, 4) == 48
    assert matmul_flops(4096, 4096, 4096) == 2 * 4096**3


# ============================================================================================
# linear
# ============================================================================================
@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch_functional_linear(x_shape, with_bias):
    x = torch.randn(*x_shape, dtype=torch.float64)
    W = torch.randn(5, 3, dtype=torch.float64)  # (in, out)
    b = torch.randn(3, dtype=torch.float64) if with_bias else None
    y = linear(x, W, b)
    assert tuple(y.shape) == (*x_shape[:-1], 3)
    torch.testing.assert_close(y, F.linear(x, W.T, b), rtol=1e-12, atol=1e-12)


def test_linear_float32_and_gradients():
    x = torch.randn(4, 5)
    W = torch.randn(5, 3)
    b = torch.randn(3)
    torch.testing.assert_close(linear(x, W, b), x @ W + b, rtol=1e-6, atol=1e-6)
    args = [
        torch.randn(4, 5, dtype=torch.float64, requires_grad=True),
        torch.randn(5, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(3, dtype=torch.float64, requires_grad=True),
    ]
    assert torch.autograd.gradcheck(linear, args)


def test_linear_errors():
    x, W, b = torch.randn(4, 5), torch.randn(5, 3), torch.randn(3)
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(6, 3\)"):
        linear(x, torch.randn(6, 3), b)
    with pytest.raises(ValueError, match="2-D"):
        linear(x, torch.randn(5), b)
    with pytest.raises(ValueError, match=r"b has shape \(5,\)"):
        linear(x, W, torch.randn(5))
    with pytest.raises(ValueError, match="float64"):
        linear(x, W.double(), b)
    with pytest.raises(ValueError, match="meta"):
        linear(x, W, torch.empty(3, device="meta"))
    with pytest.raises(TypeError, match="torch.as_tensor"):
        linear(x.numpy(), W, b)


# ============================================================================================
# softmax / log_softmax
# ============================================================================================
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_softmax_matches_torch_on_every_dim(shape, dtype, tol):
    x = torch.randn(*shape, dtype=dtype) * 5
    for dim in range(-len(shape), len(shape)):
        torch.testing.assert_close(softmax(x, dim), torch.softmax(x, dim), rtol=tol, atol=tol)
        torch.testing.assert_close(
            log_softmax(x, dim), torch.log_softmax(x, dim), rtol=tol, atol=tol
        )
        torch.testing.assert_close(
            softmax(x, dim).sum(dim),
            torch.ones(()).to(dtype).expand_as(x.sum(dim)),
            rtol=tol,
            atol=tol,
        )


def test_softmax_default_dim_is_last():
    x = torch.randn(3, 4)
    torch.testing.assert_close(softmax(x), torch.softmax(x, -1))


def test_softmax_is_shift_invariant():
    x = torch.randn(4, 6, dtype=torch.float64)
    for c in (-1e3, 3.0, 1e3):
        torch.testing.assert_close(softmax(x + c, 1), softmax(x, 1), rtol=1e-9, atol=1e-12)


def test_softmax_does_not_overflow_at_1e4():
    x = torch.tensor([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4 + 1.0, -1e4]])
    naive = torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)
    assert torch.isnan(naive).any()  # the literal formula fails here ...
    p = softmax(x, -1)  # ... the shifted one does not
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p, torch.softmax(x, -1))
    torch.testing.assert_close(p[0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(p[1], torch.full((3,), 1 / 3))
    lp = log_softmax(torch.tensor([0.0, -1e4]))
    torch.testing.assert_close(lp, torch.tensor([0.0, -1e4]))  # finite, unlike softmax().log()
    assert torch.isinf(softmax(torch.tensor([0.0, -1e4])).log()).any()


def test_softmax_masked_entries_get_zero_and_full_mask_gives_nan_like_torch():
    x = torch.tensor([[1.0, float("-inf"), 2.0], [float("-inf")] * 3])
    p = softmax(x, -1)
    assert p[0, 1] == 0.0
    torch.testing.assert_close(p[0], torch.softmax(x[0], -1))
    assert torch.isnan(p[1]).all() and torch.isnan(torch.softmax(x[1], -1)).all()


def test_softmax_gradients_match_autograd_reference():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: softmax(t, 1), (x,))
    assert torch.autograd.gradcheck(lambda t: log_softmax(t, 0), (x,))
    g = torch.randn(3, 5, dtype=torch.float64)
    (ours,) = torch.autograd.grad(softmax(x, 1), x, g)
    (ref,) = torch.autograd.grad(torch.softmax(x, 1), x, g)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_softmax_zero_d_like_torch():
    x = torch.tensor(3.0)
    torch.testing.assert_close(softmax(x, 0), torch.softmax(x, 0))


def test_softmax_errors():
    with pytest.raises(ValueError, match="dim=2"):
        softmax(torch.randn(3, 4), 2)
    with pytest.raises(ValueError, match="dim=-3"):
        log_softmax(torch.randn(3, 4), -3)
    with pytest.raises(TypeError, match="floating"):
        softmax(torch.tensor([1, 2, 3]), 0)
    with pytest.raises(TypeError, match="dim"):
        softmax(torch.randn(3), 0.5)
    with pytest.raises(TypeError, match="torch.as_tensor"):
        softmax(np.ones(3), 0)


# ============================================================================================
# the benchmark script and the example run (smoke: correctness of their output, no timing)
# ============================================================================================
def test_bench_matmul_quick_writes_json_and_plot(tmp_path):
    bench = _load_script(REPO / "bench" / "matmul.py", "g2c_bench_matmul")
    out_json, out_png = tmp_path / "mm.json", tmp_path / "mm.png"
    threads_before = torch.get_num_threads()
    rc = bench.main(
        [
            "--quick",
            "--sizes",
            "16",
            "32",
            "--min-time",
            "0.01",
            "--loops-budget",
            "0.0",
            "--peak-size",
            "64",
            "--peak-time",
            "0.01",
            "--out-json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert rc == 0
    assert torch.get_num_threads() == threads_before  # the bench restores the thread count
    res = json.loads(out_json.read_text())
    assert res["threads"] == 1 and res["backends"][:3] == ["loops", "numpy", "torch_cpu"]
    assert [r["n"] for r in res["rows"]] == [16, 32]
    r16, r32 = res["rows"]
    assert r16["loops"]["status"] == "ok" and r16["loops"]["max_rel_err"] < 1e-5
    assert r32["loops"]["status"] == "skipped" and "budget" in r32["loops"]["reason"]
    for r in res["rows"]:
        for b in ("numpy", "torch_cpu"):
            assert r[b]["gflops"] > 0 and r[b]["best_s"] > 0
        assert r["torch_cpu"]["max_rel_err"] < 1e-5
    assert res["measured_peak_cpu"]["gflops"] >= res["measured_peak_cpu"]["probe_gflops"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_example_smoke_runs():
    example = _load_script(REPO / "examples" / "02_tensors.py", "g2c_example_02")
    assert example.main(["--smoke"]) == 0


# ============================================================================================
# course compatibility (API.md Addendum 02): to_nested, classifier_forward
# ============================================================================================
def test_to_nested_gives_floats_in_the_arrays_shape():
    a = TinyArray([1, 2, 3, 4, 5, 6], (2, 3))
    nested = a.to_nested()
    assert nested == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert all(type(x) is float for row in nested for x in row)
    assert a.data == [1, 2, 3, 4, 5, 6]  # the array itself is unchanged (ints stay ints)
    arr = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    assert _tiny(arr).to_nested() == arr.astype(float).tolist()
    assert TinyArray([7], ()).to_nested() == 7.0 and type(TinyArray([7], ()).to_nested()) is float
    assert TinyArray([], (2, 0)).to_nested() == [[], []]


def test_classifier_forward_is_linear_then_softmax_over_classes():
    g = torch.Generator().manual_seed(0)
    x, W, b = torch.randn(5, 4, generator=g), torch.randn(4, 3, generator=g), torch.randn(3)
    logits, probs = classifier_forward(x, W, b)
    torch.testing.assert_close(logits, F.linear(x, W.T, b))
    torch.testing.assert_close(probs, torch.softmax(F.linear(x, W.T, b), dim=-1))
    assert probs.shape == (5, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    big, p_big = classifier_forward(
        torch.full((1, 1), 1e4), torch.ones(1, 2), torch.tensor([0.0, 1.0])
    )
    assert torch.isfinite(p_big).all()  # stable at logits 1e4
    x3 = torch.randn(2, 5, 4, generator=g)  # leading axes pass through
    assert classifier_forward(x3, W)[1].shape == (2, 5, 3)
    with pytest.raises(ValueError, match="W's first axis"):
        classifier_forward(x, torch.randn(3, 3))
    with pytest.raises(TypeError, match="floating point"):
        classifier_forward(torch.ones(2, 4, dtype=torch.long), W.long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        classifier_forward([[1.0]], W)
