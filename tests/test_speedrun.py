"""`g2c speedrun`: the smoke pipeline end to end, the report, resume after SIGTERM / SIGKILL,
budget planning, evaluation (bits per byte) and the code-size table."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from g2c.artifacts import ArtifactError, load_safetensors
from g2c.cli import main
from g2c.runs import bits_per_byte, code_size_table, evaluate_stream, get_preset, speedrun
from g2c.runs.eval import EvalRunResult
from g2c.runs.pretrain import plan_max_steps
from g2c.runs.sft import load_any
from g2c.transformer import TransformerConfig, TransformerLM, load_model
from g2c.transformer.loading import chat_target
from g2c.transformer.loading import load_model as load_model_kw

TEXT = (
    "KING RICHARD:\nNow is the winter of our discontent made glorious summer by this sun.\n\n"
    "GLOUCESTER:\nAnd all the clouds that lour'd upon our house in the deep bosom buried.\n\n"
) * 60
TINY = ["--threads", "1", "--vocab-size", "300"]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("G2C_HOME", str(tmp_path / "runs"))
    monkeypatch.setenv("G2C_NO_PROGRESS", "1")


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _has_tinyshakespeare() -> bool:
    d = os.environ.get("G2C_DATA_DIR")
    return bool(d) and (Path(d) / "tinyshakespeare" / "input.txt").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not _has_tinyshakespeare(), reason="TinyShakespeare not in $G2C_DATA_DIR")
def test_speedrun_smoke_on_real_data_writes_a_report(tmp_path, capsys):
    out = tmp_path / "sr"
    assert main(["speedrun", "--smoke", "--out", str(out), "--threads", "1"]) == 0
    report = (out / "report.md").read_text()
    for needle in ("## Stages", "| tokenizer |", "| pretraining |", "| evaluation |",
                   "bits per byte", "## Samples", "## Size of the code", "`g2c.transformer`",
                   "![loss](loss.png)"):  # fmt: skip
        assert needle in report, needle
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"].startswith("SpeedrunLM-")
    assert manifest["run_config"]["data"]["corpus"] == ["tinyshakespeare"]
    assert manifest["run_config"]["data"]["tokenizer"] == "bpe"
    m = manifest["metrics"]
    assert 0 < m["val_bpb"] < 8 and m["val_loss"] < math.log(384)  # learned something
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["tag"] for s in samples} == {"during", "final"}
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    assert any(line.startswith("report:") for line in printed)
    assert printed[-2:] == [f"  g2c chat {out}", f"  g2c serve {out}"]  # the two commands
    # the speedrun learns to chat: SFT on the pretrained run, DPO on the SFT run
    sft_m = json.loads((out / "sft" / "manifest.json").read_text())
    dpo_m = json.loads((out / "dpo" / "manifest.json").read_text())
    assert (
        Path(sft_m["parent"]) == out.resolve() and Path(dpo_m["parent"]) == (out / "sft").resolve()
    )
    assert sft_m["metrics"]["steps"] > 0 and dpo_m["metrics"]["steps"] > 0
    _check_chat_ready(out, report)
    # the eval stage: the fixed suite on the DPO model, its table at the end of the report card
    tasks = speedrun.available_tasks(speedrun.EVAL_TASKS, speedrun.EVAL_LIMIT_SMOKE)
    assert "perplexity" in tasks  # the corpus is here (the skip condition)
    results = json.loads((out / "dpo" / "eval" / "results.json").read_text())
    assert list(results["tasks"]) == tasks and results["model"] == str((out / "dpo").resolve())
    assert all(r["n"] == speedrun.EVAL_LIMIT_SMOKE for r in results["tasks"].values())
    assert 0 < results["tasks"]["perplexity"]["metrics"]["bits_per_byte"] < 16
    for name in tasks:
        assert f"| {name} |" in report.split("## Evaluation suite")[1], name
    # the evaluation per stage: the base's val bits/byte is the pretraining evaluation's
    post = json.loads((out / "posttrain.json").read_text())
    stages = json.loads((out / "stages.json").read_text())
    assert post["stages"]["base"]["val_bpb"] == pytest.approx(stages["evaluation"]["val_bpb"])
    scored = speedrun.evaluate_stages(out, reuse_base=False)  # the same tokens, scored again
    assert scored["base"]["val_bpb"] == pytest.approx(stages["evaluation"]["val_bpb"], abs=1e-6)
    assert scored["dpo"]["val_bpb"] == pytest.approx(post["stages"]["dpo"]["val_bpb"], abs=1e-6)
    assert {"val_bpb", "task_accuracy", "preference_accuracy"} <= set(post["stages"]["dpo"])
    assert post["stages"]["dpo"]["val_bpb"] != post["stages"]["base"]["val_bpb"]


def _equal_weights(loaded, path: Path) -> bool:
    saved = load_safetensors(path)
    state = loaded.model.state_dict()
    return all(torch.equal(state[k], v) for k, v in saved.items() if k in state) and all(
        k in state for k in saved
    )


def _check_chat_ready(out: Path, report: str) -> None:
    """The finished speedrun's root loads the DPO model (g2c chat / g2c serve read it so), the
    base stays addressable, and the report card has its sections and ends with the commands."""
    assert json.loads((out / "chat.json").read_text())["chat_model"] == "dpo"
    final = load_model(out)
    assert final.source == out / "dpo" and final.tokenizer is not None
    assert _equal_weights(final, out / "dpo" / "model.safetensors")
    assert load_any(str(out))[1].source == out / "dpo"  # what g2c chat and g2c serve call
    base = load_model_kw(out, follow_chat=False)
    assert _equal_weights(base, out / "model.safetensors")
    assert not _equal_weights(base, out / "dpo" / "model.safetensors")
    assert _equal_weights(load_model(out / "base"), out / "model.safetensors")
    table = report.split("## Stages")[1].split("## ")[0]
    for row in ("| SFT |", "| DPO |", "| evaluation per stage |", "| chat transcripts |",
                "| **speedrun total** |"):  # fmt: skip
        assert row in table, row
    section = report.split(speedrun.STAGE_EVAL_SECTION)[1].split("\n## ")[0]
    assert "| metric | base | SFT | DPO |" in section
    for needle in ("val bits per byte", "held-out task accuracy", "preference accuracy"):
        assert needle in section, needle
    transcripts = report.split(speedrun.TRANSCRIPT_SECTION)[1].split("\n## ")[0]
    for prompt in speedrun.CHAT_PROMPTS:
        assert f"you> {prompt}\nassistant> " in transcripts, prompt
    order = [report.index(h) for h in ("## Stages", speedrun.STAGE_EVAL_SECTION, "## Samples",
             speedrun.TRANSCRIPT_SECTION, "## Size of the code", "## Talk to it")]  # fmt: skip
    assert order == sorted(order)
    assert report.rstrip().splitlines()[-3:] == [f"g2c chat {out}", f"g2c serve {out}", "```"]


@pytest.mark.slow
def test_speedrun_smoke_stand_in_text_and_rerun_is_a_resume(tmp_path, text_file):
    out = tmp_path / "sr"
    args = ["speedrun", "--smoke", "--text-file", str(text_file), "--out", str(out), *TINY]
    assert main(args) == 0
    first = json.loads((out / "manifest.json").read_text())
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()
    assert [m["step"] for m in _metrics(out)] == list(range(5, 41, 5))
    assert load_model(out).source == out / "dpo"  # chat-ready without the data sets too
    dpo_weights = load_safetensors(out / "dpo" / "model.safetensors")
    assert main(args) == 0  # rerunning a finished run keeps it (nothing retrained)
    assert _metrics(out)[-1]["step"] == 40 and len(_metrics(out)) == 8
    again = json.loads((out / "manifest.json").read_text())
    assert again["metrics"]["val_loss"] == pytest.approx(first["metrics"]["val_loss"])
    # the rerun's SFT stage read the pretrained root as its base, not the DPO model it names
    sft_m = json.loads((out / "sft" / "manifest.json").read_text())
    assert sft_m["name"] == f"{first['name']}-sft"
    assert _equal_weights(load_model(out), out / "dpo" / "model.safetensors")
    assert all(torch.equal(v, dpo_weights[k]) for k, v in
               load_safetensors(out / "dpo" / "model.safetensors").items())  # fmt: skip
    assert main([*args, "--fresh", "--max-steps", "10"]) == 0
    assert _metrics(out)[-1]["step"] == 10
    # --fresh retrains the post-training on the new base too (no stale SFT / DPO resumed)
    fresh_dpo = load_safetensors(out / "dpo" / "model.safetensors")
    assert not all(torch.equal(v, dpo_weights[k]) for k, v in fresh_dpo.items())
    assert _equal_weights(load_model(out), out / "dpo" / "model.safetensors")


_MAIN = "import sys; from g2c.cli import main; sys.exit(main(sys.argv[1:]))"


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "G2C_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-c", _MAIN, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {path.name}: {proc.communicate()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_speedrun_resumes_with_the_uninterrupted_losses(tmp_path, text_file, sig):
    common = ["speedrun", "--smoke", "--text-file", str(text_file), *TINY, "--max-steps", "600",
              "--eval-every", "50", "--checkpoint-every", "10", "--sample-every", "0"]  # fmt: skip
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main([*common, "--out", str(ref)]) == 0
    proc = _spawn([*common, "--out", str(run)])
    _wait_for(run / "checkpoint.pt", proc)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130  # checkpointed and exited cleanly
    assert not (run / "model.safetensors").exists(), "the run finished before the signal"
    stopped = torch.load(run / "checkpoint.pt", weights_only=True)["trainer"]["step"]
    assert 0 < stopped < 600
    assert main([*common, "--out", str(run)]) == 0  # same command again: resumes
    steps = [m["step"] for m in _metrics(run)]
    assert steps == sorted(set(steps)) and steps[-1] == 600  # continued, no duplicates
    a, b = _metrics(ref), _metrics(run)
    assert [m["train_loss"] for m in b] == pytest.approx([m["train_loss"] for m in a], abs=1e-6)
    ma = json.loads((ref / "manifest.json").read_text())["metrics"]
    mb = json.loads((run / "manifest.json").read_text())["metrics"]
    assert mb["val_loss"] == pytest.approx(ma["val_loss"], abs=1e-6)


@pytest.mark.slow
def test_budget_run_plans_steps_and_keeps_them_on_resume(tmp_path, text_file):
    out = tmp_path / "b"
    args = ["speedrun", "--smoke", "--text-file", str(text_file), "--out", str(out), *TINY,
            "--budget-minutes", "0.3", "--max-steps", "100000", "--eval-every", "20",
            "--log-every", "5"]  # fmt: skip
    assert main([*args, "--stop-after-steps", "10"]) == 130
    stored = json.loads((out / "run_config.json").read_text())
    planned = stored["train"]["max_steps"]
    assert 10 < planned < 100000  # chosen from the measured step time, not the flag
    # --budget-minutes is the whole speedrun's: the pretrain stage plans with its share
    assert stored["run"]["budget_minutes"] == pytest.approx(0.3 - speedrun.POSTTRAIN_MINUTES_SMOKE)
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["metrics"]["steps"] == planned


def test_plan_max_steps_accounts_for_eval_and_samples():
    cfg = get_preset("speedrun")
    t = cfg.train
    n = plan_max_steps(cfg, 600.0, step_s=0.5, sample_token_s=0.0)
    per_step = 0.5 * (1 + t.eval_iters / 3 / t.eval_every)
    assert n == int(600 / per_step)
    assert plan_max_steps(cfg, 600.0, 0.5, sample_token_s=0.01) < n
    assert plan_max_steps(cfg, 0.0, 0.5, 0.0) == 1


def test_evaluate_stream_and_bits_per_byte():
    torch.manual_seed(0)
    V, T = 11, 4
    ids = torch.randint(0, V, (3 * T + 2,))

    class Uniform:
        training = False

        def __call__(self, x):
            return torch.zeros(*x.shape, V)

        def eval(self):
            return self

        def train(self, mode=True):
            return self

    ev = evaluate_stream(Uniform(), ids, T, batch_size=2)
    assert ev["tokens"] == 3 * T and ev["loss"] == pytest.approx(math.log(V))
    assert evaluate_stream(Uniform(), ids, T, max_tokens=T)["tokens"] == T
    with pytest.raises(ValueError, match="context_length"):
        evaluate_stream(Uniform(), ids[:3], T)
    # 1 nat/token, 2 bytes/token → 0.5 nats/byte = 0.5/ln 2 bits/byte
    assert bits_per_byte(1.0, 10, 20) == pytest.approx(0.5 / math.log(2))


def test_code_size_table_counts_files_and_lines(tmp_path):
    pkg = tmp_path / "g2c"
    (pkg / "alpha").mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "alpha" / "__init__.py").write_text("a\nb\n")
    (pkg / "alpha" / "mod.py").write_text("1\n2\n3\n")
    (pkg / "__pycache__").mkdir()
    rows = code_size_table(pkg)
    assert rows == [{"module": "g2c", "files": 1, "lines": 1},
                    {"module": "g2c.alpha", "files": 2, "lines": 5}]  # fmt: skip
    real = {r["module"] for r in code_size_table()}
    assert {"g2c.runs", "g2c.transformer", "g2c.cli"} <= real


def test_split_budget_keeps_a_fixed_post_training_reserve():
    split = speedrun.split_budget(speedrun.BUDGET_MINUTES)
    assert split == {"total_minutes": 15.0, "pretrain_minutes": 13.5, "posttrain_minutes": 1.5}
    assert speedrun.split_budget(2.0)["pretrain_minutes"] == 1.0  # at most half the total
    assert speedrun.split_budget(1.0, smoke=True)["posttrain_minutes"] == 0.05
    assert speedrun.split_budget(None) is None
    for bad in (0, -1.0, "15", True):
        with pytest.raises(ValueError, match="budget_minutes"):
            speedrun.split_budget(bad)


def test_chat_json_points_load_model_at_a_stage(tmp_path):
    """The rule in load_model: a run directory whose chat.json names a stage loads that
    stage's model (one hop); bad pointers are named errors."""
    root = tmp_path / "run"
    cfg = TransformerConfig(vocab_size=17, embedding_dim=8, num_layers=1, num_heads=2,
                            max_seq_len=8)  # fmt: skip
    torch.manual_seed(0)
    TransformerLM.from_config(cfg).save_pretrained(root)
    TransformerLM.from_config(cfg).save_pretrained(root / "dpo")
    assert chat_target(root) == root and load_model(root).source == root  # no pointer yet
    (root / "chat.json").write_text(json.dumps({"chat_model": "dpo"}))
    assert chat_target(root) == root / "dpo"
    assert _equal_weights(load_model(root), root / "dpo" / "model.safetensors")
    assert load_model_kw(root, follow_chat=False).source == root
    (root / "dpo" / "chat.json").write_text(json.dumps({"chat_model": "."}))  # no second hop
    assert load_model(root).source == root / "dpo"
    for bad in ("../x", "/abs", "", 3):
        (root / "chat.json").write_text(json.dumps({"chat_model": bad}))
        with pytest.raises(ArtifactError, match="chat_model"):
            load_model(root)
    (root / "chat.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="chat.json"):
        load_model(root)
    (root / "chat.json").write_text(json.dumps({"chat_model": "sft"}))
    with pytest.raises(FileNotFoundError, match="delete .*chat.json"):
        load_model(root)


def test_report_card_sections_render_the_stage_evaluation_and_transcripts():
    stages = {
        "base": {"val_bpb": 2.09, "val_loss": 4.6, "val_tokens": 44544, "task_accuracy": 0.0,
                 "task_accuracy_per_family": {"count": 0.0}, "preference_accuracy": 0.5,
                 "preference_pairs": 22},
        "sft": {"val_bpb": 2.3, "val_loss": 5.0, "val_tokens": 44544, "task_accuracy": 0.32,
                "task_accuracy_per_family": {"count": 0.7}, "preference_accuracy": 0.6,
                "preference_pairs": 22},
        "dpo": {"val_bpb": 2.4, "val_loss": 5.1, "val_tokens": 44544, "task_accuracy": 0.28,
                "task_accuracy_per_family": {"count": 0.7}, "preference_accuracy": 0.9,
                "preference_pairs": 22, "reward_accuracy": 0.95, "reward_margin": 2.32},
    }  # fmt: skip
    text = "\n".join(speedrun.stage_eval_section(stages))
    assert "| val bits per byte (pretraining validation, 44,544 tokens) | 2.090 | 2.300 | " \
           "2.400 |" in text  # fmt: skip
    assert "| · count | 0 % | 70 % | 70 % |" in text
    assert "22 held-out DPO pairs) | 50 % | 60 % | 90 % |" in text
    assert "| – | – | 95 % |" in text and "| – | – | 2.32 |" in text
    lines = speedrun.transcript_section([{"prompt": "Who are you?", "reply": "I am ```g2c```"}])
    assert lines[0] == speedrun.TRANSCRIPT_SECTION and "```text" in lines
    assert "you> Who are you?" in lines and "assistant> I am ` ` `g2c` ` `" in lines
    with pytest.raises(ValueError, match="prompts"):
        speedrun.chat_transcripts("unused", [])


def test_eval_suite_section_renders_the_suite(tmp_path):
    entry = {"kind": "multiple_choice", "n": 5, "plot": "reliability_openbookqa.png",
             "metrics": {"acc": 0.4, "acc_norm": 0.6, "ece": 0.125}}  # fmt: skip
    result = EvalRunResult("complete", tmp_path / "dpo" / "eval", {"openbookqa": entry})
    section = "\n".join(speedrun.eval_suite_section(tmp_path, result))
    assert section.startswith(speedrun.EVAL_SECTION)
    assert "| openbookqa | multiple_choice | 5 | 0.400 | 0.600 | 0.125 |" in section
    assert "![reliability_openbookqa.png](dpo/eval/reliability_openbookqa.png)" in section
    assert "first 5 examples" in section and "dpo/eval/report.md" in section
