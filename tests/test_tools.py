"""g2c.tools: types and registry, lenient parsing, dispatch that contains every failure, the
built-in tools' bad input (path escapes incl. symlinks, forks, memory bombs, sockets, hangs,
floods), run_with_tools, and schema-constrained calls on g2c's engine."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from g2c.agent import ScriptedBackend
from g2c.eval.sandbox import network_isolation_available
from g2c.inference import LocalTransformerBackend, OllamaBackend, OpenAIBackend, parse_tool_call
from g2c.sft import ChatTemplate
from g2c.tokenizer import BPETokenizer
from g2c.tools import (
    TOOL_CALL_PROMPTS,
    Tool,
    ToolCall,
    ToolRegistry,
    ToolResult,
    arithmetic_questions,
    calculator_evaluate,
    dispatch_tool_call,
    extract_number,
    format_tool_results,
    keyword_search,
    make_calculator,
    make_list_dir,
    make_read_file,
    make_run_python,
    make_web_search,
    make_write_file,
    open_backend,
    parse_tool_calls,
    render_tools_for_prompt,
    run_with_tools,
    tool_call_validity,
    validate_arguments,
)
from g2c.transformer import TransformerLM

OBJ = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}


def _tool(func, name="t", **kw) -> Tool:
    return Tool(name, "a test tool", OBJ, func, **kw)


# -- types and registry --------------------------------------------------------------------------
def test_tool_validates_its_definition():
    with pytest.raises(ValueError, match="name"):
        Tool("bad name!", "d", OBJ, lambda x: x)
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        Tool("t", "d", {"type": "objekt"}, lambda x: x)
    with pytest.raises(ValueError, match="must describe an object"):
        Tool("t", "d", {"type": "string"}, lambda x: x)
    with pytest.raises(TypeError, match="callable"):
        Tool("t", "d", OBJ, "not a function")
    with pytest.raises(ValueError, match="timeout_s"):
        Tool("t", "d", OBJ, lambda x: x, timeout_s=0)
    assert _tool(lambda x: x).to_openai()["function"]["parameters"] == OBJ


def test_registry_order_lookup_and_errors():
    a, b = _tool(lambda x: x, "a"), _tool(lambda x: x, "b")
    reg = ToolRegistry([a, b])
    assert [t.name for t in reg] == ["a", "b"] == reg.names and len(reg) == 2
    assert reg["a"] is a and reg.get("zzz") is None and "b" in reg
    with pytest.raises(ValueError, match="already registered"):
        reg.register(_tool(lambda x: x, "a"))
    with pytest.raises(TypeError, match="Tool"):
        reg.register({"name": "c"})
    with pytest.raises(KeyError, match="registered: a, b"):
        reg["c"]


def test_validate_arguments_lists_problems():
    assert validate_arguments(OBJ, {"x": 3}) == []
    assert "'x' is a required property" in validate_arguments(OBJ, {})[0]
    assert "is not of type 'integer'" in validate_arguments(OBJ, {"x": "3"})[0]
    assert validate_arguments(OBJ, [1]) == ["arguments must be a JSON object, got list"]
    calc = make_calculator()
    assert validate_arguments(calc, {"expression": "1+1", "extra": 1})  # no extra keys


def test_render_tools_for_prompt_shows_schema_and_format():
    text = render_tools_for_prompt(ToolRegistry([make_calculator()]))
    assert "calculator" in text and '"expression"' in text and "<tool_call>" in text
    with pytest.raises(TypeError):
        render_tools_for_prompt([{"name": "x"}])


# -- parsing -------------------------------------------------------------------------------------
def test_parse_tool_call_blocks_and_engine_format_agree():
    call = ToolCall("calculator", {"expression": "2+2"})
    text = "Let me compute. " + call.to_text()
    parsed = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in parsed] == [("calculator", {"expression": "2+2"})]
    assert parse_tool_call(text) == {"name": "calculator", "arguments": {"expression": "2+2"}}
    two = parse_tool_calls(
        '<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"k": 1}}]'
        '</tool_call> and <tool_call>{"name": "c", "parameters": {"q": "x"}}'
    )  # a list in one block, an alias, a missing closing tag
    assert [c.name for c in two] == ["a", "b", "c"] and two[2].arguments == {"q": "x"}
    assert two.errors == []


def test_parse_fenced_bare_and_native_calls():
    fenced = parse_tool_calls('Sure:\n```json\n{"name": "f", "arguments": {"a": 1}}\n```')
    assert [(c.name, c.arguments) for c in fenced] == [("f", {"a": 1})]
    bare = parse_tool_calls('I call {"name": "f", "arguments": {"a": 2}} now. {"not": "a call"}')
    assert [(c.name, c.arguments) for c in bare] == [("f", {"a": 2})]
    native = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "g", "arguments": '{"city": "Paris"}'}}]}  # fmt: skip
    calls = parse_tool_calls(native)
    assert [(c.name, c.arguments, c.call_id) for c in calls] == [("g", {"city": "Paris"}, "c1")]
    assert parse_tool_calls(json.dumps(native))[0].name == "g"  # the same, as text
    assert parse_tool_calls("no calls here, just 1 + 1 = 2") == []


def test_malformed_calls_are_skipped_and_reported():
    text = ('<tool_call>{"name": "ok", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "broken", "arguments": </tool_call>'
            '<tool_call>{"arguments": {}}</tool_call>'
            '<tool_call>{"name": "x", "arguments": [1]}</tool_call>'
            '<tool_call>{"name": "y", "arguments": "{bad json"}</tool_call>')  # fmt: skip
    parsed = parse_tool_calls(text)
    assert [c.name for c in parsed] == ["ok"]
    assert len(parsed.errors) == 4
    assert "not valid JSON" in parsed.errors[0] and "no 'name'" in parsed.errors[1]
    assert "must be a JSON object" in parsed.errors[2] and "not valid JSON" in parsed.errors[3]
    with pytest.raises(TypeError, match="text"):
        parse_tool_calls(42)


def test_format_tool_results_marks_errors():
    text = format_tool_results([ToolResult("c1", "calc", "4"),
                                ToolResult("c2", "calc", "bad", True)])  # fmt: skip
    assert '<tool_response name="calc" id="c1">\n4\n</tool_response>' in text
    assert 'error="true">\nERROR: bad' in text


# -- dispatch: every failure is a result -----------------------------------------------------------
def test_dispatch_unknown_tool_and_wrong_types():
    reg = ToolRegistry([make_calculator()])
    r = dispatch_tool_call(reg, ToolCall("nope", {}))
    assert r.is_error and "available tools: calculator" in r.output
    for args in ({"expression": 3}, {}, {"expression": "1", "x": 2}):
        r = dispatch_tool_call(reg, ToolCall("calculator", args))
        assert r.is_error and "invalid arguments" in r.output and '"expression"' in r.output
    with pytest.raises(TypeError, match="call"):
        dispatch_tool_call(reg, {"name": "calculator"})


def test_dispatch_contains_raising_hanging_and_flooding_tools(capsys):
    def boom(x):
        raise RuntimeError("kaput")

    def hang(x):
        time.sleep(5)

    def flood(x):
        print("y" * 3_000_000)  # printed megabytes: captured for this thread, bounded
        return "z" * 2_000_000

    reg = ToolRegistry([_tool(boom, "boom"), _tool(hang, "hang", timeout_s=0.2),
                        _tool(flood, "flood", max_output_chars=1000)])  # fmt: skip
    r = dispatch_tool_call(reg, ToolCall("boom", {"x": 1}))
    assert r.is_error and r.output == "RuntimeError: kaput"
    t0 = time.perf_counter()
    r = dispatch_tool_call(reg, ToolCall("hang", {"x": 1}))
    assert r.is_error and "did not finish within 0.2 s" in r.output
    assert time.perf_counter() - t0 < 2
    r = dispatch_tool_call(reg, ToolCall("flood", {"x": 1}))
    assert not r.is_error and len(r.output) < 1200 and "truncated" in r.output
    print("caller output")
    assert capsys.readouterr().out == "caller output\n"  # nothing of the tool leaked


# -- calculator ----------------------------------------------------------------------------------
def test_calculator_evaluates_arithmetic_only():
    assert calculator_evaluate("4821*37") == 178377
    assert calculator_evaluate("(1234 + 5678) * 3 - 999") == 19737
    assert calculator_evaluate("2**10 + -3 % 2 // 1") == 1025
    assert calculator_evaluate("sqrt(1764) + pi*0") == 42.0
    assert calculator_evaluate("7 × 6 ÷ 2") == 21.0
    with pytest.raises(ZeroDivisionError):
        calculator_evaluate("1/0")
    for bad in (
        "__import__('os').system('true')",
        "x + 1",
        "(1).real",
        "'a' * 3",
        "[1, 2]",
        "2 ^ 3",
        "1,234",
        "10 ** 100000",
        "9 ** 9 ** 9",
        "",
        "(" * 300,
    ):
        with pytest.raises(ValueError):
            calculator_evaluate(bad)
    with pytest.raises(TypeError, match="expr"):
        calculator_evaluate(12)
    r = dispatch_tool_call(ToolRegistry([make_calculator()]),
                           ToolCall("calculator", {"expression": "1/0"}))  # fmt: skip
    assert r.is_error and "division by zero" in r.output


# -- files confined to a root --------------------------------------------------------------------
@pytest.fixture()
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "a.txt").write_text("hello\n")
    (base / "sub" / "b.txt").write_text("inner")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (base / "link_out").symlink_to(tmp_path / "secret.txt")
    (base / "dir_out").symlink_to(tmp_path)
    (base / "link_in").symlink_to(base / "a.txt")
    (base / "bin.dat").write_bytes(b"\x00\x01\x02")
    return base


def test_read_file_confined_to_root(root: Path):
    reg = ToolRegistry([make_read_file(root, max_chars=10)])

    def read(path):
        return dispatch_tool_call(reg, ToolCall("read_file", {"path": path}))

    assert read("a.txt").output == "hello\n" and read("sub/../a.txt").output == "hello\n"
    assert read("link_in").output == "hello\n"  # a symlink that stays inside is fine
    for escape in ("../secret.txt", "link_out", "dir_out/secret.txt", "sub/../../secret.txt",
                   str(root.parent / "secret.txt"), "~/x"):  # fmt: skip
        r = read(escape)
        assert r.is_error and "SECRET" not in r.output, escape
        assert "outside the root" in r.output or "absolute" in r.output
    assert read("missing.txt").is_error and "does not exist" in read("missing.txt").output
    assert read("sub").is_error and read("bin.dat").is_error
    (root / "long.txt").write_text("x" * 100)
    assert "[truncated" in read("long.txt").output
    with pytest.raises(ValueError, match="root"):
        make_read_file(root / "nope")


def test_list_and_write_file(root: Path):
    reg = ToolRegistry([make_list_dir(root), make_write_file(root, max_chars=50)])
    listing = dispatch_tool_call(reg, ToolCall("list_dir", {})).output
    assert "a.txt (6 bytes)" in listing and "sub/" in listing and "(outside the root)" in listing
    assert dispatch_tool_call(reg, ToolCall("list_dir", {"path": ".."})).is_error

    def write(path, content):
        return dispatch_tool_call(reg, ToolCall("write_file", {"path": path, "content": content}))

    assert not write("new/dir/c.txt", "data").is_error
    assert (root / "new" / "dir" / "c.txt").read_text() == "data"
    assert write("../evil.txt", "x").is_error and not (root.parent / "evil.txt").exists()
    assert write("dir_out/evil.txt", "x").is_error and not (root.parent / "evil.txt").exists()
    assert write("link_out", "x").is_error
    assert (root.parent / "secret.txt").read_text() == "TOP SECRET"
    r = write("big.txt", "x" * 51)
    assert r.is_error and "at most 50" in r.output and not (root / "big.txt").exists()
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers


# -- run_python on the sandbox -----------------------------------------------------------------
def test_run_python_runs_code_with_data(root: Path):
    reg = ToolRegistry([make_run_python(timeout=5, cwd=root)])

    def run(code, **kw):
        return dispatch_tool_call(reg, ToolCall("run_python", {"code": code, **kw}))

    assert run("print(6*7)").output.strip() == "42"
    assert run("print(data.upper())", path="a.txt").output.strip() == "HELLO"
    assert run("print(data)", path="../secret.txt").is_error
    r = run("raise ValueError('nope')")
    assert r.is_error and "ValueError: nope" in r.output
    with pytest.raises(ValueError, match="timeout"):
        make_run_python(timeout=0)


def test_run_python_contains_forks_memory_sockets_and_hangs(tmp_path: Path):
    reg = ToolRegistry([make_run_python(timeout=2, memory_mb=128)])

    def run(code):
        return dispatch_tool_call(reg, ToolCall("run_python", {"code": code}))

    hog = run("x = bytearray(1024 * 1024 * 1024)\nprint('allocated')")
    assert hog.is_error and "MemoryError" in hog.output
    t0 = time.perf_counter()
    hang = run("while True: pass")
    assert hang.is_error and time.perf_counter() - t0 < 10
    t0 = time.perf_counter()
    fork = run("import os, time\nif os.fork() == 0:\n    time.sleep(60)\nprint('forked')")
    assert time.perf_counter() - t0 < 10  # a child left behind is killed with the group
    if os.geteuid() != 0:  # the kernel ignores RLIMIT_NPROC for root
        assert fork.is_error and "forked" not in fork.output
    flood = run("print('x' * 5_000_000)")
    assert len(flood.output) < 20_000
    if not network_isolation_available():
        pytest.skip("no network namespaces here: sockets cannot be isolated (documented)")
    sock = run("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)")
    assert sock.is_error and "Error" in sock.output


# -- web_search ----------------------------------------------------------------------------------
def test_web_search_stub_and_index():
    stub = ToolRegistry([make_web_search()])
    r = dispatch_tool_call(stub, ToolCall("web_search", {"query": "bridges"}))
    assert not r.is_error and "stub" in r.output and "bridges" in r.output
    search = keyword_search({"a.md": "The bridge was built in 1873.\n\nUnrelated text.",
                             "b.md": "Cats sleep a lot."})  # fmt: skip
    hits = search("bridge built", 5)
    assert hits[0]["source"] == "a.md" and hits[0]["rank"] == 1 and hits[0]["start"] == 0
    reg = ToolRegistry([make_web_search(search)])
    out = dispatch_tool_call(reg, ToolCall("web_search", {"query": "bridge"})).output
    assert out.startswith("[1] a.md:0-") and "1873" in out
    assert dispatch_tool_call(reg, ToolCall("web_search", {"query": "x", "k": 99})).is_error
    broken = ToolRegistry([make_web_search(lambda q, k: 1 / 0)])
    assert dispatch_tool_call(broken, ToolCall("web_search", {"query": "x"})).is_error
    with pytest.raises(TypeError, match="search"):
        make_web_search("not callable")


# -- the loop ------------------------------------------------------------------------------------
def test_run_with_tools_text_protocol_recovers_from_bad_calls():
    calc = ToolRegistry([make_calculator()])
    backend = ScriptedBackend([
        '<tool_call>{"name": "calculator", "arguments": {"expression": 12}}</tool_call>',
        "<tool_call>{oops</tool_call>",
        '<tool_call>{"name": "calculator", "arguments": {"expression": "12*13"}}</tool_call>',
        "The answer is 156.",
    ])  # fmt: skip
    run = run_with_tools(backend, calc, "What is 12*13?", max_steps=5, native=False)
    assert run.stopped_reason == "answer" and run.answer == "The answer is 156."
    assert [r.is_error for r in run.results] == [True, False] and run.results[1].output == "156"
    feedback = [m["content"] for m in run.messages if m["role"] == "user"][1:]
    assert "invalid arguments" in feedback[0] and "could not be read" in feedback[1]
    stuck = ScriptedBackend(["<tool_call>{oops</tool_call>"])
    run = run_with_tools(stuck, calc, "x", max_steps=10, max_retries=2, native=False)
    assert run.stopped_reason == "invalid_calls" and run.steps == 3
    native = ScriptedBackend([ToolCall("calculator", {"expression": "2*21"}).to_text(), "42"])
    run = run_with_tools(native, calc, "What is 2*21?")
    assert run.native and run.answer == "42" and run.results[0].output == "42"
    assert run.messages[-2]["role"] == "tool"
    with pytest.raises(ValueError, match="max_steps"):
        run_with_tools(native, calc, "x", max_steps=0)


@pytest.fixture(scope="module")
def tiny() -> LocalTransformerBackend:
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(len(tok.vocab), 16, 1, 2, 4096, positional="rope",
                          generator=torch.Generator().manual_seed(0)).eval()  # fmt: skip
    return LocalTransformerBackend(model, tok, chat_template=ChatTemplate(), model_id="tiny")


def test_constrained_calls_always_parse_and_validate(tiny, tmp_path):
    """An untrained model's forced calls on g2c's engine are all valid (the schema constrains
    the decoding); its plain-text attempts are not."""
    reg = ToolRegistry([make_calculator(), make_web_search(), make_read_file(tmp_path),
                        make_write_file(tmp_path)])  # fmt: skip
    prompts = TOOL_CALL_PROMPTS[::4]
    forced = tool_call_validity(tiny, reg, prompts, mode="required", max_new_tokens=160)
    assert forced.valid == forced.n == len(prompts)
    plain = tool_call_validity(tiny, reg, prompts[:2], mode="plain", max_new_tokens=16)
    assert plain.valid == 0
    with pytest.raises(ValueError, match="mode"):
        tool_call_validity(tiny, reg, prompts, mode="magic")


def test_arithmetic_helpers_and_open_backend():
    qs = arithmetic_questions(8, seed=0)
    assert qs == arithmetic_questions(8, seed=0) and len(qs) == 8
    for q, a in qs:
        assert calculator_evaluate(q.removeprefix("What is ").rstrip("?")) == a
    assert extract_number("123*45 = 5,535\nmore 7") == 5535.0
    assert extract_number("The answer is 42.") == 42.0 and extract_number("none") is None
    assert isinstance(open_backend("http://127.0.0.1:9/v1#m"), OpenAIBackend)
    ollama = open_backend("http://127.0.0.1:11434#llama3")
    assert isinstance(ollama, OllamaBackend) and ollama.model_id == "llama3"
    with pytest.raises(ValueError, match="model"):
        open_backend("")


def test_example_18_smoke(capsys):
    path = Path(__file__).resolve().parents[1] / "examples" / "18_calculator_exercise.py"
    spec = importlib.util.spec_from_file_location("example_18", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "required" in out and "calculator" in out
    assert sys.stdout is not None
