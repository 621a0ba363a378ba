"""End-to-end tests of `g2c train`, `g2c sample`, `g2c models list`, `g2c inspect attention`
and the config machinery (presets, config files, flag → dataclass mapping), on tiny settings."""

from __future__ import annotations

import io
import json

import pytest
import torch

from g2c.cli import main
from g2c.runs import (
    PRESETS,
    RunConfig,
    apply_overrides,
    find_models,
    format_size,
    get_preset,
    load_config_file,
    load_run,
    model_name,
    resolve_model,
)

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 30

TINY = ["--embedding-dim", "16", "--num-layers", "1", "--num-heads", "2", "--max-seq-len", "16",
        "--context-length", "16", "--batch-size", "4", "--max-steps", "12", "--eval-every", "6",
        "--eval-iters", "2", "--log-every", "3", "--sample-every", "6", "--sample-tokens", "8",
        "--threads", "1"]  # fmt: skip


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("G2C_HOME", str(root))
    monkeypatch.setenv("G2C_NO_PROGRESS", "1")
    return root


def _train(out, text_file, *extra) -> int:
    return main(["train", "--preset", "shakespeare-char", "--text-file", str(text_file),
                 "--out", str(out), *TINY, *extra])  # fmt: skip


# -- presets and config mapping -------------------------------------------------------------
def test_presets_exist_and_round_trip_json():
    for name in ("shakespeare-char", "shakespeare-bpe", "gutenberg-1m", "gutenberg-5m", "speedrun"):
        cfg = get_preset(name)
        again = RunConfig.from_dict(json.loads(cfg.to_json()))
        assert again == cfg
        assert cfg.model_config(300).vocab_size == 300
    assert PRESETS["shakespeare-char"].data.tokenizer == "char"
    assert (
        get_preset("gutenberg-5m").model["embedding_dim"]
        > get_preset("gutenberg-1m").model["embedding_dim"]
    )
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")


def test_overrides_validate_keys_and_values():
    cfg = apply_overrides(get_preset("shakespeare-char"), {"train": {"max_lr": 0.01}})
    assert cfg.train.max_lr == 0.01
    with pytest.raises(ValueError, match="unknown train setting 'max_learning_rate'"):
        apply_overrides(cfg, {"train": {"max_learning_rate": 1}})
    with pytest.raises(ValueError, match="unknown config section"):
        apply_overrides(cfg, {"optim": {}})
    with pytest.raises(ValueError, match="divisible"):
        apply_overrides(cfg, {"model": {"embedding_dim": 30, "num_heads": 4}})
    with pytest.raises(ValueError, match="tokenizer"):
        apply_overrides(cfg, {"data": {"tokenizer": "words"}})


