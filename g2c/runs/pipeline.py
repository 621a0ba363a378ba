"""The pretraining pipeline behind ``g2c train`` and ``g2c speedrun``.

Stages, in order (each one's wall time lands in ``stages.json`` and the report):

1. **tokenizer** — load the corpus, split it contiguously (train | val), train a byte-level BPE
   on the training split with ``BPETokenizer.train_fast`` (which also returns the training ids),
   encode the validation split; or build a ``CharTokenizer``. Saved into the run directory, so
   a resumed run reuses them.
2. **pretraining** — ``g2c.pretraining.Trainer`` (AdamW, warmup + cosine) with log events
   written to ``metrics.jsonl``, samples every ``run.sample_every`` steps, checkpoints every
   ``run.checkpoint_every`` steps. With a time budget, ``max_steps`` is chosen *before*
   training from a measured step time (a throw-away model runs a few steps), so the cosine
   schedule is a complete one for the steps that fit; the value is stored in
   ``run_config.json`` and a resumed run keeps it. The machine's load can change while it
   trains (a shared CPU), so every ~20 s the plan is refitted: ``max_steps`` becomes the
   current step plus the steps that fit in the time left at the session's mean rate so far
   (evaluations and samples included), and the cosine schedule continues towards the new end (a small jump in
   learning rate when the end moves by more than 3%). A budgeted run is therefore
   time-dependent; with a fixed ``--max-steps`` and no budget, a run is exactly reproducible.
3. **evaluation** — validation loss over consecutive windows of the validation split and
   bits per byte: ``loss (nats/token) × tokens / bytes / ln 2``.
4. **sampling** — a few samples from the final model.
5. **report** — ``model.safetensors``, ``manifest.json``, plots, ``report.md``.

Interruption: ``should_stop()`` is polled at every log event (a completed step, history
appended); when it returns True a checkpoint is written and the function returns with
``status="interrupted"``. Running again with the same configuration resumes from the
checkpoint (same losses as an uninterrupted run on CPU: the Trainer restores its batch RNG).
After a hard kill the last periodic checkpoint is used and later metric lines are dropped.
Library code: it reports through ``on_event(kind, info)`` and never prints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import append_jsonl, atomic_write_json, write_manifest
from g2c.pretraining import Trainer, empty_training_history, lm_cross_entropy
from g2c.runs.config import RunConfig
from g2c.runs.rundir import RUN_FORMAT, RunDir
from g2c.sampling import generate
from g2c.transformer import TransformerLM

EventFn = Callable[[str, dict], None]


class _StopRequested(Exception):
    """Raised from the log callback to leave ``Trainer.train`` after a completed step."""


class _Replan(Exception):
    """Raised from the log callback when a time-budgeted run must change ``max_steps``."""


REPLAN_S = 20.0  # seconds between re-plans of a time-budgeted run


@dataclasses.dataclass
class RunResult:
    """What :func:`run_pretraining` returns.

    ``status``: "complete" | "interrupted". ``step``: completed optimisation steps.
    ``metrics``: final metrics (val_loss, val_bpb, ...; empty when interrupted).
    """

    status: str
    run_dir: Path
    step: int
    max_steps: int
    metrics: dict[str, Any]
    history: dict[str, list]
    resumed_from: int | None = None


# -- tokenizer stage --------------------------------------------------------------------------
def load_run_text(cfg: RunConfig, data_path: str | os.PathLike | None = None) -> str:
    """The run's text: ``data.text_file`` or ``load_corpus(data.corpus)``, cut to ``max_chars``."""
    if cfg.data.text_file:
        path = Path(cfg.data.text_file)
        if not path.is_file():
            raise FileNotFoundError(f"--text-file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        from g2c.data import load_corpus

        text = load_corpus(cfg.data.corpus, data_path)
    if cfg.data.max_chars:
        text = text[: cfg.data.max_chars]
    return text


def load_tokenizer(path: str | Path):
    """A BPETokenizer or CharTokenizer from its JSON file (format key decides)."""
    import json

    from g2c.tokenizer import BPETokenizer, CharTokenizer

    d = json.loads(Path(path).read_text(encoding="utf-8"))
    return BPETokenizer.from_dict(d) if d.get("format") == "g2c.bpe" else CharTokenizer.from_dict(d)


def prepare_data(
    cfg: RunConfig, rd: RunDir, data_path=None
) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
    """Train (or reload) the tokenizer and the token ids of both splits.

    Returns ``(tokenizer, train_ids (N,), val_ids (M,), info)``, info with ``val_bytes``,
    ``train_chars``, ``reused`` (True when read back from the run directory).
    """
    from g2c.data import load_token_ids, save_token_ids, split_text
    from g2c.tokenizer import BPETokenizer, CharTokenizer

    if rd.tokenizer.is_file() and rd.train_ids.is_file() and rd.val_ids.is_file():
        info = rd.load_stages().get("tokenizer", {})
        tok = load_tokenizer(rd.tokenizer)
        return (
            tok,
            load_token_ids(rd.train_ids),
            load_token_ids(rd.val_ids),
            {**info, "reused": True},
        )
    text = load_run_text(cfg, data_path)
    train_text, val_text = split_text(text, cfg.data.val_fraction)
    if cfg.data.tokenizer == "bpe":
        tok = BPETokenizer.with_course_special_tokens()
        if cfg.data.vocab_size <= tok.base_vocab_size:
            raise ValueError(
                f"data.vocab_size ({cfg.data.vocab_size}) must exceed the {tok.base_vocab_size} "
                "byte + special ids"
            )
        train_ids = tok.train_fast(train_text, cfg.data.vocab_size)
        val_ids = tok.encode_fast(val_text)
    else:
        tok = CharTokenizer(text)
        train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)
    tok.save(rd.tokenizer)
    save_token_ids(rd.val_ids, val_ids)
    save_token_ids(rd.train_ids, train_ids)  # written last: its presence marks the stage done
    info = {
        "train_chars": len(train_text),
        "val_chars": len(val_text),
        "val_bytes": len(val_text.encode("utf-8", "surrogatepass")),
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "vocab_size": tok.vocab_size,
        "reused": False,
    }
    return tok, load_token_ids(rd.train_ids), load_token_ids(rd.val_ids), info


