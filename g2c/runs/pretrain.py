"""The pretraining stage behind ``g2c train`` and ``g2c speedrun``.

``run(cfg, out)`` (also exported as ``run_pretraining``) follows the stage skeleton
(:mod:`g2c.runs.stage`): :func:`validate` checks the whole ``RunConfig`` before anything is
written, then the parts run in order (each one's wall time lands in ``stages.json`` and the
report):

1. **tokenizer** (:func:`prepare_data`) — load the corpus, split it contiguously (train | val),
   train a byte-level BPE on the training split with ``BPETokenizer.train_fast`` (which also
   returns the training ids), encode the validation split; or build a ``CharTokenizer``; or
   encode with GPT-2's tokenizer (``data.tokenizer = "gpt2"``). Saved into the run directory, so
   a resumed run reuses them. With ``data.shards`` the data is a prepared corpus instead
   (:func:`prepare_shards`): memory-mapped shards checked against their manifest, the
   directory's (or GPT-2's) tokenizer; ``"python-stdlib"`` is prepared into ``RUN/shards``.
2. **pretraining** (:func:`train`) — ``g2c.pretraining.Trainer`` (AdamW, warmup + cosine) with
   log events written to ``metrics.jsonl``, samples every ``run.sample_every`` steps,
   checkpoints every ``run.checkpoint_every`` steps. With a time budget, ``max_steps`` is chosen
   *before* training from a measured step time (:func:`plan_budget`: a throw-away model runs a
   few steps), so the cosine schedule is a complete one for the steps that fit; the value is
   stored in ``run_config.json`` and a resumed run keeps it. The machine's load can change
   while it trains (a shared CPU), so the loop consults a :class:`BudgetPlan` (a
   ``LoopControl``): every ~20 s of training it refits ``max_steps`` to the steps that fit in
   the time left at the session's mean rate so far (evaluations and samples included), and the
   cosine schedule continues towards the new end. A budgeted run is therefore time-dependent;
   with a fixed ``--max-steps`` and no budget, a run is exactly reproducible.
3. **evaluation** — validation loss over consecutive windows of the validation split
   (``g2c.training.stream_loss``) and bits per byte (``g2c.training.bits_per_byte``).
4. **sampling** — a few samples from the final model.
5. **report** — ``model.safetensors``, ``manifest.json``, plots, ``report.md``.

Time: the budget counts every session of the run. The trainer's cumulative training time
(``Trainer.elapsed_s``) is stored in every checkpoint, the set-up time of each session
(probe, model, checkpoint loading) in ``stages.json`` before its loop starts, and the time
outside the parts (validation, bookkeeping) as the ``overhead`` part at the end of each session.
After a hard kill (SIGKILL, power loss) the time since the last checkpoint is lost — at most
``checkpoint_every`` steps; a stop request (Ctrl-C, SIGTERM, ``should_stop``) loses nothing.
``metrics.jsonl``'s ``elapsed_s`` is that cumulative training time: it never goes back, across
re-plans and resumes.

Interruption: ``should_stop(step)`` is consulted after every completed step; when it returns
True a checkpoint is written and the function returns with ``status="interrupted"``. Running
again with the same configuration resumes from the checkpoint (same losses as an uninterrupted
run on CPU: the Trainer restores its batch RNG). After a hard kill the last periodic checkpoint
is used and later metric lines are dropped. Library code: it reports through
``on_event(kind, info)`` and never prints.

Distributed (under ``torchrun``, an initialised process group; ``g2c train --nproc N``): rank 0
runs the stage as above — data, plan, every file, evaluation, samples, report — while the other
ranks only train: they receive rank 0's resolved config, read the token files rank 0 wrote,
and train their slice of every batch (``TrainingLoop.distribute(strategy)``, DDP or FSDP).
The checkpoint is then a ``torch.distributed.checkpoint`` directory at the same path; it
resumes on any number of processes. Under FSDP no samples are taken during training (the
weights are sharded); after training the full weights are gathered for the later parts.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import RUN_FORMAT, append_jsonl
from g2c.data import (
    check_prepared,
    is_python_stdlib,
    load_corpus,
    load_token_ids,
    prepare_corpus,
    prepared_dir,
    python_stdlib_config,
    python_stdlib_sample,
    resolve,
    save_token_ids,
    split_text,
)
from g2c.pretraining import ShardedTokenStream, Trainer, empty_training_history
from g2c.runs.config import GPT2_VOCAB_SIZE, RunConfig
from g2c.runs.registry import model_name
from g2c.runs.report import write_plots, write_report
from g2c.runs.rundir import RunDir
from g2c.runs.stage import EventFn, Stage, check, environment
from g2c.sampling import generate
from g2c.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer
from g2c.training import LoopControl, bits_per_byte, perplexity_from_loss, stream_loss
from g2c.training.distributed import DistContext, current_context
from g2c.transformer import TransformerLM

REPLAN_S = 20.0  # seconds of training between re-plans of a time-budgeted run
EVAL_MAX_TOKENS = 65_536  # validation tokens scored by the evaluation part
_PLACEHOLDER_VOCAB = 300  # a vocabulary size to validate the model config before the tokenizer


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns.

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


# -- 1. validation (before any write) -----------------------------------------------------------
def validate(cfg: RunConfig) -> RunConfig:
    """The config to run, or ValueError naming the first bad field; nothing is written.

    Every section is re-validated (a ``RunConfig`` built by hand skips ``apply_overrides``),
    the ``TransformerConfig`` is built with a placeholder vocabulary, and the cross-field rules
    are checked: ``train.context_length <= model.max_seq_len``, ``train.warmup_steps <=
    train.max_steps`` (``apply_overrides`` already shortens a preset's warmup for a shorter
    ``--max-steps``), a BPE ``data.vocab_size`` above the byte + special ids, an existing
    ``data.text_file``, a finished prepared corpus at ``data.shards`` whose shards match its
    manifest (and GPT-2's vocabulary for ``data.tokenizer = "gpt2"``). The returned config has
    ``train.seed`` resolved (1337 when None).
    """
    cfg = RunConfig.from_dict(cfg.to_dict())  # every section's own __post_init__ checks
    model = cfg.model_config(max(_PLACEHOLDER_VOCAB, cfg.data.vocab_size))
    t = cfg.train
    check(t.context_length <= model.max_seq_len, "train.context_length",
          f"{t.context_length} exceeds model.max_seq_len {model.max_seq_len}; lower "
          "--context-length or raise --max-seq-len")  # fmt: skip
    check(t.warmup_steps <= t.max_steps, "train.warmup_steps",
          f"{t.warmup_steps} exceeds train.max_steps {t.max_steps}; lower --warmup-steps")  # fmt: skip
    seed = t.seed if t.seed is not None else 1337
    if cfg.data.tokenizer == "bpe":
        base = BPETokenizer.with_course_special_tokens().base_vocab_size
        check(cfg.data.vocab_size > base, "data.vocab_size",
              f"{cfg.data.vocab_size} must exceed the {base} byte + special ids")  # fmt: skip
    if cfg.data.text_file and not Path(cfg.data.text_file).is_file():
        raise FileNotFoundError(f"--text-file {cfg.data.text_file} does not exist")
    if cfg.data.shards and is_python_stdlib(cfg.data.shards):
        python_stdlib_config(cfg.data.shards)  # a package that is not there → ValueError
        check(cfg.data.tokenizer in ("bpe", "gpt2"), "data.tokenizer",
              f"{cfg.data.shards!r} is tokenized with 'bpe' (trained on it) or 'gpt2', "
              f"not {cfg.data.tokenizer!r}")  # fmt: skip
    elif cfg.data.shards:  # missing / unfinished / truncated / another vocabulary: no write
        check_prepared(cfg.data.shards,
                       vocab_size=GPT2_VOCAB_SIZE if cfg.data.tokenizer == "gpt2" else None)  # fmt: skip
    check(cfg.run.checkpoint_every is None or cfg.run.checkpoint_every >= 1,
          "run.checkpoint_every", f"must be >= 1 or None, got {cfg.run.checkpoint_every}")  # fmt: skip
    check(cfg.run.sample_tokens >= 1, "run.sample_tokens",
          f"must be >= 1, got {cfg.run.sample_tokens}")  # fmt: skip
    train = dataclasses.replace(t, seed=seed)
    return dataclasses.replace(cfg, train=train)


def comparable(d: dict) -> dict:
    """The parts of a run config that must match for a resume (not the device, not the
    planned max_steps / warmup_steps)."""
    skip = ("device", "max_steps", "warmup_steps")
    train = {k: v for k, v in d["train"].items() if k not in skip}
    return {"data": d["data"], "model": d["model"], "train": train}


# -- 2. tokenizer ---------------------------------------------------------------------------------
def load_run_text(cfg: RunConfig, data_path: str | os.PathLike | None = None) -> str:
    """The run's text: ``data.text_file`` or ``load_corpus(data.corpus)``, cut to ``max_chars``."""
    if cfg.data.text_file:
        path = Path(cfg.data.text_file)
        if not path.is_file():
            raise FileNotFoundError(f"--text-file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        text = load_corpus(cfg.data.corpus, data_path)
    if cfg.data.max_chars:
        text = text[: cfg.data.max_chars]
    return text


def prepare_data(
    cfg: RunConfig, rd: RunDir, data_path=None
) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
    """Train (or reload) the tokenizer and the token ids of both splits.

    Returns ``(tokenizer, train_ids (N,), val_ids (M,), info)``, info with ``val_bytes``,
    ``train_chars``, ``reused`` (True when read back from the run directory).

    With ``data.shards`` the token streams are :class:`~g2c.pretraining.ShardedTokenStream`
    memory maps of a prepared corpus instead (:func:`prepare_shards`). ``data.tokenizer =
    "gpt2"`` encodes the text with GPT-2's tokenizer (nothing trained).
    """
    if cfg.data.shards:
        return prepare_shards(cfg, rd, data_path)
    if rd.tokenizer.is_file() and rd.train_ids.is_file() and rd.val_ids.is_file():
        info = rd.load_stages().get("tokenizer", {})
        tok = load_tokenizer(rd.tokenizer)
        ids = load_token_ids(rd.train_ids), load_token_ids(rd.val_ids)
        return tok, ids[0], ids[1], {**info, "reused": True}
    text = load_run_text(cfg, data_path)
    train_text, val_text = split_text(text, cfg.data.val_fraction)
    if cfg.data.tokenizer == "bpe":
        tok = BPETokenizer.with_course_special_tokens()
        train_ids = tok.train_fast(train_text, cfg.data.vocab_size)
        val_ids = tok.encode_fast(val_text)
    elif cfg.data.tokenizer == "gpt2":
        tok = gpt2_tokenizer(data_path)
        train_ids, val_ids = tok.encode_fast(train_text), tok.encode_fast(val_text)
    else:
        tok = CharTokenizer(text)
        train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)
    tok.save(rd.tokenizer)
    save_token_ids(rd.val_ids, val_ids)
    save_token_ids(rd.train_ids, train_ids)  # written last: its presence marks the part done
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


def gpt2_tokenizer(data_path: str | os.PathLike | None = None):
    """GPT-2's byte-level BPE (50,257 ids, ``<|endoftext|>`` = 50256) from the packaged
    ``gpt2-tokenizer`` files (``$G2C_DATA_DIR/gpt2_tokenizer`` or ``data_path``; no download)."""
    return load_tokenizer(resolve("gpt2-tokenizer", data_path, download=False))


def shards_dir(cfg: RunConfig, rd: RunDir) -> Path:
    """Where the run's prepared corpus is: ``data.shards`` (a directory or its manifest), or
    ``RUN/shards`` for ``python-stdlib``, which the run prepares itself."""
    if is_python_stdlib(cfg.data.shards):
        return rd.root / "shards"
    return prepared_dir(cfg.data.shards)


def open_streams(
    cfg: RunConfig, rd: RunDir, tokenizer=None
) -> tuple[ShardedTokenStream, ShardedTokenStream]:
    """The (train, val) memory-mapped streams of the run's prepared corpus, checked against its
    manifest (with ``tokenizer``: also its vocabulary and fingerprint).

    Validation: the manifest's ``val`` split (documents held out by hash at preparation) when
    it has tokens; otherwise the last ``data.val_fraction`` of the training stream (a
    contiguous tail, as the text corpora are split), and training uses the rest."""
    root = shards_dir(cfg, rd)
    train = ShardedTokenStream.from_prepared(root, "train", tokenizer=tokenizer)
    if train.manifest["tokens"].get("val", 0) > cfg.train.context_length:
        return train, ShardedTokenStream.from_prepared(root, "val")
    return train.split(1.0 - cfg.data.val_fraction)


def _prepare_python_stdlib(cfg: RunConfig, rd: RunDir, data_path) -> None:
    """Tokenizer (a BPE of ``data.vocab_size`` trained on the first ``data.max_chars`` or
    2,000,000 characters of the corpus, or GPT-2's) and ``RUN/shards`` for ``python-stdlib``;
    both reused when already there (``prepare_corpus`` resumes or returns at once)."""
    spec = cfg.data.shards
    if rd.tokenizer.is_file():
        tok = load_tokenizer(rd.tokenizer)
    elif cfg.data.tokenizer == "gpt2":
        tok = gpt2_tokenizer(data_path)
    else:
        tok = BPETokenizer.with_course_special_tokens()
        tok.train_fast(python_stdlib_sample(spec, cfg.data.max_chars or 2_000_000),
                       cfg.data.vocab_size)  # fmt: skip
    prep = python_stdlib_config(spec, tokenizer=cfg.data.tokenizer,
                                val_fraction=cfg.data.val_fraction)  # fmt: skip
    tok.save(rd.tokenizer)  # before the shards: an interrupted preparation resumes with it
    prepare_corpus(prep, tok, shards_dir(cfg, rd))


def prepare_shards(
    cfg: RunConfig, rd: RunDir, data_path=None
) -> tuple[Any, ShardedTokenStream, ShardedTokenStream, dict]:
    """The ``data.shards`` case of :func:`prepare_data`: the prepared corpus's tokenizer and
    its (train, val) streams (:func:`open_streams`); the tokenizer is saved into the run.

    The tokenizer: ``data.tokenizer = "gpt2"`` → GPT-2's; otherwise the prepared directory's
    ``tokenizer.json``; either way checked against the manifest (vocabulary size and
    fingerprint) — shards tokenized with another tokenizer → ValueError. ``python-stdlib``
    is prepared into ``RUN/shards`` first (:func:`_prepare_python_stdlib`)."""
    reused = rd.tokenizer.is_file()
    if is_python_stdlib(cfg.data.shards):
        _prepare_python_stdlib(cfg, rd, data_path)
    root = shards_dir(cfg, rd)
    if cfg.data.tokenizer == "gpt2" and not is_python_stdlib(cfg.data.shards):
        tok = gpt2_tokenizer(data_path)
    elif (root / "tokenizer.json").is_file():
        tok = load_tokenizer(root / "tokenizer.json")
    else:
        raise ValueError(
            f"data.shards {str(root)!r} has no tokenizer.json; if it was prepared with "
            "--tokenizer gpt2 set data.tokenizer to 'gpt2' (--tokenizer gpt2)"
        )
    train, val = open_streams(cfg, rd, tok)
    tok.save(rd.tokenizer)
    manifest = train.manifest
    info = {
        "shards": str(root),
        "shard_files": len(manifest["shards"]),
        "dtype": manifest["dtype"],
        "train_tokens": len(train),
        "val_tokens": len(val),
        "val_source": "manifest" if manifest["tokens"].get("val") == len(val) else "tail",
        "vocab_size": tok.vocab_size,
        "funnel": manifest.get("funnel"),
        "reused": reused,
    }
    return tok, train, val, info


# -- 3. model, trainer, budget --------------------------------------------------------------------
def build_model(cfg: RunConfig, vocab_size: int, seed: int) -> TransformerLM:
    """The run's TransformerLM, initialised from its own generator (seeded: reproducible)."""
    gen = torch.Generator().manual_seed(seed)
    return TransformerLM.from_config(cfg.model_config(vocab_size), generator=gen)


def compile_model(model: TransformerLM, backend: str = "inductor") -> TransformerLM:
    """``torch.compile`` the model's forward in place (``run.compile``, ``g2c train
    --compile``); the weights, state dict and checkpoints are unchanged. Returns ``model``."""
    model.forward = torch.compile(model.forward, backend=backend)
    return model


def build_trainer(cfg: RunConfig, model: TransformerLM) -> Trainer:
    """``Trainer.from_config`` with the run's TrainConfig."""
    return Trainer.from_config(model, cfg.train)


@dataclasses.dataclass
class Parallel:
    """How this process takes part in a distributed run: its ``context`` (rank, world size),
    the ``strategy`` ("ddp" | "fsdp") and the model's ``activation_checkpointing`` policy."""

    context: DistContext | None = None
    strategy: str = "ddp"
    activation_checkpointing: bool | int = False

    @property
    def active(self) -> bool:
        """True with more than one process."""
        return self.context is not None and self.context.world_size > 1


def _share(parallel: Parallel, payload: dict | None) -> dict | None:
    """Rank 0's ``payload`` on every rank (None when not distributed)."""
    if not parallel.active:
        return payload
    box = [payload]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _checkpoint_exists(path: Path) -> bool:
    return path.is_file() or (path / ".metadata").is_file()


def measure_step_time(
    cfg: RunConfig, vocab_size: int, train_ids: torch.Tensor, steps: int = 3
) -> dict:
    """Seconds per training step and per sampled token, on a throw-away copy of the model.

    One warm-up step, then ``steps`` timed steps; then 8 sampled tokens. Returns
    ``{"step_s", "sample_token_s"}``. Torch's global RNG is restored afterwards.
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
    gen = torch.Generator().manual_seed(0)
    generate(model, train_ids[:4].tolist(), 8, temperature=1.0, generator=gen)
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


def reserve_s(budget_s: float) -> float:
    """Seconds of a budget kept for the final evaluation, samples and report."""
    return max(10.0, 0.05 * budget_s)


class BudgetPlan(LoopControl):
    """The training loop's control for a run: stop requests and, with a budget, re-plans.

    ``should_stop(step)`` asks ``stop`` (e.g. a signal flag). With ``budget_s``, every
    ``every_s`` seconds of training ``plan_max_steps`` returns the step count that fits the
    time left — ``budget_s − spent_outside_s − elapsed_s − reserve`` at the mean seconds per
    step since ``start_step`` (this session's rate, evaluations and samples included) — when
    it differs from the current plan by more than 3%. ``spent_outside_s`` is the run's time
    outside the training loop (tokenizer, set-up, earlier sessions' overhead), ``elapsed_s``
    the loop's cumulative training time over every session: the budget counts every session.
    ``on_replan(step, max_steps)`` is called with each new plan.
    """

    def __init__(
        self,
        *,
        stop: Callable[[int], bool] | None = None,
        budget_s: float | None = None,
        spent_outside_s: float = 0.0,
        start_step: int = 0,
        start_elapsed_s: float = 0.0,
        warmup_steps: int = 0,
        every_s: float = REPLAN_S,
        on_replan: Callable[[int, int], None] | None = None,
    ) -> None:
        self.stop = stop
        self.budget_s = budget_s
        self.spent_outside_s = spent_outside_s
        self.start_step = start_step
        self.start_elapsed_s = start_elapsed_s
        self.last_plan_s = start_elapsed_s
        self.warmup_steps = warmup_steps
        self.every_s = every_s
        self.on_replan = on_replan

    def should_stop(self, step: int) -> bool:
        """True when the stop callback asks for it."""
        return self.stop is not None and bool(self.stop(step))

    def seconds_left(self, elapsed_s: float) -> float:
        """Budget left for training after ``elapsed_s`` seconds of it (reserve deducted)."""
        assert self.budget_s is not None
        return self.budget_s - self.spent_outside_s - elapsed_s - reserve_s(self.budget_s)

    def plan_max_steps(self, step: int, max_steps: int, elapsed_s: float) -> int | None:
        """A refitted ``max_steps`` every ``every_s`` seconds of training, else None."""
        if self.budget_s is None or step <= self.start_step:
            return None
        if elapsed_s - self.last_plan_s < self.every_s:
            return None
        self.last_plan_s = elapsed_s
        per_step = (elapsed_s - self.start_elapsed_s) / (step - self.start_step)
        fit = step + int(self.seconds_left(elapsed_s) / max(per_step, 1e-9))
        new_max = max(step, self.warmup_steps, fit)
        if abs(new_max - max_steps) <= 0.03 * max_steps:
            return None
        if self.on_replan is not None:
            self.on_replan(step, new_max)
        return new_max


def plan_budget(cfg: RunConfig, vocab_size: int, train_ids: torch.Tensor,
                spent: Callable[[], float]) -> tuple[RunConfig, dict]:  # fmt: skip
    """A budgeted run's first plan: ``max_steps`` (and warmup ≤ a tenth of it) that fit the
    budget left after ``spent()`` seconds (read after the step-time probe), from a measured
    step time. Returns (cfg, plan)."""
    budget_s = cfg.run.budget_minutes * 60
    probe = measure_step_time(cfg, vocab_size, train_ids)
    spent_s = spent()
    left = budget_s - spent_s - reserve_s(budget_s)
    steps = plan_max_steps(cfg, left, probe["step_s"], probe["sample_token_s"])
    warm = min(cfg.train.warmup_steps, max(0, steps // 10))
    train = dataclasses.replace(cfg.train, max_steps=steps, warmup_steps=warm)
    plan = {"max_steps": steps, "budget_s": budget_s, "seconds_left": budget_s - spent_s, **probe}
    return dataclasses.replace(cfg, train=train), plan


# -- 4. sampling ------------------------------------------------------------------------------------
def sample_text(model, tok, prompt: str, max_new_tokens: int, *, temperature: float = 0.8,
                top_k: int | None = 40, seed: int = 0) -> str:  # fmt: skip
    """Decode ``max_new_tokens`` sampled tokens after ``prompt`` (its own generator: the
    training RNG streams are untouched). Returns prompt + continuation text."""
    ids = tok.encode(prompt) or [0]
    gen = torch.Generator(device=str(next(iter(model.parameters())).device)).manual_seed(seed)
    out = generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen)
    return tok.decode(out.tolist())


def _sampler(cfg: RunConfig, rd: RunDir, model, tok, emit: EventFn) -> Callable:
    def take_sample(step: int, seed: int, tag: str) -> str:
        text = sample_text(model, tok, cfg.run.prompt, cfg.run.sample_tokens,
                           temperature=cfg.run.sample_temperature, top_k=cfg.run.sample_top_k,
                           seed=seed)  # fmt: skip
        append_jsonl(rd.samples, {"step": step, "tag": tag, "text": text})
        emit("sample", {"step": step, "tag": tag, "text": text})
        return text

    return take_sample


# -- 5. the parts ---------------------------------------------------------------------------------
@dataclasses.dataclass
class _Training:
    """What the pretraining part hands to the later parts."""

    cfg: RunConfig
    model: TransformerLM
    trainer: Trainer
    history: dict
    resumed_from: int | None


def train(
    stage: Stage, cfg: RunConfig, tok, train_ids: torch.Tensor, val_ids: torch.Tensor,
    *, resumed: bool, should_stop: Callable[[int], bool] | None, info: dict,
    parallel: Parallel | None = None,
) -> _Training:  # fmt: skip
    """The pretraining part: plan (a budgeted new run), build, resume from the checkpoint,
    train with a :class:`BudgetPlan`. Fills ``info`` with what ``stages.json`` records.
    ``parallel``: rank 0 of a distributed run (see the module docstring)."""
    parallel = parallel or Parallel()
    rd, emit = stage.rd, stage.emit
    t_setup = time.perf_counter()
    setup_before = stage.rd.load_stages().get("pretraining", {}).get("setup_seconds", 0.0)
    if not resumed:
        setup_before = 0.0
        if cfg.run.budget_minutes:
            spent = lambda: stage.total_seconds_now() + time.perf_counter() - t_setup  # noqa: E731
            cfg, plan = plan_budget(cfg, tok.vocab_size, train_ids, spent)
            emit("plan", plan)
        stage.save_config(cfg.to_dict())
    model = build_model(cfg, tok.vocab_size, cfg.train.seed)
    model.activation_checkpointing = parallel.activation_checkpointing
    if cfg.run.compile:
        compile_model(model)
    trainer = build_trainer(cfg, model)
    history, resumed_from = empty_training_history(), None
    if parallel.active:  # the followers build the same model, then every rank wraps it
        _share(parallel, {"cfg": cfg.to_dict(), "vocab_size": tok.vocab_size,
                          "resume": _checkpoint_exists(rd.checkpoint)})  # fmt: skip
        trainer.distribute(parallel.strategy, parallel.context)
    if _checkpoint_exists(rd.checkpoint):
        history = trainer.load_checkpoint(rd.checkpoint)["history"]
        resumed_from = trainer.step
        trainer.max_steps = cfg.train.max_steps  # the plan in run_config.json (re-plans kept)
        rd.truncate_jsonl(rd.metrics, trainer.step)
        rd.truncate_jsonl(rd.samples, trainer.step)
        emit("resume", {"step": trainer.step, "max_steps": trainer.max_steps})
    else:
        for path in (rd.metrics, rd.samples):
            path.unlink(missing_ok=True)
    start_elapsed = trainer.elapsed_s  # earlier sessions' training time, from the checkpoint
    info["base_seconds"] = setup_before + start_elapsed  # the part's time before this session
    setup = setup_before + time.perf_counter() - t_setup
    # this session's set-up survives a hard kill; its training time is in every checkpoint
    stage.record("pretraining", seconds=setup + start_elapsed, setup_seconds=setup,
                 step=trainer.step)  # fmt: skip

    def on_replan(step: int, max_steps: int) -> None:
        nonlocal cfg
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=max_steps))
        stage.save_config(cfg.to_dict())
        emit("replan", {"step": step, "max_steps": max_steps})

    budget_s = cfg.run.budget_minutes * 60 if cfg.run.budget_minutes else None
    control = BudgetPlan(
        stop=should_stop, budget_s=budget_s,
        spent_outside_s=stage.total_seconds_now() - start_elapsed, start_step=trainer.step,
        start_elapsed_s=start_elapsed, warmup_steps=trainer.warmup_steps, on_replan=on_replan,
    )  # fmt: skip
    take_sample = _sampler(cfg, rd, model, tok, emit)

    def on_log(event: dict) -> None:
        append_jsonl(rd.metrics, event)
        emit("log", event)
        step, every = event["step"], cfg.run.sample_every
        if parallel.active and parallel.strategy == "fsdp":
            every = 0  # the weights are sharded while training: no samples until the end
        if every and step % every == 0 and step < trainer.max_steps:
            take_sample(step, seed=step, tag="during")

    emit("train", {"step": trainer.step, "max_steps": trainer.max_steps,
                   "params": model.num_parameters()})  # fmt: skip
    history = trainer.train(
        train_ids, val_ids, on_log=on_log, history=history, checkpoint_path=rd.checkpoint,
        checkpoint_every=cfg.run.checkpoint_every or cfg.train.eval_every,
        checkpoint_extra={"run_format": RUN_FORMAT}, control=control,
    )  # fmt: skip
    model = trainer.gather_model()  # distributed: the full weights (a collective under FSDP)
    loop_s = trainer.elapsed_s - start_elapsed
    info.update(setup_seconds=setup_before + time.perf_counter() - t_setup - loop_s,
                step=trainer.step)  # fmt: skip
    if trainer.stop_reason != "complete":
        emit("checkpoint", {"step": trainer.step, "path": str(rd.checkpoint)})
        return _Training(cfg, model, trainer, history, resumed_from)
    logs = rd.read_jsonl(rd.metrics)
    tps = sorted(r["tokens_per_s"] for r in logs if r.get("tokens_per_s")) or [0.0]
    mfus = sorted(r["mfu"] for r in logs if r.get("mfu") is not None) or [0.0]
    info.update(
        tokens=trainer.step * _tokens_per_step(cfg), tokens_per_s=tps[len(tps) // 2],
        mfu=mfus[len(mfus) // 2], mfu_estimated=bool(trainer.peak_flops_estimated),
        train_loss=history["train_loss"][-1] if history["train_loss"] else None,
        val_loss=history["val_loss"][-1] if history["val_loss"] else None,
    )  # fmt: skip
    return _Training(cfg, model, trainer, history, resumed_from)


def _tokens_per_step(cfg: RunConfig) -> int:
    return cfg.train.batch_size * cfg.train.context_length * cfg.train.grad_accum_steps


def evaluate(run: _Training, val_ids: torch.Tensor, val_bytes: int | None) -> dict[str, Any]:
    """The evaluation part's metrics: streamed validation loss, bits per byte, perplexity,
    parameters and training FLOPs (6·N·tokens, N without embeddings)."""
    cfg, model, trainer, history = run.cfg, run.model, run.trainer, run.history
    ev = stream_loss(model, val_ids, cfg.train.context_length, batch_size=cfg.train.batch_size,
                     max_tokens=EVAL_MAX_TOKENS, device=trainer.device)  # fmt: skip
    bpb = bits_per_byte(ev["loss"], val_ids.numel(), val_bytes) if val_bytes else None
    tokens = trainer.step * _tokens_per_step(cfg)
    n_body = model.num_parameters(exclude_embeddings=True)
    return {
        "val_loss": ev["loss"],
        "val_tokens_evaluated": ev["tokens"],
        "val_bpb": bpb,
        "val_perplexity": perplexity_from_loss(ev["loss"]),
        "train_loss": history["train_loss"][-1] if history["train_loss"] else None,
        "steps": trainer.step,
        "tokens_seen": tokens,
        "num_parameters": model.num_parameters(),
        "num_parameters_non_embedding": n_body,
        "flops_per_token": trainer.flops_per_token,
        "train_flops": 6 * n_body * tokens,
    }


# -- the whole stage --------------------------------------------------------------------------------
def run(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    fresh: bool = False,
    on_event: EventFn | None = None,
    should_stop: Callable[[int], bool] | None = None,
    data_path: str | os.PathLike | None = None,
    threads: int | None = None,
    command: str | None = None,
    parallel: Parallel | None = None,
) -> RunResult:
    """Run (or resume) the pretraining stage into ``out_dir``; see the module docstring.

    The config is validated first (:func:`validate`): a bad field → ValueError naming it, and
    nothing is created or written. ``fresh`` deletes an existing run there first.
    ``on_event(kind, info)`` receives "stage" (name, status), "plan", "replan", "resume",
    "train" (step, max_steps, params), "log" (the Trainer's event), "sample", "checkpoint"
    events. ``should_stop(step)`` is consulted after every step. A run directory holding a
    different configuration → ValueError (use ``fresh`` or another directory).
    ``parallel`` (:class:`Parallel`): a distributed run's rank, strategy and checkpointing
    policy (default: the current process group, if any, with DDP).
    """
    if parallel is None:
        parallel = Parallel(current_context())
    if parallel.active and not parallel.context.is_main:
        return _follow(cfg, Path(out_dir), parallel, should_stop)
    stage = Stage(out_dir, "pretrain", on_event)  # the session's clock starts here
    cfg = validate(cfg)
    rd = stage.rd
    prior = stage.open(cfg.to_dict(), fresh=fresh, comparable=comparable)
    if prior is not None:  # keep the planned max_steps / warmup_steps of the first session
        planned = {k: prior["train"][k] for k in ("max_steps", "warmup_steps")}
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **planned))
    try:
        with stage.part("tokenizer") as info:
            tok, train_ids, val_ids, data_info = prepare_data(cfg, rd, data_path)
            info.update(data_info)
        with stage.part("pretraining") as info:
            run_ = train(stage, cfg, tok, train_ids, val_ids, resumed=prior is not None,
                         should_stop=should_stop, info=info, parallel=parallel)  # fmt: skip
        cfg, trainer = run_.cfg, run_.trainer
        if trainer.stop_reason != "complete":
            return RunResult("interrupted", rd.root, trainer.step, trainer.max_steps, {},
                             run_.history, run_.resumed_from)  # fmt: skip
        with stage.part("evaluation") as info:
            val_bytes = data_info.get("val_bytes") or stage.rd.load_stages().get(
                "tokenizer", {}
            ).get("val_bytes")
            metrics = evaluate(run_, val_ids, val_bytes)
            info.update(val_loss=metrics["val_loss"], val_bpb=metrics["val_bpb"])
        with stage.part("sampling"):
            if not any(r.get("tag") == "final" for r in rd.read_jsonl(rd.samples)):
                take_sample = _sampler(cfg, rd, run_.model, tok, stage.emit)
                for i in range(3):
                    take_sample(trainer.step, seed=10_000 + i, tag="final")
        with stage.part("report", path=str(rd.report)):
            model = run_.model
            model.save_pretrained(rd.root)
            write_plots(rd, run_.history)
        stage.end_session()
        stage.write_manifest(
            RUN_FORMAT, name=model_name(cfg.run.family, model.num_parameters()),
            family=cfg.run.family, status="complete", num_parameters=model.num_parameters(),
            run_config=cfg.to_dict(), model_config=model.config.to_dict(),
            data=_data_names(cfg),
            metrics=metrics, environment=environment(trainer.device, threads, command),
        )  # fmt: skip
        write_report(rd.root)
        return RunResult("complete", rd.root, trainer.step, trainer.max_steps, metrics,
                         run_.history, run_.resumed_from)  # fmt: skip
    finally:
        stage.end_session()


def _data_names(cfg: RunConfig) -> list[str]:
    if cfg.data.shards:
        return [cfg.data.shards]
    return cfg.data.corpus if not cfg.data.text_file else [cfg.data.text_file]


def _follow(
    cfg: RunConfig, out_dir: Path, parallel: Parallel, should_stop: Callable[[int], bool] | None
) -> RunResult:
    """A rank > 0 of a distributed run: train rank 0's configuration on this rank's slice,
    write nothing (rank 0 owns the run directory; the DCP checkpoint is written by all)."""
    rd = RunDir(out_dir)
    shared = _share(parallel, None)  # sent once rank 0 has prepared the data and the plan
    cfg = RunConfig.from_dict(shared["cfg"])
    model = build_model(cfg, shared["vocab_size"], cfg.train.seed)
    model.activation_checkpointing = parallel.activation_checkpointing
    if cfg.run.compile:
        compile_model(model)
    trainer = build_trainer(cfg, model).distribute(parallel.strategy, parallel.context)
    history = empty_training_history()
    if shared["resume"]:
        history = trainer.load_checkpoint(rd.checkpoint)["history"]
        trainer.max_steps = cfg.train.max_steps
    if cfg.data.shards:  # rank 0 prepared and checked them before sharing the config
        train_src, val_src = open_streams(cfg, rd)
    else:
        train_src, val_src = load_token_ids(rd.train_ids), load_token_ids(rd.val_ids)
    history = trainer.train(
        train_src, val_src, history=history,
        checkpoint_path=rd.checkpoint, checkpoint_every=cfg.run.checkpoint_every or cfg.train.eval_every,
        checkpoint_extra={"run_format": RUN_FORMAT}, control=LoopControl(),
    )  # fmt: skip
    trainer.gather_model()
    status = "complete" if trainer.stop_reason == "complete" else "interrupted"
    return RunResult(status, rd.root, trainer.step, trainer.max_steps, {}, history, None)


run_pretraining = run
