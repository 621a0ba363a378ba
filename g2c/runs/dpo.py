"""The DPO stage behind ``g2c dpo``: an SFT model → a preference-tuned model.

``run(config, out)`` follows the stage skeleton (:mod:`g2c.runs.stage`), with the pieces of
:mod:`g2c.runs.sft`:

1. **validate** before any write: the sections of :class:`DPORunConfig` (``model``,
   ``data``, ``dpo`` — ``beta`` > 0, ``loss_type``, ``reference`` —, ``train``, ``eval``)
   validate themselves, naming the field; the base (an SFT run directory, a LoRA SFT run, or
   ``"smollm2"``) is loaded with its chat template, LoRA adapters are injected, and the
   reference mode is checked (``disable_lora`` needs ``model.lora_rank`` > 0).
2. **open** the run directory (resume with the same config).
3. **parts**:

   - ``data`` — preference pairs from the mixture (``data.mixture``: ``onpolicy`` — for
     task-family items, chosen = the correct answer, rejected = the base model's own wrong
     greedy answer, or a wrong sample when the greedy one is right (up to
     ``data.onpolicy_samples`` tries at ``data.onpolicy_temperature``); ``hh_rlhf``
     (harmless-base) and ``truthfulqa`` (best answer vs each incorrect one)), split into
     train / held-out by prompt, tokenized with the template; with ``dpo.reference =
     "precomputed"`` the reference log-probabilities of every pair. Saved in the run
     directory (``pairs.json``, ``ref_logprobs.pt``): a resume reuses them.
   - ``baseline`` — the base model's held-out task accuracy (before DPO).
   - ``training`` — :class:`g2c.dpo.DPOTrainer` on the shared loop (checkpoints, exact
     resume, stop via a ``LoopControl``); the reference is a frozen copy of the base
     (``copy``), the policy with its adapters switched off (``disable_lora``) or the
     precomputed table (``precomputed``: no second model in memory).
   - ``evaluation`` — held-out preference accuracy, reward margin, chosen / rejected rewards
     and the DPO loss on held-out pairs; exact-match task accuracy per family.
   - ``save`` — as SFT: full weights in the run-directory format (or LoRA adapters).

4. **manifest** with ``parent`` = the base; 5. **report** ``report.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import typing
import warnings
from pathlib import Path
from typing import Any

from g2c.artifacts import atomic_write_json, atomic_write_text, load_safetensors, save_safetensors
from g2c.data.preferences import load_hh_rlhf, load_truthfulqa_pairs, split_pairs_by_prompt
from g2c.dpo import (
    DISABLE_LORA,
    LOSS_TYPES,
    DPOTrainer,
    encode_preference_pairs,
    precompute_ref_logprobs,
)
from g2c.lora import count_parameters
from g2c.runs.rundir import RunDir
from g2c.runs.sft import (
    BASELINE_FILE,
    Base,
    EvalSettings,
    ModelSettings,
    Section,
    StageConfig,
    StageResult,
    TrainSettings,
    _families,
    _mixture,
    accuracy_lines,
    add_lora,
    answer,
    chat_session,
    load_base,
    sample_lines,
    save_model,
    set_activation_checkpointing,
    task_accuracy,
    train_with_checkpoints,
    write_samples,
)
from g2c.runs.stage import EventFn, Stage, check, environment, stage_table
from g2c.sft import FAMILIES, TaskItem, generate_tasks, score_answer
from g2c.sft.chat import ChatSession
from g2c.training import LoopControl

DPO_SOURCES = ("onpolicy", "hh_rlhf", "truthfulqa")
REFERENCES = ("auto", "copy", "precomputed", DISABLE_LORA)
PAIRS_FILE = "pairs.json"
REF_FILE = "ref_logprobs.safetensors"


@dataclasses.dataclass
class DPODataSettings(Section):
    """The preference pairs: ``mixture`` (source → number of pairs; ``onpolicy`` counts task
    items tried — items whose every try is right give no pair), ``families`` (task families
    for on-policy pairs and accuracy), ``heldout_fraction`` (prompts held out, with all their
    pairs), ``max_seq_len`` (prompt + response tokens per side; longer pairs are truncated and
    counted), ``onpolicy_samples`` / ``onpolicy_temperature`` (sampled tries when the greedy
    answer is right)."""

    section = "data"
    mixture: dict[str, int] = dataclasses.field(default_factory=lambda: {"onpolicy": 200})
    families: list[str] = dataclasses.field(default_factory=lambda: list(FAMILIES))
    heldout_fraction: float = 0.1
    max_seq_len: int = 128
    onpolicy_samples: int = 2
    onpolicy_temperature: float = 1.0

    def __post_init__(self) -> None:
        self.mixture = _mixture(self, "mixture", DPO_SOURCES)
        self.families = _families(self)
        self._number("heldout_fraction", 0.0, strict=True)
        if self.heldout_fraction >= 1:
            self._fail("heldout_fraction", f"must be below 1, got {self.heldout_fraction}")
        self._int("max_seq_len", 8)
        self._int("onpolicy_samples", 0)
        self._number("onpolicy_temperature", 0.0, strict=True)


@dataclasses.dataclass
class DPOSettings(Section):
    """The DPO objective: ``beta`` (> 0; the strength of the pull towards the reference),
    ``loss_type`` ("sigmoid" DPO, "ipo", "hinge"), ``label_smoothing`` (sigmoid only),
    ``reference``: "copy" (a frozen copy of the base), "precomputed" (reference
    log-probabilities computed once in the data part: no second model while training),
    "disable_lora" (the LoRA policy with adapters off), "auto" (disable_lora with LoRA, else
    copy)."""

    section = "dpo"
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    reference: str = "auto"

    def __post_init__(self) -> None:
        self._number("beta", 0.0, strict=True)
        self._choice("loss_type", LOSS_TYPES)
        self._number("label_smoothing", 0.0)
        if self.label_smoothing >= 0.5:
            self._fail("label_smoothing", f"must be below 0.5, got {self.label_smoothing}")
        self._choice("reference", REFERENCES)


@dataclasses.dataclass
class DPORunConfig(StageConfig):
    """The DPO stage's configuration: ``model`` (:class:`~g2c.runs.sft.ModelSettings`),
    ``data`` (:class:`DPODataSettings`), ``dpo`` (:class:`DPOSettings`), ``train``
    (:class:`~g2c.runs.sft.TrainSettings`), ``eval`` (:class:`~g2c.runs.sft.EvalSettings`)."""

    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    data: DPODataSettings = dataclasses.field(default_factory=DPODataSettings)
    dpo: DPOSettings = dataclasses.field(default_factory=DPOSettings)
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)
    eval: EvalSettings = dataclasses.field(default_factory=EvalSettings)

    SECTIONS: typing.ClassVar[dict[str, type]] = {
        "model": ModelSettings, "data": DPODataSettings, "dpo": DPOSettings,
        "train": TrainSettings, "eval": EvalSettings,
    }  # fmt: skip


def _dpo_preset(model: dict, data: dict, dpo: dict, train: dict, ev: dict) -> DPORunConfig:
    return DPORunConfig().override({"model": model, "data": data, "dpo": dpo, "train": train,
                                    "eval": ev})  # fmt: skip


PRESETS: dict[str, DPORunConfig] = {
    # On the sft-speedrun result: on-policy pairs of the task family.
    "dpo-speedrun": _dpo_preset(
        {"base": "sft-speedrun", "template": "g2c"},
        {"mixture": {"onpolicy": 300}, "max_seq_len": 128},
        {"beta": 0.5, "reference": "copy"},  # β 0.1 × 150 steps drifted: task accuracy 32 → 0-17 %
        {
            "batch_size": 8,
            "max_steps": 50,
            "max_lr": 1e-4,
            "min_lr": 1e-5,
            "warmup_steps": 10,
            "eval_every": 50,
            "eval_iters": 4,
            "log_every": 5,
        },
        {"heldout_per_family": 10, "max_new_tokens": 24},
    ),  # fmt: skip
    # SmolLM2 with LoRA on hh-rlhf harmless pairs, the base-with-adapters-off as reference.
    "dpo-smollm2-lora": _dpo_preset(
        {
            "base": "smollm2",
            "lora_rank": 16,
            "lora_alpha": 32.0,
            "lora_targets": ["q_proj", "k_proj", "v_proj", "out_proj"],
        },
        {"mixture": {"hh_rlhf": 200}, "max_seq_len": 192},
        {"beta": 0.1, "reference": DISABLE_LORA},
        {
            "batch_size": 2,
            "max_steps": 40,
            "max_lr": 5e-4,
            "min_lr": 5e-5,
            "warmup_steps": 4,
            "eval_every": 20,
            "eval_iters": 2,
            "log_every": 2,
        },
        {"heldout_per_family": 0, "baseline": False},
    ),  # fmt: skip
    # SmolLM2 with LoRA on TruthfulQA-derived pairs (best answer vs each incorrect answer);
    # held-out pairs come from questions never trained on (split by prompt).
    "dpo-smollm2-truthfulqa": _dpo_preset(
        {
            "base": "smollm2",
            "lora_rank": 16,
            "lora_alpha": 32.0,
            "lora_targets": ["q_proj", "k_proj", "v_proj", "out_proj"],
        },
        {"mixture": {"truthfulqa": 600}, "max_seq_len": 128},
        {"beta": 0.1, "reference": DISABLE_LORA},
        {
            "batch_size": 4,
            "max_steps": 60,
            "max_lr": 5e-4,
            "min_lr": 5e-5,
            "warmup_steps": 5,
            "eval_every": 30,
            "eval_iters": 4,
            "log_every": 5,
        },
        {"heldout_per_family": 0, "baseline": False},
    ),  # fmt: skip
    # Seconds, for tests: on the sft-smoke output.
    "dpo-smoke": _dpo_preset(
        {"base": "sft-smoke", "template": "g2c"},
        {
            "mixture": {"onpolicy": 24},
            "families": ["arithmetic", "identity"],
            "max_seq_len": 64,
            "heldout_fraction": 0.25,
            "onpolicy_samples": 1,
        },
        {"beta": 0.1, "reference": "copy"},
        {
            "batch_size": 4,
            "max_steps": 4,
            "max_lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 1,
            "eval_every": 2,
            "eval_iters": 1,
            "log_every": 1,
        },
        {"heldout_per_family": 2, "max_new_tokens": 8, "samples": 2},
    ),  # fmt: skip
}


def get_preset(name: str) -> DPORunConfig:
    """A copy of preset ``name``; unknown → ValueError listing the presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return DPORunConfig.from_dict(PRESETS[name].to_dict())


