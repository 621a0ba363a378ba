"""Tests for g2c.lora: LoRALinear (course Linear and torch.nn.Linear), injection by name,
trainable-only-adapters, merge/unmerge, disable_lora, adapter state dicts and files.

Tiny models in-process. Merge exactness is checked in float64 (the math: ≤ 1e-10) and in
float32 (rounding of W + ΔW: ≤ 1e-5; measured ~3e-6 on these models).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from g2c.artifacts import ArtifactError
from g2c.lora import (
    ADAPTER_MANIFEST,
    ADAPTER_WEIGHTS,
    LoRALinear,
    TorchLoRALinear,
    count_parameters,
    disable_lora,
    inject_lora,
    linear_layers,
    load_lora,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    save_lora,
    unload_lora,
    unmerge_lora,
)
from g2c.nn import Linear
from g2c.training import AdamW
from g2c.transformer import TransformerLM

ALL = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def tiny_lm(seed: int = 0, dtype: torch.dtype = torch.float32, **kw) -> TransformerLM:
    args = dict(vocab_size=29, embedding_dim=16, num_layers=2, num_heads=4, max_seq_len=12)
    args.update(kw)
    g = torch.Generator().manual_seed(seed)
    return TransformerLM(**args, generator=g).to(dtype=dtype)


class TorchLM(torch.nn.Module):
    """A small torch model with the usual projection names (not a g2c model)."""

    def __init__(self, vocab: int = 19, d: int = 12, layers: int = 2) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {
                    "q_proj": torch.nn.Linear(d, d),
                    "v_proj": torch.nn.Linear(d, d, bias=False),
                    "mlp": torch.nn.Linear(d, d),
                }
            )  # fmt: skip
            for _ in range(layers)
        )
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for layer in self.layers:
            x = x + torch.tanh(layer["q_proj"](x)) * layer["v_proj"](x)
            x = x + torch.relu(layer["mlp"](x))
        return self.head(x)


def _randomize_B(model, std: float = 0.05, seed: int = 1) -> None:
    """Non-zero B so the adapters change the output (B = 0 at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * std)


def _ids(vocab: int, shape=(2, 12), seed: int = 3) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


# -- LoRALinear ------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["g2c", "torch"])
def test_lora_linear_shapes_init_and_identity_at_start(flavour):
    base = Linear(6, 5) if flavour == "g2c" else torch.nn.Linear(6, 5)
    layer = LoRALinear(base, 3, alpha=6)
    assert isinstance(layer, LoRALinear)
    assert isinstance(layer, TorchLoRALinear) == (flavour == "torch")
    assert layer.lora_A.shape == (6, 3) and layer.lora_B.shape == (3, 5)
    assert layer.scaling == 2.0 and layer.rank == 3 and layer.alpha == 6
    assert torch.all(layer.lora_B == 0)
    assert layer.lora_A.abs().max() <= 1 / math.sqrt(6) and layer.lora_A.std() > 0
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad
    assert not any(t.requires_grad for t in layer._base_tensors())  # base frozen once wrapped
    x = torch.randn(4, 7, 6)
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the base layer
    assert LoRALinear(Linear(6, 5), 2).scaling == 1.0  # alpha defaults to rank


@pytest.mark.parametrize("flavour", ["g2c", "torch"])
def test_lora_linear_computes_base_plus_scaled_low_rank_update(flavour):
    base = Linear(6, 5) if flavour == "g2c" else torch.nn.Linear(6, 5)
    layer = LoRALinear(base, 2, alpha=8)
    _randomize_B(layer)
    x = torch.randn(3, 6)
    expected = base(x) + (x @ layer.lora_A @ layer.lora_B) * 4.0
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)
    # what a fused kernel reads instead of calling the layer: the same map
    w = layer.W if flavour == "g2c" else layer.weight.T
    b = layer.b if flavour == "g2c" else layer.bias
    torch.testing.assert_close(x @ w + b, expected, rtol=0, atol=1e-6)


