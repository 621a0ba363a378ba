"""Tests for g2c.transformer: norms, feed-forwards, blocks, TransformerLM, fast path, GPT-2 parity."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from g2c.transformer import (
    Block,
    FeedForward,
    LayerKVCache,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    TransformerConfig,
    TransformerLM,
    swiglu_hidden_dim,
)

VARIANTS = {
    "course": {},
    "sinusoidal": {"positional": "sinusoidal"},
    "none": {"positional": "none"},
    "llama": {
        "positional": "rope",
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "num_kv_heads": 2,
        "bias": False,
    },
    "post_untied": {"norm_position": "post", "tie_embeddings": False},
}


def tiny(**kw) -> TransformerLM:
    args = dict(vocab_size=23, embedding_dim=16, num_layers=2, num_heads=4, max_seq_len=12)
    args.update(kw)
    return TransformerLM(**args)


def _randomize(model: TransformerLM) -> TransformerLM:
    """Non-trivial biases and norm gains so every parameter matters in equivalence tests."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


# -- norms and feed-forwards ----------------------------------------------------------------
def test_layernorm_matches_torch_and_handles_constant_rows():
    ln = LayerNorm(8)
    with torch.no_grad():
        ln.gamma.copy_(torch.randn(8))
        ln.beta.copy_(torch.randn(8))
    x = torch.randn(3, 5, 8) * 3 + 1
    ref = F.layer_norm(x, (8,), ln.gamma, ln.beta, 1e-5)
    torch.testing.assert_close(ln(x), ref, atol=1e-5, rtol=0)
    const = torch.full((2, 8), 7.0)
    torch.testing.assert_close(ln(const), ln.beta.expand(2, 8).detach())
    ln.fused = True
    torch.testing.assert_close(ln(x), ref, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="last dimension"):
        ln(torch.randn(2, 7))
    assert LayerNorm(8, bias=False).parameters()[0].shape == (8,)
    assert len(LayerNorm(8, bias=False).parameters()) == 1


def test_rmsnorm_matches_formula_and_fused():
    rn = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        rn.gamma.copy_(torch.randn(8))
    x = torch.randn(4, 8) * 2
    ref = rn.gamma * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(rn(x), ref, atol=1e-6, rtol=0)
    rn.fused = True
    torch.testing.assert_close(rn(x), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_feedforward_reference_and_fused(approximate):
    ff = FeedForward(8, approximate=approximate)
    assert ff.hidden_dim == 32
    x = torch.randn(2, 3, 8)
    h = x @ ff.fc1.W + ff.fc1.b
    ref = F.gelu(h, approximate=approximate) @ ff.fc2.W + ff.fc2.b
    torch.testing.assert_close(ff(x), ref, atol=1e-6, rtol=0)
    ff.fused = True
    torch.testing.assert_close(ff(x), ref, atol=1e-6, rtol=0)


def test_swiglu_matches_formula():
    sw = SwiGLU(12)
    assert sw.hidden_dim == swiglu_hidden_dim(12) == 32
    assert swiglu_hidden_dim(576) == 1536  # SmolLM2-135M's intermediate size
    x = torch.randn(2, 3, 12)
    ref = (F.silu(x @ sw.gate_proj.W) * (x @ sw.up_proj.W)) @ sw.down_proj.W
    torch.testing.assert_close(sw(x), ref, atol=1e-6, rtol=0)
    sw.fused = True
    torch.testing.assert_close(sw(x), ref, atol=1e-6, rtol=0)


def test_block_pre_and_post_norm():
    pre = Block(16, 4)
    post = Block(16, 4, norm_position="post")
    post.load_state_dict(pre.state_dict())
    x = torch.randn(2, 5, 16)
    y_pre = pre(x)
    expected = x + pre.attn(pre.ln1(x))
    expected = expected + pre.ffn(pre.ln2(expected))
    torch.testing.assert_close(y_pre, expected)
    y_post = post(x)
    h = post.ln1(x + post.attn(x))
    torch.testing.assert_close(y_post, post.ln2(h + post.ffn(h)))
    assert not torch.allclose(y_pre, y_post)
    with pytest.raises(ValueError, match="norm_position"):
        Block(16, 4, norm_position="middle")
    with pytest.raises(ValueError, match="mlp"):
        Block(16, 4, mlp="relu")
    with pytest.raises(ValueError, match="norm"):
        Block(16, 4, norm="batchnorm")


# -- TransformerLM ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_shapes_and_causality(variant):
    model = _randomize(tiny(**VARIANTS[variant]))
    idx = torch.randint(0, 23, (3, 10))
    logits = model(idx)
    assert logits.shape == (3, 10, 23) and logits.dtype == torch.float32
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 23
    logits2 = model(changed)
    torch.testing.assert_close(logits2[:, :6], logits[:, :6], atol=0, rtol=0)
    assert not torch.allclose(logits2[:, 6:], logits[:, 6:])


def test_too_long_and_bad_ids_raise():
    model = tiny()
    assert model.max_seq_len == 12 and model.vocab_size == 23
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 23\)"):
        model(torch.full((1, 3), 23))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="positional"):
        tiny(positional="alibi")
    with pytest.raises(ValueError, match="divisible"):
        tiny(embedding_dim=18)
    with pytest.raises(ValueError, match="hidden_dim"):
        tiny(hidden_dim=0)
    with pytest.raises(ValueError, match="num_kv_heads"):
        tiny(num_kv_heads=3)
    with pytest.raises(ValueError, match="attention_impl"):
        tiny(attention_impl="flash")


