"""The SFT and DPO stages (`g2c sft`, `g2c dpo`) end to end on a tiny g2c run: artifacts,
manifest parent, loading the result, validation before any write, exact resume, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from g2c.cli import main
from g2c.runs import dpo, pretrain, sft
from g2c.runs.config import apply_overrides
from g2c.runs.config import get_preset as pretrain_preset
from g2c.training import LoopControl
from g2c.transformer import load_model

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak. What is 7 + 5? 12.\n\n"
    "All:\nSpeak, speak. Who are you? I am a citizen.\n\n"
) * 40


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny pretrained g2c run (BPE with the chat markers), built in-process in ~1 s."""
    root = tmp_path_factory.mktemp("posttrain")
    text = root / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    cfg = apply_overrides(pretrain_preset("speedrun-smoke"), {
        "data": {"text_file": str(text), "vocab_size": 300},
        "model": {"max_seq_len": 64, "embedding_dim": 32, "num_layers": 1},
        "train": {"max_steps": 4, "eval_every": 2, "warmup_steps": 1, "context_length": 32},
        "run": {"sample_every": 0, "sample_tokens": 4},
    })  # fmt: skip
    out = root / "base"
    assert pretrain.run(cfg, out).status == "complete"
    return out


def _sft_cfg(base, **train):
    return sft.get_preset("sft-smoke").override({"model": {"base": str(base)}, "train": train})


@pytest.fixture(scope="module")
def sft_run(base_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "run"
    result = sft.run(_sft_cfg(base_run), out)
    assert result.status == "complete"
    return out, result


def test_sft_smoke_writes_a_loadable_chat_model_with_its_parent(base_run, sft_run):
    out, result = sft_run
    for name in ("model.safetensors", "config.json", "tokenizer.json", "manifest.json",
                 "metrics.jsonl", "samples.jsonl", "report.md", "stages.json"):  # fmt: skip
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "g2c.run" and manifest["stage"] == "sft"
    assert manifest["parent"] == str(base_run.resolve())
    assert set(manifest["metrics"]["task_accuracy_per_family"]) == {"arithmetic", "identity"}
    stages = json.loads((out / "stages.json").read_text())
    assert {"data", "baseline", "training", "evaluation", "save"} <= set(stages)
    assert result.step == 6 and result.metrics["heldout_loss"] > 0
    loaded = load_model(out)
    base = load_model(base_run)
    assert loaded.tokenizer.special_to_id == base.tokenizer.special_to_id
    changed = any(not torch.equal(a, b) for a, b in
                  zip(loaded.model.state_dict().values(), base.model.state_dict().values()))  # fmt: skip
    assert changed  # the weights saved are the fine-tuned ones
    report = (out / "report.md").read_text()
    assert "Held-out assistant-token loss" in report and "| family | base | SFT |" in report


@pytest.mark.parametrize(
    ("override", "field"),
    [({"train": {"batch_size": 0}}, "train.batch_size"),
     ({"data": {"mixture": {"poems": 5}}}, "data.mixture"),
     ({"data": {"max_seq_len": 500}}, "data.max_seq_len"),
     ({"train": {"activation_checkpointing": "yes"}}, "train.activation_checkpointing"),
     ({"model": {"lora_rank": 2, "lora_targets": ["nope"]}}, "model.lora_targets")],
)  # fmt: skip
def test_bad_sft_config_names_the_field_and_writes_nothing(base_run, tmp_path, override, field):
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        sft.run(_sft_cfg(base_run).override(override), out)  # the config or run() refuses
    assert not out.exists()


def test_activation_checkpointing_by_size_or_setting(base_run):
    model = load_model(base_run).model  # a tiny model: below CHECKPOINTING_MIN_PARAMS
    assert sft.set_activation_checkpointing(model, None) is False
    assert model.activation_checkpointing is False
    assert sft.set_activation_checkpointing(model, True) is True and model.activation_checkpointing
    assert sft.set_activation_checkpointing(torch.nn.Linear(2, 2), True) is False  # no switch


def test_bad_dpo_config_beta_names_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"dpo\.beta"):
        dpo.get_preset("dpo-smoke").override({"dpo": {"beta": 0.0}})
    with pytest.raises(ValueError, match=r"dpo\.reference"):
        dpo.run(dpo.get_preset("dpo-smoke").override({"dpo": {"reference": "disable_lora"}}),
                tmp_path / "x")  # fmt: skip
    assert not (tmp_path / "x").exists()


class _StopAt(LoopControl):
    def __init__(self, step):
        self.step = step

    def should_stop(self, step):
        return step >= self.step


