"""Tests for g2c.pretraining: data windows, the LM loss, the Trainer, checkpoints and resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from g2c.embeddings import TokenEmbedding
from g2c.nn import Dropout, Linear, Module
from g2c.pretraining import (
    TrainConfig,
    Trainer,
    device_peak_flops,
    empty_training_history,
    get_lm_batch,
    lm_cross_entropy,
    model_flops_per_token,
    split_token_stream,
)
from g2c.transformer import TransformerLM

V = 17


class TinyLM(Module):
    """Embedding → dropout → Linear: a bigram-style LM (B, T) → (B, T, V) for Trainer tests."""

    def __init__(self, vocab_size: int = V, dim: int = 8, dropout: float = 0.0, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.embed = TokenEmbedding(vocab_size, dim, generator=g)
        self.drop = Dropout(dropout)
        self.head = Linear(dim, vocab_size, generator=g)
        self.max_seq_len = 32

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(idx)))


def _stream(n: int = 2000, seed: int = 0) -> torch.Tensor:
    """A learnable stream: mostly i → i+1 (mod V) with some noise."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.empty(n, dtype=torch.long)
    ids[0] = 0
    noise = torch.rand(n, generator=g) < 0.1
    rnd = torch.randint(0, V, (n,), generator=g)
    for i in range(1, n):
        ids[i] = rnd[i] if noise[i] else (ids[i - 1] + 1) % V
    return ids


def _trainer(model, **kw) -> Trainer:
    args = dict(
        batch_size=4,
        context_length=8,
        max_steps=20,
        max_lr=1e-2,
        min_lr=1e-3,
        warmup_steps=3,
        device="cpu",
        optimizer="adamw",
        seed=123,
    )
    args.update(kw)
    return Trainer(model, **args)


# -- data -----------------------------------------------------------------------------------
def test_split_token_stream_contiguous():
    ids = torch.arange(100)
    train, val = split_token_stream(ids, 0.9)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))


@pytest.mark.parametrize(
    "ids, frac, msg",
    [
        (torch.zeros(2, 5, dtype=torch.long), 0.9, "1-D"),
        (torch.arange(5), 0.0, "between 0 and 1"),
        (torch.arange(5), 1.0, "between 0 and 1"),
        (torch.arange(5), 0.1, "empty"),
        (torch.arange(1), 0.5, "empty"),
    ],
)
def test_split_token_stream_errors(ids, frac, msg):
    with pytest.raises(ValueError, match=msg):
        split_token_stream(ids, frac)


def test_get_lm_batch_shift_and_reproducible():
    ids = torch.arange(1000) * 3
    x, y = get_lm_batch(ids, 5, 7, torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (5, 7) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y - x, torch.full_like(x, 3))  # y is the next token of the stream
    x2, y2 = get_lm_batch(ids, 5, 7, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = get_lm_batch(ids, 5, 7, torch.Generator().manual_seed(2))
    assert not torch.equal(x, x3)


def test_get_lm_batch_errors():
    with pytest.raises(ValueError, match="too short"):
        get_lm_batch(torch.arange(8), 2, 8)
    get_lm_batch(torch.arange(9), 2, 8)  # exactly T + 1 tokens is enough
    with pytest.raises(ValueError, match="1-D"):
        get_lm_batch(torch.zeros(3, 30, dtype=torch.long), 2, 4)
    with pytest.raises(TypeError):
        get_lm_batch(torch.zeros(30), 2, 4)


# -- loss -----------------------------------------------------------------------------------
def test_lm_cross_entropy_uniform_is_log_v():
    loss = lm_cross_entropy(torch.zeros(2, 3, 50), torch.randint(0, 50, (2, 3)))
    assert abs(loss.item() - math.log(50)) < 1e-6


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_lm_cross_entropy_matches_torch(impl):
    logits = (torch.randn(3, 5, 11, dtype=torch.float64) * 4).requires_grad_()
    targets = torch.randint(0, 11, (3, 5))
    ours = lm_cross_entropy(logits, targets, impl=impl)
    ref = F.cross_entropy(logits.detach().float().reshape(-1, 11), targets.reshape(-1))
    assert abs(ours.item() - ref.item()) < 1e-6
    ours.backward()
    ref_logits = logits.detach().clone().requires_grad_()
    F.cross_entropy(ref_logits.float().reshape(-1, 11), targets.reshape(-1)).backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad, atol=1e-6, rtol=0)


