"""`g2c lm` — train one pre-transformer character LM, or run the six-model comparison.

g2c lm train --model lstm --data tinyshakespeare --steps 2000 --out runs/lstm
g2c lm compare --steps 2000 --out runs/lm-compare
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from g2c.cli._common import add_runtime_flags, console, make_progress, set_threads


def register(sub: argparse._SubParsersAction) -> None:
    """Register `g2c lm train` and `g2c lm compare`."""
    from g2c.lm import MODEL_NAMES

    p = sub.add_parser("lm", help="06: bigram / MLP / RNN / LSTM / WaveNet character models")
    lm_sub = p.add_subparsers(dest="lm_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    t = lm_sub.add_parser("train", help="train one model and save it (safetensors + manifest)")
    t.add_argument("--model", choices=MODEL_NAMES, default="lstm")
    _add_data_flags(t)
    _add_train_flags(t, steps=2000)
    t.add_argument("--sample-tokens", type=int, default=200, help="characters to sample at the end")
    t.add_argument("--temperature", type=float, default=1.0)
    t.add_argument("--out", default=None, help="run directory (default: $G2C_HOME/lm-<model>)")
    add_runtime_flags(t)
    t.set_defaults(func=_train)

    c = lm_sub.add_parser("compare", help="the six-model validation-perplexity table and plot")
    c.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated subset")
    _add_data_flags(c)
    _add_train_flags(c, steps=2000)
    c.add_argument("--sample-tokens", type=int, default=200)
    c.add_argument("--out", default=None, help="output directory (default: $G2C_HOME/lm-compare)")
    add_runtime_flags(c)
    c.set_defaults(func=_compare)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="tinyshakespeare", help="text dataset name")
    p.add_argument("--text-file", default=None, help="train on this UTF-8 text file instead")
    p.add_argument("--max-chars", type=int, default=None, help="use only the first N characters")
    p.add_argument("--val-fraction", type=float, default=0.1)


def _add_train_flags(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--context-length", type=int, default=16)
    p.add_argument("--embedding-dim", type=int, default=24)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument(
        "--eval-tokens",
        type=int,
        default=10_000,
        help="validation targets per intermediate evaluation (final: all)",
    )


def _load(args: argparse.Namespace):
    from g2c.data import load_text
    from g2c.lm import char_split

    if args.text_file:
        text = Path(args.text_file).read_text(encoding="utf-8")
        source = str(args.text_file)
    else:
        text = load_text(args.data)
        source = args.data
    if args.max_chars is not None:
        if args.max_chars <= 0:
            raise ValueError(f"--max-chars must be positive, got {args.max_chars}")
        text = text[: args.max_chars]
    tok, train_ids, val_ids = char_split(text, args.val_fraction)
    return source, tok, train_ids, val_ids


def _train(args: argparse.Namespace) -> int:
    import torch
    from rich.table import Table

    from g2c.artifacts import append_jsonl, atomic_write_text, g2c_home
    from g2c.lm import (
        LMConfig,
        bits_per_token,
        build_model,
        count_parameters,
        perplexity,
        sample,
        save_lm,
        train_lm,
    )
    from g2c.nn import resolve_device

    threads = set_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    source, tok, train_ids, val_ids = _load(args)
    bigram = args.model in ("bigram", "neural-bigram")
    cfg = LMConfig(
        model=args.model,
        vocab_size=tok.vocab_size,
        context_length=1 if bigram else args.context_length,
        embedding_dim=args.embedding_dim,
        hidden_dim=args.hidden_dim,
    )
    gen = torch.Generator().manual_seed(args.seed)
    model = build_model(cfg, generator=gen).to(device)
    out = Path(args.out) if args.out else g2c_home() / f"lm-{args.model}"
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    console.print(
        f"[bold]{args.model}[/]: {model!r} on {source} ({len(train_ids):,} train / "
        f"{len(val_ids):,} val chars, V={tok.vocab_size}), device {device}, "
        f"{threads} threads"
    )
    train_cfg = {
        k: getattr(args, k)
        for k in (
            "steps",
            "batch_size",
            "lr",
            "grad_clip",
            "eval_every",
            "eval_tokens",
            "seed",
            "val_fraction",
            "max_chars",
        )
    }
    if args.model == "bigram":
        model.fit(train_ids)
        hist = {"seconds": 0.0}
    else:
        with make_progress() as progress:
            task = progress.add_task(f"train {args.model}", total=args.steps, info="")

            def on_step(step: int, loss: float) -> None:
                progress.update(task, completed=step, info=f"loss {loss:.3f}")

            def on_log(rec: dict) -> None:
                append_jsonl(metrics_path, rec)
                if rec["val_ppl"] is not None:
                    progress.console.print(
                        f"step {rec['step']:>6}  train loss "
                        f"{rec['train_loss']:.4f}  val ppl {rec['val_ppl']:.3f}"
                    )

            hist = train_lm(
                model,
                train_ids,
                val_ids,
                num_steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                log_every=args.eval_every,
                grad_clip=args.grad_clip,
                schedule="cosine",
                min_lr=args.lr / 10,
                generator=gen,
                eval_tokens=args.eval_tokens,
                on_step=on_step,
                on_log=on_log,
            )
    ppl = perplexity(model, val_ids)
    text = tok.decode(
        sample(
            model,
            tok.encode("\n") if "\n" in tok.stoi else val_ids[:1],
            args.sample_tokens,
            temperature=args.temperature,
            generator=torch.Generator().manual_seed(args.seed),
        )
    )
    metrics = {
        "val_ppl": ppl,
        "bpc": bits_per_token(ppl),
        "train_seconds": hist["seconds"],
        "params": count_parameters(model),
        "val_targets": len(val_ids) - cfg.context_length,
    }
    tok.save(out / "tokenizer.json")
    save_lm(
        out,
        model,
        cfg,
        data=source,
        train_config=train_cfg,
        metrics=metrics,
        tokenizer="tokenizer.json",
    )
    atomic_write_text(
        out / "report.md",
        f"# g2c lm train: {args.model}\n\n"
        f"```json\n{json.dumps(metrics, indent=2)}\n```\n\n## sample\n\n```text\n{text}\n```\n",
    )
    table = Table(title=f"{args.model} on {source}")
    for col in ("parameters", "val perplexity", "bits/char", "train s"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{metrics['params']:,}", f"{ppl:.3f}", f"{metrics['bpc']:.3f}", f"{hist['seconds']:.1f}"
    )
    console.print(table)
    console.print(text, markup=False, highlight=False)
    console.print(f"saved to {out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from g2c.artifacts import atomic_write_json, atomic_write_text, g2c_home
    from g2c.lm import CompareConfig, compare_models, plot_val_curves, results_markdown
    from g2c.nn import resolve_device

    threads = set_threads(args.threads)
    device = resolve_device(args.device)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    cfg = CompareConfig(
        models=models,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        grad_clip=args.grad_clip,
        context_length=args.context_length,
        embedding_dim=args.embedding_dim,
        hidden_dim=args.hidden_dim,
        eval_every=args.eval_every,
        eval_tokens=args.eval_tokens,
        sample_tokens=args.sample_tokens,
        seed=args.seed,
    )
    source, tok, train_ids, val_ids = _load(args)
    out = Path(args.out) if args.out else g2c_home() / "lm-compare"
    console.print(
        f"comparing {', '.join(models)} on {source} ({len(train_ids):,} train / "
        f"{len(val_ids):,} val chars), {args.steps} steps × {args.batch_size}, "
        f"device {device}, {threads} threads"
    )
    with make_progress() as progress:
        tasks: dict[str, int] = {}

        def on_model(name: str) -> None:
            tasks[name] = progress.add_task(
                name, total=0 if name == "bigram" else args.steps, info=""
            )

        def on_step(name: str, step: int, loss: float) -> None:
            progress.update(tasks[name], completed=step, info=f"loss {loss:.3f}")

        results = compare_models(
            train_ids,
            val_ids,
            tok.vocab_size,
            cfg,
            prompt=tok.encode("\n") if "\n" in tok.stoi else None,
            device=device,
            on_model=on_model,
            on_step=on_step,
        )
    md = results_markdown(results, decode=tok.decode)
    atomic_write_text(out / "table.md", md)
    atomic_write_json(
        out / "results.json",
        {"config": cfg.to_dict(), "data": source, "threads": threads, "results": results},
    )
    plot_val_curves(results, out / "val-ppl.png")
    table = Table(
        title=f"validation perplexity on {source} (same {results[0]['val_targets']:,} targets)"
    )
    for col, just in (
        ("model", "left"),
        ("parameters", "right"),
        ("val ppl", "right"),
        ("bits/char", "right"),
        ("train s", "right"),
    ):
        table.add_column(col, justify=just)
    for r in results:
        table.add_row(
            r["model"],
            f"{r['params']:,}",
            f"{r['val_ppl']:.3f}",
            f"{r['bpc']:.3f}",
            f"{r['train_seconds']:.1f}",
        )
    console.print(table)
    for r in results:
        console.rule(r["model"])
        console.print(tok.decode(r["sample_ids"]), markup=False, highlight=False)
    console.print(f"wrote {out / 'table.md'}, {out / 'results.json'}, {out / 'val-ppl.png'}")
    return 0
