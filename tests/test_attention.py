"""Tests for g2c.attention: hand-computed example, SDPA parity, GQA, RoPE, KV cache, the cheat."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from g2c.attention import (
    LayerKVCache,
    MultiHeadAttention,
    SelfAttention,
    attend,
    attend_fused,
    causal_mask,
    segment_causal_mask,
    segment_positions,
)
from g2c.embeddings import RotaryEmbedding


def _identity_self_attention(D: int) -> SelfAttention:
    attn = SelfAttention(D)
    with torch.no_grad():
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            lin.W.copy_(torch.eye(D))
            lin.b.zero_()
    return attn


def test_causal_mask_is_strictly_upper_triangular():
    m = causal_mask(3)
    assert m.dtype == torch.bool
    assert m.tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    with pytest.raises(ValueError, match="T"):
        causal_mask(0)
    for cls in (SelfAttention, MultiHeadAttention):  # static on both classes
        assert torch.equal(cls.causal_mask(3), m)
        assert cls.causal_mask(2, device="cpu").device.type == "cpu"
    assert torch.equal(MultiHeadAttention(8, 2).causal_mask(3), m)


@pytest.mark.parametrize("use_mask", [True, False])
def test_attend_fused_equals_reference(use_mask):
    q, k, v = (torch.randn(3, 4, 7, 16, requires_grad=True) for _ in range(3))
    mask = causal_mask(7) if use_mask else None
    ref, fast = attend(q, k, v, mask), attend_fused(q, k, v, mask)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)
    g_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    g_fast = torch.autograd.grad(fast.square().sum(), (q, k, v))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_three_token_hand_computed_example():
    # x = [1,0], [0,1], [1,1]; identity projections, so q = k = v = x; scale 1/sqrt(2).
    attn = _identity_self_attention(2)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    a = math.exp(1 / math.sqrt(2))  # e^{q·k/√2} for q·k = 1, relative to q·k = 0
    # row 0 sees only itself; row 1: scores [0, 1/√2]; row 2: scores [1, 1, 2]/√2
    w = torch.tensor(
        [
            [1.0, 0.0, 0.0],
            [1 / (1 + a), a / (1 + a), 0.0],
            [1 / (2 + a), 1 / (2 + a), a / (2 + a)],
        ]
    )
    expected_out = w @ x[0]  # weighted average of the value rows
    torch.testing.assert_close(attn.attention_weights(x)[0], w, atol=1e-6, rtol=0)
    torch.testing.assert_close(attn(x)[0], expected_out, atol=1e-6, rtol=0)
    # row 2 by hand: (1·[1,0] + 1·[0,1] + a·[1,1]) / (2 + a)
    assert attn(x)[0, 2, 0].item() == pytest.approx((1 + a) / (2 + a), abs=1e-6)


def test_self_attention_weights_rows_sum_to_one_and_are_causal():
    attn = SelfAttention(8)
    x = torch.randn(2, 5, 8)
    w = attn.attention_weights(x)
    assert w.shape == (2, 5, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    assert (w.masked_select(attn.causal_mask(5)) == 0).all()
    assert attn(x).shape == (2, 5, 8)
    # scaled by 1/sqrt(D): compare with the formula
    q, k = attn.q_proj(x), attn.k_proj(x)
    ref = torch.softmax(
        (q @ k.transpose(1, 2) / math.sqrt(8)).masked_fill(causal_mask(5), -1e30), -1
    )
    torch.testing.assert_close(w, ref, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="x must be"):
        attn(torch.randn(2, 5, 7))


@pytest.mark.parametrize("use_mask", [True, False])
def test_attend_matches_torch_sdpa(use_mask):
    q, k, v = (torch.randn(3, 4, 7, 16) for _ in range(3))
    mask = causal_mask(7) if use_mask else None
    ours = attend(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=use_mask)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
@pytest.mark.parametrize("use_rope", [False, True])
@pytest.mark.parametrize("fast_kw", [{}, {"attention_impl": "sdpa"}])
def test_mha_fast_paths_equal_reference(causal, num_kv_heads, use_rope, fast_kw):
    torch.manual_seed(1)
    rope = RotaryEmbedding(16, 8) if use_rope else None
    ref = MultiHeadAttention(32, 4, causal, num_kv_heads=num_kv_heads, rope=rope, fused=False)
    fast = MultiHeadAttention(32, 4, causal, num_kv_heads=num_kv_heads, rope=rope, **fast_kw)
    assert fast.fused
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 32, requires_grad=True)
    out_ref, out_fast = ref(x), fast(x)
    torch.testing.assert_close(out_fast, out_ref, atol=1e-5, rtol=0)
    (g_ref,) = torch.autograd.grad(out_ref.square().sum(), x)
    (g_fast,) = torch.autograd.grad(out_fast.square().sum(), x)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_kv_heads", [None, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_projections_equal_separate_ones(num_kv_heads, bias):
    ref = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads, bias=bias, fused=False)
    fast = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads, bias=bias, fused=True)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(fast(x), ref(x), atol=1e-6, rtol=0)
    ref(x).sum().backward()
    fast(x).sum().backward()
    for a, b in zip(ref.parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-5)


def test_mha_has_eight_parameter_tensors_whatever_heads():
    for H in (1, 2, 4, 8):
        mha = MultiHeadAttention(32, H)
        assert len(mha.parameters()) == 8
        assert mha.num_parameters() == 4 * (32 * 32 + 32)
    assert len(MultiHeadAttention(32, 4, bias=False).parameters()) == 4
    gqa = MultiHeadAttention(32, 4, num_kv_heads=1)
    assert gqa.k_proj.W.shape == (32, 8) and gqa.v_proj.W.shape == (32, 8)


def test_mha_bad_arguments_raise():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="num_kv_heads"):
        MultiHeadAttention(32, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="attention_impl"):
        MultiHeadAttention(32, 4, attention_impl="flash")
    with pytest.raises(ValueError, match="head_dim"):
        MultiHeadAttention(32, 4, rope=RotaryEmbedding(16, 32))


def test_mha_attention_weights_per_head_scaled_by_head_dim():
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 6, 16)
    w = mha.attention_weights(x)
    assert w.shape == (2, 4, 6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))
    assert (w[..., causal_mask(6)] == 0).all()
    # head 0 by hand with scale 1/sqrt(D/H) = 1/2
    q = (x @ mha.q_proj.W + mha.q_proj.b)[..., :4]
    k = (x @ mha.k_proj.W + mha.k_proj.b)[..., :4]
    scores = (q @ k.transpose(1, 2) / 2.0).masked_fill(causal_mask(6), float("-inf"))
    torch.testing.assert_close(w[:, 0], torch.softmax(scores, -1), atol=1e-6, rtol=0)


def test_mha_equals_per_head_self_attention_loop():
    """Heads by reshape equal H separate attentions over slices, concatenated."""
    mha = MultiHeadAttention(12, 3)
    x = torch.randn(2, 5, 12)
    q, k, v = mha.q_proj(x), mha.k_proj(x), mha.v_proj(x)
    heads = [attend(q[..., h * 4 : (h + 1) * 4], k[..., h * 4 : (h + 1) * 4],
                    v[..., h * 4 : (h + 1) * 4], causal_mask(5)) for h in range(3)]  # fmt: skip
    expected = mha.out_proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(mha(x), expected, atol=1e-6, rtol=0)


def test_gqa_equals_mha_with_repeated_kv_weights():
    torch.manual_seed(2)
    gqa = MultiHeadAttention(32, 4, num_kv_heads=2)
    mha = MultiHeadAttention(32, 4)
    hd = 8
    with torch.no_grad():
        mha.q_proj.W.copy_(gqa.q_proj.W)
        mha.q_proj.b.copy_(gqa.q_proj.b)
        mha.out_proj.W.copy_(gqa.out_proj.W)
        mha.out_proj.b.copy_(gqa.out_proj.b)
        for full, small in ((mha.k_proj, gqa.k_proj), (mha.v_proj, gqa.v_proj)):
            # kv head g serves query heads 2g and 2g+1
            Wg = small.W.view(32, 2, hd).repeat_interleave(2, dim=1).reshape(32, 32)
            full.W.copy_(Wg)
            full.b.copy_(small.b.view(2, hd).repeat_interleave(2, dim=0).reshape(32))
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-6, rtol=0)


def test_rope_makes_scores_depend_on_relative_position_only():
    """The same two tokens placed 5 positions later give the same q·k scores with RoPE."""
    rope = RotaryEmbedding(32, 8)
    mha = MultiHeadAttention(8, 1, causal=False, rope=rope)
    x = torch.randn(1, 2, 8)
    shifted = torch.cat([torch.randn(1, 5, 8), x], dim=1)  # x now at positions 5, 6
    q0, k0, _ = mha._project(x)
    q5, k5, _ = mha._project(shifted)
    torch.testing.assert_close(
        q5[0, 0, 5:] @ k5[0, 0, 5:].T, q0[0, 0] @ k0[0, 0].T, atol=1e-5, rtol=0
    )
    assert not torch.allclose(q5[0, 0, 5:], q0[0, 0])  # the vectors themselves did rotate


def test_dropout_acts_in_training_only():
    mha = MultiHeadAttention(16, 2, dropout=0.5)
    x = torch.randn(2, 6, 16)
    mha.eval()
    ref = MultiHeadAttention(16, 2)
    ref.load_state_dict(mha.state_dict())
    torch.testing.assert_close(mha(x), ref(x))
    mha.train()
    assert not torch.allclose(mha(x), ref(x))
    for kw in ({"fused": False}, {}, {"attention_impl": "sdpa"}):
        m = MultiHeadAttention(16, 2, dropout=0.5, **kw)
        assert not torch.allclose(m(x), m(x))  # fresh masks each call


@pytest.mark.parametrize("kw", [{"fused": False}, {}, {"attention_impl": "sdpa"}])
@pytest.mark.parametrize("num_kv_heads", [None, 1])
def test_forward_cached_token_by_token_equals_full_forward(kw, num_kv_heads):
    rope = RotaryEmbedding(16, 4)
    mha = MultiHeadAttention(16, 4, num_kv_heads=num_kv_heads, rope=rope, **kw)
    x = torch.randn(2, 8, 16)
    full = mha(x)
    cache = LayerKVCache()
    outs = []
    for t in range(8):
        out, cache = mha.forward_cached(x[:, t : t + 1], cache)
        outs.append(out)
    assert cache.length == 8
    assert cache.keys.shape == cache.values.shape == (2, mha.num_kv_heads, 8, 4)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=0)
    # prefill of several positions, then the rest
    cache.reset()
    assert cache.length == 0 and cache.keys is None
    a, _ = mha.forward_prefill(x[:, :5], cache)
    b, _ = mha.forward_prefill(x[:, 5:], cache)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=0)


def test_forward_cached_rejects_bad_use():
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match="one new position"):
        mha.forward_cached(torch.randn(1, 2, 16), LayerKVCache())
    with pytest.raises(ValueError, match="causal"):
        MultiHeadAttention(16, 4, causal=False).forward_cached(
            torch.randn(1, 1, 16), LayerKVCache()
        )
    cache = LayerKVCache()
    mha.forward_cached(torch.randn(2, 1, 16), cache)
    with pytest.raises(ValueError, match="reset"):
        mha.forward_cached(torch.randn(3, 1, 16), cache)


def test_layer_kv_cache_appends_and_validates_every_append():
    k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    cache = LayerKVCache()
    assert cache.length == 0 and cache.keys is None and cache.values is None
    assert cache.append(k, v) is cache and cache.length == 4
    cache.append(k[:, :, :1], v[:, :, :1])
    assert cache.length == 5 and torch.equal(cache.values[:, :, 4], v[:, :, 0])
    started = LayerKVCache(k, v)
    assert started.length == 4 and torch.equal(started.keys, k)
    bad_first = [
        (torch.randn(2, 4, 8), torch.randn(2, 4, 8)),  # rank 3
        (k, torch.randn(2, 3, 5, 8)),  # k and v differ
        (k, None),
    ]
    for bk, bv in bad_first:
        with pytest.raises(ValueError):
            LayerKVCache().append(bk, bv)  # the FIRST append is checked too
        with pytest.raises(ValueError):
            LayerKVCache(bk, bv)
    for other in (
        torch.randn(1, 3, 1, 8),  # batch
        torch.randn(2, 2, 1, 8),  # heads
        torch.randn(2, 3, 1, 4),  # head_dim
        torch.randn(2, 3, 1, 8, dtype=torch.float64),  # dtype
    ):
        with pytest.raises(ValueError):
            cache.append(other, other.clone())
    assert cache.length == 5  # failed appends changed nothing


@pytest.mark.slow
def test_removing_the_causal_mask_lets_the_model_cheat():
    """On random tokens the best honest next-token loss is log V; without the mask the model
    reads the answer from position t+1 and its loss collapses toward zero."""
    from g2c.training import AdamW
    from g2c.transformer import TransformerLM

    V, T = 16, 16
    g = torch.Generator().manual_seed(0)
    losses = {}
    for causal in (True, False):
        torch.manual_seed(0)
        model = TransformerLM(V, 32, 1, 2, T, attention_impl="sdpa", fused=True)
        for block in model.blocks:
            block.attn.causal = causal
        opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        for _ in range(200):  # fresh random sequences each step: nothing to memorise
            data = torch.randint(0, V, (32, T + 1), generator=g)
            x, y = data[:, :-1], data[:, 1:]
            loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        held_out = torch.randint(0, V, (64, T + 1), generator=g)
        with torch.no_grad():
            logits = model(held_out[:, :-1])
        # positions 0..T-2: their next token sits in the input (the last one's does not)
        visible = logits[:, :-1].reshape(-1, V)
        losses[causal] = F.cross_entropy(visible, held_out[:, 1:-1].reshape(-1)).item()
    assert losses[True] > 0.8 * math.log(V)  # honest model: near log 16 = 2.77
    assert losses[False] < 0.05  # the cheat: copies the answer


# -- sequence packing (segment_ids) ---------------------------------------------------------
def test_segment_positions_and_mask_by_hand():
    seg = torch.tensor([[7, 7, 7, 2, 2, 9], [0, 0, 0, 0, 0, 0]])
    assert segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]
    hidden = segment_causal_mask(seg)  # (B, T, T), True = hidden
    assert hidden.shape == (2, 6, 6)
    assert torch.equal(hidden[1], causal_mask(6))  # one segment: plain causal
    allowed = (~hidden[0]).int().tolist()
    assert allowed[4] == [0, 0, 0, 1, 1, 0]  # the 2nd token of segment "2" sees only its own
    assert allowed[5] == [0, 0, 0, 0, 0, 1]
    # a run is a segment: the same id later again is a new segment
    assert segment_positions(torch.tensor([[1, 1, 2, 1]])).tolist() == [[0, 1, 0, 0]]


@pytest.mark.parametrize("impl,fused", [("explicit", False), ("explicit", True), ("sdpa", True)])
@pytest.mark.parametrize("use_rope", [False, True])
def test_packed_attention_equals_separate_sequences(impl, fused, use_rope):
    torch.manual_seed(0)
    D, H, lengths = 16, 4, (3, 5, 2)
    rope = RotaryEmbedding(16, D // H) if use_rope else None
    attn = MultiHeadAttention(D, H, num_kv_heads=2, rope=rope, attention_impl=impl, fused=fused)
    parts = [torch.randn(1, n, D) for n in lengths]
    packed = torch.cat(parts, dim=1)  # (1, 10, D)
    seg = torch.cat([torch.full((1, n), i) for i, n in enumerate(lengths)], dim=1)
    out = attn(packed, segment_ids=seg)
    separate = torch.cat([attn(x) for x in parts], dim=1)
    torch.testing.assert_close(out, separate, atol=1e-5, rtol=0)
    with torch.no_grad():
        w = attn.attention_weights(packed, segment_ids=seg)  # (1, H, T, T): 0 across segments
    assert float(w[0, :, 3:, :3].abs().max()) == 0.0
    torch.testing.assert_close(w.sum(-1), torch.ones(1, H, 10))
    with pytest.raises(ValueError, match="segment_ids"):
        attn(packed, segment_ids=seg[:, :5])
    with pytest.raises(TypeError, match="segment_ids"):
        attn(packed, segment_ids=seg.float())


@pytest.mark.slow
def test_example_smoke_writes_pictures(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "07_attention.py"
    spec = importlib.util.spec_from_file_location("example_07_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke", "--out", str(tmp_path)]) == 0
    for name in ("07-causal-cheat.png", "08-attention-heads.png", "09-variant-losses.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "0.3302  0.6698" in capsys.readouterr().out  # the hand example's row 1
