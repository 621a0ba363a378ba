"""The assistant (module 20): conversation and context policy, the SQLite store (restart,
rename/delete/export, damaged file), the event stream (tool calls, RAG citations, notices),
stopping mid-answer, native vs ReAct tool modes, the plain-text CLI.

The model is :class:`g2c.agent.ScriptedBackend` (a deterministic stand-in) where the text of the
answer matters, and a tiny random g2c model on g2c's engine where the engine path matters
(streaming, cancelling, token counting). One slow test runs the packaged SmolLM2.
"""

from __future__ import annotations

import io
import json
import sqlite3

import pytest
import torch

from g2c.agent import ScriptedBackend
from g2c.assistant import (
    Assistant,
    AssistantConfig,
    AssistantError,
    AssistantTurn,
    Conversation,
    ConversationNotFound,
    ConversationStore,
    Message,
    build_assistant,
    conversations_path,
    run_cli,
)
from g2c.inference import Backend, BackendInfo, LocalTransformerBackend, TextStream
from g2c.rag import HashEmbedder, SQLiteIndex, index_retriever
from g2c.sft import ChatTemplate
from g2c.tokenizer import BPETokenizer
from g2c.tools import ToolRegistry, make_calculator, make_read_file
from g2c.transformer import TransformerLM

CALL = '<tool_call>{{"name": "calculator", "arguments": {{"expression": "{}"}}}}</tool_call>'


def calc_registry() -> ToolRegistry:
    return ToolRegistry([make_calculator()])


@pytest.fixture(scope="module")
def tiny() -> LocalTransformerBackend:
    torch.manual_seed(0)
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(
        len(tok.vocab), 32, 2, 4, 1024, positional="rope", norm="rmsnorm", mlp="swiglu",
        num_kv_heads=2, bias=False, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return LocalTransformerBackend(model, tok, chat_template=ChatTemplate(), model_id="tiny")


def events_of(assistant: Assistant, text: str) -> list[dict]:
    return list(assistant.stream(text))


# -- config, messages, conversation ---------------------------------------------------------------
@pytest.mark.parametrize("field,value", [
    ("max_steps", 0), ("rag_k", 0), ("temperature", -1), ("top_p", 1.5), ("top_k", 0),
    ("max_new_tokens", 0), ("tool_mode", "magic"), ("context_tokens", 10), ("plan", "yes"),
    ("rag_min_score", "high"), ("name", ""),
])  # fmt: skip
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(AssistantError, match=field):
        AssistantConfig(**{field: value})
    assert isinstance(AssistantError("x"), ValueError)


def test_update_config_validates_and_rejects_unknown_fields():
    a = Assistant(ScriptedBackend(["ok"]), None)
    assert a.update_config(temperature=0.7, top_k=5).temperature == 0.7
    with pytest.raises(AssistantError, match="top_p"):
        a.update_config(top_p=0)
    with pytest.raises(AssistantError, match="unknown config field colour"):
        a.update_config(colour="red")
    assert a.config.top_k == 5 and a.config.top_p is None  # unchanged by the failed updates


def test_bad_arguments_name_themselves():
    with pytest.raises(AssistantError, match="backend"):
        Assistant("gpt", None)
    with pytest.raises(AssistantError, match="registry"):
        Assistant(ScriptedBackend(["x"]), [make_calculator()])
    with pytest.raises(AssistantError, match="retriever"):
        Assistant(ScriptedBackend(["x"]), None, retriever="index.db")
    with pytest.raises(AssistantError, match="conversation_id needs a store"):
        Assistant(ScriptedBackend(["x"]), None, conversation_id="abc")
    with pytest.raises(AssistantError, match="text"):
        Assistant(ScriptedBackend(["x"]), None).chat("   ")
    with pytest.raises(AssistantError, match="role"):
        Message("robot", "hi")


def test_message_round_trips_through_json():
    m = Message("assistant", "14", tool_calls=[{"call_id": "c1", "name": "calculator",
                "arguments": {"expression": "2*7"}, "output": "14", "is_error": False}],
                citations=[{"n": 1, "source": "a.md"}], metadata={"stopped": True})  # fmt: skip
    back = Message.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m and back.tool_calls[0]["output"] == "14"
    with pytest.raises(AssistantError, match="JSON"):
        Message("user", "x", metadata={"f": object()})


def test_fit_to_context_drops_oldest_whole_turns_keeps_system_and_says_so():
    conv = Conversation([Message("system", "be brief")])
    for n in range(4):
        conv.add("user", f"question {n} " + "x" * 40)
        conv.add("assistant", f"answer {n} " + "y" * 40)
    conv.add("user", "last question")
    before = {m.content for m in conv.messages}
    count = lambda msgs: sum(len(m["content"]) for m in msgs)  # noqa: E731
    notices = conv.fit_to_context(count, 150)
    assert notices == ["dropped 3 earlier turns to fit the 150-token context"]
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "user"]
    assert conv.messages[1].content.startswith("question 3")
    assert all(m.content in before for m in conv.messages)  # no message was cut
    assert count(conv.to_dicts()) <= 150
    assert conv.fit_to_context(count, 150) == []
    notices = conv.fit_to_context(count, 10)  # even the last turn does not fit: it says so
    assert [m.role for m in conv.messages] == ["system", "user"] and "shorten it" in notices[-1]


