"""Adapters on disk: ``adapter.safetensors`` next to ``adapter_manifest.json``.

An adapter is only meaningful on the base weights it was trained on, so the manifest names
the base model twice: an identifier given by the user (``base_model="smollm2"`` or a dict such
as ``{"name": ..., "run": ...}``) and a fingerprint computed from the weights themselves —
sha256 over each targeted layer's name, (in, out) shape and 64 evenly spaced weight values
rounded to bfloat16 (cheap: no full pass over the weights; the same for a float32 or bfloat16
copy, on any device). Loading onto another base → ValueError naming the expected one.

Files are written atomically (``g2c.artifacts``), the manifest last; a damaged adapter or
manifest → ``g2c.artifacts.ArtifactError`` naming the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import (
    atomic_write_json,
    code_version,
    damaged,
    load_safetensors,
    read_json,
    save_safetensors,
)
from g2c.lora.layer import LINEAR_TYPES, LoRALinear
from g2c.lora.model import (
    AnyModel,
    _check_model,
    _require_lora,
    _set_submodule,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
)

ADAPTER_FORMAT = "g2c.lora_adapter"
ADAPTER_FORMAT_VERSION = 1
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_MANIFEST = "adapter_manifest.json"
_SAMPLES = 64
_ADAPTABLE = (*LINEAR_TYPES, LoRALinear)  # a plain linear layer, or one already adapted
_HINT = "save the adapter again (save_lora) or delete the directory"


def _weight_in_out(layer: Any, name: str) -> torch.Tensor:
    """The base weight of a linear layer or adapter at ``name`` as (in, out)."""
    if isinstance(layer, LoRALinear):
        if layer.merged:
            raise ValueError(
                f"layer {name!r} is merged; call unmerge_lora(model) before saving or "
                "fingerprinting its adapter (merged weights are not the base weights)"
            )
        return layer._base_weight()
    if isinstance(layer, torch.nn.Linear):
        return layer.weight.T
    return layer.W


def base_fingerprint(model: AnyModel, names: list[str] | None = None) -> str:
    """``"sha256:<hex>"`` of the base weights under the adapters (or the linear layers at
    ``names``): per layer, sorted by name, its name, (in, out) shape and 64 evenly spaced values
    rounded to bfloat16. A name that is not a linear layer → ValueError."""
    _check_model(model)
    modules = dict(model.named_modules())
    if names is None:
        names = [n for n, _ in _require_lora(model, "base_fingerprint")]
    h = hashlib.sha256()
    for name in sorted(names):
        layer = modules.get(name)
        if not isinstance(layer, _ADAPTABLE):
            raise ValueError(f"names: {name!r} is not a linear layer of this model")
        w = _weight_in_out(layer, name).detach()  # (in, out)
        n_in, n_out = w.shape
        idx = torch.linspace(0, n_in * n_out - 1, min(_SAMPLES, n_in * n_out), device=w.device)
        idx = idx.long()
        sample = w[idx // n_out, idx % n_out]  # no copy of the whole matrix
        values = sample.to(torch.bfloat16).float().cpu().numpy().tobytes()
        h.update(f"{name}:{n_in}x{n_out};".encode())
        h.update(values)
    return "sha256:" + h.hexdigest()


def _base_model_dict(base_model: Any) -> dict:
    if isinstance(base_model, str) and base_model:
        return {"name": base_model}
    if isinstance(base_model, dict) and base_model:
        return dict(base_model)
    raise TypeError(
        "base_model must be a non-empty str (e.g. 'smollm2') or dict naming the base model, "
        f"got {type(base_model).__name__} {base_model!r}"
    )


def save_lora(model: AnyModel, directory: str | os.PathLike, *, base_model: str | dict) -> Path:
    """Write the model's adapters to ``directory``: ``adapter.safetensors`` (the
    :func:`lora_state_dict`) and ``adapter_manifest.json`` (format, base model identifier and
    fingerprint, rank, alpha, dropout, target layers with their shapes). Returns the directory.

    Raises ValueError (no LoRA layers; merged layers — unmerge first) and TypeError
    (``base_model`` not a non-empty str or dict) before writing anything.
    """
    base = _base_model_dict(base_model)
    layers = _require_lora(model, "save_lora")
    fingerprint = base_fingerprint(model)
    state = lora_state_dict(model)
    per_layer = {
        name: {"rank": m.rank, "alpha": m.alpha, "dropout": m.dropout,
               "in_features": m.in_features, "out_features": m.out_features}
        for name, m in layers
    }  # fmt: skip

    def common(key: str) -> Any:
        values = {v[key] for v in per_layer.values()}
        return values.pop() if len(values) == 1 else None

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(directory / ADAPTER_WEIGHTS, state, metadata={"format": ADAPTER_FORMAT})
    atomic_write_json(
        directory / ADAPTER_MANIFEST,
        {
            "format": ADAPTER_FORMAT,
            "format_version": ADAPTER_FORMAT_VERSION,
            "code_version": code_version(),
            "base_model": base,
            "base_fingerprint": fingerprint,
            "rank": common("rank"),
            "alpha": common("alpha"),
            "dropout": common("dropout"),
            "targets": [n for n, _ in layers],
            "layers": per_layer,
            "num_parameters": sum(t.numel() for t in state.values()),
        },
    )
    return directory


def read_lora_manifest(directory: str | os.PathLike) -> dict:
    """The parsed ``adapter_manifest.json`` of an adapter directory. Missing →
    FileNotFoundError; damaged → ArtifactError; another format or version → ValueError."""
    path = Path(directory) / ADAPTER_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_MANIFEST} in {directory}: is it a LoRA adapter?")
    manifest = read_json(path, _HINT)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), dict):
        raise damaged(path, "not an adapter manifest object with 'layers'", _HINT)
    if manifest.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path}: format is {manifest.get('format')!r}, not {ADAPTER_FORMAT!r}")
    if manifest.get("format_version") != ADAPTER_FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported "
            f"(this g2c reads {ADAPTER_FORMAT_VERSION})"
        )
    return manifest


def _check_layers(model: AnyModel, manifest: dict, expects: str) -> dict[str, Any]:
    """Every target exists in ``model`` as a linear layer (or an adapter of the same rank)
    with the manifest's shape → {name: layer}; else ValueError saying which base it expects."""
    modules = dict(model.named_modules())
    found = {}
    for name, info in manifest["layers"].items():
        layer = modules.get(name)
        if not isinstance(layer, _ADAPTABLE):
            raise ValueError(
                f"the adapter targets layer {name!r}, which this model does not have as a "
                f"linear layer; it expects the base model {expects}"
            )
        shape = (layer.in_features, layer.out_features)
        if shape != (info["in_features"], info["out_features"]):
            raise ValueError(
                f"the adapter's layer {name!r} is (in, out) = "
                f"{(info['in_features'], info['out_features'])}, this model's is {shape}; it "
                f"expects the base model {expects}"
            )
        if isinstance(layer, LoRALinear) and (layer.rank, layer.alpha) != (
            info["rank"], info["alpha"]
        ):  # fmt: skip
            raise ValueError(
                f"layer {name!r} already has an adapter of rank {layer.rank}, alpha "
                f"{layer.alpha}; the saved one has rank {info['rank']}, alpha {info['alpha']}"
            )
        found[name] = layer
    return found


