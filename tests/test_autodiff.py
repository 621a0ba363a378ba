"""Tests for g2c.autodiff: every op's gradient against torch.autograd, backward semantics,
deep graphs, tracing, scalar neurons/MLPs and the XOR / moons demos. The behaviour tests run on
both engines (the fast ``Value`` and the closure-based ``ReferenceValue``); the equivalence tests
check the two give the same values and gradients on random graphs and on the moons MLP."""

from __future__ import annotations

import gc
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from g2c.autodiff import (
    ENGINES,
    ReferenceValue,
    ScalarLayer,
    ScalarMLP,
    ScalarNeuron,
    Value,
    draw_dot,
    draw_text,
    max_margin_loss,
    numerical_grad,
    single_neuron_forward,
    topological_order,
    trace,
    train_moons_step,
    train_xor_step,
    xor_loss,
    zero_grad,
)

REPO = Path(__file__).resolve().parents[1]
finite = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)
positive = st.floats(min_value=0.1, max_value=5.0)
away_from_zero = st.one_of(
    st.floats(min_value=-3.0, max_value=-0.2), st.floats(min_value=0.2, max_value=3.0)
)
FAST = settings(max_examples=40, deadline=None)
# every API.md 01 behaviour holds for both engines
BOTH = pytest.mark.parametrize("V", [Value, ReferenceValue], ids=["fast", "reference"])


def _t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def _check_binary(fn, a: float, b: float, V=Value) -> None:
    """fn(x, y) on Values (engine V) and on float64 tensors: same output and same gradients."""
    va, vb = V(a), V(b)
    out = fn(va, vb)
    out.backward()
    ta, tb = _t(a), _t(b)
    tout = fn(ta, tb)
    tout.backward()
    assert out.data == pytest.approx(tout.item(), rel=1e-12, abs=1e-12)
    assert va.grad == pytest.approx(ta.grad.item(), rel=1e-10, abs=1e-10)
    assert vb.grad == pytest.approx(tb.grad.item(), rel=1e-10, abs=1e-10)


def _check_unary(name: str, x: float, V=Value) -> None:
    v = V(x)
    out = getattr(v, name)()
    out.backward()
    t = _t(x)
    tout = getattr(t, name)()
    tout.backward()
    assert out.data == pytest.approx(tout.item(), rel=1e-12, abs=1e-12)
    assert v.grad == pytest.approx(t.grad.item(), rel=1e-10, abs=1e-12)


# ---- each op against torch.autograd (property tests) -------------------------------------------
@BOTH
@FAST
@given(finite, finite)
def test_add_sub_mul_match_torch(V, a, b):
    _check_binary(lambda x, y: x + y, a, b, V)
    _check_binary(lambda x, y: x - y, a, b, V)
    _check_binary(lambda x, y: x * y, a, b, V)


@BOTH
@FAST
@given(finite, away_from_zero)
def test_div_matches_torch(V, a, b):
    _check_binary(lambda x, y: x / y, a, b, V)


@BOTH
@FAST
@given(finite, finite, st.floats(min_value=-2.0, max_value=2.0))
def test_mixed_numbers_both_sides_match_torch(V, a, b, c):
    # numbers on either side: 2 * v, 1 - v, 1 / v, v + c, c - v ...
    _check_binary(lambda x, y: 2 * x + (1 - y) * c - x * c + c + x - c, a, b, V)
    _check_binary(lambda x, y: -x * (y + 4) - (c - x), a, b, V)


@BOTH
@FAST
@given(away_from_zero)
def test_reflected_division_matches_torch(V, a):
    _check_unary_fn = lambda x: 1 / x + x / 2.5  # noqa: E731
    v = V(a)
    _check_unary_fn(v).backward()
    t = _t(a)
    _check_unary_fn(t).backward()
    assert v.grad == pytest.approx(t.grad.item(), rel=1e-10)


@BOTH
@FAST
@given(away_from_zero, st.sampled_from([2, 3, -1, -2, 0.5, 1.5, -0.5, 0, 1]))
def test_pow_matches_torch(V, a, n):
    if not float(n).is_integer():
        a = abs(a)
    _check_binary(lambda x, y: x**n + y, a, 0.0, V)


@BOTH
@FAST
@given(finite)
def test_exp_tanh_relu_sigmoid_match_torch(V, x):
    for name in ("exp", "tanh", "relu", "sigmoid"):
        _check_unary(name, x, V)


@BOTH
@FAST
@given(positive)
def test_log_matches_torch(V, x):
    _check_unary("log", x, V)


