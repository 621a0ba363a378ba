"""Data-parallel training on PyTorch's own distributed engine: DDP or FSDP2, DCP checkpoints.

Launch with ``torchrun --nproc-per-node N ...`` (or ``g2c train --nproc N``). Every process
reads its rank and the world size from the torchrun environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); :func:`init_distributed` joins the process
group with **gloo** on CPU and **NCCL** on CUDA, chosen from the device.

g2c models are g2c ``Module`` trees, not ``torch.nn.Module`` ones. :func:`wrap_model` builds the
bridge torch's wrappers need: a ``torch.nn.Module`` "shim" that registers the model's trainable
tensors as its parameters (the g2c attributes are pointed at the very same ``nn.Parameter``
objects, so the g2c forward uses what the wrapper manages) and whose ``forward(fn, *args)``
runs ``fn(*args)`` — any loss function over the model (``model(x)``, ``forward_hidden`` ...).

- ``strategy="ddp"``: one shim over every parameter, wrapped in
  ``torch.nn.parallel.DistributedDataParallel`` (rank 0's weights broadcast at start, bucketed
  gradient all-reduce overlapping backward, ``no_sync`` for gradient accumulation). Bucket
  size (``bucket_cap_mb``): torch's 25 MB on GPUs, where the all-reduce of one bucket overlaps
  the backward of the next; on CPU (gloo) one bucket holding every gradient — the cores that
  would overlap communication are busy computing, so fewer, larger all-reduces win (measured
  in bench/distributed.py: 29.3 → 27.2 ms per step on the classic small config, 2 ranks).
- ``strategy="fsdp"``: FSDP2 (``torch.distributed.fsdp.fully_shard``, ZeRO-3): one shim per
  transformer block (``model.blocks``), each ``fully_shard``-ed, then the root shim over the
  rest (embeddings, final norm, head). The g2c block is re-routed through its shim's
  ``__call__`` so FSDP's hooks all-gather the block's parameters just before its forward
  (and backward) and free them after; before running the block the shim writes the gathered
  parameters into the g2c attributes. Parameters, gradients and optimizer moments are
  ``DTensor`` shards (each rank holds 1/N).

Checkpoints under distribution go through ``torch.distributed.checkpoint`` (DCP): a directory
with one shard file per rank plus ``.metadata`` and ``trainer.pt`` (rank 0's plain metadata),
written into a temporary directory and renamed (atomic). Tensors are keyed by their g2c names,
so DCP reshards on load: a checkpoint written by 2 ranks loads into 1 process (no process
group needed) or into 4, and a single-process ``torch.save`` checkpoint loads into N ranks.

Sources: Li et al. 2020 (PyTorch DDP); Zhao et al. 2023 (PyTorch FSDP); Rajbhandari et al.
2020 (ZeRO); torchtitan's per-block ``fully_shard`` recipe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from g2c.training.clip import clip_grad_norm_

STRATEGIES = ("ddp", "fsdp")
TRAINER_FILE = "trainer.pt"  # rank 0's plain metadata inside a DCP checkpoint directory


# -- the process group ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` (0..world_size-1), ``world_size``, ``local_rank``
    (rank on this node; the CUDA device index), ``backend`` ("gloo" | "nccl") and ``device``
    (the torch.device this rank trains on)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that logs, evaluates into files and writes metadata)."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the torchrun environment (``WORLD_SIZE`` and ``RANK``) is set."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend_for(device: str | torch.device) -> str:
    """ "nccl" for a CUDA device, "gloo" otherwise (CPU)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(device: str = "auto") -> DistContext | None:
    """Join the process group described by the torchrun environment; None outside torchrun.

    ``device`` "auto" trains on ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU;
    "cpu" forces gloo on the CPU. The backend follows the device (:func:`backend_for`). Already
    initialised (a second call) → the existing group's context. A malformed environment →
    ValueError naming the variable.
    """
    if not launched_by_torchrun():
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc})") from exc
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    backend = backend_for(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, backend, dev)