# -- 1. validation ------------------------------------------------------------------------------
def validate(config: DPORunConfig) -> tuple[DPORunConfig, Base, str, Any]:
    """Re-validate ``config``, load the base, choose the reference mode. Returns (config,
    base, reference mode, reference model or None). Nothing is written."""
    if not isinstance(config, DPORunConfig):
        raise TypeError(f"config must be a DPORunConfig, got {type(config).__name__}")
    cfg = DPORunConfig.from_dict(config.to_dict())
    lora = cfg.model.lora_rank > 0
    ref = cfg.dpo.reference
    check(ref != DISABLE_LORA or lora, "dpo.reference",
          "'disable_lora' needs a LoRA policy: set model.lora_rank > 0, or use copy / "
          "precomputed")  # fmt: skip
    if ref == "auto":
        ref = DISABLE_LORA if lora else "copy"
    base = load_base(cfg.model.base, cfg.model.template, device="cpu")
    model_len = base.model.max_seq_len
    check(cfg.data.max_seq_len <= model_len, "data.max_seq_len",
          f"{cfg.data.max_seq_len} exceeds the base model's max_seq_len {model_len}")  # fmt: skip
    ref_model = copy.deepcopy(base.model).eval() if ref == "copy" else None
    add_lora(base, cfg.model, cfg.train.seed)
    return cfg, base, ref, ref_model


