"""Server benchmark: `g2c serve` under 16 concurrent streaming clients vs one at a time.

The server runs in its own process (``g2c serve``, loopback only, ``--threads`` torch threads,
``--max-batch-size`` = the client count), the clients are threads in this process speaking
the OpenAI API with ``httpx`` (streamed ``/v1/completions``, greedy, a fixed number of new
tokens: ``ignore_eos``-style — the quick model never writes its end token, SmolLM2 answers
prompts that do not end before ``--new-tokens``; the token counts come from ``usage``).

Two phases over the same bounded list of requests (``--requests``):

- one at a time: each request after the previous one finished;
- concurrent: ``--clients`` threads take requests from the list until it is empty, so up to
  16 generations share each decode step (continuous batching).

Reported per phase: aggregate completion tokens/s (all tokens ÷ wall time), request latency
p50 / p99, time to first token p50 / p99, failed requests. Target: concurrent ≥ 3× one at a
time, zero failures. Writes bench/results/serve.json (``serve_quick.json`` with ``--quick``)
and prints a table.

Usage: .venv/bin/python bench/serve.py [--quick] [--clients 16] [--requests 48]
       [--new-tokens 64] [--threads 1] [--compile]
``--compile``: the server compiles its decode step; results go to ``serve_compiled.json``.
``--quick``: a tiny random g2c model (saved as a run directory), 32 requests of 32 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch
from rich.console import Console
from rich.table import Table

from g2c.artifacts import RUN_FORMAT, atomic_write_json, write_manifest
from g2c.inference import percentile
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = [
    "The history of the bicycle begins in the early nineteenth century, when",
    "Write a short story about a lighthouse keeper who",
    "Explain to a child why the sky is blue:",
    "A list of ten things to pack for a week of hiking:",
]


def tiny_run(directory: Path) -> Path:
    """A random g2c model (8 layers, width 256) with a byte-level tokenizer that never writes
    its end-of-turn token: every request generates exactly max_tokens."""
    tok = BPETokenizer.with_course_special_tokens()
    model = TransformerLM(
        tok.vocab_size, 256, 8, 8, 1024, positional="rope", norm="rmsnorm", mlp="swiglu",
        num_kv_heads=4, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    with torch.no_grad():
        for name in ("<|end|>", "<|endoftext|>"):
            model.head_bias[tok.special_to_id[name]] = -1e4
    model.save_pretrained(directory)
    tok.save(directory / "tokenizer.json")
    write_manifest(directory, RUN_FORMAT, name="BenchTiny", family="BenchTiny", num_parameters=1)
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: str, port: int, threads: int, batch: int, compile: bool = False
) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import sys; from g2c.cli import main; sys.exit(main())",
           "serve", model, "--port", str(port), "--threads", str(threads), "--device", "cpu",
           "--max-batch-size", str(batch), "--max-queue", "256", "--model-id", "bench",
           "--log-level", "warning"] + (["--compile"] if compile else [])  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"g2c serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("g2c serve did not start within 300 s")


def one_request(client: httpx.Client, url: str, prompt: str, new_tokens: int) -> dict:
    body = {"model": "bench", "prompt": prompt, "max_tokens": new_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    t0 = time.perf_counter()
    ttft, usage = None, None
    try:
        with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                return {"ok": False, "error": f"HTTP {r.status_code}: {r.text[:200]}"}
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                obj = json.loads(line[6:])
                if obj.get("usage"):
                    usage = obj["usage"]
                elif ttft is None and obj["choices"] and obj["choices"][0]["text"]:
                    ttft = time.perf_counter() - t0
    except httpx.HTTPError as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    latency = time.perf_counter() - t0
    if usage is None:
        return {"ok": False, "error": "no usage chunk"}
    return {"ok": True, "latency_s": latency, "ttft_s": ttft or latency,
            "tokens": usage["completion_tokens"]}  # fmt: skip


def run_phase(url: str, prompts: list[str], new_tokens: int, clients: int) -> dict:
    todo = list(enumerate(prompts))
    lock = threading.Lock()
    results: list[dict] = []

    def worker() -> None:
        with httpx.Client(timeout=600) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    _, prompt = todo.pop(0)
                res = one_request(client, url, prompt, new_tokens)
                with lock:
                    results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    lat = [r["latency_s"] * 1000 for r in ok]
    ttft = [r["ttft_s"] * 1000 for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    return {
        "clients": clients, "requests": len(results), "failed": len(results) - len(ok),
        "errors": sorted({r["error"] for r in results if not r["ok"]})[:5],
        "completion_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
        "latency_ms_p50": percentile(lat, 50) if lat else None,
        "latency_ms_p99": percentile(lat, 99) if lat else None,
        "ttft_ms_p50": percentile(ttft, 50) if ttft else None,
        "ttft_ms_p99": percentile(ttft, 99) if ttft else None,
        "latency_ms_mean": statistics.fmean(lat) if lat else None,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny random model, few requests")
    ap.add_argument("--model", default="smollm2", help="what g2c serve loads (default smollm2)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=None, help="default 48 (quick: 32)")
    ap.add_argument("--new-tokens", type=int, default=None, help="default 64 (quick: 32)")
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    ap.add_argument("--compile", action="store_true",
                    help="g2c serve --compile; the warm-up also runs the clients together, so "
                         "every graph is compiled before the timed phases")  # fmt: skip
    args = ap.parse_args()
    n_req = args.requests or (32 if args.quick else 48)
    new = args.new_tokens or (32 if args.quick else 64)
    if args.clients < 1 or n_req < args.clients:
        ap.error("--clients must be >= 1 and --requests >= --clients")
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        model = str(tiny_run(Path(tmp) / "tiny")) if args.quick else args.model
        port = free_port()
        proc = start_server(model, port, args.threads, args.clients, args.compile)
        url = f"http://127.0.0.1:{port}"
        try:
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_req)]
            run_phase(url, prompts[:2], 4, 1)  # warm-up: allocate the cache, first forwards
            if args.compile:  # the graphs for several rows and for row views, before timing
                run_phase(url, prompts[: args.clients], 8, args.clients)
            serial = run_phase(url, prompts, new, 1)
            concurrent = run_phase(url, prompts, new, args.clients)
            health = httpx.get(url + "/health").json()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    speedup = concurrent["tokens_per_s"] / serial["tokens_per_s"]
    table = Table(title=f"g2c serve{' --compile' if args.compile else ''} — "
                        f"{'tiny random model (--quick)' if args.quick else model}, "
                        f"{n_req} requests × {new} tokens, server threads {args.threads}")  # fmt: skip
    for col in ("phase", "tokens/s", "latency p50 ms", "latency p99 ms", "TTFT p50 ms",
                "TTFT p99 ms", "failed"):  # fmt: skip
        table.add_column(col, justify="left" if col == "phase" else "right")
    for name, r in (("one at a time", serial), (f"{args.clients} concurrent", concurrent)):
        table.add_row(name, f"{r['tokens_per_s']:.0f}", f"{r['latency_ms_p50']:.0f}",
                      f"{r['latency_ms_p99']:.0f}", f"{r['ttft_ms_p50']:.0f}",
                      f"{r['ttft_ms_p99']:.0f}", str(r["failed"]))  # fmt: skip
    console.print(table)
    ok = speedup >= 3 and serial["failed"] == concurrent["failed"] == 0
    console.print(f"aggregate speed-up {speedup:.2f}× (target ≥ 3×), failed "
                  f"{serial['failed'] + concurrent['failed']} — {'PASS' if ok else 'MISS'}")  # fmt: skip
    name = "serve_quick" if args.quick else "serve"
    out = RESULTS / f"{name}{'_compiled' if args.compile else ''}.json"
    atomic_write_json(out, {
        "benchmark": "serve", "quick": args.quick, "model": "tiny-random" if args.quick
        else model, "clients": args.clients, "requests": n_req, "new_tokens": new,
        "server_threads": args.threads, "compile": args.compile, "one_at_a_time": serial, "concurrent": concurrent,
        "speedup": speedup, "target_speedup": 3.0, "pass": ok, "server_stats": health,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average": os.getloadavg(),
    })  # fmt: skip
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
