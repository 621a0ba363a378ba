"""Tests for g2c.transformer: norms, feed-forwards, blocks, TransformerLM, fast path, GPT-2 parity."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from g2c.nn import SGD
from g2c.transformer import (
    FEED_FORWARDS,
    NORMS,
    Block,
    FeedForward,
    KVCache,
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
    ln = LayerNorm(8, fused=False)
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
    rn = RMSNorm(8, eps=1e-6, fused=False)
    with torch.no_grad():
        rn.gamma.copy_(torch.randn(8))
    x = torch.randn(4, 8) * 2
    ref = rn.gamma * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(rn(x), ref, atol=1e-6, rtol=0)
    rn.fused = True
    torch.testing.assert_close(rn(x), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_feedforward_reference_and_fused(approximate):
    ff = FeedForward(8, approximate=approximate, fused=False)
    assert ff.hidden_dim == 32
    x = torch.randn(2, 3, 8)
    h = x @ ff.fc1.W + ff.fc1.b
    ref = F.gelu(h, approximate=approximate) @ ff.fc2.W + ff.fc2.b
    torch.testing.assert_close(ff(x), ref, atol=1e-6, rtol=0)
    ff.fused = True
    torch.testing.assert_close(ff(x), ref, atol=1e-6, rtol=0)


def test_swiglu_matches_formula():
    sw = SwiGLU(12, fused=False)
    assert sw.hidden_dim == swiglu_hidden_dim(12) == 32
    assert swiglu_hidden_dim(576) == 1536  # SmolLM2-135M's intermediate size
    x = torch.randn(2, 3, 12)
    ref = (F.silu(x @ sw.gate_proj.W) * (x @ sw.up_proj.W)) @ sw.down_proj.W
    torch.testing.assert_close(sw(x), ref, atol=1e-6, rtol=0)
    sw.fused = True
    torch.testing.assert_close(sw(x), ref, atol=1e-6, rtol=0)


def test_layers_default_to_the_fused_path_and_tables_name_every_choice():
    assert LayerNorm(8).fused and RMSNorm(8).fused and FeedForward(8).fused and SwiGLU(8).fused
    assert set(NORMS) == {"layernorm", "rmsnorm"} and set(FEED_FORWARDS) == {"gelu", "swiglu"}
    cfg = TransformerConfig(23, 16, 2, 4, 12, norm="rmsnorm", mlp="swiglu", fused=False)
    blk = Block(16, 4, config=cfg)
    assert isinstance(blk.ln1, RMSNorm) and isinstance(blk.ffn, SwiGLU) and not blk.ffn.fused
    with pytest.raises(ValueError, match="config"):
        Block(16, 4, config=cfg, mlp="gelu")


def test_block_exposes_its_sizes():
    blk = Block(16, 4)
    assert (blk.embedding_dim, blk.num_heads, blk.hidden_dim, blk.causal) == (16, 4, 64, True)
    blk = Block(16, 4, 40, False, mlp="swiglu")
    assert (blk.hidden_dim, blk.causal) == (40, False)
    assert Block(12, 3, mlp="swiglu").hidden_dim == swiglu_hidden_dim(12)


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
    with pytest.raises(ValueError, match="init"):
        tiny(init="xavier")


@pytest.mark.parametrize("bad", [-1, 23, 10**6])
def test_out_of_vocabulary_ids_rejected_before_any_work(bad):
    model = tiny()
    idx = torch.tensor([[1, 2, bad]])
    for call in (
        lambda: model(idx),
        lambda: model.forward_prefill(idx, model.empty_kv_cache()),
        lambda: model.forward_cached(idx[:, -1:], model.empty_kv_cache()),
        lambda: model.attention_weights(idx),
    ):
        with pytest.raises(ValueError, match=r"\[0, 23\)"):
            call()
    cache = model.empty_kv_cache()
    with pytest.raises(ValueError):
        model.forward_prefill(idx, cache)
    assert cache.length == 0  # nothing was appended


def test_model_exposes_its_sizes():
    m = tiny(hidden_dim=24)
    sizes = (m.vocab_size, m.embedding_dim, m.num_layers, m.num_heads, m.max_seq_len, m.hidden_dim)
    assert sizes == (23, 16, 2, 4, 12, 24)
    assert tiny().hidden_dim == 64 and tiny(mlp="swiglu").hidden_dim == swiglu_hidden_dim(16)


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


def test_gpt2_init_std_and_residual_scaling():
    torch.manual_seed(0)
    m = TransformerLM(500, 256, 8, 4, 64, init="gpt2")
    assert m.token_embed.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.pos_embed.weight.std().item() == pytest.approx(0.02, rel=0.05)
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


def test_course_init_is_one_over_sqrt_fan_in():
    torch.manual_seed(0)
    m = TransformerLM(500, 256, 2, 4, 64)
    assert m.config.init == "course"
    b = m.blocks[0]
    for W, fan_in in ((b.attn.q_proj.W, 256), (b.ffn.fc1.W, 256), (b.ffn.fc2.W, 1024),
                      (b.attn.out_proj.W, 256), (m.token_embed.weight, 256)):  # fmt: skip
        assert W.std().item() == pytest.approx(1 / math.sqrt(fan_in), rel=0.05)
    assert (b.attn.q_proj.b == 0).all() and (b.ln1.gamma == 1).all() and (m.head_bias == 0).all()
    g = torch.Generator().manual_seed(3)
    a = TransformerLM(23, 16, 2, 4, 12, generator=g)
    g.manual_seed(3)
    c = TransformerLM(23, 16, 2, 4, 12, generator=g)
    for (name, pa), pc in zip(a.named_parameters(), c.parameters()):
        assert torch.equal(pa, pc), name  # reproducible from the generator


def test_tiny_default_model_learns_with_plain_sgd():
    """A repeating 5-token pattern: the default (course) init learns it with plain SGD."""
    torch.manual_seed(0)
    model = TransformerLM(8, 32, 2, 4, 16)
    opt = SGD(model.parameters(), lr=0.1)
    data = torch.tensor([1, 4, 2, 7, 3] * 8)
    x = torch.stack([data[i : i + 16] for i in range(5)])
    y = torch.stack([data[i + 1 : i + 17] for i in range(5)])
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x).reshape(-1, 8), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.5 and losses[-1] < 0.05 * losses[0], losses[::5]


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
@pytest.mark.parametrize("kernels", [{"fused": False}, {}, {"attention_impl": "sdpa"}])
def test_forward_cached_equals_forward(variant, kernels):
    model = _randomize(tiny(**VARIANTS[variant], **kernels)).eval()
    idx = torch.randint(0, 23, (2, 12))
    full = model(idx)
    cache = model.empty_kv_cache()
    assert isinstance(cache, KVCache) and len(cache.layers) == 2 and len(cache) == 0
    logits, cache = model.forward_prefill(idx[:, :5], cache)
    parts = [logits]
    for t in range(5, 12):
        logits, cache = model.forward_cached(idx[:, t : t + 1], cache)
        assert logits.shape == (2, 1, 23)
        parts.append(logits)
    assert cache.length == len(cache) == 12 and cache.layers[0].keys.shape[2] == 12
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.forward_cached(idx[:, :1], cache)
    with pytest.raises(ValueError, match="one new position"):
        model.forward_cached(idx[:, :2], model.empty_kv_cache())
    with pytest.raises(ValueError, match="2 layers"):
        model.forward_prefill(idx[:, :1], KVCache.empty(3))


def test_kv_cache_object():
    cache = KVCache.empty(3)
    assert len(cache.layers) == 3 and cache.length == 0 and len(cache) == 0
    assert all(isinstance(c, LayerKVCache) for c in cache.layers)
    with pytest.raises(ValueError, match="num_layers"):
        KVCache.empty(0)
    k = torch.randn(2, 4, 5, 8)
    for layer in cache.layers:
        layer.append(k, k)
    assert cache.length == 5
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.layers[0].keys.shape == (3, 4, 5, 8)
    torch.testing.assert_close(cache.layers[2].values[2], k[0])


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("fast_kernels", [{}, {"attention_impl": "sdpa"}])
def test_fast_path_equals_reference(variant, fast_kernels):
    """The default (fused) path and fused + SDPA give the reference's logits and gradients."""
    ref = _randomize(tiny(**VARIANTS[variant], fused=False))
    fast = tiny(**VARIANTS[variant], **fast_kernels)
    assert fast.config.fused and not ref.config.fused
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
    for overrides in ({"fused": False}, {}, {"attention_impl": "sdpa"}):
        model = load_hf_gpt2(hf, **overrides)
        with torch.no_grad():
            torch.testing.assert_close(model(idx), expected, atol=1e-5, rtol=0)


