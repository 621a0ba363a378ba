"""Matrix-multiply benchmark: Python loops vs NumPy vs PyTorch (CPU, and CUDA/MPS when present).

Times ``C = A @ B`` for square float32 matrices of size n = 32, 64, ..., 4096 with the three
implementations of ``g2c.tensors`` and reports GFLOP/s (2·n³ floating-point operations per
product), the ratios between them in the same run, and the machine's *measured* peak: the
best GFLOP/s PyTorch reaches on a large product repeated for a few seconds (drawn as a
horizontal reference line). A nominal-clock theoretical peak is printed next to it when it can
be derived from /proc/cpuinfo.

The triple loop is capped by time: once one size takes longer than ``--loops-budget`` seconds
(default 2 s), the larger sizes are skipped and the table says so.

Usage:
    python bench/matmul.py                 # full sweep, 1 thread (~1-2 min on a laptop core)
    python bench/matmul.py --threads 2
    python bench/matmul.py --quick         # sizes 32..512, short timings (seconds)

Writes bench/results/matmul.json (``matmul_quick.json`` with --quick) and the log-log plot
docs/modules/img/02-matmul.png (``bench/results/matmul_quick.png`` with --quick).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096]
QUICK_SIZES = [32, 64, 128, 256, 512]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="matrix sizes n (n x n)")
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads for torch and BLAS (default 1)"
    )
    p.add_argument("--quick", action="store_true", help="small sizes and short timings")
    p.add_argument("--min-time", type=float, default=None, help="seconds of timed repeats per cell")
    p.add_argument(
        "--loops-budget",
        type=float,
        default=None,
        help="skip larger loop sizes after one takes longer (s; default 2, --quick 0.5)",
    )
    p.add_argument(
        "--peak-size",
        type=int,
        default=None,
        help="n of the repeated torch product for the measured peak",
    )
    p.add_argument("--peak-time", type=float, default=None, help="seconds spent on the peak probe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-json", type=Path, default=None)
    p.add_argument("--plot", default=None, help="PNG path ('' to skip the plot)")
    args = p.parse_args(argv)
    if args.threads <= 0:
        p.error(f"--threads must be positive, got {args.threads}")
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if any(n <= 0 for n in args.sizes):
        p.error(f"--sizes must be positive, got {args.sizes}")
    args.sizes = sorted(set(args.sizes))
    if args.min_time is None:
        args.min_time = 0.1 if args.quick else 1.0
    if args.loops_budget is None:
        args.loops_budget = 0.5 if args.quick else 2.0
    if args.peak_size is None:
        args.peak_size = 512 if args.quick else 2048
    if args.peak_time is None:
        args.peak_time = 0.5 if args.quick else 4.0
    name = "matmul_quick" if args.quick else "matmul"
    if args.out_json is None:
        args.out_json = REPO / "bench" / "results" / f"{name}.json"
    if args.plot == "":
        args.plot = None
    elif args.plot is not None:
        args.plot = Path(args.plot)
    else:
        args.plot = (
            REPO / "bench" / "results" / "matmul_quick.png"
            if args.quick
            else REPO / "docs" / "modules" / "img" / "02-matmul.png"
        )
    return args


# ---- timing ---------------------------------------------------------------------------------
def time_call(
    fn: Callable[..., object],
    operands: tuple,
    min_time: float,
    sync: Callable[[], None] = lambda: None,
    warmup: bool = True,
    max_reps: int = 1000,
) -> tuple[list[float], float]:
    """Wall-clock seconds of repeated ``fn(*operands)`` calls until ``min_time`` s are spent.

    One untimed warm-up call first (thread pools, page faults, GPU kernels) unless
    ``warmup=False``; ``sync`` waits for asynchronous devices before each clock read.
    Returns (times, cpu_share): cpu_share = process CPU seconds / wall seconds over the timed
    calls, about 1.0 per busy thread on an idle machine and lower when other processes
    compete for the cores (a direct measure of how much the load distorts the timing).
    """
    if warmup:
        fn(*operands)
        sync()
    times: list[float] = []
    cpu0 = time.process_time()
    while True:
        t0 = time.perf_counter()
        fn(*operands)
        sync()
        times.append(time.perf_counter() - t0)
        if sum(times) >= min_time or len(times) >= max_reps:
            return times, (time.process_time() - cpu0) / sum(times)


def cell(n: int, timing: tuple[list[float], float]) -> dict:
    """A result record: best / median seconds, GFLOP/s from the best time, CPU share."""
    from g2c.tensors import matmul_flops

    times, cpu_share = timing
    best = min(times)
    return {
        "status": "ok",
        "best_s": best,
        "median_s": statistics.median(times),
        "reps": len(times),
        "gflops": matmul_flops(n, n, n) / best / 1e9,
        "cpu_share": round(cpu_share, 3),
    }


# ---- machine description --------------------------------------------------------------------
def cpu_info() -> dict:
    """CPU model, vendor, nominal MHz and SIMD flags from /proc/cpuinfo (Linux; {} elsewhere)."""
    info: dict = {"processor": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and "model" not in info:
            info["model"] = value
        elif key == "vendor_id" and "vendor" not in info:
            info["vendor"] = value
        elif key == "cpu family" and "family" not in info:
            info["family"] = int(value)
        elif key == "cpu MHz" and "mhz" not in info:
            info["mhz"] = float(value)
        elif key == "flags" and "flags" not in info:
            info["flags"] = set(value.split())
    return info


def theoretical_peak(info: dict, threads: int) -> dict | None:
    """A nominal-clock float32 peak estimate: threads × GHz × FLOP/cycle.

    FLOP/cycle = 2 (an FMA is a multiply and an add) × 2 FMA pipes × float32 lanes, with
    16 lanes for AVX-512, 8 for AVX2 (AMD Zen 4 — family 25 — runs AVX-512 on 256-bit
    pipes, so 8). Turbo clocks can exceed the nominal clock, so measurements can beat it.
    """
    flags = info.get("flags")
    if not flags or "mhz" not in info:
        return None
    if "avx512f" in flags and not (
        info.get("vendor") == "AuthenticAMD" and info.get("family", 0) <= 25
    ):
        lanes, isa = 16, "AVX-512 (2x512-bit FMA)"
    elif "avx512f" in flags:
        lanes, isa = 8, "AVX-512 on 2x256-bit FMA pipes (AMD Zen 4)"
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 8, "AVX2 + FMA (2x256-bit FMA)"
    else:
        lanes, isa = 4, "SSE (no FMA assumed)"
    flop_per_cycle = 2 * 2 * lanes
    ghz = info["mhz"] / 1000
    return {
        "gflops": threads * ghz * flop_per_cycle,
        "flop_per_cycle": flop_per_cycle,
        "nominal_ghz": ghz,
        "assumption": f"{threads} core(s) x {ghz:.2f} GHz (nominal) x {flop_per_cycle} FLOP/cycle, {isa}",
    }


def accelerator() -> str | None:
    """'cuda' or 'mps' when PyTorch sees one, else None."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return None


