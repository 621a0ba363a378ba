"""The SFT stage behind ``g2c sft``: a base model → a chat model, in one run directory.

``run(config, out)`` follows the stage skeleton (:mod:`g2c.runs.stage`):

1. **validate** before any write: the config sections validate themselves
   (:class:`SFTRunConfig`: ``model`` / ``data`` / ``train`` / ``eval``; a bad field →
   ValueError naming it, e.g. ``train.batch_size``); then the base model is loaded
   (:func:`load_base`: a run directory of ``g2c speedrun`` / ``g2c train`` / ``g2c sft``, a
   LoRA run, or ``"smollm2"``), the chat template is chosen and checked against the tokenizer
   (its markers must be special tokens), ``data.max_seq_len`` against the model's, and LoRA
   adapters are injected (an unknown target layer is named). Nothing is written when any of
   this raises.
2. **open** the run directory (same config → resume; another → ValueError, use ``fresh``).
3. **parts**, each timed in ``stages.json``:

   - ``data`` — the mixture (``data.mixture``: source name → count) rendered with the
     template into ``SFTExample``s (loss mask on assistant tokens; ``data.mask=False`` trains
     on every token, for the mask ablation), a held-out set per source (held-out task-family
     problems, a slice of each corpus — GSM8K's test split) never trained on;
   - ``baseline`` — the base model's held-out task accuracy and answers (``eval.baseline``;
     skipped on a resume, its result lives in ``baseline.json``);
   - ``training`` — :class:`g2c.sft.SFTTrainer` (the shared loop: checkpoints, exact resume,
     stop through a :class:`~g2c.training.LoopControl`), log events in ``metrics.jsonl``;
   - ``evaluation`` — held-out assistant-token loss (``sft_eval_loss``), exact-match task
     accuracy per family (greedy decoding with the chat template, :func:`task_accuracy`),
     a handful of sample answers (``samples.jsonl``);
   - ``save`` — full weights in the run-directory format ``g2c.transformer.load_model`` reads
     (``model.safetensors`` + ``config.json`` + ``tokenizer.json``), so ``g2c chat`` and
     ``g2c sample`` work on the result; with LoRA the adapter files (``adapter.safetensors``
     + ``adapter_manifest.json`` naming the base), plus merged weights when
     ``model.save_merged``.

4. **manifest** with ``parent`` = the base model, the chat template (for a base with its own
   Jinja template), metrics; 5. **report** ``report.md`` (stage table, accuracy before/after,
   sample answers).

The pieces the DPO stage shares (:mod:`g2c.runs.dpo`) live here too: the config sections
(:class:`ModelSettings`, :class:`TrainSettings`, :class:`EvalSettings`), :func:`load_base`,
:func:`task_accuracy`, :func:`save_model`. Library code: events go to ``on_event``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import typing
import warnings
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import RUN_FORMAT, append_jsonl, atomic_write_json, atomic_write_text
from g2c.data import load_gsm8k, load_hh_rlhf_chosen, load_self_instruct
from g2c.lora import (
    count_parameters,
    inject_lora,
    load_lora,
    lora_layers,
    mark_only_lora_trainable,
    read_lora_manifest,
    save_lora,
    unload_lora,
)
from g2c.runs.registry import resolve_model
from g2c.runs.rundir import RunDir
from g2c.runs.stage import EventFn, Stage, check, environment, stage_table
from g2c.sft import (
    FAMILIES,
    BaseChatTemplate,
    ChatTemplate,
    JinjaChatTemplate,
    SFTExample,
    SFTTrainer,
    TaskItem,
    generate_tasks,
    render_with_mask,
    score_answer,
    sft_eval_loss,
)
from g2c.sft import SFTConfig as SFTTrainerConfig
from g2c.sft.chat import ChatSession
from g2c.synth import read_pairs_jsonl
from g2c.training import LoopConfig, LoopControl, empty_training_history
from g2c.transformer import load_model

LORA_RUN_FORMAT = "g2c.lora_run"  # a run directory holding adapters only (no full weights)
BASE_NAMES = ("smollm2",)
TEMPLATES = ("auto", "g2c", "model")
SFT_SOURCES = ("tasks", "self_instruct", "gsm8k", "hh_rlhf", "jsonl")
BASELINE_FILE = "baseline.json"


# -- config sections ----------------------------------------------------------------------------
class Section:
    """A config section: a dataclass validated in ``__post_init__``; ``to_dict`` /
    ``from_dict`` (unknown keys → ValueError naming ``<section>.<key>``)."""

    section = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the section's fields."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; an unknown key → ValueError naming it (fields validate themselves)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.section} setting {unknown[0]!r}; known: {sorted(known)}"
            )
        return cls(**d)

    def _fail(self, name: str, message: str) -> None:
        raise ValueError(f"{self.section}.{name}: {message}")

    def _int(self, name: str, low: int) -> None:
        v = getattr(self, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            self._fail(name, f"must be an integer >= {low}, got {v!r}")

    def _number(self, name: str, low: float, *, strict: bool = False) -> None:
        v = getattr(self, name)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        if not ok or v < low or (strict and v == low):
            self._fail(name, f"must be a number {'>' if strict else '>='} {low}, got {v!r}")

    def _choice(self, name: str, choices: tuple) -> None:
        if getattr(self, name) not in choices:
            self._fail(name, f"must be one of {list(choices)}, got {getattr(self, name)!r}")

    def _bool(self, name: str) -> None:
        if not isinstance(getattr(self, name), bool):
            self._fail(name, f"must be true or false, got {getattr(self, name)!r}")


def _mixture(section: Section, name: str, known: tuple[str, ...]) -> dict[str, int]:
    """Validate a ``{source: count}`` mixture (a "name=count,..." string is parsed)."""
    value = getattr(section, name)
    if isinstance(value, str):
        value = parse_mixture(value)
    if not isinstance(value, dict) or not value:
        section._fail(name, f"must map source names to counts, e.g. {{{known[0]!r}: 100}}")
    for key, n in value.items():
        if key not in known:
            section._fail(name, f"unknown source {key!r}; known sources: {list(known)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            section._fail(name, f"count of {key!r} must be an integer >= 0, got {n!r}")
    if sum(value.values()) < 1:
        section._fail(name, "selects no example: give at least one source a count >= 1")
    return dict(value)


def parse_mixture(text: str) -> dict[str, int]:
    """``"tasks=600,self_instruct=50"`` → ``{"tasks": 600, "self_instruct": 50}``; a bad item →
    ValueError naming it."""
    out: dict[str, int] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, sep, count = item.partition("=")
        try:
            out[name.strip()] = int(count)
        except ValueError:
            raise ValueError(f"mixture item {item!r} must be name=count") from None
        if not sep:
            raise ValueError(f"mixture item {item!r} must be name=count")
    return out


def _families(section: Section, name: str = "families") -> list[str]:
    value = getattr(section, name)
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    bad = [f for f in value if f not in FAMILIES]
    if not value or bad:
        section._fail(name, f"must be a non-empty subset of {list(FAMILIES)}, got {value!r}")
    return list(value)


@dataclasses.dataclass
class ModelSettings(Section):
    """The base model and how it is adapted.

    ``base``: a run directory (``g2c speedrun`` / ``g2c train`` / ``g2c sft``, or a LoRA run)
    or a model name (``"smollm2"``). ``template``: "auto" (the base's own Jinja template when
    it has one, else g2c's ``ChatTemplate``), "g2c" or "model". ``lora_rank``: 0 = full
    fine-tuning, else LoRA adapters of that rank on the layers ``lora_targets`` names
    (``lora_alpha`` default = rank). ``save_merged``: with LoRA, also save the merged full
    weights (so ``load_model`` reads the result; adapters are always saved).
    """

    section = "model"
    base: str = "smollm2"
    template: str = "auto"
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: list[str] = dataclasses.field(default_factory=lambda: ["q_proj", "v_proj"])
    save_merged: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.base, str) or not self.base.strip():
            self._fail("base", "must name a run directory or 'smollm2'")
        self._choice("template", TEMPLATES)
        self._int("lora_rank", 0)
        if self.lora_alpha is not None:
            self._number("lora_alpha", 0.0, strict=True)
        if isinstance(self.lora_targets, str):
            self.lora_targets = [t for t in self.lora_targets.split(",") if t]
        if self.lora_rank and not self.lora_targets:
            self._fail("lora_targets", "must name at least one layer (e.g. q_proj,v_proj)")
        self._bool("save_merged")


@dataclasses.dataclass
class TrainSettings(Section):
    """The training loop's settings (``g2c.training.LoopConfig`` fields, AdamW):
    ``batch_size`` (examples per micro-batch), ``grad_accum_steps``, ``max_steps``,
    ``max_lr`` / ``min_lr`` / ``warmup_steps`` (warmup + cosine), ``weight_decay``,
    ``grad_clip`` (None = off), ``eval_every`` / ``eval_iters`` (held-out loss during
    training), ``log_every``, ``checkpoint_every`` (None = ``eval_every``), ``seed``,
    ``device``, ``activation_checkpointing`` (recompute each block and the loss head's logits
    in backward instead of keeping them — less memory, about one more forward per step; None
    = on for models of at least ``CHECKPOINTING_MIN_PARAMS`` parameters, as TRL's default
    ``gradient_checkpointing=True``, off for small ones where it only costs time)."""

    section = "train"
    batch_size: int = 8
    grad_accum_steps: int = 1
    max_steps: int = 200
    max_lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 50
    eval_iters: int = 4
    log_every: int = 5
    checkpoint_every: int | None = None
    seed: int = 1337
    device: str = "cpu"
    activation_checkpointing: bool | None = None

    def __post_init__(self) -> None:
        if self.activation_checkpointing is not None:
            self._bool("activation_checkpointing")
        try:
            self.loop_config()
        except ValueError as exc:
            raise ValueError(f"train.{exc}") from None
        if self.checkpoint_every is not None:
            self._int("checkpoint_every", 1)
        self._int("seed", 0)
        if self.warmup_steps > self.max_steps:
            self._fail("warmup_steps", f"{self.warmup_steps} exceeds train.max_steps "
                       f"{self.max_steps}; lower --warmup-steps")  # fmt: skip

    def loop_config(self) -> LoopConfig:
        """These settings as the loop's ``LoopConfig`` (validates them)."""
        fields = {f.name for f in dataclasses.fields(LoopConfig)}
        own = {k: v for k, v in dataclasses.asdict(self).items() if k in fields}
        return LoopConfig(optimizer="adamw", **own)


#: Models at least this big train with activation checkpointing unless told otherwise.
CHECKPOINTING_MIN_PARAMS = 50_000_000


def set_activation_checkpointing(model: Any, setting: bool | None) -> bool:
    """Switch ``model.activation_checkpointing`` per ``train.activation_checkpointing`` (None =
    by size, :data:`CHECKPOINTING_MIN_PARAMS`); returns the value set (False for a model
    without the switch)."""
    if not hasattr(model, "activation_checkpointing"):
        return False
    if setting is None:
        setting = sum(p.numel() for p in model.parameters()) >= CHECKPOINTING_MIN_PARAMS
    model.activation_checkpointing = bool(setting)
    return bool(setting)


@dataclasses.dataclass
class EvalSettings(Section):
    """Evaluation: ``heldout_per_family`` held-out task problems per family scored by exact
    match (greedy decoding, at most ``max_new_tokens`` tokens per answer), ``samples`` answers
    shown in the report, ``baseline`` (also score the model before training)."""

    section = "eval"
    heldout_per_family: int = 10
    max_new_tokens: int = 24
    samples: int = 4
    baseline: bool = True

    def __post_init__(self) -> None:
        self._int("heldout_per_family", 0)
        self._int("max_new_tokens", 1)
        self._int("samples", 0)
        self._bool("baseline")


@dataclasses.dataclass
class SFTDataSettings(Section):
    """The SFT data: ``mixture`` (source → number of training conversations; sources
    ``tasks`` — the generated task family (``g2c.sft.tasks``), ``self_instruct`` (seed +
    user-oriented), ``gsm8k`` (train), ``hh_rlhf`` (chosen side of harmless-base)),
    ``families`` (task families drawn and scored), ``heldout_fraction`` (of each corpus
    source, held out for the loss), ``max_seq_len`` (tokens per conversation; longer ones are
    truncated and counted), ``packing`` (several conversations per row), ``mask`` (True: loss
    on assistant tokens only; False: on every token — the mask ablation), ``jsonl_path``
    (the file of the ``jsonl`` source: one ``{"messages": [...]}`` or ``{"user",
    "assistant"}`` object per line, e.g. ``g2c synth`` output)."""

    section = "data"
    mixture: dict[str, int] = dataclasses.field(default_factory=lambda: {"tasks": 600})
    families: list[str] = dataclasses.field(default_factory=lambda: list(FAMILIES))
    heldout_fraction: float = 0.1
    max_seq_len: int = 128
    packing: bool = False
    mask: bool = True
    jsonl_path: str | None = None

    def __post_init__(self) -> None:
        self.mixture = _mixture(self, "mixture", SFT_SOURCES)
        if self.jsonl_path is not None and not Path(self.jsonl_path).is_file():
            self._fail("jsonl_path", f"no such file: {self.jsonl_path}")
        if self.mixture.get("jsonl") and not self.jsonl_path:
            self._fail("jsonl_path", "give the chat JSONL file for the 'jsonl' source "
                       "(e.g. the output of g2c synth --out FILE.jsonl)")  # fmt: skip
        self.families = _families(self)
        self._number("heldout_fraction", 0.0)
        if self.heldout_fraction >= 1:
            self._fail("heldout_fraction", f"must be below 1, got {self.heldout_fraction}")
        self._int("max_seq_len", 8)
        self._bool("packing")
        self._bool("mask")


class StageConfig:
    """A stage config made of :class:`Section` dataclasses (``SECTIONS``: name → class)."""

    SECTIONS: dict[str, type] = {}

    def to_dict(self) -> dict[str, dict]:
        """``{section: {field: value}}``, plain JSON."""
        return {name: getattr(self, name).to_dict() for name in self.SECTIONS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; an unknown section → ValueError naming it."""
        unknown = sorted(set(d) - set(cls.SECTIONS))
        if unknown:
            raise ValueError(
                f"unknown config section {unknown[0]!r}; sections are {list(cls.SECTIONS)}"
            )
        return cls(**{k: cls.SECTIONS[k].from_dict(v) for k, v in d.items()})

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    def override(self, overrides: dict[str, dict]) -> Any:
        """A new config with ``{section: {field: value}}`` applied (each validated)."""
        d = self.to_dict()
        for section, values in overrides.items():
            if section not in self.SECTIONS:
                raise ValueError(
                    f"unknown config section {section!r}; sections are {list(self.SECTIONS)}"
                )
            if not isinstance(values, dict):
                raise ValueError(f"config section {section!r} must be a table of settings")
            d[section] = {**d[section], **values}
        return type(self).from_dict(d)

    @classmethod
    def fields(cls) -> dict[str, dict[str, tuple[Any, Any]]]:
        """``{section: {field: (type hint, default)}}`` (for flags)."""
        out = {}
        for name, klass in cls.SECTIONS.items():
            hints = typing.get_type_hints(klass)
            out[name] = {
                f.name: (hints[f.name], f.default if f.default is not dataclasses.MISSING
                         else f.default_factory())  # type: ignore[misc]
                for f in dataclasses.fields(klass)
            }  # fmt: skip
        return out


@dataclasses.dataclass
class SFTRunConfig(StageConfig):
    """The SFT stage's configuration: ``model`` (:class:`ModelSettings`), ``data``
    (:class:`SFTDataSettings`), ``train`` (:class:`TrainSettings`), ``eval``
    (:class:`EvalSettings`). Each section validates itself; JSON/TOML round-trip."""

    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    data: SFTDataSettings = dataclasses.field(default_factory=SFTDataSettings)
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)
    eval: EvalSettings = dataclasses.field(default_factory=EvalSettings)

    SECTIONS: typing.ClassVar[dict[str, type]] = {
        "model": ModelSettings, "data": SFTDataSettings, "train": TrainSettings,
        "eval": EvalSettings,
    }  # fmt: skip


def _sft_preset(model: dict, data: dict, train: dict, ev: dict | None = None) -> SFTRunConfig:
    return SFTRunConfig().override({"model": model, "data": data, "train": train,
                                    "eval": ev or {}})  # fmt: skip


PRESETS: dict[str, SFTRunConfig] = {
    # g2c's own small model (a speedrun run directory): the task family and a little
    # self-instruct, a few hundred steps — minutes on a CPU.
    "sft-speedrun": _sft_preset(
        {"base": "speedrun", "template": "g2c"},
        {"mixture": {"tasks": 1200, "self_instruct": 60}, "max_seq_len": 128},
        {
            "batch_size": 16,
            "max_steps": 300,
            "max_lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 20,
            "eval_every": 100,
            "log_every": 10,
        },
        {"heldout_per_family": 10, "max_new_tokens": 24},
    ),  # fmt: skip
    # SmolLM2-135M-Instruct with LoRA r=16 on narrow tasks with exact answers (arithmetic,
    # upper-casing, counting, repeating): 0 % -> 72 % held-out in 120 steps (~5 min on a CPU).
    # Spelling backwards (`--families reverse`) stays at 0 % in 60 steps: BPE hides letters.
    "sft-smollm2-lora": _sft_preset(
        {
            "base": "smollm2",
            "lora_rank": 16,
            "lora_alpha": 32.0,
            "lora_targets": ["q_proj", "k_proj", "v_proj", "out_proj"],
        },
        {
            "mixture": {"tasks": 800},
            "families": ["arithmetic", "upper", "count", "repeat"],
            "max_seq_len": 96,
        },
        {
            "batch_size": 4,
            "max_steps": 120,
            "max_lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 5,
            "eval_every": 60,
            "eval_iters": 2,
            "log_every": 5,
        },
        {"heldout_per_family": 15, "max_new_tokens": 16},
    ),  # fmt: skip
    # Seconds, for tests: a tiny g2c run, a few steps.
    "sft-smoke": _sft_preset(
        {"base": "speedrun-smoke", "template": "g2c"},
        {"mixture": {"tasks": 48}, "families": ["arithmetic", "identity"], "max_seq_len": 64},
        {
            "batch_size": 4,
            "max_steps": 6,
            "max_lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 1,
            "eval_every": 3,
            "eval_iters": 1,
            "log_every": 1,
        },
        {"heldout_per_family": 2, "max_new_tokens": 8, "samples": 2},
    ),  # fmt: skip
}


def get_preset(name: str) -> SFTRunConfig:
    """A copy of preset ``name``; unknown → ValueError listing the presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return SFTRunConfig.from_dict(PRESETS[name].to_dict())


# -- the base model -----------------------------------------------------------------------------
@dataclasses.dataclass
class Base:
    """A loaded base model: ``model`` (TransformerLM, train mode), ``tokenizer``, ``template``
    (the chat template in use), ``parent`` (what the manifest names as the parent: the run
    directory's absolute path or the model name), ``name``, ``chat_template`` (the Jinja
    source and its bos / eos tokens when the template is the base's own, else None),
    ``pad_id``, ``lora`` (the adapter manifest when the base was a LoRA run, merged in)."""

    model: Any
    tokenizer: Any
    template: BaseChatTemplate
    parent: str
    name: str
    chat_template: dict | None
    pad_id: int
    lora: dict | None = None


def model_chat_template(loaded: Any) -> dict | None:
    """The Jinja template a loaded model comes with: its GGUF's, or the one a g2c SFT run of
    such a model stored in its manifest."""
    info = getattr(loaded, "chat_info", None)
    source = getattr(loaded, "chat_template", None) or getattr(info, "template", None)
    if source:
        return {"source": source, "bos_token": getattr(info, "bos_token", None),
                "eos_token": getattr(info, "eos_token", None)}  # fmt: skip
    stored = (loaded.manifest or {}).get("chat_template")
    return dict(stored) if isinstance(stored, dict) and stored.get("source") else None


def choose_template(choice: str, own: dict | None, tokenizer: Any) -> BaseChatTemplate:
    """The chat template for ``model.template`` = ``choice`` ("auto" | "g2c" | "model"), checked
    against ``tokenizer`` (its markers must be special tokens) → ValueError naming
    ``model.template``."""
    if choice == "model" and own is None:
        raise ValueError("model.template: 'model' but the base has no chat template of its own; "
                         "use 'g2c' or 'auto'")  # fmt: skip
    if own is not None and choice in ("auto", "model"):
        specials = [t for t in tokenizer.special_to_id if t in own["source"]]
        template: BaseChatTemplate = JinjaChatTemplate(
            own["source"], special_tokens=specials, bos_token=own.get("bos_token"),
            eos_token=own.get("eos_token"),
        )  # fmt: skip
    else:
        template = ChatTemplate()
    try:
        template.check_tokenizer(tokenizer, template.required_tokens)
    except ValueError as exc:
        raise ValueError(f"model.template: {exc}") from None
    return template


def _pad_id(tokenizer: Any, own: dict | None) -> int:
    special = tokenizer.special_to_id
    for name in ("<|pad|>", (own or {}).get("eos_token"), "<|endoftext|>"):
        if name and name in special:
            return int(special[name])
    return 0


def load_any(spec: str, *, device: str = "cpu") -> tuple[Path, Any, dict | None]:
    """``(path, LoadedModel, adapter manifest or None)`` for ``spec``: a run directory, a run
    name under ``$G2C_HOME``, a name such as ``"smollm2"``, or a LoRA run directory (its parent
    is loaded through ``g2c.transformer.load_model`` and the adapters merged in — the loader
    itself sits below ``g2c.lora`` and cannot). Used by the stages and by ``g2c chat``.
    Nothing there → FileNotFoundError naming ``model.base``."""
    path = Path(spec).expanduser()
    if not path.exists() and spec.lower() not in BASE_NAMES:
        try:
            path = resolve_model(spec)  # a run name under $G2C_HOME (g2c speedrun's default)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"model.base: {spec} is no run directory, run name or one of "
                f"{list(BASE_NAMES)} ({exc})"
            ) from None
    manifest_path = path / "manifest.json"
    if path.is_dir() and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") == LORA_RUN_FORMAT:
            lora = read_lora_manifest(path)
            loaded = load_model(manifest["parent"], device=device)
            load_lora(loaded.model, path)
            unload_lora(loaded.model, merge=True)
            stored = manifest.get("chat_template") or {}
            loaded = dataclasses.replace(
                loaded,
                manifest={**loaded.manifest, **manifest},
                chat_template=loaded.chat_template or stored.get("source"),
            )
            return path, loaded, lora
        return path, load_model(path, device=device), None
    return path, load_model(spec if not path.exists() else path, device=device), None


def load_base(spec: str, template: str = "auto", *, device: str = "cpu") -> Base:
    """Load the base model ``spec`` (a run directory, a LoRA run directory — its parent is
    loaded and the adapters merged in — or a name such as ``"smollm2"``) with its tokenizer
    and chat template (:func:`choose_template`). Nothing is written.

    Raises FileNotFoundError (nothing there, naming ``model.base``), ValueError (not a model,
    no tokenizer, a template whose markers the tokenizer lacks)."""
    path, loaded, lora = load_any(spec, device=device)
    tok = loaded.tokenizer
    if tok is None or not isinstance(getattr(tok, "special_to_id", None), dict):
        raise ValueError(f"model.base: {spec} comes without a tokenizer with special tokens; "
                         "fine-tuning needs one (a g2c BPE run, or smollm2)")  # fmt: skip
    own = model_chat_template(loaded)
    chosen = choose_template(template, own, tok)
    parent = str(path.resolve()) if path.exists() else spec
    name = str((loaded.manifest or {}).get("name") or path.stem or spec)
    model = loaded.model.train()
    return Base(model, tok, chosen, parent, name,
                own if isinstance(chosen, JinjaChatTemplate) else None, _pad_id(tok, own),
                lora)  # fmt: skip


def add_lora(base: Base, settings: ModelSettings, seed: int) -> list[str]:
    """Inject LoRA adapters (``settings.lora_rank`` > 0) and freeze everything else; returns
    the adapted layer names (none for full fine-tuning). A target matching no linear layer →
    ValueError naming ``model.lora_targets``."""
    if not settings.lora_rank:
        return []
    gen = torch.Generator().manual_seed(seed)
    try:
        names = inject_lora(base.model, settings.lora_targets, settings.lora_rank,
                            alpha=settings.lora_alpha, generator=gen)  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"model.lora_targets: {exc}") from None
    mark_only_lora_trainable(base.model)
    return names


