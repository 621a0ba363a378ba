"""LoRA on a whole model: inject adapters by name, train only them, count, save their tensors.

Works on a g2c model (``g2c.nn.Module``) and on a torch model (``torch.nn.Module``): both have
``named_modules()``, which yields ``(dotted name, module)`` pairs such as
``("blocks.0.attn.q_proj", Linear)`` — the names used by every function here.

Matching rule of :func:`inject_lora`: a target name matches a linear layer whose dotted name
equals it or ends with ``"." + target`` — ``"q_proj"`` matches ``blocks.0.attn.q_proj`` in
every block, ``"attn.out_proj"`` the attention output only, ``"blocks.0.attn.q_proj"`` exactly
that one layer. Only linear layers (``g2c.nn.Linear``, ``torch.nn.Linear``) are replaced; a
target that matches none → ValueError listing the linear names the model has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from g2c.lora.layer import LINEAR_TYPES, LoRALinear, check_lora_args
from g2c.nn import Module

AnyModel = Module | torch.nn.Module
#: attribute on a g2c model naming the tensors :func:`mark_only_lora_trainable` froze (g2c
#: counts only requires_grad tensors as parameters, so count_parameters needs the record).
_FROZEN_ATTR = "_lora_frozen"


def _check_model(model: Any) -> None:
    if not isinstance(model, (Module, torch.nn.Module)):
        raise TypeError(
            f"model must be a g2c.nn.Module or a torch.nn.Module, got {type(model).__name__}"
        )


def lora_layers(model: AnyModel) -> list[tuple[str, LoRALinear]]:
    """``(dotted name, LoRALinear)`` for every adapter in ``model``, in ``named_modules`` order."""
    _check_model(model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def _require_lora(model: AnyModel, what: str) -> list[tuple[str, LoRALinear]]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"{what}: model has no LoRA layers; call inject_lora(model, ...) first")
    return layers


def linear_layers(model: AnyModel) -> list[tuple[str, Any]]:
    """``(dotted name, layer)`` for every plain linear layer (course or torch) that is not
    already inside an adapter — the candidates of :func:`inject_lora`."""
    _check_model(model)
    inside = [n + "." for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, LINEAR_TYPES)
        and not isinstance(m, LoRALinear)
        and not any(n.startswith(p) for p in inside)
    ]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _available(model: AnyModel) -> str:
    names = [n for n, _ in linear_layers(model)]
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    example = f" (e.g. {names[0]!r})" if names else ""
    return f"linear layers in this model by attribute name: {short}{example}"


def _child(obj: Any, key: str) -> Any:
    if isinstance(obj, (list, tuple)):
        return obj[int(key)]
    if isinstance(obj, dict):
        return obj[key]
    return getattr(obj, key)


def _set_submodule(root: AnyModel, name: str, new: Any) -> None:
    """Replace the sub-module at dotted ``name`` (attributes, list indices, dict keys)."""
    *path, last = name.split(".")
    parent = root
    for key in path:
        parent = _child(parent, key)
    if isinstance(parent, tuple):
        raise ValueError(f"cannot replace {name!r}: it sits in a tuple; use a list")
    if isinstance(parent, list):
        parent[int(last)] = new
    elif isinstance(parent, dict):
        parent[last] = new
    else:
        setattr(parent, last, new)


def _check_targets(target_names: Any) -> list[str]:
    if isinstance(target_names, str) or not isinstance(target_names, Sequence):
        raise TypeError(
            "target_names must be a list of layer names, e.g. ['q_proj', 'v_proj'], got "
            f"{type(target_names).__name__} {target_names!r}"
        )
    if not target_names or not all(isinstance(t, str) and t for t in target_names):
        raise ValueError(
            f"target_names must be a non-empty list of non-empty strings, got {target_names!r}"
        )
    return list(target_names)


def inject_lora(
    model: AnyModel,
    target_names: Sequence[str],
    rank: int,
    *,
    alpha: float | None = None,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Replace every linear layer matched by ``target_names`` with a :class:`LoRALinear`.

    Args:
        model: a g2c or torch model; changed in place.
        target_names: names matched against the dotted names of ``model.named_modules()``:
            equal, or a suffix after a dot (``"q_proj"`` matches ``blocks.3.attn.q_proj``).
        rank, alpha, dropout, generator: as in :class:`LoRALinear` (alpha default = rank).

    Returns:
        The dotted names of the replaced layers, in model order.

    Raises:
        TypeError: model is not a module, target_names is a bare string.
        ValueError: a target matches no linear layer (the message lists the linear layers the
            model has), a target is already adapted, or bad rank/alpha/dropout — all before
            anything is replaced.
    """
    _check_model(model)
    targets = _check_targets(target_names)
    check_lora_args(rank, alpha, dropout)
    adapted = [n for n, _ in lora_layers(model)]
    candidates = linear_layers(model)
    for t in targets:
        if any(_matches(n, t) for n in adapted):
            raise ValueError(
                f"target_names: {t!r} matches layers that already have a LoRA adapter "
                f"({[n for n in adapted if _matches(n, t)][:3]}); inject each layer once"
            )
        if not any(_matches(n, t) for n, _ in candidates):
            raise ValueError(f"target_names: {t!r} matches no linear layer; {_available(model)}")
    chosen = [(n, m) for n, m in candidates if any(_matches(n, t) for t in targets)]
    for name, layer in chosen:
        wrapped = LoRALinear(layer, rank, alpha, dropout=dropout, generator=generator)
        _set_submodule(model, name, wrapped)
    return [n for n, _ in chosen]


