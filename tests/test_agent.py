"""g2c.agent: the ReAct parser, the bounded scratchpad, every stop reason and guard of the loop
(driven by a scripted stand-in model, with the real tools), the JSON-lines trace and `g2c agent
show`, NativeAgent, and the task suite's checkers (oracle scripts pass, wrong answers fail)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from g2c.agent import (
    STOP_REASONS,
    Action,
    Agent,
    AgentError,
    AgentRunResult,
    NativeAgent,
    Plan,
    Scratchpad,
    ScriptedBackend,
    build_tasks,
    failure_script,
    guard_ablation,
    load_trace,
    parse_react_step,
    run_suite,
    run_task,
)
from g2c.cli import main as cli_main
from g2c.inference import LocalTransformerBackend
from g2c.sft import ChatTemplate
from g2c.tokenizer import BPETokenizer
from g2c.tools import Tool, ToolCall, ToolRegistry, make_calculator, make_read_file
from g2c.transformer import TransformerLM


def act(tool: str, args: dict | str) -> str:
    body = json.dumps(args) if isinstance(args, dict) else args
    return f"Thought: use {tool}\nAction: {tool}\nAction Input: {body}"


CALC = act("calculator", {"expression": "12*13"})
FINAL = "Thought: done\nFinal Answer: 156"


@pytest.fixture(autouse=True)
def _traces_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("G2C_AGENT_TRACES", str(tmp_path / "traces"))


@pytest.fixture()
def calc() -> ToolRegistry:
    return ToolRegistry([make_calculator()])


def run(replies, registry, tmp_path, **kw):
    kw.setdefault("plan", False)
    agent = Agent(ScriptedBackend(replies), registry, trace_path=tmp_path / "t.jsonl", **kw)
    return agent.run("What is 12*13?")


# -- parsing ---------------------------------------------------------------------------------------
def test_parse_react_step_forms():
    p = parse_react_step(CALC)
    assert p.action == Action("calculator", {"expression": "12*13"}) and p.error is None
    assert p.thought == "use calculator" and p.final_answer is None
    p = parse_react_step("thought: ok\n**Final Answer:** 42 apples")
    assert p.final_answer == "42 apples" and p.action is None
    # the model invents an observation and an answer: both ignored, the action wins
    p = parse_react_step(CALC + "\nObservation: 999\nThought: so\nFinal Answer: 999")
    assert p.action.tool == "calculator" and p.final_answer is None
    p = parse_react_step('Action: calculator\nAction Input:\n```json\n{"expression": "1"}\n```')
    assert p.action.arguments == {"expression": "1"}
    p = parse_react_step(act("calculator", "12 * 13"))
    assert p.action.raw_input == "12 * 13" and "not a JSON object" in p.error
    p = parse_react_step("Action: calculator")
    assert "missing" in p.error
    p = parse_react_step('Sure <tool_call>{"name": "calculator", "arguments": {"expression": '
                         '"2"}}</tool_call>')  # fmt: skip
    assert p.action == Action("calculator", {"expression": "2"})
    p = parse_react_step("I think the answer is 156.")
    assert p.action is None and p.final_answer is None and "no 'Action:'" in p.error
    with pytest.raises(TypeError):
        parse_react_step(None)


def test_plan_and_scratchpad_bound():
    plan = Plan.from_text("Sure!\n1. Read the file\n2) Add numbers\n- Write total")
    assert plan.steps == ["Read the file", "Add numbers", "Write total"]
    assert Plan.from_text("just do it").steps == ["just do it"]
    pad = Scratchpad(max_chars=400)
    for n in range(10):
        pad.add(f"step {n} " + "x" * 80)
    assert len(pad) <= 400 and pad.dropped > 0 and "earlier steps omitted" in pad.render()
    assert "step 9" in pad.render() and "step 0" not in pad.render()
    pad.add("y" * 5000)
    assert len(pad) <= 400 and "characters cut" in pad.render() and pad.cut == 1
    with pytest.raises(ValueError, match="max_chars"):
        Scratchpad(max_chars=10)


# -- stop reasons ----------------------------------------------------------------------------------
def test_final_answer_with_plan_and_trace(calc, tmp_path):
    agent = Agent(ScriptedBackend([CALC, FINAL]), calc, trace_path=tmp_path / "t.jsonl")
    result = agent.run("What is 12*13?")
    assert isinstance(result, AgentRunResult)
    assert (result.stopped_reason, result.final_answer) == ("final_answer", "156")
    assert [s.index for s in result.steps] == [1, 2]
    assert result.steps[0].observation.output == "156" and not result.steps[0].observation.is_error
    assert result.metadata["plan"] == ["Use the tools.", "Give the final answer."]
    records = load_trace(result.metadata["trace"])
    assert [r["type"] for r in records] == ["run_start", "plan", "step", "step", "run_end"]
    step = records[2]
    assert step["prompt_chars"] > 0 and step["model_output"] == CALC and step["seconds"] >= 0
    assert step["action"] == {"tool": "calculator", "arguments": {"expression": "12*13"}}
    assert step["observation"] == {"output": "156", "is_error": False, "guard": None}
    assert records[-1]["stopped_reason"] == "final_answer" and records[0]["tools"] == ["calculator"]


def test_max_steps_without_loop_detection(calc, tmp_path):
    r = run([CALC], calc, tmp_path, max_steps=4, loop_detection=False, no_progress_steps=None)
    assert r.stopped_reason == "max_steps" and len(r.steps) == 4 and r.final_answer == ""


def test_duplicate_action_stops_a_loop(calc, tmp_path):
    r = run([CALC], calc, tmp_path, max_steps=8)
    assert r.stopped_reason == "duplicate_action" and len(r.steps) == 3
    assert r.steps[1].observation.guard == "duplicate_action"
    assert "already called calculator" in r.steps[1].observation.output
    assert r.metadata["guards"]["duplicate_action"] == 2
    # the warning is enough for a model that listens
    r = run([CALC, CALC, FINAL], calc, tmp_path)
    assert r.stopped_reason == "final_answer" and r.final_answer == "156"


def test_no_progress_on_repeated_errors(calc, tmp_path):
    r = run(["I am not sure what to do."], calc, tmp_path, max_steps=8, no_progress_steps=3)
    assert r.stopped_reason == "no_progress" and len(r.steps) == 3
    assert all(s.observation.guard == "format" for s in r.steps)
    assert "Final Answer:" in r.steps[0].observation.output  # the message says how to fix it
    errs = [act("calculator", {"expression": f"1/{0}*{n}"}) for n in range(5)]
    r = run(errs, calc, tmp_path, max_steps=8, no_progress_steps=2)
    assert r.stopped_reason == "no_progress" and "division by zero" in r.steps[0].observation.output


def test_budgets_and_backend_errors(calc, tmp_path):
    r = run([CALC, act("calculator", {"expression": "1+1"}), FINAL], calc, tmp_path,
            max_tokens=5)  # fmt: skip
    assert r.stopped_reason == "token_budget" and len(r.steps) == 1
    slow = ToolRegistry([Tool("slow", "sleeps", {"type": "object"},
                              lambda: time.sleep(0.3) or "ok")])  # fmt: skip
    r = run([act("slow", {})], slow, tmp_path, max_seconds=0.2)
    assert r.stopped_reason == "time_budget" and len(r.steps) == 1
    agent = Agent(ScriptedBackend([CALC], context_chars=50), calc, plan=False,
                  trace_path=tmp_path / "b.jsonl")  # fmt: skip
    r = agent.run("What is 12*13?")
    assert r.stopped_reason == "backend_error" and "context holds 50" in r.metadata["error"]
    assert set(STOP_REASONS) >= {"final_answer", "max_steps", "duplicate_action", "no_progress"}
    with pytest.raises(ValueError, match="stopped_reason"):
        AgentRunResult("", "tired", [])


def test_argument_recovery_and_its_absence(calc, tmp_path):
    plain = act("calculator", "12*13")
    r = run([plain, FINAL], calc, tmp_path)
    assert r.steps[0].action.raw_input == "12*13"
    assert r.steps[0].observation.output == "156" and r.final_answer == "156"
    r = run([act("calculator", {"expr": "12*13"}), FINAL], calc, tmp_path)  # a wrong key
    assert r.steps[0].observation.output == "156"
    r = run([act("calculator", {"expression": 12}), FINAL], calc, tmp_path)  # a wrong type
    obs = r.steps[0].observation
    assert obs.is_error and "invalid arguments" in obs.output and "Action Input:" in obs.output
    off = run([plain], calc, tmp_path, recover_arguments=False, max_steps=8)
    assert off.stopped_reason == "no_progress"
    assert all(s.observation.guard == "format" for s in off.steps)


def test_bad_agent_arguments(calc, tmp_path):
    backend = ScriptedBackend([FINAL])
    with pytest.raises(TypeError, match="registry"):
        Agent(backend, [make_calculator()])
    with pytest.raises(ValueError, match="no tools"):
        Agent(backend, ToolRegistry())
    with pytest.raises(ValueError, match="max_steps"):
        Agent(backend, calc, max_steps=0)
    with pytest.raises(ValueError, match="max_chars"):
        Agent(backend, calc, scratchpad_chars=5)
    with pytest.raises(ValueError, match="max_seconds"):
        Agent(backend, calc, max_seconds=-1)
    with pytest.raises(ValueError, match="task"):
        Agent(backend, calc, trace_path=tmp_path / "x.jsonl").run("  ")


def test_a_crashing_tool_never_crashes_the_agent(tmp_path):
    boom = ToolRegistry([Tool("boom", "fails", {"type": "object"}, lambda: 1 / 0)])
    r = run([act("boom", {}), "Thought: it failed\nFinal Answer: cannot"], boom, tmp_path)
    assert r.stopped_reason == "final_answer"
    assert r.steps[0].observation.is_error and "ZeroDivisionError" in r.steps[0].observation.output
    r = run([act("nope", {}), FINAL], boom, tmp_path)
    assert "no tool named 'nope'" in r.steps[0].observation.output


# -- native ----------------------------------------------------------------------------------------
def test_native_agent(calc, tmp_path):
    call = ToolCall("calculator", {"expression": "12*13"}).to_text()
    agent = NativeAgent(ScriptedBackend([call, "It is 156."]), calc, trace_path=tmp_path / "n")
    r = agent.run("What is 12*13?")
    assert (r.stopped_reason, r.final_answer) == ("final_answer", "It is 156.")
    assert r.steps[0].observation.output == "156"
    sent = agent.backend.calls[-1]
    assert sent[-1] == {"role": "tool", "tool_call_id": sent[-2]["tool_calls"][0]["id"],
                        "name": "calculator", "content": "156"}  # fmt: skip
    looping = NativeAgent(ScriptedBackend([call]), calc, trace_path=tmp_path / "m")
    assert looping.run("x").stopped_reason == "duplicate_action"


def test_native_agent_can_force_the_first_call_on_g2c_engine(calc, tmp_path):
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(len(tok.vocab), 16, 1, 2, 4096, positional="rope",
                          generator=torch.Generator().manual_seed(0)).eval()  # fmt: skip
    tiny = LocalTransformerBackend(model, tok, chat_template=ChatTemplate(), model_id="tiny")
    agent = NativeAgent(tiny, calc, max_steps=1, max_new_tokens=120, require_first_call=True,
                        trace_path=tmp_path / "f.jsonl")  # fmt: skip
    r = agent.run("What is 12*13?")
    assert r.steps[0].action is not None and r.steps[0].action.tool == "calculator"
    assert r.stopped_reason in ("max_steps", "no_progress")  # an untrained model, one step


# -- trace file and `g2c agent show` --------------------------------------------------------------
def test_trace_loading_and_show(calc, tmp_path, capsys):
    r = run([CALC, FINAL], calc, tmp_path)
    path = Path(r.metadata["trace"])
    with open(path, "a") as f:
        f.write('{"type": "step", "cut')  # a run killed mid-write: the last line is skipped
    assert load_trace(path)[-1]["type"] == "run_end"
    assert cli_main(["agent", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "step 1" in out and "calculator" in out and "final_answer" in out and "156" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{}\n")
    with pytest.raises(AgentError, match="bad.jsonl:1"):
        load_trace(bad)
    assert cli_main(["agent", "show", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_run_checks_flags_before_loading(tmp_path, capsys):
    assert cli_main(["agent", "run", "x", "--model", "smollm2", "--tools", "teleport"]) == 2
    assert "unknown tool 'teleport'" in capsys.readouterr().err
    assert cli_main(["agent", "run", "x", "--model", "smollm2", "--tools", "read_file"]) == 2
    assert "needs a root" in capsys.readouterr().err
    assert cli_main(["agent", "run", "x", "--model", "smollm2", "--max-steps", "0"]) == 2
    assert "max_steps" in capsys.readouterr().err
    # a server that is not there: the run ends with backend_error (exit 1), trace written
    trace = tmp_path / "t.jsonl"
    argv = ["agent", "run", "What is 2+2?", "--model", "http://127.0.0.1:9/v1#m", "--trace",
            str(trace), "--tools", "calculator,web_search", "--corpus", str(tmp_path)]  # fmt: skip
    (tmp_path / "doc.md").write_text("Two and two make four.")
    assert cli_main(argv) == 1
    out = capsys.readouterr().out
    assert "backend_error" in out and "cannot reach" in out
    assert load_trace(trace)[-1]["stopped_reason"] == "backend_error"


# -- the suite ------------------------------------------------------------------------------------
def test_suite_oracles_pass_and_checkers_reject_wrong_answers(tmp_path):
    tasks = build_tasks()
    assert len(tasks) >= 20 and len({t.name for t in tasks}) == len(tasks)
    assert {t.category for t in tasks} >= {"calculator", "files", "research", "failure"}
    rep = run_suite(None, tasks, backend_for=lambda t: ScriptedBackend(list(t.oracle)),
                    trace_dir=tmp_path)  # fmt: skip
    assert [o.name for o in rep.outcomes if not o.success] == []
    assert rep.success_rate == 1.0 and rep.mean_steps >= 2
    assert (tmp_path / "file_total.jsonl").is_file()
    for task in tasks:  # answering without doing the work fails every checker
        o = run_task(task, ScriptedBackend(["Thought: guess\nFinal Answer: 7"]))
        assert not o.success and o.failure == "wrong_answer", task.name


def test_guard_ablation_with_scripted_failures():
    fails = [t for t in build_tasks() if t.failure_mode]
    table = guard_ablation(None, fails, backend_for=lambda t, m: ScriptedBackend(
        failure_script(t, m), context_chars=8000), scratchpad_chars=3000)  # fmt: skip
    loop, args, ctx = (table[m] for m in ("repeated action", "invalid arguments",
                                          "context overflow"))  # fmt: skip
    assert loop["before"]["repeated_steps"] > loop["after"]["repeated_steps"]
    assert args["before"]["invalid_argument_calls"] > args["after"]["invalid_argument_calls"] == 0
    assert ctx["before"]["context_errors"] == 1 and ctx["after"]["context_errors"] == 0
    for row in table.values():
        assert row["after"]["solved"] > row["before"]["solved"]


def test_example_19_smoke(capsys):
    path = Path(__file__).resolve().parents[1] / "examples" / "19_agent_suite.py"
    spec = importlib.util.spec_from_file_location("example_19", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke", "--part", "suite", "--tasks", "calc_product,file_total"]) == 0
    assert "2/2 solved" in capsys.readouterr().out


def test_read_file_agent_cannot_escape(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    reg = ToolRegistry([make_read_file(tmp_path / "root")])
    r = run([act("read_file", {"path": "../secret.txt"}), "Final Answer: no"], reg, tmp_path)
    assert r.steps[0].observation.is_error and "SECRET" not in r.steps[0].observation.output
