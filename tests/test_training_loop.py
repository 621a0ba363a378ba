"""Tests for the one training loop (g2c.training.loop), its LM case (g2c.pretraining.Trainer),
the evaluation home (g2c.training.evaluation), TokenStream and the measured MFU peak."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from g2c.data import save_token_ids
from g2c.embeddings import TokenEmbedding
from g2c.nn import Dropout, Linear, Module
from g2c.pretraining import (
    TokenStream,
    TrainConfig,
    Trainer,
    get_lm_batch,
    split_token_stream,
)
from g2c.training import (
    LoopConfig,
    LoopControl,
    TrainingLoop,
    bits_per_byte,
    device_peak_flops,
    empty_training_history,
    mean_batch_loss,
    perplexity_from_loss,
    sequence_perplexity,
    stream_loss,
)
from g2c.training import flops as flops_mod

V = 17


@pytest.fixture(autouse=True)
def _fixed_peak(monkeypatch):
    monkeypatch.setenv("G2C_PEAK_FLOPS", "1e12")  # deterministic MFU, no measurement


class TinyLM(Module):
    """Embedding → dropout → Linear: (B, T) → (B, T, V)."""

    def __init__(self, dropout: float = 0.0, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.embed = TokenEmbedding(V, 8, generator=g)
        self.drop = Dropout(dropout)
        self.head = Linear(8, V, generator=g)
        self.max_seq_len = 32

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(idx)))


def _stream(n: int = 2000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.empty(n, dtype=torch.long)
    ids[0] = 0
    noise = torch.rand(n, generator=g) < 0.1
    rnd = torch.randint(0, V, (n,), generator=g)
    for i in range(1, n):
        ids[i] = rnd[i] if noise[i] else (ids[i - 1] + 1) % V
    return ids


def _trainer(model=None, **kw) -> Trainer:
    args = dict(batch_size=4, context_length=8, max_steps=20, max_lr=1e-2, min_lr=1e-3,
                warmup_steps=3, device="cpu", optimizer="adamw", seed=123, eval_every=5,
                eval_iters=2, grad_clip=1.0)  # fmt: skip
    args.update(kw)
    return Trainer(model or TinyLM(), **args)


# -- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("batch_size", True),
        ("context_length", 0),
        ("max_steps", -1),
        ("max_lr", -0.001),
        ("max_lr", math.nan),
        ("min_lr", -1.0),
        ("min_lr", 1.0),  # above max_lr
        ("warmup_steps", -1),
        ("weight_decay", -0.1),
        ("grad_clip", 0.0),
        ("eval_every", 0),
        ("eval_iters", 0),
        ("log_every", 0),
        ("device", "tpu"),
        ("device", 3),
        ("optimizer", "adam"),
        ("betas", (0.9,)),
        ("betas", (0.9, 1.0)),
        ("grad_accum_steps", 0),
        ("autocast_dtype", "float16"),
        ("loss_impl", "fast"),
        ("seed", "x"),
    ],
)
def test_train_config_names_every_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=field):  # replace() validates too (the CLI's path)
        dataclasses.replace(TrainConfig(), **{field: value})
    if field not in ("context_length", "loss_impl"):
        with pytest.raises(ValueError, match=field):
            LoopConfig(**{field: value})


def test_train_config_messages_and_round_trip():
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="max_lr"):
        TrainConfig(max_lr=-0.001)
    cfg = TrainConfig(betas=[0.9, 0.95], autocast_dtype=torch.bfloat16, device=torch.device("cpu"))
    assert cfg.betas == (0.9, 0.95) and cfg.autocast_dtype == "bfloat16" and cfg.device == "cpu"
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["betas"] == [0.9, 0.95]
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"batch_size": 2, "nope": 1})
    assert LoopConfig.from_dict(LoopConfig(batch_size=3).to_dict()).batch_size == 3
    assert TrainConfig(warmup_steps=10, max_steps=5).warmup_steps == 10  # a stage may rescale


def test_trainer_signature_defaults_come_from_the_config():
    params = inspect.signature(Trainer).parameters
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, p in params.items():
        if name in defaults and p.default is not inspect.Parameter.empty:
            assert p.default == defaults[name], name
    assert set(defaults) <= set(params)
    assert params["loss_impl"].default == "fused" and TrainConfig().loss_impl == "fused"
    with pytest.raises(ValueError, match="warmup_steps"):
        _trainer(warmup_steps=30)  # the loop needs warmup <= max_steps
    t = _trainer(autocast_dtype="bf16")
    assert t.config() == TrainConfig(**{**t.config().to_dict(), "betas": t.betas})
    assert t.config().autocast_dtype == "bfloat16" and t.autocast_dtype == torch.bfloat16


# -- fast default ---------------------------------------------------------------------------
def test_fused_default_equals_reference():
    ids = _stream()
    a, b = _trainer(), _trainer(loss_impl="reference")
    assert a.loss_impl == "fused"
    for _ in range(5):
        la, lb = a.train_step(ids)["loss"], b.train_step(ids)["loss"]
        assert abs(la - lb) < 1e-5
    for p, q in zip(a.params, b.params):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=0)


# -- control: stop, resume, re-plan, elapsed ------------------------------------------------
class StopAt(LoopControl):
    def __init__(self, at: int):
        self.at = at
        self.calls: list[int] = []

    def should_stop(self, step: int) -> bool:
        self.calls.append(step)
        return step == self.at


def test_default_control_changes_nothing():
    c = LoopControl()
    assert c.should_stop(3) is False and c.plan_max_steps(3, 10, 1.0) is None


def test_control_stop_then_resume_equals_uninterrupted(tmp_path):
    train, val = split_token_stream(_stream())
    torch.manual_seed(7)
    ref = _trainer(TinyLM(dropout=0.2))
    full = ref.train(train, val)
    assert ref.stop_reason == "complete"

    torch.manual_seed(7)
    first = _trainer(TinyLM(dropout=0.2))
    ckpt = tmp_path / "ck.pt"
    control = StopAt(7)
    hist = first.train(train, val, checkpoint_path=ckpt, control=control)
    assert first.stop_reason == "stopped" and first.step == 7 and len(hist["step"]) == 7
    assert control.calls == list(range(1, 8))
    assert torch.load(ckpt, weights_only=True)["trainer"]["step"] == 7  # written at the stop

    torch.manual_seed(999)
    second = _trainer(TinyLM(dropout=0.2, seed=4), seed=5)
    state = second.load_checkpoint(ckpt)
    resumed = second.train(train, val, history=state["history"], control=LoopControl())
    assert second.stop_reason == "complete"
    assert resumed["train_loss"] == full["train_loss"] and resumed["val_loss"] == full["val_loss"]
    for p, q in zip(second.params, ref.params):
        assert torch.equal(p, q)


class Replan(LoopControl):
    def __init__(self, at: int, new: int):
        self.at, self.new = at, new
        self.seen: list[tuple] = []

    def plan_max_steps(self, step, max_steps, elapsed_s):
        self.seen.append((step, max_steps, elapsed_s))
        return self.new if step == self.at else None


def test_plan_max_steps_replans_the_schedule():
    events = []
    t = _trainer(log_every=1)
    ctrl = Replan(5, 12)
    hist = t.train(_stream(), on_log=events.append, control=ctrl)
    assert t.step == t.max_steps == 12 and hist["step"] == list(range(1, 13))
    assert t.stop_reason == "complete"
    assert [e["max_steps"] for e in events] == [20] * 5 + [12] * 7
    assert hist["lr"][6] == pytest.approx(t.lr(6))  # the cosine now ends at 12
    assert hist["lr"][-1] == pytest.approx(t.lr(11)) and t.lr(12) == pytest.approx(1e-3)
    elapsed = [s[2] for s in ctrl.seen]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0


def test_replan_to_the_current_step_finishes_it_as_the_last():
    train, val = split_token_stream(_stream())
    t = _trainer(eval_every=100, log_every=100)
    events = []
    hist = t.train(train, val, on_log=events.append, control=Replan(4, 4))
    assert t.step == 4 and t.stop_reason == "complete"
    assert hist["val_step"] == [4] and [e["step"] for e in events] == [4]
    with pytest.raises(ValueError, match="plan_max_steps"):
        _trainer().train(_stream(), control=Replan(4, 2))


def test_elapsed_s_is_cumulative_across_sessions(tmp_path):
    ids = _stream()
    a = _trainer()
    a.train(ids, checkpoint_path=tmp_path / "c.pt", stop_step=6)
    assert a.stop_reason == "stopped" and a.elapsed_s > 0
    saved = torch.load(tmp_path / "c.pt", weights_only=True)["trainer"]["elapsed_s"]
    assert 0 < saved <= a.elapsed_s
    b = _trainer()
    b.load_checkpoint(tmp_path / "c.pt")
    assert b.elapsed_s == saved
    events = []
    b.train(ids, on_log=events.append)
    assert events[0]["elapsed_s"] > saved
    assert [e["elapsed_s"] for e in events] == sorted(e["elapsed_s"] for e in events)
    assert b.elapsed_s >= events[-1]["elapsed_s"]


def test_bad_train_arguments_fail_before_any_step(tmp_path):
    t = _trainer()
    with pytest.raises(TypeError, match="control"):
        t.train(_stream(), control=object())
    with pytest.raises(ValueError, match="checkpoint_every"):
        t.train(_stream(), checkpoint_every=0)
    with pytest.raises(TypeError, match="train_ids"):
        t.train([1, 2, 3])
    with pytest.raises(TypeError, match="checkpoint_extra"):
        t.train(_stream(), checkpoint_path=tmp_path / "c.pt", checkpoint_extra={"x": object()})
    assert t.step == 0 and not (tmp_path / "c.pt").exists()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    t = _trainer()
    path = t.save_checkpoint(tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"c\.pt.*(truncated|corrupt).*delete it"):
        _trainer().load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.pt"):
        _trainer().load_checkpoint(tmp_path / "junk.pt")


# -- the generic loop on a non-LM task ------------------------------------------------------
class Regressor(Module):
    def __init__(self):
        self.lin = Linear(3, 1, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _regression_source():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(256, 3, generator=g)
    Y = X @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3

    def source(n: int, generator: torch.Generator) -> dict:
        idx = torch.randint(0, len(X), (n,), generator=generator)
        return {"x": X[idx], "y": Y[idx]}

    return source


def _mse(model, batch):
    err = model(batch["x"]) - batch["y"]
    loss = (err**2).mean()
    return loss, {"mae": err.abs().mean()}


def test_generic_loop_trains_a_regression():
    cfg = LoopConfig(batch_size=16, max_steps=150, max_lr=0.1, device="cpu", optimizer="adamw",
                     eval_every=50, eval_iters=2, log_every=50, seed=0)  # fmt: skip
    loop = TrainingLoop(Regressor(), cfg, _mse)
    source = _regression_source()
    events = []
    hist = loop.train(source, source, on_log=events.append)
    assert loop.stop_reason == "complete" and hist["train_loss"][-1] < 0.01 * hist["train_loss"][0]
    assert "mae" in events[-1] and events[-1]["mae"] < 0.1
    assert loop.evaluate(source) < 0.01
    with pytest.raises(TypeError, match="train_source"):
        loop.train(torch.zeros(3))


def test_generic_loop_accumulation_and_metrics_with_dict_batches():
    source = _regression_source()
    a = TrainingLoop(Regressor(), LoopConfig(batch_size=4, grad_accum_steps=4, max_steps=5,
                                             device="cpu", seed=0, max_lr=0.05), _mse)  # fmt: skip
    b = TrainingLoop(Regressor(), LoopConfig(batch_size=16, max_steps=5, device="cpu", seed=0,
                                             max_lr=0.05), _mse)  # fmt: skip
    for _ in range(3):
        oa, ob = a.train_step(source), b.train_step(source)
        assert set(oa) == {"loss", "lr", "grad_norm", "mae"}
        assert oa["loss"] == pytest.approx(ob["loss"], abs=1e-6)
        assert oa["mae"] == pytest.approx(ob["mae"], abs=1e-6)
    for p, q in zip(a.params, b.params):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="loss_fn must return"):
        TrainingLoop(Regressor(), LoopConfig(device="cpu"), lambda m, b: 1.0).train_step(source)


# -- TokenStream ----------------------------------------------------------------------------
def test_token_stream_gives_the_same_batches_and_losses(tmp_path):
    ids = _stream()
    path = save_token_ids(tmp_path / "train.bin", ids)
    stream = TokenStream(path)
    assert len(stream) == len(ids) and stream[5] == int(ids[5]) and stream[-1] == int(ids[-1])
    assert torch.equal(stream[10:20], ids[10:20]) and torch.equal(stream.to_tensor(), ids)
    for B, T in [(3, 5), (8, 16)]:
        xa, ya = get_lm_batch(ids, B, T, torch.Generator().manual_seed(2))
        xb, yb = get_lm_batch(stream, B, T, torch.Generator().manual_seed(2))
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and xb.dtype == torch.long
    train_s, val_s = stream.split(0.9)
    train_t, val_t = split_token_stream(ids, 0.9)
    assert torch.equal(train_s.to_tensor(), train_t) and torch.equal(val_s.to_tensor(), val_t)
    h1 = _trainer().train(train_t, val_t)
    h2 = _trainer().train(train_s, val_s)
    assert h1["train_loss"] == h2["train_loss"] and h1["val_loss"] == h2["val_loss"]
    assert _trainer().evaluate(val_s) == _trainer().evaluate(val_t)
    assert stream_loss(TinyLM(), val_s, 8)["loss"] == pytest.approx(
        stream_loss(TinyLM(), val_t, 8)["loss"], abs=1e-6
    )


def test_token_stream_errors_and_raw_files(tmp_path):
    raw = tmp_path / "raw.bin"
    np.arange(50, dtype="<u2").tofile(raw)
    with pytest.raises(ValueError, match="dtype"):
        TokenStream(raw)
    assert TokenStream(raw, dtype="uint16")[49] == 49
    with pytest.raises(FileNotFoundError):
        TokenStream(tmp_path / "missing.bin")
    path = save_token_ids(tmp_path / "t.bin", list(range(100)))
    path.write_bytes(path.read_bytes()[:-4])  # an interrupted write
    with pytest.raises(ValueError, match="sidecar"):
        TokenStream(path)
    short = TokenStream(save_token_ids(tmp_path / "s.bin", [1, 2, 3]))
    with pytest.raises(ValueError, match="too short"):
        get_lm_batch(short, 2, 8)
    with pytest.raises(TypeError, match="TokenStream"):
        get_lm_batch([1, 2, 3], 1, 1)


# -- evaluation -----------------------------------------------------------------------------
class Uniform:
    training = False

    def __call__(self, x):
        return torch.zeros(*x.shape, V)

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def test_stream_loss_and_bits_per_byte():
    T = 4
    ids = torch.randint(0, V, (3 * T + 2,), generator=torch.Generator().manual_seed(0))
    ev = stream_loss(Uniform(), ids, T, batch_size=2)
    assert ev["tokens"] == 3 * T and ev["loss"] == pytest.approx(math.log(V))
    assert stream_loss(Uniform(), ids, T, max_tokens=T)["tokens"] == T
    with pytest.raises(ValueError, match="context_length"):
        stream_loss(Uniform(), ids[:3], T)
    assert bits_per_byte(1.0, 10, 20) == pytest.approx(0.5 / math.log(2))
    with pytest.raises(ValueError, match="num_bytes"):
        bits_per_byte(1.0, 10, 0)
    assert perplexity_from_loss(math.log(V)) == pytest.approx(V)
    assert perplexity_from_loss(1e6) == math.inf


def test_stream_loss_matches_manual_windows():
    model = TinyLM()
    ids = _stream(200)
    T = 8
    n = (len(ids) - 1) // T
    x = ids[: n * T].view(n, T)
    y = ids[1 : n * T + 1].view(n, T)
    with torch.no_grad():
        ref = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
    ev = stream_loss(model, ids, T, batch_size=5)
    assert ev["tokens"] == n * T and ev["loss"] == pytest.approx(float(ref), rel=1e-5)
    assert model.training  # mode restored


def test_sequence_perplexity_matches_manual_nll():
    model = TinyLM()
    prompt, new = [1, 2, 3, 4, 5], [6, 7, 9, 9]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt + new])[:, :-1])[0], -1)
    nll = -torch.stack([logp[4 + i, new[i]] for i in range(4)]).mean()
    assert sequence_perplexity(model, prompt, new) == pytest.approx(float(torch.exp(nll)), rel=1e-5)
    assert model.training
    long = sequence_perplexity(model, [i % V for i in range(40)], [1, 2])  # cropped to max_seq_len
    assert math.isfinite(long)
    with pytest.raises(ValueError, match="new id"):
        sequence_perplexity(model, [1, 2], [])


def test_mean_batch_loss_no_grads_mode_restored():
    model = TinyLM()
    batches = [get_lm_batch(_stream(), 2, 8, torch.Generator().manual_seed(i)) for i in range(3)]

    def loss_fn(m, b):
        return F.cross_entropy(m(b[0]).reshape(-1, V), b[1].reshape(-1)), {}

    val = mean_batch_loss(model, batches, loss_fn)
    with torch.no_grad():
        manual = sum(float(loss_fn(model, b)[0]) for b in batches) / 3
    assert val == pytest.approx(manual, rel=1e-6)
    assert mean_batch_loss(model, batches, lambda m, b: loss_fn(m, b)[0]) == val
    assert model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="empty"):
        mean_batch_loss(model, [], loss_fn)


# -- MFU peak -------------------------------------------------------------------------------
def test_device_peak_flops_override_measure_and_disk_cache(monkeypatch, tmp_path):
    assert device_peak_flops("cpu") == (1e12, True)  # the fixture's G2C_PEAK_FLOPS
    assert device_peak_flops("cpu", override=5e9) == (5e9, True)
    monkeypatch.setenv("G2C_PEAK_FLOPS", "fast")
    with pytest.raises(ValueError, match="G2C_PEAK_FLOPS"):
        device_peak_flops("cpu")
    monkeypatch.delenv("G2C_PEAK_FLOPS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(flops_mod, "_MEMO", {})
    rates = [7e10]  # per-core rates the next measurements return
    calls = []

    def fake_measure(*args, **kwargs):
        calls.append(torch.get_num_threads())
        return rates[0]

    monkeypatch.setattr(flops_mod, "measure_matmul_flops", fake_measure)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert device_peak_flops("cpu") == (2 * 7e10, True)  # threads × per-core peak
        assert device_peak_flops("cpu")[0] == 2 * 7e10 and calls == [1]  # once, on one thread
        cached = json.loads((tmp_path / "g2c" / "peak_flops.json").read_text())
        assert list(cached.values()) == [7e10] and "per-core" in next(iter(cached))
        # a later measurement on a loaded machine is lower: the cached maximum stands
        rates[0] = 3e10
        monkeypatch.setattr(flops_mod, "_MEMO", {})
        assert device_peak_flops("cpu")[0] == 2 * 7e10 and len(calls) == 2
        # a higher one replaces it
        rates[0] = 9e10
        monkeypatch.setattr(flops_mod, "_MEMO", {})
        torch.set_num_threads(1)
        assert device_peak_flops("cpu")[0] == 9e10
        cached = json.loads((tmp_path / "g2c" / "peak_flops.json").read_text())
        assert list(cached.values()) == [9e10]
    finally:
        torch.set_num_threads(threads)


def test_measure_matmul_flops_is_positive():
    assert flops_mod.measure_matmul_flops("cpu", n=64, seconds=0.01) > 1e6
    t = _trainer()
    assert t.peak_flops == 1e12 and t.peak_flops_estimated is True
    assert empty_training_history() == {k: [] for k in empty_training_history()}
