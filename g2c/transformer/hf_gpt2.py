"""Copy Hugging Face GPT-2 weights into the course TransformerLM (nanoGPT's from_pretrained idea).

GPT-2's ``Conv1D`` stores weights (in, out) and computes x @ W + b, the same layout as the course
``Linear``; the fused ``c_attn`` (D, 3D) splits into q, k, v. GPT-2 uses the tanh GELU
("gelu_new"), LayerNorm eps 1e-5, learned positions, tied embeddings and no output bias, so the
course model built by :func:`gpt2_config` reproduces its logits (tested within 1e-5).
"""

from __future__ import annotations

from typing import Any

import torch

from g2c.transformer.model import TransformerConfig, TransformerLM


def gpt2_config(hf_config: Any, **overrides: Any) -> TransformerConfig:
    """TransformerConfig matching a ``transformers.GPT2Config`` (overrides: e.g. attention_impl)."""
    kw = dict(
        vocab_size=hf_config.vocab_size,
        embedding_dim=hf_config.n_embd,
        num_layers=hf_config.n_layer,
        num_heads=hf_config.n_head,
        max_seq_len=hf_config.n_positions,
        hidden_dim=hf_config.n_inner,
        norm_eps=hf_config.layer_norm_epsilon,
        gelu_approximate="tanh",
    )
    kw.update(overrides)
    return TransformerConfig(**kw)


@torch.no_grad()
def load_hf_gpt2(hf_model: Any, **overrides: Any) -> TransformerLM:
    """A TransformerLM holding a copy of ``hf_model``'s weights (a GPT2LMHeadModel).

    ``overrides`` change config fields that do not affect the weights (attention_impl, fused,
    dropout). The model is returned in eval mode; head_bias is zero (GPT-2 has none).
    """
    sd = {k: v.detach().float() for k, v in hf_model.state_dict().items()}
    model = TransformerLM.from_config(gpt2_config(hf_model.config, **overrides))
    D = model.config.embedding_dim
    model.token_embed.weight.copy_(sd["transformer.wte.weight"])
    model.pos_embed.weight.copy_(sd["transformer.wpe.weight"])
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        block.ln1.gamma.copy_(sd[p + "ln_1.weight"])
        block.ln1.beta.copy_(sd[p + "ln_1.bias"])
        W, b = sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"]  # (D, 3D), (3D,)
        for j, lin in enumerate((block.attn.q_proj, block.attn.k_proj, block.attn.v_proj)):
            lin.W.copy_(W[:, j * D : (j + 1) * D])
            lin.b.copy_(b[j * D : (j + 1) * D])
        block.attn.out_proj.W.copy_(sd[p + "attn.c_proj.weight"])
        block.attn.out_proj.b.copy_(sd[p + "attn.c_proj.bias"])
        block.ln2.gamma.copy_(sd[p + "ln_2.weight"])
        block.ln2.beta.copy_(sd[p + "ln_2.bias"])
        block.ffn.fc1.W.copy_(sd[p + "mlp.c_fc.weight"])
        block.ffn.fc1.b.copy_(sd[p + "mlp.c_fc.bias"])
        block.ffn.fc2.W.copy_(sd[p + "mlp.c_proj.weight"])
        block.ffn.fc2.b.copy_(sd[p + "mlp.c_proj.bias"])
    model.ln_final.gamma.copy_(sd["transformer.ln_f.weight"])
    model.ln_final.beta.copy_(sd["transformer.ln_f.bias"])
    model.head_bias.zero_()
    return model.eval()
