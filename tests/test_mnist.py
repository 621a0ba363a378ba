"""Tests for the MNIST job (g2c.runs.mnist) and the `g2c mnist` command.

A tiny synthetic IDX stand-in (written with g2c.data.write_idx) covers the whole code path —
loading, training, evaluation, the safetensors + manifest artifact and the CLI — in seconds;
one test on the real MNIST files runs when they are present and skips otherwise.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from g2c.artifacts import read_manifest
from g2c.data import write_idx
from g2c.runs.mnist import (
    ARTIFACT_FORMAT,
    MNISTConfig,
    build_mlp,
    evaluate,
    load_mnist_model,
    predict,
    random_shift,
    save_mnist_model,
    train_mnist,
)


def _write_synthetic_idx(directory: Path, n_train: int = 700, n_test: int = 200) -> Path:
    """Ten classes, each a bright 6×6 square at its own place (jittered ±1 px) on noise."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            r = 3 + (k // 5) * 12 + rng.integers(-1, 2)
            c = 2 + (k % 5) * 5 + rng.integers(-1, 2)
            images[i, r : r + 6, c : c + 4] = 255
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels, compress=True)
    return directory


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    return _write_synthetic_idx(tmp_path_factory.mktemp("idx"))


def _tiny_config(data_path: Path, **kw) -> MNISTConfig:
    base = dict(
        data_path=str(data_path),
        epochs=3,
        batch_size=32,
        val_size=100,
        warmup_steps=5,
        hidden=32,
        lr=3e-3,
        device="cpu",
    )
    return MNISTConfig(**{**base, **kw})


# -- config ---------------------------------------------------------------------------------------
def test_config_round_trips_json():
    cfg = MNISTConfig(dataset="fashion-mnist", dropout=0.1, grad_clip=1.0, train_limit=10)
    again = MNISTConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["dataset"] == "fashion-mnist"


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(dataset="cifar"), "dataset"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=-1), "batch_size"),
        (dict(lr=0.0), "lr"),
        (dict(lr=1e-3, min_lr=1e-2), "min_lr"),
        (dict(dropout=1.0), "dropout"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(grad_clip=0.0), "grad_clip"),
        (dict(max_shift=-1), "max_shift"),
        (dict(train_limit=0), "train_limit"),
    ],
)
def test_config_rejects_bad_fields(kw, name):
    with pytest.raises(ValueError, match=name):
        MNISTConfig(**kw)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="epocs"):
        MNISTConfig.from_dict({"epocs": 3})


# -- pieces ----------------------------------------------------------------------------------------
def test_build_mlp_is_784_hidden_10():
    model = build_mlp(MNISTConfig(hidden=128, dropout=0.1))
    assert model.num_parameters() == 784 * 128 + 128 + 128 * 10 + 10
    assert model(torch.randn(4, 784)).shape == (4, 10)


def test_random_shift_is_a_translation_with_zero_fill():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 28, 28)
    assert random_shift(x, 0, g) is x
    y = random_shift(x, 2, g)
    assert y.shape == x.shape
    padded = torch.zeros(16, 32, 32)
    padded[:, 2:30, 2:30] = x
    for b in range(16):  # each output is one of the 25 crops of the zero-padded input
        crops = [padded[b, r : r + 28, c : c + 28] for r in range(5) for c in range(5)]
        assert any(torch.equal(y[b], crop) for crop in crops)
    # several different shifts were drawn
    assert len({tuple(torch.nonzero(y[b] == x[b, 10, 10]).tolist()[0]) for b in range(16)}) > 1


def test_evaluate_restores_mode_and_counts_accuracy():
    model = build_mlp(MNISTConfig(hidden=8, dropout=0.5))
    images = torch.rand(50, 28, 28)
    labels = predict(model, images, 0.0, 1.0)
    assert model.training
    loss, acc = evaluate(model, images, labels, 0.0, 1.0, batch_size=7)
    assert acc == 1.0 and loss > 0 and model.training


# -- training on the synthetic stand-in ---------------------------------------------------------------
def test_train_learns_and_artifact_reloads_identically(synthetic_dir, tmp_path):
    events = []
    result = train_mnist(_tiny_config(synthetic_dir), on_log=events.append)
    assert result.test_accuracy > 0.6  # chance is 0.1
    assert result.history["val_accuracy"][-1] > result.history["val_accuracy"][0] or (
        result.history["val_accuracy"][0] > 0.9
    )
    assert result.history["epoch_train_loss"][-1] < result.history["epoch_train_loss"][0]
    assert len(result.history["step"]) == result.steps == 3 * ((700 - 100 + 31) // 32)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("eval") == 3
    assert result.history["lr"][4] == pytest.approx(3e-3)  # warmup done at step 5

    out = save_mnist_model(result, tmp_path / "run")
    manifest = read_manifest(out, format=ARTIFACT_FORMAT)
    assert manifest["metrics"]["test_accuracy"] == result.test_accuracy
    assert MNISTConfig.from_dict(manifest["config"]) == result.config
    model, manifest2 = load_mnist_model(out)
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    mean, std = manifest2["normalization"]["mean"], manifest2["normalization"]["std"]
    assert torch.equal(
        predict(model, images, mean, std), predict(result.model, images, result.mean, result.std)
    )
    for name, t in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], t)


