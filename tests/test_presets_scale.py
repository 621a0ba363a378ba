"""Training from prepared shards (ShardedTokenStream, data.shards), the python-code and gpt2-124m
presets, --compile and --plan-memory."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from g2c.cli import main as cli_main
from g2c.data import check_prepared, load_prepared_ids, prepare_corpus
from g2c.data.prepare import PrepareConfig
from g2c.pretraining import ShardedTokenStream, Trainer, get_lm_batch
from g2c.runs import pretrain
from g2c.runs.config import PRESETS, RunConfig, apply_overrides, get_preset
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

pytest.importorskip("datasketch", reason="g2c data prepare's dedupe needs datasketch")
REPO = Path(__file__).resolve().parents[1]

_WORDS = (
    "the river ran past a quiet town where people of every trade kept small shops and gardens "
    "with apples pears and roses while children walked to school along the bank"
).split()


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    tok = BPETokenizer.with_course_special_tokens()
    tok.train("\n".join(_WORDS * 3), 300)
    return tok


def _corpus(root: Path, n: int = 24) -> Path:
    rng = random.Random(0)
    root.mkdir(parents=True)
    for i in range(n):
        words = [rng.choice(_WORDS) for _ in range(80)]
        (root / f"d{i:02d}.txt").write_text(" ".join(words) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tok) -> Path:
    """A corpus in several 300-id shards per split (windows cross shard boundaries)."""
    tmp = tmp_path_factory.mktemp("prep")
    out = tmp / "shards"
    cfg = PrepareConfig(inputs=[str(_corpus(tmp / "c"))], shard_tokens=300, val_fraction=0.2)
    prepare_corpus(cfg, tok, out)
    return out


def test_sharded_stream_gives_the_batches_of_the_loaded_ids(prepared: Path, tok) -> None:
    train = ShardedTokenStream.from_prepared(prepared, "train", tokenizer=tok)
    ids = torch.from_numpy(np.asarray(load_prepared_ids(prepared, "train"), dtype=np.int64))
    assert len(train.paths) > 3 and len(train) == ids.numel() == train.manifest["tokens"]["train"]
    for seed in range(3):  # same generator → the same windows, several cross a shard boundary
        a = train.get_lm_batch(16, 40, generator=torch.Generator().manual_seed(seed))
        b = get_lm_batch(ids, 16, 40, torch.Generator().manual_seed(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert train[250:650].tolist() == ids[250:650].tolist() and train[-1] == int(ids[-1])
    head, tail = train.split(0.9)
    assert torch.equal(tail.to_tensor(), ids[int(ids.numel() * 0.9) :])
    assert len(head) + len(tail) == len(train)
    # and the Trainer on the memory maps trains exactly as on the loaded tensor
    losses = []
    for source in (train, ids):
        model = TransformerLM(
            tok.vocab_size, 16, 1, 2, 16, generator=torch.Generator().manual_seed(0)
        )
        t = Trainer(model, batch_size=4, context_length=16, max_steps=3, max_lr=1e-2, seed=1,
                    device="cpu", optimizer="adamw")  # fmt: skip
        losses.append([t.train_step(source)["loss"] for _ in range(3)])
    assert losses[0] == losses[1]
    assert ShardedTokenStream.from_prepared(prepared / "manifest.json", "val").manifest


def test_shards_are_checked_against_the_manifest(prepared: Path, tok, tmp_path: Path) -> None:
    other = BPETokenizer.with_course_special_tokens()
    other.train(" ".join(sorted(_WORDS)) * 5, 300)  # same size, other merges
    with pytest.raises(ValueError, match="vocabulary"):
        check_prepared(prepared, vocab_size=50257)
    with pytest.raises(ValueError, match="another tokenizer"):
        ShardedTokenStream.from_prepared(prepared, tokenizer=other)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        check_prepared(tmp_path / "nope")
    with pytest.raises(ValueError, match="has no manifest.json"):
        check_prepared(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in prepared.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    first = broken / "train-00001.bin"
    first.write_bytes(first.read_bytes()[:-2])  # one id short
    with pytest.raises(ValueError, match=r"train-00001.bin: \d+ bytes, the manifest says 300"):
        ShardedTokenStream.from_prepared(broken)
    manifest = json.loads((prepared / "manifest.json").read_text())
    manifest["dtype"] = "int8"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="is not uint16 or uint32"):
        check_prepared(broken)


def _train_argv(prepared: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--shards", str(prepared), "--out", str(out), "--embedding-dim", "16",
        "--num-layers", "1", "--num-heads", "2", "--max-seq-len", "16", "--context-length", "16",
        "--batch-size", "4", "--max-steps", "6", "--warmup-steps", "1", "--eval-every", "3",
        "--eval-iters", "2", "--sample-every", "0", "--sample-tokens", "4", "--threads", "1",
        "--device", "cpu", *extra,
    ]  # fmt: skip


def test_train_cli_reads_a_prepared_directory(prepared: Path, tmp_path: Path, capsys) -> None:
    assert cli_main(_train_argv(prepared, tmp_path / "run")) == 0
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert stages["tokenizer"]["val_source"] == "manifest"
    assert stages["tokenizer"]["shards"] == str(prepared)
    run_cfg = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert run_cfg["data"]["shards"] == str(prepared)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["data"] == [str(prepared)] and manifest["metrics"]["val_loss"] > 0
    capsys.readouterr()
    # a prepared directory and the wrong tokenizer: refused before the run directory exists
    code = cli_main(_train_argv(prepared, tmp_path / "bad", "--tokenizer", "gpt2"))
    assert code == 2 and "50257" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    code = cli_main(_train_argv(tmp_path / "missing", tmp_path / "bad2"))
    assert code == 2 and not (tmp_path / "bad2").exists()


def test_validation_tail_when_the_manifest_has_no_val_split(tok, tmp_path: Path) -> None:
    out = tmp_path / "noval"
    prepare_corpus(PrepareConfig(inputs=[str(_corpus(tmp_path / "c", 6))]), tok, out)
    cfg = apply_overrides(get_preset("shakespeare-char"), {"data": {"shards": str(out), "val_fraction": 0.25},
                                        "train": {"context_length": 16}})  # fmt: skip
    train, val = pretrain.open_streams(cfg, pretrain.RunDir(tmp_path / "r"))
    n = train.manifest["tokens"]["train"]
    assert len(train) == int(n * 0.75) and len(train) + len(val) == n and val.start == len(train)
    with pytest.raises(ValueError, match="'val' split has no tokens"):
        ShardedTokenStream.from_prepared(out, "val")


def test_new_config_fields_leave_existing_presets_unchanged() -> None:
    for name in ("shakespeare-char", "shakespeare-bpe", "gutenberg-1m", "speedrun"):
        d = PRESETS[name].to_dict()
        assert "shards" not in d["data"] and "compile" not in d["run"]
        assert RunConfig.from_dict(d).to_dict() == d
    with pytest.raises(ValueError, match="'bpe', 'char' or 'gpt2'"):
        apply_overrides(get_preset("shakespeare-char"), {"data": {"tokenizer": "gpt3"}})
    with pytest.raises(ValueError, match="run.compile"):
        apply_overrides(get_preset("shakespeare-char"), {"run": {"compile": "yes"}})


def test_gpt2_124m_preset_is_the_nanogpt_recipe(capsys) -> None:
    cfg = get_preset("gpt2-124m")
    m, t = cfg.model, cfg.train
    assert (m["num_layers"], m["num_heads"], m["embedding_dim"], m["max_seq_len"]) == (
        12, 12, 768, 1024)  # fmt: skip
    assert cfg.data.tokenizer == "gpt2" and t.context_length == 1024
    assert (t.max_lr, t.min_lr, t.warmup_steps, t.weight_decay, t.grad_clip) == (
        6e-4, 6e-5, 700, 0.1, 1.0)  # fmt: skip
    assert tuple(t.betas) == (0.9, 0.95) and t.optimizer == "adamw"
    assert t.weight_decay_1d is False  # biases and LayerNorm gains do not decay (nanoGPT)
    assert t.batch_size * t.context_length * t.grad_accum_steps == 524_288  # 2**19 ≈ 0.5M
    assert t.autocast_dtype == "bfloat16"
    assert cli_main(["train", "--preset", "gpt2-124m", "--plan-memory", "--nproc", "8"]) == 0
    out = capsys.readouterr().out
    assert "124,490,065 parameters, 8 device(s)" in out and "vocabulary 50257" in out
    assert "zero3 (FSDP)" in out


def test_compile_flag_and_compiled_forward(capsys) -> None:
    assert cli_main(["train", "--preset", "gpt2-124m", "--compile", "--show-config"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["compile"] is True
    assert cli_main(["train", "--preset", "gpt2-124m", "--compile", "false", "--show-config"]) == 0
    assert "compile" not in json.loads(capsys.readouterr().out)["run"]
    model = TransformerLM(40, 16, 1, 2, 8, generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 40, (2, 8))
    expected = model(x)
    pretrain.compile_model(model, backend="eager")  # the wiring; inductor itself is torch's
    assert torch.allclose(model(x), expected)


def test_python_code_preset_trains_on_the_stdlib_shards(tmp_path: Path, capsys) -> None:
    cfg = get_preset("python-code")
    assert cfg.data.shards == "python-stdlib" and cfg.data.tokenizer == "bpe"
    argv = [
        "train", "--preset", "python-code", "--shards", "python-stdlib/json", "--vocab-size",
        "384", "--max-chars", "60000", "--val-fraction", "0.2", "--embedding-dim", "32",
        "--num-layers", "1", "--num-heads", "2", "--max-seq-len", "32", "--context-length", "32",
        "--batch-size", "8", "--max-steps", "8", "--warmup-steps", "1", "--eval-every", "4",
        "--eval-iters", "2", "--sample-every", "0", "--sample-tokens", "8", "--threads", "1",
        "--out", str(tmp_path / "py"),
    ]  # fmt: skip
    assert cli_main(argv) == 0
    run = tmp_path / "py"
    manifest = json.loads((run / "shards" / "manifest.json").read_text())
    files = manifest["sources"][0]["files"]
    assert files and all(f["path"].endswith(".py") and "/json/" in f["path"] for f in files)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all(s["text"].startswith("import ") for s in samples)
    with pytest.raises(ValueError, match="not a package folder"):
        pretrain.validate(apply_overrides(cfg, {"data": {"shards": "python-stdlib/nope"}}))


@pytest.mark.slow
def test_gpt2_124m_smoke_steps_on_cpu() -> None:
    torch.set_num_threads(1)
    cfg = apply_overrides(get_preset("gpt2-124m"), {"train": {
        "batch_size": 1, "grad_accum_steps": 1, "context_length": 32, "max_steps": 2,
        "warmup_steps": 1, "seed": 0, "device": "cpu"}})  # fmt: skip
    tok = pretrain.gpt2_tokenizer()
    ids = torch.tensor(tok.encode_fast("First Citizen:\nBefore we proceed any further.\n" * 20))
    model = pretrain.build_model(cfg, tok.vocab_size, 0)
    assert model.num_parameters() == 124_490_065  # GPT-2's 124,439,808 + the head's bias
    trainer = pretrain.build_trainer(cfg, model)
    assert trainer.optimizer.decays == [p.dim() >= 2 for p in trainer.params]
    losses = [trainer.train_step(ids)["loss"] for _ in range(2)]  # bf16 autocast, AdamW
    assert abs(losses[0] - np.log(50257)) < 0.5 and np.isfinite(losses).all()
    assert trainer.step == 2 and trainer.autocast_dtype == torch.bfloat16


@pytest.mark.slow
def test_two_ranks_on_shards_match_one_process(prepared: Path, tmp_path: Path) -> None:
    """`--nproc 2` on a prepared directory: each rank its slice of the same global batch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "g2c", *_train_argv(prepared, tmp_path / "r2", "--nproc", "2")]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert cli_main(_train_argv(prepared, tmp_path / "r1")) == 0  # 1 process, in this one
    logs = [
        [json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
        for r in ("r1", "r2")
    ]
    assert len(logs[0]) == len(logs[1]) >= 2
    for a, b in zip(*logs, strict=True):
        assert a["step"] == b["step"] and abs(a["train_loss"] - b["train_loss"]) < 1e-5