def test_lm_cross_entropy_errors_and_bf16():
    with pytest.raises(ValueError, match="targets"):
        lm_cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="impl"):
        lm_cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=torch.long), impl="x")
    loss = lm_cross_entropy(torch.zeros(2, 3, 5, dtype=torch.bfloat16), torch.zeros(2, 3).long())
    assert loss.dtype == torch.float32 and abs(loss.item() - math.log(5)) < 1e-6


# -- trainer --------------------------------------------------------------------------------
def test_empty_training_history_keys():
    h = empty_training_history()
    assert set(h) == {"step", "train_loss", "lr", "grad_norm", "val_step", "val_loss"}
    assert all(v == [] for v in h.values())
    assert empty_training_history() is not h


def test_trainer_arguments_and_errors():
    t = _trainer(TinyLM())
    assert t.optimizer_name == "adamw" and t.step == 0 and t.device == torch.device("cpu")
    assert t.lr(0) == pytest.approx(1e-2 / 3) and t.lr(20) == pytest.approx(1e-3)
    assert t.lr() == t.lr(0)
    assert type(_trainer(TinyLM(), optimizer="sgd").optimizer).__name__ == "SGD"
    with pytest.raises(ValueError, match="optimizer"):
        _trainer(TinyLM(), optimizer="adam")
    with pytest.raises(ValueError, match="context_length"):
        _trainer(TinyLM(), context_length=64)  # above the model's max_seq_len
    with pytest.raises(ValueError, match="batch_size"):
        _trainer(TinyLM(), batch_size=0)
    with pytest.raises(ValueError, match="autocast_dtype"):
        _trainer(TinyLM(), autocast_dtype=torch.float16)


def test_train_step_learns_and_logs():
    ids = _stream()
    train, val = split_token_stream(ids)
    t = _trainer(TinyLM(), max_steps=60, eval_every=30, eval_iters=4, log_every=20, grad_clip=1.0)
    events = []
    hist = t.train(train, val, on_log=events.append)
    assert hist["step"] == list(range(1, 61)) and t.step == 60
    assert hist["val_step"] == [30, 60]
    assert hist["train_loss"][-1] < hist["train_loss"][0] - 0.5
    assert hist["val_loss"][-1] < math.log(V) - 0.5
    assert [e["step"] for e in events] == [20, 30, 40, 60]
    keys = {"step", "train_loss", "val_loss", "lr", "grad_norm", "elapsed_s", "steps_per_s"}
    keys |= {"tokens_per_s", "mfu", "mfu_estimated"}
    for e in events:
        assert keys <= set(e)
        assert e["tokens_per_s"] > 0 and 0 < e["mfu"] < 1 and e["mfu_estimated"] is True
        assert e["grad_norm"] > 0
    assert events[0]["val_loss"] is None and events[1]["val_loss"] == hist["val_loss"][0]
    assert hist["lr"][0] == pytest.approx(t.lr(0))


def test_grad_norm_zero_without_clipping():
    t = _trainer(TinyLM())
    out = t.train_step(_stream())
    assert set(out) == {"loss", "lr", "grad_norm"} and out["grad_norm"] == 0.0


def test_evaluate_leaves_no_grads_and_restores_mode():
    model = TinyLM()
    t = _trainer(model, eval_iters=3)
    loss1 = t.evaluate(_stream())
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert t.evaluate(_stream()) == loss1  # same validation windows every call
    model.eval()
    t.evaluate(_stream())
    assert not model.training


