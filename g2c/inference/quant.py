"""Weight-only quantization: int8 per output channel, int4 group-wise (lessons 11-12, module 16).

The idea: a decode step on CPU reads every weight once per token, so its speed is bounded by
bytes of weights ÷ memory bandwidth. Storing a weight in 8 or 4 bits instead of 32 cuts those
bytes 4-8×; the activations stay in floating point ("weight-only", as in GPTQ/AWQ-style
inference kernels, llama.cpp's Q8_0/Q4_0, torchao's int8/int4 weight-only).

Schemes (W is (N, K) = (out_features, in_features), y = x Wᵀ + b):

- **int8, per output channel, symmetric**: ``scale[n] = max_k |W[n, k]| / 127``,
  ``q = round(W / scale).clamp(-127, 127)`` (int8), ``W ≈ q · scale``. Error ≤ scale/2 per
  element. Symmetric because weight rows are centred near zero and the int8 kernel takes no
  zero point.
- **int4, group-wise (32 or 64 consecutive inputs of one output row), asymmetric**: with only
  16 levels, fitting [min, max] of each group instead of [-absmax, absmax] halves the step for
  a skewed group, and torch's int4 kernel carries a per-group zero anyway (no extra cost).
  ``scale = (max - min) / 15``, ``zero = min + 8·scale`` (torch's convention: the value of the
  middle code), ``q = round((W - zero) / scale + 8).clamp(0, 15)``, ``W ≈ (q - 8)·scale + zero``.
  Error ≤ scale/2 plus the bf16 rounding of the zero point.

Scales (and zeros) are stored as bfloat16 values, the dtype torch's packed CPU kernels need to be
fast; the codes are computed with the rounded scales, so the reference path and the kernels
dequantize to the same numbers.

Two paths, chosen per layer by ``kernel`` (see :data:`KERNELS`):

- ``"reference"``: dequantize → ``F.linear`` in the activation dtype (readable, exact to the
  stored weights; slow: it rebuilds the fp32 matrix every call);
- ``"int8pack"``: ``torch.ops.aten._weight_int8pack_mm`` (bf16 activations and scales; needs
  in_features % 16 == 0); from :data:`INT8PACK_MAX_ROWS` rows on (prefill) the reference;
- ``"int4pack"``: ``torch.ops.aten._weight_int4pack_mm_for_cpu`` (bf16; weights pre-packed by
  ``_convert_weight_to_int4pack_for_cpu``, out_features % 16 == 0).

The kernels round the activations (and their output) to bfloat16, so they equal the reference
within bf16 rounding: |y_fast - y_ref| ≤ 2⁻⁷ · (|x| @ |Ŵ|ᵀ) (tested). ``quantize_model(...,
fast=True)`` (the default) uses the kernel of its mode where the shape allows it, else the
reference; ``bench/quant.py`` times every kernel at SmolLM2-135M's shapes.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from g2c.nn import Linear, Module

QUANT_MODES = ("int8", "int4")
INT4_GROUP_SIZES = (32, 64)
KERNELS = ("reference", "int8pack", "int4pack")
_KERNEL_DTYPE = torch.bfloat16  # what the packed CPU kernels are fast with
#: From this many rows (a prefill chunk) on, int8 layers dequantize and run ``F.linear``:
#: bench/quant.py measured ``_weight_int8pack_mm`` 1.2-1.8x slower than that at 128 rows on
#: SmolLM2's layer shapes (it is 2.5x faster at 1 row). int4pack stays fastest at 128 rows.
INT8PACK_MAX_ROWS = 64


# -- the schemes: quantize / dequantize (reference) ----------------------------------------------
def _as_bf16_values(t: torch.Tensor) -> torch.Tensor:
    """Round a float tensor to the nearest bfloat16 value, kept in float32."""
    return t.to(torch.bfloat16).float()


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: weight (N, K) float → (q (N, K) int8, scale (N,) fp32).

    ``scale`` holds bfloat16-representable values; ``weight ≈ q · scale[:, None]`` with error
    ≤ scale/2 per element. An all-zero row gets scale 1 (q = 0). Not 2-D → ValueError.
    """
    if weight.dim() != 2:
        raise ValueError(
            f"weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}"
        )
    w = weight.detach().float().contiguous()
    absmax = w.abs().amax(dim=1)  # (N,)
    scale = _as_bf16_values(torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax)))
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)  # (N, K)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q (N, K) int8, scale (N,) → weight (N, K) float32 = q · scale."""
    return q.float() * scale.float()[:, None]