def test_max_messages_drops_whole_turns_with_a_notice():
    conv = Conversation(max_messages=4)
    for n in range(3):
        conv.add("user", f"q{n}")
        conv.add("assistant", f"a{n}")
    assert [m.content for m in conv.messages] == ["q1", "a1", "q2", "a2"]
    assert conv.notices and "at most 4 messages" in conv.notices[0]


# -- the store ------------------------------------------------------------------------------------
def test_store_survives_a_restart_and_lists_newest_first(tmp_path):
    path = tmp_path / "conv.sqlite"
    store = ConversationStore(path)
    first = store.create(model="tiny", system="be brief")
    store.append(first, Message("user", "What is the boiling point of water at sea level?"))
    store.append(first, Message("assistant", "100 °C.", metadata={"latency_ms": 3.5}))
    second = store.create(title="later")
    store.append(second, Message("user", "hi"))
    again = ConversationStore(path)  # a new process would do exactly this
    assert [c.id for c in again.list()] == [second, first]
    conv = again.get(first)
    assert len(first) == 12 and int(first, 16) >= 0
    assert conv.info.title == "What is the boiling point of water at sea level?"
    assert conv.info.model == "tiny" and conv.info.n_messages == 3
    assert [m.role for m in conv.messages] == ["system", "user", "assistant"]
    assert conv.messages[2].metadata == {"latency_ms": 3.5}
    assert again.get(second).info.title == "later"  # an explicit title is not replaced


