"""The LM-family stages behind ``g2c lm``: train one pre-transformer character model, or the
six-model comparison of module 06.

``train(config, out)`` / ``compare(config, out)`` follow the stage skeleton
(:mod:`g2c.runs.stage`): the whole configuration (data choice, sizes, the model built once with a
placeholder vocabulary) is validated before the run directory is touched; then data, training,
evaluation and the artifacts are timed parts in ``stages.json``.

- ``train`` writes ``model.safetensors`` + ``manifest.json`` (``g2c.lm`` format, via
  ``g2c.lm.save_lm``), ``tokenizer.json``, ``metrics.jsonl`` (one line per evaluation) and
  ``report.md`` with a sample.
- ``compare`` writes ``table.md``, ``results.json`` and ``val-ppl.png``
  (``g2c.lm.compare_models`` does the training).

Library code: progress goes to callbacks; nothing is printed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import append_jsonl, atomic_write_json, atomic_write_text
from g2c.data import load_text
from g2c.lm import (
    MODEL_NAMES,
    CompareConfig,
    LMConfig,
    LMTrainSettings,
    bits_per_token,
    build_model,
    char_split,
    compare_models,
    count_parameters,
    perplexity,
    plot_val_curves,
    results_markdown,
    sample,
    save_lm,
    train_lm,
)
from g2c.nn import resolve_device
from g2c.runs.stage import Stage, check, stage_table

_PLACEHOLDER_VOCAB = 65  # TinyShakespeare's characters: enough to build a model for validation


@dataclasses.dataclass
class LMData:
    """Which text: a registered dataset ``data`` or a UTF-8 ``text_file``, cut to ``max_chars``,
    split contiguously with ``val_fraction`` held out."""

    data: str = "tinyshakespeare"
    text_file: str | None = None
    max_chars: int | None = None
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        check(self.max_chars is None or self.max_chars > 0, "--max-chars",
              f"must be positive, got {self.max_chars}")  # fmt: skip
        check(0.0 < self.val_fraction < 1.0, "--val-fraction",
              f"must be between 0 and 1, got {self.val_fraction}")  # fmt: skip
        if self.text_file is not None and not Path(self.text_file).is_file():
            raise FileNotFoundError(f"--text-file not found: {self.text_file}")

    def load(self) -> tuple[str, Any, torch.Tensor, torch.Tensor]:
        """``(source name, CharTokenizer, train ids (N,), val ids (M,))``."""
        if self.text_file:
            text, source = Path(self.text_file).read_text(encoding="utf-8"), str(self.text_file)
        else:
            text, source = load_text(self.data), self.data
        if self.max_chars is not None:
            text = text[: self.max_chars]
        tok, train_ids, val_ids = char_split(text, self.val_fraction)
        return source, tok, train_ids, val_ids


@dataclasses.dataclass
class LMTrainConfig(LMTrainSettings):
    """One model of module 06 trained with AdamW + cosine decay to lr/10 (``g2c.lm.train_lm``):
    the shared :class:`~g2c.lm.LMTrainSettings` plus ``model`` (one of ``MODEL_NAMES``) and
    ``device``.
    """

    model: str = "lstm"
    device: str = "cpu"

    def __post_init__(self) -> None:
        check(self.model in MODEL_NAMES, "--model", f"choose from {', '.join(MODEL_NAMES)}")
        for name in ("steps", "batch_size", "eval_every", "sample_tokens"):
            check(getattr(self, name) > 0, f"--{name.replace('_', '-')}",
                  f"must be positive, got {getattr(self, name)}")  # fmt: skip
        check(self.lr > 0, "--lr", f"must be positive, got {self.lr}")
        check(self.temperature > 0, "--temperature", f"must be positive, got {self.temperature}")
        build_model(self.lm_config(_PLACEHOLDER_VOCAB))  # the model's own checks, before any write

    def lm_config(self, vocab_size: int) -> LMConfig:
        """The model's ``LMConfig`` for a vocabulary of ``vocab_size`` characters."""
        bigram = self.model in ("bigram", "neural-bigram")
        return LMConfig(model=self.model, vocab_size=vocab_size,
                        context_length=1 if bigram else self.context_length,
                        embedding_dim=self.embedding_dim, hidden_dim=self.hidden_dim)  # fmt: skip


@dataclasses.dataclass
class LMTrainResult:
    """What :func:`train` returns: the model, its config, metrics (val_ppl, bpc, train_seconds,
    params, val_targets), the decoded sample, the data source, the run directory."""

    model: Any
    config: LMConfig
    metrics: dict[str, Any]
    sample: str
    source: str
    out: Path