def _check_group_size(group_size: Any, in_features: int) -> None:
    if isinstance(group_size, bool) or group_size not in INT4_GROUP_SIZES:
        raise ValueError(
            f"group_size must be one of {INT4_GROUP_SIZES} for int4, got {group_size!r}"
        )
    if in_features % group_size:
        raise ValueError(
            f"group_size {group_size} must divide in_features {in_features}; pick another "
            f"group_size from {INT4_GROUP_SIZES} or keep this layer in float (mode='int8')"
        )


def quantize_int4(
    weight: torch.Tensor, group_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric group-wise int4: weight (N, K) → (q (N, K) uint8 in [0, 15], scale (N, K/g),
    zero (N, K/g)) with ``weight ≈ (q - 8)·scale + zero`` per group of ``group_size`` inputs.

    scale and zero hold bfloat16-representable fp32 values. group_size not in (32, 64) or not
    dividing K → ValueError naming group_size.
    """
    if weight.dim() != 2:
        raise ValueError(
            f"weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}"
        )
    N, K = weight.shape
    _check_group_size(group_size, K)
    w = weight.detach().float().contiguous().view(N, K // group_size, group_size)  # (N, G, g)
    lo, hi = w.amin(dim=-1), w.amax(dim=-1)  # (N, G)
    scale = _as_bf16_values(((hi - lo) / 15.0).clamp(min=1e-8))
    zero = _as_bf16_values(lo + 8.0 * scale)  # the value of code 8
    q = torch.round((w - zero[..., None]) / scale[..., None] + 8.0).clamp(0, 15)
    return q.to(torch.uint8).view(N, K), scale, zero


def dequantize_int4(
    q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int
) -> torch.Tensor:
    """q (N, K) codes in [0, 15], scale and zero (N, K/g) → weight (N, K) float32."""
    N, K = q.shape
    w = (q.float().view(N, K // group_size, group_size) - 8.0) * scale.float()[..., None]
    return (w + zero.float()[..., None]).view(N, K)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(N, K) codes in [0, 15] → (N, K/2) uint8, even column in the low nibble."""
    return (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)


def _unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """(N, K/2) uint8 → (N, K) uint8 codes (inverse of :func:`_pack_nibbles`)."""
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(1)


# -- kernel availability ------------------------------------------------------------------------
def _has_op(name: str) -> bool:
    return hasattr(torch.ops.aten, name)


def kernel_supported(kernel: str, out_features: int, in_features: int) -> bool:
    """Whether ``kernel`` exists in this torch and accepts an (out, in) weight.

    int8pack needs in_features % 16 == 0 (other sizes give wrong numbers or crash in torch
    2.13); int4pack needs out_features % 16 == 0. "reference" always works.
    """
    if kernel == "reference":
        return True
    if kernel == "int8pack":
        return _has_op("_weight_int8pack_mm") and in_features % 16 == 0
    if kernel == "int4pack":
        return (
            _has_op("_weight_int4pack_mm_for_cpu")
            and _has_op("_convert_weight_to_int4pack_for_cpu")
            and out_features % 16 == 0
        )
    raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


# -- the layer -------------------------------------------------------------------------------------
class QuantizedLinear(Module):
    """A Linear layer whose weight is stored in int8 or int4: (..., K) → (..., N).

    Build it with :meth:`from_linear` (a g2c ``Linear``, a ``torch.nn.Linear`` or a (N, K)
    weight). Tensors (buffers, not trained): int8: ``qweight`` (N, K) int8 and ``scale`` (N,)
    bf16; int4: ``qweight`` (N, K/2) uint8 (two codes per byte: our nibble order for the
    reference, torch's tile order for ``int4pack``) and ``scale_zero`` (K/g, N, 2) bf16;
    ``bias`` (N,) float or None. ``kernel`` picks the matmul (:data:`KERNELS`); the output has
    the input's dtype. Wrong last dimension → ValueError naming both sizes.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mode: str,
        qweight: torch.Tensor,
        scales: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        group_size: int | None,
        kernel: str,
    ) -> None:
        self.in_features, self.out_features = in_features, out_features
        self.mode, self.group_size, self.kernel = mode, group_size, kernel
        self.qweight = qweight
        if mode == "int8":
            self.scale = scales
        else:
            self.scale_zero = scales
        self.bias = bias

    @classmethod
    def from_linear(
        cls,
        layer: Linear | torch.nn.Linear | torch.Tensor,
        mode: str = "int8",
        group_size: int = 32,
        *,
        fast: bool = True,
        bias: torch.Tensor | None = None,
    ) -> QuantizedLinear:
        """Quantize ``layer``'s weight. ``fast`` picks the packed kernel of ``mode`` when the
        shape allows it (:func:`kernel_supported`), else the reference. A bare weight tensor is
        (out_features, in_features) with an optional ``bias``. Bad mode or group_size →
        ValueError naming it; another layer type → TypeError."""
        weight, bias = _weight_and_bias(layer, bias)
        N, K = weight.shape
        if mode not in QUANT_MODES:
            raise ValueError(f"mode must be one of {QUANT_MODES}, got {mode!r}")
        bias = None if bias is None else bias.detach().clone()
        if mode == "int8":
            q, scale = quantize_int8(weight)
            kernel = "int8pack" if fast and kernel_supported("int8pack", N, K) else "reference"
            return cls(K, N, mode, q, scale.to(_KERNEL_DTYPE), bias, group_size=None, kernel=kernel)
        q, scale, zero = quantize_int4(weight, group_size)
        scale_zero = torch.stack((scale, zero), dim=-1).transpose(0, 1).contiguous()  # (G, N, 2)
        kernel = "int4pack" if fast and kernel_supported("int4pack", N, K) else "reference"
        if kernel == "int4pack":
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
        else:
            packed = _pack_nibbles(q)
        return cls(K, N, mode, packed, scale_zero.to(_KERNEL_DTYPE), bias,
                   group_size=group_size, kernel=kernel)  # fmt: skip

    # -- reference: dequantize, then matmul --------------------------------------------------
    def dequantize(self) -> torch.Tensor:
        """The weight the layer multiplies by, (N, K) float32.

        For ``int4pack`` the codes are in torch's private tile order, so they are read back
        through the kernel itself (x = identity): exact, since codes and bf16 scales multiply
        exactly into bf16 up to its rounding of the result."""
        if self.mode == "int8":
            return dequantize_int8(self.qweight, self.scale)
        if self.kernel == "int4pack":
            eye = torch.eye(self.in_features, dtype=_KERNEL_DTYPE, device=self.qweight.device)
            return self._int4pack(eye).float().T.contiguous()  # (K, N) -> (N, K)
        scale, zero = self.scale_zero.float().transpose(0, 1).unbind(-1)  # (N, G) each
        return dequantize_int4(_unpack_nibbles(self.qweight), scale, zero, self.group_size)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) → (..., N): ``F.linear(x, dequantize(), bias)`` in x's dtype."""
        w = self.dequantize().to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    # -- fast: packed kernels -----------------------------------------------------------------
    def _int8pack(self, x2: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(x2, self.qweight, self.scale.to(x2.dtype))

    def _int4pack(self, x2: torch.Tensor) -> torch.Tensor:
        sz = self.scale_zero.to(x2.dtype)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.qweight, self.group_size, sz)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) float → (..., out_features) in x's dtype."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"QuantizedLinear: x must have last dimension {self.in_features} (in_features), "
                f"got shape {tuple(x.shape)}"
            )
        if self.kernel == "reference" or (
            self.kernel == "int8pack" and x.numel() >= INT8PACK_MAX_ROWS * self.in_features
        ):
            return self.forward_reference(x)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(_KERNEL_DTYPE).contiguous()  # (M, K) bf16
        y = self._int8pack(x2) if self.kernel == "int8pack" else self._int4pack(x2)  # (M, N)
        y = y.to(x.dtype).view(*lead, self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def nbytes(self) -> int:
        """Bytes of the stored tensors (codes, scales, bias)."""
        return sum(t.numel() * t.element_size() for _, t in self.named_tensors())

    def extra_repr(self) -> str:
        """``in, out, mode, group, kernel`` for ``repr``."""
        g = f", group_size={self.group_size}" if self.mode == "int4" else ""
        return f"{self.in_features}, {self.out_features}, {self.mode}{g}, kernel={self.kernel!r}"


def _weight_and_bias(
    layer: Any, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (N, K), bias (N,) or None) of a g2c Linear, torch Linear or a bare weight."""
    if isinstance(layer, Linear):
        return layer.W.detach().T, layer.b  # g2c stores W as (in, out)
    if isinstance(layer, torch.nn.Linear):
        return layer.weight.detach(), layer.bias
    if isinstance(layer, torch.Tensor):
        if layer.dim() != 2:
            raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(layer.shape)}")
        return layer.detach(), bias
    raise TypeError(
        "layer must be a g2c Linear, torch.nn.Linear or (out, in) tensor, got "
        f"{type(layer).__name__}"
    )


# -- whole models ----------------------------------------------------------------------------------
def _quantize_children(obj: Any, make) -> Any:
    """Replace every Linear reachable from ``obj`` (attributes, lists, tuples, dicts) in place;
    returns the replacement for ``obj`` itself. Counts via ``make``."""
    if isinstance(obj, (Linear, torch.nn.Linear)):
        return make(obj)
    if isinstance(obj, list):
        obj[:] = [_quantize_children(v, make) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_quantize_children(v, make) for v in obj)
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _quantize_children(obj[k], make)
        return obj
    if isinstance(obj, torch.nn.Module):
        for name, child in list(obj.named_children()):
            new = _quantize_children(child, make)
            if isinstance(new, QuantizedLinear):  # torch containers need a torch child
                setattr(obj, name, TorchQuantizedLinear(new))
        return obj
    if isinstance(obj, Module) and not isinstance(obj, QuantizedLinear):
        for name, value in list(vars(obj).items()):
            if isinstance(value, (Module, torch.nn.Module, list, tuple, dict)):
                setattr(obj, name, _quantize_children(value, make))
        return obj
    return obj


def quantize_model(
    model: Any,
    mode: str = "int8",
    group_size: int = 32,
    *,
    fast: bool = True,
    quantize_head: bool = False,
    inplace: bool = False,
) -> Any:
    """A copy of ``model`` (``inplace=False``) with every Linear replaced by a
    :class:`QuantizedLinear`.

    ``model``: a g2c ``TransformerLM`` (or any g2c Module / ``torch.nn.Module``); g2c
    ``Linear`` and ``torch.nn.Linear`` layers are quantized, everything else (norms, embedding
    tables, biases) stays in float. ``mode``: "int8" (per output channel) or "int4" (group-wise,
    ``group_size`` 32 or 64, which must divide every quantized layer's in_features).
    ``fast``: packed CPU kernels where the shape allows (else the reference per layer).
    ``quantize_head``: also quantize the output projection (the tied token table used as the
    D → V head, or an untied ``lm_head``); the input lookup keeps the float table, so with tied
    embeddings this speeds the head matmul but saves no memory. The model keeps its
    ``forward``/``forward_prefill``/``forward_cached``, so ``g2c.sampling.generate`` runs it
    unchanged. Returns the model in eval mode.

    Raises ValueError naming ``mode`` or ``group_size`` (checked against every layer before
    anything is copied or changed).
    """
    if mode not in QUANT_MODES:
        raise ValueError(f"mode must be one of {QUANT_MODES}, got {mode!r}")
    if mode == "int4":
        for k in _in_features(model, quantize_head):
            _check_group_size(group_size, k)
    if not inplace:
        model = copy.deepcopy(model)

    def make(layer):
        return QuantizedLinear.from_linear(layer, mode, group_size, fast=fast)

    _quantize_children(model, make)
    if quantize_head and hasattr(model, "logits_from_hidden") and hasattr(model, "token_embed"):
        head = model.token_embed.weight if model.lm_head is None else model.lm_head  # (V, D)
        qhead = QuantizedLinear.from_linear(
            head, mode, group_size, fast=fast, bias=getattr(model, "head_bias", None)
        )
        if model.lm_head is not None:
            model.lm_head = None  # the untied table is only the head: drop the float copy
        # An instance attribute shadows the method: every forward path calls
        # self.logits_from_hidden(h), which now runs the quantized head.
        model.logits_from_hidden = _QuantizedHead(qhead)
    if hasattr(model, "eval"):
        model.eval()
    return model


class TorchQuantizedLinear(torch.nn.Module):
    """A :class:`QuantizedLinear` as a ``torch.nn.Module`` child (for torch models, so
    ``Sequential`` and friends keep working); ``.layer`` is the g2c module."""

    def __init__(self, layer: QuantizedLinear) -> None:
        super().__init__()
        self.layer = layer  # a plain attribute: g2c tensors are not torch buffers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) → (..., out_features)."""
        return self.layer(x)


class _QuantizedHead(Module):
    """h (..., D) → logits (..., V) through a QuantizedLinear (the model's output head)."""

    def __init__(self, head: QuantizedLinear) -> None:
        self.head = head

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)


def _in_features(model: Any, with_head: bool) -> list[int]:
    sizes: list[int] = []

    def record(layer):
        sizes.append(_weight_and_bias(layer, None)[0].shape[1])
        return layer

    _quantize_children(model, record)  # the identity replacement: only visits
    if with_head and hasattr(model, "token_embed"):
        sizes.append(model.token_embed.weight.shape[1])
    return sizes


def dequantize_model(model: Any, *, inplace: bool = False) -> Any:
    """A copy of ``model`` whose QuantizedLinear layers run the reference path (dequantize →
    matmul in the activation dtype) — same stored weights, no packed kernels. int4 layers in
    torch's tile order are unpacked through the kernel once, here."""
    if not inplace:
        model = copy.deepcopy(model)
    for m in list(_all_modules(model)):
        if isinstance(m, QuantizedLinear) and m.kernel != "reference":
            if m.mode == "int8":
                m.kernel = "reference"
            else:
                w = m.dequantize()  # (N, K) from the kernel layout
                q, scale, zero = _codes_from_dequantized(m, w)
                m.qweight, m.kernel = _pack_nibbles(q), "reference"
                m.scale_zero = torch.stack((scale, zero), -1).transpose(0, 1).to(_KERNEL_DTYPE)
    return model


def _codes_from_dequantized(m: QuantizedLinear, w: torch.Tensor):
    """Recover int4 codes from a dequantized weight and the layer's own scales/zeros."""
    scale, zero = m.scale_zero.float().transpose(0, 1).unbind(-1)  # (N, G)
    N, K = w.shape
    wg = w.view(N, K // m.group_size, m.group_size)
    q = torch.round((wg - zero[..., None]) / scale[..., None] + 8.0).clamp(0, 15)
    return q.to(torch.uint8).view(N, K), scale, zero


def _all_modules(model: Any):
    if isinstance(model, Module):
        yield from model.modules()
    elif isinstance(model, torch.nn.Module):
        for m in model.modules():
            yield m
            for v in vars(m).values():
                if isinstance(v, Module):
                    yield from v.modules()


def model_bytes(model: Any) -> int:
    """Bytes of every distinct tensor a model holds (parameters and buffers, tied tensors once):
    the resident size of its weights. Works for g2c Modules and ``torch.nn.Module``."""
    if isinstance(model, torch.nn.Module):
        tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
        for m in _all_modules(model):
            if isinstance(m, Module):
                tensors.update({id(t): t for _, t in m.named_tensors()})
    else:
        tensors = {id(t): t for _, t in model.named_tensors()}
    return sum(t.numel() * t.element_size() for t in tensors.values())


__all__ = [
    "QUANT_MODES",
    "INT4_GROUP_SIZES",
    "KERNELS",
    "QuantizedLinear",
    "TorchQuantizedLinear",
    "quantize_int8",
    "dequantize_int8",
    "quantize_int4",
    "dequantize_int4",
    "kernel_supported",
    "quantize_model",
    "dequantize_model",
    "model_bytes",
]
