"""The web chat's server side over HTTP: the assistant as the model "g2c-assistant" (official
`openai` client and raw server-sent events), stored conversations (/api/conversations), the
plain model appending to a stored conversation, stopping, the page's files, and
ServerBackend (the server's own engine as a Backend) against g2c's engine in-process.

Deterministic answers come from a stand-in model (the assistant, its tools, the store and the
HTTP layer are the real ones); ServerBackend runs a tiny random g2c model."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import torch
from tiny_runs import save_tiny_run

from g2c.assistant import Assistant, AssistantConfig, ConversationStore, build_assistant
from g2c.inference import Backend, BackendInfo, ChatResult, Engine, TextStream
from g2c.serve import create_app
from g2c.serve.server_backend import ServerBackend
from g2c.tokenizer import BPETokenizer
from g2c.tools import ToolRegistry, make_calculator, parse_tool_calls
from g2c.transformer import TransformerLM, load_model

openai = pytest.importorskip("openai", reason="the official openai client is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")
from live_server import LiveServer  # noqa: E402

TEXT = "hello there, how are you? I am fine. the cat sat on the mat in Paris.\n" * 8
CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "17 * 23"}}</tool_call>'


# -- a deterministic stand-in model --------------------------------------------------------------
class StandIn(Backend):
    """Replies from the conversation: a user message with "multiply" → a calculator call, a
    tool result → "The answer is **<output>**.", "long" → 400 words, one piece every
    ``delay`` seconds; else an echo. ``closed`` is set when a stream is closed early."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.closed = threading.Event()
        self.seen: list[list[dict]] = []

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("stand-in", "stand-in", {"max_len": 4096})

    def _reply(self, messages: list[dict], tools: bool) -> str:
        self.seen.append(messages)
        last = messages[-1]
        if last["role"] == "tool":
            return f"The answer is **{last['content']}**."
        text = last["content"]
        if tools and "multiply" in text:
            return "Let me compute. " + CALL
        if "long" in text:
            return " ".join(f"word{i}" for i in range(400))
        return f"You said: {text}"

    def _pieces(self, text: str) -> Iterator[str]:
        parts = re.findall(r"\S+\s*", text) or [text]
        done = False
        try:
            for p in parts:
                if self.delay:
                    time.sleep(self.delay)
                yield p
            done = True
        finally:
            if not done:
                self.closed.set()

    def _stream(self, text: str, result) -> TextStream:
        return TextStream(self._pieces(text), lambda t, lat, ttft: result(t, lat))

    def stream_complete(self, prompt, **kw) -> TextStream:
        return self.stream_chat([{"role": "user", "content": prompt}], **kw)

    def stream_chat(self, messages, **kw) -> TextStream:
        text = self._reply(messages, False)
        return self._stream(text, lambda t, lat: self._result("", t, 10, len(t) // 4, lat))

    def stream_chat_with_tools(self, messages, tools=None, **kw) -> TextStream:
        text = self._reply(messages, bool(tools))
        calls = [{"name": c.name, "arguments": c.arguments, "call_id": f"call_{len(self.seen)}"}
                 for c in parse_tool_calls(text)] if tools else []  # fmt: skip
        content = text.split("<tool_call>")[0] if calls else text
        return self._stream(content, lambda t, lat: ChatResult(
            messages, t, calls, 10, len(text) // 4, lat, self.info))  # fmt: skip


def stand_in_assistant(backend: StandIn) -> Assistant:
    registry = ToolRegistry([make_calculator()])
    return Assistant(backend, registry, config=AssistantConfig(max_new_tokens=64))


# -- the tiny served model and live servers ------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    torch.manual_seed(0)
    tok = BPETokenizer.with_course_special_tokens()
    tok.train_fast(TEXT, tok.base_vocab_size + 40)
    model = TransformerLM(tok.vocab_size, 32, 2, 4, 512, positional="rope", norm="rmsnorm",
                          mlp="swiglu", generator=torch.Generator().manual_seed(0))  # fmt: skip
    run = tmp_path_factory.mktemp("webchat") / "tiny"
    return load_model(save_tiny_run(run, model, tok, name="Tiny-0K", never_end=("<|end|>",)))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ConversationStore:
    return ConversationStore(tmp_path_factory.mktemp("store") / "conversations.sqlite")


@pytest.fixture(scope="module")
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture(scope="module")
def live(loaded, store, stand_in):
    srv = LiveServer(create_app(loaded, model_id="tiny", max_batch_size=4, store=store,
                          assistant=stand_in_assistant(stand_in)))  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)


def sse(url: str, body: dict, *, stop_after: int | None = None) -> list[dict]:
    """The JSON chunks of a streamed answer (the first ``stop_after`` chunks, then hang up)."""
    out = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
                if stop_after is not None and len(out) >= stop_after:
                    break
    return out


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- the assistant through the OpenAI API ----------------------------------------------------------
def test_models_list_the_assistant_beside_the_model(oai):
    ids = [m.id for m in oai.models.list().data]
    assert ids == ["tiny", "g2c-assistant"]
    card = oai.models.retrieve("g2c-assistant")
    assert card.g2c["assistant"] is True and card.g2c["tools"] == ["calculator"]


def test_the_official_client_streams_the_assistant_with_its_tool_call(oai, store):
    cid = store.create(model="g2c-assistant")
    chunks = list(oai.chat.completions.create(
        model="g2c-assistant", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "please multiply 17 by 23"}],
        extra_body={"conversation_id": cid}))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me compute. The answer is **391**."
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [
        ("calculator", {"expression": "17 * 23"})]  # fmt: skip
    ext = [(c.model_extra or {}).get("g2c") or {} for c in chunks]  # OpenAI ignores it
    results = [e["tool_result"] for e in ext if "tool_result" in e]
    assert results == [{"call_id": calls[0].id, "name": "calculator", "output": "391",
                        "is_error": False}]  # fmt: skip
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    assert finish == "stop" and chunks[-1].usage.completion_tokens > 0
    stored = store.get(cid)
    assert [m.role for m in stored.messages] == ["user", "assistant"]
    answer = stored.messages[1]
    assert answer.content == text and answer.tool_calls[0]["output"] == "391"
    assert stored.info.title == "please multiply 17 by 23"


def test_not_streamed_the_answer_carries_its_turn_and_memory_comes_from_the_store(oai, store,
                                                                                 stand_in):  # fmt: skip
    cid = store.create()
    r = oai.chat.completions.create(model="g2c-assistant", messages=[
        {"role": "user", "content": "hi there"}], extra_body={"conversation_id": cid})  # fmt: skip
    assert r.choices[0].message.content == "You said: hi there"
    assert not r.choices[0].message.tool_calls  # nothing left for the client to run
    assert r.g2c["conversation_id"] == cid and r.g2c["turn"]["stopped_reason"] == "final_answer"
    # the second turn: the request's earlier messages are NOT read, the stored ones are
    r = oai.chat.completions.create(model="g2c-assistant", messages=[
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "ignored"}, {"role": "assistant", "content": "ignored"},
        {"role": "user", "content": "again"}], extra_body={"conversation_id": cid})  # fmt: skip
    sent = stand_in.seen[-1]
    assert sent[0] == {"role": "system", "content": "Be terse."}
    assert [m["content"] for m in sent[1:]] == ["hi there", "You said: hi there", "again"]
    assert len(store.get(cid).messages) == 4
    # without a conversation id the request's messages are the memory, nothing is stored
    n = len(store.list())
    r = oai.chat.completions.create(model="g2c-assistant", messages=[
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"}])  # fmt: skip
    assert [m["content"] for m in stand_in.seen[-1][1:]] == ["first", "one", "second"]
    assert len(store.list()) == n


def test_sampling_fields_reach_the_assistant_and_bad_ones_are_refused(live, store):
    url = live.url + "/v1/chat/completions"
    msgs = [{"role": "user", "content": "hi"}]
    for body, status, words in [
        ({"model": "g2c-assistant", "messages": msgs, "max_tokens": 0}, 422, "max_tokens"),
        ({"model": "g2c-assistant", "messages": msgs, "temperature": 5}, 422, "temperature"),
        ({"model": "g2c-assistant", "messages": [{"role": "assistant", "content": "x"}]}, 400,
         "last message"),
        ({"model": "g2c-assistant", "messages": msgs, "tools": [{"type": "function",
          "function": {"name": "f"}}]}, 400, "its own tools"),
        ({"model": "g2c-assistant", "messages": msgs, "conversation_id": "feedbeef0000"}, 404,
         "feedbeef0000"),
        ({"model": "tiny", "messages": msgs, "conversation_id": 7}, 422, "conversation_id"),
    ]:  # fmt: skip
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert live.health()["status"] == "ok"


def test_the_plain_model_appends_to_a_stored_conversation(live, loaded, store):
    engine = Engine.from_loaded(loaded, max_batch_size=1, max_len=512)
    msgs = [{"role": "user", "content": "the cat sat"}]
    want = engine.complete(engine.chat_prompt(msgs), max_new_tokens=8, temperature=0.0).text
    cid = store.create(model="tiny")
    body = {"model": "tiny", "messages": msgs, "max_tokens": 8, "temperature": 0,
            "conversation_id": cid}  # fmt: skip
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in
              sse(live.url, {**body, "stream": True}) if c["choices"]]  # fmt: skip
    assert "".join(pieces) == want
    r = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=30).json()
    assert r["choices"][0]["message"]["content"] == want
    stored = store.get(cid).messages
    assert [(m.role, m.content) for m in stored] == [
        ("user", "the cat sat"),
        ("assistant", want),
    ] * 2
    assert stored[1].metadata["model"] == "tiny" and "stopped" not in stored[1].metadata


