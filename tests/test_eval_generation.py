"""Generation tasks without a model: IFEval checkers, GSM8K extraction and prompts, the SFT task
family, the sandbox, HumanEval execution and pass@k, the gate file."""

from __future__ import annotations

import json
import math
import os
import sys
from types import SimpleNamespace

import pytest

from g2c.data import locate
from g2c.eval import GenerationExample
from g2c.eval.gate import GateFailure, check_gate, load_gate
from g2c.eval.generation import (
    Generation,
    GSM8KTask,
    SFTTasksTask,
    as_generation,
    backend_generator,
    cut_at_stop,
    extract_gsm8k_answer,
)
from g2c.eval.humaneval import (
    HumanEvalTask,
    check_completion,
    extract_code,
    load_humaneval,
    mean_pass_at_k,
    pass_at_k,
)
from g2c.eval.ifeval import CHECKERS, IFEvalTask, Instruction, check, count_bullets, make_prompts
from g2c.eval.sandbox import network_isolation_available, run_in_sandbox
from g2c.sft import is_heldout, score_answer

needs_data = pytest.mark.skipif(
    locate("humaneval", "HumanEval.jsonl.gz") is None,
    reason="HumanEval.jsonl.gz not available locally (set G2C_DATA_DIR)",
)


# -- IFEval checkers: each passes and fails where it should ------------------------------------
@pytest.mark.parametrize(
    ("kind", "args", "good", "bad"),
    [
        ("word_count_at_least", {"n": 3}, "one two three", "one two"),
        ("word_count_at_most", {"n": 3}, "one two three", "one two three four"),
        ("all_lowercase", {}, "all lower case here.", "Not all lower"),
        ("bullet_count", {"n": 2}, "Intro\n* first\n- second\n", "* only one\n**bold** line"),
        ("valid_json", {}, '```json\n{"a": [1, 2]}\n```', '{"a": 1,}'),
        ("include_keywords", {"keywords": ("Wind", "leaves")}, "The wind moved the leaves.",
         "The windy day"),
        ("no_commas", {}, "No commas at all.", "One, two"),
    ],
)  # fmt: skip
def test_each_ifeval_checker_accepts_compliance_and_rejects_violation(kind, args, good, bad):
    assert check(kind, good, **args) is True
    assert check(kind, bad, **args) is False
    inst = Instruction(kind, args)
    assert inst.check(good) and not inst.check(bad)
    assert inst.describe() and "{" not in inst.describe()


def test_ifeval_checker_edge_cases():
    assert not check("all_lowercase", "123 !!")  # no letter at all: not compliance
    assert not check("no_commas", "   ")  # an empty answer complies with nothing
    assert not check("word_count_at_most", "", n=5)
    assert check("valid_json", "  [1, 2, 3]  ") and not check("valid_json", "")
    assert count_bullets("* a\n  - b\n** not\n-no space\n*   c") == 3
    assert set(CHECKERS) == {"word_count_at_least", "word_count_at_most", "all_lowercase",
                             "bullet_count", "valid_json", "include_keywords",
                             "no_commas"}  # fmt: skip


def test_ifeval_bad_instructions_are_named():
    with pytest.raises(ValueError, match="unknown instruction 'shout'.*known"):
        Instruction("shout")
    with pytest.raises(ValueError, match="word_count_at_least takes \\['n'\\]"):
        Instruction("word_count_at_least", {})
    with pytest.raises(ValueError, match="known"):
        check("shout", "text")
    with pytest.raises(TypeError, match="text must be a str"):
        check("no_commas", None)


def test_ifeval_task_prompts_are_deterministic_and_scored_per_instruction():
    assert make_prompts(6, seed=3) == make_prompts(6, seed=3)
    task = IFEvalTask()
    examples = task.examples(limit=None, seed=0)
    assert len(examples) == task.size
    kinds = {i.kind for ex in examples for i in ex.metadata["instructions"]}
    assert kinds == set(CHECKERS)  # every checker is exercised by the task
    lower = next(ex for ex in examples if [i.kind for i in ex.metadata["instructions"]]
                 == ["all_lowercase"])  # fmt: skip
    assert task.score(lower, "a calm answer.").correct
    assert not task.score(lower, "A calm answer.").correct
    pair = next(ex for ex in examples if len(ex.metadata["instructions"]) == 2)
    r = task.score(pair, "")
    assert r.metadata["followed"] == [False, False]
    results = [task.score(lower, "ok"), task.score(pair, "")]
    assert task.metrics(results)["acc"] == 0.5
    assert task.metrics(results)["inst_acc"] == pytest.approx(1 / 3)


