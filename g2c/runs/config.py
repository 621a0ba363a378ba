"""Run configuration: one dataclass per stage, a preset table, config files and flag overrides.

A run (``g2c train``, ``g2c speedrun``) is described by a :class:`RunConfig` made of

- ``data``: :class:`DataConfig` — which corpus, which tokenizer (byte-level BPE or characters),
  the vocabulary size, the validation fraction;
- ``model``: :class:`g2c.transformer.TransformerConfig` fields except ``vocab_size`` (set from
  the tokenizer when the run starts);
- ``train``: :class:`g2c.pretraining.TrainConfig`;
- run-level fields: family name, sampling cadence, the time budget.

``PRESETS`` is a plain name → RunConfig table (nanochat: "no giant configuration objects,
model factories, or if-then-else monsters"). A config file (TOML or JSON) holds the same
sections (``[data]``, ``[model]``, ``[train]``, ``[run]``) and overrides a preset; command-line
flags override both (:func:`apply_overrides`). Unknown keys → ValueError naming the key and
the known ones.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any

from g2c.pretraining import TrainConfig
from g2c.transformer import TransformerConfig

SECTIONS = ("data", "model", "train", "run")
TOKENIZERS = ("bpe", "char", "gpt2")
GPT2_VOCAB_SIZE = 50_257  # GPT-2's byte-level BPE: 256 bytes + 50,000 merges + <|endoftext|>
# Fields added after run directories existed: left out of to_dict while at their default, so
# every earlier preset, config file and run_config.json reads (and compares) as before.
_OMITTED_DEFAULTS = {"data": {"shards": None}, "run": {"compile": False}}


@dataclasses.dataclass
class DataConfig:
    """Which text, which tokenizer.

    ``corpus``: registered text dataset names, concatenated (``g2c.data.load_corpus``).
    ``tokenizer``: "bpe" (byte-level BPE trained on the training split with
    ``BPETokenizer.train_fast``, course special tokens), "char" (``CharTokenizer``) or "gpt2"
    (GPT-2's own 50,257-id byte-level BPE from the packaged files, dataset ``gpt2-tokenizer``).
    ``vocab_size``: BPE vocabulary size (ignored for "char" and "gpt2"). ``val_fraction``: the
    tail of the text held out for validation. ``max_chars``: use only the first N characters
    (smoke runs). ``text_file``: train on this UTF-8 file instead of ``corpus``.

    ``shards``: train on a prepared corpus instead of ``corpus``/``text_file`` — the directory
    ``g2c data prepare`` wrote (or its ``manifest.json``), read through memory maps
    (``g2c.pretraining.ShardedTokenStream``), or ``"python-stdlib"`` /
    ``"python-stdlib/<package>"``: the running Python's standard library, prepared by the same
    pipeline into the run directory (``g2c.data.python_code``). The tokenizer is the prepared
    directory's ``tokenizer.json`` (``"gpt2"``: GPT-2's, checked against the manifest); the
    validation stream is the manifest's ``val`` split, or, when it has none, the last
    ``val_fraction`` of the training stream (see ``g2c.runs.pretrain.prepare_data``).
    """

    corpus: list[str] = dataclasses.field(default_factory=lambda: ["tinyshakespeare"])
    tokenizer: str = "char"
    vocab_size: int = 4096
    val_fraction: float = 0.1
    max_chars: int | None = None
    text_file: str | None = None
    shards: str | None = None

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(
                f"data.tokenizer must be 'bpe', 'char' or 'gpt2', got {self.tokenizer!r}"
            )
        if self.shards is not None and (not isinstance(self.shards, str) or not self.shards):
            raise ValueError(
                f"data.shards must be a prepared directory (g2c data prepare --out) or "
                f"'python-stdlib', got {self.shards!r}"
            )
        if isinstance(self.corpus, str):
            self.corpus = [c for c in self.corpus.split(",") if c]
        if not self.corpus and not self.text_file and not self.shards:
            raise ValueError("data.corpus must name at least one text dataset (or set text_file)")
        if self.vocab_size < 257:
            raise ValueError(f"data.vocab_size must be > 256 for BPE, got {self.vocab_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.max_chars is not None and self.max_chars < 100:
            raise ValueError(f"data.max_chars must be >= 100 or None, got {self.max_chars}")


@dataclasses.dataclass
class RunSettings:
    """Run-level settings.

    ``family``: model family for names (``ShakespeareLM`` → ``ShakespeareLM-0.8M``).
    ``sample_every``: steps between samples written to ``samples.jsonl`` (0 = only at the end).
    ``sample_tokens``/``sample_temperature``/``sample_top_k``: those samples' settings.
    ``prompt``: the text samples start from. ``budget_minutes``: when set, the number of
    training steps is chosen from a measured step time so the whole run (tokenizer, training,
    evaluation, samples, report) fits the budget; ``train.max_steps`` is then ignored.
    ``checkpoint_every``: steps between checkpoints (default: ``train.eval_every``).
    ``compile``: ``torch.compile`` the model's forward before training (``g2c train
    --compile``; worth it on GPUs, minutes of compilation on a CPU).
    """

    family: str = "ShakespeareLM"
    sample_every: int = 500
    sample_tokens: int = 200
    sample_temperature: float = 0.8
    sample_top_k: int | None = 40
    prompt: str = "\n"
    budget_minutes: float | None = None
    checkpoint_every: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.compile, bool):
            raise ValueError(f"run.compile must be true or false, got {self.compile!r}")
        if self.sample_every < 0:
            raise ValueError(f"run.sample_every must be >= 0, got {self.sample_every}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise ValueError(f"run.budget_minutes must be positive, got {self.budget_minutes}")
        if not self.prompt:
            raise ValueError("run.prompt must not be empty (use '\\n')")


@dataclasses.dataclass
class RunConfig:
    """Everything a pretraining run needs; ``to_dict``/``from_dict`` round-trip through JSON.

    ``model`` is a dict of :class:`TransformerConfig` fields without ``vocab_size``
    (:meth:`model_config` fills it in).
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    run: RunSettings = dataclasses.field(default_factory=RunSettings)

    def model_config(self, vocab_size: int) -> TransformerConfig:
        """The :class:`TransformerConfig` for a tokenizer of ``vocab_size`` ids."""
        return TransformerConfig(vocab_size=vocab_size, **self.model)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict with the four sections (``data.shards`` and ``run.compile`` only
        when set, so the dicts of configs without them are unchanged)."""
        d = {
            "data": dataclasses.asdict(self.data),
            "model": dict(self.model),
            "train": self.train.to_dict(),
            "run": dataclasses.asdict(self.run),
        }
        for section, fields in _OMITTED_DEFAULTS.items():
            for name, default in fields.items():
                if d[section][name] == default:
                    del d[section][name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; missing sections take defaults; unknown keys → ValueError."""
        return apply_overrides(cls(), d)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)