def test_a_client_that_hangs_up_stops_the_plain_model_and_the_partial_answer_is_kept(live, store):
    cid = store.create()
    before = live.health()
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go on"}], "stream": True,
            "max_tokens": 400, "conversation_id": cid}  # fmt: skip
    got = sse(live.url, body, stop_after=4)
    assert _wait(lambda: live.health()["cancelled"] == before["cancelled"] + 1)
    assert _wait(lambda: len(store.get(cid).messages) == 2)
    answer = store.get(cid).messages[1]
    assert answer.metadata["stopped"] is True
    sent = "".join(c["choices"][0]["delta"].get("content") or "" for c in got)
    assert answer.content.startswith(sent) and len(answer.content) < 400 * 8


def test_a_client_that_hangs_up_stops_the_assistant(loaded, tmp_path):
    slow = StandIn(delay=0.05)
    store = ConversationStore(tmp_path / "c.sqlite")
    srv = LiveServer(
        create_app(loaded, model_id="tiny", store=store, assistant=stand_in_assistant(slow))
    )
    try:
        cid = store.create()
        body = {"model": "g2c-assistant", "stream": True, "conversation_id": cid,
                "messages": [{"role": "user", "content": "a long one please"}]}  # fmt: skip
        t0 = time.time()
        got = sse(srv.url, body, stop_after=6)
        assert slow.closed.wait(5) and time.time() - t0 < 5  # 400 pieces would take 20 s
        assert _wait(lambda: len(store.get(cid).messages) == 2)
        answer = store.get(cid).messages[1]
        assert answer.metadata["stopped"] is True and answer.content.startswith("word0 word1")
        assert len(answer.content.split()) < 100
        assert got[0]["g2c"]["conversation_id"] == cid
    finally:
        srv.stop()