# -- GSM8K ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "answer"),
    [("so 3 + 4 = 7\n#### 7", "7"), ("He pays $1,250 in total.", "1250"),
     ("#### -3.5 and later 9", "-3.5"), ("no number", None), ("It is 42.", "42")],
)  # fmt: skip
def test_gsm8k_answer_extraction(text, answer):
    assert extract_gsm8k_answer(text) == answer


def _gsm8k_dir(tmp_path, n_train=3, n_test=2):
    d = tmp_path / "gsm8k"
    d.mkdir()
    rows = lambda n, tag: "".join(  # noqa: E731
        json.dumps({"question": f"{tag} question {i}?", "answer": f"work\n#### {i + 10}"}) + "\n"
        for i in range(n)
    )
    (d / "train.jsonl").write_text(rows(n_train, "train"))
    (d / "test.jsonl").write_text(rows(n_test, "test"))
    return d


def test_gsm8k_prompts_shots_and_scoring(tmp_path):
    task = GSM8KTask(path=str(_gsm8k_dir(tmp_path)))
    zero = task.examples()
    assert [e.prompt for e in zero] == ["Question: test question 0?\nAnswer:",
                                        "Question: test question 1?\nAnswer:"]  # fmt: skip
    assert zero[0].references == ("10",)
    two = task.examples(limit=1, seed=5, shots=2)
    assert two == task.examples(limit=1, seed=5, shots=2)  # fixed seed, same shots
    assert two[0].prompt.count("Question:") == 3 and two[0].prompt.endswith(zero[0].prompt)
    assert "\n\nQuestion: test" in two[0].prompt and "#### " in two[0].prompt
    assert task.score(zero[0], "First 5, then 10.\n#### 10").correct
    assert task.score(zero[0], "I think 10 then 11").prediction == "11"
    assert not task.score(zero[0], "I think 10 then 11").correct
    with pytest.raises(ValueError, match="shots: 5 exceeds the 3 GSM8K train problems"):
        task.examples(shots=5)
    fmt = task.prompt_format(2)
    assert fmt["shots"] == 2 and fmt["stop"][0] == "Question:"


# -- the SFT task family, scored with the SFT stage's own scorer --------------------------------
def test_sft_tasks_are_heldout_and_scored_by_score_answer():
    task = SFTTasksTask(families=("arithmetic", "reverse"), per_family=3)
    examples = task.examples(seed=1)
    assert len(examples) == 6 and examples == task.examples(seed=1)
    assert all(is_heldout(e.metadata["id"]) for e in examples)

    def answer(prompt, *, max_new_tokens, stop=()):
        ex = next(e for e in examples if e.prompt == prompt)
        return Generation(f"  {ex.references[0]}\n", "stop", 3)

    results = [task.evaluate(answer, e) for e in examples]
    assert all(r.correct for r in results)
    assert all(r.correct == score_answer(e.metadata["item"], r.metadata["completion"])
               for e, r in zip(examples, results))  # fmt: skip
    wrong = task.evaluate(lambda p, **kw: "nope", examples[0])
    assert not wrong.correct and wrong.metadata["hit_max_tokens"] is None
    m = task.metrics([*results[:2], wrong])
    assert m["acc"] == pytest.approx(2 / 3) and set(m) >= {"acc_arithmetic", "acc_reverse"}


def test_generation_that_never_stops_is_recorded_not_raised():
    task = SFTTasksTask(families=("repeat",), per_family=1)
    ex = task.examples()[0]
    r = task.evaluate(lambda p, **kw: Generation("blue sky blue sky", "length", 8), ex, 8)
    assert r.metadata["hit_max_tokens"] is True and not r.correct
    too_long = task.evaluate(lambda p, **kw: Generation("", "prompt_too_long", 0), ex)
    assert not too_long.correct and too_long.metadata["finish_reason"] == "prompt_too_long"
    assert task.metrics([r, too_long])["hit_max_tokens"] == 0.5
    with pytest.raises(TypeError, match="generate must return a str or a Generation"):
        as_generation(3)


