"""Distributed training on gloo with 2 CPU processes (torchrun), DCP checkpoints across world
sizes, crash handling, the ZeRO memory plan and the activation-checkpointing policy.

Two torchrun launches serve every multi-process test (process start-up dominates): the first
runs DDP and FSDP for 10 steps, stops FSDP at step 5 with a DCP checkpoint, resumes a
single-process ``torch.save`` checkpoint on 2 ranks, then crashes rank 1 in a DDP run at step
7 (after its step-5 checkpoint); the second, in fresh processes, resumes the crashed run and
the FSDP run from their checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from g2c.cli import main
from g2c.cli.train import parse_checkpointing, torchrun_argv
from g2c.nn import Linear
from g2c.pretraining import Trainer
from g2c.sft import SFTExample, SFTTrainer
from g2c.training.distributed import (
    check_nproc,
    check_shardable,
    check_world_divides,
    is_dcp_checkpoint,
)
from g2c.training.memory_plan import activation_memory, zero_memory
from g2c.transformer import TransformerLM

REPO = Path(__file__).resolve().parents[1]
STEPS = 10

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from g2c.pretraining import Trainer
    from g2c.sft import SFTExample, SFTTrainer
    from g2c.training.distributed import cleanup_distributed, init_distributed
    from g2c.transformer import TransformerLM

    phase, tmp = sys.argv[1], sys.argv[2]
    exec(open(os.path.join(tmp, "sft.py")).read())  # SFT_TRAINER(), shared with the test
    ctx = init_distributed("cpu")
    ids = torch.randint(0, 32, (2000,), generator=torch.Generator().manual_seed(1))
    with open(os.path.join(tmp, f"pid-{phase}-{ctx.rank}"), "w") as f:
        f.write(str(os.getpid()))


    class Crashing(Trainer):
        def optimisation_step(self, source):
            if self.step == 7 and ctx.rank == 1:
                raise RuntimeError("rank 1 crashes on purpose")
            return super().optimisation_step(source)


    def make(strategy, cls=Trainer, batch_size=4, checkpointing=False):
        model = TransformerLM(32, 16, 2, 2, 8, generator=torch.Generator().manual_seed(0))
        model.activation_checkpointing = checkpointing
        t = cls(model, batch_size=batch_size, context_length=8, max_steps=10, max_lr=1e-2,
                warmup_steps=2, optimizer="adamw", grad_clip=1.0, grad_accum_steps=2, seed=3,
                device="cpu", eval_every=5, eval_iters=2)
        return t.distribute(strategy)


    out = {}
    def dump():
        if ctx.rank == 0:
            with open(os.path.join(tmp, f"out-{phase}.json"), "w") as f:
                json.dump(out, f)

    if phase == "one":
        for strategy in ("ddp", "fsdp"):
            h = make(strategy).train(ids, ids[:500])
            out[strategy], out[strategy + "_val"] = h["train_loss"], h["val_loss"]
        out["fsdp_checkpointing"] = make("fsdp", checkpointing=True).train(ids)["train_loss"]
        out["sft_ddp"] = SFT_TRAINER().distribute("ddp").train()["train_loss"]
        t = make("fsdp")
        t.train(ids, checkpoint_path=os.path.join(tmp, "fsdp5"), stop_step=5)
        t = make("fsdp")
        t.load_checkpoint(os.path.join(tmp, "single5.pt"))
        out["single_to_fsdp"] = t.train(ids)["train_loss"]
        try:
            make("ddp", batch_size=3)
        except ValueError as exc:
            out["indivisible"] = str(exc)
        dump()
        t = make("ddp", Crashing)
        t.train(ids, checkpoint_path=os.path.join(tmp, "ddp_crash"), checkpoint_every=5)
    else:
        t = make("ddp")
        h = t.load_checkpoint(os.path.join(tmp, "ddp_crash"))["history"]
        out["ddp_resumed"] = t.train(ids, history=h)["train_loss"]
        t = make("ddp")  # FSDP shards → DDP (a strategy change, same world size)
        h = t.load_checkpoint(os.path.join(tmp, "fsdp5"))["history"]
        out["fsdp5_to_ddp"] = t.train(ids, history=h)["train_loss"]
        dump()
    cleanup_distributed()
    """
)


# an SFT run whose examples all have the same number of answer tokens, so that the per-rank
# masked means average to the 1-process mean exactly
SFT = textwrap.dedent(
    """
    def SFT_TRAINER():
        g = torch.Generator().manual_seed(0)
        examples = [SFTExample(torch.randint(1, 32, (8,), generator=g).tolist(), [0] * 3 + [1] * 5)
                    for _ in range(16)]
        model = TransformerLM(32, 16, 2, 2, 16, generator=torch.Generator().manual_seed(0))
        return SFTTrainer(model, examples=examples, max_seq_len=16, pad_id=0, batch_size=4,
                          max_steps=4, max_lr=1e-2, seed=0, device="cpu")
    """
)


