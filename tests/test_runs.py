"""The stage skeleton (g2c.runs.stage) and what it guarantees to users of `g2c train` /
`g2c speedrun`: a bad configuration writes nothing, time survives interruptions, piped output
gets plain progress lines, and --help shows the preset's values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from g2c.cli import main
from g2c.runs import BudgetPlan, Stage, get_preset, run_pretraining
from g2c.runs.config import apply_overrides
from g2c.runs.pretrain import validate

TEXT = (
    "KING RICHARD:\nNow is the winter of our discontent made glorious summer by this sun.\n\n"
    "GLOUCESTER:\nAnd all the clouds that lour'd upon our house in the deep bosom buried.\n\n"
) * 60


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("G2C_HOME", str(tmp_path / "runs"))
    monkeypatch.setenv("G2C_NO_PROGRESS", "1")


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


# -- validation before any write ------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags, field",
    [
        (["--batch-size", "0"], "batch_size"),
        (["--lr", "-0.001"], "max_lr"),
        (["--context-length", "64"], "context_length"),
        (["--warmup-steps", "50", "--max-steps", "10"], "warmup_steps"),
        (["--vocab-size", "260"], "vocab_size"),
    ],
)
def test_bad_config_writes_nothing_and_the_corrected_rerun_works(tmp_path, text_file, capsys,
                                                                 flags, field):  # fmt: skip
    out = tmp_path / "run"
    base = ["train", "--preset", "speedrun-smoke", "--text-file", str(text_file), "--out",
            str(out), "--threads", "1", "--max-steps", "10", "--vocab-size", "300"]  # fmt: skip
    assert main([*base, *flags]) == 2
    assert field in capsys.readouterr().err
    assert not out.exists(), "a rejected configuration created the run directory"
    assert main(base) == 0  # the corrected command needs no --fresh / --resume


def test_a_preset_warmup_shortens_with_max_steps_but_an_explicit_one_is_checked():
    cfg = apply_overrides(get_preset("speedrun"), {"train": {"max_steps": 20}})
    assert cfg.train.warmup_steps == 2  # the preset's 50 → max_steps // 10
    cfg = apply_overrides(get_preset("speedrun"), {"train": {"max_steps": 20, "warmup_steps": 30}})
    with pytest.raises(ValueError, match="train.warmup_steps"):
        validate(cfg)


def test_every_pretraining_preset_uses_the_gpt2_init():
    for name in ("shakespeare-char", "shakespeare-bpe", "gutenberg-1m", "gutenberg-5m",
                 "speedrun", "speedrun-smoke"):  # fmt: skip
        assert get_preset(name).model["init"] == "gpt2", name


# -- time over sessions ---------------------------------------------------------------------------
def test_budget_and_elapsed_time_survive_an_interrupted_session(tmp_path, text_file):
    cfg = apply_overrides(get_preset("speedrun-smoke"), {
        "data": {"text_file": str(text_file), "vocab_size": 300},
        "train": {"max_steps": 100000, "eval_every": 20, "log_every": 5, "device": "cpu"},
        "run": {"budget_minutes": 0.2, "sample_every": 0, "checkpoint_every": 10},
    })  # fmt: skip
    out = tmp_path / "b"
    walls = []
    t0 = time.perf_counter()
    first = run_pretraining(cfg, out, should_stop=lambda step: step >= 15)
    walls.append(time.perf_counter() - t0)
    assert first.status == "interrupted" and first.step == 15
    stages = json.loads((out / "stages.json").read_text())
    # only each session's last bookkeeping write (an fsync'ed stages.json) is not counted
    slack = 0.1
    assert sum(s["seconds"] for s in stages.values()) >= walls[0] - slack
    t0 = time.perf_counter()
    second = run_pretraining(cfg, out)
    walls.append(time.perf_counter() - t0)
    assert second.status == "complete" and second.resumed_from == 15
    stages = json.loads((out / "stages.json").read_text())
    recorded = sum(s["seconds"] for s in stages.values())
    assert recorded >= sum(walls) - 2 * slack  # both sessions counted in full
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["total_seconds"] <= recorded and manifest["stage"] == "pretrain"
    elapsed = [json.loads(x)["elapsed_s"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert elapsed == sorted(elapsed) and len(elapsed) > 4  # cumulative over both sessions


def test_budget_plan_refits_steps_to_the_time_left():
    plans = []
    plan = BudgetPlan(budget_s=100.0, spent_outside_s=20.0, start_step=0, every_s=5.0,
                      on_replan=lambda step, n: plans.append((step, n)))  # fmt: skip
    assert plan.plan_max_steps(10, 1000, elapsed_s=1.0) is None  # not yet every_s
    # 0.1 s/step so far; left = 100 - 20 - 10 (elapsed) - 10 (reserve) = 60 s → 600 more steps
    assert plan.plan_max_steps(100, 1000, elapsed_s=10.0) == 700
    assert plans == [(100, 700)]
    assert plan.plan_max_steps(150, 700, elapsed_s=12.0) is None  # re-plans are spaced
    assert not plan.should_stop(5) and BudgetPlan(stop=lambda s: s > 3).should_stop(5)
    assert BudgetPlan().plan_max_steps(10, 100, 1e6) is None  # no budget: never re-plans


def test_stage_parts_record_time_and_manifest_names_the_parent(tmp_path):
    events = []
    stage = Stage(tmp_path / "s", "demo", on_event=lambda k, i: events.append((k, i)))
    assert stage.open({"a": 1}) is None
    stage.save_config({"a": 1})
    with stage.part("work") as info:
        time.sleep(0.02)
        info["items"] = 3
    with pytest.raises(RuntimeError):
        with stage.part("broken"):
            raise RuntimeError("boom")
    stage.end_session()
    stages = json.loads((tmp_path / "s" / "stages.json").read_text())
    assert stages["work"]["items"] == 3 and stages["work"]["seconds"] >= 0.02
    assert {"work", "broken", "overhead"} <= set(stages)
    assert [e[1]["status"] for e in events if e[1].get("name") == "work"] == ["start", "done"]
    stage.write_manifest("g2c.demo", parent="runs/base")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["parent"] == "runs/base" and manifest["stage"] == "demo"
    again = Stage(tmp_path / "s", "demo")
    assert again.open({"a": 1}) == {"a": 1}  # a resume
    with pytest.raises(ValueError, match="another configuration"):
        again.open({"a": 2})


# -- output for logs and --help -------------------------------------------------------------------
def test_piped_stdout_gets_plain_progress_lines(tmp_path, text_file):
    env = {**os.environ, "G2C_PROGRESS_EVERY_S": "0"}
    env.pop("G2C_NO_PROGRESS", None)
    cmd = [sys.executable, "-c", "import sys; from g2c.cli import main; sys.exit(main(sys.argv[1:]))",
           "speedrun", "--smoke", "--text-file", str(text_file), "--out", str(tmp_path / "p"),
           "--threads", "1", "--vocab-size", "300", "--max-steps", "20", "--log-every", "5",
           "--sample-every", "0"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() if x.startswith("pretraining ") and "/20" in x]
    assert [x.split()[1] for x in lines] == ["5/20", "10/20", "15/20", "20/20"], lines
    assert "loss" in lines[-1] and "tok/s" in lines[-1] and "eta" in lines[1]
    assert "\x1b[" not in proc.stdout  # no terminal control codes in a log
    assert "report:" in proc.stdout  # the summary's last line is there, not cut off


def test_help_shows_the_presets_values(capsys):
    def shown() -> str:  # argparse wraps lines (also after hyphens): compare without spaces
        return "".join(capsys.readouterr().out.split())

    with pytest.raises(SystemExit):
        main(["train", "--preset", "speedrun-smoke", "--help"])
    text = shown()
    assert "train.optimizer(default:adamw,frompresetspeedrun-smoke)" in text
    assert "train.batch_size(default:8,frompresetspeedrun-smoke)" in text
    with pytest.raises(SystemExit):
        main(["speedrun", "--help"])
    assert "run.budget_minutes(default:15.0,frompresetspeedrun)" in shown()
