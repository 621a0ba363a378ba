"""Benchmark: g2c.autodiff's fast engine vs its classic closure-based reference on the moons demo.

"classic" is ``g2c.autodiff.ReferenceValue`` (g2c/autodiff/reference.py: micrograd's engine with
``_backward`` closures, one reference cycle per node, plain numbers wrapped in leaf nodes);
"g2c" is the default ``g2c.autodiff.Value`` (local derivatives stored as floats, no cycles).
Both train ``g2c.autodiff.ScalarMLP(..., engine=...)`` with ``train_moons_step``.

Workload (identical for both engines, same data, same initial weights): a 2-16-16-1 ReLU MLP
with a linear output, max-margin loss ``mean(relu(1 - y_i·score_i)) + 1e-4·Σp²`` over 100
``make_moons(noise=0.1)`` points, full batch, SGD with ``lr = 1.0 - 0.9·k/100``, 100 steps.
Each engine runs in its own subprocess (so peak RSS is its own); the garbage collector stays
on with default thresholds in both. Prints a table and writes ``bench/results/autodiff.json``.

    .venv/bin/python bench/autodiff.py            # full 100-step run (the classic one takes minutes)
    .venv/bin/python bench/autodiff.py --steps 10 # quick look
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENGINES = ("classic", "g2c")


def _count_nodes(root, children_attr: str) -> int:
    """Number of nodes reachable from ``root`` (iterative DFS over ``children_attr``)."""
    seen, stack = {id(root)}, [root]
    while stack:
        node = stack.pop()
        for child in getattr(node, children_attr):
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return len(seen)


def _memory_kb(field: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process in kB from /proc (Linux).

    Unlike ``ru_maxrss``, VmHWM belongs to this process's own address space, so it does not
    inherit the parent's peak across fork/exec. Falls back to ``ru_maxrss`` elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(
    engine: str, steps: int, X: list[list[float]], y: list[float], import_torch: bool = False
) -> dict:
    """Train on moons with one engine in this process; return timings, memory and losses.

    The data comes from the parent (stdin), so a worker imports only ``g2c.autodiff`` (both
    engines) and nothing else of g2c: the garbage collector sees the same small heap in both.
    """
    import g2c.autodiff as ad

    if import_torch:  # a notebook's heap: ~150k more objects for every full GC pass to walk
        import torch  # noqa: F401
    model = ad.ScalarMLP(
        random.Random(1337),
        layer_sizes=(2, 16, 16, 1),
        activation="relu",
        output_activation="linear",
        engine="reference" if engine == "classic" else "fast",
    )

    def step(k: int) -> tuple[float, float]:
        return ad.train_moons_step(model, X, y, lr=1.0 - 0.9 * k / 100)

    def graph():
        return ad.max_margin_loss(model, X, y)[0], "_children"

    gc_time = [0.0, 0.0]  # total seconds inside the cyclic GC, start of the current pass

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    rss_before_kb = _memory_kb("VmRSS")
    tracked_before = len(gc.get_objects())
    losses, accs = [], []
    gc.callbacks.append(on_gc)
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(steps):
        loss, acc = step(k)
        losses.append(loss)
        accs.append(acc)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0  # less sensitive than wall time to a loaded machine
    gc.callbacks.remove(on_gc)
    peak_rss_kb = _memory_kb("VmHWM")
    root, attr = graph()  # one extra forward (untimed) to count the nodes of a step's graph
    nodes_per_step = _count_nodes(root, attr)
    return {
        "engine": engine,
        "steps": steps,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "gc_seconds": gc_time[0],
        "nodes_per_step": nodes_per_step,
        "nodes_per_s": nodes_per_step * steps / seconds,
        "us_per_node": 1e6 * seconds / (nodes_per_step * steps),
        "peak_rss_mb": peak_rss_kb / 1024,
        "peak_rss_above_start_mb": (peak_rss_kb - rss_before_kb) / 1024,
        "gc_tracked_objects_at_start": tracked_before,
        "gc_collections": [g["collections"] for g in gc.get_stats()],
        "final_loss": losses[-1],
        "final_accuracy": accs[-1],
        "losses": losses,
    }


def run_engine(engine: str, args: argparse.Namespace, data: dict) -> dict:
    """Run :func:`worker` for ``engine`` in a fresh subprocess (data on stdin); parse its JSON."""
    cmd = [sys.executable, __file__, "--worker", engine, "--steps", str(args.steps)] + (
        ["--import-torch"] if args.import_torch else []
    )
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, cwd=REPO, input=json.dumps(data)
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run both engines, print the table and write the JSON results."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=100, help="SGD steps (default 100, the full run)")
    p.add_argument("--samples", type=int, default=100, help="moons points (default 100)")
    p.add_argument("--seed", type=int, default=0, help="make_moons seed (default 0)")
    p.add_argument("--engines", default="classic,g2c", help="comma-separated subset of classic,g2c")
    p.add_argument("--out", type=Path, default=HERE / "results" / "autodiff.json")
    p.add_argument(
        "--import-torch",
        action="store_true",
        help="import torch in each worker first (a bigger heap for the GC, as in a notebook)",
    )
    p.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        data = json.loads(sys.stdin.read())
        print(json.dumps(worker(args.worker, args.steps, data["X"], data["y"], args.import_torch)))
        return 0

    # imported here, not at the top, so the workers (this file re-run) import only g2c.autodiff
    from rich.console import Console
    from rich.table import Table

    from g2c.artifacts import atomic_write_json
    from g2c.data.toy import make_moons

    X, y01 = make_moons(args.samples, noise=0.1, seed=args.seed)
    data = {"X": X.tolist(), "y": [2.0 * float(v) - 1.0 for v in y01]}  # labels in {-1, +1}
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        p.error(f"--engines must be a comma-separated subset of {ENGINES}, got {args.engines!r}")
    load_before = os.getloadavg()
    results = {e: run_engine(e, args, data) for e in engines}
    load_after = os.getloadavg()

    table = Table(
        title=f"moons 2-16-16-1, {args.samples} samples, {args.steps} steps (1 process each)"
    )
    for col in (
        "engine",
        "seconds",
        "CPU s",
        "GC share",
        "nodes/step",
        "nodes/s",
        "µs/node",
        "peak RSS MB",
        "Δ RSS MB",
        "final loss",
        "acc",
    ):
        table.add_column(col, justify="right")
    for r in results.values():
        table.add_row(
            r["engine"],
            f"{r['seconds']:.2f}",
            f"{r['cpu_seconds']:.2f}",
            f"{r['gc_seconds'] / r['seconds']:.0%}",
            f"{r['nodes_per_step']:,}",
            f"{r['nodes_per_s']:,.0f}",
            f"{r['us_per_node']:.2f}",
            f"{r['peak_rss_mb']:.1f}",
            f"{r['peak_rss_above_start_mb']:.1f}",
            f"{r['final_loss']:.4f}",
            f"{r['final_accuracy']:.0%}",
        )
    console = Console(width=150)
    console.print(table)
    summary = {
        "workload": {
            "model": "2-16-16-1 relu, linear out",
            "loss": "max-margin + 1e-4 L2",
            "samples": args.samples,
            "steps": args.steps,
            "seed": args.seed,
            "import_torch": args.import_torch,
        },
        "python": platform.python_version(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "results": {e: {k: v for k, v in r.items() if k != "losses"} for e, r in results.items()},
    }
    if "classic" in results and "g2c" in results:
        c, g = results["classic"], results["g2c"]
        summary["speedup_wall"] = c["seconds"] / g["seconds"]
        summary["speedup_cpu"] = c["cpu_seconds"] / g["cpu_seconds"]
        summary["peak_rss_ratio"] = g["peak_rss_mb"] / c["peak_rss_mb"]
        summary["max_abs_loss_diff"] = max(abs(a - b) for a, b in zip(c["losses"], g["losses"]))
        console.print(
            f"g2c is {summary['speedup_wall']:.1f}x faster (wall; {summary['speedup_cpu']:.1f}x in CPU time) with {summary['peak_rss_ratio']:.2f}x the classic peak RSS; "
            f"loss curves agree to {summary['max_abs_loss_diff']:.1e}; load {load_before[0]:.2f} -> {load_after[0]:.2f}"
        )
    atomic_write_json(args.out, summary)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
