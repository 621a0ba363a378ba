"""Module: the container idea behind every layer (after torch.nn.Module, much smaller).

A Module owns tensors (parameters and buffers) and child Modules as plain attributes.
``parameters()`` walks the attributes in definition order and collects every tensor with
``requires_grad=True`` (children and lists/tuples/dicts of children included) — no registration
calls, no hooks. ``__call__`` runs ``forward``; ``train()``/``eval()`` set a ``training`` flag on
the whole tree; ``to(device)`` moves every tensor in place of the attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def _walk(obj: object, prefix: str) -> Iterator[tuple[str, object]]:
    """Yield (dotted name, value) for tensors and Modules reachable through containers."""
    if isinstance(obj, (torch.Tensor, Module)):
        yield prefix, obj
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _walk(item, f"{prefix}.{i}")
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _walk(item, f"{prefix}.{key}")


class Module:
    """Base class of g2c layers: parameters by attribute walk, train/eval flag, ``to(device)``.

    Subclasses set tensors and sub-modules as attributes in ``__init__`` and implement
    ``forward``. A tensor attribute with ``requires_grad=True`` is a parameter; one without is a
    buffer (moved by ``to`` and saved by ``state_dict`` but not trained).
    """

    training: bool = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the layer's output. Subclasses override this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    # -- traversal ---------------------------------------------------------------------
    def named_tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (dotted name, tensor) for every tensor in this module tree, parameters and
        buffers, in attribute order; a tensor shared by two attributes (tied weights) appears
        once, under its first name."""
        seen: set[int] = set()
        yield from self._named_tensors(prefix, seen)

    def _named_tensors(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, torch.Tensor]]:
        for attr, value in vars(self).items():
            name = f"{prefix}{attr}"
            for sub_name, obj in _walk(value, name):
                if isinstance(obj, Module):
                    yield from obj._named_tensors(sub_name + ".", seen)
                elif id(obj) not in seen:
                    seen.add(id(obj))
                    yield sub_name, obj

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (dotted name, tensor) for every trainable tensor (``requires_grad=True``)."""
        return ((n, t) for n, t in self.named_tensors() if t.requires_grad)

    def parameters(self) -> list[torch.Tensor]:
        """All trainable tensors of this module and its children (each once), as a list."""
        return [t for _, t in self.named_parameters()]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted name, module)`` for this module (name ``prefix``, ``""`` by default)
        and every sub-module, depth first in attribute order, like ``torch.nn.Module``.

        Children inside lists/tuples/dicts are named by index/key (``blocks.0.attn``). A module
        reachable twice (shared) is yielded once, under its first name.
        """
        seen: set[int] = set()
        yield from self._named_modules(prefix, seen)

    def _named_modules(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, Module]]:
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for attr, value in vars(self).items():
            name = f"{prefix}.{attr}" if prefix else attr
            for sub_name, obj in _walk(value, name):
                if isinstance(obj, Module):
                    yield from obj._named_modules(sub_name, seen)

    def modules(self) -> Iterator[Module]:
        """Yield this module and every sub-module (each once), depth first."""
        return (m for _, m in self.named_modules())

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return sum(p.numel() for p in self.parameters())

    # -- modes and devices --------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set ``training = mode`` on this module and all children; returns self."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Set evaluation mode (``training = False``) on the whole tree; returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Reset every parameter's ``.grad`` to None."""
        for p in self.parameters():
            p.grad = None

    @property
    def device(self) -> torch.device:
        """The ``torch.device`` of this module's tensors (its first parameter or buffer);
        ``cpu`` for a module that holds none. After ``to(device)`` every tensor is there."""
        for _, t in self.named_tensors():
            return t.device
        return torch.device("cpu")

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Module:
        """Move every parameter and buffer to ``device`` (and cast floating ones to ``dtype``)
        in place of the attribute; returns self (like ``torch.nn.Module.to``).

        Parameters keep ``requires_grad``; tied tensors stay tied: each distinct tensor is
        converted once and every attribute pointing at it is updated. A bad device string →
        RuntimeError from torch, raised before any attribute is changed.
        """
        if device is not None:
            device = torch.device(device)
        # id → (original, converted); holding the original keeps its id from being reused by
        # a new tensor while we walk (a shared sub-module is visited more than once).
        converted: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        done: set[int] = set()

        def convert(t: torch.Tensor) -> torch.Tensor:
            if id(t) in done:  # already converted (a shared module seen again)
                return t
            if id(t) not in converted:
                new_dtype = dtype if (dtype is not None and t.is_floating_point()) else None
                moved = t.detach().to(device=device, dtype=new_dtype)
                moved.requires_grad_(t.requires_grad)
                converted[id(t)] = (t, moved)
                done.add(id(moved))
            return converted[id(t)][1]

        for m in self.modules():
            for attr, value in list(vars(m).items()):
                setattr(m, attr, _map_tensors(value, convert))
        return self

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Name → tensor (detached) for every parameter and buffer."""
        return {n: t.detach() for n, t in self.named_tensors()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Copy tensors from ``state`` into this module in place.

        Missing or unexpected names (when ``strict``) or shape mismatches → ValueError naming
        them, raised before anything is copied. Tied tensors are filled once.
        """
        own = dict(self.named_tensors())
        if strict:
            missing = sorted(set(own) - set(state))
            unexpected = sorted(set(state) - set(own))
            if missing or unexpected:
                raise ValueError(
                    f"state_dict mismatch: missing={missing[:5]} unexpected={unexpected[:5]}"
                )
        for name, tensor in own.items():  # check every shape before copying anything
            if name in state and tuple(state[name].shape) != tuple(tensor.shape):
                raise ValueError(
                    f"state_dict[{name!r}] has shape {tuple(state[name].shape)}, "
                    f"expected {tuple(tensor.shape)}"
                )
        with torch.no_grad():
            for name, tensor in own.items():
                if name in state:
                    tensor.copy_(state[name].to(tensor.dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        """Short description shown by ``repr``."""
        return ""


def _map_tensors(value: object, fn):
    """Apply ``fn`` to tensors inside ``value`` (tensor, list, tuple, dict); keep the rest."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    if isinstance(value, tuple):
        return tuple(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value
