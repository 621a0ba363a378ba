"""Weight-only quantization (g2c.inference.quant): error bounds, reference == packed kernels,
quantized tiny models close to fp32 and still generating, bad arguments."""

from __future__ import annotations

import pytest
import torch

from g2c.inference.quant import (
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    dequantize_model,
    kernel_supported,
    model_bytes,
    quantize_int4,
    quantize_int8,
    quantize_model,
)
from g2c.nn import Linear
from g2c.sampling import generate
from g2c.transformer import TransformerLM

torch.set_num_threads(1)


def _tiny(hidden: int = 128, **kw) -> TransformerLM:
    cfg = dict(positional="rope", norm="rmsnorm", mlp="swiglu", num_kv_heads=2, bias=False)
    cfg.update(kw)
    g = torch.Generator().manual_seed(0)
    return TransformerLM(64, 64, 2, 4, 32, hidden, generator=g, **cfg).eval()


def _w(n: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    w[0] += 3.0  # a skewed row: all values far from zero
    w[1] = 0.0  # an all-zero row
    return w


def test_int8_error_within_half_a_step():
    w = _w(48, 96)
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert torch.equal(scale, scale.bfloat16().float())  # bf16-representable scales
    err = (w - dequantize_int8(q, scale)).abs()
    assert (err <= scale[:, None] / 2 + 1e-6).all()
    assert torch.equal(dequantize_int8(q, scale)[1], torch.zeros(96))


@pytest.mark.parametrize("group_size", [32, 64])
def test_int4_error_within_half_a_step(group_size):
    w = _w(32, 128)
    q, scale, zero = quantize_int4(w, group_size)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    assert scale.shape == (32, 128 // group_size)
    deq = dequantize_int4(q, scale, zero, group_size)
    err = (w - deq).abs().view(32, -1, group_size)
    # scale/2, plus the bf16 rounding of the zero point (|zero| · 2^-8)
    bound = scale / 2 + zero.abs() * 2.0**-8 + 1e-6
    assert (err <= bound[..., None]).all()
    # asymmetric: the skewed row uses all 16 levels, so its step is (max - min)/15
    g0 = w[0, :group_size]
    assert float(scale[0, 0]) == pytest.approx(float(g0.max() - g0.min()) / 15, rel=2**-8)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_packed_kernel_equals_reference(mode):
    if not kernel_supported(f"{mode}pack", 64, 128):
        pytest.skip(f"this torch has no packed {mode} CPU kernel")
    w, b = _w(64, 128, seed=1), torch.randn(64)
    ref = QuantizedLinear.from_linear(w, mode, 32, fast=False, bias=b)
    fast = QuantizedLinear.from_linear(w, mode, 32, fast=True, bias=b)
    assert ref.kernel == "reference" and fast.kernel == f"{mode}pack"
    # both dequantize to the same stored weight (int4pack read back through the kernel)
    torch.testing.assert_close(fast.dequantize(), ref.dequantize(), rtol=2**-8, atol=1e-6)
    x = torch.randn(3, 5, 128)
    y_ref, y_fast = ref(x), fast(x)
    assert y_fast.dtype == torch.float32 and y_fast.shape == (3, 5, 64)
    # The kernels round x and y to bf16 (unit roundoff 2^-9 each), so the difference is
    # bounded by ~2^-8 · Σ|x||w|; 2^-7 leaves room for the fp32 accumulation order.
    bound = 2.0**-7 * (x.abs() @ ref.dequantize().abs().T)
    assert ((y_fast - y_ref).abs() <= bound + 1e-5).all()


def test_int8_prefill_rows_use_the_reference():
    w = _w(64, 128, seed=2)
    layer = QuantizedLinear.from_linear(w, "int8")
    x = torch.randn(1, 80, 128)  # ≥ INT8PACK_MAX_ROWS rows: dequantize → matmul in fp32
    torch.testing.assert_close(layer(x), layer.forward_reference(x))


def test_from_g2c_and_torch_linear_agree():
    lin = Linear(128, 32, generator=torch.Generator().manual_seed(3))
    tl = torch.nn.Linear(128, 32)
    with torch.no_grad():
        tl.weight.copy_(lin.W.T)
        tl.bias.copy_(torch.randn(32))
        lin.b.copy_(tl.bias)
    a = QuantizedLinear.from_linear(lin, "int8", fast=False)
    b = QuantizedLinear.from_linear(tl, "int8", fast=False)
    x = torch.randn(4, 128)
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a(x), lin(x), atol=0.05, rtol=0.02)


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("head", [False, True])
def test_quantized_tiny_model_close_to_fp32_and_generates(mode, head):
    model = _tiny()
    qm = quantize_model(model, mode, 32, quantize_head=head)
    assert isinstance(qm.blocks[0].attn.q_proj, QuantizedLinear)
    assert isinstance(model.blocks[0].attn.q_proj, Linear)  # the original is untouched
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = model(idx), qm(idx)
        p, pq = torch.softmax(ref, -1), torch.softmax(out, -1)
    tv = 0.5 * (p - pq).abs().sum(-1).max()
    assert tv < (0.05 if mode == "int8" else 0.25), tv
    # the KV-cached path runs the quantized layers too: prefill + cached == full forward
    cache = qm.empty_kv_cache()
    with torch.no_grad():
        a, cache = qm.forward_prefill(idx[:, :10], cache)
        b, cache = qm.forward_cached(idx[:, 10:11], cache)
    torch.testing.assert_close(torch.cat([a, b], 1), out[:, :11], atol=0.03, rtol=0.02)
    toks = generate(qm, [1, 2, 3], 8, temperature=0)
    assert toks.shape == (11,)
    assert model_bytes(qm) < model_bytes(model) * (0.45 if mode == "int8" else 0.35)


def test_dequantize_model_runs_reference():
    qm = quantize_model(_tiny(), "int4", 32)
    dq = dequantize_model(qm)
    assert all(m.kernel == "reference" for m in dq.modules() if isinstance(m, QuantizedLinear))
    idx = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(dq(idx), qm(idx), atol=0.05, rtol=0.05)


def test_torch_module_quantized():
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16))
    qn = quantize_model(net, "int8")
    assert isinstance(qn[0].layer, QuantizedLinear) and isinstance(net[0], torch.nn.Linear)
    x = torch.randn(3, 64)
    with torch.no_grad():
        torch.testing.assert_close(qn(x), net(x), atol=0.05, rtol=0.05)
    assert model_bytes(qn) < model_bytes(net) / 2


def test_bad_arguments_name_the_argument():
    model = _tiny()
    with pytest.raises(ValueError, match="mode"):
        quantize_model(model, "int3")
    with pytest.raises(ValueError, match="group_size"):
        quantize_model(model, "int4", group_size=48)
    with pytest.raises(ValueError, match="group_size 64 must divide in_features"):
        quantize_model(_tiny(hidden=96), "int4", group_size=64)
    with pytest.raises(ValueError, match="in_features"):
        QuantizedLinear.from_linear(_w(16, 32), "int8")(torch.randn(2, 31))
    with pytest.raises(TypeError, match="layer"):
        QuantizedLinear.from_linear("W", "int8")