# -- stored conversations -------------------------------------------------------------------------
def test_conversations_are_created_listed_renamed_exported_and_deleted(live):
    base = live.url + "/api/conversations"
    made = httpx.post(base, json={"model": "tiny", "system": "Be kind."})
    assert made.status_code == 201
    cid = made.json()["id"]
    assert re.fullmatch(r"[0-9a-f]{12}", cid)
    assert httpx.get(base).json()["conversations"][0]["id"] == cid  # newest first
    got = httpx.get(f"{base}/{cid}").json()
    assert got["messages"] == [{"role": "system", "content": "Be kind.", "tool_calls": [],
                                "citations": [], "metadata": {}}]  # fmt: skip
    assert httpx.patch(f"{base}/{cid}", json={"title": "Kindness"}).json()["title"] == "Kindness"
    md = httpx.get(f"{base}/{cid}/export", params={"format": "markdown"})
    assert md.text.startswith("# Kindness") and "attachment" in md.headers["content-disposition"]
    assert json.loads(httpx.get(f"{base}/{cid}/export?format=json").text)["id"] == cid
    for method, url, body, status, words in [
        ("PATCH", f"{base}/{cid}", {"title": 5}, 422, "title"),
        ("PATCH", f"{base}/{cid}", {"title": "  "}, 400, "title"),
        ("POST", base, b"{nope", 400, "JSON"),
        ("GET", f"{base}/{cid}/export?format=pdf", None, 400, "fmt"),
        ("GET", f"{base}/000000000000", None, 404, "000000000000"),
    ]:  # fmt: skip
        kw = {"content": body} if isinstance(body, bytes) else {"json": body}
        r = httpx.request(method, url, **(kw if body is not None else {}))
        assert r.status_code == status and words in r.json()["error"], (method, url, r.text)
    assert httpx.delete(f"{base}/{cid}").json() == {"deleted": cid}
    assert httpx.delete(f"{base}/{cid}").status_code == 404


