"""Name → model class table (``MODELS``), the model config dataclass, and saving/loading an LM.

``LMConfig`` names the model (``bigram``, ``neural-bigram``, ``mlp``, ``rnn``, ``lstm``,
``wavenet``) and its sizes; it round-trips through JSON and is written into the run manifest, so
``load_lm(dir)`` can rebuild the model and load ``model.safetensors`` (no pickle).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import load_safetensors, read_manifest, save_safetensors, write_manifest
from g2c.lm.bigram import CountsBigramLM, NeuralBigramLM
from g2c.lm.mlp import MLPLanguageModel
from g2c.lm.rnn import LSTMLanguageModel, RNNLanguageModel
from g2c.lm.wavenet import WaveNetLM
from g2c.nn import Module

LM_FORMAT = "g2c.lm"


@dataclass(frozen=True)
class ModelEntry:
    """One row of the name → class table: the class, the ``LMConfig`` fields it takes
    positionally (in order), and whether it takes ``generator=`` (trained models do)."""

    cls: type[Module]
    fields: tuple[str, ...]
    seeded: bool = True


_SIZES = ("vocab_size", "context_length", "embedding_dim", "hidden_dim")
# name -> class, in course order (simplest model first)
MODELS: dict[str, ModelEntry] = {
    "bigram": ModelEntry(CountsBigramLM, ("vocab_size", "smoothing"), seeded=False),
    "neural-bigram": ModelEntry(NeuralBigramLM, ("vocab_size", "embedding_dim")),
    "mlp": ModelEntry(MLPLanguageModel, _SIZES),
    "rnn": ModelEntry(RNNLanguageModel, _SIZES),
    "lstm": ModelEntry(LSTMLanguageModel, _SIZES),
    "wavenet": ModelEntry(WaveNetLM, _SIZES),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


@dataclass
class LMConfig:
    """Which model and how big.

    Fields: ``model`` (one of ``MODEL_NAMES``), ``vocab_size`` V, ``context_length`` ctx (ignored
    by the bigrams, which use 1; a power of two for wavenet), ``embedding_dim`` D,
    ``hidden_dim`` H, ``smoothing`` (counts bigram pseudo-count).
    """

    model: str = "lstm"
    vocab_size: int = 65
    context_length: int = 16
    embedding_dim: int = 24
    hidden_dim: int = 128
    smoothing: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LMConfig:
        """Inverse of :meth:`to_dict`; unknown keys → ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown LMConfig fields {unknown}; known: {sorted(names)}")
        return cls(**d)


def build_model(config: LMConfig, *, generator: torch.Generator | None = None) -> Module:
    """Instantiate the model named by ``config.model`` from the ``MODELS`` table.

    ``generator`` seeds the initialisation of the trained models (the counts bigram has none).
    An unknown name → ValueError listing the known ones; bad sizes → the model's ValueError.
    """
    entry = MODELS.get(config.model)
    if entry is None:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}; got {config.model!r}")
    args = [getattr(config, field) for field in entry.fields]
    return entry.cls(*args, **({"generator": generator} if entry.seeded else {}))


def save_lm(
    directory: str | os.PathLike, model: Module, config: LMConfig, **manifest_fields: Any
) -> Path:
    """Write ``model.safetensors`` (parameters and buffers) and ``manifest.json`` to ``directory``.

    ``manifest_fields`` (data name, metrics, train config ...) must be JSON-serialisable.
    Returns the directory. Files are written atomically.
    """
    directory = Path(directory)
    save_safetensors(directory / "model.safetensors", model.state_dict())
    write_manifest(directory, LM_FORMAT, model_config=config.to_dict(), **manifest_fields)
    return directory


def load_lm(directory: str | os.PathLike, device: str = "cpu") -> tuple[Module, LMConfig, dict]:
    """Rebuild the model saved by :func:`save_lm`; returns (model in eval mode, config, manifest).

    A missing manifest/weights file → FileNotFoundError; another artifact format → ValueError.
    """
    manifest = read_manifest(directory, LM_FORMAT)
    config = LMConfig.from_dict(manifest["model_config"])
    model = build_model(config)
    model.load_state_dict(load_safetensors(Path(directory) / "model.safetensors"))
    return model.to(device).eval(), config, manifest