def _losses(out):
    return [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").open()]


def test_interrupted_sft_resumes_with_the_uninterrupted_losses(base_run, sft_run, tmp_path):
    out = tmp_path / "resumed"
    cfg = _sft_cfg(base_run)
    first = sft.run(cfg, out, control=_StopAt(2))
    assert first.status == "interrupted" and first.step == 2
    assert (out / "checkpoint.pt").is_file() and not (out / "model.safetensors").exists()
    again = sft.run(cfg, out)
    assert again.status == "complete" and again.resumed_from == 2
    assert _losses(out) == pytest.approx(_losses(sft_run[0]), abs=1e-6)


def test_dpo_smoke_on_the_sft_output_and_precomputed_reference_agrees(sft_run, tmp_path):
    base = str(sft_run[0])
    cfg = dpo.get_preset("dpo-smoke").override({"model": {"base": base}})
    res = dpo.run(cfg, tmp_path / "dpo")
    assert res.status == "complete"
    manifest = json.loads((tmp_path / "dpo" / "manifest.json").read_text())
    assert manifest["parent"] == str(sft_run[0].resolve()) and manifest["stage"] == "dpo"
    m = res.metrics
    assert 0.0 <= m["heldout_preference_accuracy"] <= 1.0 and m["heldout_pairs"] >= 1
    first = json.loads((tmp_path / "dpo" / "metrics.jsonl").open().readline())
    assert first["train_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference: log 2
    load_model(tmp_path / "dpo")
    pre = dpo.run(cfg.override({"dpo": {"reference": "precomputed"}}), tmp_path / "pre")
    assert pre.metrics["heldout_dpo_loss"] == pytest.approx(m["heldout_dpo_loss"], abs=1e-5)


def test_lora_sft_saves_adapters_naming_the_base_and_dpo_uses_disable_lora(base_run, tmp_path):
    cfg = _sft_cfg(base_run).override({"model": {"lora_rank": 2}})
    out = tmp_path / "lora"
    assert sft.run(cfg, out).status == "complete"
    assert (out / "adapter.safetensors").is_file() and not (out / "model.safetensors").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == sft.LORA_RUN_FORMAT
    assert manifest["trainable_parameters"] < manifest["num_parameters"]
    adapter = json.loads((out / "adapter_manifest.json").read_text())
    assert adapter["base_model"]["path"] == str(base_run.resolve())
    dcfg = dpo.get_preset("dpo-smoke").override(
        {"model": {"base": str(out), "lora_rank": 2}, "dpo": {"reference": "auto"}}
    )
    res = dpo.run(dcfg, tmp_path / "dpo")
    assert res.metrics["reference"] == "disable_lora"


def test_cli_sft_and_dpo_presets(base_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("G2C_HOME", str(tmp_path / "home"))
    out = tmp_path / "cli-sft"
    args = ["sft", "--preset", "sft-smoke", "--base", str(base_run), "--out", str(out),
            "--threads", "1", "--max-steps", "3", "--warmup-steps", "0"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "run_config.json").read_text())["train"]["max_steps"] == 3
    assert main(args) == 2  # a run is there: --resume or --fresh
    assert main(["dpo", "--preset", "dpo-smoke", "--base", str(out), "--out",
                 str(tmp_path / "d"), "--beta", "0"]) == 2  # fmt: skip
    assert not (tmp_path / "d").exists()
    assert "dpo.beta" in capsys.readouterr().err
    assert main(["sft", "--preset", "sft-smoke", "--mixture", "tasks=8", "--show-config"]) == 0
    assert '"tasks": 8' in capsys.readouterr().out


def test_sft_on_a_chat_jsonl_file_such_as_g2c_synth_writes(base_run, tmp_path):
    from g2c.synth import read_pairs_jsonl

    path = tmp_path / "pairs.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Say {w}."},
                          {"role": "assistant", "content": w}]}
            for w in ("yes", "no", "maybe", "hello", "thanks", "bye", "ok", "sure")]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert len(read_pairs_jsonl(path)) == 8
    cfg = _sft_cfg(base_run).override(
        {"data": {"mixture": {"jsonl": 6}, "jsonl_path": str(path)}, "eval": {"baseline": False}}
    )
    result = sft.run(cfg, tmp_path / "run")
    assert result.status == "complete"
    with pytest.raises(ValueError, match=r"data\.jsonl_path"):
        _sft_cfg(base_run).override({"data": {"mixture": {"jsonl": 6}}})
    with pytest.raises(ValueError, match=r"data\.jsonl_path.*no such file"):
        _sft_cfg(base_run).override({"data": {"jsonl_path": str(tmp_path / "nope.jsonl")}})
