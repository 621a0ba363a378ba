"""Weight-only quantization benchmark: kernels per shape, then SmolLM2-135M fp32/bf16/int8/int4.

Part 1 (kernels): every matmul a SmolLM2-135M layer does (576→1536, 1536→576, 576→576, 576→192,
576→49152 head), at batch 1 (a decode step) and 128 (a prefill chunk), 1 thread, median of
repeats: fp32 ``F.linear`` (baseline), bf16 ``F.linear``, the int8 / int4 reference (dequantize
→ matmul), ``aten._weight_int8pack_mm`` with bf16 and with fp32 activations, and
``aten._weight_int4pack_mm_for_cpu`` with bf16 and fp32, and torch's own dynamic int8
(``quantize_dynamic``, fbgemm; it also quantizes activations). The fastest g2c path per
(shape, batch) is marked; ``g2c.inference.quant`` uses the packed kernel of its mode at decode
and, for int8, the reference from ``INT8PACK_MAX_ROWS`` rows on.

Part 2 (models): ``load_model("smollm2")`` as fp32, bf16 (``to(dtype=bfloat16)``), int8 and
int4 (``quantize_model``, group 32): perplexity on held-out text (Jane Austen, Emma, from
/work/shared/data/gutenberg, a slice of ``--eval-tokens`` tokens, windows of 256, via
``g2c.training.evaluation.stream_loss``), weight bytes (``model_bytes``) and greedy decode
tokens/s (``g2c.sampling.generate``, 1 thread). One table; JSON to bench/results/quant.json.

Usage: .venv/bin/python bench/quant.py [--quick] [--eval-tokens 4096] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json
from g2c.inference.quant import (
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    model_bytes,
    quantize_int4,
    quantize_int8,
    quantize_model,
)
from g2c.sampling import generate
from g2c.training.evaluation import perplexity_from_loss, stream_loss
from g2c.transformer import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "quant.json"
SHAPES = [(576, 1536), (1536, 576), (576, 576), (576, 192), (576, 49152)]  # (in, out)
DATA = Path(os.environ.get("G2C_DATA_DIR", "/work/shared/data")) / "gutenberg" / "austen-emma.txt"


def _time_us(fn, repeats: int, inner: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e6)
    return statistics.median(samples)


def _kernels(w: torch.Tensor, x: torch.Tensor, group_size: int) -> dict:
    """name → zero-argument call of every kernel for weight w (N, K) and input x (M, K)."""
    q8, s8 = quantize_int8(w)
    q4, s4, z4 = quantize_int4(w, group_size)
    l8 = QuantizedLinear.from_linear(w, "int8")
    l4 = QuantizedLinear.from_linear(w, "int4", group_size)
    xb, wb, sz4 = x.bfloat16(), w.bfloat16(), l4.scale_zero
    dyn = _torch_dynamic_int8(w)
    op8 = torch.ops.aten._weight_int8pack_mm
    op4 = torch.ops.aten._weight_int4pack_mm_for_cpu
    return {
        "fp32 F.linear": lambda: F.linear(x, w),
        "bf16 F.linear": lambda: F.linear(xb, wb),
        "int8 reference": lambda: F.linear(x, dequantize_int8(q8, s8)),
        "int8pack bf16": lambda: op8(xb, l8.qweight, l8.scale),
        "int8pack fp32": lambda: op8(x, l8.qweight, l8.scale.float()),
        "int4 reference": lambda: F.linear(x, dequantize_int4(q4, s4, z4, group_size)),
        "int4pack bf16": lambda: op4(xb, l4.qweight, group_size, sz4),
        "int4pack fp32": lambda: op4(x, l4.qweight, group_size, sz4.float()),
        "torch dynamic int8": lambda: dyn(x),
    }


def _torch_dynamic_int8(w: torch.Tensor):
    """torch's own CPU int8 (``torch.ao.quantization.quantize_dynamic``: fbgemm, per-tensor
    int8 weights AND dynamically quantized int8 activations — not weight-only): the library a
    user would otherwise pick."""
    import warnings

    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
        ).eval()


def kernel_table(batches: list[int], repeats: int, inner: int, group_size: int) -> list[dict]:
    """Microseconds per call of every kernel at every (shape, batch)."""
    rows = []
    g = torch.Generator().manual_seed(0)
    for K, N in SHAPES:
        w = torch.randn(N, K, generator=g) / K**0.5
        for M in batches:
            x = torch.randn(M, K, generator=g)
            n_inner = max(1, inner // (8 if M > 1 else 1))
            row = {"in": K, "out": N, "batch": M}
            for name, fn in _kernels(w, x, group_size).items():
                row[name] = round(_time_us(fn, repeats, n_inner), 1)
            for mode in ("int8", "int4"):
                cands = {k: v for k, v in row.items() if k.startswith(mode)}  # g2c's own
                row[f"best {mode}"] = min(cands, key=cands.get)
            rows.append(row)
    return rows


def eval_ids(tokenizer, n_tokens: int) -> torch.Tensor:
    """A held-out slice of Emma: text from the middle of the book, ``n_tokens + 1`` ids."""
    text = DATA.read_text(encoding="utf-8")
    mid = len(text) // 2
    ids = tokenizer.encode(text[mid : mid + n_tokens * 8])
    if len(ids) < n_tokens + 1:
        raise SystemExit(f"{DATA}: only {len(ids)} tokens in the slice, need {n_tokens + 1}")
    return torch.tensor(ids[: n_tokens + 1], dtype=torch.long)


def decode_tps(model, prompt: list[int], n_new: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, prompt, n_new, temperature=0)
        times.append(time.perf_counter() - t0)
    assert len(out) == len(prompt) + n_new
    return n_new / statistics.median(times)


def model_table(args) -> list[dict]:
    loaded = load_model("smollm2")
    base, tok = loaded.model.eval(), loaded.tokenizer
    ids = eval_ids(tok, args.eval_tokens)
    prompt = tok.encode("The history of the English language begins")
    variants = {
        "fp32": lambda: base,
        "bf16": lambda: _bf16_copy(base),
        "int8": lambda: quantize_model(base, "int8"),
        "int8+head": lambda: quantize_model(base, "int8", quantize_head=True),
        "int4 g32": lambda: quantize_model(base, "int4", 32),
        "int4 g32+head": lambda: quantize_model(base, "int4", 32, quantize_head=True),
    }
    variants["int4 g64"] = lambda: quantize_model(base, "int4", 64)
    rows = []
    for name, build in variants.items():
        model = build()
        loss = stream_loss(model, ids, 256, batch_size=4)["loss"]
        rows.append(
            {
                "variant": name,
                "weight_MB": round(model_bytes(model) / 1e6, 1),
                "ppl": round(perplexity_from_loss(loss), 3),
                "decode_tok_s": round(decode_tps(model, prompt, args.new_tokens, args.repeats), 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _bf16_copy(model):
    import copy

    return copy.deepcopy(model).to(dtype=torch.bfloat16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 1024 eval tokens")
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--kernels-only", action="store_true")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.eval_tokens, args.new_tokens, args.repeats = 1024, 32, 1
    torch.set_num_threads(1)
    console = Console(width=240)
    krows = kernel_table([1, 128], repeats=3 if args.quick else 7, inner=10 if args.quick else 30,
                         group_size=args.group_size)  # fmt: skip
    kt = Table(title="kernels, µs per call (1 thread)")
    for col in krows[0]:
        kt.add_column(col)
    for r in krows:
        kt.add_row(*(str(v) for v in r.values()))
    console.print(kt)
    mrows = [] if args.kernels_only else model_table(args)
    if mrows:
        mt = Table(title="SmolLM2-135M-Instruct: held-out perplexity, weights, greedy decode")
        for col in mrows[0]:
            mt.add_column(col)
        for r in mrows:
            mt.add_row(*(str(v) for v in r.values()))
        console.print(mt)
    atomic_write_json(
        Path(args.out),
        {
            "torch": torch.__version__,
            "threads": 1,
            "quick": args.quick,
            "note": "shared, loaded machine: --quick numbers only; re-measure on a quiet machine",
            "eval_text": str(DATA),
            "eval_tokens": args.eval_tokens,
            "kernels_us": krows,
            "models": mrows,
        },
    )
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