def test_store_rename_clear_delete_export(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite")
    cid = store.create(system="sys")
    store.append(cid, Message("user", "2+2?"))
    store.append(cid, Message("assistant", "4", tool_calls=[{"call_id": "c", "name":
                 "calculator", "arguments": {"expression": "2+2"}, "output": "4",
                 "is_error": False}], citations=[{"n": 1, "source": "math.md",
                 "start_line": 3, "end_line": 4}]))  # fmt: skip
    store.rename(cid, "Arithmetic")
    assert store.get(cid).info.title == "Arithmetic"
    data = json.loads(store.export(cid, "json"))
    assert data["title"] == "Arithmetic" and data["messages"][2]["tool_calls"][0]["output"] == "4"
    md = store.export(cid, "markdown")
    assert md.startswith("# Arithmetic") and "## You\n\n2+2?" in md
    assert "tool `calculator`" in md and "[1] math.md, lines 3-4" in md
    with pytest.raises(AssistantError, match="fmt"):
        store.export(cid, "pdf")
    store.clear(cid)
    assert [m.role for m in store.get(cid).messages] == ["system"]
    store.delete(cid)
    with pytest.raises(ConversationNotFound, match=cid) as err:
        store.get(cid)
    assert isinstance(err.value, KeyError)
    with pytest.raises(ConversationNotFound):
        store.rename("000000000000", "x")


def test_damaged_or_foreign_store_file_is_an_assistant_error(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AssistantError, match=r"junk\.sqlite.*move it away"):
        ConversationStore(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(AssistantError, match="other tables"):
        ConversationStore(other)
    with pytest.raises(AssistantError, match="folder"):
        ConversationStore(tmp_path)


def test_conversations_path_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("G2C_CONVERSATIONS", str(tmp_path / "x.sqlite"))
    assert conversations_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("G2C_CONVERSATIONS")
    monkeypatch.setenv("G2C_HOME", str(tmp_path / "home"))
    assert conversations_path() == tmp_path / "home" / "conversations.sqlite"


# -- the assistant --------------------------------------------------------------------------------
def test_memory_across_turns_and_resume_from_the_store(tmp_path):
    backend = ScriptedBackend(["Nice to meet you, Ada.", "Your name is Ada."])
    store = ConversationStore(tmp_path / "c.sqlite")
    a = Assistant(backend, None, store=store)
    assert a.conversation_id is None  # created at the first message
    a.chat("My name is Ada.")
    turn = a.chat("What is my name?")
    assert turn.content == "Your name is Ada." and turn.stopped_reason == "final_answer"
    sent = backend.calls[-1]
    assert sent[0]["role"] == "system" and sent[1] == {"role": "user", "content": "My name is Ada."}
    assert (
        sent[2]["content"] == "Nice to meet you, Ada." and sent[-1]["content"] == "What is my name?"
    )
    cid = a.conversation_id
    # a restart: a new store object on the same file, a new assistant opening the conversation
    b2 = ScriptedBackend(["Still Ada."])
    resumed = Assistant(b2, None, store=ConversationStore(tmp_path / "c.sqlite"),
                        conversation_id=cid)  # fmt: skip
    assert resumed.chat("And now?").content == "Still Ada."
    assert [m["content"] for m in b2.calls[-1][1:]] == [
        "My name is Ada.", "Nice to meet you, Ada.", "What is my name?", "Your name is Ada.",
        "And now?"]  # fmt: skip
    assert store.get(cid).info.n_messages == 6
    resumed.reset()
    assert resumed.conversation_id is None and len(resumed.conversation) == 0
    resumed.chat("fresh start")
    assert resumed.conversation_id != cid and len(store.list()) == 2


def test_tool_call_events_then_answer():
    backend = ScriptedBackend([CALL.format("12*7"), "12 × 7 = 84."])
    a = Assistant(backend, calc_registry())
    assert a.tool_mode == "native"
    events = events_of(a, "What is 12 times 7?")
    kinds = [e["type"] for e in events]
    assert kinds == ["tool_call", "tool_result", "token", "done"]
    call, result = events[0], events[1]
    assert call["name"] == "calculator" and call["arguments"] == {"expression": "12*7"}
    assert result["call_id"] == call["call_id"] and result["output"] == "84"
    assert not result["is_error"]
    turn = events[-1]["turn"]
    assert turn.content == "12 × 7 = 84."
    assert turn.tool_calls == [{"call_id": call["call_id"], "name": "calculator",
                                "arguments": {"expression": "12*7"}, "output": "84",
                                "is_error": False}]  # fmt: skip
    assert json.loads(json.dumps([e for e in events if e["type"] != "done"]))  # JSON-safe
    assert json.dumps(turn.to_dict())
    tool_msg = backend.calls[-1][-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"] == "84"
    assert a.conversation.messages[-1].tool_calls[0]["output"] == "84"


def test_loop_detection_stops_a_repeated_call_and_still_answers():
    backend = ScriptedBackend([CALL.format("1+1")] * 3 + ["2"])
    a = Assistant(backend, calc_registry())
    turn = a.chat("1+1?")
    assert turn.stopped_reason == "duplicate_action" and turn.content == "2"
    assert [c["is_error"] for c in turn.tool_calls] == [False, True, True]
    assert "already called" in turn.tool_calls[1]["output"]
    off = Assistant(ScriptedBackend([CALL.format("1+1")] * 3 + ["2"]), calc_registry(),
                    config=AssistantConfig(loop_detection=False, max_steps=3))  # fmt: skip
    turn = off.chat("1+1?")
    assert (
        turn.stopped_reason == "max_steps" and [c["output"] for c in turn.tool_calls] == ["2"] * 3
    )


def test_react_mode_runs_the_agent_loop():
    replies = ['Thought: compute\nAction: calculator\nAction Input: {"expression": "6*7"}',
               "Thought: I know\nFinal Answer: 42"]  # fmt: skip
    a = Assistant(ScriptedBackend(replies), calc_registry(),
                  config=AssistantConfig(tool_mode="react", plan=False))  # fmt: skip
    assert a.tool_mode == "react"
    events = events_of(a, "6 times 7?")
    assert [e["type"] for e in events] == ["tool_call", "tool_result", "token", "done"]
    assert events[1]["output"] == "42" and events[-1]["turn"].content == "42"


def test_tool_mode_resolution():
    class TextOnly(Backend):
        info = BackendInfo("text", "text-only")

        def stream_complete(self, prompt, **kw):
            return TextStream(iter(["x"]), lambda *a: None)

        def stream_chat(self, messages, **kw):
            return TextStream(iter(["x"]), lambda *a: None)

    assert Assistant(TextOnly(), calc_registry()).tool_mode == "react"
    assert Assistant(TextOnly(), None).tool_mode == "none"
    assert Assistant(ScriptedBackend(["x"]), calc_registry(),
                     config=AssistantConfig(tool_mode="none")).tool_mode == "none"  # fmt: skip
    with pytest.raises(AssistantError, match="native"):
        Assistant(TextOnly(), calc_registry(), config=AssistantConfig(tool_mode="native"))


def test_backend_failure_is_a_notice_not_a_traceback():
    a = Assistant(ScriptedBackend(["x"], context_chars=10), None)
    turn = a.chat("a question far longer than ten characters")
    assert turn.stopped_reason == "error" and "the prompt has" in turn.notices[-1]
    assert [m.role for m in a.conversation.messages] == ["user"]


def test_set_backend_is_announced_and_keeps_the_conversation():
    a = Assistant(ScriptedBackend(["first"]), None)
    a.chat("hello")
    other = ScriptedBackend(["second"])
    a.set_backend(other)
    events = events_of(a, "again")
    assert events[0] == {"type": "notice", "text": "model switched to scripted (scripted)"}
    assert events[-1]["turn"].content == "second" and other.calls[-1][1]["content"] == "hello"


def test_context_trimming_through_the_assistant_emits_a_notice():
    backend = ScriptedBackend(["ok " * 30])
    cfg = AssistantConfig(context_tokens=200, max_new_tokens=64, system="s")
    a = Assistant(backend, None, config=cfg)
    turns = [a.chat(f"question {n}: " + "word " * 40) for n in range(3)]
    assert turns[0].notices == []  # one turn fits
    assert any("earlier turn" in n and "136-token" in n for t in turns for n in t.notices)
    a.chat("the last question")
    sent = backend.calls[-1]
    assert a.count_tokens(sent) <= 200 - 64
    assert sent[-1]["content"] == "the last question"
    assert all(m["content"].startswith(("s", "question 2", "ok", "the last")) for m in sent)


# -- RAG ------------------------------------------------------------------------------------------
@pytest.fixture()
def retriever(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fog.md").write_text("# Fog\n\nFog is a cloud of tiny water droplets near the "
                                 "ground.\nIt forms when humid air cools.\n")  # fmt: skip
    (docs / "magnets.md").write_text("# Magnets\n\nMagnets attract iron and nickel.\n")
    index = SQLiteIndex(tmp_path / "rag.db", HashEmbedder(64))
    index.index_paths(docs)
    yield index_retriever(index, "bm25")
    index.close()


def test_rag_emits_citations_and_keeps_the_cited_ones(retriever):
    backend = ScriptedBackend(["Fog is made of tiny water droplets [1]."])
    a = Assistant(backend, None, retriever, config=AssistantConfig(rag_k=2))
    events = events_of(a, "What is fog made of?")
    assert events[0]["type"] == "citations"
    given = events[0]["citations"]
    assert given[0]["source"].endswith("fog.md") and given[0]["n"] == 1
    assert set(given[0]) == {"n", "source", "start_line", "end_line", "text", "score"}
    assert "water droplets" in given[0]["text"]
    turn = events[-1]["turn"]
    assert [c["n"] for c in turn.citations] == [1]
    prompt = backend.calls[-1]
    assert (
        "[1] (" in prompt[-1]["content"]
        and "Question: What is fog made of?" in prompt[-1]["content"]
    )
    assert "Cite the sources" in prompt[0]["content"]
    assert a.conversation.messages[0].content == "What is fog made of?"  # stored as typed
    assert a.conversation.messages[-1].citations[0]["source"].endswith("fog.md")


def test_rag_below_min_score_says_it_does_not_know_without_the_model(retriever):
    backend = ScriptedBackend(["should not be called"])
    a = Assistant(backend, None, retriever, config=AssistantConfig(rag_min_score=1e9))
    turn = a.chat("What is fog made of?")
    assert turn.stopped_reason == "no_evidence" and turn.content.startswith("I don't know")
    assert backend.calls == []
    a.update_config(rag_enabled=False)
    assert a.chat("hello").content == "should not be called"  # RAG off: the model answers


# -- g2c's engine: streaming, cancelling, counting -------------------------------------------------
def test_engine_tool_stream_matches_chat_with_tools(tiny):
    msgs = [{"role": "user", "content": "2+2?"}]
    tools = calc_registry().to_openai()
    for choice in ("auto", "required"):
        stream = tiny.stream_chat_with_tools(msgs, tools, max_new_tokens=100, tool_choice=choice)
        text = stream.text()
        whole = tiny.chat_with_tools(msgs, tools, max_new_tokens=100, tool_choice=choice)
        assert stream.result.content == whole.content == text
        assert [c["name"] for c in stream.result.tool_calls] == [
            c["name"] for c in whole.tool_calls]  # fmt: skip
    assert whole.tool_calls and whole.tool_calls[0]["name"] == "calculator"


def test_stop_mid_stream_keeps_the_partial_answer_and_frees_the_engine(tiny, tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite")
    cfg = AssistantConfig(max_new_tokens=60, tool_mode="none")
    a = Assistant(tiny, None, config=cfg, store=store)
    events = a.stream("Tell me a long story.")
    pieces = []
    for event in events:
        if event["type"] == "token":
            pieces.append(event["text"])
            if len(pieces) == 3:
                break
    events.close()
    last = a.conversation.messages[-1]
    assert last.role == "assistant" and last.metadata["stopped"] is True
    assert last.content == "".join(pieces).strip()
    assert store.get(a.conversation_id).messages[-1].metadata["stopped"] is True
    turn = a.chat("Again, briefly.")  # the engine slot was freed: a new request runs
    assert turn.stopped_reason == "final_answer" and turn.completion_tokens > 0
    assert turn.prompt_tokens == a.count_tokens(
        [{"role": "system", "content": a._system_text(None)}] + a.conversation.to_dicts()[:-1]
    )


def test_engine_native_turn_streams_tokens(tiny):
    a = Assistant(tiny, calc_registry(), config=AssistantConfig(max_new_tokens=100, max_steps=2))
    assert a.tool_mode == "native" and a.context_tokens == tiny.engine.max_len
    events = events_of(a, "hi")
    turn = events[-1]["turn"]
    tokens = "".join(e["text"] for e in events if e["type"] == "token")
    assert tokens.strip() == turn.content and turn.completion_tokens > 0


def test_arithmetic_is_routed_to_the_calculator_on_the_engine(tiny):
    """route_arithmetic (default): a message with arithmetic forces the first call on g2c's
    engine, with room for the call's JSON even when max_new_tokens is small."""
    a = Assistant(tiny, calc_registry(), config=AssistantConfig(max_new_tokens=16, max_steps=1))
    assert a._can_require("What is 1234*5678?") and not a._can_require("a 3-4 day trip")
    events = events_of(a, "What is 12 * 7?")
    assert [e["name"] for e in events if e["type"] == "tool_call"] == ["calculator"]
    off = Assistant(tiny, calc_registry(), config=AssistantConfig(route_arithmetic=False))
    assert not off._can_require("What is 1234*5678?")
    no_calc = Assistant(tiny, ToolRegistry([make_read_file(".")]))
    assert not no_calc._can_require("What is 1234*5678?")


def test_small_context_turns_tools_off_and_caps_replies_with_notices():
    """The speedrun model's 128-token context cannot hold the tool listing: the assistant
    answers without tools and caps replies at half the context, saying so once."""
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(len(tok.vocab), 32, 2, 4, 128, generator=torch.Generator().manual_seed(1))
    small = LocalTransformerBackend(model, tok, chat_template=ChatTemplate(), model_id="small")
    a = Assistant(small, calc_registry(), config=AssistantConfig(max_new_tokens=100))
    assert a.context_tokens == 128 and a.small_context and a.tool_mode == "native"
    first = events_of(a, "hi")
    notices = [e["text"] for e in first if e["type"] == "notice"]
    assert any("tools off" in n for n in notices) and any("capped at 64" in n for n in notices)
    turn = first[-1]["turn"]
    assert turn.completion_tokens <= 64 and not turn.tool_calls
    again = events_of(a, "and again")
    assert not [e for e in again if e["type"] == "notice" and "tools off" in e["text"]]
    roomy = Assistant(small, calc_registry(), config=AssistantConfig(max_new_tokens=16,
                                                                     tool_mode="none"))  # fmt: skip
    assert not roomy.small_context


# -- factory and CLI ---------------------------------------------------------------------------------
def test_build_assistant_wires_tools_and_rag(tmp_path, retriever):
    (tmp_path / "notes.txt").write_text("the key is 42\n")
    a = build_assistant(ScriptedBackend([
        '<tool_call>{"name": "read_file", "arguments": {"path": "notes.txt"}}</tool_call>',
        "The key is 42."]), rag_index=tmp_path / "rag.db", tools_root=tmp_path,
        config=AssistantConfig(rag_enabled=False))  # fmt: skip
    assert a.registry.names == ["calculator", "read_file", "list_dir", "run_python", "web_search"]
    turn = a.chat("What is the key in notes.txt?")
    assert (
        turn.tool_calls[0]["output"].strip() == "the key is 42" and turn.content == "The key is 42."
    )
    hits = a.registry["web_search"].func(query="fog droplets")
    assert "fog.md" in hits
    with pytest.raises(AssistantError, match="rag_index"):
        build_assistant(ScriptedBackend(["x"]), rag_index=tmp_path / "missing.db")
    with pytest.raises(AssistantError, match="tools_root"):
        build_assistant(ScriptedBackend(["x"]), tools_root=tmp_path / "notes.txt")


def test_run_cli_through_a_string_io(tmp_path):
    backend = ScriptedBackend([CALL.format("6*7"), "It is 42 [1].", "Bye!"])
    a = Assistant(backend, calc_registry())
    save = tmp_path / "chat.json"
    inp = io.StringIO(f"/help\nWhat is 6*7?\n/save {save}\n/bogus\n/clear\nhello\n/exit\nnever\n")
    out = io.StringIO()
    assert run_cli(a, inp, out) == 0
    text = out.getvalue()
    assert "/save PATH" in text and '[tool calculator {"expression": "6*7"}]' in text
    assert "  → 42\n" in text and "It is 42 [1]." in text
    assert "unknown command /bogus" in text and "(conversation cleared)" in text
    assert "Bye!" in text and "never" not in text
    saved = json.loads(save.read_text())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert len(a.conversation) == 2  # after /clear: hello + Bye!
    md = tmp_path / "chat.md"
    assert run_cli(a, io.StringIO(f"/save {md}\n"), io.StringIO()) == 0
    assert "## Assistant\n\nBye!" in md.read_text()


def test_chat_returns_an_assistant_turn():
    turn = Assistant(ScriptedBackend(["hello"]), None).chat("hi")
    assert isinstance(turn, AssistantTurn) and turn.latency_ms >= 0
    assert turn.to_dict()["content"] == "hello"


# -- the packaged SmolLM2 -------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_calculator_turn_native(tmp_path):
    a = build_assistant("smollm2", tools_root=tmp_path, tools=("calculator",),
                        config=AssistantConfig(max_new_tokens=48, max_steps=2))  # fmt: skip
    assert a.tool_mode == "native"
    turn = a.chat("Use the calculator: what is 1234 * 5678?")
    assert turn.stopped_reason in ("final_answer", "max_steps", "duplicate_action")
    assert turn.completion_tokens > 0 and turn.content
    for call in turn.tool_calls:  # constrained decoding: every call is valid for the schema
        assert call["name"] == "calculator" and "expression" in call["arguments"]


def test_require_tool_forces_a_call_on_the_engine(tiny):
    cfg = AssistantConfig(max_new_tokens=100, max_steps=1, require_tool=True)
    turn = Assistant(tiny, calc_registry(), config=cfg).chat("2+2?")
    assert turn.tool_calls and turn.tool_calls[0]["name"] == "calculator"
    assert set(turn.tool_calls[0]["arguments"]) <= {"expression"}  # the schema held
    assert turn.stopped_reason == "max_steps"
    scripted = Assistant(ScriptedBackend(["no call"]), calc_registry(), config=cfg)
    assert scripted.chat("2+2?").content == "no call"  # no tool_choice there: ignored