# -- 3. the data part ---------------------------------------------------------------------------
def onpolicy_pairs(base: Base, items: list[TaskItem], *, samples: int, temperature: float,
                   max_new_tokens: int, seed: int) -> tuple[list[dict], dict]:  # fmt: skip
    """Pairs for task items: chosen = the correct answer, rejected = the model's own wrong
    greedy answer, else its first wrong sample among ``samples`` tries. Returns (pairs,
    counts {"greedy_wrong", "sampled_wrong", "all_right", "too_long"}: prompts that do not
    fit the model's context give no pair)."""
    was_training = base.model.training
    greedy = chat_session(base, max_new_tokens)
    sampler = ChatSession(base.model, base.tokenizer, base.template, temperature=temperature,
                          top_p=None, max_new_tokens=max_new_tokens, seed=seed)  # fmt: skip
    pairs, counts = [], {"greedy_wrong": 0, "sampled_wrong": 0, "all_right": 0, "too_long": 0}
    try:
        for item in items:
            prompt = item.messages[:-1]
            try:
                reply = answer(greedy, prompt)
            except ValueError:  # the prompt does not fit the model's context: no pair
                counts["too_long"] += 1
                continue
            if score_answer(item, reply):
                reply = None
                for _ in range(samples):
                    tried = answer(sampler, prompt)
                    if not score_answer(item, tried):
                        reply = tried
                        break
                counts["sampled_wrong" if reply is not None else "all_right"] += 1
            else:
                counts["greedy_wrong"] += 1
            if reply is not None:
                pairs.append({"prompt": prompt, "chosen": item.answer, "rejected": reply,
                              "source": "onpolicy", "family": item.family})  # fmt: skip
    finally:
        base.model.train(was_training)
    return pairs, counts