@BOTH
@FAST
@given(st.lists(finite, min_size=3, max_size=3))
def test_composite_expression_matches_torch(V, xs):
    def f(a, b, c):
        h = (a * b + c).tanh() * a - (b * b + 1).log() + (c / 3).exp() * 0.5
        return h * h + h.relu() * 2 + (1 - a).sigmoid() * b

    vs = [V(x) for x in xs]
    f(*vs).backward()
    ts = [_t(x) for x in xs]
    f(*ts).backward()
    for v, t in zip(vs, ts):
        assert v.grad == pytest.approx(t.grad.item(), rel=1e-9, abs=1e-12)


@BOTH
def test_relu_derivative_at_zero_is_zero_like_torch(V):
    _check_unary("relu", 0.0, V)
    v = V(0.0)
    v.relu().backward()
    assert v.grad == 0.0


# ---- backward semantics ------------------------------------------------------------------------
@BOTH
def test_shared_subexpression_accumulates(V):
    a = V(3.0)
    f = a * a + a  # df/da = 2a + 1
    f.backward()
    assert a.grad == 7.0


@BOTH
def test_backward_twice_accumulates_leaves_but_not_interior_nodes(V):
    a, b = V(2.0), V(-3.0)
    h = a * b  # interior
    out = (h + a).tanh()
    out.backward()
    ga, gb, gh = a.grad, b.grad, h.grad
    out.backward()
    assert a.grad == pytest.approx(2 * ga)  # leaves accumulate like torch
    assert b.grad == pytest.approx(2 * gb)
    assert h.grad == pytest.approx(gh)  # interior node holds this call's gradient
    ta, tb = _t(2.0), _t(-3.0)
    tout = (ta * tb + ta).tanh()
    tout.backward(retain_graph=True)
    tout.backward()
    assert a.grad == pytest.approx(ta.grad.item(), rel=1e-12)
    assert b.grad == pytest.approx(tb.grad.item(), rel=1e-12)


@BOTH
def test_backward_from_two_outputs_sharing_a_node_adds_up(V):
    a = V(1.5)
    h = a.exp()
    (h * 2).backward()
    (h * 3).backward()
    assert a.grad == pytest.approx(5 * math.exp(1.5))


@BOTH
def test_zero_grad_and_backward_seed(V):
    a = V(2.0)
    (a * a).backward(gradient=0.5)
    assert a.grad == pytest.approx(2.0)
    zero_grad([a])
    assert a.grad == 0.0
    with pytest.raises(TypeError, match="params"):
        zero_grad([1.0])


def test_deep_chain_does_not_hit_recursion_limit_and_is_freed():
    x = Value(1.0)
    refs_before = sys.getrefcount(x)
    gc.disable()  # prove the graph is freed by reference counting alone (no cycles)
    try:
        y = x
        for _ in range(100_000):
            y = y * 1.0001 + 0.0  # 200,000 nodes deep
        assert 200_000 > sys.getrecursionlimit()
        y.backward()
        assert x.grad == pytest.approx(1.0001**100_000, rel=1e-9)
        assert len(topological_order(y)) == 200_001
        assert sys.getrefcount(x) == refs_before + 1  # held by the first node of the chain
        del y
        assert sys.getrefcount(x) == refs_before  # whole chain freed, no collector needed
    finally:
        gc.enable()


def test_reference_deep_chain_does_not_hit_recursion_limit():
    # the reference engine's nodes are reference cycles (closures capture their output), so
    # only the recursion-free sort is checked here; the collector frees the chain afterwards
    x = ReferenceValue(1.0)
    gc.disable()  # collecting 200,000 cyclic nodes mid-build is slow, not wrong
    try:
        y = x
        for _ in range(100_000):
            y = y * 1.0001  # 100,000 operations deep (plus one constant leaf each)
        assert 100_000 > sys.getrecursionlimit()
        y.backward()
        assert x.grad == pytest.approx(1.0001**100_000, rel=1e-9)
        assert len(topological_order(y)) == 200_001
        del y
    finally:
        gc.enable()
        gc.collect()


@BOTH
def test_topological_order_puts_children_first(V):
    a, b = V(1.0), V(2.0)
    c = a * b
    d = c + a
    e = d * c
    order = topological_order(e)
    pos = {id(n): i for i, n in enumerate(order)}
    for node in order:
        for child in node._children:
            assert pos[id(child)] < pos[id(node)]
    assert order[-1] is e and len(order) == 5


