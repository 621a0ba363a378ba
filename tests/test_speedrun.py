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

from g2c.cli import main
from g2c.runs import bits_per_byte, code_size_table, evaluate_stream, get_preset, speedrun
from g2c.runs.eval import EvalRunResult
from g2c.runs.pretrain import plan_max_steps
from g2c.transformer import load_model

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
    assert "report:" in capsys.readouterr().out
    # the speedrun learns to chat: SFT on the pretrained run, DPO on the SFT run
    sft_m = json.loads((out / "sft" / "manifest.json").read_text())
    dpo_m = json.loads((out / "dpo" / "manifest.json").read_text())
    assert (
        Path(sft_m["parent"]) == out.resolve() and Path(dpo_m["parent"]) == (out / "sft").resolve()
    )
    assert sft_m["metrics"]["steps"] > 0 and dpo_m["metrics"]["steps"] > 0
    assert "## The speedrun learns to chat" in report and "| family | base | SFT | DPO |" in report
    assert load_model(out / "dpo").tokenizer is not None  # g2c chat reads it
    # the eval stage: the fixed suite on the DPO model, its table at the end of the report card
    tasks = speedrun.available_tasks(speedrun.EVAL_TASKS, speedrun.EVAL_LIMIT_SMOKE)
    assert "perplexity" in tasks  # the corpus is here (the skip condition)
    results = json.loads((out / "dpo" / "eval" / "results.json").read_text())
    assert list(results["tasks"]) == tasks and results["model"] == str((out / "dpo").resolve())
    assert all(r["n"] == speedrun.EVAL_LIMIT_SMOKE for r in results["tasks"].values())
    assert 0 < results["tasks"]["perplexity"]["metrics"]["bits_per_byte"] < 16
    assert report.index("## The speedrun learns to chat") < report.index("## Evaluation suite")
    for name in tasks:
        assert f"| {name} |" in report.split("## Evaluation suite")[1], name


@pytest.mark.slow
def test_speedrun_smoke_stand_in_text_and_rerun_is_a_resume(tmp_path, text_file):
    out = tmp_path / "sr"
    args = ["speedrun", "--smoke", "--text-file", str(text_file), "--out", str(out), *TINY]
    assert main(args) == 0
    first = json.loads((out / "manifest.json").read_text())
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()
    assert [m["step"] for m in _metrics(out)] == list(range(5, 41, 5))
    assert main(args) == 0  # rerunning a finished run keeps it (nothing retrained)
    assert _metrics(out)[-1]["step"] == 40 and len(_metrics(out)) == 8
    again = json.loads((out / "manifest.json").read_text())
    assert again["metrics"]["val_loss"] == pytest.approx(first["metrics"]["val_loss"])
    assert main([*args, "--fresh", "--max-steps", "10"]) == 0
    assert _metrics(out)[-1]["step"] == 10


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
            "--budget-minutes", "0.25", "--max-steps", "100000", "--eval-every", "20",
            "--log-every", "5"]  # fmt: skip
    assert main([*args, "--stop-after-steps", "10"]) == 130
    planned = json.loads((out / "run_config.json").read_text())["train"]["max_steps"]
    assert 10 < planned < 100000  # chosen from the measured step time, not the flag
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


def test_eval_section_goes_after_the_chat_section_and_is_replaced_on_rerun(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# run\n\n## Samples\n\ntext\n\n## The speedrun learns to chat\n\nold\n")
    entry = {"kind": "multiple_choice", "n": 5, "plot": "reliability_openbookqa.png",
             "metrics": {"acc": 0.4, "acc_norm": 0.6, "ece": 0.125}}  # fmt: skip
    result = EvalRunResult("complete", tmp_path / "dpo" / "eval", {"openbookqa": entry})
    speedrun.write_eval_section(tmp_path, result)
    text = report.read_text()
    assert text.startswith("# run\n\n## Samples\n\ntext\n\n## The speedrun learns to chat\n\nold")
    section = text.split(speedrun.EVAL_SECTION)[1]
    assert "| openbookqa | multiple_choice | 5 | 0.400 | 0.600 | 0.125 |" in section
    assert "![reliability_openbookqa.png](dpo/eval/reliability_openbookqa.png)" in section
    assert "first 5 examples" in section and "dpo/eval/report.md" in section
    # the chat section rewritten in place keeps the evaluation section after it
    speedrun._replace_section(report, speedrun.CHAT_SECTION, [speedrun.CHAT_SECTION, "", "new"])
    text = report.read_text()
    assert "old" not in text and text.index("new") < text.index(speedrun.EVAL_SECTION)
    entry["metrics"]["acc"] = 0.8
    speedrun.write_eval_section(tmp_path, result)  # a rerun replaces, never duplicates
    text = report.read_text()
    assert text.count(speedrun.EVAL_SECTION) == 1 and "| 0.800 |" in text and "new" in text