# -- evaluation helpers -------------------------------------------------------------------------
def answer(session: ChatSession, messages: list[dict]) -> str:
    """The model's greedy reply to ``messages`` (the prompt turns), via the chat template."""
    session.clear()
    for m in messages[:-1]:
        session.history.append(dict(m))
    return session.reply(messages[-1]["content"]).strip()


def chat_session(base: Base, max_new_tokens: int) -> ChatSession:
    """A greedy (temperature 0) :class:`ChatSession` over the base's model and template."""
    return ChatSession(base.model, base.tokenizer, base.template, temperature=0.0, top_p=None,
                       max_new_tokens=max_new_tokens, seed=0)  # fmt: skip


def task_accuracy(base: Base, items: list[TaskItem], max_new_tokens: int) -> dict[str, Any]:
    """Exact-match accuracy of greedy answers on task ``items`` → ``{"accuracy", "per_family":
    {family: accuracy}, "answers": [{"family", "prompt", "reference", "answer", "correct"}]}``.
    A prompt too long for the model's context counts as wrong (its answer says so). The
    model's train/eval mode is restored."""
    was_training = base.model.training
    session = chat_session(base, max_new_tokens)
    answers: list[dict] = []
    per: dict[str, list[bool]] = {}
    try:
        for item in items:
            try:
                reply = answer(session, item.messages[:-1])
            except ValueError:  # the prompt does not fit the model's context: scored wrong
                reply = "(prompt longer than the model's context)"
            ok = score_answer(item, reply)
            per.setdefault(item.family, []).append(ok)
            answers.append({"family": item.family, "prompt": item.messages[0]["content"],
                            "reference": item.answer, "answer": reply, "correct": ok})  # fmt: skip
    finally:
        base.model.train(was_training)
    total = [ok for oks in per.values() for ok in oks]
    return {
        "accuracy": sum(total) / len(total) if total else None,
        "per_family": {f: sum(v) / len(v) for f, v in per.items()},
        "answers": answers,
    }