def test_train_is_deterministic_given_seed(synthetic_dir):
    cfg = _tiny_config(synthetic_dir, epochs=1, dropout=0.2, max_shift=1)
    a, b = train_mnist(cfg), train_mnist(cfg)
    assert a.history["train_loss"] == b.history["train_loss"]
    c = train_mnist(_tiny_config(synthetic_dir, epochs=1, dropout=0.2, max_shift=1, seed=1))
    assert c.history["train_loss"] != a.history["train_loss"]


def test_sgd_and_clipping_paths_run(synthetic_dir):
    r = train_mnist(_tiny_config(synthetic_dir, optimizer="sgd", lr=0.05, grad_clip=1.0, epochs=2))
    assert r.test_accuracy > 0.3


def test_train_limit_and_no_validation_split(synthetic_dir):
    events = []
    r = train_mnist(_tiny_config(synthetic_dir, train_limit=50, epochs=1), on_log=events.append)
    assert events[0]["num_train"] == 50 and events[0]["num_val"] == 100
    assert r.steps == 2  # ceil(50 / 32)
    events.clear()
    r = train_mnist(_tiny_config(synthetic_dir, val_size=0, epochs=1), on_log=events.append)
    assert events[0]["num_train"] == 700 and r.history["val_loss"] == []
    assert math.isnan(r.val_loss) and 0.0 <= r.test_accuracy <= 1.0


def test_val_size_too_large(synthetic_dir):
    with pytest.raises(ValueError, match="val_size"):
        train_mnist(_tiny_config(synthetic_dir, val_size=700))


def test_load_mnist_model_rejects_other_artifacts(tmp_path):
    from g2c.artifacts import write_manifest

    write_manifest(tmp_path, "something-else")
    with pytest.raises(ValueError, match="format"):
        load_mnist_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_mnist_model(tmp_path / "missing")


# -- CLI -------------------------------------------------------------------------------------------------
def test_cli_mnist_smoke_writes_a_reloadable_artifact(synthetic_dir, tmp_path):
    from g2c.cli import main

    out = tmp_path / "run"
    rc = main(
        ["mnist", "--smoke", "--data-path", str(synthetic_dir), "--out", str(out)]
        + ["--threads", "1", "--device", "cpu", "--seed", "3"]
    )
    assert rc == 0
    for name in ("model.safetensors", "manifest.json", "history.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").stat().st_size > 1000 and (out / "report.md").is_file()
    manifest = read_manifest(out, format=ARTIFACT_FORMAT)
    assert manifest["config"]["seed"] == 3 and manifest["config"]["epochs"] == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "val_loss" in json.loads(lines[0])
    model, _ = load_mnist_model(out)
    assert model(torch.zeros(1, 784)).shape == (1, 10)


def test_cli_mnist_bad_flag_returns_error_code(tmp_path, capsys):
    from g2c.cli import main

    rc = main(["mnist", "--epochs", "0", "--out", str(tmp_path / "x"), "--threads", "1"])
    assert rc == 2
    assert "epochs" in capsys.readouterr().err


# -- real MNIST (skips without the files) ------------------------------------------------------------------
def _real_mnist_dir() -> Path | None:
    d = Path(os.environ.get("G2C_DATA_DIR", "/nonexistent")) / "mnist"
    names = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    return d if all((d / n).is_file() for n in names) else None


@pytest.mark.slow
@pytest.mark.skipif(_real_mnist_dir() is None, reason="real MNIST not in $G2C_DATA_DIR/mnist")
def test_real_mnist_subset_learns():
    cfg = MNISTConfig(
        data_path=str(_real_mnist_dir()),
        train_limit=3000,
        val_size=500,
        max_shift=0,
        epochs=5,
        batch_size=64,
        warmup_steps=10,
        device="cpu",
    )
    result = train_mnist(cfg)
    assert result.test_accuracy > 0.88  # 3k images, ~240 steps (measured 0.91); chance 0.1


# -- examples (smoke modes) ------------------------------------------------------------------------------
def _load_example(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_03_mnist_smoke(synthetic_dir, tmp_path):
    main = _load_example("03_mnist").main
    results = main(
        ["--smoke", "--data-path", str(synthetic_dir), "--fashion-path", str(synthetic_dir)]
        + ["--img-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    )
    assert set(results) == {"mnist", "overfit_wd0", "overfit_wd3", "fashion"}
    assert results["mnist"]["test_accuracy"] > 0.2  # 2 tiny epochs; chance is 0.1
    assert results["overfit_wd0"]["config"]["weight_decay"] == 0.0
    assert results["overfit_wd3"]["config"]["weight_decay"] == 3.0
    assert json.loads((tmp_path / "out" / "results.json").read_text()).keys() == results.keys()
    for png in ("03-mnist-curves.png", "03-overfitting.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_example_03b_training_smoke(synthetic_dir, tmp_path):
    main = _load_example("03b_training").main
    results = main(
        ["--smoke", "--data-path", str(synthetic_dir), "--img-dir", str(tmp_path)]
        + ["--out", str(tmp_path / "out")]
    )
    # identical data, init and batch order: both optimizers see the same first-batch loss
    assert results["first_batch_loss"]["sgd"] == results["first_batch_loss"]["adamw"]
    assert set(results["best_lr"]) == {"sgd", "adamw"}
    clipped = results["clipping"]["clip at 1.0"]
    assert math.isfinite(clipped["final_loss_mean20"])
    for png in ("03b-lr-sweep.png", "03b-sgd-vs-adamw.png", "03b-clipping.png", "03b-schedule.png"):
        assert (tmp_path / png).stat().st_size > 1000