def test_grad_accumulation_equals_large_batch():
    ids = _stream()
    a = _trainer(TinyLM(seed=3), batch_size=2, grad_accum_steps=4, grad_clip=1.0)
    b = _trainer(TinyLM(seed=3), batch_size=8, grad_accum_steps=1, grad_clip=1.0)
    for _ in range(3):
        oa, ob = a.train_step(ids), b.train_step(ids)
        assert abs(oa["loss"] - ob["loss"]) < 1e-6
        assert abs(oa["grad_norm"] - ob["grad_norm"]) < 1e-6
        for pa, pb in zip(a.params, b.params):
            torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=0)
    for pa, pb in zip(a.params, b.params):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=0)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_resume_reproduces_uninterrupted_losses_exactly(tmp_path, optimizer):
    ids = _stream()
    train, val = split_token_stream(ids)
    kw = dict(optimizer=optimizer, grad_clip=1.0, eval_every=5, eval_iters=2)
    torch.manual_seed(7)
    reference = _trainer(TinyLM(dropout=0.2), **kw)
    full = reference.train(train, val)

    torch.manual_seed(7)
    first = _trainer(TinyLM(dropout=0.2), **kw)
    ckpt = tmp_path / "ckpt.pt"
    first.train(train, val, checkpoint_path=ckpt, checkpoint_extra={"note": "half"}, stop_step=10)
    assert first.step == 10
    torch.manual_seed(999)  # disturb the global RNG: load must restore it
    second = _trainer(TinyLM(dropout=0.2, seed=42), seed=5, **kw)  # different init and seed
    state = second.load_checkpoint(ckpt)
    assert second.step == 10 and state["extra"] == {"note": "half"}
    resumed = second.train(train, val, history=state["history"])
    assert resumed["step"] == full["step"]
    assert resumed["train_loss"] == full["train_loss"]  # exact float equality
    assert resumed["val_loss"] == full["val_loss"]
    for p, q in zip(second.params, reference.params):
        assert torch.equal(p, q)


def test_checkpoint_is_weights_only_and_atomic(tmp_path):
    t = _trainer(TinyLM())
    t.train(_stream(), stop_step=2)
    path = t.save_checkpoint(tmp_path / "c.pt", history=empty_training_history(), extra={"a": 1})
    state = torch.load(path, weights_only=True)
    assert state["trainer"]["step"] == 2
    assert {"trainer", "history", "extra", "model", "optimizer"} <= set(state)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp files left behind
    with pytest.raises(TypeError, match="extra"):
        t.save_checkpoint(tmp_path / "d.pt", extra={"bad": object()})
    assert not (tmp_path / "d.pt").exists()
    with pytest.raises(ValueError, match="optimizer"):
        _trainer(TinyLM(), optimizer="sgd").load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        t.load_checkpoint(tmp_path / "missing.pt")


def test_bf16_autocast_step_runs():
    t = _trainer(TinyLM(), autocast_dtype=torch.bfloat16)
    losses = [t.train_step(_stream())["loss"] for _ in range(5)]
    assert all(math.isfinite(x) for x in losses)
    assert t.config().autocast_dtype == "bfloat16"


def test_train_config_round_trip():
    cfg = TrainConfig(batch_size=3, context_length=8, optimizer="adamw", betas=(0.9, 0.95))
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})
    t = Trainer.from_config(TinyLM(), TrainConfig(batch_size=3, context_length=8, device="cpu"))
    assert t.batch_size == 3 and t.optimizer_name == "sgd"
    assert t.config().batch_size == 3


def test_flops_and_peak():
    peak, estimated = device_peak_flops("cpu")
    assert peak > 1e9 and estimated is True
    model = TinyLM()
    assert model_flops_per_token(model) == 6 * model.num_parameters()
    tlm = TransformerLM(V, 16, 2, 2, 16)
    assert model_flops_per_token(tlm, 16) == tlm.estimate_flops_per_token(seq_len=16)


# -- with the real TransformerLM ------------------------------------------------------------
def test_transformer_random_init_loss_is_log_v():
    torch.manual_seed(0)
    model = TransformerLM(65, 32, 2, 4, 32, init="gpt2")  # GPT-2's N(0, 0.02): near-uniform logits
    t = _trainer(model, batch_size=8, context_length=32, eval_iters=4)
    ids = torch.randint(0, 65, (5000,))
    loss = t.evaluate(ids)
    assert abs(loss - math.log(65)) < 0.05
    first = t.train_step(ids)["loss"]
    assert abs(first - math.log(65)) < 0.05


def test_transformer_trains_with_fast_path():
    torch.manual_seed(0)
    model = TransformerLM(V, 32, 2, 4, 16, attention_impl="sdpa", fused=True)
    t = _trainer(model, context_length=16, max_steps=40, loss_impl="fused", max_lr=3e-3)
    hist = t.train(_stream())
    assert hist["train_loss"][-1] < hist["train_loss"][0] - 1.0


def test_example_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "10_pretraining.py"
    spec = importlib.util.spec_from_file_location("example_10", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    assert "reproduces the uninterrupted losses exactly: True" in capsys.readouterr().out