# -- the stage result, loop control, saving -----------------------------------------------------
@dataclasses.dataclass
class StageResult:
    """What a post-training stage's ``run`` returns: ``status`` ("complete" | "interrupted"),
    ``run_dir``, ``step``, ``max_steps``, ``metrics`` (empty when interrupted), ``history``
    (the loop's), ``resumed_from`` (the checkpoint step, or None)."""

    status: str
    run_dir: Path
    step: int
    max_steps: int
    metrics: dict[str, Any]
    history: dict[str, list]
    resumed_from: int | None = None


def train_with_checkpoints(
    stage: Stage,
    trainer: Any,
    train_kw: dict,
    *,
    settings: TrainSettings,
    control: LoopControl | None,
    info: dict,
) -> tuple[dict, int | None]:
    """The training part shared by SFT and DPO: resume from ``checkpoint.pt`` when present
    (later ``metrics.jsonl`` lines dropped), train with log events into ``metrics.jsonl`` and
    checkpoints, stop via ``control``. Returns (history, resumed_from)."""
    rd, emit = stage.rd, stage.emit
    history, resumed_from = empty_training_history(), None
    if rd.checkpoint.is_file():
        history = trainer.load_checkpoint(rd.checkpoint)["history"]
        resumed_from = trainer.step
        rd.truncate_jsonl(rd.metrics, trainer.step)
        emit("resume", {"step": trainer.step, "max_steps": trainer.max_steps})
    else:
        rd.metrics.unlink(missing_ok=True)

    def on_log(event: dict) -> None:
        append_jsonl(rd.metrics, event)
        emit("log", event)

    trainable, total = count_parameters(trainer.model)
    emit("train", {"step": trainer.step, "max_steps": trainer.max_steps, "params": total,
                   "trainable": trainable, "name": stage.name})  # fmt: skip
    history = trainer.train(
        on_log=on_log, history=history, checkpoint_path=rd.checkpoint,
        checkpoint_every=settings.checkpoint_every or settings.eval_every,
        checkpoint_extra={"stage": stage.name}, control=control, **train_kw,
    )  # fmt: skip
    info.update(step=trainer.step, trainable_parameters=trainable, parameters=total,
                train_loss=history["train_loss"][-1] if history["train_loss"] else None)  # fmt: skip
    if trainer.stop_reason != "complete":
        emit("checkpoint", {"step": trainer.step, "path": str(rd.checkpoint)})
    return history, resumed_from