# ---- the sweep ------------------------------------------------------------------------------
def run_sweep(args: argparse.Namespace, on_row: Callable[[dict], None] | None = None) -> dict:
    """Time every backend at every size; returns the JSON-ready result dict."""
    import numpy as np
    import torch

    from g2c.tensors import matmul_loops, matmul_numpy, matmul_torch

    acc = accelerator()
    backends = ["loops", "numpy", "torch_cpu"] + ([f"torch_{acc}"] if acc else [])
    rng = np.random.default_rng(args.seed)
    rows = []
    loops_stop: str | None = None  # reason once the loops are capped
    for n in args.sizes:
        A = rng.standard_normal((n, n), dtype=np.float32)  # (n, n) float32
        B = rng.standard_normal((n, n), dtype=np.float32)
        row: dict = {"n": n}
        ref = matmul_numpy(A, B)
        # loops, capped by time
        if loops_stop is None and rows:
            prev = rows[-1]["loops"]
            predicted = prev["best_s"] * (n / rows[-1]["n"]) ** 3
            if predicted > 8 * args.loops_budget:
                loops_stop = f"predicted {predicted:.0f} s at n={n}"
        if loops_stop is None:
            Al, Bl = A.tolist(), B.tolist()
            timing = time_call(matmul_loops, (Al, Bl), args.min_time, warmup=False)
            row["loops"] = cell(n, timing)
            C = np.asarray(matmul_loops(Al, Bl))
            row["loops"]["max_rel_err"] = float(np.abs(C - ref).max() / np.abs(ref).max())
            if timing[0][0] > args.loops_budget:
                loops_stop = f"n={n} took {timing[0][0]:.1f} s > {args.loops_budget:g} s budget"
        else:
            row["loops"] = {"status": "skipped", "reason": loops_stop}
        # NumPy (BLAS) and torch CPU
        row["numpy"] = cell(n, time_call(matmul_numpy, (A, B), args.min_time))
        At, Bt = torch.from_numpy(A), torch.from_numpy(B)
        row["torch_cpu"] = cell(n, time_call(matmul_torch, (At, Bt), args.min_time))
        diff = (matmul_torch(At, Bt).numpy() - ref).__abs__().max()
        row["torch_cpu"]["max_rel_err"] = float(diff / np.abs(ref).max())
        if acc:
            dev = torch.device(acc)
            Ad, Bd = At.to(dev), Bt.to(dev)
            sync = torch.cuda.synchronize if acc == "cuda" else torch.mps.synchronize
            row[f"torch_{acc}"] = cell(n, time_call(matmul_torch, (Ad, Bd), args.min_time, sync))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    # measured peak: torch CPU on a large product repeated for peak_time seconds
    n = args.peak_size
    At = torch.randn(n, n)
    Bt = torch.randn(n, n)
    probe = cell(n, time_call(matmul_torch, (At, Bt), args.peak_time))
    sweep_best = max(r[b]["gflops"] for r in rows for b in ("numpy", "torch_cpu"))
    peak = {
        "gflops": max(probe["gflops"], sweep_best),
        "probe_n": n,
        "probe_gflops": probe["gflops"],
        "probe_reps": probe["reps"],
        "sweep_best_cpu_gflops": sweep_best,
    }
    result = {"backends": backends, "rows": rows, "measured_peak_cpu": peak}
    if acc:
        result["measured_peak_accelerator"] = {
            "gflops": max(r[f"torch_{acc}"]["gflops"] for r in rows),
            "device": torch.cuda.get_device_name() if acc == "cuda" else "mps",
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if acc == "cuda" else None,
        }
    return result