# -- model + trainer --------------------------------------------------------------------------
def build_model(cfg: RunConfig, vocab_size: int, seed: int) -> TransformerLM:
    """The run's TransformerLM, initialised from its own generator (seeded: reproducible)."""
    gen = torch.Generator().manual_seed(seed)
    return TransformerLM.from_config(cfg.model_config(vocab_size), generator=gen)


def build_trainer(cfg: RunConfig, model: TransformerLM) -> Trainer:
    """``Trainer.from_config`` with the run's TrainConfig."""
    return Trainer.from_config(model, cfg.train)


def measure_step_time(
    cfg: RunConfig, vocab_size: int, train_ids: torch.Tensor, steps: int = 3
) -> dict:
    """Seconds per training step and per sampled token, on a throw-away copy of the model.

    One warm-up step, then ``steps`` timed steps; then 8 sampled tokens. Returns
    ``{"step_s", "sample_token_s"}``.
    """
    model = build_model(cfg, vocab_size, seed=0)
    probe_cfg = dataclasses.replace(cfg.train, max_steps=steps + 1, seed=0, warmup_steps=0)
    trainer = Trainer.from_config(model, probe_cfg)
    rng_state = torch.get_rng_state()
    trainer.train_step(train_ids)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(train_ids)
    step_s = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    generate(
        model,
        train_ids[:4].tolist(),
        8,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    sample_token_s = (time.perf_counter() - t0) / 8
    torch.set_rng_state(rng_state)
    return {"step_s": step_s, "sample_token_s": sample_token_s}


def plan_max_steps(
    cfg: RunConfig, seconds_left: float, step_s: float, sample_token_s: float
) -> int:
    """Largest ``max_steps`` whose training (with its evaluations and samples) fits ``seconds_left``.

    Per step: ``step_s`` + an evaluation every ``eval_every`` steps (``eval_iters`` forward
    passes ≈ step_s / 3 each) + a sample of ``sample_tokens`` every ``sample_every`` steps.
    At least 1 step.
    """
    t = cfg.train
    per_step = step_s + t.eval_iters * step_s / 3 / t.eval_every
    if cfg.run.sample_every:
        per_step += cfg.run.sample_tokens * sample_token_s / cfg.run.sample_every
    return max(1, int(seconds_left / per_step))


# -- evaluation -------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_stream(model, ids: torch.Tensor, context_length: int, batch_size: int = 16,
                    max_tokens: int | None = None, device: str | torch.device = "cpu") -> dict:  # fmt: skip
    """Mean next-token loss (nats/token) over consecutive, non-overlapping windows of ``ids``.

    ``ids``: 1-D long (N,). Uses the first ``max_tokens`` predictions (None: all that fit in
    whole windows). Returns ``{"loss", "tokens"}``. Too few ids for one window → ValueError.
    """
    T = context_length
    n_windows = (ids.numel() - 1) // T
    if n_windows < 1:
        raise ValueError(f"ids must hold more than context_length={T} tokens, got {ids.numel()}")
    if max_tokens is not None:
        n_windows = max(1, min(n_windows, max_tokens // T))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, n_windows, batch_size):
            rows = range(start, min(start + batch_size, n_windows))
            x = torch.stack([ids[r * T : r * T + T] for r in rows]).to(device)  # (B, T)
            y = torch.stack([ids[r * T + 1 : r * T + T + 1] for r in rows]).to(device)  # (B, T)
            loss = lm_cross_entropy(model(x), y, impl="fused")
            total += float(loss) * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)
    return {"loss": total / count, "tokens": count}


def bits_per_byte(loss_nats: float, num_tokens: int, num_bytes: int) -> float:
    """Bits per byte of text: ``loss (nats/token) × tokens / bytes / ln 2``."""
    return loss_nats * num_tokens / num_bytes / math.log(2)


# -- sampling -----------------------------------------------------------------------------------
def sample_text(model, tok, prompt: str, max_new_tokens: int, *, temperature: float = 0.8,
                top_k: int | None = 40, seed: int = 0) -> str:  # fmt: skip
    """Decode ``max_new_tokens`` sampled tokens after ``prompt`` (its own generator: the
    training RNG streams are untouched). Returns prompt + continuation text."""
    ids = tok.encode(prompt) or [0]
    gen = torch.Generator(device=str(next(iter(model.parameters())).device)).manual_seed(seed)
    out = generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen)
    return tok.decode(out.tolist())