def test_attention_weights_per_layer_are_causal_distributions():
    from g2c.transformer import TransformerLM

    model = TransformerLM(50, 32, 3, 4, 16, positional="rope", attention_impl="sdpa")
    idx = torch.randint(0, 50, (2, 10))
    maps = model.attention_weights(idx)  # explicit weights even when SDPA runs the forward
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


# -- hidden states, the head alone, sequence packing ------------------------------------------
@pytest.mark.parametrize("name", ["course", "llama", "post_untied"])
def test_forward_hidden_then_head_is_forward(name):
    torch.manual_seed(0)
    model = _randomize(tiny(**VARIANTS[name]))
    idx = torch.randint(0, 23, (2, 9))
    h = model.forward_hidden(idx)
    assert h.shape == (2, 9, 16)
    torch.testing.assert_close(model.logits_from_hidden(h), model(idx), atol=0, rtol=0)
    rows = h[torch.tensor([0, 1]), torch.tensor([3, 8])]  # any leading shape: (2, D) -> (2, V)
    torch.testing.assert_close(model.logits_from_hidden(rows), model(idx)[[0, 1], [3, 8]])
    with pytest.raises(ValueError, match="embedding_dim"):
        model.logits_from_hidden(torch.randn(3, 15))


def _pack(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.cat(parts)[None]  # (1, sum of lengths)
    seg = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])[None]
    return ids, seg