def build_pairs(cfg: DPORunConfig, base: Base) -> tuple[list[dict], list[dict], dict]:
    """(train pairs, held-out pairs, info) as text pairs; deterministic in ``train.seed``."""
    d, seed = cfg.data, cfg.train.seed
    pairs: list[dict] = []
    info: dict[str, Any] = {}
    for source, n in d.mixture.items():
        if n == 0:
            continue
        if source == "onpolicy":
            items = generate_tasks(n, seed=seed, families=d.families)
            got, counts = onpolicy_pairs(
                base, items, samples=d.onpolicy_samples, temperature=d.onpolicy_temperature,
                max_new_tokens=cfg.eval.max_new_tokens, seed=seed,
            )  # fmt: skip
            info["onpolicy"] = counts
        else:
            pool = load_hh_rlhf() if source == "hh_rlhf" else load_truthfulqa_pairs()
            pool = list(pool)
            random.Random(f"{seed}|{source}").shuffle(pool)
            got = [{**p, "source": source} for p in pool[:n]]
        pairs += got
        info[f"{source}_pairs"] = len(got)
    check(len({str(p["prompt"]) for p in pairs}) >= 2, "data.mixture",
          f"gave {len(pairs)} usable pair(s) — fewer than 2 prompts to split into train and "
          "held-out; raise the counts (on-policy items the model already answers right give "
          "no pair)")  # fmt: skip
    train, held = split_pairs_by_prompt(pairs, d.heldout_fraction, seed=seed)
    return train, held, info


def prepare_data(cfg: DPORunConfig, base: Base, rd: RunDir, reference: str) -> tuple:
    """The data part: pairs (reused from ``pairs.json`` on a resume) → PreferenceExamples,
    and with the "precomputed" reference their reference log-probabilities (reused from
    ``ref_logprobs.safetensors``). Returns (train, held-out, ref tables or None, info)."""
    stored = rd.read_json(rd.root / PAIRS_FILE)
    if stored is None:
        train_pairs, held_pairs, info = build_pairs(cfg, base)
        atomic_write_json(rd.root / PAIRS_FILE,
                          {"train": train_pairs, "heldout": held_pairs, "info": info})  # fmt: skip
    else:
        train_pairs, held_pairs, info = stored["train"], stored["heldout"], stored["info"]
    enc = lambda p: encode_preference_pairs(p, base.tokenizer, template=base.template)  # noqa: E731
    train, held = enc(train_pairs), enc(held_pairs)
    refs = None
    if reference == "precomputed":
        path = rd.root / REF_FILE
        if path.is_file():
            refs = load_safetensors(path)
        else:
            kw = {"max_seq_len": cfg.data.max_seq_len, "pad_id": base.pad_id,
                  "batch_size": cfg.train.batch_size}  # fmt: skip
            refs = {"train": precompute_ref_logprobs(base.model, train, **kw),
                    "heldout": precompute_ref_logprobs(base.model, held, **kw)}  # fmt: skip
            save_safetensors(path, refs)
            base.model.train()
    L = cfg.data.max_seq_len
    info = {**info, "train_pairs": len(train), "heldout_pairs": len(held),
            "truncated": sum(len(e.prompt_ids) + max(len(e.chosen_ids), len(e.rejected_ids)) > L
                             for e in train)}  # fmt: skip
    return train, held, refs, info