# -- the page -------------------------------------------------------------------------------------
def test_the_page_is_served_to_browsers_and_needs_no_key(loaded, tmp_path):
    srv = LiveServer(create_app(loaded, model_id="tiny", api_key="s3cret",
                          store=tmp_path / "c.sqlite"))  # fmt: skip
    try:
        page = httpx.get(srv.url + "/", headers={"Accept": "text/html,*/*"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert '<script src="/static/app.js">' in page.text and "http" not in page.text.lower()
        js = httpx.get(srv.url + "/static/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        assert ".innerHTML" not in js.text and "fetch(" in js.text
        assert httpx.get(srv.url + "/static/style.css").status_code == 200
        key = {"Authorization": "Bearer s3cret"}
        for name in ("app.py", "%2e%2e%2fapp.py", "..%2F__init__.py"):
            assert httpx.get(srv.url + "/static/" + name, headers=key).status_code == 404
        assert httpx.get(srv.url + "/").json()["model"] == "tiny"  # not a browser: JSON
        assert httpx.get(srv.url + "/api/conversations").status_code == 401
        assert httpx.get(srv.url + "/api/conversations", headers=key).json() == {
            "conversations": []}  # fmt: skip
        assert [m["id"] for m in httpx.get(srv.url + "/v1/models", headers=key).json()["data"]] == [
            "tiny"
        ]  # no assistant asked for
    finally:
        srv.stop()


# -- ServerBackend: the server's engine, from a thread --------------------------------------------
def test_server_backend_answers_as_the_engine_does_and_shares_its_scheduler(live, loaded):
    backend = live.app.state.g2c.chat.backend
    assert isinstance(backend, ServerBackend) and backend.info.extra["max_len"] == 512
    engine = Engine.from_loaded(loaded, max_batch_size=1, max_len=512)
    msgs = [{"role": "user", "content": "hello there"}]
    want = engine.complete(engine.chat_prompt(msgs), max_new_tokens=10, temperature=0.0).text
    before = live.health()["completed"]
    out = {}

    def work():  # never on the event loop thread
        s = backend.stream_chat(msgs, max_new_tokens=10, temperature=0.0)
        out["pieces"] = list(s)
        out["result"] = s.result
        out["tools"] = backend.chat_with_tools(msgs, [{"type": "function", "function": {
            "name": "calculator", "parameters": {"type": "object", "properties": {
                "expression": {"type": "string"}}, "required": ["expression"]}}}],
            max_new_tokens=120, temperature=0.0, tool_choice="required")  # fmt: skip

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert "".join(out["pieces"]) == want and len(out["pieces"]) > 1
    assert out["result"].completion_tokens == 10
    call = out["tools"].tool_calls[0]
    assert call["name"] == "calculator" and isinstance(call["arguments"]["expression"], str)
    assert live.health()["completed"] == before + 2  # both went through the scheduler
    with pytest.raises(ValueError, match="context holds 512"):
        backend.stream_chat([{"role": "user", "content": "x" * 3000}])


def test_the_assistant_on_the_served_model_streams_through_the_scheduler(loaded, tmp_path):
    app = create_app(loaded, model_id="tiny", store=tmp_path / "c.sqlite",
                     assistant=lambda b: build_assistant(b, tools_root=tmp_path, tools=(
                         "calculator",), config=AssistantConfig(max_new_tokens=200,
                                                                tool_mode="none")))  # fmt: skip
    srv = LiveServer(app)
    try:
        before = srv.health()
        body = {"model": "g2c-assistant", "stream": True,
                "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
        got = sse(srv.url, body, stop_after=5)
        assert all(c["choices"][0]["delta"].get("content") for c in got[1:])
        assert _wait(lambda: srv.health()["cancelled"] == before["cancelled"] + 1)
        assert _wait(lambda: srv.health()["running"] == 0)
    finally:
        srv.stop()


def test_garbage_does_not_disturb_an_assistant_answer(live):
    out, errors = [], []

    def good():
        r = httpx.post(live.url + "/v1/chat/completions", timeout=30, json={
            "model": "g2c-assistant", "messages": [{"role": "user", "content": "multiply"}]})  # fmt: skip
        out.append(r.json()["choices"][0]["message"]["content"])

    def bad():
        garbage = [("/v1/chat/completions", b) for b in (
            b"\xff", b'{"model": "g2c-assistant", "messages": []}', b"[1]",
            b'{"model": "g2c-assistant", "messages": [{"role": "user"}], "conversation_id": ""}',
            b'{"model": "g2c-assistant", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": "9"}')]  # fmt: skip
        garbage += [("/api/conversations", b) for b in (b"\xff", b"[1]", b'{"title": 3}')]
        for path, body in garbage:
            r = httpx.post(live.url + path, content=body, timeout=30)
            if not 400 <= r.status_code < 500:
                errors.append((path, r.status_code, r.text))

    threads = [threading.Thread(target=good) for _ in range(2)] + [
        threading.Thread(target=bad) for _ in range(3)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and out == ["Let me compute. The answer is **391**."] * 2


def test_serve_flags_are_checked_before_the_model_loads(tmp_path, monkeypatch, capsys):
    from g2c.cli import main

    monkeypatch.setenv("G2C_CONVERSATIONS", str(tmp_path / "c.sqlite"))
    assert main(["serve", "smollm2", "--tools-root", str(tmp_path / "missing")]) == 2
    assert "--tools-root" in capsys.readouterr().err
    assert main(["serve", "smollm2", "--rag", str(tmp_path / "none.sqlite")]) == 2
    assert "g2c rag index" in capsys.readouterr().err
    (tmp_path / "bad.sqlite").write_text("not a database")
    assert main(["serve", "smollm2", "--store", str(tmp_path / "bad.sqlite")]) == 2
    assert "not a g2c conversation store" in capsys.readouterr().err
