"""Benchmark g2c's byte-level BPE against HF ``tokenizers`` and tiktoken, in one run, 1 thread.

What it measures (same text, same vocab size, same process unless noted):

1. training at vocab 4096 on TinyShakespeare: ``train_fast`` vs HF's ``BpeTrainer`` (ByteLevel,
   GPT-2 pattern) vs g2c's clear ``train`` (per-merge recount; timed on its first merges and
   extrapolated linearly, which *over*-estimates it since chunks shrink as merges proceed);
   plus a small run where ``train`` is timed to the end and its merges checked against
   ``train_fast``.
2. vocab 16384 on Gutenberg + TinyShakespeare (~7 MB) and peak memory on 10 MB of text
   (each in a fresh subprocess: wall time and ``ru_maxrss``).
3. encoding TinyShakespeare: ``encode`` (reference), ``encode_fast`` (cold and warm cache),
   the tiktoken export and HF tokenizers, all with the same trained vocabulary, in MB/s.

Usage: ``python bench/tokenizer.py [--quick]``; prints a rich table and writes
``bench/results/tokenizer.json`` (``tokenizer_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from g2c.tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> str:
    """Text of dataset ``name`` via g2c.data (falls back to reading $G2C_DATA_DIR directly)."""
    try:
        from g2c.data import load_text

        return load_text(name)
    except ImportError:
        root = Path(os.environ.get("G2C_DATA_DIR", "../shared/data"))
        if name == "tinyshakespeare":
            return (root / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
        return "\n\n".join(
            f.read_bytes().decode("utf-8", "replace") for f in sorted((root / name).glob("*.txt"))
        )


def timed(fn, *args, **kwargs):
    """(result, wall seconds); the CPU seconds of the last call are kept in ``CPU[0]``."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    CPU[0] = time.process_time() - c0
    return out, time.perf_counter() - t0


CPU = [0.0]


