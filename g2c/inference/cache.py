"""A pre-allocated KV cache: every layer's keys and values live in one buffer written in place.

The concatenating :class:`g2c.transformer.KVCache` (module 11) grows its tensors with
``torch.cat`` at every token — O(T) copying per token, O(T²) over a generation. Here each layer
owns two buffers (B, H_kv, max_len, head_dim) allocated once; a forward writes the new keys /
values at their indices (``index_put``) and attends over a view of the first ``T_k`` columns.

Rows are independent, which is what batching needs:

- ``ptr[b]``: the next free column of row b (its write pointer); ``length`` = max over rows.
- ``valid`` (B, max_len) bool: which columns hold real tokens. Left padding and free slots are
  False, so :func:`g2c.attention.cache_attention_mask` hides them.
- ``n_real[b]``: real tokens in row b = the position of its next token, so positions (learned
  table or RoPE) start at 0 at a row's first real token whatever padding precedes it.

A forward goes ``prepare`` (plan write indices, positions and the mask; mark new columns valid)
→ the layers write and attend → ``commit`` (advance the pointers). When every row has the same
pointer and no padding (batch 1, or equal-length prompts) the plan is the fast one: a plain
offset for the positions and no mask, so SDPA runs its causal / unmasked kernel.
``slot(b)`` is a one-row view sharing the buffers, to prefill a request that joins a running
batch (continuous batching) into its own row.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from g2c.attention import cache_attention_mask
from g2c.transformer import TransformerLM


class CachePlan(NamedTuple):
    """What :meth:`StaticKVCache.prepare` tells the model: ``offset`` (int, position of the
    first new token when all rows agree), ``positions`` ((B, T) long or None), ``mask`` ((B, 1,
    T, T_k) bool True = hidden, or None), ``end`` (1 + the largest position, host int)."""

    offset: int
    positions: torch.Tensor | None
    mask: torch.Tensor | None
    end: int


class StaticLayerKVCache:
    """One layer's view of a :class:`StaticKVCache`: ``append(k, v)`` writes in place,
    ``keys`` / ``values`` are (B, H_kv, T_k, head_dim) views, ``length`` the owner's."""

    def __init__(self, owner: StaticKVCache, k_buf: torch.Tensor, v_buf: torch.Tensor) -> None:
        self.owner = owner
        self.k_buf = k_buf
        self.v_buf = v_buf

    @property
    def length(self) -> int:
        """Cached columns before the current forward (the owner's ``length``)."""
        return self.owner.length

    @property
    def keys(self) -> torch.Tensor:
        """(B, H_kv, T_k, head_dim) view of the written columns (T_k: this forward's end)."""
        return self.k_buf[:, :, : self.owner._t_k]

    @property
    def values(self) -> torch.Tensor:
        """(B, H_kv, T_k, head_dim) view, like :attr:`keys`."""
        return self.v_buf[:, :, : self.owner._t_k]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> StaticLayerKVCache:
        """Write k, v (B, H_kv, T_new, head_dim) at the planned columns (no allocation)."""
        self.owner._write(self.k_buf, k)
        self.owner._write(self.v_buf, v)
        return self

    def __repr__(self) -> str:
        return f"StaticLayerKVCache(length={self.length}, buffer={tuple(self.k_buf.shape)})"