def unload_lora(model: AnyModel, *, merge: bool = True) -> list[str]:
    """Put the base linear layers back in place of the adapters; returns their names.

    ``merge=True`` (default) folds each update into its base weight first, so the model
    computes what the adapted one did with plain layers (save it with ``save_pretrained``);
    ``merge=False`` drops the adapters (the base model again, up to merge/unmerge rounding).
    Each base layer's ``requires_grad`` is restored to what it was before it was wrapped
    (tensors frozen by :func:`mark_only_lora_trainable` stay frozen).
    """
    layers = _require_lora(model, "unload_lora")
    for name, layer in layers:
        if merge:
            layer.merge()
        else:
            layer.unmerge()
        for t, trainable in zip(layer._base_tensors(), layer._base_trainable):
            t.requires_grad_(trainable)
        _set_submodule(model, name, layer.base)
    return [n for n, _ in layers]


def mark_only_lora_trainable(model: AnyModel) -> None:
    """Freeze every tensor of ``model`` except the adapters' ``lora_A``/``lora_B``.

    Afterwards an optimizer over the trainable tensors updates only the adapters and backward
    computes no gradient for the base weights. No LoRA layers → ValueError.
    """
    layers = _require_lora(model, "mark_only_lora_trainable")
    adapters = {id(t) for _, layer in layers for t in (layer.lora_A, layer.lora_B)}
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            p.requires_grad_(False)
    else:
        frozen = set(getattr(model, _FROZEN_ATTR, ()))
        for name, t in model.named_tensors():
            if t.requires_grad and id(t) not in adapters:
                frozen.add(name)
                t.requires_grad_(False)
        setattr(model, _FROZEN_ATTR, tuple(sorted(frozen)))
    for _, layer in layers:
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)