_MODEL_FIELDS = {f.name: f for f in dataclasses.fields(TransformerConfig) if f.name != "vocab_size"}


def section_fields(section: str) -> dict[str, tuple[Any, Any]]:
    """``{field name: (type hint, default)}`` of one section (for flags and validation)."""
    if section == "model":
        hints = typing.get_type_hints(TransformerConfig)
        return {
            n: (hints[n], f.default if f.default is not dataclasses.MISSING else None)
            for n, f in _MODEL_FIELDS.items()
        }
    klass = {"data": DataConfig, "train": TrainConfig, "run": RunSettings}.get(section)
    if klass is None:
        raise ValueError(f"unknown config section {section!r}; sections are {SECTIONS}")
    hints = typing.get_type_hints(klass)
    out = {}
    for f in dataclasses.fields(klass):
        default = f.default
        if default is dataclasses.MISSING:
            default = f.default_factory()  # type: ignore[misc]
        out[f.name] = (hints[f.name], default)
    return out


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """A new RunConfig: ``cfg`` with ``{section: {field: value}}`` applied (validated).

    Unknown sections or fields → ValueError naming them and listing the known ones. When the
    overrides shorten ``train.max_steps`` below the base's ``warmup_steps`` without setting
    ``warmup_steps`` too (a preset's warmup with a user's ``--max-steps 12``), the warmup
    becomes ``max_steps // 10``.
    """
    d = cfg.to_dict()
    for section, values in overrides.items():
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r}; sections are {list(SECTIONS)}")
        if not isinstance(values, dict):
            raise ValueError(f"config section {section!r} must be a table/object of fields")
        known = section_fields(section)
        for key, value in values.items():
            if key not in known:
                raise ValueError(
                    f"unknown {section} setting {key!r}; known {section} settings: "
                    f"{', '.join(sorted(known))}"
                )
            d[section][key] = value
    train = d["train"]
    given = overrides.get("train", {})
    if (
        "max_steps" in given
        and "warmup_steps" not in given
        and train["warmup_steps"] > train["max_steps"]
    ):
        train["warmup_steps"] = train["max_steps"] // 10  # a preset's warmup, a shorter --max-steps
    model = dict(d["model"])
    TransformerConfig(vocab_size=300, **model)  # validate the model fields now
    return RunConfig(
        data=DataConfig(**d["data"]),
        model=model,
        train=TrainConfig.from_dict(d["train"]),
        run=RunSettings(**d["run"]),
    )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON (any other suffix) config file into section dicts.

    Missing file → FileNotFoundError; a syntax error → ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot parse config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold sections {list(SECTIONS)}")
    return data