def test_config_file_toml_and_json_and_flag_precedence(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("[model]\nembedding_dim = 48\nnum_heads = 4\n[train]\nmax_lr = 0.005\n")
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"model": {"embedding_dim": 64}}))
    assert load_config_file(toml)["model"]["embedding_dim"] == 48
    assert main(["train", "--config", str(toml), "--max-lr", "0.002", "--grad-clip", "none",
                 "--betas", "0.8,0.95", "--corpus", "a,b", "--fused", "false", "--show-config"]) == 0  # fmt: skip
    shown = json.loads(capsys.readouterr().out)
    assert shown["model"]["embedding_dim"] == 48  # from the file
    assert shown["train"]["max_lr"] == 0.002  # flag beats file
    assert shown["train"]["grad_clip"] is None
    assert shown["train"]["betas"] == [0.8, 0.95]
    assert shown["data"]["corpus"] == ["a", "b"]
    assert shown["model"]["fused"] is False
    assert main(["train", "--config", str(js), "--show-config"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["embedding_dim"] == 64


def test_bad_flags_and_missing_data_give_clear_errors(tmp_path, capsys, home):
    with pytest.raises(SystemExit):
        main(["train", "--max-steps", "many"])
    assert "invalid" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "unknown train setting 'learning_rate'" in capsys.readouterr().err
    assert main(["train", "--text-file", str(tmp_path / "missing.txt"), "--out",
                 str(tmp_path / "r2"), *TINY]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r3"), "--resume"]) == 2
    assert "no run to resume" in capsys.readouterr().err


# -- g2c train end to end --------------------------------------------------------------------
@pytest.mark.slow
def test_train_writes_a_complete_run_and_resume(tmp_path, text_file, home, capsys):
    out = home / "tiny"
    assert _train(out, text_file) == 0
    for name in ("model.safetensors", "config.json", "manifest.json", "metrics.jsonl",
                 "samples.jsonl", "report.md", "loss.png", "lr.png", "grad_norm.png",
                 "tokenizer.json", "checkpoint.pt"):  # fmt: skip
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "g2c.run" and manifest["status"] == "complete"
    assert manifest["name"] == model_name("ShakespeareLM", manifest["num_parameters"])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [3, 6, 9, 12]
    assert all(m["tokens_per_s"] > 0 and "mfu" in m for m in metrics)
    report = (out / "report.md").read_text()
    assert "| pretraining |" in report and "bits/byte" in report and "`g2c.runs`" in report
    # a second plain run refuses to overwrite; --resume on a finished run keeps the result
    assert _train(out, text_file) == 2
    assert "--resume" in capsys.readouterr().err
    assert _train(out, text_file, "--resume") == 0
    again = json.loads((out / "manifest.json").read_text())
    assert again["metrics"]["val_loss"] == pytest.approx(manifest["metrics"]["val_loss"])
    # a different config in the same directory is refused
    assert _train(out, text_file, "--resume", "--max-lr", "0.5") == 2
    assert "another configuration" in capsys.readouterr().err


@pytest.mark.slow
def test_train_interrupted_then_resumed_equals_uninterrupted(tmp_path, text_file, home):
    full, part = home / "full", home / "part"
    assert _train(full, text_file) == 0
    assert _train(part, text_file, "--stop-after-steps", "6") == 130
    assert not (part / "model.safetensors").exists() and (part / "checkpoint.pt").is_file()
    assert _train(part, text_file, "--resume") == 0
    a = json.loads((full / "manifest.json").read_text())["metrics"]
    b = json.loads((part / "manifest.json").read_text())["metrics"]
    assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-6)
    la = [json.loads(x)["train_loss"] for x in (full / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["train_loss"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert lb == pytest.approx(la, abs=1e-6)


# -- models, sample, inspect ------------------------------------------------------------------
def test_format_size_and_names():
    assert format_size(809_921) == "0.8M"
    assert format_size(5_857_280) == "5.9M"
    assert format_size(1_000_000) == "1M"
    assert format_size(25_400) == "25K"
    assert format_size(12_300_000) == "12M"
    assert model_name("GutenbergLM", 250_000) == "GutenbergLM-0.2M"
    with pytest.raises(ValueError):
        format_size(-1)


@pytest.mark.slow
def test_models_list_sample_and_inspect(tmp_path, text_file, home, capsys, monkeypatch):
    small, big = home / "small", home / "big"
    assert _train(small, text_file) == 0
    assert _train(big, text_file, "--embedding-dim", "32") == 0
    capsys.readouterr()
    models = find_models()
    assert len(models) == 2
    big_name = json.loads((big / "manifest.json").read_text())["name"]
    assert resolve_model("ShakespeareLM") == big  # size-less alias → the largest
    assert resolve_model(big_name.lower()) == big
    assert resolve_model(str(small)) == small
    with pytest.raises(FileNotFoundError, match="g2c models list"):
        resolve_model("NoSuchLM")
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ShakespeareLM-" in listing and "parameters" in listing and "small" in listing

    # one-shot sampling is reproducible for a seed and streams prompt + continuation
    args = ["sample", "ShakespeareLM", "--prompt", "First", "--max-tokens", "20", "--seed", "3",
            "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("First")
    model, tok, _ = load_run(big)
    assert len(first.rstrip("\n")) >= len("First") + 1
    # greedy = argmax continuation computed directly
    assert main(["sample", str(big), "--prompt", "Fir", "--max-tokens", "5", "--temperature", "0",
                 "--threads", "1"]) == 0  # fmt: skip
    greedy = capsys.readouterr().out.rstrip("\n")
    ids = tok.encode("Fir")
    with torch.no_grad():
        for _ in range(5):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    assert greedy == tok.decode(ids)

    # the playground, fed through stdin
    lines = "/help\n/temperature 0\n/top_k 3\n/top_p off\n/max_tokens 4\n/settings\n/top_p 7\nFir\n/quit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["sample", str(big), "-i", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "/repetition_penalty" in out  # help text
    assert "temperature=0.0 top_k=3 top_p=None" in out and "max_tokens=4" in out
    assert "out of range" in out
    assert tok.decode(ids[: len(tok.encode("Fir")) + 4]) in out  # greedy prompt continued

    # attention inspector: PNG per layer and a score table
    assert main(["inspect", "attention", str(big), "--text", "First Citizen: speak, speak.",
                 "--out", str(tmp_path / "attn"), "--threads", "1"]) == 0  # fmt: skip
    assert (tmp_path / "attn" / "layer0.png").stat().st_size > 1000
    rows = json.loads((tmp_path / "attn" / "heads.json").read_text())
    assert len(rows) == 2 and {"previous", "first", "induction", "kinds"} <= set(rows[0])
    assert "previous-token" in capsys.readouterr().out


def test_head_scores_detect_constructed_heads():
    from g2c.runs.heads import first_token_score, previous_token_score

    T = 6
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1
    first = torch.zeros(T, T)
    first[:, 0] = 1
    w = torch.stack([prev, first])  # (H=2, T, T)
    assert previous_token_score(w).tolist() == [1.0, pytest.approx(0.2)]
    assert first_token_score(w).tolist() == [pytest.approx(0.2), 1.0]