def test_torch_flavour_registers_as_a_torch_module():
    layer = LoRALinear(torch.nn.Linear(4, 3), 2)
    assert isinstance(layer, torch.nn.Module)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"lora_A", "lora_B", "base.weight", "base.bias"}
    assert set(layer.state_dict()) == names
    assert layer.training and not layer.eval().training


@pytest.mark.parametrize("rank", [0, -2])
def test_bad_rank_alpha_dropout_and_base_are_rejected_before_touching_base(rank):
    base = Linear(4, 4)
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(base, rank)
    with pytest.raises(TypeError, match="rank"):
        LoRALinear(base, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(base, 2, alpha=0)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(base, 2, dropout=1.0)
    with pytest.raises(TypeError, match="base"):
        LoRALinear(torch.nn.Conv1d(4, 4, 1), 2)
    assert base.W.requires_grad  # nothing frozen by a rejected call


@pytest.mark.parametrize("flavour", ["g2c", "torch"])
def test_merge_unmerge_are_idempotent_and_exact(flavour):
    base = Linear(8, 6) if flavour == "g2c" else torch.nn.Linear(8, 6)
    base = base.to(dtype=torch.float64) if flavour == "g2c" else base.double()
    layer = LoRALinear(base, 3, alpha=6)
    _randomize_B(layer)
    w0 = layer._base_weight().clone()
    x = torch.randn(5, 8, dtype=torch.float64)
    adapter_out = layer(x).detach()
    layer.merge()
    w1 = layer._base_weight().clone()
    layer.merge()  # idempotent
    assert layer.merged and torch.equal(layer._base_weight(), w1)
    torch.testing.assert_close(w1 - w0, layer.delta_weight().detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(layer(x), adapter_out, rtol=0, atol=1e-12)
    layer.unmerge()
    layer.unmerge()  # idempotent
    assert not layer.merged
    torch.testing.assert_close(layer._base_weight(), w0, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer(x), adapter_out, rtol=0, atol=1e-12)


# -- whole models ------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused-default"])
def test_merged_transformer_lm_equals_adapter_path(fused):
    """Max logit difference merged vs adapter: float64 ≤ 1e-10 (the math is exact), float32
    ≤ 1e-5 (rounding W + ΔW once per layer). The fused default path reads W through
    LoRALinear.W (the effective weight), so it adapts too."""
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        model = tiny_lm(fused=fused, dtype=dtype)
        ids = _ids(29)
        base_logits = model(ids).detach()
        names = inject_lora(model, ALL, 4, alpha=8)
        assert len(names) == 12
        assert torch.equal(model(ids), base_logits)  # B = 0
        _randomize_B(model)
        adapter = model(ids).detach()
        assert (adapter - base_logits).abs().max() > 0.1  # the adapters matter
        merge_lora(model)
        merge_lora(model)
        assert (model(ids) - adapter).abs().max() <= tol
        unmerge_lora(model)
        assert (model(ids) - adapter).abs().max() <= tol
        with disable_lora(model):
            assert (model(ids) - base_logits).abs().max() <= tol


def test_llama_style_model_with_gqa_and_swiglu():
    model = tiny_lm(positional="rope", norm="rmsnorm", mlp="swiglu", num_kv_heads=2, bias=False,
                    fused=False, dtype=torch.float64)  # fmt: skip
    ids = _ids(29)
    names = inject_lora(model, ["q_proj", "v_proj", "down_proj"], 2)
    assert "blocks.1.ffn.down_proj" in names and len(names) == 6
    v = dict(lora_layers(model))["blocks.0.attn.v_proj"]
    assert v.lora_B.shape == (2, 8)  # (r, kv_dim) with 2 of 4 heads
    _randomize_B(model)
    adapter = model(ids).detach()
    merge_lora(model)
    assert (model(ids) - adapter).abs().max() <= 1e-10


def test_torch_model_inject_merge_and_counts():
    torch.manual_seed(0)
    model = TorchLM().double()
    ids = _ids(19)
    base = model(ids).detach()
    total = sum(p.numel() for p in model.parameters())
    names = inject_lora(model, ["q_proj", "v_proj"], 3)
    assert names == ["layers.0.q_proj", "layers.0.v_proj", "layers.1.q_proj", "layers.1.v_proj"]
    assert all(isinstance(model.get_submodule(n), TorchLoRALinear) for n in names)
    lora = 4 * 3 * (12 + 12)
    assert count_parameters(model) == (total - 4 * (12 * 12) - 2 * 12 + lora, total + lora)
    mark_only_lora_trainable(model)
    assert count_parameters(model) == (lora, total + lora)
    assert torch.equal(model(ids), base)
    _randomize_B(model)
    adapter = model(ids).detach()
    merge_lora(model)
    assert (model(ids) - adapter).abs().max() <= 1e-10
    unmerge_lora(model)
    with disable_lora(model):
        assert (model(ids) - base).abs().max() <= 1e-10
    assert set(lora_state_dict(model)) <= set(model.state_dict())  # same dotted names


def test_inject_matching_rule_and_errors():
    model = tiny_lm()
    assert len(inject_lora(model, ["attn.out_proj"], 2)) == 2
    assert inject_lora(model, ["blocks.1.ffn.fc1"], 2) == ["blocks.1.ffn.fc1"]
    assert "blocks.0.ffn.fc1" in dict(linear_layers(model))  # the other fc1 is still plain
    before = lora_state_dict(model)
    with pytest.raises(ValueError, match=r"'v_prj' matches no linear layer.*'fc1'"):
        inject_lora(model, ["q_proj", "v_prj"], 2)
    with pytest.raises(ValueError, match="already have a LoRA adapter"):
        inject_lora(model, ["out_proj"], 2)
    with pytest.raises(TypeError, match="list of layer names"):
        inject_lora(model, "q_proj", 2)
    with pytest.raises(ValueError, match="rank"):
        inject_lora(model, ["q_proj"], 0)
    with pytest.raises(TypeError, match="model"):
        inject_lora(object(), ["q_proj"], 2)
    assert set(lora_state_dict(model)) == set(before)  # nothing injected by a failed call
    assert "base" not in {n.rsplit(".", 1)[-1] for n, _ in linear_layers(model)}


def test_only_lora_params_get_gradients_and_training_moves_only_them():
    model = tiny_lm()
    inject_lora(model, ["q_proj", "v_proj"], 4, alpha=8)
    mark_only_lora_trainable(model)
    params = model.parameters()
    assert {n.rsplit(".", 1)[-1] for n, _ in model.named_parameters()} == {"lora_A", "lora_B"}
    frozen = {n: t.clone() for n, t in model.named_tensors() if not t.requires_grad}
    ids = _ids(29, (4, 12))
    opt = AdamW(params, lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(15):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 29), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        if not losses:  # B = 0: A gets no gradient at the first step, B does
            first = dict(lora_layers(model))["blocks.0.attn.q_proj"]
            assert torch.all(first.lora_A.grad == 0) and first.lora_B.grad.abs().sum() > 0
        assert all(t.grad is None for t in frozen.values() if t.is_leaf)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    assert all(torch.equal(t, frozen[n]) for n, t in model.named_tensors() if n in frozen)


def test_count_parameters_on_transformer_lm():
    model = tiny_lm()  # D=16, L=2, V=29, T=12: 8,861 parameters
    total = model.num_parameters()
    assert count_parameters(model) == (total, total)
    inject_lora(model, ["q_proj", "v_proj"], 4)
    lora = 2 * 2 * 4 * (16 + 16)  # layers × targets × r·(in + out)
    assert count_parameters(model) == (total - 2 * 2 * 16 * 16 - 2 * 2 * 16 + lora, total + lora)
    mark_only_lora_trainable(model)
    assert count_parameters(model) == (lora, total + lora)
    model.to("cpu")  # moving tensors keeps the count
    assert count_parameters(model) == (lora, total + lora)


def test_lora_state_dict_round_trip_and_mismatch_errors():
    src, dst = tiny_lm(), tiny_lm()
    inject_lora(src, ["q_proj", "fc2"], 2)
    inject_lora(dst, ["q_proj", "fc2"], 2)
    _randomize_B(src)
    state = lora_state_dict(src)
    assert sorted(state) == sorted(
        f"blocks.{i}.{p}.lora_{ab}" for i in range(2) for p in ("attn.q_proj", "ffn.fc2")
        for ab in "AB"
    )  # fmt: skip
    assert state["blocks.0.ffn.fc2.lora_A"].shape == (64, 2)
    ids = _ids(29)
    assert not torch.equal(dst(ids), src(ids))
    load_lora_state_dict(dst, state)
    assert torch.equal(dst(ids), src(ids))
    before = {k: v.clone() for k, v in lora_state_dict(dst).items()}
    bad = dict(state)
    bad.pop("blocks.1.attn.q_proj.lora_B")
    with pytest.raises(ValueError, match="missing LoRA key 'blocks.1.attn.q_proj.lora_B'"):
        load_lora_state_dict(dst, bad)
    with pytest.raises(ValueError, match="unexpected key 'extra.lora_A'"):
        load_lora_state_dict(dst, {**state, "extra.lora_A": torch.zeros(1)})
    wrong = {**state, "blocks.0.attn.q_proj.lora_A": torch.zeros(16, 3)}
    with pytest.raises(ValueError, match=r"blocks.0.attn.q_proj.lora_A.*\(16, 3\)"):
        load_lora_state_dict(dst, wrong)
    assert all(torch.equal(v, before[k]) for k, v in lora_state_dict(dst).items())


def test_save_load_adapter_and_wrong_base(tmp_path):
    model = tiny_lm(seed=0)
    inject_lora(model, ["q_proj", "v_proj"], 4, alpha=8)
    _randomize_B(model)
    ids = _ids(29)
    adapted = model(ids).detach()
    out = save_lora(model, tmp_path / "ad", base_model="tiny-lm-seed0")
    assert sorted(p.name for p in out.iterdir()) == sorted([ADAPTER_MANIFEST, ADAPTER_WEIGHTS])
    manifest = json.loads((out / ADAPTER_MANIFEST).read_text())
    assert manifest["base_model"] == {"name": "tiny-lm-seed0"}
    assert manifest["rank"] == 4 and manifest["alpha"] == 8
    assert manifest["targets"][0] == "blocks.0.attn.q_proj" and len(manifest["targets"]) == 4
    assert manifest["base_fingerprint"].startswith("sha256:")
    assert manifest["num_parameters"] == 4 * 4 * 32

    fresh = tiny_lm(seed=0)
    assert load_lora(fresh, out) == manifest["targets"]
    assert torch.equal(fresh(ids), adapted)
    again = tiny_lm(seed=0, dtype=torch.float64)  # same base in another dtype: same fingerprint
    load_lora(again, out)
    assert (again(ids) - adapted.double()).abs().max() < 1e-5

    other = tiny_lm(seed=1)  # same shapes, other weights
    with pytest.raises(ValueError, match="trained on the base model.*tiny-lm-seed0"):
        load_lora(other, out)
    assert not lora_layers(other)  # nothing injected
    load_lora(other, out, check_base=False)  # deliberately onto another base
    assert len(lora_layers(other)) == 4
    wide = tiny_lm(embedding_dim=32)
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(32, 32\).*tiny-lm-seed0"):
        load_lora(wide, out)
    with pytest.raises(ValueError, match="does not have.*tiny-lm-seed0"):
        load_lora(tiny_lm(num_layers=1), out)

    merge_lora(model)
    with pytest.raises(ValueError, match="unmerge"):
        save_lora(model, tmp_path / "merged", base_model="x")
    with pytest.raises(TypeError, match="base_model"):
        save_lora(model, tmp_path / "x", base_model="")

    weights = out / ADAPTER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated
    with pytest.raises(ArtifactError, match=ADAPTER_WEIGHTS):
        load_lora(tiny_lm(seed=0), out)
    (out / ADAPTER_MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match=ADAPTER_MANIFEST):
        load_lora(tiny_lm(seed=0), out)
    with pytest.raises(FileNotFoundError):
        load_lora(tiny_lm(seed=0), tmp_path / "nothing")


def test_disable_lora_gives_the_base_model_and_restores_state():
    model = tiny_lm()
    ids = _ids(29)
    base = model(ids).detach()
    with pytest.raises(ValueError, match="inject_lora"):
        with disable_lora(model):
            pass
    inject_lora(model, ["q_proj", "fc1"], 2)
    _randomize_B(model)
    adapted = model(ids).detach()
    with disable_lora(model) as m:
        assert m is model and torch.equal(model(ids), base)  # bit-identical: a flag, no math
        with disable_lora(model):
            assert torch.equal(model(ids), base)
        assert torch.equal(model(ids), base)
    assert torch.equal(model(ids), adapted)
    with pytest.raises(RuntimeError, match="boom"):
        with disable_lora(model):
            raise RuntimeError("boom")
    assert torch.equal(model(ids), adapted)
    merge_lora(model)
    with disable_lora(model):
        assert (model(ids) - base).abs().max() <= 1e-5  # unmerged for the block
    assert all(layer.merged for _, layer in lora_layers(model))


def test_lora_dropout_acts_on_the_adapter_input_in_training_only():
    layer = LoRALinear(Linear(8, 8), 4, dropout=0.5)
    _randomize_B(layer, std=1.0)
    x = torch.randn(64, 8)
    clean = layer.base(x) + (x @ layer.lora_A @ layer.lora_B) * layer.scaling
    assert not torch.allclose(layer(x), clean)  # training: dropout on
    layer.eval()
    torch.testing.assert_close(layer(x), clean)
    model = tiny_lm()  # the fused default calls adapted layers, so LoRA dropout applies there too
    inject_lora(model, ["q_proj"], 2, dropout=0.5)
    _randomize_B(model, std=1.0)
    ids = _ids(29)
    torch.manual_seed(1)
    a = model(ids)
    torch.manual_seed(2)
    assert not torch.allclose(a, model(ids))  # training: a different dropout mask each call
    model.eval()
    torch.testing.assert_close(model(ids), model(ids))  # eval: no dropout
    ref = tiny_lm(fused=False)
    inject_lora(ref, ["q_proj"], 2, dropout=0.1)
    ref(_ids(29))  # the reference path calls the layer: dropout applies


def test_unload_lora_merges_into_plain_layers():
    model = tiny_lm(dtype=torch.float64, fused=False)
    inject_lora(model, ["v_proj", "fc2"], 2)
    _randomize_B(model)
    ids = _ids(29)
    adapted = model(ids).detach()
    names = unload_lora(model)
    assert len(names) == 4 and not lora_layers(model)
    assert type(model.blocks[0].attn.v_proj) is Linear
    assert (model(ids) - adapted).abs().max() <= 1e-10
    assert set(model.state_dict()) == set(tiny_lm().state_dict())  # plain checkpoint names
    assert model.num_parameters() == tiny_lm().num_parameters()  # base trainable again


def test_matches_peft_lora_layer():
    peft = pytest.importorskip(
        "peft", reason="peft not installed (optional reference for LoRALinear)"
    )
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(10, 7))
    ours = LoRALinear(torch.nn.Linear(10, 7), 4, alpha=8)
    ours.base.load_state_dict(base[0].state_dict())
    _randomize_B(ours)
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["0"])
    ref = peft.get_peft_model(base, config)  # the public API: wraps layer "0"
    layer = ref.base_model.model[0]
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.lora_A.T)  # peft: A (r, in), B (out, r)
        layer.lora_B["default"].weight.copy_(ours.lora_B.T)
    x = torch.randn(5, 10)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)