# -- the whole stage ----------------------------------------------------------------------------
def run(
    config: DPORunConfig,
    out: str | Path,
    *,
    fresh: bool = False,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> StageResult:
    """Run (or resume) the DPO stage into ``out``; see the module docstring. Events, control
    and resume as :func:`g2c.runs.sft.run`."""
    stage = Stage(out, "dpo", on_event)
    cfg, base, reference, ref_model = validate(config)
    rd = stage.rd
    prior = stage.open(cfg.to_dict(), fresh=fresh)
    if prior is None:
        stage.save_config(cfg.to_dict())
    t, d, o = cfg.train, cfg.data, cfg.dpo
    try:
        with stage.part("data") as info:
            train, held, refs, data_info = prepare_data(cfg, base, rd, reference)
            info.update({k: v for k, v in data_info.items() if not isinstance(v, dict)})
        items = []
        if cfg.eval.heldout_per_family:
            items = generate_tasks(cfg.eval.heldout_per_family * len(d.families), seed=t.seed,
                                   families=d.families, split="heldout")  # fmt: skip
        baseline = rd.read_json(rd.root / BASELINE_FILE)
        if baseline is None and cfg.eval.baseline and items and not rd.checkpoint.is_file():
            with stage.part("baseline") as info:
                baseline = task_accuracy(base, items, cfg.eval.max_new_tokens)
                atomic_write_json(rd.root / BASELINE_FILE, baseline)
                write_samples(rd, "baseline", 0, baseline["answers"], cfg.eval.samples)
                info.update(accuracy=baseline["accuracy"])
        with stage.part("training") as info:
            loop = dataclasses.asdict(t.loop_config())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # truncation is counted in the data part
                trainer = DPOTrainer(
                    base.model, ref_model=None if reference == "precomputed" else (
                        ref_model if reference == "copy" else DISABLE_LORA),
                    examples=train, max_seq_len=d.max_seq_len, pad_id=base.pad_id,
                    beta=o.beta, loss_type=o.loss_type, label_smoothing=o.label_smoothing,
                    ref_logprobs=refs["train"] if refs else None, **loop,
                )  # fmt: skip
            base.model.train()
            info["activation_checkpointing"] = set_activation_checkpointing(
                base.model, t.activation_checkpointing
            )
            train_kw = {"val_examples": held,
                        "val_ref_logprobs": refs["heldout"] if refs else None}  # fmt: skip
            history, resumed_from = train_with_checkpoints(
                stage, trainer, train_kw, settings=t, control=control, info=info
            )
        if trainer.stop_reason != "complete":
            return StageResult("interrupted", rd.root, trainer.step, trainer.max_steps, {},
                               history, resumed_from)  # fmt: skip
        with stage.part("evaluation") as info:
            pref = trainer.evaluate(held, ref_logprobs=refs["heldout"] if refs else None)
            after = task_accuracy(base, items, cfg.eval.max_new_tokens) if items else {
                "accuracy": None, "per_family": {}, "answers": []}  # fmt: skip
            for a in write_samples(rd, "final", trainer.step, after["answers"], cfg.eval.samples):
                stage.emit("sample", {"step": trainer.step, "tag": "final", **a})
            atomic_write_json(rd.root / "evaluation.json", {"preference": pref, **after})
            metrics = {
                "heldout_preference_accuracy": pref["accuracy"],
                "heldout_reward_margin": pref["reward_margin"],
                "heldout_chosen_reward": pref["chosen_reward"],
                "heldout_rejected_reward": pref["rejected_reward"],
                "heldout_dpo_loss": pref["loss"], "heldout_pairs": pref["num_pairs"],
                "task_accuracy": after["accuracy"], "task_accuracy_per_family": after["per_family"],
                "baseline_task_accuracy": (baseline or {}).get("accuracy"),
                "baseline_task_accuracy_per_family": (baseline or {}).get("per_family"),
                "train_loss": history["train_loss"][-1] if history["train_loss"] else None,
                "steps": trainer.step, "reference": reference, "beta": o.beta,
            }  # fmt: skip
            info.update(val_loss=pref["loss"], pref_accuracy=pref["accuracy"],
                        accuracy=after["accuracy"])  # fmt: skip
        with stage.part("save") as info:
            trainable, total = count_parameters(base.model)
            fmt = save_model(rd, base, cfg.model)
            info.update(format=fmt)
        stage.end_session()
        stage.write_manifest(
            fmt, parent=base.parent, name=f"{base.name}-dpo", family="DPO", status="complete",
            num_parameters=total, trainable_parameters=trainable,
            run_config=cfg.to_dict(), model_config=base.model.config.to_dict(),
            data=data_info, chat_template=base.chat_template,
            template=type(base.template).__name__, base_lora=base.lora,
            metrics=metrics, environment=environment(trainer.device, None, command),
        )  # fmt: skip
        write_report(rd, cfg, base, baseline, after, metrics)
        return StageResult("complete", rd.root, trainer.step, trainer.max_steps, metrics,
                           history, resumed_from)  # fmt: skip
    finally:
        stage.end_session()


COLUMNS = [("pairs", "train_pairs", ""), ("val loss", "val_loss", ".3f"),
           ("pref. acc.", "pref_accuracy", ".2f"), ("task acc.", "accuracy", ".2f"),
           ("step", "step", "")]  # fmt: skip


def write_report(rd: RunDir, cfg: DPORunConfig, base: Base, baseline: dict | None, after: dict,
                 metrics: dict) -> Path:  # fmt: skip
    """``report.md``: stage table, held-out preference metrics, task accuracy, answers."""
    m = metrics
    lines = [f"# DPO of {base.name}", "",
             f"Base: `{base.parent}` · β = {cfg.dpo.beta} · loss {cfg.dpo.loss_type} · "
             f"reference: {m['reference']} · data: "
             + ", ".join(f"{k} {v}" for k, v in cfg.data.mixture.items()), "",
             "## Stages", "",
             *stage_table(rd.load_stages(), COLUMNS,
                          ("data", "baseline", "training", "evaluation", "save")),
             "", "## Held-out preference pairs", "",
             "| pairs | accuracy | reward margin | chosen reward | rejected reward | DPO loss |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| {m['heldout_pairs']} | {m['heldout_preference_accuracy']:.3f} | "
             f"{m['heldout_reward_margin']:.4f} | {m['heldout_chosen_reward']:.4f} | "
             f"{m['heldout_rejected_reward']:.4f} | {m['heldout_dpo_loss']:.4f} |", "",
             "Rewards are β·(log π(y|x) − log π_ref(y|x)); accuracy is the share of held-out "
             "pairs whose chosen reward exceeds the rejected one; the margin is their mean "
             "difference.", ""]  # fmt: skip
    if after.get("answers"):
        lines += ["Exact-match task accuracy (greedy), base = the model before DPO:", "",
                  *accuracy_lines(baseline, after, "DPO"), "", "## Sample answers", "",
                  *sample_lines(baseline, after, "DPO", max(cfg.eval.samples, 1))]  # fmt: skip
    atomic_write_text(rd.report, "\n".join(lines) + "\n")
    return rd.report


__all__ = [
    "PRESETS",
    "DPODataSettings",
    "DPORunConfig",
    "DPOSettings",
    "get_preset",
    "onpolicy_pairs",
    "run",
]