def save_model(rd: RunDir, base: Base, settings: ModelSettings) -> str:
    """Write the trained model: full weights (``model.safetensors``, ``config.json``,
    ``tokenizer.json``) — the run-directory format ``load_model`` reads; with LoRA the
    adapters (``adapter.safetensors`` + ``adapter_manifest.json`` naming the base) and, with
    ``save_merged``, the merged weights too. Returns the manifest format to use."""
    model = base.model
    if lora_layers(model):
        save_lora(model, rd.root, base_model={"name": settings.base, "path": base.parent})
        if not settings.save_merged:
            return LORA_RUN_FORMAT
        unload_lora(model, merge=True)
    model.save_pretrained(rd.root)
    base.tokenizer.save(rd.tokenizer)
    return RUN_FORMAT


def write_samples(rd: RunDir, tag: str, step: int, answers: list[dict], n: int) -> list[dict]:
    """Append the first ``n`` answers (one per family first) to ``samples.jsonl``."""
    seen, picked = set(), []
    for a in answers:  # one per family, then the rest
        if a["family"] not in seen:
            seen.add(a["family"])
            picked.append(a)
    picked += [a for a in answers if a not in picked]
    for a in picked[:n]:
        append_jsonl(rd.samples, {"step": step, "tag": tag, **a})
    return picked[:n]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ⏎ ")[:120]