def test_stop_strings_and_a_duck_typed_backend():
    assert cut_at_stop("a\nQuestion: b", ["Question:"]) == ("a\n", True)
    assert cut_at_stop("abc", ["x", ""]) == ("abc", False)
    calls = []

    def complete(prompt, **kw):
        calls.append(kw)
        return SimpleNamespace(completion="7\nQuestion: next", completion_tokens=5)

    gen = backend_generator(SimpleNamespace(complete=complete))
    out = gen("Q", max_new_tokens=5, stop=("Question:",))
    assert out == Generation("7\n", "stop", 5) and calls[0]["temperature"] == 0.0
    out = gen("Q", max_new_tokens=5, stop=())
    assert out.hit_max_tokens is True


# -- the sandbox --------------------------------------------------------------------------------
def test_sandbox_runs_code_in_a_temp_dir_with_a_clean_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("SECRET_TOKEN", "xyz")
    code = "import os, sys\nprint(os.getcwd())\nprint(sorted(os.environ))\nprint(input())"
    r = run_in_sandbox(code, timeout_s=5, stdin="hello")
    assert r.ok and r.returncode == 0 and not r.timed_out
    cwd, env, echo = r.stdout.splitlines()
    assert "g2c-sandbox-" in cwd and not os.path.exists(cwd)  # removed afterwards
    assert "HTTPS_PROXY" not in env and "SECRET_TOKEN" not in env and echo == "hello"
    bad = run_in_sandbox("raise SystemExit(3)", timeout_s=5)
    assert bad.returncode == 3 and not bad.ok


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux only")
def test_sandbox_stops_an_infinite_loop_and_a_memory_bomb():
    r = run_in_sandbox("while True:\n    pass", timeout_s=0.5)
    assert r.timed_out and not r.ok and r.seconds < 5
    r = run_in_sandbox("x = bytearray(2 * 1024**3)", timeout_s=5, memory_mb=256)
    assert not r.ok and not r.timed_out and "MemoryError" in r.stderr


def test_sandbox_truncates_output_and_validates_its_arguments():
    r = run_in_sandbox("print('x' * 100000)\nraise ValueError('end')", timeout_s=5,
                       max_output_bytes=100)  # fmt: skip
    assert r.truncated and len(r.stdout) == 100 and r.stderr.rstrip().endswith("ValueError: end")
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        run_in_sandbox("pass", timeout_s=0)
    with pytest.raises(TypeError, match="code must be a str"):
        run_in_sandbox(b"pass")


@pytest.mark.skipif(not network_isolation_available(), reason="no network namespaces here")
def test_sandbox_has_no_network_where_namespaces_are_allowed():
    code = "print(open('/proc/self/net/dev').read())"
    r = run_in_sandbox(code, timeout_s=5)
    assert r.network_isolated
    names = [ln.split(":")[0].strip() for ln in r.stdout.splitlines() if ":" in ln]
    assert names == ["lo"]


# -- HumanEval and pass@k ---------------------------------------------------------------------
def test_pass_at_k_equals_the_binomial_formula():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(3, 1, 3) == 1.0  # n - c < k: every k-subset holds the passing sample
    for n in (1, 4, 9, 20):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
            assert pass_at_k(n, c, 1) == pytest.approx(c / n)
    assert 0 < pass_at_k(200, 3, 100) < 1  # large n: no overflowing binomials
    assert mean_pass_at_k([(5, 2), (5, 0)], 2) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="k must be in"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="c must be in"):
        pass_at_k(3, 4, 1)


@needs_data
def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail():
    task = HumanEvalTask(timeout_s=5)
    examples = task.examples(limit=3)
    assert [e.metadata["id"] for e in examples] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    for ex in examples:
        assert task.score(ex, ex.references[0]).correct, ex.metadata["id"]
    wrong = task.score(examples[0], "    return not True\n")
    assert not wrong.correct and "AssertionError" in wrong.metadata["stderr_tail"]
    loop = check_completion(examples[0].metadata["problem"], "    while True:\n        pass\n",
                            timeout_s=0.5)  # fmt: skip
    assert loop.timed_out and not loop.ok
    assert (
        task.metrics([task.score(examples[0], examples[0].references[0]), wrong])["pass@1"] == 0.5
    )