# -- the whole run ------------------------------------------------------------------------------
def _comparable(d: dict) -> dict:
    """The parts of a run config that must match for a resume (not the device, not the
    planned max_steps / warmup_steps)."""
    skip = ("device", "max_steps", "warmup_steps")
    train = {k: v for k, v in d["train"].items() if k not in skip}
    return {"data": d["data"], "model": d["model"], "train": train}


def run_pretraining(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    fresh: bool = False,
    on_event: EventFn | None = None,
    should_stop: Callable[[int], bool] | None = None,
    data_path: str | os.PathLike | None = None,
    threads: int | None = None,
    command: str | None = None,
) -> RunResult:
    """Run (or resume) the whole pipeline into ``out_dir``; see the module docstring.

    ``fresh`` deletes an existing run there first. A ``warmup_steps`` above ``max_steps``
    (a preset's warmup with a shorter ``--max-steps``) becomes ``max_steps // 10``. ``on_event(kind, info)`` receives
    "stage" (name, status), "plan", "resume", "log" (the Trainer's event), "sample",
    "checkpoint" events. ``should_stop(step)`` is polled after logged steps. A run directory
    holding a different configuration → ValueError (use ``fresh`` or another directory).
    """
    emit = on_event or (lambda kind, info: None)
    rd = RunDir(out_dir)
    rd.root.mkdir(parents=True, exist_ok=True)
    if fresh:
        rd.clear()
    start_wall = time.perf_counter()
    prior = rd.read_json(rd.run_config)
    seed = cfg.train.seed if cfg.train.seed is not None else 1337
    warm = cfg.train.warmup_steps
    if warm > cfg.train.max_steps:  # a preset's warmup with a user's shorter --max-steps
        warm = cfg.train.max_steps // 10
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, seed=seed, warmup_steps=warm)
    )
    if prior is not None:
        if _comparable(prior) != _comparable(cfg.to_dict()):
            raise ValueError(
                f"{rd.root} holds a run with another configuration; pass --fresh to start over "
                "there or choose another --out"
            )
        planned = {k: prior["train"][k] for k in ("max_steps", "warmup_steps")}
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **planned))
    else:  # files without a run_config.json belong to no run we can resume: drop them
        rd.clear()
    budget_s = cfg.run.budget_minutes * 60 if cfg.run.budget_minutes else None

    # 1. tokenizer
    emit("stage", {"name": "tokenizer", "status": "start"})
    t0 = time.perf_counter()
    tok, train_ids, val_ids, data_info = prepare_data(cfg, rd, data_path)
    if not data_info.get("reused"):
        rd.update_stage("tokenizer", seconds=time.perf_counter() - t0, **data_info)
    emit("stage", {"name": "tokenizer", "status": "done", **data_info})

    # 2. pretraining (plan, build, resume, train)
    model = build_model(cfg, tok.vocab_size, seed)
    if prior is None:
        if budget_s is not None:
            probe = measure_step_time(cfg, tok.vocab_size, train_ids)
            spent = time.perf_counter() - start_wall
            reserve = max(10.0, 0.05 * budget_s)  # final eval, samples, report
            steps = plan_max_steps(cfg, budget_s - spent - reserve, probe["step_s"],
                                   probe["sample_token_s"])  # fmt: skip
            warm = min(cfg.train.warmup_steps, max(0, steps // 10))
            cfg = dataclasses.replace(
                cfg, train=dataclasses.replace(cfg.train, max_steps=steps, warmup_steps=warm)
            )
            emit("plan", {"max_steps": steps, "budget_s": budget_s, "seconds_left": budget_s - spent,
                          **probe})  # fmt: skip
        atomic_write_json(rd.run_config, cfg.to_dict())
    trainer = build_trainer(cfg, model)
    history, resumed_from = empty_training_history(), None
    if rd.checkpoint.is_file():
        state = trainer.load_checkpoint(rd.checkpoint)
        history = state["history"]
        resumed_from = trainer.step
        rd.truncate_jsonl(rd.metrics, trainer.step)
        rd.truncate_jsonl(rd.samples, trainer.step)
        emit("resume", {"step": trainer.step, "max_steps": trainer.max_steps})
    else:
        for path in (rd.metrics, rd.samples):
            path.unlink(missing_ok=True)
    prompt = cfg.run.prompt

    def take_sample(step: int, seed_: int, tag: str) -> str:
        text = sample_text(model, tok, prompt, cfg.run.sample_tokens,
                           temperature=cfg.run.sample_temperature, top_k=cfg.run.sample_top_k,
                           seed=seed_)  # fmt: skip
        append_jsonl(rd.samples, {"step": step, "tag": tag, "text": text})
        emit("sample", {"step": step, "tag": tag, "text": text})
        return text

    def on_log(event: dict) -> None:
        append_jsonl(rd.metrics, event)
        emit("log", event)
        step = event["step"]
        every = cfg.run.sample_every
        if every and step % every == 0 and step < trainer.max_steps:
            take_sample(step, seed_=step, tag="during")
        if should_stop is not None and should_stop(step) and step < trainer.max_steps:
            raise _StopRequested
        if budget_s is not None and step < trainer.max_steps:
            _maybe_replan(step)

    replan = {"t": time.perf_counter(), "step": trainer.step, "new": None}
    replan.update(t0=replan["t"], step0=trainer.step)
    spent_before = 0.0
    if resumed_from is not None:  # the budget covers every session of the run
        spent_before = sum(s.get("seconds", 0.0) for s in rd.load_stages().values())

    def _maybe_replan(step: int) -> None:
        """Every ~REPLAN_S seconds: fit max_steps to the time left at the mean step rate so far."""
        now = time.perf_counter()
        if now - replan["t"] < REPLAN_S or step <= replan["step"]:
            return
        # mean wall time per step since this session's training began (evals, samples incl.):
        # steadier than the last window on a machine whose load comes and goes
        per_step = (now - replan["t0"]) / (step - replan["step0"])
        spent = spent_before + now - start_wall
        left = budget_s - spent - max(10.0, 0.05 * budget_s)
        new_max = max(step + 1, trainer.warmup_steps, step + int(left / per_step))
        replan.update(t=now, step=step)
        if abs(new_max - trainer.max_steps) > 0.03 * trainer.max_steps:
            replan["new"] = new_max
            raise _Replan

    emit("stage", {"name": "pretraining", "status": "start", "step": trainer.step,
                   "max_steps": trainer.max_steps, "params": model.num_parameters()})  # fmt: skip
    t0 = time.perf_counter()
    stage_prev = (
        rd.load_stages().get("pretraining", {}).get("seconds", 0.0) if resumed_from else 0.0
    )
    ckpt_every = cfg.run.checkpoint_every or cfg.train.eval_every
    extra = {"run_format": RUN_FORMAT}
    try:
        while True:
            try:
                history = trainer.train(
                    train_ids, val_ids, on_log=on_log, history=history,
                    checkpoint_path=rd.checkpoint, checkpoint_every=ckpt_every,
                    checkpoint_extra=extra,
                )  # fmt: skip
                break
            except _Replan:  # the load changed: a new max_steps, the same run
                trainer.max_steps = replan["new"]
                cfg = dataclasses.replace(
                    cfg, train=dataclasses.replace(cfg.train, max_steps=replan["new"])
                )
                atomic_write_json(rd.run_config, cfg.to_dict())
                emit("replan", {"step": trainer.step, "max_steps": trainer.max_steps})
    except _StopRequested:
        trainer.save_checkpoint(rd.checkpoint, history=history, extra=extra)
        rd.update_stage("pretraining", seconds=stage_prev + time.perf_counter() - t0,
                        step=trainer.step)  # fmt: skip
        emit("checkpoint", {"step": trainer.step, "path": str(rd.checkpoint)})
        return RunResult("interrupted", rd.root, trainer.step, trainer.max_steps, {}, history,
                         resumed_from)  # fmt: skip
    train_s = stage_prev + time.perf_counter() - t0
    logs = rd.read_jsonl(rd.metrics)
    tps = sorted(r["tokens_per_s"] for r in logs if r.get("tokens_per_s")) or [0.0]
    mfus = sorted(r["mfu"] for r in logs if r.get("mfu") is not None) or [0.0]
    tokens_per_step = cfg.train.batch_size * cfg.train.context_length * cfg.train.grad_accum_steps
    rd.update_stage(
        "pretraining", seconds=train_s, step=trainer.step, tokens=trainer.step * tokens_per_step,
        tokens_per_s=tps[len(tps) // 2], mfu=mfus[len(mfus) // 2],
        mfu_estimated=bool(trainer.peak_flops_estimated),
        train_loss=history["train_loss"][-1] if history["train_loss"] else None,
        val_loss=history["val_loss"][-1] if history["val_loss"] else None,
    )  # fmt: skip
    emit("stage", {"name": "pretraining", "status": "done", "seconds": train_s})

    # 3. evaluation
    emit("stage", {"name": "evaluation", "status": "start"})
    t0 = time.perf_counter()
    ev = evaluate_stream(model, val_ids, cfg.train.context_length, cfg.train.batch_size,
                         max_tokens=65_536, device=trainer.device)  # fmt: skip
    val_bytes = data_info.get("val_bytes") or rd.load_stages().get("tokenizer", {}).get("val_bytes")
    bpb = bits_per_byte(ev["loss"], val_ids.numel(), val_bytes) if val_bytes else None
    metrics = {
        "val_loss": ev["loss"],
        "val_tokens_evaluated": ev["tokens"],
        "val_bpb": bpb,
        "val_perplexity": math.exp(ev["loss"]),
        "train_loss": history["train_loss"][-1] if history["train_loss"] else None,
        "steps": trainer.step,
        "tokens_seen": trainer.step * tokens_per_step,
        "num_parameters": model.num_parameters(),
        "num_parameters_non_embedding": model.num_parameters(exclude_embeddings=True),
        "flops_per_token": trainer.flops_per_token,
        "train_flops": 6 * model.num_parameters(exclude_embeddings=True) * trainer.step * tokens_per_step,
    }  # fmt: skip
    rd.update_stage(
        "evaluation", seconds=time.perf_counter() - t0, val_loss=ev["loss"], val_bpb=bpb
    )
    emit("stage", {"name": "evaluation", "status": "done", **metrics})

    # 4. sampling
    emit("stage", {"name": "sampling", "status": "start"})
    t0 = time.perf_counter()
    if not any(r.get("tag") == "final" for r in rd.read_jsonl(rd.samples)):
        for i in range(3):
            take_sample(trainer.step, seed_=10_000 + i, tag="final")
    rd.update_stage("sampling", seconds=time.perf_counter() - t0)
    emit("stage", {"name": "sampling", "status": "done"})

    # 5. weights, manifest, plots, report
    emit("stage", {"name": "report", "status": "start"})
    t0 = time.perf_counter()
    from g2c.runs.registry import model_name
    from g2c.runs.report import write_plots, write_report

    model.save_pretrained(rd.root)
    name = model_name(cfg.run.family, model.num_parameters())
    env = {"device": str(trainer.device), "threads": threads or torch.get_num_threads(),
           "torch": torch.__version__, "machine": platform.machine(),
           "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
           "command": command}  # fmt: skip
    write_plots(rd, history)
    rd.update_stage("report", seconds=time.perf_counter() - t0)
    write_manifest(
        rd.root, RUN_FORMAT, name=name, family=cfg.run.family, status="complete",
        num_parameters=model.num_parameters(), run_config=cfg.to_dict(),
        model_config=model.config.to_dict(), data=cfg.data.corpus if not cfg.data.text_file
        else [cfg.data.text_file], metrics=metrics, environment=env,
        total_seconds=sum(s.get("seconds", 0.0) for s in rd.load_stages().values()),
    )  # fmt: skip
    write_report(rd.root)
    emit("stage", {"name": "report", "status": "done", "path": str(rd.report)})
    return RunResult("complete", rd.root, trainer.step, trainer.max_steps, metrics, history,
                     resumed_from)  # fmt: skip
