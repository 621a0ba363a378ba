"""Model registry: find finished runs on disk, name them by family and size, load them.

A run directory (``manifest.json`` with format ``g2c.run``) found under the runs root
(``g2c_home()``: ``$G2C_HOME`` or ``./runs``, searched two levels deep) is one model, named
``<family>-<size>`` from its parameter count: ``ShakespeareLM-0.8M``, ``GutenbergLM-5.9M``,
``SpeedrunLM-1.3M``. A size-less alias (``GutenbergLM``) resolves to the family's largest
model; among equal names the newest run wins. Loading goes through the one model loader,
``g2c.transformer.loading.load_model``; only an interrupted run (a checkpoint, no final weights)
is rebuilt here, because that needs the run's own configuration.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import RUN_FORMAT, damaged, g2c_home, read_json
from g2c.runs.config import RunConfig
from g2c.runs.rundir import RunDir
from g2c.tokenizer import load_tokenizer
from g2c.transformer import TransformerLM
from g2c.transformer.loading import load_model


def format_size(num_parameters: int) -> str:
    """Human parameter count: 812_000 → "0.8M", 5_857_280 → "5.9M", 25_000 → "25K", 12e6 → "12M"."""
    if num_parameters < 0:
        raise ValueError(f"num_parameters must be >= 0, got {num_parameters}")
    if num_parameters < 100_000:
        return f"{round(num_parameters / 1000)}K"
    m = num_parameters / 1e6
    text = f"{m:.1f}" if m < 10 else f"{round(m)}"
    return (text[:-2] if text.endswith(".0") else text) + "M"


def model_name(family: str, num_parameters: int) -> str:
    """``<family>-<size>``, e.g. ``model_name("ShakespeareLM", 809_921) == "ShakespeareLM-0.8M"``."""
    return f"{family}-{format_size(num_parameters)}"


@dataclasses.dataclass
class ModelEntry:
    """One model found on disk: ``name``, ``family``, ``num_parameters``, ``path`` (run dir),
    ``created`` (unix time), ``metrics`` (from the manifest), ``has_weights``."""

    name: str
    family: str
    num_parameters: int
    path: Path
    created: float
    metrics: dict
    has_weights: bool


def find_models(root: str | Path | None = None) -> list[ModelEntry]:
    """Every run under ``root`` (default ``g2c_home()``) whose manifest has format g2c.run,
    sorted by family then size. Unreadable manifests are skipped."""
    root = Path(root) if root is not None else g2c_home()
    if not root.is_dir():
        return []
    candidates = [root, *root.glob("*"), *root.glob("*/*")]
    out = []
    for d in candidates:
        m = d / "manifest.json"
        if not m.is_file():
            continue
        try:
            manifest = json.loads(m.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if manifest.get("format") != RUN_FORMAT:
            continue
        out.append(
            ModelEntry(
                name=manifest.get("name") or d.name,
                family=manifest.get("family", "LM"),
                num_parameters=int(manifest.get("num_parameters", 0)),
                path=d,
                created=float(manifest.get("created_unix", 0.0)),
                metrics=manifest.get("metrics", {}),
                has_weights=(d / "model.safetensors").is_file(),
            )
        )
    return sorted(out, key=lambda e: (e.family, e.num_parameters, e.created))


def resolve_model(name_or_path: str, root: str | Path | None = None) -> Path:
    """A run directory from a path, a model name (``GutenbergLM-5.9M``) or a family alias
    (``GutenbergLM`` → its largest model). Case-insensitive. Nothing found → FileNotFoundError
    listing the models that exist."""
    home = Path(root) if root is not None else g2c_home()
    for p in (Path(name_or_path), home / name_or_path):  # a path, or a run name under the root
        if p.is_dir() and ((p / "manifest.json").is_file() or (p / "run_config.json").is_file()):
            return p
    models = find_models(root)
    key = name_or_path.lower()
    exact = [e for e in models if e.name.lower() == key]
    if exact:
        return max(exact, key=lambda e: e.created).path
    family = [e for e in models if e.family.lower() == key]
    if family:
        return max(family, key=lambda e: (e.num_parameters, e.created)).path
    known = ", ".join(sorted({e.name for e in models} | {e.family for e in models})) or "none"
    raise FileNotFoundError(
        f"no run directory or model named {name_or_path!r}; models found under "
        f"{Path(root) if root is not None else g2c_home()}: {known} (see `g2c models list`)"
    )


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[TransformerLM, Any, dict]:
    """``(model, tokenizer, manifest)`` of a run directory, the model in eval mode.

    A finished run (``model.safetensors``) loads through ``load_model``; an interrupted one
    through the weights in ``checkpoint.pt`` and its ``run_config.json``. Neither →
    FileNotFoundError; a damaged file → ``g2c.artifacts.ArtifactError`` (a ValueError) naming it.
    """
    rd = RunDir(run_dir)
    if rd.weights.is_file():
        loaded = load_model(rd.root, device=device)
        return loaded.model, loaded.tokenizer, loaded.manifest
    if not (rd.checkpoint.is_file() and rd.run_config.is_file()):
        raise FileNotFoundError(f"{rd.root} holds neither model.safetensors nor checkpoint.pt")
    if not rd.tokenizer.is_file():
        raise FileNotFoundError(f"{rd.root} has no tokenizer.json: is it a g2c run directory?")
    hint = f"resume or re-run the training, or delete {rd.root}"
    tok = load_tokenizer(rd.tokenizer)
    manifest_path = rd.root / "manifest.json"
    manifest = read_json(manifest_path, hint) if manifest_path.is_file() else {}
    cfg = RunConfig.from_dict(read_json(rd.run_config, hint))
    model = TransformerLM.from_config(cfg.model_config(tok.vocab_size))
    try:
        state = torch.load(rd.checkpoint, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        raise damaged(rd.checkpoint, f"{type(exc).__name__}: {exc}", hint) from None
    model.load_state_dict(state["model"])
    manifest = {**manifest, "status": "interrupted", "step": state["trainer"]["step"]}
    return model.to(device).eval(), tok, manifest