@BOTH
def test_numerical_grad_agrees_with_backward(V):
    def f(x):
        return (x * x).tanh() + 3 * x

    for x0 in (-1.3, 0.2, 2.0):
        v = V(x0)
        f(v).backward()
        assert numerical_grad(f, v) == pytest.approx(v.grad, rel=1e-7, abs=1e-8)
    assert numerical_grad(lambda x: x**3, 2.0) == pytest.approx(12.0, rel=1e-8)
    with pytest.raises(ValueError, match="h"):
        numerical_grad(f, 1.0, h=0.0)


@BOTH
def test_bad_input_raises(V):
    with pytest.raises(TypeError, match="data"):
        V("1.0")
    with pytest.raises(TypeError, match="operand"):
        V(1.0) + "x"
    with pytest.raises(TypeError, match="exponent"):
        V(2.0) ** V(2.0)
    with pytest.raises(ValueError, match="log"):
        V(0.0).log()
    with pytest.raises(ValueError, match="negative base"):
        V(-2.0) ** 0.5
    with pytest.raises(ZeroDivisionError):
        V(1.0) / V(0.0)


# ---- the fast engine equals the reference ---------------------------------------------------
def _safe(a):
    """A positive expression of a (about |a| + 0.25) for log and fractional powers."""
    return (a * a + 0.25) ** 0.5 + 0.25


_OPS = {
    "exp": lambda a, b, c: (a * 0.3).exp(),
    "tanh": lambda a, b, c: a.tanh(),
    "relu": lambda a, b, c: a.relu(),
    "sigmoid": lambda a, b, c: a.sigmoid(),
    "log": lambda a, b, c: _safe(a).log(),
    "neg": lambda a, b, c: -a,
    "pow2": lambda a, b, c: a**2,
    "pow-1": lambda a, b, c: _safe(a) ** -1,
    "pow0.5": lambda a, b, c: _safe(a) ** 0.5,
    "+": lambda a, b, c: a + b,
    "-": lambda a, b, c: a - b,
    "*": lambda a, b, c: a * b,
    "/": lambda a, b, c: a / (b * b + 1),
    "c+": lambda a, b, c: c + a,
    "c-": lambda a, b, c: c - a,
    "c*": lambda a, b, c: c * a,
    "c/": lambda a, b, c: c / (a * a + 1),
    "+c": lambda a, b, c: a + c,
    "-c": lambda a, b, c: a - c,
    "*c": lambda a, b, c: a * c,
    "/c": lambda a, b, c: a / (abs(c) + 0.5),
}


_UNARY = ("exp", "tanh", "relu", "sigmoid", "log", "neg", "pow2", "pow-1", "pow0.5")
_BINARY = ("+", "-", "*", "/", "c+", "c-", "c*", "c/", "+c", "-c", "*c", "/c")