class StaticKVCache:
    """Pre-allocated KV cache for a :class:`~g2c.transformer.TransformerLM`.

    ``StaticKVCache(model, batch_size, max_len=None, *, dtype=None, device=None)``: one
    (batch_size, H_kv, max_len, head_dim) key and value buffer per layer (zeros), max_len
    default ``model.max_seq_len``, dtype/device default the model's. Pass it wherever a
    ``KVCache`` goes: ``model.forward_prefill(ids, cache, attention_mask=...)``,
    ``model.forward_cached``; ``attention_mask`` (B, T_new) marks the NEW tokens real (1) or
    padding (0). Attributes ``ptr``, ``n_real`` (lists of ints), ``valid`` (B, max_len) bool,
    ``layers``; ``length`` = ``len(cache)`` = the longest row's columns. ``crop(length)``,
    ``reset()``, ``reset_rows(rows)``, ``slot(b)``, ``reorder(index)``.

    Bad sizes → ValueError; a forward past ``max_len`` → ValueError naming max_len.
    """

    def __init__(
        self,
        model: TransformerLM,
        batch_size: int,
        max_len: int | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        max_len = model.max_seq_len if max_len is None else max_len
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int, got {max_len!r}")
        attn = model.blocks[0].attn
        ref = model.token_embed.weight
        dtype = ref.dtype if dtype is None else dtype
        device = ref.device if device is None else torch.device(device)
        shape = (batch_size, attn.num_kv_heads, max_len, attn.head_dim)
        bufs = [
            (torch.zeros(shape, dtype=dtype, device=device),
             torch.zeros(shape, dtype=dtype, device=device))
            for _ in model.blocks
        ]  # fmt: skip
        self._init(bufs, torch.zeros(batch_size, max_len, dtype=torch.bool, device=device))

    def _init(self, bufs: list[tuple[torch.Tensor, torch.Tensor]], valid: torch.Tensor) -> None:
        self.layers = [StaticLayerKVCache(self, k, v) for k, v in bufs]
        self.valid = valid
        self.batch_size, self.max_len = valid.shape
        self.ptr = [0] * self.batch_size
        self.n_real = [0] * self.batch_size
        self._parent: tuple[StaticKVCache, int] | None = None
        self._t_k = 0
        self._index: torch.Tensor | None = None  # (B, T_new) write columns, or None: uniform
        self._start = 0
        self._advance: list[int] = []
        #: rows that take part in the next forward (None: all); the others are idle slots
        self.advance_rows: list[bool] | None = None

    @property
    def _clean(self) -> bool:
        """Every row has the same pointer and every column before it is a real token (the
        number of real tokens equals the pointer): the fast plan applies."""
        return len(set(self.ptr)) == 1 and self.ptr == self.n_real

    # -- sizes ------------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Columns in use: the largest write pointer over the rows."""
        return max(self.ptr)

    def __len__(self) -> int:
        return self.length

    @property
    def device(self) -> torch.device:
        """The device of the key/value buffers."""
        return self.valid.device

    # -- the forward protocol (called by TransformerLM.forward_prefill) -----------------------
    def prepare(
        self,
        B: int,
        T: int,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        advance: list[bool] | None = None,
        max_positions: int | None = None,
    ) -> CachePlan:
        """Plan a forward of T new tokens per row: write columns, positions, mask.

        ``attention_mask`` (B, T) 1 = real token, 0 = padding; ``advance`` (B bools, default
        ``advance_rows``, else all True): a row with False is idle — its T tokens are written at its pointer,
        marked invalid, and the pointer does not move (free slots in continuous batching).
        ``max_positions``: the model's ``max_seq_len``; a position at or past it → ValueError.
        Every check runs before the cache changes.
        """
        if B != self.batch_size:
            raise ValueError(
                f"the cache holds {self.batch_size} rows but the input has batch {B}; build the "
                "cache with StaticKVCache(model, batch_size=B) or use cache.slot(row)"
            )
        if T < 1:
            raise ValueError("forward_prefill needs at least one new token (T_new >= 1)")
        advance = self.advance_rows if advance is None else advance
        adv = [True] * B if advance is None else [bool(a) for a in advance]
        if len(adv) != B:
            raise ValueError(f"advance must have {B} entries, got {len(adv)}")
        end = max(self.ptr[b] + T for b in range(B))
        if end > self.max_len:
            raise ValueError(
                f"the cache is full: {self.length} columns used + {T} new > max_len "
                f"{self.max_len}; build a larger StaticKVCache or crop()"
            )
        dev = self.device
        new_mask = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (B, T):
                raise ValueError(
                    f"attention_mask for a StaticKVCache covers the new tokens: (B, T_new) = "
                    f"{(B, T)}, got {tuple(attention_mask.shape)}"
                )
            new_mask = attention_mask.to(device=dev, dtype=torch.bool)
            if bool(new_mask.all()):
                new_mask = None
        if position_ids is not None and tuple(position_ids.shape) != (B, T):
            raise ValueError(
                f"position_ids must be (B, T_new) = {(B, T)}, got {tuple(position_ids.shape)}"
            )
        if position_ids is None:
            top = max(n + T for n in self.n_real)
        else:
            top = int(position_ids.max()) + 1
        if max_positions is not None and top > max_positions:
            raise ValueError(
                f"sequence length {top} exceeds max_seq_len {max_positions}; crop the prompt "
                f"or lower max_new_tokens"
            )
        uniform = len(set(self.ptr)) == 1 and all(adv)
        self._advance = [T if a else 0 for a in adv]
        self._t_k = end
        if uniform and self._clean and new_mask is None and position_ids is None:
            self._index, self._start = None, self.ptr[0]  # fast plan: slice writes, no mask
            self.valid[:, self._start : end] = True
            return CachePlan(self._start, None, None, end)
        ptr = torch.tensor(self.ptr, device=dev)
        index = ptr[:, None] + torch.arange(T, device=dev)  # (B, T) columns to write
        real = torch.ones(B, T, dtype=torch.bool, device=dev) if new_mask is None else new_mask
        real = real & torch.tensor(adv, device=dev)[:, None]
        self.valid.scatter_(1, index, real)
        self._index = index
        if position_ids is None:
            before = torch.tensor(self.n_real, device=dev)[:, None]
            positions = (before + real.long().cumsum(-1) - 1).clamp(min=0)
        else:
            positions = position_ids.to(device=dev, dtype=torch.long)
        mask = cache_attention_mask(self.valid[:, :end], index)
        self._pending_real = real.sum(-1).tolist()
        return CachePlan(0, positions, mask, top)

    def _write(self, buf: torch.Tensor, new: torch.Tensor) -> None:
        """Write new (B, H, T, d) into buf (B, H, max_len, d) at the planned columns."""
        if self._index is None:
            buf[:, :, self._start : self._start + new.shape[2]] = new
        else:
            rows = torch.arange(buf.shape[0], device=buf.device)[:, None]  # (B, 1)
            buf[rows, :, self._index] = new.transpose(1, 2)  # (B, T, H, d) at [b, :, col]

    def commit(self) -> None:
        """Advance the pointers after a forward (called by the model)."""
        if self._index is None:
            T = self._advance[0]
            self.ptr = [p + T for p in self.ptr]
            self.n_real = [n + T for n in self.n_real]
        else:
            self.ptr = [p + a for p, a in zip(self.ptr, self._advance)]
            self.n_real = [n + r for n, r in zip(self.n_real, self._pending_real)]
        if self._parent is not None:  # a view of rows [row, row + n): update the parent
            parent, row = self._parent
            n = len(self.ptr)
            parent.ptr[row : row + n], parent.n_real[row : row + n] = self.ptr, self.n_real
        self._index = None

    # -- editing ------------------------------------------------------------------------------
    def crop(self, length: int) -> StaticKVCache:
        """Drop every column from ``length`` on (0 ≤ length ≤ ``self.length``, else
        ValueError), e.g. rejected draft tokens; returns self. Buffers keep their size."""
        if not isinstance(length, int) or not 0 <= length <= self.length:
            raise ValueError(f"length must be an int in [0, {self.length}], got {length!r}")
        self.valid[:, length:] = False
        self.ptr = [min(p, length) for p in self.ptr]
        counts = self.valid[:, :length].sum(-1).tolist() if length else [0] * self.batch_size
        self.n_real = [int(c) for c in counts]
        return self

    def reset(self) -> None:
        """Forget every row (buffers kept)."""
        self.valid.zero_()
        self.ptr = [0] * self.batch_size
        self.n_real = [0] * self.batch_size

    def reset_rows(self, rows: list[int]) -> None:
        """Free the given rows (a finished request's slot): pointer 0, nothing valid."""
        for b in rows:
            self.valid[b] = False
            self.ptr[b] = 0
            self.n_real[b] = 0

    def slot(self, row: int) -> StaticKVCache:
        """A one-row cache sharing this cache's buffers (views): a forward on it writes row
        ``row`` and updates this cache's pointers. Row outside [0, batch_size) → ValueError."""
        if not isinstance(row, int) or not 0 <= row < self.batch_size:
            raise ValueError(f"row must be in [0, {self.batch_size}), got {row}")
        return self.rows(row, row + 1)

    def rows(self, start: int, stop: int) -> StaticKVCache:
        """Rows [start, stop) as a cache sharing this cache's buffers (views): a forward on it
        writes those rows and updates this cache's pointers — the engine decodes only the
        range of slots in use, not every slot. ``0 <= start < stop <= batch_size``, else
        ValueError."""
        if not (isinstance(start, int) and isinstance(stop, int)
                and 0 <= start < stop <= self.batch_size):  # fmt: skip
            raise ValueError(f"rows must satisfy 0 <= start < stop <= {self.batch_size}, got "
                             f"{start}, {stop}")  # fmt: skip
        view = StaticKVCache.__new__(StaticKVCache)
        bufs = [(ly.k_buf[start:stop], ly.v_buf[start:stop]) for ly in self.layers]
        view._init(bufs, self.valid[start:stop])
        view.ptr, view.n_real = self.ptr[start:stop], self.n_real[start:stop]
        view._parent = (self, start)
        return view

    def reorder(self, index: torch.Tensor) -> StaticKVCache:
        """Keep batch rows ``index`` (1-D LongTensor) — copies the buffers (beam search)."""
        idx = index.tolist()
        bufs = [(ly.k_buf[index], ly.v_buf[index]) for ly in self.layers]
        ptr, n_real = [self.ptr[i] for i in idx], [self.n_real[i] for i in idx]
        self._init(bufs, self.valid[index])
        self.ptr, self.n_real = ptr, n_real
        return self

    def nbytes(self) -> int:
        """Bytes held by the key/value buffers."""
        return sum(ly.k_buf.nbytes + ly.v_buf.nbytes for ly in self.layers)

    def __repr__(self) -> str:
        return (
            f"StaticKVCache(num_layers={len(self.layers)}, batch_size={self.batch_size}, "
            f"max_len={self.max_len}, length={self.length})"
        )


def new_cache(model: Any, batch_size: int = 1, max_len: int | None = None) -> StaticKVCache:
    """``StaticKVCache(model, batch_size, max_len)`` (a shorthand used by the engine)."""
    return StaticKVCache(model, batch_size, max_len)
