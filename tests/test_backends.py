"""Backends: result types, g2c's local backend (chat template, streaming, native tool calls),
the OpenAI-compatible and Ollama HTTP backends against a live stand-in server on 127.0.0.1
that speaks the real wire formats (SSE / NDJSON) around the local backend, and benchmark().

The stand-in is a few FastAPI routes served by uvicorn in a thread; ``g2c serve`` (a later
issue) replaces it."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import torch

from g2c.inference import (
    Backend,
    BackendInfo,
    ChatResult,
    InferenceResult,
    LlamaCppBackend,
    LocalTransformerBackend,
    OllamaBackend,
    OllamaError,
    OpenAIBackend,
    OpenAIError,
    benchmark,
    percentile,
)
from g2c.sft import ChatTemplate
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

fastapi = pytest.importorskip("fastapi", reason="fastapi not installed (serve extra)")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn not installed (serve extra)")
Request = fastapi.Request  # route annotations must resolve at module level

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def local() -> LocalTransformerBackend:
    tok = BPETokenizer.with_course_special_tokens()  # byte-level, g2c's chat markers
    model = TransformerLM(
        len(tok.vocab), 32, 2, 4, 1024, positional="rope", norm="rmsnorm", mlp="swiglu",
        num_kv_heads=2, bias=False, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return LocalTransformerBackend(model, tok, chat_template=ChatTemplate(), model_id="tiny")


# -- result types -------------------------------------------------------------------------------
def test_results_validate_their_numbers():
    info = BackendInfo("g2c", "tiny")
    assert info.extra == {}
    r = InferenceResult("p", "c", 3, 10, 500.0, info)
    assert r.tokens_per_second == pytest.approx(20.0) and r.metadata == {}
    assert InferenceResult("p", "", 3, 0, 0.0, info).tokens_per_second == 0.0
    for field, args in [("prompt_tokens", (-1, 1, 1.0)), ("completion_tokens", (1, -1, 1.0)),
                        ("latency_ms", (1, 1, -0.5))]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            InferenceResult("p", "c", *args, info)
        with pytest.raises(ValueError, match=field):
            ChatResult([], "c", [], *args, info)
    with pytest.raises(ValueError, match="tool_calls"):
        ChatResult([], "", [{"name": "x"}], 1, 1, 1.0, info)


def test_backend_is_abstract():
    with pytest.raises(TypeError):
        Backend()


# -- g2c's own engine ----------------------------------------------------------------------------
def test_local_backend_streams_what_complete_returns(local):
    stream = local.stream_complete("Once upon a time", max_new_tokens=12)
    pieces = list(stream)
    r = local.complete("Once upon a time", max_new_tokens=12)
    assert "".join(pieces) == stream.result.completion == r.completion
    assert r.prompt_tokens == len(b"Once upon a time") and r.completion_tokens <= 12
    assert r.backend == BackendInfo("g2c", "tiny", {"max_len": 1024})
    assert r.metadata["finish_reason"] in ("stop", "length") and r.metadata["ttft_ms"] >= 0


def test_local_chat_renders_the_template(local):
    r = local.chat(MESSAGES, max_new_tokens=8)
    ids = local.engine.chat_prompt(MESSAGES)
    assert r.prompt_tokens == len(ids) and json.loads(r.prompt) == MESSAGES


def test_local_native_tool_call_follows_the_schema(local):
    res = local.chat_with_tools(MESSAGES, [WEATHER, CLOCK], tool_choice="required",
                                max_new_tokens=80, temperature=1.0)  # fmt: skip
    assert res.content == "" and len(res.tool_calls) == 1
    call = res.tool_calls[0]
    assert call["name"] in ("get_weather", "now") and call["call_id"].startswith("call_")
    if call["name"] == "get_weather":
        assert list(call["arguments"]) == ["city", "unit"] and call["arguments"]["unit"] in "cf"
    none = local.chat_with_tools(MESSAGES, [WEATHER], tool_choice="none", max_new_tokens=5)
    assert none.tool_calls == []
    with pytest.raises(ValueError, match="max_new_tokens=80 is too small"):  # the call needs 86
        local.chat_with_tools(MESSAGES, [WEATHER], tool_choice="required", max_new_tokens=80)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"),
     ({"top_k": 0}, "top_k"), ({"max_new_tokens": -1}, "max_new_tokens")],
)  # fmt: skip
def test_bad_sampling_arguments_name_the_argument(local, kwargs, field):
    with pytest.raises(ValueError, match=field):
        local.complete("x", **kwargs)
    with pytest.raises(ValueError, match=field):
        OpenAIBackend("m", "http://127.0.0.1:9").complete("x", **kwargs)
    with pytest.raises(ValueError, match=field):
        OllamaBackend("m", "http://127.0.0.1:9").chat(MESSAGES, **kwargs)


def test_benchmark_reports_latency_quantiles_and_rates(local):
    res = benchmark(local, ["a b c", "hello there", "x"], max_new_tokens=6, temperature=0.0)
    assert res.num_prompts == 3 and len(res.results) == 3
    assert res.latency_ms_p50 <= res.latency_ms_p90 and res.ttft_ms_mean <= res.latency_ms_mean
    assert res.prompt_tokens == 5 + 11 + 1 and res.decode_tokens_per_s > 0
    assert res.to_dict()["backend"]["name"] == "g2c"
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5.0], 90) == 5.0
    with pytest.raises(ValueError, match="prompts"):
        benchmark(local, [])


def test_llama_cpp_backend_says_how_to_install_it():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="llama-cpp-python"):
            LlamaCppBackend("model.gguf")
    else:
        pytest.skip("llama_cpp is installed")


# -- a stand-in server speaking both wire formats --------------------------------------------------
def _app(local: LocalTransformerBackend, model_id: str):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    lock = threading.Lock()

    def sampling(body: dict, ollama: bool) -> dict:
        opts = body.get("options", {}) if ollama else body
        return {"max_new_tokens": opts.get("num_predict" if ollama else "max_tokens", 16),
                "temperature": opts.get("temperature", 0.0), "top_p": opts.get("top_p"),
                "top_k": opts.get("top_k"), "stop": opts.get("stop"), "seed": opts.get("seed")}  # fmt: skip

    def unknown(body: dict, ollama: bool):
        if body.get("model") == model_id:
            return None
        msg = f"model '{body.get('model')}' not found"
        return JSONResponse({"error": msg if ollama else {"message": msg}}, status_code=404)

    def run_stream(stream, chunk, last):
        with lock:
            for piece in stream:
                yield chunk(piece)
            yield last(stream.result)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await request.json()
        if (err := unknown(body, False)) is not None:
            return err
        kw = sampling(body, False)
        if body.get("tools"):
            with lock:
                res = local.chat_with_tools(body["messages"], body["tools"],
                                            tool_choice="required", max_new_tokens=120)  # fmt: skip
            calls = [{"id": c["call_id"], "type": "function", "function": {
                "name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in res.tool_calls]  # fmt: skip
            return {"id": "chatcmpl-1", "object": "chat.completion", "model": model_id,
                    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                        "role": "assistant", "content": None, "tool_calls": calls}}],
                    "usage": {"prompt_tokens": res.prompt_tokens,
                              "completion_tokens": res.completion_tokens}}  # fmt: skip
        stream = local.stream_chat(body["messages"], **kw)

        def chunk(piece):
            obj = {"object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}  # fmt: skip
            return f"data: {json.dumps(obj)}\n\n"

        def last(r):
            usage = {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}
            end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            return (f"data: {json.dumps(end)}\n\ndata: "
                    f"{json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n")  # fmt: skip

        return StreamingResponse(run_stream(stream, chunk, last), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        if (err := unknown(body, False)) is not None:
            return err
        stream = local.stream_complete(body["prompt"], **sampling(body, False))

        def chunk(piece):
            return f"data: {json.dumps({'choices': [{'index': 0, 'text': piece}]})}\n\n"

        def last(r):
            usage = {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}
            return f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n"

        return StreamingResponse(run_stream(stream, chunk, last), media_type="text/event-stream")

    def ndjson_last(r):
        return json.dumps({"model": model_id, "done": True, "done_reason": "stop",
                           "prompt_eval_count": r.prompt_tokens,
                           "eval_count": r.completion_tokens}) + "\n"  # fmt: skip

    @app.post("/api/chat")
    async def api_chat(request: Request):
        body = await request.json()
        if (err := unknown(body, True)) is not None:
            return err
        if body.get("tools"):
            with lock:
                res = local.chat_with_tools(body["messages"], body["tools"],
                                            tool_choice="required", max_new_tokens=120)  # fmt: skip
            calls = [{"function": {"name": c["name"], "arguments": c["arguments"]}}
                     for c in res.tool_calls]  # fmt: skip
            return {"model": model_id, "done": True, "prompt_eval_count": res.prompt_tokens,
                    "eval_count": res.completion_tokens,
                    "message": {"role": "assistant", "content": "", "tool_calls": calls}}  # fmt: skip
        stream = local.stream_chat(body["messages"], **sampling(body, True))

        def chunk(piece):
            return json.dumps({"model": model_id, "done": False,
                               "message": {"role": "assistant", "content": piece}}) + "\n"  # fmt: skip

        return StreamingResponse(run_stream(stream, chunk, ndjson_last),
                                 media_type="application/x-ndjson")  # fmt: skip

    @app.post("/api/generate")
    async def api_generate(request: Request):
        body = await request.json()
        if (err := unknown(body, True)) is not None:
            return err
        stream = local.stream_complete(body["prompt"], **sampling(body, True))

        def chunk(piece):
            return json.dumps({"model": model_id, "response": piece, "done": False}) + "\n"

        return StreamingResponse(run_stream(stream, chunk, ndjson_last),
                                 media_type="application/x-ndjson")  # fmt: skip

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(local):
    port = _free_port()
    config = uvicorn.Config(_app(local, "tiny"), host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    assert srv.started, "the stand-in server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=5)


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_http_backends_stream_what_the_local_engine_produces(local, server, kind):
    backend = (OpenAIBackend("tiny", server + "/v1") if kind == "openai"
               else OllamaBackend("tiny", server))  # fmt: skip
    want_chat = local.chat(MESSAGES, max_new_tokens=10)
    stream = backend.stream_chat(MESSAGES, max_new_tokens=10)
    pieces = list(stream)
    assert len(pieces) >= 1 and "".join(pieces) == want_chat.completion
    r = stream.result
    assert (r.prompt_tokens, r.completion_tokens) == (want_chat.prompt_tokens,
                                                      want_chat.completion_tokens)  # fmt: skip
    assert r.backend.name == kind and r.metadata["finish_reason"] == "stop"
    want = local.complete("Once upon", max_new_tokens=7)
    got = backend.complete("Once upon", max_new_tokens=7)
    assert got.completion == want.completion and got.completion_tokens == want.completion_tokens


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_http_backends_return_native_tool_calls(server, kind):
    backend = (OpenAIBackend("tiny", server + "/v1") if kind == "openai"
               else OllamaBackend("tiny", server))  # fmt: skip
    res = backend.chat_with_tools(MESSAGES, [WEATHER], max_new_tokens=80)
    assert len(res.tool_calls) == 1 and res.tool_calls[0]["name"] == "get_weather"
    assert isinstance(res.tool_calls[0]["arguments"], dict) and res.completion_tokens > 0


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_http_errors_are_wrapped(server, kind):
    error = OpenAIError if kind == "openai" else OllamaError
    wrong = (OpenAIBackend("nope", server + "/v1") if kind == "openai"
             else OllamaBackend("nope", server))  # fmt: skip
    with pytest.raises(error, match="404"):
        wrong.chat(MESSAGES, max_new_tokens=3)
    dead = f"http://127.0.0.1:{_free_port()}"
    down = OpenAIBackend("tiny", dead + "/v1") if kind == "openai" else OllamaBackend("tiny", dead)
    with pytest.raises(error, match="cannot reach"):
        down.complete("x", max_new_tokens=3)
    with pytest.raises(ValueError, match="base_url"):
        OllamaBackend("tiny", "localhost:11434")


def test_transformers_backend_greedy_matches_the_g2c_engine_on_the_same_weights():
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    from g2c.inference import Engine, TransformersBackend
    from g2c.transformer.gguf_loader import load_hf_llama

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False, eos_token_id=63,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharper logits than the tiny default init: no near-ties
        for p in hf.parameters():
            p.mul_(3.0)
    words = Tokenizer(WordLevel({f"t{i}": i for i in range(64)}, unk_token="t0"))
    words.pre_tokenizer = WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=words, eos_token="t63",
                                               unk_token="t0")  # fmt: skip
    backend = TransformersBackend(hf, tok, model_id="tiny-hf")
    r = backend.complete("t5 t9 t17 t3", max_new_tokens=10)
    theirs = [int(w[1:]) for w in r.completion.split()]
    engine = Engine(load_hf_llama(hf), max_batch_size=1)
    ours = engine.complete([5, 9, 17, 3], max_new_tokens=10, temperature=0, eos_ids=[63])
    assert theirs == [t for t in ours.token_ids if t != 63] and r.prompt_tokens == 4
    assert r.backend.name == "transformers" and r.completion_tokens == len(theirs)