def current_context() -> DistContext | None:
    """The context of an initialised process group (None when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    backend = dist.get_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistContext(rank, world, local_rank, str(backend), device)


def is_main_process() -> bool:
    """True outside a process group and on rank 0 inside one."""
    ctx = current_context()
    return ctx is None or ctx.is_main


def rank0_print(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (every process prints outside a process group)."""
    if is_main_process():
        print(*args, **kwargs)


def rank0_only(fn: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """``fn`` on rank 0 (and outside a process group); None on the other ranks — for callbacks
    such as ``on_log`` that write files or print."""
    return fn if is_main_process() else None


def cleanup_distributed() -> None:
    """Destroy the process group if one is initialised (call at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_world_divides(batch_size: int, world_size: int, name: str = "batch_size") -> int:
    """The per-rank share ``batch_size // world_size``; ValueError naming ``name`` when the
    world size does not divide it."""
    if batch_size % world_size:
        raise ValueError(
            f"{name} ({batch_size}) must be divisible by the world size ({world_size}): each "
            f"rank takes an equal slice of the global batch; use a {name} that is a multiple "
            f"of {world_size} or another number of processes"
        )
    return batch_size // world_size


def check_nproc(nproc: int, cores: int | None = None, gpus: int | None = None) -> None:
    """ValueError unless 1 <= ``nproc`` <= the CPU cores (``os.cpu_count()``) — more CPU
    processes than cores only time-slice the same cores — or, when ``gpus`` is given (training
    on CUDA), <= the GPUs (one process per GPU). Checked before torchrun starts."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be an integer >= 1, got {nproc!r}")
    if gpus is not None and nproc > gpus:
        raise ValueError(
            f"--nproc {nproc} exceeds the {gpus} GPU(s) of this machine; use --nproc {gpus} "
            "or fewer (one process per GPU), or --device cpu"
        )
    if gpus is None and nproc > cores:
        raise ValueError(
            f"--nproc {nproc} exceeds the {cores} CPU cores of this machine; use --nproc "
            f"{cores} or fewer (on GPUs: one process per GPU)"
        )


# -- the nn.Module bridge ---------------------------------------------------------------------
def _attribute_slots(module: Any) -> dict[int, tuple[torch.Tensor, list[tuple[Any, str]]]]:
    """id(tensor) → (tensor, [(owner, attribute)]) for every trainable tensor held directly as
    an attribute of a g2c module in the tree (tied tensors list every owner)."""
    slots: dict[int, tuple[torch.Tensor, list[tuple[Any, str]]]] = {}
    for _, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, torch.Tensor) and value.requires_grad:
                slots.setdefault(id(value), (value, []))[1].append((sub, attr))
    return slots


class _Shim(torch.nn.Module):
    """An ``nn.Module`` whose parameters are a g2c (sub)model's tensors; ``forward(fn, *a)``
    writes the current parameter objects into the g2c attributes, then returns ``fn(*a)``."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: dict[str, list[tuple[Any, str]]] = {}

    def adopt(self, key: str, tensor: torch.Tensor, owners: list[tuple[Any, str]]) -> None:
        param = torch.nn.Parameter(tensor.detach(), requires_grad=True)
        self._parameters[key] = param
        self.slots[key] = owners
        for owner, attr in owners:
            setattr(owner, attr, param)

    def sync_attributes(self) -> None:
        for key, param in self._parameters.items():
            for owner, attr in self.slots[key]:
                setattr(owner, attr, param)

    def forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.sync_attributes()
        return fn(*args, **kwargs)


def _route_through(block: Any, shim: _Shim) -> None:
    """Make ``block(...)`` go through ``shim(...)`` (FSDP's hooks) keeping the object (and so
    its g2c name and state_dict keys): the block's class becomes a subclass whose ``__call__``
    calls the shim with the block's own forward."""
    cls = type(block)

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["_fsdp_shim"](cls.forward.__get__(self), *args, **kwargs)

    block.__dict__["_fsdp_shim"] = shim  # not a tensor / g2c Module: invisible to the walk
    block.__class__ = type(f"FSDPRouted{cls.__name__}", (cls,), {"__call__": __call__})