def hf_train(text: str, vocab_size: int):
    """HF tokenizers' BPE trainer with GPT-2 byte-level pre-tokenization (no prefix space)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: ``VmHWM`` from /proc (Linux), else ru_maxrss.

    (ru_maxrss of an exec'd child can report the parent's RSS at fork time; VmHWM cannot.)
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def child(args: argparse.Namespace) -> None:
    """Subprocess mode: train_fast on a corpus, print JSON with seconds and peak RSS."""
    text = load("gutenberg") + "\n\n" + load("tinyshakespeare")
    if args.child_mb:
        target = int(args.child_mb * 1e6)
        reps = [text]
        while sum(len(t.encode()) for t in reps) < target:
            reps.append(text)
        text = "\n\n".join(reps).encode()[:target].decode("utf-8", "ignore")
    tok = BPETokenizer(["<|endoftext|>"], pattern=GPT2_SPLIT_PATTERN)
    ids, seconds = timed(tok.train_fast, text, args.child_vocab)
    vals = [v for i, v in tok.vocab.items() if i not in tok.id_to_special]
    print(
        json.dumps(
            {
                "mb": len(text.encode()) / 1e6,
                "vocab_size": tok.vocab_size,
                "seconds": seconds,
                "cpu_seconds": CPU[0],
                "num_tokens": len(ids),
                "duplicate_token_bytes": len(vals) - len(set(vals)),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def run_child(vocab: int, mb: float | None) -> dict:
    cmd = [sys.executable, __file__, "--child-vocab", str(vocab)]
    if mb:
        cmd += ["--child-mb", str(mb)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plots(out_dir: Path) -> dict:
    """Docs figures: compression vs vocab size (held-out text) and merge counts vs merge index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = load("tinyshakespeare")
    cut = int(len(text) * 0.9)
    train, held = text[:cut], text[cut:]
    other = load("gutenberg")[:300_000]
    sizes = [256, 512, 1024, 2048, 4096, 8192]
    curves: dict = {}
    counts: dict = {}
    for name, pattern in (
        ("GPT-2 pattern", GPT2_SPLIT_PATTERN),
        ("GPT-4 pattern", GPT4_SPLIT_PATTERN),
    ):
        tok = BPETokenizer(pattern=pattern)
        log: list[int] = []
        tok.train_fast(
            train,
            sizes[-1],
            progress_callback=lambda d, t, i, log=log: log.append(i["count"]),
            progress_every=1,
        )
        counts[name] = log
        for label, t in (("held-out Shakespeare", held), ("Gutenberg (other domain)", other)):
            n_bytes = len(t.encode("utf-8"))
            curves[f"{name}, {label}"] = [n_bytes / len(tok.encode_at_vocab(t, v)) for v in sizes]
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, ys in curves.items():
        ax.plot(sizes, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size (trained on 90% of TinyShakespeare)")
    ax.set_ylabel("bytes per token")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "04-compression-vs-vocab.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, ys in counts.items():
        ax.plot(range(1, len(ys) + 1), ys, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("merge number")
    ax.set_ylabel("count of the merged pair")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "04-merge-counts.png")
    plt.close(fig)
    return {"sizes": sizes, "bytes_per_token": curves}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (300 KB, vocab 1024)")
    parser.add_argument(
        "--plots", action="store_true", help="only draw the docs figures (04-*.png)"
    )
    parser.add_argument("--child-vocab", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-mb", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_vocab:
        child(args)
        return {}
    if args.plots:
        img = Path(__file__).resolve().parents[1] / "docs" / "modules" / "img"
        res = plots(img)
        print(json.dumps(res, indent=1))
        return res
    import torch

    torch.set_num_threads(1)
    shakespeare = load("tinyshakespeare")
    text = shakespeare[:300_000] if args.quick else shakespeare
    vocab = 1024 if args.quick else 4096
    mb = len(text.encode()) / 1e6
    res: dict = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg()[0],
        "threads": 1,
        "text": f"tinyshakespeare[:{len(text)}]" if args.quick else "tinyshakespeare",
        "text_mb": mb,
        "vocab_size": vocab,
    }
    rows: list[tuple[str, str, str]] = []

    # 1. training ------------------------------------------------------------------------------
    _, t_hf = timed(hf_train, text, vocab)
    cpu_hf = CPU[0]
    fast = BPETokenizer(["<|endoftext|>"], pattern=GPT2_SPLIT_PATTERN)
    _, t_fast = timed(fast.train_fast, text, vocab)
    cpu_fast = CPU[0]
    fast4 = BPETokenizer(["<|endoftext|>"], pattern=GPT4_SPLIT_PATTERN)
    _, t_fast4 = timed(fast4.train_fast, text, vocab)
    n_ref = 10 if args.quick else 20
    ref = BPETokenizer(["<|endoftext|>"], pattern=GPT2_SPLIT_PATTERN)
    _, t_ref_part = timed(ref.train, text, ref.base_vocab_size + n_ref)
    total_merges = vocab - ref.base_vocab_size
    t_ref_est = t_ref_part / n_ref * total_merges
    assert list(ref.merges) == list(fast.merges)[:n_ref], "train and train_fast disagree"
    small = shakespeare[: 30_000 if args.quick else 100_000]
    a, b = BPETokenizer(pattern=GPT2_SPLIT_PATTERN), BPETokenizer(pattern=GPT2_SPLIT_PATTERN)
    _, t_small_ref = timed(a.train, small, 512)
    _, t_small_fast = timed(b.train_fast, small, 512)
    assert a.merges == b.merges, "train and train_fast disagree on the small run"
    res["train"] = {
        "hf_bpe_trainer_s": t_hf,
        "train_fast_gpt2_s": t_fast,
        "train_fast_gpt4_s": t_fast4,
        "train_ref_first_merges": n_ref,
        "train_ref_first_merges_s": t_ref_part,
        "train_ref_extrapolated_s": t_ref_est,
        "fast_over_hf": t_fast / t_hf,
        "hf_bpe_trainer_cpu_s": cpu_hf,
        "train_fast_gpt2_cpu_s": cpu_fast,
        "fast_over_hf_cpu": cpu_fast / cpu_hf,
        "ref_over_fast_extrapolated": t_ref_est / t_fast,
        "small_vocab512": {
            "chars": len(small),
            "train_s": t_small_ref,
            "train_fast_s": t_small_fast,
            "ratio": t_small_ref / t_small_fast,
            "same_merges": True,
        },
    }
    rows += [
        (f"train vocab {vocab}: HF BpeTrainer", f"{t_hf:.2f} s", "1.00×"),
        ("train_fast (GPT-2 pattern)", f"{t_fast:.2f} s", f"{t_fast / t_hf:.2f}× HF"),
        (
            "  same, CPU time (HF / g2c)",
            f"{cpu_hf:.2f} / {cpu_fast:.2f} s",
            f"{cpu_fast / cpu_hf:.2f}× HF",
        ),
        ("train_fast (GPT-4 pattern)", f"{t_fast4:.2f} s", f"{t_fast4 / t_hf:.2f}× HF"),
        (
            f"train (reference), extrapolated from {n_ref} merges",
            f"{t_ref_est:.0f} s",
            f"{t_ref_est / t_fast:.0f}× train_fast",
        ),
        (
            f"{len(small) // 1000} KB, vocab 512: train vs train_fast (same merges)",
            f"{t_small_ref:.2f} / {t_small_fast:.3f} s",
            f"{t_small_ref / t_small_fast:.0f}×",
        ),
    ]

    # 2. encoding ------------------------------------------------------------------------------
    enc_text = text
    enc_mb = len(enc_text.encode()) / 1e6
    fresh = BPETokenizer.from_dict(fast.to_dict())
    cpu: dict[str, float] = {}

    def run(key, fn, *a):
        out, wall = timed(fn, *a)
        cpu[key] = CPU[0]
        return out, wall

    ids_cold, t_cold = run("encode_fast_cold", fresh.encode_fast, enc_text)
    ids_warm, t_warm = run("encode_fast_warm", fresh.encode_fast, enc_text)
    ref_slice = enc_text[:100_000]
    ids_ref, t_ref_enc = run("encode_ref", fast.encode_reference, ref_slice)
    tk = fast.to_tiktoken()
    ids_tk, t_tk = run("tiktoken_export", tk.encode_ordinary, enc_text)
    hf = fast.to_hf_tokenizer()
    enc_hf, t_hfe = run("hf_tokenizers_export", hf.encode, enc_text)
    assert ids_cold == ids_warm == ids_tk == enc_hf.ids
    assert ids_ref == fresh.encode_fast(ref_slice)
    ref_mb = len(ref_slice.encode()) / 1e6
    wall = {
        "encode_ref": t_ref_enc,
        "encode_fast_cold": t_cold,
        "encode_fast_warm": t_warm,
        "tiktoken_export": t_tk,
        "hf_tokenizers_export": t_hfe,
    }
    mbps = {k: (ref_mb if k == "encode_ref" else enc_mb) / v for k, v in wall.items()}
    mbps_cpu = {k: (ref_mb if k == "encode_ref" else enc_mb) / max(v, 1e-9) for k, v in cpu.items()}
    res["encode_mb_per_s"] = mbps
    res["encode_mb_per_cpu_s"] = mbps_cpu
    res["encode_identical_ids"] = True
    labels = {
        "encode_ref": "encode (reference, 100 KB)",
        "encode_fast_cold": "encode_fast, cold cache",
        "encode_fast_warm": "encode_fast, warm cache",
        "tiktoken_export": "to_tiktoken() export",
        "hf_tokenizers_export": "to_hf_tokenizer() export (1 thread)",
    }
    for k, label in labels.items():
        rows.append(
            (
                label,
                f"{mbps[k]:.2f} MB/s (CPU {mbps_cpu[k]:.2f})",
                f"{mbps_cpu[k] / mbps_cpu['encode_fast_cold']:.2f}× encode_fast cold (CPU)",
            )
        )

    # GPT-2: our loader's tiktoken export vs tiktoken's own loader of the same files
    gpt2_dir = Path(os.environ.get("G2C_DATA_DIR", "../shared/data")) / "gpt2_tokenizer"
    if (gpt2_dir / "gpt2_vocab.json").is_file():
        import tempfile

        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks

        gpt2 = BPETokenizer.from_gpt2_files(
            gpt2_dir / "gpt2_vocab.json", gpt2_dir / "gpt2_merges.txt"
        )
        with tempfile.TemporaryDirectory() as tmp:  # tiktoken expects a '#version' header line
            bpe = Path(tmp) / "vocab.bpe"
            bpe.write_text(
                "#version: 0.2\n" + (gpt2_dir / "gpt2_merges.txt").read_text(encoding="utf-8")
            )
            ranks = data_gym_to_mergeable_bpe_ranks(str(bpe), str(gpt2_dir / "gpt2_vocab.json"))
        official = tiktoken.Encoding(
            "gpt2",
            pat_str=GPT2_SPLIT_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={"<|endoftext|>": 50256},
        )
        ours = gpt2.to_tiktoken("g2c-gpt2")
        best_off = best_ours = float("inf")
        for _ in range(3):
            ids_off, t = timed(official.encode_ordinary, enc_text)
            best_off = min(best_off, t)
            ids_ours, t = timed(ours.encode_ordinary, enc_text)
            best_ours = min(best_ours, t)
        ids_g2c, t_g2c_gpt2 = timed(gpt2.encode_fast, enc_text)
        assert ids_off == ids_ours == ids_g2c
        res["gpt2_encode_mb_per_s"] = {
            "tiktoken_own_loader": enc_mb / best_off,
            "g2c_to_tiktoken": enc_mb / best_ours,
            "g2c_encode_fast_cold": enc_mb / t_g2c_gpt2,
            "identical_ids": True,
        }
        rows += [
            ("GPT-2: tiktoken (its own loader)", f"{enc_mb / best_off:.2f} MB/s", "1.00×"),
            (
                "GPT-2: g2c from_gpt2_files().to_tiktoken()",
                f"{enc_mb / best_ours:.2f} MB/s",
                f"{best_off / best_ours:.2f}× tiktoken speed",
            ),
            ("GPT-2: g2c encode_fast (cold cache)", f"{enc_mb / t_g2c_gpt2:.2f} MB/s", ""),
        ]

    # 3. big runs in subprocesses (time + peak memory) -------------------------------------------
    if not args.quick:
        big = run_child(16384, None)
        mem = run_child(16384, 10.0)
        res["gutenberg_shakespeare_16384"] = big
        res["memory_10mb_16384"] = mem
        rows += [
            (
                f"train_fast vocab 16384 on {big['mb']:.1f} MB",
                f"{big['seconds']:.1f} s (CPU {big['cpu_seconds']:.1f} s)",
                f"peak RSS {big['peak_rss_mb']:.0f} MB",
            ),
            (
                f"train_fast vocab 16384 on {mem['mb']:.1f} MB",
                f"{mem['seconds']:.1f} s (CPU {mem['cpu_seconds']:.1f} s)",
                f"peak RSS {mem['peak_rss_mb']:.0f} MB",
            ),
        ]
    res["load_avg_end"] = os.getloadavg()[0]

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"g2c tokenizer bench ({res['text']}, {mb:.2f} MB, 1 thread)")
    for col in ("what", "result", "ratio"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(f"load average: start {res['load_avg_start']:.2f}, end {res['load_avg_end']:.2f}")
    from g2c.artifacts import atomic_write_json

    out = RESULTS / ("tokenizer_quick.json" if args.quick else "tokenizer.json")
    atomic_write_json(out, res)
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
