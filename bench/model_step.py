"""Training step time of g2c's TransformerLM vs Hugging Face GPT2LMHeadModel, same config.

One step = zero grads, forward, cross-entropy, backward, AdamW step. The classic small CPU
configuration of nanoGPT's README (4 layers, 4 heads, width 128, context 64, batch 12,
char-level vocab 65, dropout 0). Models alternate in rounds of a few steps inside one process,
on 1 thread by default; the table reports the median step time of each and the ratio.

    .venv/bin/python bench/model_step.py            # ~1 minute
    .venv/bin/python bench/model_step.py --quick    # a few seconds (smoke)

Writes bench/results/model_step.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from g2c.artifacts import atomic_write_json  # noqa: E402
from g2c.nn import cross_entropy  # noqa: E402
from g2c.pretraining import Trainer  # noqa: E402
from g2c.training import AdamW  # noqa: E402
from g2c.transformer import TransformerLM  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _nanogpt_model import make_nanogpt_step  # noqa: E402

CONFIG = dict(vocab_size=65, embedding_dim=128, num_layers=4, num_heads=4, max_seq_len=64)
BATCH = 12


def _data(n_tokens: int = 200_000) -> torch.Tensor:
    """TinyShakespeare as char ids when present, else random ids over 65 symbols."""
    root = os.environ.get("G2C_DATA_DIR")
    if root:
        for path in Path(root).glob("tinyshakespeare*/*.txt"):
            text = path.read_text(encoding="utf-8")[:n_tokens]
            chars = sorted(set(text))
            if len(chars) <= 65:
                lut = {c: i for i, c in enumerate(chars)}
                return torch.tensor([lut[c] for c in text], dtype=torch.long)
    return torch.randint(0, 65, (n_tokens,), generator=torch.Generator().manual_seed(0))


def _batch(data: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    T = CONFIG["max_seq_len"]
    ix = torch.randint(0, len(data) - T - 1, (BATCH,), generator=g)
    x = torch.stack([data[i : i + T] for i in ix])
    y = torch.stack([data[i + 1 : i + T + 1] for i in ix])
    return x, y


# g2c variants: the default TransformerLM (fused kernels, explicit attention formula), the
# same with SDPA attention, and the reference path the course walks through (fused=False).
# Every variant uses GPT-2's init, as nanoGPT and HF do (it does not change the step time).
G2C_VARIANTS = {
    "default": dict(init="gpt2"),
    "sdpa": dict(init="gpt2", attention_impl="sdpa"),
    "reference": dict(init="gpt2", fused=False),
}


def make_g2c(variant: str):
    """(step function, parameter count) for TransformerLM ``variant`` + g2c AdamW (foreach)."""
    torch.manual_seed(0)
    model = TransformerLM(**CONFIG, **G2C_VARIANTS[variant])
    loss_fn = cross_entropy if variant == "reference" else F.cross_entropy
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    V = CONFIG["vocab_size"]

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x).view(-1, V), y.view(-1))
        loss.backward()
        opt.step()
        return loss

    return step, model.num_parameters()


def make_g2c_trainer(data: torch.Tensor, **switches):
    """step(x, y) running the default ``TransformerLM`` + ``Trainer.train_step`` (AdamW, betas
    0.9/0.99, weight decay 0.1, clip 1.0 — nanoGPT's train.py settings). The Trainer draws its
    own windows of ``data`` (``get_lm_batch``, ~0.05 ms: inside the timed step), so x, y are
    ignored."""
    torch.manual_seed(0)
    model = TransformerLM(**CONFIG, init="gpt2", **switches)
    trainer = Trainer(model, batch_size=BATCH, context_length=CONFIG["max_seq_len"],
                      max_steps=10**9, max_lr=1e-3, weight_decay=0.1, grad_clip=1.0,
                      optimizer="adamw", betas=(0.9, 0.99), device="cpu", seed=0)  # fmt: skip

    def step(x, y):
        return trainer.train_step(data)["loss"]

    return step


def pair_check(data: torch.Tensor, steps: int = 300) -> dict:
    """Only two contenders, one step each in turn (no other model between them in the caches):
    the default TransformerLM + Trainer vs nanoGPT at the same architecture (bias=True)."""
    g2c_step = make_g2c_trainer(data)
    nano_step = make_nanogpt_step(CONFIG["vocab_size"], CONFIG["max_seq_len"], CONFIG["num_layers"],
                                  CONFIG["num_heads"], CONFIG["embedding_dim"], bias=True)[0]  # fmt: skip
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"g2c": [], "nanogpt": []}
    for i in range(10 + steps):
        for name, step in (("g2c", g2c_step), ("nanogpt", nano_step)):
            x, y = _batch(data, g)
            t0 = time.perf_counter()
            step(x, y)
            if i >= 10:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"steps": steps, "g2c_ms": med["g2c"], "nanogpt_ms": med["nanogpt"],
            "ratio": med["g2c"] / med["nanogpt"], "load_avg_1min": os.getloadavg()[0]}  # fmt: skip


def make_hf():
    """(step function, parameter count) for GPT2LMHeadModel + torch.optim.AdamW."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=CONFIG["vocab_size"],
        n_positions=CONFIG["max_seq_len"],
        n_embd=CONFIG["embedding_dim"],
        n_layer=CONFIG["num_layers"],
        n_head=CONFIG["num_heads"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

    def step(x, y):
        opt.zero_grad()
        logits = model(x).logits
        loss = F.cross_entropy(logits.view(-1, cfg.vocab_size), y.view(-1))
        loss.backward()
        opt.step()
        return loss

    return step, sum(p.numel() for p in model.parameters()), model.config._attn_implementation


def memory_check(steps: int = 3) -> dict:
    """Peak RSS while training a ~10M-parameter TransformerLM (D=384, L=6, H=6, T=256, B=12).

    Run alone (``--memory``) so the peak belongs to this model only."""
    torch.manual_seed(0)
    cfg = dict(vocab_size=65, embedding_dim=384, num_layers=6, num_heads=6, max_seq_len=256)
    model = TransformerLM(**cfg, init="gpt2")  # the default kernels
    opt = AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    data = _data()
    t0 = time.perf_counter()
    for _ in range(steps):
        ix = torch.randint(0, len(data) - 257, (12,), generator=g)
        x = torch.stack([data[i : i + 256] for i in ix])
        y = torch.stack([data[i + 1 : i + 257] for i in ix])
        opt.zero_grad()
        F.cross_entropy(model(x).view(-1, 65), y.view(-1)).backward()
        opt.step()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": cfg, "batch_size": 12, "params": model.num_parameters(),
            "steps": steps, "peak_rss_mb": rss_mb,
            "s_per_step": (time.perf_counter() - t0) / steps}  # fmt: skip


def kv_cache_check(new_tokens: int = 60, repeats: int = 5) -> dict:
    """Greedy decoding time of the classic config with the KV cache vs full re-forwards."""
    torch.manual_seed(0)
    model = TransformerLM(**CONFIG, init="gpt2").eval()  # the default kernels
    prompt = torch.randint(0, CONFIG["vocab_size"], (1, 4))

    @torch.no_grad()
    def full():
        idx = prompt
        for _ in range(new_tokens):
            nxt = model(idx)[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat([idx, nxt], dim=1)
        return idx

    @torch.no_grad()
    def cached():
        logits, cache = model.forward_prefill(prompt, model.empty_kv_cache())
        out = [prompt]
        for _ in range(new_tokens):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            logits, cache = model.forward_cached(nxt, cache)
        return torch.cat(out, dim=1)

    assert torch.equal(full(), cached())  # same tokens
    times = {"full": [], "cached": []}
    for _ in range(repeats):
        for name, fn in (("full", full), ("cached", cached)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"new_tokens": new_tokens, "full_ms": med["full"], "cached_ms": med["cached"],
            "speedup": med["full"] / med["cached"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--steps-per-round", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3 rounds of 3 steps")
    ap.add_argument("--memory", action="store_true", help="only the 10M-parameter memory check")
    ap.add_argument("--kv", action="store_true", help="only the KV-cache decoding check")
    ap.add_argument("--pair", action="store_true",
                    help="only default TransformerLM + Trainer vs nanoGPT (bias=True), one step "
                         "each in turn")  # fmt: skip
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "model_step.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.steps_per_round, args.warmup = 3, 3, 2
    torch.set_num_threads(args.threads)
    if args.memory:
        mem = memory_check()
        print(
            f"10M-parameter model ({mem['params']:,} params, B=12, T=256): peak RSS "
            f"{mem['peak_rss_mb']:.0f} MB, {mem['s_per_step']:.2f} s/step"
        )
        atomic_write_json(Path(args.out).with_name("model_memory.json"), mem)
        return 0

    if args.kv:
        kv = kv_cache_check()
        print(
            f"greedy {kv['new_tokens']} tokens: full re-forward {kv['full_ms']:.1f} ms, "
            f"KV cache {kv['cached_ms']:.1f} ms, speed-up {kv['speedup']:.2f}x (same tokens)"
        )
        atomic_write_json(Path(args.out).with_name("model_kv_cache.json"), kv)
        return 0

    data = _data()
    if args.pair:
        pair = pair_check(data, steps=args.rounds * args.steps_per_round)
        print(
            f"g2c TransformerLM + Trainer {pair['g2c_ms']:.2f} ms vs nanoGPT (bias=True) "
            f"{pair['nanogpt_ms']:.2f} ms: {pair['ratio']:.3f}x ({pair['steps']} steps each, "
            "alternating step by step)"
        )
        atomic_write_json(Path(args.out).with_name("model_step_pair.json"), pair)
        return 0
    hf_step, hf_params, hf_attn = make_hf()
    default_step, g2c_params = make_g2c("default")
    nano_args = (CONFIG["vocab_size"], CONFIG["max_seq_len"], CONFIG["num_layers"],
                 CONFIG["num_heads"], CONFIG["embedding_dim"])  # fmt: skip
    runs = {
        "g2c (default) + g2c AdamW": default_step,
        "HF GPT2LMHeadModel + torch AdamW": hf_step,
        "nanoGPT model.py + train.py step (clip 1.0)": make_nanogpt_step(*nano_args)[0],
        "nanoGPT, bias=True (g2c's architecture)": make_nanogpt_step(*nano_args, bias=True)[0],
        "g2c TransformerLM + Trainer.train_step (default)": make_g2c_trainer(data),
        "g2c + Trainer, bias=False (nanoGPT's architecture)": make_g2c_trainer(data, bias=False),
        "g2c (attention_impl='sdpa') + g2c AdamW": make_g2c("sdpa")[0],
        "g2c (reference, fused=False) + g2c AdamW": make_g2c("reference")[0],
    }
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for step in runs.values():
        for _ in range(args.warmup):
            step(*_batch(data, g))
    for _ in range(args.rounds):  # alternate: each round runs every model once
        for name, step in runs.items():
            for _ in range(args.steps_per_round):
                x, y = _batch(data, g)
                t0 = time.perf_counter()
                step(x, y)
                times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    hf_name = "HF GPT2LMHeadModel + torch AdamW"
    print(
        f"step time, config {CONFIG} batch {BATCH}, {args.threads} thread(s), "
        f"{args.rounds}x{args.steps_per_round} steps each, load {os.getloadavg()[0]:.2f}"
    )
    nano_name = "nanoGPT model.py + train.py step (clip 1.0)"
    print(
        f"{'model':<50} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'vs HF':>7} "
        f"{'vs nanoGPT':>10}"
    )
    rows = []
    for name, v in times.items():
        qs = statistics.quantiles([t * 1e3 for t in v], n=10)
        ratio = med[name] / med[hf_name]
        ratio_nano = med[name] / med[nano_name]
        print(
            f"{name:<50} {med[name]:>10.2f} {qs[0]:>8.2f} {qs[-1]:>8.2f} {ratio:>7.3f} "
            f"{ratio_nano:>10.3f}"
        )
        rows.append(
            {"name": name, "median_ms": med[name], "p10_ms": qs[0], "p90_ms": qs[-1],
             "ratio_vs_hf": ratio, "ratio_vs_nanogpt": ratio_nano}
        )  # fmt: skip
    result = {
        "config": CONFIG,
        "batch_size": BATCH,
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_round": args.steps_per_round,
        "params": {"g2c": g2c_params, "hf": hf_params},
        "hf_attn_implementation": hf_attn,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "load_avg_1min": os.getloadavg()[0],
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results": rows,
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    if not args.quick:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
