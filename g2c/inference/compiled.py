"""A compiled decode step for the engine: one ``torch.compile``-d function per model.

The engine's readable decode path is ``model.forward_prefill(idx (B, 1), cache)``: per token
it runs ~20 small tensor ops per block between the weight products (norms, RoPE, residual adds,
dtype casts) plus the cache's Python bookkeeping. On a CPU at batch 1 those small ops cost
about as much as the products of a 4-bit model: each reads its few kilobytes from caches that
the weight stream keeps cold. :class:`CompiledDecoder` keeps the bookkeeping in Python
(``StaticKVCache.prepare``/``commit`` plan the write columns, positions and mask, exactly as
for the eager path) and compiles the tensor work of one decode forward — embedding, every
pre-norm block (norm, Q/K/V, RoPE at the planned positions, the cache write, attention over
the columns in use, output projection, MLP) and the head — into one graph that inductor fuses
(gpt-fast's recipe; Chen et al.'s ``torch.compile``). Shapes are marked dynamic (rows in use,
columns in use), so one compilation serves the steps of a given kind: a lone request, several
rows, and a view of rows that does not start at slot 0 may each need one more (tens of seconds
each for SmolLM2; tests/test_inference.py checks the kinds a tiny model meets).

Same arithmetic as the eager path, in the same order per op (tests/test_inference.py: greedy
tokens identical, logits within 1e-4 with ``backend="eager"`` and with inductor); fused
elementwise kernels may round differently in the last bits. Post-norm blocks and models that
are not a g2c ``TransformerLM`` → ValueError at construction (the engine then stays eager).

Measured (bench/inference.py, SmolLM2, 1 thread): see docs/modules/16-inference.md.
"""

from __future__ import annotations

import itertools
import types
from typing import Any

import torch

#: backends ``torch.compile`` is asked for; "eager" traces the same graph without code
#: generation (fast to build: what unit tests use to check the wiring)
BACKENDS = ("inductor", "eager", "aot_eager")
_DECODERS = itertools.count()


def check_compilable(model: Any) -> None:
    """ValueError naming what the compiled decode step does not cover: a model that is not a
    g2c TransformerLM (``blocks``, ``forward_prefill``) or post-norm blocks."""
    if not (hasattr(model, "blocks") and hasattr(model, "forward_prefill")):
        raise ValueError(f"compile needs a g2c TransformerLM, got {type(model).__name__}")
    if any(getattr(b, "norm_position", "pre") != "pre" for b in model.blocks):
        raise ValueError("compile covers pre-norm blocks only; this model has post-norm blocks")


def decode_forward(
    model: Any,
    idx: torch.Tensor,
    positions: torch.Tensor,
    columns: torch.Tensor,
    hidden_mask: torch.Tensor,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
) -> torch.Tensor:
    """One decode forward, functional: the graph :class:`CompiledDecoder` compiles.

    ``idx`` (B, 1) token ids; ``positions`` (B, 1) long, each token's position (RoPE / learned
    table); ``columns`` (B, 1) long, the cache column each row writes; ``hidden_mask`` (B, 1, 1,
    T_k) bool, True = a key the row must not see; ``keys``/``values`` one (B, H_kv, T_k, hd)
    view per layer of the cache buffers (written in place at ``columns``). → logits (B, 1, V).
    """
    x = model._embed(idx, offset=0, positions=positions)  # (B, 1, D)
    rows = torch.arange(idx.shape[0], device=idx.device)[:, None]  # (B, 1)
    for block, k_buf, v_buf in zip(model.blocks, keys, values):
        attn = block.attn
        q, k, v = attn._project(block.ln1(x), positions=positions)  # (B, H(_kv), 1, hd)
        k_buf[rows, :, columns] = k.transpose(1, 2)  # (B, 1, H_kv, hd) at [b, :, col]
        v_buf[rows, :, columns] = v.transpose(1, 2)
        x = x + attn._merge_heads(attn._attend(q, k_buf, v_buf, hidden_mask))
        x = x + block.ffn(block.ln2(x))
    return model._head(x)


class CompiledDecoder:
    """``CompiledDecoder(model, backend="inductor")``: ``decoder(idx, cache)`` does what
    ``model.forward_prefill(idx, cache)`` does for one new token per row (idx (B, 1)) with a
    ``StaticKVCache`` (or a view of its rows) and returns logits (B, 1, V) — through one
    compiled graph. The first call compiles (tens of seconds for SmolLM2 on a CPU; seconds for
    a tiny model). Unknown backend or a model it does not cover → ValueError."""

    def __init__(self, model: Any, *, backend: str = "inductor") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        check_compilable(model)
        self.model = model
        self.backend = backend
        weight = model.token_embed.weight
        x = torch.zeros(1, 1, weight.shape[1], dtype=weight.dtype, device=weight.device)
        with torch.no_grad():  # build each attention's fused Q/K/V weight before tracing
            for block in model.blocks:
                block.attn._project(x)
        # static shapes except the rows and cache columns in use (marked dynamic per call);
        # dynamo keeps compiled graphs per code object: a private copy of decode_forward's code
        # gives each decoder (each model) its own graphs and guards, never another model's
        code = decode_forward.__code__.replace(co_name=f"decode_forward_{next(_DECODERS)}")
        fn = types.FunctionType(code, decode_forward.__globals__, code.co_name)
        self._fn = torch.compile(fn, backend=backend, dynamic=False)

    def __call__(self, idx: torch.Tensor, cache: Any) -> torch.Tensor:
        model = self.model
        B, T = idx.shape
        if T != 1:
            raise ValueError(f"the compiled decode step takes one token per row, got T={T}")
        model._check_idx(idx)
        plan = cache.prepare(B, 1, max_positions=model.max_seq_len)
        dev = idx.device
        if plan.positions is None:  # the fast plan: every row at the same column
            positions = torch.full((B, 1), plan.offset, dtype=torch.long, device=dev)
            columns = positions.clone()  # two tensors: an alias would be a second graph
            t_k = plan.offset + 1
            hidden = torch.zeros(B, 1, 1, t_k, dtype=torch.bool, device=dev)
        else:
            positions, columns = plan.positions, cache._index
            hidden = plan.mask  # (B, 1, 1, T_k), True = hidden
            t_k = hidden.shape[-1]
        keys = [layer.k_buf[:, :, :t_k] for layer in cache.layers]
        values = [layer.v_buf[:, :, :t_k] for layer in cache.layers]
        for t in (*keys, *values):  # (B, H_kv, T_k, hd)
            torch._dynamo.mark_dynamic(t, 0)
            torch._dynamo.mark_dynamic(t, 2)
        for t in (idx, positions, columns):
            torch._dynamo.mark_dynamic(t, 0)
        torch._dynamo.mark_dynamic(hidden, 0)
        torch._dynamo.mark_dynamic(hidden, 3)
        logits = self._fn(model, idx, positions, columns, hidden, keys, values)
        cache.commit()
        return logits

    def __repr__(self) -> str:
        return f"CompiledDecoder(backend={self.backend!r})"


__all__ = ["BACKENDS", "CompiledDecoder", "check_compilable", "decode_forward"]