def _random_graph(seed: int, V) -> tuple[list, object]:
    """A random expression DAG over 3 leaves built with engine V by the same recipe for a seed.

    Each new node applies a random op to random earlier nodes (so sub-expressions are shared);
    domains are kept safe (log/pow on |x| + 0.5, divisions by 1 + x²)."""
    rng = random.Random(seed)
    leaves = [V(rng.uniform(-2.0, 2.0)) for _ in range(3)]
    nodes = list(leaves)
    for _ in range(rng.randint(5, 25)):
        a, b = rng.choice(nodes), rng.choice(nodes)
        c = rng.uniform(-2.0, 2.0)
        op = rng.choice(_UNARY + _BINARY)
        out = _OPS[op](a, b, c)
        if abs(out.data) < 1e3:  # keep the values in a range where both stay finite
            nodes.append(out)
    root = nodes[-1] + nodes[len(nodes) // 2] * nodes[3 % len(nodes)]
    return leaves, root


@pytest.mark.parametrize("seed", range(30))
def test_fast_engine_equals_reference_on_random_graphs(seed):
    fast_leaves, fast_root = _random_graph(seed, Value)
    ref_leaves, ref_root = _random_graph(seed, ReferenceValue)
    assert fast_root.data == pytest.approx(ref_root.data, rel=1e-12, abs=1e-12)
    fast_root.backward()
    ref_root.backward()
    for f, r in zip(fast_leaves, ref_leaves):
        assert f.grad == pytest.approx(r.grad, rel=1e-10, abs=1e-12)


def test_fast_engine_equals_reference_on_the_moons_mlp():
    from g2c.data.toy import make_moons

    X, y01 = make_moons(24, noise=0.1, seed=1)
    X, y = X.tolist(), [2.0 * v - 1 for v in y01]
    models = {
        e: ScalarMLP(
            random.Random(1337),
            layer_sizes=(2, 8, 8, 1),
            activation="relu",
            output_activation="linear",
            engine=e,
        )
        for e in ENGINES
    }
    assert isinstance(models["reference"].parameters()[0], ReferenceValue)
    assert [p.data for p in models["fast"].parameters()] == [
        p.data for p in models["reference"].parameters()
    ]  # same rng, same weights
    for k in range(4):
        lf, af = train_moons_step(models["fast"], X, y, lr=1.0 - 0.9 * k / 100)
        lr_, ar = train_moons_step(models["reference"], X, y, lr=1.0 - 0.9 * k / 100)
        assert lf == pytest.approx(lr_, rel=1e-12) and af == ar
        grads_f = [p.grad for p in models["fast"].parameters()]
        grads_r = [p.grad for p in models["reference"].parameters()]
        assert grads_f == pytest.approx(grads_r, rel=1e-9, abs=1e-13)
    with pytest.raises(ValueError, match="engine"):
        ScalarMLP(engine="slow")


def test_reference_engine_xor_and_mixing_engines():
    m = ScalarMLP(random.Random(0), engine="reference")
    first = xor_loss(m).data
    losses = [train_xor_step(m, lr=0.5) for _ in range(200)]
    fast = ScalarMLP(random.Random(0))
    assert losses == pytest.approx([train_xor_step(fast, lr=0.5) for _ in range(200)], rel=1e-9)
    assert losses[-1] < 0.5 * first
    out = single_neuron_forward(ReferenceValue(1.0), -2.0, 0.5, 0.25, 0.1)
    assert isinstance(out, ReferenceValue)
    for a, b in ((Value(1.0), ReferenceValue(2.0)), (ReferenceValue(2.0), Value(1.0))):
        with pytest.raises(TypeError, match="do not mix"):
            a + b


# ---- tracing -----------------------------------------------------------------------------------
def test_trace_and_text_rendering():
    a, b = Value(2.0, label="a"), Value(-1.0, label="b")
    out = (a * b + 1).tanh()
    out.label = "out"
    out.backward()
    nodes, edges = trace(out)
    assert len(nodes) == 5 and len(edges) == 4
    text = draw_text(out)
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[-1].startswith("v4 [out] = tanh(v3)")
    assert f"grad={a.grad:.4g}" in text and "leaf" in text and "+(v2)" in text
    with pytest.raises(ValueError, match="precision"):
        draw_text(out, precision=0)


def test_draw_dot_when_graphviz_installed():
    graphviz = pytest.importorskip("graphviz", reason="optional graphviz package not installed")
    a = Value(2.0, label="a")
    dot = draw_dot(a * a + 1)
    assert isinstance(dot, graphviz.Digraph)
    assert "data 2.0000" in dot.source and "*" in dot.source


def test_draw_dot_without_graphviz_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # make the import fail
    with pytest.raises(ModuleNotFoundError, match="pip install graphviz"):
        draw_dot(Value(1.0) * 2)


# ---- neurons, MLPs, XOR, moons -----------------------------------------------------------------
def test_scalar_neuron_matches_torch_and_validates():
    n = ScalarNeuron(3, random.Random(1))
    assert len(n.w) == 3 and len(n.parameters()) == 4
    x = [0.5, -1.0, 2.0]
    out = n(x)
    out.backward()
    w = torch.tensor([p.data for p in n.w], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(n.b.data, dtype=torch.float64, requires_grad=True)
    t = torch.tanh(w @ torch.tensor(x, dtype=torch.float64) + b)
    t.backward()
    assert out.data == pytest.approx(t.item(), rel=1e-12)
    assert [p.grad for p in n.w] == pytest.approx(w.grad.tolist(), rel=1e-10)
    assert n.b.grad == pytest.approx(b.grad.item(), rel=1e-10)
    with pytest.raises(ValueError, match="n_inputs"):
        ScalarNeuron(0)
    with pytest.raises(ValueError, match="n_inputs"):
        n([1.0, 2.0])
    with pytest.raises(ValueError, match="activation"):
        ScalarNeuron(2, activation="gelu")
    with pytest.raises(ValueError, match="n_outputs"):
        ScalarLayer(2, 0)
    with pytest.raises(TypeError, match="rng"):
        ScalarNeuron(2, rng="seed")
    # rng forms: an instance, the module, an int seed, the class, None (seed 0)
    same = [ScalarNeuron(2, r).w[0].data for r in (random.Random(0), 0, random.Random, None)]
    assert len(set(same)) == 1
    assert -1 <= ScalarNeuron(2, random).w[0].data <= 1


def test_scalar_mlp_default_is_the_xor_net():
    m = ScalarMLP(random.Random(0))
    assert len(m.parameters()) == 9
    assert isinstance(m((1.0, 0.0)), Value)
    with pytest.raises(ValueError, match="n_inputs"):
        m((1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="layer_sizes"):
        ScalarMLP(layer_sizes=(2,))
    big = ScalarMLP(3, layer_sizes=(2, 4, 3), activation="relu", output_activation="linear")
    assert len(big((0.1, 0.2))) == 3 and len(big.parameters()) == 4 * 3 + 3 * 5


def test_single_neuron_forward():
    out = single_neuron_forward(1.0, -2.0, 0.5, 0.25, 0.1)
    assert out.data == pytest.approx(math.tanh(0.5 - 0.5 + 0.1))
    w1 = Value(0.5)
    single_neuron_forward(1.0, -2.0, w1, 0.25, 0.1).backward()
    assert w1.grad == pytest.approx(1 - math.tanh(0.1) ** 2)


def test_xor_training_drives_loss_down():
    m = ScalarMLP(random.Random(0))
    first = xor_loss(m).data
    assert first >= 0
    losses = [train_xor_step(m, lr=0.5) for _ in range(500)]
    assert losses[0] == pytest.approx(first)
    assert losses[-1] < 0.05 * first
    preds = [m(x).data > 0.5 for x in ((0, 0), (0, 1), (1, 0), (1, 1))]
    assert preds == [False, True, True, False]
    with pytest.raises(ValueError, match="lr"):
        train_xor_step(m, lr=0.0)


def test_moons_loss_matches_torch_gradients():
    from g2c.data.toy import make_moons

    X, y01 = make_moons(12, noise=0.1, seed=3)
    y = [2.0 * v - 1 for v in y01]
    m = ScalarMLP(
        random.Random(2), layer_sizes=(2, 4, 1), activation="relu", output_activation="linear"
    )
    loss, acc = max_margin_loss(m, X.tolist(), y)
    loss.backward()
    W1 = torch.tensor(
        [[p.data for p in n.w] for n in m.layers[0].neurons],
        dtype=torch.float64,
        requires_grad=True,
    )
    b1 = torch.tensor(
        [n.b.data for n in m.layers[0].neurons], dtype=torch.float64, requires_grad=True
    )
    W2 = torch.tensor(
        [p.data for p in m.layers[1].neurons[0].w], dtype=torch.float64, requires_grad=True
    )
    b2 = torch.tensor(m.layers[1].neurons[0].b.data, dtype=torch.float64, requires_grad=True)
    Xt, yt = torch.tensor(X), torch.tensor(y, dtype=torch.float64)
    scores = torch.relu(Xt @ W1.T + b1) @ W2 + b2  # (N,)
    tl = torch.relu(1 - yt * scores).mean() + 1e-4 * sum((p * p).sum() for p in (W1, b1, W2, b2))
    tl.backward()
    assert loss.data == pytest.approx(tl.item(), rel=1e-12)
    assert acc == pytest.approx(((scores > 0) == (yt > 0)).double().mean().item())
    assert [p.grad for p in m.layers[0].neurons[1].w] == pytest.approx(
        W1.grad[1].tolist(), rel=1e-9, abs=1e-12
    )
    assert m.layers[1].neurons[0].b.grad == pytest.approx(b2.grad.item(), rel=1e-9)
    with pytest.raises(ValueError, match="y must"):
        max_margin_loss(m, X.tolist(), list(y01))


@pytest.mark.slow
def test_moons_mlp_reaches_full_train_accuracy():
    from g2c.data.toy import make_moons

    X, y01 = make_moons(100, noise=0.1, seed=0)
    y = [2.0 * v - 1 for v in y01]
    m = ScalarMLP(
        random.Random(1337),
        layer_sizes=(2, 16, 16, 1),
        activation="relu",
        output_activation="linear",
    )
    for k in range(100):
        train_moons_step(m, X.tolist(), y, lr=1.0 - 0.9 * k / 100)
    _, acc = max_margin_loss(m, X.tolist(), y)
    assert acc == 1.0


def test_example_smoke(tmp_path):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import importlib

        ex = importlib.import_module("01_autodiff")
    finally:
        sys.path.pop(0)
    assert ex.main(["--smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "01-moons-boundary.png").stat().st_size > 1000