def accuracy_lines(before: dict | None, after: dict, label: str) -> list[str]:
    """Markdown table: accuracy per family before (the base) and after this stage."""
    fams = list(after.get("per_family", {}))
    lines = ["| family | base | " + label + " |", "|---|---:|---:|"]
    for f in [*fams, "all"]:
        a = after["accuracy"] if f == "all" else after["per_family"][f]
        b = None
        if before:
            b = before["accuracy"] if f == "all" else before["per_family"].get(f)
        fmt = lambda v: "" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        lines.append(f"| {f} | {fmt(b)} | {fmt(a)} |")
    return lines


def sample_lines(before: dict | None, after: dict, label: str, n: int) -> list[str]:
    """Markdown table of the first ``n`` held-out prompts: reference, base and stage answers."""
    prior = {a["prompt"]: a["answer"] for a in (before or {}).get("answers", [])}
    lines = [f"| prompt | reference | base | {label} |", "|---|---|---|---|"]
    seen, rows = set(), []
    for a in after.get("answers", []):
        if a["family"] not in seen:
            seen.add(a["family"])
            rows.append(a)
    for a in rows[:n]:
        lines.append(f"| {_cell(a['prompt'])} | {_cell(a['reference'])} | "
                     f"{_cell(prior.get(a['prompt'], ''))} | {_cell(a['answer'])} |")  # fmt: skip
    return lines


