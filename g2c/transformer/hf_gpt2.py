"""Copy Hugging Face GPT-2 weights into the course TransformerLM (nanoGPT's from_pretrained idea).

GPT-2's ``Conv1D`` stores weights (in, out) and computes x @ W + b, the same layout as the course
``Linear``; the fused ``c_attn`` (D, 3D) splits into q, k, v. GPT-2 uses the tanh GELU
("gelu_new"), LayerNorm eps 1e-5, learned positions, tied embeddings and no output bias, so the
course model built by :func:`gpt2_config` reproduces its logits (tested within 1e-5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from g2c.transformer.model import TransformerConfig, TransformerLM

#: GPT2Config defaults, for a config.json that leaves a field out.
_GPT2_DEFAULTS = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "layer_norm_epsilon": 1e-5,
}


def gpt2_config(hf_config: Any, **overrides: Any) -> TransformerConfig:
    """TransformerConfig matching a ``transformers.GPT2Config`` or its ``config.json`` dict
    (overrides: e.g. attention_impl). Missing fields take GPT2Config's defaults."""
    if isinstance(hf_config, Mapping):
        get = lambda k: hf_config.get(k, _GPT2_DEFAULTS[k])  # noqa: E731
    else:
        get = lambda k: getattr(hf_config, k, _GPT2_DEFAULTS[k])  # noqa: E731
    kw = dict(
        vocab_size=get("vocab_size"),
        embedding_dim=get("n_embd"),
        num_layers=get("n_layer"),
        num_heads=get("n_head"),
        max_seq_len=get("n_positions"),
        hidden_dim=get("n_inner"),
        norm_eps=get("layer_norm_epsilon"),
        gelu_approximate="tanh",
    )
    kw.update(overrides)
    return TransformerConfig(**kw)


@torch.no_grad()
def load_gpt2_state_dict(model: TransformerLM, state: Mapping[str, torch.Tensor]) -> TransformerLM:
    """Copy a Hugging Face GPT-2 state dict into ``model`` in place; returns it.

    Names may carry GPT2LMHeadModel's ``transformer.`` prefix or not (the hub's
    ``model.safetensors`` has none); Conv1D weights are (in, out), like g2c's ``Linear.W``.
    A missing or wrongly shaped tensor → ValueError naming it; head_bias is zeroed (GPT-2 has
    none).
    """
    sd = {k.removeprefix("transformer."): v for k, v in state.items()}

    def put(dst: torch.Tensor, name: str, cols: slice | None = None) -> None:
        if name not in sd:
            raise ValueError(f"GPT-2 state dict has no {name!r}")
        src = sd[name].float()
        src = src if cols is None else src[..., cols]
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"{name}: shape {tuple(src.shape)} != expected {tuple(dst.shape)}")
        dst.copy_(src)

    D = model.config.embedding_dim
    put(model.token_embed.weight, "wte.weight")
    put(model.pos_embed.weight, "wpe.weight")
    for i, block in enumerate(model.blocks):
        p = f"h.{i}."
        put(block.ln1.gamma, p + "ln_1.weight")
        put(block.ln1.beta, p + "ln_1.bias")
        for j, lin in enumerate((block.attn.q_proj, block.attn.k_proj, block.attn.v_proj)):
            cols = slice(j * D, (j + 1) * D)  # c_attn (D, 3D) = [q | k | v]
            put(lin.W, p + "attn.c_attn.weight", cols)
            put(lin.b, p + "attn.c_attn.bias", cols)
        put(block.attn.out_proj.W, p + "attn.c_proj.weight")
        put(block.attn.out_proj.b, p + "attn.c_proj.bias")
        put(block.ln2.gamma, p + "ln_2.weight")
        put(block.ln2.beta, p + "ln_2.bias")
        put(block.ffn.fc1.W, p + "mlp.c_fc.weight")
        put(block.ffn.fc1.b, p + "mlp.c_fc.bias")
        put(block.ffn.fc2.W, p + "mlp.c_proj.weight")
        put(block.ffn.fc2.b, p + "mlp.c_proj.bias")
    put(model.ln_final.gamma, "ln_f.weight")
    put(model.ln_final.beta, "ln_f.bias")
    model.head_bias.zero_()
    return model


def load_hf_gpt2(hf_model: Any, **overrides: Any) -> TransformerLM:
    """A TransformerLM holding a copy of ``hf_model``'s weights (a GPT2LMHeadModel).

    ``overrides`` change config fields that do not affect the weights (attention_impl, fused,
    dropout). The model is returned in eval mode; head_bias is zero (GPT-2 has none).
    """
    model = TransformerLM.from_config(gpt2_config(hf_model.config, **overrides))
    return load_gpt2_state_dict(model, hf_model.state_dict()).eval()