def _closed_form_params(V, D, L, T, hidden=None, *, learned=True, bias=True, tied=True,
                        mlp="gelu", kv_heads=None, H=4, norm="layernorm"):  # fmt: skip
    hd = D // H
    kv = (kv_heads or H) * hd
    attn = D * D * 2 + 2 * D * kv + (2 * D + 2 * kv if bias else 0)
    if mlp == "gelu":
        F_ = hidden or 4 * D
        ffn = 2 * D * F_ + ((F_ + D) if bias else 0)
    else:
        F_ = hidden or swiglu_hidden_dim(D)
        ffn = 3 * D * F_ + ((2 * F_ + D) if bias else 0)
    norm_p = D * (2 if (norm == "layernorm" and bias) else 1)
    block = attn + ffn + 2 * norm_p
    total = V * D + (T * D if learned else 0) + L * block + norm_p
    total += V if bias else 0
    total += 0 if tied else V * D
    return total


def test_parameter_counts_match_closed_form():
    m = TransformerLM(65, 128, 4, 4, 64)
    # GPT-2 form: V·D + T·D + L·(12·D² + 13·D) + 2·D + V
    assert m.num_parameters() == 65 * 128 + 64 * 128 + 4 * (12 * 128**2 + 13 * 128) + 2 * 128 + 65
    assert m.num_parameters() == _closed_form_params(65, 128, 4, 64)
    cases = [
        (dict(), dict()),
        (dict(positional="rope"), dict(learned=False)),
        (dict(bias=False), dict(bias=False)),
        (dict(tie_embeddings=False), dict(tied=False)),
        (dict(mlp="swiglu", hidden_dim=40), dict(mlp="swiglu", hidden=40)),
        (dict(num_kv_heads=1, norm="rmsnorm"), dict(kv_heads=1, norm="rmsnorm")),
    ]
    for kw, form in cases:
        m = tiny(**kw)
        assert m.num_parameters() == _closed_form_params(23, 16, 2, 12, **form), kw
    m = tiny()
    assert m.num_parameters(exclude_embeddings=True) == m.num_parameters() - 23 * 16 - 12 * 16


def test_flops_per_token_formula():
    m = TransformerLM(65, 128, 4, 4, 64)
    n = m.num_parameters() - 64 * 128  # position table is a lookup, not a matmul
    assert m.estimate_flops_per_token() == 6 * n + 12 * 4 * 64 * 128
    assert m.estimate_flops_per_token(seq_len=32) == 6 * n + 12 * 4 * 32 * 128