def train(
    config: LMTrainConfig,
    out: str | Path,
    data: LMData | None = None,
    *,
    on_step: Callable[[int, float], None] | None = None,
    on_log: Callable[[dict], None] | None = None,
    on_event: Callable[[str, dict], None] | None = None,
) -> LMTrainResult:
    """Train one model of ``config`` on ``data`` and save it into ``out`` (started afresh)."""
    data = data or LMData()
    stage = Stage(out, "lm-train", on_event)
    stage.open({"train": dataclasses.asdict(config), "data": dataclasses.asdict(data)}, fresh=True)
    rd = stage.rd
    with stage.part("data") as info:
        source, tok, train_ids, val_ids = data.load()
        info.update(train_chars=len(train_ids), val_chars=len(val_ids), vocab_size=tok.vocab_size)
    torch.manual_seed(config.seed)
    cfg = config.lm_config(tok.vocab_size)
    gen = torch.Generator().manual_seed(config.seed)
    model = build_model(cfg, generator=gen).to(resolve_device(config.device))

    def log(rec: dict) -> None:
        append_jsonl(rd.metrics, rec)
        if on_log is not None:
            on_log(rec)

    with stage.part("training") as info:
        if config.model == "bigram":
            model.fit(train_ids)
            seconds = 0.0
        else:
            hist = train_lm(
                model, train_ids, val_ids, num_steps=config.steps, batch_size=config.batch_size,
                lr=config.lr, log_every=config.eval_every, grad_clip=config.grad_clip,
                schedule="cosine", min_lr=config.lr / 10, generator=gen,
                eval_tokens=config.eval_tokens, on_step=on_step, on_log=log,
            )  # fmt: skip
            seconds = hist["seconds"]
        info["steps"] = 0 if config.model == "bigram" else config.steps
    with stage.part("evaluation") as info:
        ppl = perplexity(model, val_ids)
        info.update(val_ppl=ppl, bpc=bits_per_token(ppl))
    prompt = tok.encode("\n") if "\n" in tok.stoi else val_ids[:1]
    gen_sample = torch.Generator().manual_seed(config.seed)
    text = tok.decode(sample(model, prompt, config.sample_tokens, temperature=config.temperature,
                             generator=gen_sample))  # fmt: skip
    metrics = {"val_ppl": ppl, "bpc": bits_per_token(ppl), "train_seconds": seconds,
               "params": count_parameters(model), "val_targets": len(val_ids) - cfg.context_length}  # fmt: skip
    train_cfg = {k: v for k, v in dataclasses.asdict(config).items()
                 if k in ("steps", "batch_size", "lr", "grad_clip", "eval_every", "eval_tokens",
                          "seed")}  # fmt: skip
    train_cfg.update(val_fraction=data.val_fraction, max_chars=data.max_chars)
    tok.save(rd.tokenizer)
    save_lm(rd.root, model, cfg, data=source, train_config=train_cfg, metrics=metrics,
            tokenizer="tokenizer.json", stage="lm-train", parent=None,
            total_seconds=stage.seconds())  # fmt: skip
    table = stage_table(rd.load_stages(), [("steps", "steps", "d"), ("val ppl", "val_ppl", ".3f")])
    atomic_write_text(
        rd.report,
        f"# g2c lm train: {config.model}\n\n"
        f"```json\n{json.dumps(metrics, indent=2)}\n```\n\n## stages\n\n" + "\n".join(table)
        + f"\n\n## sample\n\n```text\n{text}\n```\n",
    )  # fmt: skip
    return LMTrainResult(model, cfg, metrics, text, source, rd.root)


@dataclasses.dataclass
class LMCompareResult:
    """What :func:`compare` returns: ``compare_models``' results, the tokenizer (to decode the
    samples), the data source and the output directory."""

    results: list[dict[str, Any]]
    tokenizer: Any
    source: str
    out: Path


def compare(
    config: CompareConfig,
    out: str | Path,
    data: LMData | None = None,
    *,
    device: str = "cpu",
    on_model: Callable[[str], None] | None = None,
    on_step: Callable[[str, int, float], None] | None = None,
    on_event: Callable[[str, dict], None] | None = None,
) -> LMCompareResult:
    """Train and score every model of ``config`` on ``data``; write the table, JSON and plot."""
    data = data or LMData()
    for name in config.models:
        check(name in MODEL_NAMES, "--models",
              f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")  # fmt: skip
    check(config.steps > 0 and config.batch_size > 0, "--steps/--batch-size", "must be positive")
    stage = Stage(out, "lm-compare", on_event)
    stage.open({"compare": config.to_dict(), "data": dataclasses.asdict(data)}, fresh=True)
    rd = stage.rd
    with stage.part("data"):
        source, tok, train_ids, val_ids = data.load()
    with stage.part("training"):
        results = compare_models(
            train_ids, val_ids, tok.vocab_size, config,
            prompt=tok.encode("\n") if "\n" in tok.stoi else None,
            device=resolve_device(device), on_model=on_model, on_step=on_step,
        )  # fmt: skip
    atomic_write_text(rd.root / "table.md", results_markdown(results, decode=tok.decode))
    atomic_write_json(
        rd.root / "results.json",
        {"config": config.to_dict(), "data": source, "threads": torch.get_num_threads(),
         "results": results, "total_seconds": stage.seconds()},
    )  # fmt: skip
    plot_val_curves(results, rd.root / "val-ppl.png")
    return LMCompareResult(results, tok, source, rd.root)
