"""Tests for g2c.classic: perceptron rule, hand-derived regression gradients (finite
differences), and the hand-written MLP backward pass against torch.autograd."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from g2c.classic import (
    MLP,
    BatchNorm1d,
    Linear,
    LinearRegression,
    LogisticRegression,
    Perceptron,
    ReLU,
    SoftmaxCrossEntropy,
    Tanh,
    finite_difference_grad,
    relative_error,
    sgd_step,
    sigmoid,
    train_classifier,
)
from g2c.data import resolve
from g2c.data.toy import make_circles, make_line, make_moons

REPO = Path(__file__).resolve().parents[1]
XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


# ---- perceptron ---------------------------------------------------------------------------------
def test_perceptron_learns_and_and_or():
    for y in (np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1])):  # AND, OR: linearly separable
        p = Perceptron(2)
        mistakes = p.fit(XOR_X, y, epochs=50)
        assert mistakes[-1] == 0 and len(mistakes) < 50
        assert (p.predict(XOR_X) == y).all()


def test_perceptron_fails_on_xor():
    p = Perceptron(2)
    y = np.array([0, 1, 1, 0])
    mistakes = p.fit(XOR_X, y, epochs=100)
    assert len(mistakes) == 100 and min(mistakes) > 0  # never an error-free epoch
    assert (p.predict(XOR_X) == y).sum() <= 3  # no line gets all four right


def test_perceptron_separates_separable_blobs():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 0.5, (30, 2)), rng.normal(2, 0.5, (30, 2))])
    y = np.repeat([0, 1], 30)
    p = Perceptron(2, lr=0.1)
    assert p.fit(X, y, epochs=100, rng=rng)[-1] == 0
    assert (p.predict(X) == y).all()


def test_perceptron_bad_input():
    with pytest.raises(ValueError, match="n_features"):
        Perceptron(0)
    with pytest.raises(ValueError, match="lr"):
        Perceptron(2, lr=0)
    with pytest.raises(ValueError, match="labels 0 or 1"):
        Perceptron(2).fit(XOR_X, np.array([-1, 1, 1, -1]))
    with pytest.raises(ValueError, match="columns"):
        Perceptron(3).predict(XOR_X)


# ---- linear and logistic regression -------------------------------------------------------------
def test_linear_regression_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    model = LinearRegression(3)
    model.w, model.b = rng.normal(size=3), 0.3
    _, dw, db = model.loss_and_gradients(X, y)

    def loss_of_w(w):
        model.w = w
        return model.loss(X, y)

    num_w = finite_difference_grad(loss_of_w, model.w.copy())
    b0 = model.b

    def loss_of_b(b):
        model.b = float(b[0])
        return model.loss(X, y)

    num_b = finite_difference_grad(loss_of_b, np.array([b0]))
    assert relative_error(dw, num_w) < 1e-7
    assert relative_error(db, num_b[0]) < 1e-7


def test_linear_regression_recovers_the_line():
    x, y = make_line(200, slope=3.0, intercept=2.0, noise=0.05, seed=0)
    gd = LinearRegression(1)
    losses = gd.fit(x, y, lr=0.5, epochs=300)
    exact = LinearRegression(1).fit_closed_form(x, y)
    assert losses[-1] < losses[0]
    assert gd.w[0] == pytest.approx(exact.w[0], abs=1e-6) and gd.b == pytest.approx(
        exact.b, abs=1e-6
    )
    assert exact.w[0] == pytest.approx(3.0, abs=0.05) and exact.b == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="y must"):
        gd.loss(x, y[:10])


def test_logistic_regression_gradients_match_finite_differences_and_torch():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 2, 30).astype(float)
    model = LogisticRegression(4)
    w0, b0 = rng.normal(size=4), -0.2
    model.w, model.b = w0.copy(), b0
    loss, dw, db = model.loss_and_gradients(X, y)

    def loss_of(params):
        model.w, model.b = params[:4], float(params[4])
        return model.loss(X, y)

    num = finite_difference_grad(loss_of, np.append(model.w, model.b))
    assert relative_error(np.append(dw, db), num) < 1e-7
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    tl = F.binary_cross_entropy_with_logits(torch.tensor(X) @ w + b, torch.tensor(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(dw, w.grad.numpy(), rtol=1e-10)
    assert db == pytest.approx(b.grad.item(), rel=1e-10)


def test_logistic_regression_fits_separable_data_and_is_stable():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-1.5, 0.6, (40, 2)), rng.normal(1.5, 0.6, (40, 2))])
    y = np.repeat([0, 1], 40)
    model = LogisticRegression(2)
    losses = model.fit(X, y, lr=0.5, epochs=200)
    assert losses[-1] < 0.2 * losses[0]
    assert (model.predict(X) == y).mean() >= 0.97
    assert np.all(np.isfinite(sigmoid(np.array([-1e4, 0.0, 1e4]))))
    assert sigmoid(np.array([0.0]))[0] == 0.5
    model.w = np.array([1e4, 1e4])
    assert np.isfinite(model.loss(X, y))
    with pytest.raises(ValueError, match="labels 0 or 1"):
        model.loss(X, 2 * y - 1)


def test_finite_difference_grad_validates_h():
    with pytest.raises(ValueError, match="h"):
        finite_difference_grad(lambda x: float(x.sum()), np.zeros(2), h=-1.0)


# ---- backprop by hand vs torch.autograd ---------------------------------------------------------
def _torch_params(model):
    return [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in model.parameters()]


def _torch_forward(model, params, x):
    """The same network in training mode with torch ops (the reference); ``params`` in model order."""
    it = iter(params)
    for layer in model.layers:
        if isinstance(layer, Linear):
            x = x @ next(it) + next(it)
        elif isinstance(layer, BatchNorm1d):
            x = F.batch_norm(x, None, None, next(it), next(it), training=True, eps=layer.eps)
        elif isinstance(layer, ReLU):
            x = torch.relu(x)
        elif isinstance(layer, Tanh):
            x = torch.tanh(x)
    return x


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_backward_matches_torch_autograd(activation, batchnorm):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(16, 5)), rng.integers(0, 3, 16)
    model = MLP((5, 8, 6, 3), activation=activation, batchnorm=batchnorm, rng=4)
    if batchnorm:  # non-trivial gamma / beta
        for layer in model.layers:
            if isinstance(layer, BatchNorm1d):
                layer.params["gamma"][:] = rng.uniform(0.5, 1.5, layer.params["gamma"].shape)
                layer.params["beta"][:] = rng.normal(size=layer.params["beta"].shape)
    params = _torch_params(model)
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn(model.forward(X), y)
    dx = model.backward(loss_fn.backward())

    Xt = torch.tensor(X, requires_grad=True)  # a leaf input so ∂L/∂x is checked too
    logits = _torch_forward(model, params, Xt)
    tl = F.cross_entropy(logits, torch.tensor(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    for g, p in zip(model.gradients(), params):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dx, Xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_batchnorm_eval_mode_and_running_stats_match_torch():
    rng = np.random.default_rng(5)
    bn = BatchNorm1d(4, momentum=0.1)
    running_mean, running_var = (
        torch.zeros(4, dtype=torch.float64),
        torch.ones(4, dtype=torch.float64),
    )
    for _ in range(3):
        x = rng.normal(2.0, 3.0, size=(10, 4))
        bn.forward(x)
        F.batch_norm(
            torch.tensor(x), running_mean, running_var, training=True, momentum=0.1, eps=1e-5
        )
    np.testing.assert_allclose(bn.running_mean, running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, running_var.numpy(), rtol=1e-12)
    bn.training = False
    x = rng.normal(size=(6, 4))
    out = bn.forward(x)
    dx = bn.backward(np.ones_like(out))
    xt = torch.tensor(x, requires_grad=True)
    ref = F.batch_norm(xt, running_mean, running_var, training=False, eps=1e-5)
    ref.sum().backward()
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)
    bn.training = True
    with pytest.raises(ValueError, match="batch"):
        bn.forward(x[:1])


def test_softmax_cross_entropy_is_stable_and_validates():
    loss_fn = SoftmaxCrossEntropy()
    logits = np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    loss = loss_fn(logits, np.array([1, 2]))
    ref = F.cross_entropy(torch.tensor(logits), torch.tensor([1, 2]))
    assert np.isfinite(loss) and loss == pytest.approx(ref.item(), rel=1e-12)
    assert loss_fn(np.zeros((2, 5)), np.array([0, 4])) == pytest.approx(np.log(5))
    with pytest.raises(ValueError, match="targets"):
        loss_fn(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="targets"):
        loss_fn(logits, np.array([0.0, 1.0]))


def test_mlp_layers_finite_difference_spot_check():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, 8)
    model = MLP((3, 5, 2), activation="tanh", batchnorm=True, rng=1)
    loss_fn = SoftmaxCrossEntropy()
    loss_fn(model.forward(X), y)
    model.backward(loss_fn.backward())
    W = model.layers[0].params["W"]
    num = finite_difference_grad(lambda w: loss_fn(model.forward(X), y), W)
    assert relative_error(model.gradients()[0], num) < 1e-6


def test_mlp_learns_moons_and_circles():
    for make in (make_moons, make_circles):
        X, y = make(200, noise=0.1, seed=0) if make is make_moons else make(200, noise=0.05, seed=0)
        model = MLP((2, 32, 32, 2), activation="relu", batchnorm=True, rng=0)
        losses = train_classifier(model, X, y, lr=0.5, steps=300)
        model.eval()
        acc = (model.forward(X).argmax(axis=1) == y).mean()
        assert losses[-1] < 0.3 * losses[0] and acc >= 0.97, (make.__name__, acc)


def test_mlp_and_sgd_bad_input():
    with pytest.raises(ValueError, match="layer_sizes"):
        MLP((3,))
    with pytest.raises(ValueError, match="activation"):
        MLP((3, 2), activation="gelu")
    with pytest.raises(ValueError, match="shape"):
        MLP((3, 2)).forward(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="pair up"):
        sgd_step([np.zeros(2)], [], 0.1)


def test_library_does_not_import_torch():
    for name in ("perceptron", "linear", "mlp"):
        text = (REPO / "g2c" / "classic" / f"{name}.py").read_text()
        assert "import torch" not in text


def test_example_smoke(tmp_path):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        ex = importlib.import_module("01b_classic")
    finally:
        sys.path.pop(0)
    assert ex.main(["--smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "01b-perceptron-xor.png").stat().st_size > 1000


# -- the week-3 MLP three ways (examples/03_mlp_three_ways.py) ----------------------------------
def test_mlp_three_ways_example_smoke(tmp_path):
    try:
        resolve("mnist", download=False)
    except FileNotFoundError:
        pytest.skip("MNIST not available (set G2C_DATA_DIR)")
    path = Path(__file__).resolve().parents[1] / "examples" / "03_mlp_three_ways.py"
    spec = importlib.util.spec_from_file_location("ex03_three_ways", path)
    ex = importlib.util.module_from_spec(spec)
    sys.modules["ex03_three_ways"] = ex
    spec.loader.exec_module(ex)
    assert ex.main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "03-mlp-three-ways.json").read_text())
    ways = results["ways"]
    assert list(ways) == list(ex.WAYS)
    # same initial weights, same batches, same SGD: the three learn the same thing
    losses = [w["losses"][-1] for w in ways.values()]
    assert max(losses) - min(losses) < 1e-4
    accs = [w["test_accuracy"] for w in ways.values()]
    assert max(accs) - min(accs) <= 0.004 and min(accs) > 0.3  # above chance (10 %)
    assert "| torch.nn |" in (tmp_path / "03-mlp-three-ways.md").read_text()