# -- 1. validation ------------------------------------------------------------------------------
def validate(config: SFTRunConfig) -> tuple[SFTRunConfig, Base, list[str]]:
    """Re-validate ``config`` (every section), load the base model, check the template, the
    sequence length and the LoRA targets. Returns (config, base, adapted layer names).
    Nothing is written; a bad field → ValueError naming it."""
    if not isinstance(config, SFTRunConfig):
        raise TypeError(f"config must be an SFTRunConfig, got {type(config).__name__}")
    cfg = SFTRunConfig.from_dict(config.to_dict())
    base = load_base(cfg.model.base, cfg.model.template, device="cpu")
    model_len = base.model.max_seq_len
    check(cfg.data.max_seq_len <= model_len, "data.max_seq_len",
          f"{cfg.data.max_seq_len} exceeds the base model's max_seq_len {model_len}")  # fmt: skip
    adapted = add_lora(base, cfg.model, cfg.train.seed)
    return cfg, base, adapted


# -- 3. the data part ---------------------------------------------------------------------------
def _corpus(source: str, d: SFTDataSettings) -> tuple[list, list | None]:
    """(pool, held-out pool or None) of conversations for a corpus source."""
    if source == "jsonl":
        return read_pairs_jsonl(d.jsonl_path), None
    if source == "self_instruct":
        return load_self_instruct("seed") + load_self_instruct("user_oriented"), None
    if source == "gsm8k":
        return load_gsm8k("train"), load_gsm8k("test")
    return load_hh_rlhf_chosen(), None