class Distributed:
    """A g2c model wrapped for data-parallel training (built by :func:`wrap_model`).

    Attributes: ``strategy`` ("ddp" | "fsdp"), ``context`` (:class:`DistContext`), ``model``
    (the g2c model), ``module`` (the torch wrapper: DDP or the FSDP root), ``names`` (g2c
    parameter names in ``model.named_parameters()`` order) and ``params`` (the tensors the
    optimizer must update, same order: the model's own under DDP, DTensor shards under FSDP).
    """

    def __init__(
        self, strategy: str, context: DistContext, model: Any, module: torch.nn.Module,
        names: list[str], params: list[torch.Tensor], shims: list[_Shim],
    ) -> None:  # fmt: skip
        self.strategy, self.context, self.model, self.module = strategy, context, model, module
        self.names, self.params, self._shims = names, params, shims

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self.context.rank

    @property
    def world_size(self) -> int:
        """Number of processes."""
        return self.context.world_size

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` through the wrapper (so its forward hooks run): use for every forward
        of the model — training losses and evaluation alike."""
        return self.module(fn, *args)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """No gradient communication inside (accumulating micro-batches); the backward of the
        last micro-batch, outside, synchronises the accumulated gradients."""
        if self.strategy == "ddp":
            with self.module.no_sync():
                yield
            return
        self.module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.module.set_requires_gradient_sync(True)

    def clip_grad_norm_(self, max_norm: float) -> float:
        """Global gradient L2 norm before clipping, gradients scaled to ``max_norm`` (the same
        formula as ``g2c.training.clip_grad_norm_``; DTensor shards → torch's implementation,
        which reduces the norm over ranks)."""
        if self.strategy == "ddp":
            return clip_grad_norm_(self.params, max_norm)
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return float(norm)

    def all_mean(self, values: list[float]) -> list[float]:
        """Each value averaged over the ranks (one all-reduce)."""
        return self.all_mean_async(values)()

    def all_mean_async(self, values: list[float]) -> Callable[[], list[float]]:
        """Start averaging ``values`` over the ranks; returns a function that waits and gives
        the means. The all-reduce runs while the caller goes on (the training step starts it
        before the optimizer update, which it then overlaps)."""
        t = torch.tensor(values, dtype=torch.float64)
        if self.context.backend == "nccl":
            t = t.to(self.context.device)
        work = dist.all_reduce(t, async_op=True)

        def result() -> list[float]:
            work.wait()
            return (t / self.world_size).cpu().tolist()

        return result

    def broadcast_int(self, value: int | None) -> int:
        """Rank 0's integer on every rank (one small tensor broadcast; other ranks pass
        anything, e.g. None)."""
        t = torch.tensor([0 if value is None else int(value)], dtype=torch.int64)
        if self.context.backend == "nccl":
            t = t.to(self.context.device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, batch: Any, size: int) -> Any:
        """This rank's contiguous slice of ``size // world_size`` examples of a ``size``-example
        batch (dim 0 of every tensor)."""
        per = size // self.world_size
        lo = self.rank * per
        return _map(lambda t: t[lo : lo + per], batch)

    def tensor_state(self) -> dict[str, torch.Tensor]:
        """g2c name → the wrapped parameter (DTensor shard under FSDP) for DCP."""
        return dict(zip(self.names, self.params))

    def full_state(self) -> dict[str, torch.Tensor]:
        """g2c name → the full (unsharded) parameter; a collective under FSDP (every rank must
        call it)."""
        out = {}
        for name, p in zip(self.names, self.params):
            full = p.full_tensor() if hasattr(p, "full_tensor") else p
            out[name] = full.detach()
        return out

    def unwrap(self) -> Any:
        """Write the full weights back into plain tensors of the g2c model and return it (a
        collective under FSDP). After this the model works on its own (sampling, export);
        training through this wrapper is over."""
        full = self.full_state()
        slots = {}
        for shim in self._shims:
            for key, owners in shim.slots.items():
                slots[id(shim._parameters[key])] = owners
        for name, p in zip(self.names, self.params):
            tensor = full[name].clone().requires_grad_(True)
            for owner, attr in slots.get(id(p), []):
                setattr(owner, attr, tensor)
        for block in getattr(self.model, "blocks", []) or []:
            cls = type(block)
            if cls.__name__.startswith("FSDPRouted"):
                block.__class__ = cls.__mro__[1]
                block.__dict__.pop("_fsdp_shim", None)
        return self.model


def _map(fn: Callable[[torch.Tensor], Any], batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_map(fn, b) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_map(fn, b) for b in batch)
    if isinstance(batch, dict):
        return {k: _map(fn, v) for k, v in batch.items()}
    return batch


def check_shardable(model: Any, strategy: str) -> None:
    """ValueError before any wrapping when ``strategy`` cannot apply to ``model``: an unknown
    strategy, or FSDP on a model without transformer blocks (``model.blocks``, a non-empty
    list of g2c modules) — FSDP gathers one block at a time; a model without blocks has nothing
    to shard per block, use DDP."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if strategy == "fsdp":
        blocks = getattr(model, "blocks", None)
        if not isinstance(blocks, list) or not blocks:
            raise ValueError(
                f"strategy 'fsdp' shards a model block by block, but {type(model).__name__} "
                "has no transformer blocks (model.blocks); it is too small to shard — use "
                "strategy 'ddp'"
            )


def ddp_bucket_cap_mb(model: Any, context: DistContext) -> float:
    """DDP's gradient bucket size in MB: torch's default 25 on accelerators; on CPU (gloo)
    large enough for every gradient in one bucket (see the module docstring)."""
    if context.backend != "gloo":
        return 25.0
    grad_bytes = sum(t.numel() * t.element_size() for _, t in model.named_parameters())
    return max(25.0, grad_bytes / 2**20 + 1.0)


def wrap_model(
    model: Any, strategy: str, context: DistContext, *, bucket_cap_mb: float | None = None
) -> Distributed:
    """Wrap a g2c model for data parallelism; see the module docstring.

    ``strategy`` "ddp" → ``DistributedDataParallel`` over one shim (``bucket_cap_mb``: its
    gradient bucket size, default :func:`ddp_bucket_cap_mb`); "fsdp" → ``fully_shard``
    per block of ``model.blocks`` and on the root. The model's trainable tensors become
    ``nn.Parameter`` objects (same values, same g2c names). Bad strategy / unshardable model →
    ValueError (:func:`check_shardable`) before anything changes.
    """
    check_shardable(model, strategy)
    names = [n for n, _ in model.named_parameters()]
    by_id = {id(t): n for n, t in model.named_parameters()}
    key_of: dict[str, tuple[_Shim, str]] = {}
    shims: list[_Shim] = []

    def adopt_all(shim: _Shim, slots: dict, skip: set[int]) -> None:
        for tid, (tensor, owners) in slots.items():
            if tid in skip or tid not in by_id:
                continue
            key = by_id[tid].replace(".", "__")
            shim.adopt(key, tensor, owners)
            key_of[by_id[tid]] = (shim, key)

    if strategy == "ddp":
        root = _Shim()
        adopt_all(root, _attribute_slots(model), set())
        shims.append(root)
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        # no buffers are registered (g2c buffers are deterministic): nothing to broadcast
        cap = ddp_bucket_cap_mb(model, context) if bucket_cap_mb is None else bucket_cap_mb
        module: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(
            root, device_ids=device_ids, bucket_cap_mb=cap
        )
    else:
        from torch.distributed.fsdp import fully_shard

        block_ids: set[int] = set()
        block_shims = []
        for block in model.blocks:
            shim = _Shim()
            slots = _attribute_slots(block)
            adopt_all(shim, slots, set())
            block_ids |= set(slots)
            block_shims.append(shim)
        root = _Shim()
        root.blocks = torch.nn.ModuleList(block_shims)
        adopt_all(root, _attribute_slots(model), block_ids)
        shims = [root, *block_shims]
        for block, shim in zip(model.blocks, block_shims):
            fully_shard(shim)
            _route_through(block, shim)
        fully_shard(root)
        module = root
    params = [key_of[n][0]._parameters[key_of[n][1]] for n in names]
    return Distributed(strategy, context, model, module, names, params, shims)


# -- checkpoints ------------------------------------------------------------------------------
def is_dcp_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a DCP checkpoint directory (has ``.metadata``)."""
    return (Path(path) / ".metadata").is_file()


def save_dcp(path: str | Path, tensors: dict[str, Any], meta: dict, context: DistContext) -> Path:
    """Write ``tensors`` (name → tensor / DTensor shard) with ``torch.distributed.checkpoint``
    and ``meta`` (plain values, rank 0) as ``path/trainer.pt``, atomically: every rank writes
    into ``path.tmp``; rank 0 then swaps it in place of ``path``. A collective: every rank
    must call it with the same ``path``."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if context.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save(tensors, checkpoint_id=str(tmp))
    if context.is_main:
        torch.save(meta, tmp / TRAINER_FILE)
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.is_dir():
            path.rename(old)
        elif path.exists():
            path.unlink()
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return path


def load_dcp(path: str | Path, tensors: dict[str, Any]) -> dict:
    """Fill ``tensors`` (name → destination tensor: full tensors in one process, DTensor shards
    under FSDP) in place from the DCP checkpoint ``path``; returns rank 0's metadata
    (``trainer.pt``). Works with or without a process group (DCP reshards). A name the
    checkpoint lacks or a shape that differs → ValueError naming it."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    reader = dcp.FileSystemReader(str(path))
    stored = reader.read_metadata().state_dict_metadata
    missing = sorted(set(tensors) - set(stored))
    if missing:
        raise ValueError(
            f"{path}: checkpoint lacks {missing[:5]}; it was written for another model "
            "configuration (use that configuration, or --fresh to start over)"
        )
    for name, t in tensors.items():
        size = getattr(stored[name], "size", None)
        if size is not None and tuple(size) != tuple(t.shape):
            raise ValueError(
                f"{path}: {name} has shape {tuple(size)} in the checkpoint, {tuple(t.shape)} in "
                "this model: a checkpoint from a different model configuration"
            )
    no_dist = not (dist.is_available() and dist.is_initialized())
    with warnings.catch_warnings():  # "assuming ... a single process": that is the intent
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load")
        dcp.load(tensors, checkpoint_id=str(path), no_dist=no_dist)
    return torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True)


def copy_full_into(dest: torch.Tensor, full: torch.Tensor) -> None:
    """Copy a full tensor into ``dest`` in place: a plain tensor directly, a DTensor shard by
    slicing this rank's part locally (``distribute_tensor`` with no communication)."""
    with torch.no_grad():
        if hasattr(dest, "device_mesh"):
            from torch.distributed.tensor import distribute_tensor

            part = distribute_tensor(
                full.to(dest.device, dest.dtype), dest.device_mesh, dest.placements,
                src_data_rank=None,
            )  # fmt: skip
            dest.to_local().copy_(part.to_local())
        else:
            dest.copy_(full)


__all__ = [
    "STRATEGIES",
    "DistContext",
    "Distributed",
    "backend_for",
    "check_nproc",
    "check_shardable",
    "check_world_divides",
    "cleanup_distributed",
    "copy_full_into",
    "current_context",
    "env_world_size",
    "init_distributed",
    "is_dcp_checkpoint",
    "is_main_process",
    "launched_by_torchrun",
    "load_dcp",
    "rank0_only",
    "rank0_print",
    "save_dcp",
    "wrap_model",
]
