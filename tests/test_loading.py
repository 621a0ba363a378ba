"""The one loader: g2c.tokenizer.load_tokenizer and g2c.transformer.loading.load_model.

Every kind each reads (tokenizer families, GPT-2 files; run directories, save_pretrained
directories, HF GPT-2 directories — GGUF lives in test_smollm2.py), and damaged files: a clear
error naming the file, from the library and from the CLI (exit code 2, no traceback).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from g2c.artifacts import RUN_FORMAT, ArtifactError, write_manifest
from g2c.cli import main
from g2c.runs import load_run
from g2c.runs.rundir import RUN_FORMAT as RUNDIR_RUN_FORMAT
from g2c.tokenizer import (
    TOKENIZER_FORMATS,
    BPETokenizer,
    CharTokenizer,
    UnigramTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
)
from g2c.transformer import TransformerLM
from g2c.transformer.loading import MODEL_KINDS, LoadedModel, detect_kind, load_model

GPT2_DIR = Path(os.environ.get("G2C_DATA_DIR", "/nonexistent")) / "gpt2_tokenizer"
HAS_GPT2 = (GPT2_DIR / "gpt2_vocab.json").is_file()
TEXT = "the king and the queen walked to the castle, and the king said hello.\n" * 20


# --- tokenizers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizers() -> dict:
    bpe = BPETokenizer.with_course_special_tokens()
    bpe.train_fast(TEXT, bpe.base_vocab_size + 30)
    return {
        "g2c.bpe": bpe,
        "g2c.char": CharTokenizer(TEXT),
        "g2c.wordpiece": WordPieceTokenizer().train(TEXT, 80),
        "g2c.unigram": UnigramTokenizer().train(TEXT, 40),
    }


def test_load_tokenizer_reads_every_family_file_and_directory(tokenizers, tmp_path):
    assert set(tokenizers) == set(TOKENIZER_FORMATS)
    for fmt, tok in tokenizers.items():
        path = tok.save(tmp_path / fmt / "tokenizer.json")
        for where in (path, path.parent):  # the file, or its directory
            back = load_tokenizer(where)
            assert type(back) is type(tok)
            assert back.encode("the king said hello") == tok.encode("the king said hello")
            assert back.to_dict() == tok.to_dict()


def test_load_tokenizer_unknown_or_damaged_files(tokenizers, tmp_path):
    unknown = tmp_path / "other.json"
    unknown.write_text(json.dumps({"format": "someone.else", "version": 1}))
    with pytest.raises(ValueError, match="other.json.*'someone.else'.*g2c.bpe.*GPT-2"):
        load_tokenizer(unknown)
    corrupt = tmp_path / "tokenizer.json"
    corrupt.write_text('{"format": "g2c.bpe", "merges": [[1, 2')  # truncated
    with pytest.raises(ArtifactError, match="tokenizer.json is damaged.*g2c.char"):
        load_tokenizer(tmp_path)
    broken = tmp_path / "broken.json"  # valid JSON, but the content is not a BPE tokenizer
    broken.write_text(json.dumps({**tokenizers["g2c.bpe"].to_dict(), "merges": [[1, 2, 3]]}))
    with pytest.raises(ArtifactError, match="broken.json: cannot rebuild its g2c.bpe"):
        load_tokenizer(broken)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="empty_dir: no g2c tokenizer format"):
        load_tokenizer(tmp_path / "empty_dir")
    with pytest.raises(FileNotFoundError, match="nope"):
        load_tokenizer(tmp_path / "nope")


@pytest.mark.skipif(not HAS_GPT2, reason="GPT-2 vocab/merges not in $G2C_DATA_DIR")
def test_load_tokenizer_gpt2_files(tmp_path):
    ref = BPETokenizer.from_gpt2_files(GPT2_DIR / "gpt2_vocab.json", GPT2_DIR / "gpt2_merges.txt")
    shutil.copy(GPT2_DIR / "gpt2_vocab.json", tmp_path / "vocab.json")
    shutil.copy(GPT2_DIR / "gpt2_merges.txt", tmp_path / "merges.txt")
    # an HF tokenizers tokenizer.json beside GPT-2's files is not a g2c format: files win
    (tmp_path / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {}}))
    s = "Hello world, it's GPT-2 <|endoftext|>"
    for where in (tmp_path, tmp_path / "vocab.json", GPT2_DIR, GPT2_DIR / "gpt2_merges.txt"):
        tok = load_tokenizer(where)
        assert tok.vocab_size == 50257 and tok.encode(s) == ref.encode(s)


# --- models ----------------------------------------------------------------------------------
def _tiny_model() -> TransformerLM:
    gen = torch.Generator().manual_seed(0)
    return TransformerLM(40, 16, 2, 2, 32, generator=gen)


def _run_dir(tmp_path: Path, tokenizers: dict) -> tuple[Path, TransformerLM]:
    run = tmp_path / "run"
    model = _tiny_model()
    model.save_pretrained(run)
    tokenizers["g2c.char"].save(run / "tokenizer.json")
    write_manifest(run, RUN_FORMAT, name="TinyLM-0K", family="TinyLM", num_parameters=1)
    return run, model


def _same_logits(a: TransformerLM, b: TransformerLM) -> None:
    idx = torch.randint(0, 20, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(idx), b.eval()(idx), atol=0, rtol=0)


def test_run_format_lives_in_artifacts():
    assert RUN_FORMAT == RUNDIR_RUN_FORMAT == "g2c.run"


def test_load_model_run_directory_and_load_run_delegates(tokenizers, tmp_path):
    run, model = _run_dir(tmp_path, tokenizers)
    loaded = load_model(run)
    assert isinstance(loaded, LoadedModel) and loaded.kind == "g2c.run" == detect_kind(run)
    assert loaded.source == run and loaded.manifest["name"] == "TinyLM-0K"
    assert isinstance(loaded.tokenizer, CharTokenizer) and not loaded.model.training
    _same_logits(loaded.model, model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.kind = "other"
    m2, tok2, manifest2 = load_run(run)
    _same_logits(m2, model)
    assert tok2.to_dict() == loaded.tokenizer.to_dict() and manifest2 == loaded.manifest
    on_meta = load_model(run, device="meta")
    assert on_meta.model.device == torch.device("meta")
    # a manifest of another version: refused, naming the version
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        load_model(run)


def test_load_model_run_with_a_stored_chat_template(tokenizers, tmp_path):
    """A fine-tuned run of a model with its own template (SFT of SmolLM2) stores the Jinja
    source in its manifest; the loader hands it on, so ``g2c chat`` renders with it."""
    run, _ = _run_dir(tmp_path, tokenizers)
    assert load_model(run).chat_template is None
    source = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    stored = {"source": source, "bos_token": None, "eos_token": "<|im_end|>"}
    write_manifest(run, RUN_FORMAT, name="TinyLM-0K", chat_template=stored)
    loaded = load_model(run)
    assert loaded.chat_template == source
    assert loaded.chat_info.template == source and loaded.chat_info.eos_token == "<|im_end|>"


def test_load_model_save_pretrained_directory(tokenizers, tmp_path):
    model = _tiny_model()
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.kind == "g2c.transformer" and loaded.tokenizer is None
    assert loaded.manifest["config"] == model.config.to_dict()
    _same_logits(loaded.model, model)
    tokenizers["g2c.bpe"].save(tmp_path / "m" / "tokenizer.json")
    assert isinstance(load_model(tmp_path / "m").tokenizer, BPETokenizer)


def test_load_model_unknown_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="not a model g2c can load.*g2c.run.*hf-gpt2.*smollm2"):
        load_model(tmp_path / "x")
    assert list(MODEL_KINDS) == ["g2c.run", "g2c.transformer", "gguf", "hf-gpt2"]


def test_load_model_hf_gpt2_directory_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        vocab_size=50257 if HAS_GPT2 else 64, n_positions=32, n_embd=32, n_layer=2, n_head=4
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path)  # config.json + model.safetensors
    if HAS_GPT2:
        shutil.copy(GPT2_DIR / "gpt2_vocab.json", tmp_path / "vocab.json")
        shutil.copy(GPT2_DIR / "gpt2_merges.txt", tmp_path / "merges.txt")
    loaded = load_model(tmp_path)
    assert loaded.kind == "hf-gpt2" and loaded.manifest["config"]["n_embd"] == 32
    idx = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(idx), hf(idx).logits, atol=1e-5, rtol=0)
    if HAS_GPT2:
        assert loaded.tokenizer.vocab_size == 50257
        assert loaded.tokenizer.encode(" hello world") == [23748, 995]


# --- damaged files: clear errors from the library and the CLI --------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage, named",
    [
        ("model.safetensors", "model.safetensors"),
        ("tokenizer.json", "tokenizer.json"),
        ("manifest.json", "manifest.json"),
        ("config.json", "config.json"),
    ],
)
def test_damaged_run_file_is_named_by_loader_and_cli(damage, named, tokenizers, tmp_path, capsys):
    run, _ = _run_dir(tmp_path, tokenizers)
    _truncate(run / damage)
    with pytest.raises(ArtifactError, match=rf"{named} is damaged.*(re-run|re-create|re-train)"):
        load_model(run)
    with pytest.raises(ArtifactError, match=named):
        load_run(run)
    capsys.readouterr()
    for argv in (
        ["inspect", "attention", str(run), "--text", "the king"],
        ["sample", str(run), "--prompt", "the", "--max-tokens", "2"],
        ["models", "show", str(run)],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert named in err and "damaged" in err and "Traceback" not in err, (argv, err)


def test_cli_models_show_describes_a_model(tokenizers, tmp_path, capsys):
    run, model = _run_dir(tmp_path, tokenizers)
    assert main(["models", "show", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"{model.num_parameters():,}" in out and "CharTokenizer" in out


def test_cli_tokenizer_encode_decode_any_family(tokenizers, tmp_path, capsys):
    for fmt in ("g2c.char", "g2c.wordpiece"):
        tok = tokenizers[fmt]
        path = tok.save(tmp_path / f"{fmt}.json")
        assert main(["tokenizer", "encode", "--tokenizer", str(path), "--text", "the king"]) == 0
        ids = [int(x) for x in capsys.readouterr().out.split()]
        assert ids == tok.encode("the king")
        assert main(["tokenizer", "decode", "--tokenizer", str(path), *map(str, ids)]) == 0
        assert capsys.readouterr().out.strip() == tok.decode(ids)
    path = tmp_path / "g2c.char.json"
    argv = ["tokenizer", "encode", "--tokenizer", str(path), "--text", "x", "--allow-special"]
    assert main(argv) == 2
    assert "needs a BPE tokenizer" in capsys.readouterr().err


def test_load_run_reads_an_interrupted_run_and_names_a_damaged_checkpoint(tokenizers, tmp_path):
    from g2c.runs.config import get_preset

    cfg = get_preset("speedrun-smoke")
    tok = tokenizers["g2c.char"]
    model = TransformerLM.from_config(cfg.model_config(tok.vocab_size))
    run = tmp_path / "part"
    run.mkdir()
    (run / "run_config.json").write_text(cfg.to_json())
    tok.save(run / "tokenizer.json")
    torch.save({"model": model.state_dict(), "trainer": {"step": 7}}, run / "checkpoint.pt")
    back, tok2, manifest = load_run(run)
    assert manifest == {"status": "interrupted", "step": 7} and not back.training
    assert tok2.to_dict() == tok.to_dict()
    _same_logits(back, model)
    _truncate(run / "checkpoint.pt")
    with pytest.raises(ArtifactError, match="checkpoint.pt is damaged.*resume or re-run"):
        load_run(run)