# ---- output ---------------------------------------------------------------------------------
LABELS = {
    "loops": "Python loops",
    "numpy": "NumPy",
    "torch_cpu": "torch CPU",
    "torch_cuda": "torch CUDA",
    "torch_mps": "torch MPS",
}


def fmt_cell(c: dict) -> str:
    """GFLOP/s with 3 significant digits, or 'skipped'."""
    return f"{c['gflops']:.3g}" if c["status"] == "ok" else "skipped"


def fmt_time(c: dict) -> str:
    """Best time as '4.56 ms' / '1.23 s', or '-'."""
    if c["status"] != "ok":
        return "-"
    t = c["best_s"]
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def print_table(result: dict, meta: dict) -> None:
    """Rich table of GFLOP/s (best time) per size and backend, plus ratios and the peak lines."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=110)
    t = Table(title=f"float32 matmul, GFLOP/s (best time), {meta['threads']} thread(s)")
    t.add_column("n", justify="right")
    for b in result["backends"]:
        t.add_column(LABELS[b], justify="right")
    t.add_column("torch/NumPy", justify="right")
    t.add_column("NumPy/loops", justify="right")
    t.add_column("loops time", justify="right")
    t.add_column("CPU share", justify="right")
    for r in result["rows"]:
        ratio_tn = r["torch_cpu"]["gflops"] / r["numpy"]["gflops"]
        nl = (
            f"{r['numpy']['gflops'] / r['loops']['gflops']:,.0f}x"
            if r["loops"]["status"] == "ok"
            else "-"
        )
        t.add_row(
            str(r["n"]),
            *(fmt_cell(r[b]) for b in result["backends"]),
            f"{ratio_tn:.2f}x",
            nl,
            fmt_time(r["loops"]),
            f"{min(r[b]['cpu_share'] for b in ('numpy', 'torch_cpu')):.2f}",
        )
    console.print(t)
    console.print(
        "CPU share = process CPU seconds / wall seconds during the NumPy and torch timings "
        f"(about {meta['threads']:.2f} when no other process competes for the cores)"
    )
    skipped = [r["loops"]["reason"] for r in result["rows"] if r["loops"]["status"] != "ok"]
    if skipped:
        console.print(f"loops skipped for larger sizes: {skipped[0]}")
    p = result["measured_peak_cpu"]
    console.print(
        f"measured CPU peak: {p['gflops']:.1f} GFLOP/s (torch probe n={p['probe_n']}: "
        f"{p['probe_gflops']:.1f} GFLOP/s over {p['probe_reps']} reps)"
    )
    if meta.get("theoretical_peak_cpu"):
        tp = meta["theoretical_peak_cpu"]
        console.print(
            f"theoretical-ish CPU peak: {tp['gflops']:.1f} GFLOP/s ({tp['assumption']}); "
            f"the measured peak implies a clock of >= "
            f"{p['gflops'] / (meta['threads'] * tp['flop_per_cycle']):.2f} GHz"
        )
    if "measured_peak_accelerator" in result:
        a = result["measured_peak_accelerator"]
        console.print(f"measured accelerator peak ({a['device']}): {a['gflops']:.1f} GFLOP/s")
    console.print(f"load average before/after: {meta['load_before']} / {meta['load_after']}")


def plot(result: dict, meta: dict, path: Path) -> None:
    """Log-log GFLOP/s vs n, one line per backend, the measured peak as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from g2c.artifacts import atomic_write_with

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    markers = {"loops": "o", "numpy": "s", "torch_cpu": "^", "torch_cuda": "D", "torch_mps": "D"}
    for b in result["backends"]:
        pts = [(r["n"], r[b]["gflops"]) for r in result["rows"] if r[b]["status"] == "ok"]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=markers[b], label=LABELS[b])
    p = result["measured_peak_cpu"]["gflops"]
    ax.axhline(p, color="gray", linestyle="--", label=f"measured CPU peak {p:.0f} GFLOP/s")
    tp = meta.get("theoretical_peak_cpu")
    if tp:
        ax.axhline(
            tp["gflops"],
            color="gray",
            linestyle=":",
            label=f"nominal-clock estimate {tp['gflops']:.0f} GFLOP/s",
        )
    if "measured_peak_accelerator" in result:
        a = result["measured_peak_accelerator"]["gflops"]
        ax.axhline(a, color="black", linestyle="--", label=f"measured accelerator peak {a:.0f}")
    ax.set_xscale("log", base=2)
    sizes = [r["n"] for r in result["rows"]]
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("matrix size n (n x n @ n x n, float32)")
    ax.set_ylabel("GFLOP/s (2n³ / best time)")
    ax.set_title(
        f"float32 matmul, {meta['threads']} CPU thread(s); load avg "
        f"{meta['load_before'][0]:.1f} -> {meta['load_after'][0]:.1f} ({meta['cpu_count']} cores)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write JSON (and the plot). Returns 0."""
    args = parse_args(argv)
    import numpy as np
    import torch

    from g2c.artifacts import atomic_write_json, code_version

    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:  # numpy's BLAS then uses its default (or OPENBLAS_NUM_THREADS)
        threadpool_info, threadpool_limits = (lambda: []), None
    limiter = threadpool_limits(limits=args.threads, user_api="blas") if threadpool_limits else None
    try:
        info = cpu_info()
        meta = {
            "benchmark": "matmul",
            "command": "python bench/matmul.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "dtype": "float32 (loops: Python floats, i.e. float64 arithmetic)",
            "threads": args.threads,
            "torch_threads": torch.get_num_threads(),
            "blas": [
                {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                for d in threadpool_info()
                if d.get("user_api") == "blas"
            ],
            "cpu": info.get("model", info.get("processor")),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "code_version": code_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "theoretical_peak_cpu": theoretical_peak(info, args.threads),
            "min_time_s": args.min_time,
            "loops_budget_s": args.loops_budget,
        }
        print(
            f"matmul benchmark: sizes {args.sizes}, {args.threads} thread(s), "
            f"load {meta['load_before']}",
            file=sys.stderr,
        )
        result = run_sweep(
            args,
            on_row=lambda r: print(f"  n={r['n']} done", file=sys.stderr),
        )
        meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        torch.set_num_threads(old_threads)
        if limiter is not None:
            limiter.restore_original_limits()
    print_table(result, meta)
    atomic_write_json(args.out_json, {**meta, **result})
    print(f"wrote {args.out_json}", file=sys.stderr)
    if args.plot is not None:
        plot(result, meta, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