def make_trainer(dim: int = 16) -> Trainer:
    model = TransformerLM(32, dim, 2, 2, 8, generator=torch.Generator().manual_seed(0))
    return Trainer(
        model, batch_size=4, context_length=8, max_steps=STEPS, max_lr=1e-2, warmup_steps=2,
        optimizer="adamw", grad_clip=1.0, grad_accum_steps=2, seed=3, device="cpu",
        eval_every=5, eval_iters=2,
    )  # fmt: skip


def token_ids() -> torch.Tensor:
    return torch.randint(0, 32, (2000,), generator=torch.Generator().manual_seed(1))


def torchrun(tmp: Path, phase: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    (tmp / "sft.py").write_text(SFT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", str(script), phase, str(tmp)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not a running process
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("dist")
    single = make_trainer()
    history = single.train(token_ids(), token_ids()[:500])
    scope = {"torch": torch, "SFTExample": SFTExample, "SFTTrainer": SFTTrainer,
             "TransformerLM": TransformerLM}  # fmt: skip
    exec(SFT, scope)
    sft = scope["SFT_TRAINER"]().train()["train_loss"]
    half = make_trainer()
    half.train(token_ids(), checkpoint_path=tmp / "single5.pt", stop_step=5)
    t0 = time.perf_counter()
    one = torchrun(tmp, "one")
    crash_seconds = time.perf_counter() - t0
    pids = [int((tmp / f"pid-one-{r}").read_text()) for r in range(2)]
    two = torchrun(tmp, "two")
    assert two.returncode == 0, two.stderr[-3000:]
    out = json.loads((tmp / "out-one.json").read_text())
    out.update(json.loads((tmp / "out-two.json").read_text()))
    return {
        "tmp": tmp, "single": history["train_loss"], "single_val": history["val_loss"], "sft": sft,
        "out": out, "one": one, "pids": pids, "crash_seconds": crash_seconds,
    }  # fmt: skip


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_match_one_process_with_the_same_global_batch(runs: dict, strategy: str):
    out = runs["out"]
    assert len(runs["single"]) == STEPS
    assert close(out[strategy], runs["single"]), (out[strategy], runs["single"])
    assert close(out[strategy + "_val"], runs["single_val"])


@pytest.mark.slow
def test_checkpointing_under_fsdp_and_sft_under_ddp_match_one_process(runs: dict):
    out = runs["out"]
    assert close(out["fsdp_checkpointing"], runs["single"])  # FSDP + per-block recompute
    assert len(runs["sft"]) == 4 and close(out["sft_ddp"], runs["sft"])  # SFTTrainer too


@pytest.mark.slow
def test_a_crashing_rank_fails_the_job_and_leaves_no_process(runs: dict):
    one = runs["one"]
    assert one.returncode != 0
    assert "rank 1 crashes on purpose" in one.stderr
    assert (
        runs["crash_seconds"] < 100
    )  # torchrun tore the group down (the subprocess timeout is 120)
    assert not [pid for pid in runs["pids"] if alive(pid)]


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_run(runs: dict):
    out = runs["out"]
    # the crashed DDP run resumed at its step-5 checkpoint in fresh processes: steps 1-5 from
    # the history in the checkpoint, 6-10 recomputed
    assert close(out["ddp_resumed"], out["ddp"])
    assert close(out["fsdp5_to_ddp"], out["fsdp"])


@pytest.mark.slow
def test_checkpoints_move_between_world_sizes(runs: dict):
    tmp = runs["tmp"]
    assert is_dcp_checkpoint(tmp / "fsdp5")
    assert not (tmp / "fsdp5.tmp").exists()
    assert close(runs["out"]["single_to_fsdp"], runs["single"][5:])  # 1 process → 2 ranks
    t = make_trainer()  # 2 ranks (FSDP shards) → 1 process
    state = t.load_checkpoint(tmp / "fsdp5")
    assert t.step == 5 and state["distributed"] == {"world_size": 2, "strategy": "fsdp"}
    assert close(t.train(token_ids())["train_loss"], runs["single"][5:])


@pytest.mark.slow
def test_bad_distributed_input_is_refused_before_training(runs: dict):
    assert "must be divisible by the world size (2)" in runs["out"]["indivisible"]
    with pytest.raises(ValueError, match="different model configuration"):
        make_trainer(dim=24).load_checkpoint(runs["tmp"] / "fsdp5")


def test_world_size_batch_and_strategy_checks():
    assert check_world_divides(8, 2) == 4
    with pytest.raises(ValueError, match=r"batch_size \(6\) must be divisible by the world size"):
        check_world_divides(6, 4)
    with pytest.raises(ValueError, match="strategy must be one of"):
        check_shardable(make_trainer().model, "zero")
    with pytest.raises(ValueError, match="too small to shard"):
        check_shardable(Linear(4, 4), "fsdp")
    check_shardable(Linear(4, 4), "ddp")


def test_nproc_above_the_cores_is_refused():
    check_nproc(2, cores=2)
    with pytest.raises(ValueError, match="exceeds the 2 CPU cores"):
        check_nproc(3, cores=2)
    with pytest.raises(ValueError, match="exceeds the 2 GPU"):
        check_nproc(3, cores=16, gpus=2)
    with pytest.raises(ValueError, match="--nproc must be an integer >= 1"):
        check_nproc(0, cores=2)


def test_distribute_without_a_process_group_is_an_error():
    with pytest.raises(ValueError, match="initialised process group"):
        make_trainer().distribute("ddp")


# -- g2c train: flags checked before any process starts ---------------------------------------
def test_train_cli_refuses_bad_scale_flags_before_launching(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("G2C_HOME", str(tmp_path))
    base = ["train", "--preset", "shakespeare-char", "--out", str(tmp_path / "run")]
    assert main([*base, "--nproc", str((os.cpu_count() or 1) + 1)]) == 2
    assert "CPU cores of this machine" in capsys.readouterr().err
    assert main([*base, "--nproc", "2", "--batch-size", "5"]) == 2
    assert "train.batch_size (5) must be divisible by the world size (2)" in capsys.readouterr().err
    assert main([*base, "--checkpointing", "every:0"]) == 2
    assert "--checkpointing must be none, all or every:K" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_torchrun_command_line_and_checkpointing_flag():
    argv = ["train", "--preset", "p", "--nproc", "2", "--strategy", "fsdp", "--nproc=3"]
    assert torchrun_argv(2, argv) == [
        "--standalone", "--nproc-per-node", "2", "-m", "g2c",
        "train", "--preset", "p", "--strategy", "fsdp",
    ]  # fmt: skip
    assert [parse_checkpointing(t) for t in ("none", "all", "every:3")] == [False, True, 3]


def test_plan_memory_prints_every_zero_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("G2C_HOME", str(tmp_path))
    assert main(["train", "--preset", "shakespeare-char", "--plan-memory", "--nproc", "2"]) == 0
    out = capsys.readouterr().out
    for row in ("ddp (baseline)", "zero1 (P_os)", "zero2 (P_os+g)", "zero3 (FSDP)", "activations"):
        assert row in out
    assert not any(tmp_path.iterdir())  # planning writes nothing


# -- the ZeRO memory calculator ---------------------------------------------------------------
def test_zero_formulas_reproduce_the_papers_worked_example():
    # Rajbhandari et al. 2020, Figure 1: Ψ = 7.5B, N_d = 64, K = 12
    rows = zero_memory(7.5e9, 64, mixed_precision=True)
    assert [r.stage for r in rows] == ["ddp", "zero1", "zero2", "zero3"]
    assert [round(r.total / 1e9, 1) for r in rows] == [120.0, 31.4, 16.6, 1.9]
    assert rows[0].per_param == 16.0 and rows[3].per_param == 16 / 64


def test_zero_fp32_bytes_and_bad_input():
    ddp, z1, z2, z3 = zero_memory(1000, 4)
    assert (ddp.weights, ddp.grads, ddp.optimizer) == (4000, 4000, 8000)
    assert (z1.optimizer, z2.grads, z3.weights) == (2000, 1000, 1000)
    assert zero_memory(1000, 1)[3].total == ddp.total  # one device: nothing to shard
    with pytest.raises(ValueError, match="world_size must be an integer >= 1"):
        zero_memory(1000, 0)
    with pytest.raises(ValueError, match="num_params must be a positive number"):
        zero_memory(-1, 2)


def test_activation_estimate_shrinks_with_checkpointing():
    kw = dict(num_layers=8, embedding_dim=512, num_heads=8, vocab_size=4096,
              context_length=512, batch_size=4)  # fmt: skip
    none, every2, every1 = (activation_memory(**kw, checkpoint_every=k) for k in (0, 2, 1))
    assert none > every2 > every1
    # Korthikanti et al. 2022: s·b·h·(34 + 5as/h) bytes per layer at 16 bits
    s, b, h, a = 512, 4, 512, 8
    assert activation_memory(**kw, bytes_per_value=2) == 8 * s * b * h * (34 + 5 * a * s / h) + (
        2 * s * b * 4096 * 2
    )


# -- activation checkpointing policy ----------------------------------------------------------
def _grads(policy) -> list[torch.Tensor]:
    model = TransformerLM(32, 16, 4, 2, 8, generator=torch.Generator().manual_seed(0))
    model.activation_checkpointing = policy
    x = torch.randint(0, 32, (3, 8), generator=torch.Generator().manual_seed(1))
    loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.roll(-1, 1).flatten())
    loss.backward()
    return [p.grad for p in model.parameters()]


def test_checkpointing_policies_give_identical_gradients():
    model = TransformerLM(32, 16, 4, 2, 8)
    for policy, expect in ((False, [0, 0, 0, 0]), (True, [1, 1, 1, 1]), (0, [0, 0, 0, 0]),
                           (1, [1, 1, 1, 1]), (2, [1, 0, 1, 0]), (3, [1, 0, 0, 1])):  # fmt: skip
        model.activation_checkpointing = policy
        assert model.checkpointed_blocks() == [bool(e) for e in expect]
    reference = _grads(False)
    for policy in (True, 2, 3):
        assert all(torch.equal(g, r) for g, r in zip(_grads(policy), reference))
    model.activation_checkpointing = -1
    with pytest.raises(ValueError, match="activation_checkpointing must be"):
        model.checkpointed_blocks()