def load_lora(
    model: AnyModel, directory: str | os.PathLike, *, check_base: bool = True
) -> list[str]:
    """Re-create the adapters saved by :func:`save_lora` on ``model`` and load their tensors.

    Layers named in the manifest get a :class:`LoRALinear` with the saved rank/alpha/dropout
    (layers that already have one of the same rank and alpha are reused). Returns the adapted
    layer names.

    Raises:
        FileNotFoundError: no adapter in ``directory``.
        ArtifactError: a damaged ``adapter.safetensors`` or manifest (names the file).
        ValueError: the model is not the base the adapter was trained on — a missing layer,
            another shape, or (``check_base=True``) other base weights (fingerprint) — the
            message names the expected base model. Nothing is changed when it raises.
    """
    _check_model(model)
    directory = Path(directory)
    manifest = read_lora_manifest(directory)
    state = load_safetensors(directory / ADAPTER_WEIGHTS, hint=_HINT)
    expects = f"{manifest.get('base_model')} ({manifest.get('base_fingerprint')})"
    keys = {f"{n}.lora_{ab}" for n in manifest["layers"] for ab in "AB"}
    if set(state) != keys:
        odd = sorted(set(state) ^ keys)
        raise damaged(
            directory / ADAPTER_WEIGHTS, f"keys disagree with the manifest: {odd[:3]}", _HINT
        )
    layers = _check_layers(model, manifest, expects)
    others = [n for n, _ in lora_layers(model) if n not in layers]
    if others:
        raise ValueError(
            f"model already has LoRA layers the adapter does not name ({others[:3]}); load it "
            "onto a model without them (or unload_lora first)"
        )
    for name, info in manifest["layers"].items():
        A, B = state[f"{name}.lora_A"], state[f"{name}.lora_B"]
        want = ((info["in_features"], info["rank"]), (info["rank"], info["out_features"]))
        if (tuple(A.shape), tuple(B.shape)) != want:
            raise damaged(
                directory / ADAPTER_WEIGHTS,
                f"{name}: lora_A {tuple(A.shape)}, lora_B {tuple(B.shape)}, manifest says {want}",
                _HINT,
            )
    if check_base:
        got = base_fingerprint(model, list(layers))
        if got != manifest.get("base_fingerprint"):
            raise ValueError(
                f"this adapter was trained on the base model {expects}; this model's weights "
                f"give fingerprint {got}: load the base model it names (or pass "
                "check_base=False to load it anyway)"
            )
    for name, layer in layers.items():
        info = manifest["layers"][name]
        if not isinstance(layer, LoRALinear):
            _set_submodule(
                model,
                name,
                LoRALinear(layer, info["rank"], info["alpha"], dropout=info["dropout"]),
            )
    load_lora_state_dict(model, state)  # keys and shapes checked above: cannot fail now
    return list(layers)


__all__ = [
    "ADAPTER_FORMAT",
    "ADAPTER_MANIFEST",
    "ADAPTER_WEIGHTS",
    "base_fingerprint",
    "load_lora",
    "read_lora_manifest",
    "save_lora",
]