@needs_data
def test_humaneval_takes_a_chat_models_fenced_answer():
    p = load_humaneval()[2]  # truncate_number
    chat = f"Here you go:\n```python\ndef {p['entry_point']}(number: float) -> float:\n" \
           "    return number % 1.0\n```\nDone."  # fmt: skip
    assert f"def {p['entry_point']}" in extract_code(p, chat)
    assert check_completion(p, chat, timeout_s=5).ok
    unfenced = f"from math import floor\n\ndef {p['entry_point']}(x):\n    return x - floor(x)\n"
    assert check_completion(p, unfenced, timeout_s=5).ok  # imports first, then the def
    body = "    return number % 1.0\n\ndef helper():\n    raise SystemExit(1)\n\nhelper()\n"
    assert extract_code(p, body).endswith("return number % 1.0\n")  # cut at the Codex stop
    assert check_completion(p, body, timeout_s=5).ok


def test_humaneval_bad_file_names_file_and_line(tmp_path):
    f = tmp_path / "he.jsonl"
    f.write_text('{"task_id": "x"}\n')
    with pytest.raises(ValueError, match=r"he\.jsonl:1: missing fields"):
        load_humaneval(f)
    f.write_text("\n{not json\n")
    with pytest.raises(ValueError, match=r"he\.jsonl:2: not JSON"):
        load_humaneval(f)
    f.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        load_humaneval(f)


# -- the gate -----------------------------------------------------------------------------------
RESULTS = {"openbookqa": {"acc": 0.31, "acc_norm": 0.29}, "gsm8k": {"acc": 0.0}}


def test_gate_passes_and_fails_with_every_failure_listed(tmp_path):
    gate = tmp_path / "gate.toml"
    gate.write_text("[openbookqa]\nacc = 0.30\n\n[gsm8k]\nacc = 0\n")
    assert check_gate(RESULTS, gate) == []
    gate.write_text("[openbookqa]\nacc = 0.30\nacc_norm = 0.30\n[gsm8k]\nacc = 0.01\n")
    failures = check_gate(RESULTS, gate)
    assert failures == [GateFailure("openbookqa", "acc_norm", 0.29, 0.30),
                        GateFailure("gsm8k", "acc", 0.0, 0.01)]  # fmt: skip
    assert str(failures[0]) == "openbookqa.acc_norm = 0.2900 < 0.3"


@pytest.mark.parametrize(
    ("text", "match"),
    [("[openbookqa]\nacc = 0.3\n[mmlu]\nacc = 0.3\n", r"gate\.toml: \[mmlu\] is not a task"),
     ("[openbookqa]\nacc_nrom = 0.3\n", r"gate\.toml: \[openbookqa\] acc_nrom is not a metric"),
     ("[openbookqa]\nacc = 0.3\nacc_norm =\n", r"gate\.toml: malformed TOML: .*line 3"),
     ("[openbookqa]\nacc = 'high'\n", r"\[openbookqa\] acc must be a number"),
     ("acc = 0.3\n", r"'acc' must be a \[acc\] table"),
     ("# nothing\n", "sets no minimum")],
)  # fmt: skip
def test_gate_errors_name_the_file_and_the_key(tmp_path, text, match):
    gate = tmp_path / "gate.toml"
    gate.write_text(text)
    with pytest.raises(ValueError, match=match):
        check_gate(RESULTS, gate)


def test_gate_missing_file_and_known_tasks(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gate(tmp_path / "none.toml")
    gate = tmp_path / "g.toml"
    gate.write_text("[ifeval]\ninst_acc = 0.5\n")
    assert load_gate(gate, {"ifeval": ["acc", "inst_acc"]}) == {"ifeval": {"inst_acc": 0.5}}
    with pytest.raises(ValueError, match="not a task of this evaluation"):
        load_gate(gate, {"gsm8k": ["acc"]})


def test_generation_example_metadata_is_kept():
    ex = GenerationExample("p", ("r",), {"id": "x"})
    assert ex.metadata["id"] == "x"