def build_conversations(cfg: SFTRunConfig) -> tuple[list, list, list[TaskItem], dict]:
    """(train conversations, held-out conversations, held-out task items, counts) for the
    mixture; deterministic in ``train.seed``."""
    d, seed = cfg.data, cfg.train.seed
    train, held, counts = [], [], {}
    for source, n in d.mixture.items():
        if n == 0:
            continue
        if source == "tasks":
            items = generate_tasks(n, seed=seed, families=d.families)
            train += [it.messages for it in items]
            counts["tasks"] = n
            continue
        pool, test = _corpus(source, d)
        pool = list(pool)
        random.Random(f"{seed}|{source}").shuffle(pool)
        k = 0 if d.heldout_fraction == 0 else max(1, round(n * d.heldout_fraction))
        if test is not None:
            test = list(test)
            random.Random(f"{seed}|{source}|test").shuffle(test)
            held += test[:k]
        else:
            held += pool[-k:] if k else []
            pool = pool[: len(pool) - k]
        train += pool[:n]
        counts[source] = min(n, len(pool))
    items = []
    if cfg.eval.heldout_per_family:
        items = generate_tasks(cfg.eval.heldout_per_family * len(d.families), seed=seed,
                               families=d.families, split="heldout")  # fmt: skip
        held += [it.messages for it in items]
    return train, held, items, counts


def prepare_data(cfg: SFTRunConfig, base: Base) -> tuple[list, list, list[TaskItem], dict]:
    """The data part: conversations → SFTExamples (train with the configured mask, held-out
    with the assistant mask). Returns (train, held-out, held-out items, info)."""
    convs, held_convs, items, counts = build_conversations(cfg)
    render = lambda c: render_with_mask(c, base.tokenizer, template=base.template)  # noqa: E731
    train = [render(c) for c in convs]
    if not cfg.data.mask:
        train = [SFTExample(ex.ids, [1] * len(ex.ids)) for ex in train]
    held = [render(c) for c in held_convs]
    L = cfg.data.max_seq_len
    info = {
        "sources": counts,
        "train_examples": len(train),
        "heldout_examples": len(held),
        "heldout_task_items": len(items),
        "train_tokens": sum(len(ex.ids) for ex in train),
        "target_tokens": sum(sum(ex.mask) for ex in train),
        "truncated": sum(len(ex.ids) > L for ex in train),
        "mask": "assistant" if cfg.data.mask else "all tokens",
    }
    if not held:
        raise ValueError("eval.heldout_per_family: 0 and no corpus held out: nothing to evaluate "
                         "on; raise eval.heldout_per_family or data.heldout_fraction")  # fmt: skip
    return train, held, items, info