def test_weights_tied_and_init_scaled_for_depth():
    torch.manual_seed(0)
    m = TransformerLM(500, 256, 8, 4, 64)
    names = [n for n, _ in m.named_parameters()]
    assert names.count("token_embed.weight") == 1 and m.lm_head is None
    assert m.head_bias is not None and (m.head_bias == 0).all()
    b = m.blocks[0]
    assert b.attn.q_proj.W.std().item() == pytest.approx(0.02, rel=0.05)
    assert b.ffn.fc1.W.std().item() == pytest.approx(0.02, rel=0.05)
    assert b.attn.out_proj.W.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert b.ffn.fc2.W.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert (b.ln1.gamma == 1).all() and (b.attn.q_proj.b == 0).all()
    # gradient reaches the tied table from both ends
    idx = torch.randint(0, 500, (2, 8))
    m(idx).sum().backward()
    assert m.token_embed.weight.grad is not None


def test_config_json_round_trip_and_pretrained_round_trip(tmp_path):
    model = _randomize(tiny(**VARIANTS["llama"], attention_impl="sdpa"))
    cfg = model.config
    assert TransformerConfig.from_json(cfg.to_json()) == cfg
    assert TransformerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        TransformerConfig.from_dict({**cfg.to_dict(), "n_embd": 3})
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded = TransformerLM.from_pretrained(tmp_path / "m")
    assert loaded.config == cfg
    idx = torch.randint(0, 23, (2, 7))
    torch.testing.assert_close(loaded(idx), model(idx), atol=0, rtol=0)
    again = TransformerLM.from_config(cfg)
    assert again.num_parameters() == model.num_parameters()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_forward_cached_equals_forward(variant, impl):
    model = _randomize(tiny(**VARIANTS[variant], attention_impl=impl)).eval()
    idx = torch.randint(0, 23, (2, 12))
    full = model(idx)
    caches = model.new_kv_cache()
    assert len(caches) == 2 and all(isinstance(c, LayerKVCache) for c in caches)
    parts = [model.forward_cached(idx[:, :5], caches)]  # prefill
    for t in range(5, 12):
        parts.append(model.forward_cached(idx[:, t : t + 1], caches))
    assert caches[0].seq_len == 12
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.forward_cached(idx[:, :1], caches)
    with pytest.raises(ValueError, match="one LayerKVCache per block"):
        model.forward_cached(idx[:, :1], caches[:1])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_path_equals_reference(variant):
    """attention_impl='sdpa' + fused=True gives the reference's logits and gradients."""
    ref = _randomize(tiny(**VARIANTS[variant]))
    fast = tiny(**VARIANTS[variant], attention_impl="sdpa", fused=True)
    fast.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 23, (3, 12))
    y = torch.randint(0, 23, (3, 12))
    lr, lf = ref(idx), fast(idx)
    torch.testing.assert_close(lf, lr, atol=1e-5, rtol=0)
    F.cross_entropy(lr.reshape(-1, 23), y.reshape(-1)).backward()
    F.cross_entropy(lf.reshape(-1, 23), y.reshape(-1)).backward()
    for (name, pr), pf in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(pf.grad, pr.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_dropout_only_in_training():
    model = tiny(dropout=0.3)
    idx = torch.randint(0, 23, (2, 8))
    assert not torch.allclose(model(idx), model(idx))
    model.eval()
    torch.testing.assert_close(model(idx), model(idx))


def test_matches_hf_gpt2_logits():
    transformers = pytest.importorskip("transformers")
    from g2c.transformer.hf_gpt2 import load_hf_gpt2

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial biases and norm gains
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        expected = hf(idx).logits
    for overrides in ({}, {"attention_impl": "sdpa", "fused": True}):
        model = load_hf_gpt2(hf, **overrides)
        with torch.no_grad():
            torch.testing.assert_close(model(idx), expected, atol=1e-5, rtol=0)


def test_attention_weights_per_layer_are_causal_distributions():
    from g2c.transformer import TransformerLM

    model = TransformerLM(50, 32, 3, 4, 16, positional="rope")
    idx = torch.randint(0, 50, (2, 10))
    maps = model.attention_weights(idx)
    assert len(maps) == 3 and model.training  # mode restored
    for w in maps:
        assert w.shape == (2, 4, 10, 10)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 10))
        assert torch.all(w.triu(1) == 0)
    # layer 0 equals the first block's attention on the normed embeddings
    x = model.token_embed(idx)
    first = model.blocks[0].attn.attention_weights(model.blocks[0].ln1(x))
    torch.testing.assert_close(maps[0], first)
    with pytest.raises(ValueError):
        model.attention_weights(torch.randint(0, 50, (1, 17)))