@pytest.mark.parametrize(
    "kw",
    [
        {},  # learned positions, explicit attention
        {"fused": False},
        {"positional": "sinusoidal", "attention_impl": "sdpa"},
        {**VARIANTS["llama"]},  # RoPE
        {**VARIANTS["llama"], "attention_impl": "sdpa"},
        {**VARIANTS["llama"], "fused": False},
    ],
    ids=["learned", "learned-ref", "sinusoidal-sdpa", "rope", "rope-sdpa", "rope-ref"],
)
def test_packed_row_equals_separate_conversations_logits_and_grads(kw):
    torch.manual_seed(0)
    model = _randomize(tiny(**kw))
    parts = [torch.randint(0, 23, (n,)) for n in (4, 5, 3)]  # 3 conversations, 12 tokens
    ids, seg = _pack(parts)
    weights = torch.randn(1, 12, 23)  # a loss that touches every logit

    packed = model(ids, segment_ids=seg)  # (1, 12, V)
    (packed * weights).sum().backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    separate, start = [], 0
    for part in parts:
        logits = model(part[None])  # (1, n, V)
        (logits * weights[:, start : start + len(part)]).sum().backward()
        separate.append(logits)
        start += len(part)
    torch.testing.assert_close(packed, torch.cat(separate, dim=1), atol=1e-5, rtol=0)
    for g_packed, p in zip(packed_grads, model.parameters()):
        torch.testing.assert_close(g_packed, p.grad, atol=1e-5, rtol=1e-5)


def test_segment_ids_checked_and_one_segment_is_plain_forward():
    model = tiny()
    idx = torch.randint(0, 23, (2, 6))
    torch.testing.assert_close(model(idx, segment_ids=torch.zeros(2, 6, dtype=torch.long)),
                               model(idx), atol=1e-6, rtol=0)  # fmt: skip
    with pytest.raises(ValueError, match="segment_ids"):
        model(idx, segment_ids=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="segment_ids"):
        model(idx, segment_ids=torch.zeros(2, 6))


@pytest.mark.parametrize("packed", [False, True])
def test_activation_checkpointing_gives_the_same_gradients(packed):
    """Per-block recomputation in backward changes memory, not numbers (dropout included:
    torch.utils.checkpoint replays the RNG state)."""
    grads = []
    for flag in (False, True):
        model = TransformerLM(
            23, 16, 3, 2, 12, dropout=0.1, generator=torch.Generator().manual_seed(0)
        )
        model.activation_checkpointing = flag
        idx = torch.randint(0, 23, (2, 12), generator=torch.Generator().manual_seed(1))
        seg = torch.tensor([[0] * 5 + [1] * 7, [0] * 12]) if packed else None
        torch.manual_seed(3)
        logits = model(idx, segment_ids=seg)
        logits.square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    saved = []  # bytes autograd keeps for backward, with and without recomputation
    for flag in (False, True):
        model.activation_checkpointing = flag
        count = [0]

        def pack(t, count=count):
            count[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(idx, segment_ids=seg).sum()
        saved.append(count[0])
    assert saved[1] < saved[0] / 2, saved  # only the blocks' inputs (and the head) are kept