# -- the whole stage ----------------------------------------------------------------------------
def run(
    config: SFTRunConfig,
    out: str | Path,
    *,
    fresh: bool = False,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> StageResult:
    """Run (or resume) the SFT stage into ``out``; see the module docstring.

    ``on_event(kind, info)`` receives "stage", "train", "log", "resume", "checkpoint" and
    "sample" events. ``control`` (a :class:`~g2c.training.LoopControl`) is consulted after
    every step: ``should_stop`` → a checkpoint is written and the result is "interrupted";
    running again with the same config resumes exactly. A directory holding another config →
    ValueError (pass ``fresh``).
    """
    stage = Stage(out, "sft", on_event)
    cfg, base, adapted = validate(config)
    rd = stage.rd
    prior = stage.open(cfg.to_dict(), fresh=fresh)
    if prior is None:
        stage.save_config(cfg.to_dict())
    t, d = cfg.train, cfg.data
    try:
        with stage.part("data") as info:
            train, held, items, data_info = prepare_data(cfg, base)
            info.update(data_info)
        baseline = rd.read_json(rd.root / BASELINE_FILE)
        if baseline is None and cfg.eval.baseline and items and not rd.checkpoint.is_file():
            with stage.part("baseline") as info:
                baseline = task_accuracy(base, items, cfg.eval.max_new_tokens)
                atomic_write_json(rd.root / BASELINE_FILE, baseline)
                write_samples(rd, "baseline", 0, baseline["answers"], cfg.eval.samples)
                info.update(accuracy=baseline["accuracy"])
        with stage.part("training") as info:
            trainer_cfg = SFTTrainerConfig(
                **{k: v for k, v in dataclasses.asdict(t.loop_config()).items()},
                max_seq_len=d.max_seq_len, pad_id=base.pad_id, packing=d.packing,
            )  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # truncation is counted in the data part
                trainer = SFTTrainer.from_config(base.model, trainer_cfg, examples=train,
                                                 eval_examples=held)  # fmt: skip
            base.model.train()
            info["activation_checkpointing"] = set_activation_checkpointing(
                base.model, t.activation_checkpointing
            )
            history, resumed_from = train_with_checkpoints(
                stage, trainer, {}, settings=t, control=control, info=info
            )
        if trainer.stop_reason != "complete":
            return StageResult("interrupted", rd.root, trainer.step, trainer.max_steps, {},
                               history, resumed_from)  # fmt: skip
        with stage.part("evaluation") as info:
            loss = sft_eval_loss(base.model, held, max_seq_len=d.max_seq_len, pad_id=base.pad_id,
                                 batch_size=t.batch_size)  # fmt: skip
            after = task_accuracy(base, items, cfg.eval.max_new_tokens) if items else {
                "accuracy": None, "per_family": {}, "answers": []}  # fmt: skip
            for a in write_samples(rd, "final", trainer.step, after["answers"], cfg.eval.samples):
                stage.emit("sample", {"step": trainer.step, "tag": "final", **a})
            atomic_write_json(rd.root / "evaluation.json", after)
            metrics = {
                "heldout_loss": loss["loss"], "heldout_target_tokens": loss["target_tokens"],
                "task_accuracy": after["accuracy"], "task_accuracy_per_family": after["per_family"],
                "baseline_task_accuracy": (baseline or {}).get("accuracy"),
                "baseline_task_accuracy_per_family": (baseline or {}).get("per_family"),
                "train_loss": history["train_loss"][-1] if history["train_loss"] else None,
                "steps": trainer.step,
            }  # fmt: skip
            info.update(val_loss=loss["loss"], accuracy=after["accuracy"])
        with stage.part("save") as info:
            trainable, total = count_parameters(base.model)
            fmt = save_model(rd, base, cfg.model)
            info.update(format=fmt)
        stage.end_session()
        stage.write_manifest(
            fmt, parent=base.parent, name=f"{base.name}-sft", family="SFT", status="complete",
            num_parameters=total, trainable_parameters=trainable,
            run_config=cfg.to_dict(), model_config=base.model.config.to_dict(),
            data=data_info["sources"], chat_template=base.chat_template,
            template=type(base.template).__name__, lora_layers=adapted, base_lora=base.lora,
            metrics=metrics, environment=environment(trainer.device, None, command),
        )  # fmt: skip
        write_report(rd, cfg, base, baseline, after, metrics)
        return StageResult("complete", rd.root, trainer.step, trainer.max_steps, metrics,
                           history, resumed_from)  # fmt: skip
    finally:
        stage.end_session()


COLUMNS = [("examples", "train_examples", ""), ("val loss", "val_loss", ".3f"),
           ("accuracy", "accuracy", ".2f"), ("step", "step", "")]  # fmt: skip


def write_report(rd: RunDir, cfg: SFTRunConfig, base: Base, baseline: dict | None, after: dict,
                 metrics: dict) -> Path:  # fmt: skip
    """``report.md``: stage table, held-out loss, task accuracy before/after, sample answers."""
    lines = [f"# SFT of {base.name}", "",
             f"Base: `{base.parent}` · template: {type(base.template).__name__} · "
             f"mask: {'assistant tokens' if cfg.data.mask else 'every token'} · LoRA rank "
             f"{cfg.model.lora_rank or 'none (full fine-tuning)'} · data: "
             + ", ".join(f"{k} {v}" for k, v in cfg.data.mixture.items()), "",
             "## Stages", "",
             *stage_table(rd.load_stages(), COLUMNS,
                          ("data", "baseline", "training", "evaluation", "save")),
             "", "## Held-out evaluation", "",
             f"Held-out assistant-token loss: {metrics['heldout_loss']:.4f} "
             f"({metrics['heldout_target_tokens']:.0f} target tokens).", ""]  # fmt: skip
    if after.get("answers"):
        lines += ["Exact-match task accuracy (greedy):", "",
                  *accuracy_lines(baseline, after, "SFT"), "", "## Sample answers", "",
                  *sample_lines(baseline, after, "SFT", max(cfg.eval.samples, 1))]  # fmt: skip
    path = rd.report
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


__all__ = [
    "CHECKPOINTING_MIN_PARAMS",
    "LORA_RUN_FORMAT",
    "PRESETS",
    "Base",
    "set_activation_checkpointing",
    "EvalSettings",
    "ModelSettings",
    "SFTDataSettings",
    "SFTRunConfig",
    "StageConfig",
    "StageResult",
    "TrainSettings",
    "choose_template",
    "get_preset",
    "load_base",
    "parse_mixture",
    "run",
    "task_accuracy",
]