def count_parameters(model: AnyModel) -> tuple[int, int]:
    """``(trainable, total)`` numbers of scalars, tied tensors counted once.

    torch model: over ``parameters()``. g2c model: trainable = tensors with requires_grad;
    total adds the tensors LoRA froze (the adapters' base layers and what
    :func:`mark_only_lora_trainable` froze) — g2c treats other requires_grad=False tensors as
    buffers (RoPE tables, sinusoidal positions), which are not parameters.
    """
    _check_model(model)
    if isinstance(model, torch.nn.Module):
        params = list(model.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        return trainable, sum(p.numel() for p in params)
    named = dict(model.named_tensors())
    counted: dict[int, torch.Tensor] = {id(t): t for t in named.values() if t.requires_grad}
    trainable = sum(t.numel() for t in counted.values())
    for name in getattr(model, _FROZEN_ATTR, ()):
        if name in named:
            counted[id(named[name])] = named[name]
    for _, layer in lora_layers(model):
        for t in layer._base_tensors():
            counted[id(t)] = t
    return trainable, sum(t.numel() for t in counted.values())


def lora_state_dict(model: AnyModel) -> dict[str, torch.Tensor]:
    """``{"<layer>.lora_A": (in, r), "<layer>.lora_B": (r, out)}`` for every adapter (detached
    tensors, dotted names from ``named_modules``). No LoRA layers → ValueError."""
    state = {}
    for name, layer in _require_lora(model, "lora_state_dict"):
        state[f"{name}.lora_A"] = layer.lora_A.detach()
        state[f"{name}.lora_B"] = layer.lora_B.detach()
    return state


def load_lora_state_dict(model: AnyModel, state: Mapping[str, torch.Tensor]) -> None:
    """Copy adapter tensors from ``state`` (as written by :func:`lora_state_dict`) in place.

    Every key must be present and no other: a missing key, an unexpected key or a shape
    mismatch → ValueError naming the key, raised before anything is copied. Merged layers
    are unmerged first and merged again with the new tensors. Tensors are cast to each
    adapter's dtype and device.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping name -> tensor, got {type(state).__name__}")
    own = lora_state_dict(model)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        raise ValueError(f"state: missing LoRA key {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        raise ValueError(
            f"state: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected); this "
            f"model's adapters have keys like {next(iter(own))!r}"
        )
    for key, t in own.items():
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise TypeError(f"state[{key!r}] must be a torch.Tensor, got {type(got).__name__}")
        if tuple(got.shape) != tuple(t.shape):
            raise ValueError(
                f"state[{key!r}] has shape {tuple(got.shape)}, the model's adapter expects "
                f"{tuple(t.shape)} (a different rank or base model?)"
            )
    for name, layer in lora_layers(model):
        was_merged = layer.merged
        layer.unmerge()
        with torch.no_grad():
            layer.lora_A.copy_(state[f"{name}.lora_A"])
            layer.lora_B.copy_(state[f"{name}.lora_B"])
        if was_merged:
            layer.merge()


def merge_lora(model: AnyModel) -> None:
    """:meth:`LoRALinear.merge` on every adapter (idempotent). No LoRA layers → ValueError."""
    for _, layer in _require_lora(model, "merge_lora"):
        layer.merge()


def unmerge_lora(model: AnyModel) -> None:
    """:meth:`LoRALinear.unmerge` on every adapter (idempotent). No LoRA layers → ValueError."""
    for _, layer in _require_lora(model, "unmerge_lora"):
        layer.unmerge()


@contextmanager
def disable_lora(model: AnyModel) -> Iterator[AnyModel]:
    """Context manager: inside the block every adapter is off and ``model`` computes its base
    model exactly (merged adapters are unmerged for the block and merged again after).

    The reference model of DPO with a LoRA policy: ``with disable_lora(policy): ref =
    policy(x)`` — no second copy of the weights. It does not turn off autograd (wrap in
    ``torch.no_grad()`` for a reference pass). Restores each adapter's previous state on exit,
    also after an exception; nests. No LoRA layers → ValueError.
    """
    layers = [layer for _, layer in _require_lora(model, "disable_lora")]
    before = [(layer.enabled, layer.merged) for layer in layers]
    try:
        for layer in layers:
            layer.unmerge()
            layer.enabled = False
        yield model
    finally:
        for layer, (enabled, merged) in zip(layers, before):
            layer.enabled = enabled
            if merged:
                layer.merge()