def _preset(data: dict, model: dict, train: dict, run: dict) -> RunConfig:
    return apply_overrides(RunConfig(), {"data": data, "model": model, "train": train, "run": run})


_FAST = {"attention_impl": "sdpa", "fused": True, "init": "gpt2"}  # GPT-2 init: pretraining recipe
_ADAMW = {"optimizer": "adamw", "betas": [0.9, 0.99], "grad_clip": 1.0, "loss_impl": "fused"}

PRESETS: dict[str, RunConfig] = {
    # nanoGPT's shakespeare_char "baby GPT" scaled down to a CPU: 4 layers, 4 heads, width 128.
    "shakespeare-char": _preset(
        {"corpus": ["tinyshakespeare"], "tokenizer": "char"},
        {"embedding_dim": 128, "num_layers": 4, "num_heads": 4, "max_seq_len": 64, **_FAST},
        {
            "batch_size": 12,
            "context_length": 64,
            "max_steps": 2000,
            "max_lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 100,
            "eval_every": 250,
            "eval_iters": 20,
            **_ADAMW,
        },
        {"family": "ShakespeareLM", "sample_every": 500},
    ),  # fmt: skip
    "shakespeare-bpe": _preset(
        {"corpus": ["tinyshakespeare"], "tokenizer": "bpe", "vocab_size": 1024},
        {"embedding_dim": 128, "num_layers": 4, "num_heads": 4, "max_seq_len": 128, **_FAST},
        {
            "batch_size": 16,
            "context_length": 128,
            "max_steps": 2000,
            "max_lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 100,
            "eval_every": 250,
            "eval_iters": 20,
            **_ADAMW,
        },
        {"family": "ShakespeareLM", "sample_every": 500},
    ),  # fmt: skip
    "gutenberg-1m": _preset(
        {"corpus": ["gutenberg"], "tokenizer": "bpe", "vocab_size": 4096},
        {"embedding_dim": 128, "num_layers": 4, "num_heads": 4, "max_seq_len": 128, **_FAST},
        {
            "batch_size": 32,
            "context_length": 128,
            "max_steps": 3000,
            "max_lr": 2e-3,
            "min_lr": 2e-4,
            "warmup_steps": 100,
            "eval_every": 250,
            "eval_iters": 20,
            **_ADAMW,
        },
        {"family": "GutenbergLM", "sample_every": 500},
    ),  # fmt: skip
    "gutenberg-5m": _preset(
        {"corpus": ["gutenberg"], "tokenizer": "bpe", "vocab_size": 4096},
        {"embedding_dim": 256, "num_layers": 6, "num_heads": 8, "max_seq_len": 256, **_FAST},
        {
            "batch_size": 32,
            "context_length": 256,
            "max_steps": 5000,
            "max_lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 200,
            "eval_every": 500,
            "eval_iters": 20,
            **_ADAMW,
        },
        {"family": "GutenbergLM", "sample_every": 1000},
    ),  # fmt: skip
    # The speedrun: TinyShakespeare + Gutenberg, BPE 4096, ~1.3M parameters, time-budgeted.
    "speedrun": _preset(
        {
            "corpus": ["tinyshakespeare", "gutenberg"],
            "tokenizer": "bpe",
            "vocab_size": 4096,
            "val_fraction": 0.02,
        },
        {"embedding_dim": 128, "num_layers": 4, "num_heads": 4, "max_seq_len": 128, **_FAST},
        {
            "batch_size": 32,
            "context_length": 128,
            "max_steps": 2000,
            "max_lr": 2e-3,
            "min_lr": 2e-4,
            "warmup_steps": 50,
            "eval_every": 200,
            "eval_iters": 10,
            "log_every": 1,
            **_ADAMW,
        },
        {"family": "SpeedrunLM", "sample_every": 200, "budget_minutes": 13.5},  # 15 min - SFT/DPO
    ),  # fmt: skip
    # The speedrun's --smoke variant: the whole pipeline on a 60k-character slice in seconds.
    "speedrun-smoke": _preset(
        {
            "corpus": ["tinyshakespeare"],
            "tokenizer": "bpe",
            "vocab_size": 384,
            "max_chars": 60_000,
            "val_fraction": 0.1,
        },
        {"embedding_dim": 32, "num_layers": 2, "num_heads": 2, "max_seq_len": 32, **_FAST},
        {
            "batch_size": 8,
            "context_length": 32,
            "max_steps": 40,
            "max_lr": 3e-3,
            "min_lr": 3e-4,
            "warmup_steps": 5,
            "eval_every": 10,
            "eval_iters": 2,
            "log_every": 5,
            **_ADAMW,
        },
        {"family": "SpeedrunLM", "sample_every": 20, "sample_tokens": 30},
    ),  # fmt: skip
    # The course capstone's "Specialist": the running Python's standard library (PSF licence,
    # found at run time), prepared by g2c data prepare's pipeline into RUN/shards, read through
    # memory maps; the model of examples/14_python_specialist.py.
    "python-code": _preset(
        {"shards": "python-stdlib", "tokenizer": "bpe", "vocab_size": 2048, "val_fraction": 0.05},
        {"embedding_dim": 128, "num_layers": 4, "num_heads": 4, "max_seq_len": 128, **_FAST},
        {
            "batch_size": 16,
            "context_length": 128,
            "max_steps": 3000,
            "max_lr": 2e-3,
            "min_lr": 2e-4,
            "warmup_steps": 100,
            "eval_every": 250,
            "eval_iters": 20,
            **_ADAMW,
        },
        {"family": "PythonLM", "sample_every": 500, "sample_tokens": 256, "prompt": "import "},
    ),  # fmt: skip
    # GPT-2 small (124M): 12 layers, 12 heads, width 768, context 1024, GPT-2's tokenizer and
    # the nanoGPT / llm.c recipe: AdamW (0.9, 0.95), weight decay 0.1, clip 1.0, lr 6e-4 with
    # 700 warmup steps (llm.c) cosine to 6e-5 over 19,073 steps (10B tokens / 2^19, Karpathy's
    # build-nanogpt), 16 × 1024 tokens × 32 micro-batches = 524,288 (~0.5M) tokens per step,
    # bf16 autocast. The corpus here is the local one; point --shards at a prepared
    # (g2c data prepare --tokenizer gpt2) web corpus for the real thing. On a CPU: shrink it
    # with --batch-size 1 --grad-accum-steps 1 --context-length 64 (docs/modules/10b-scale.md).
    "gpt2-124m": _preset(
        {"corpus": ["tinyshakespeare", "gutenberg"], "tokenizer": "gpt2", "val_fraction": 0.01},
        {
            "embedding_dim": 768,
            "num_layers": 12,
            "num_heads": 12,
            "max_seq_len": 1024,
            "gelu_approximate": "tanh",
            **_FAST,
        },
        {
            "batch_size": 16,
            "context_length": 1024,
            "grad_accum_steps": 32,
            "max_steps": 19073,
            "max_lr": 6e-4,
            "min_lr": 6e-5,
            "warmup_steps": 700,
            "weight_decay": 0.1,
            "weight_decay_1d": False,  # nanoGPT: biases and LayerNorm gains do not decay
            "optimizer": "adamw",
            "betas": [0.9, 0.95],
            "grad_clip": 1.0,
            "loss_impl": "fused",
            "autocast_dtype": "bfloat16",
            "eval_every": 250,
            "eval_iters": 20,
            "log_every": 10,
        },
        {"family": "GPT2", "sample_every": 1000, "sample_tokens": 64},
    ),  # fmt: skip
}


def get_preset(name: str) -> RunConfig:
    """A copy of preset ``name``; unknown → ValueError listing the presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return RunConfig.from_dict(PRESETS[name].to_dict())
