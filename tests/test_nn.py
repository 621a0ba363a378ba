"""Tests for g2c.nn (module 03): Module, layers, losses, SGD, resolve_device.

Every layer and loss is compared with the PyTorch reference (torch.nn.functional / torch.optim
are used here as the oracle only, never inside g2c.nn).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import g2c.nn as gnn
from g2c.nn import (
    GELU,
    SGD,
    BatchNorm1d,
    CrossEntropyLoss,
    Dropout,
    Linear,
    Module,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    resolve_device,
)

PKG = Path(gnn.__file__).resolve().parent


# -- from scratch ---------------------------------------------------------------------------
def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


@pytest.mark.parametrize("pkg", ["nn", "training"])
def test_no_torch_nn_or_optim_doing_the_work(pkg):
    """The code (not the docstrings) of g2c.nn and g2c.training never touches torch.nn or
    torch.optim: no import of them and no attribute access through them."""
    forbidden = ("torch.nn", "torch.optim")
    # distributed.py is the adapter to torch.distributed, whose DDP/FSDP wrap only
    # torch.nn.Module: it wraps g2c's own tensors in one (no layer, loss or optimizer of torch)
    adapters = {"distributed.py"}
    for path in (PKG.parent / pkg).glob("*.py"):
        if path.name in adapters:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute):
                names = [_dotted(node)]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name}:{node.lineno}: {name}"


# -- Module ---------------------------------------------------------------------------------
class _Tied(Module):
    def __init__(self):
        self.embed = Linear(4, 3)
        self.extra = [Linear(3, 2), {"head": Linear(2, 2)}]
        self.tied = self.embed.W  # the same tensor under a second name
        self.buffer = torch.zeros(5)  # no requires_grad: a buffer, not a parameter

    def forward(self, x):
        return x


def test_parameters_in_definition_order_and_tied_once():
    m = _Tied()
    names = [n for n, _ in m.named_parameters()]
    assert names == [
        "embed.W",
        "embed.b",
        "extra.0.W",
        "extra.0.b",
        "extra.1.head.W",
        "extra.1.head.b",
    ]
    params = m.parameters()
    assert isinstance(params, list) and len(params) == 6
    assert params[0] is m.embed.W and params[0] is m.tied
    assert len({id(p) for p in params}) == len(params)
    assert m.num_parameters() == 4 * 3 + 3 + 3 * 2 + 2 + 2 * 2 + 2
    # buffers are state but not parameters
    assert "buffer" in m.state_dict() and all(p is not m.buffer for p in params)


def test_parameter_free_module_has_no_parameters_and_base_forward_raises():
    assert ReLU().parameters() == [] and Module().parameters() == []
    with pytest.raises(NotImplementedError):
        Module()(torch.zeros(1))


def test_train_eval_propagate_to_nested_children():
    drop = Dropout(0.5)
    m = Sequential(Linear(2, 2), Sequential(drop, ReLU()))
    assert m.training and drop.training
    assert m.eval() is m
    assert not drop.training and not m[1].training
    m.train()
    assert drop.training
    t = _Tied().eval()
    assert not t.extra[1]["head"].training


def test_to_dtype_keeps_ties_grad_flags_and_values():
    m = _Tied()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert m.to(dtype=torch.float64) is m
    assert m.embed.W.dtype == torch.float64 and m.tied is m.embed.W
    assert m.embed.W.requires_grad and m.embed.W.is_leaf and not m.buffer.requires_grad
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, before[k].double())
    m.to("cpu")
    assert m.embed.W.device.type == "cpu"


class _Shared(Module):
    """A tree with a shared child, a list, a dict and a buffer-only layer (BatchNorm1d)."""

    def __init__(self):
        self.body = Sequential(Linear(4, 3), ReLU(), BatchNorm1d(3))
        self.heads = {"a": Linear(3, 2), "b": [Linear(3, 1)]}
        self.again = self.body  # the same sub-module under a second name


def _torch_shared() -> torch.nn.Module:
    """The torch twin of ``_Shared`` (ModuleList/ModuleDict stand in for list/dict)."""
    m = torch.nn.Module()
    m.body = torch.nn.Module()
    m.body.layers = torch.nn.ModuleList(
        [torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.BatchNorm1d(3)]
    )
    m.heads = torch.nn.Module()
    m.heads.a = torch.nn.Linear(3, 2)
    m.heads.b = torch.nn.ModuleList([torch.nn.Linear(3, 1)])
    m.again = m.body
    return m


def test_named_modules_follows_torch_names_order_and_dedup():
    ours = [(n, type(m).__name__) for n, m in _Shared().named_modules()]
    # torch lists the ModuleList/ModuleDict containers as modules too; g2c's lists/dicts are
    # plain containers, so compare after dropping torch's container-only entries
    theirs = [
        (n, type(m).__name__)
        for n, m in _torch_shared().named_modules()
        if not isinstance(m, torch.nn.ModuleList) and n not in ("heads", "body")
    ]
    assert [n for n, _ in ours] == [
        "",
        "body",
        "body.layers.0",
        "body.layers.1",
        "body.layers.2",
        "heads.a",
        "heads.b.0",
    ]
    assert [n for n, _ in ours if n not in ("", "body")] == [n for n, _ in theirs if n]
    assert [t for _, t in ours][2:] == ["Linear", "ReLU", "BatchNorm1d", "Linear", "Linear"]
    m = _Shared()
    assert dict(m.named_modules())["heads.b.0"] is m.heads["b"][0]
    assert [n for n, _ in m.named_modules(prefix="model")][:2] == ["model", "model.body"]
    assert list(m.modules()) == [mod for _, mod in m.named_modules()]  # shared child once
    assert list(Module().named_modules())[0][0] == ""


def test_device_and_to_move_parameters_and_buffers():
    assert Module().device == torch.device("cpu")  # no tensors: cpu, like a new torch module
    m = _Shared()
    assert m.device == torch.device("cpu")
    ref = _torch_shared()
    assert m.to("meta") is m and ref.to("meta") is ref  # "meta" moves without a GPU
    assert m.device == torch.device("meta")
    for _, t in m.named_tensors():  # every parameter and buffer, as torch's .to does
        assert t.device.type == "meta"
    bn = m.body.layers[2]
    assert bn.running_mean.device.type == ref.body.layers[2].running_mean.device.type == "meta"
    assert bn.gamma.requires_grad and not bn.running_var.requires_grad
    assert m.again is m.body and m.heads["a"].W.is_leaf
    c = _Shared()
    assert c.to(torch.device("cpu")) is c and c.device.type == "cpu"
    with pytest.raises(RuntimeError):
        c.to("not-a-device")
    assert all(t.device.type == "cpu" for _, t in c.named_tensors())


def test_state_dict_round_trip_and_errors():
    torch.manual_seed(1)
    a, b = _Tied(), _Tied()
    assert not torch.equal(a.embed.W, b.embed.W)
    b.load_state_dict(a.state_dict())
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)
    assert b.tied is b.embed.W  # filled in place: the tie survives
    state = a.state_dict()
    with pytest.raises(ValueError, match="missing=.*embed.b"):
        b.load_state_dict({k: v for k, v in state.items() if k != "embed.b"})
    with pytest.raises(ValueError, match="unexpected=.*bogus"):
        b.load_state_dict({**state, "bogus": torch.zeros(1)})
    b.load_state_dict({"embed.b": torch.ones(3)}, strict=False)
    assert torch.equal(b.embed.b, torch.ones(3))


def test_load_state_dict_shape_error_changes_nothing():
    a = Sequential(Linear(2, 3), Linear(3, 2))
    before = {k: v.clone() for k, v in a.state_dict().items()}
    bad = {k: torch.full_like(v, 7.0) for k, v in a.state_dict().items()}
    bad["layers.1.b"] = torch.zeros(5)  # the last tensor has the wrong shape
    with pytest.raises(ValueError, match=r"layers\.1\.b.*\(5,\)"):
        a.load_state_dict(bad)
    for k, v in a.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was modified before the error"


# -- Linear -----------------------------------------------------------------------------------
def test_linear_shapes_init_and_forward():
    lin = Linear(256, 64)
    assert lin.W.shape == (256, 64) and lin.b.shape == (64,)
    assert lin.W.requires_grad and lin.b.requires_grad
    assert torch.equal(lin.b, torch.zeros(64))
    assert abs(lin.W.std().item() - 1 / math.sqrt(256)) < 0.1 / math.sqrt(256)
    x = torch.randn(5, 7, 256)
    y = lin(x)
    assert y.shape == (5, 7, 64)
    torch.testing.assert_close(y, x @ lin.W + lin.b)
    # torch's F.linear with weight = W.T is the same map
    torch.testing.assert_close(y, F.linear(x, lin.W.T, lin.b))


def test_linear_gradients_match_autograd_reference():
    lin = Linear(3, 2)
    x = torch.randn(4, 3, dtype=torch.float64)
    lin.to(dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x, W, b: x @ W + b, (x.requires_grad_(), lin.W, lin.b))
    lin(x).sum().backward()
    torch.testing.assert_close(lin.b.grad, torch.full((2,), 4.0, dtype=torch.float64))
    torch.testing.assert_close(lin.W.grad, x.detach().sum(0)[:, None].expand(3, 2))


def test_linear_generator_reproducible_and_no_bias():
    a = Linear(4, 3, generator=torch.Generator().manual_seed(3))
    b = Linear(4, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.W, b.W)
    nb = Linear(4, 3, bias=False)
    assert nb.b is None and len(nb.parameters()) == 1
    x = torch.randn(2, 4)
    torch.testing.assert_close(nb(x), x @ nb.W)


def test_linear_bad_arguments():
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 3)
    with pytest.raises(ValueError, match="out_features"):
        Linear(3, -1)
    with pytest.raises(ValueError, match="last dimension 4"):
        Linear(4, 2)(torch.randn(3, 5))


# -- activations --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer, ref",
    [
        (ReLU(), F.relu),
        (Tanh(), torch.tanh),
        (Sigmoid(), torch.sigmoid),
        (GELU(), F.gelu),
        (GELU("tanh"), lambda x: F.gelu(x, approximate="tanh")),
    ],
    ids=["relu", "tanh", "sigmoid", "gelu", "gelu_tanh"],
)
def test_activations_match_torch_values_and_grads(layer, ref):
    x = torch.cat([torch.randn(200, dtype=torch.float64) * 4, torch.tensor([0.0, -30.0, 30.0])])
    x.requires_grad_()
    y = layer(x)
    assert y.shape == x.shape and layer.parameters() == []
    (g,) = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().clone().requires_grad_()
    y_ref = ref(x2)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x2)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=1e-10)


def test_gelu_bad_approximate():
    with pytest.raises(ValueError, match="approximate"):
        GELU("fast")


# -- Dropout ----------------------------------------------------------------------------------
def test_dropout_train_eval_and_scaling():
    drop = Dropout(0.25, generator=torch.Generator().manual_seed(0))
    x = torch.ones(200_000)
    y = drop(x)
    zero_frac = (y == 0).float().mean().item()
    assert abs(zero_frac - 0.25) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    assert abs(y.mean().item() - 1.0) < 0.01  # expectation preserved (inverted dropout)
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0)(x), x)


def test_dropout_gradient_flows_through_kept_units_only():
    drop = Dropout(0.5, generator=torch.Generator().manual_seed(1))
    x = torch.randn(1000, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    kept = y.detach() != 0
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert torch.all(x.grad[~kept] == 0)


def test_dropout_reproducible_and_bad_p():
    a = Dropout(0.5, generator=torch.Generator().manual_seed(5))(torch.ones(64))
    b = Dropout(0.5, generator=torch.Generator().manual_seed(5))(torch.ones(64))
    assert torch.equal(a, b)
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="p must be"):
            Dropout(p)


# -- BatchNorm1d --------------------------------------------------------------------------------
def test_batchnorm_matches_torch_train_and_eval():
    ours = BatchNorm1d(6, momentum=0.1)
    ref = torch.nn.BatchNorm1d(6, momentum=0.1)
    for _ in range(3):
        x = torch.randn(32, 6) * 3 + 1
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    x = torch.randn(8, 6)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    assert [n for n, _ in ours.named_parameters()] == ["gamma", "beta"]
    assert set(ours.state_dict()) == {"gamma", "beta", "running_mean", "running_var"}


def test_batchnorm_channels_last_3d_matches_torch_channels_first():
    ours, ref = BatchNorm1d(4), torch.nn.BatchNorm1d(4)
    x = torch.randn(5, 7, 4)  # (N, T, C)
    torch.testing.assert_close(
        ours(x), ref(x.transpose(1, 2)).transpose(1, 2), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_batchnorm_bad_shapes():
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        BatchNorm1d(4)(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        BatchNorm1d(4)(torch.randn(4))


# -- Sequential ---------------------------------------------------------------------------------
def test_sequential_applies_in_order_and_collects_parameters():
    l1, l2 = Linear(3, 4), Linear(4, 2)
    seq = Sequential(l1, Tanh(), l2)
    x = torch.randn(6, 3)
    torch.testing.assert_close(seq(x), l2(torch.tanh(l1(x))))
    assert seq.parameters() == [l1.W, l1.b, l2.W, l2.b]
    assert len(seq) == 3 and seq[0] is l1 and list(seq)[2] is l2
    with pytest.raises(TypeError, match="layer 1"):
        Sequential(l1, 3)


# -- losses ---------------------------------------------------------------------------------------
def test_mse_matches_torch_and_checks_shapes():
    pred = torch.randn(10, 3, requires_grad=True)
    target = torch.randn(10, 3)
    loss = MSELoss()(pred, target)
    ref = F.mse_loss(pred, target)
    torch.testing.assert_close(loss, ref)
    (g,) = torch.autograd.grad(loss, pred)
    (g_ref,) = torch.autograd.grad(ref, pred)
    torch.testing.assert_close(g, g_ref)
    with pytest.raises(ValueError, match="shape"):
        MSELoss()(torch.randn(10, 1), torch.randn(10))


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_matches_torch(scale, dtype):
    g = torch.Generator().manual_seed(int(scale))
    logits = (torch.randn(64, 11, generator=g, dtype=dtype) * scale).requires_grad_()
    targets = torch.randint(0, 11, (64,), generator=g)
    loss = CrossEntropyLoss()(logits, targets)
    ref = F.cross_entropy(logits, targets)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    (grad,) = torch.autograd.grad(loss, logits)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(grad, grad_ref, atol=1e-6, rtol=1e-6)


def test_cross_entropy_extreme_logits_are_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, 1e4]])
    targets = torch.tensor([1, 2, 0])
    loss = CrossEntropyLoss()(logits, targets)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets), atol=1e-6, rtol=1e-6)


def test_cross_entropy_uniform_logits_give_log_c():
    for C in (2, 10, 1000):
        loss = CrossEntropyLoss()(torch.zeros(7, C), torch.randint(0, C, (7,)))
        assert abs(loss.item() - math.log(C)) < 1e-5


def test_cross_entropy_ignore_index_and_nd_inputs():
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    targets[0, :2] = -100
    loss = CrossEntropyLoss(ignore_index=-100)(logits, targets)
    ref = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    all_ignored = CrossEntropyLoss(ignore_index=0)(
        torch.randn(3, 4), torch.zeros(3, dtype=torch.long)
    )
    assert all_ignored.item() == 0.0


def test_cross_entropy_bad_inputs():
    ce = CrossEntropyLoss()
    with pytest.raises(TypeError, match="targets"):
        ce(torch.randn(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="targets"):
        ce(torch.randn(3, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ce(torch.randn(3, 4), torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ce(torch.randn(3, 4), torch.tensor([0, -1, 1]))


# -- SGD ------------------------------------------------------------------------------------------
def test_sgd_update_rule_is_exact():
    p = torch.randn(5, 3, requires_grad=True)
    q = torch.randn(4, requires_grad=True)  # no grad: must be skipped
    g = torch.randn(5, 3)
    p.grad = g.clone()
    p0, q0 = p.detach().clone(), q.detach().clone()
    opt = SGD([p, q], lr=0.1, weight_decay=0.01)
    opt.step()
    assert torch.equal(p.detach(), p0 - 0.1 * (g + 0.01 * p0))
    assert torch.equal(q.detach(), q0)
    assert p.is_leaf and p.grad_fn is None and p.requires_grad  # the update is not tracked
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("momentum, wd", [(0.0, 0.0), (0.0, 0.05), (0.9, 0.0), (0.9, 0.01)])
def test_sgd_matches_torch_optim(momentum, wd):
    torch.manual_seed(0)
    W = torch.randn(6, 4, dtype=torch.float64)
    ours, ref = W.clone().requires_grad_(), W.clone().requires_grad_()
    opt = SGD([ours], lr=0.05, weight_decay=wd, momentum=momentum)
    ref_opt = torch.optim.SGD([ref], lr=0.05, weight_decay=wd, momentum=momentum)
    x = torch.randn(16, 6, dtype=torch.float64)
    for _ in range(20):
        for param, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            ((x @ param).tanh() ** 2).mean().backward()
            o.step()
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)


def test_sgd_trains_a_linear_regression():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 1, generator=g) * 2 - 1
    y = 3 * x + 2
    model = Linear(1, 1, generator=g)
    opt, loss_fn = SGD(model.parameters(), lr=0.5), MSELoss()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-6
    assert abs(model.W.item() - 3) < 1e-3 and abs(model.b.item() - 2) < 1e-3


def test_sgd_bad_arguments_and_state_round_trip():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="lr"):
        SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        SGD([p], lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        SGD([p], lr=0.1, momentum=1.0)
    with pytest.raises(TypeError, match="params"):
        SGD([p, "x"], lr=0.1)
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(2)
    opt.step()
    other = SGD([p], lr=1.0)
    other.load_state_dict(opt.state_dict())
    assert other.lr == 0.1 and other.momentum == 0.9
    torch.testing.assert_close(other.velocity[0], opt.velocity[0])


# -- resolve_device ---------------------------------------------------------------------------------
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else auto.type
    assert auto.type == expected
    if not torch.cuda.is_available():
        assert auto.type in ("cpu", "mps")
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    with pytest.raises(TypeError, match="device"):
        resolve_device(3)


# -- example (smoke mode) -------------------------------------------------------------------------
def test_example_03_regression_classification_smoke(tmp_path):
    import importlib.util

    path = PKG.parents[1] / "examples" / "03_regression_classification.py"
    spec = importlib.util.spec_from_file_location("example_03_rc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--smoke", "--img-dir", str(tmp_path)])
    assert abs(results["slope"] - 3.0) < 0.1 and abs(results["intercept"] - 2.0) < 0.1
    assert results["moons_accuracy"] > 0.95 and results["circles_accuracy"] > 0.95
    for png in ("03-line-fit.png", "03-decision-boundaries.png"):
        assert (tmp_path / png).stat().st_size > 1000
