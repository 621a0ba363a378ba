"""`g2c data`: list the registered datasets, verify local copies, download missing ones.

    g2c data list                    name, files present, licence, source
    g2c data check [NAME] [--json]   per-file status: ok / mismatch / missing (SHA-256)
    g2c data download NAME           fetch missing files into the user cache (verified)
    g2c data path NAME               print the directory the loaders would use
    g2c data prepare --input PATH... --tokenizer TOK --out DIR [...]
                                     clean, tokenize and shard a corpus (g2c.data.prepare)

``prepare`` streams the inputs (files, folders, gzip, registered text datasets) through exact
and MinHash de-duplication, the Gopher quality rules and a weighted source mixture into
uint16/uint32 shards with a manifest; an interrupted run resumes when rerun with the same flags.
``g2c train --shards OUT`` trains on them through memory maps (``g2c.pretraining.ShardedTokenStream``).

Exit codes: ``check`` returns 1 when a file's checksum mismatches (or, for a named dataset,
when a file is missing); ``download`` returns 1 when a transfer or checksum fails.
"""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from g2c.cli._common import PlainProgress, console, err_console, make_progress
from g2c.data import REGISTRY, check, download_dataset, get_dataset, locate, resolve

_STATUS_STYLE = {
    "ok": "[green]ok[/green]",
    "mismatch": "[bold red]mismatch[/bold red]",
    "missing": "[yellow]missing[/yellow]",
    "unverified": "[cyan]unverified[/cyan]",
    "present": "present",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `data` sub-command and its actions (list, check, download, path)."""
    p = sub.add_parser(
        "data",
        help="datasets: list, check checksums, download",
        description="Datasets known to g2c: where they are, their licence and checksum status. "
        "Lookup order: --path, $G2C_DATA_DIR/<dir>, system dirs, the user cache "
        "($G2C_CACHE_DIR/data or ~/.cache/g2c/data), then download.",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")

    ls = actions.add_parser("list", help="list registered datasets with files present and licence")
    ls.add_argument("--path", default=None, help="explicit data root to look in")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=_list)

    ck = actions.add_parser("check", help="verify SHA-256 of local files (all datasets or NAME)")
    ck.add_argument("name", nargs="?", default=None, help="dataset name (default: all)")
    ck.add_argument("--path", default=None, help="explicit dataset directory or data root")
    ck.add_argument("--no-verify", action="store_true", help="only check presence (no hashing)")
    ck.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ck.set_defaults(func=_check)

    dl = actions.add_parser("download", help="download a dataset's missing files into the cache")
    dl.add_argument("name", help="dataset name")
    dl.add_argument("--mirror", default=None, help="base URL tried first as <mirror>/<dir>/<file>")
    dl.add_argument("--dest", default=None, help="target directory (default: the user cache)")
    dl.add_argument("--force", action="store_true", help="re-download files already there")
    dl.set_defaults(func=_download)

    pa = actions.add_parser("path", help="print the directory the loaders would use (no download)")
    pa.add_argument("name", help="dataset name")
    pa.set_defaults(func=_path)

    pr = actions.add_parser(
        "prepare",
        help="clean, tokenize and shard a corpus (dedupe, quality, mixture; resumable)",
        description="Stream documents from files, folders (plain or .gz) or registered text "
        "datasets, drop exact and near duplicates and low-quality documents, tokenize with K "
        "processes and write uint16/uint32 shards plus manifest.json. Rerun the same command to "
        "resume an interrupted run. See docs/guides/data-pipeline.md.",
    )
    pr.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files, folders, NAME=PATH, or a text dataset (tinyshakespeare, gutenberg)",
    )
    pr.add_argument(
        "--tokenizer",
        required=True,
        help="'gpt2', a g2c tokenizer.json, or a run directory (anything load_tokenizer reads)",
    )
    pr.add_argument("--out", required=True, help="output directory (new, empty, or to resume)")
    pr.add_argument("--shard-tokens", type=int, default=10_000_000, help="ids per shard")
    pr.add_argument("--workers", type=int, default=1, help="tokenizing processes (default 1)")
    pr.add_argument("--dedupe", default="", help="comma list of stages: exact,minhash")
    pr.add_argument("--quality", choices=("gopher",), default=None, help="quality filter")
    pr.add_argument("--mixture", default=None, help="source weights, e.g. code=3,prose=1")
    pr.add_argument("--val-fraction", type=float, default=0.0, help="share of documents held out")
    pr.add_argument(
        "--documents",
        choices=("file", "paragraph"),
        default="file",
        help="one document per file (default) or per paragraph (blank-line separated)",
    )
    pr.add_argument("--include", nargs="*", default=[], help="file-name globs in folders (*.py)")
    pr.add_argument("--exclude", nargs="*", default=[], help="path-component globs to skip")
    pr.add_argument("--minhash-threshold", type=float, default=0.8, help="near-dup Jaccard")
    pr.add_argument("--json", action="store_true", help="print the manifest as JSON")
    pr.set_defaults(func=_prepare)


def _list(args: argparse.Namespace) -> int:

    rows = []
    for ds in REGISTRY.values():
        present = sum(locate(ds.name, f.name, args.path) is not None for f in ds.files)
        rows.append(
            {
                "name": ds.name,
                "dir": ds.dirname,
                "files_present": present,
                "files": len(ds.files),
                "license": ds.license,
                "source": ds.homepage,
                "description": ds.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="g2c datasets")
    for col in ("name", "files", "licence", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        count = f"{r['files_present']}/{r['files']}"
        style = (
            "green"
            if r["files_present"] == r["files"]
            else ("yellow" if r["files_present"] else "dim")
        )
        table.add_row(r["name"], f"[{style}]{count}[/{style}]", r["license"], r["source"])
    console.print(table)
    return 0


def _check(args: argparse.Namespace) -> int:

    if args.name is not None:
        get_dataset(args.name)  # unknown name → ValueError (exit 2 with the list of names)
    with make_progress(transient=True) as progress:
        task = progress.add_task("hashing", total=None, info="")
        rows = check(
            args.name,
            args.path,
            verify=not args.no_verify,
            progress_callback=lambda done, total: progress.update(
                task, completed=done, total=total
            ),
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table(title="g2c data check" + (f" {args.name}" if args.name else ""))
        for col in ("dataset", "file", "status", "location"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                r["dataset"],
                r["file"],
                _STATUS_STYLE.get(r["status"], r["status"]),
                r["path"] or "-",
            )
        console.print(table)
        counts = {s: sum(r["status"] == s for r in rows) for s in _STATUS_STYLE}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    failed = any(r["status"] == "mismatch" for r in rows)
    if args.name is not None:
        failed = failed or any(r["status"] == "missing" for r in rows)
    return 1 if failed else 0


def _download(args: argparse.Namespace) -> int:

    ds = get_dataset(args.name)
    console.print(f"{ds.name}: licence {ds.license}; source {ds.homepage}")
    with make_progress() as progress:
        state = {"task": None}

        def on_file(f) -> None:
            state["task"] = progress.add_task(f.name, total=None, info="")

        def on_bytes(done: int, total: int | None) -> None:
            progress.update(state["task"], completed=done, total=total)

        try:
            dest = download_dataset(
                args.name,
                dest=args.dest,
                force=args.force,
                mirror=args.mirror,
                progress_callback=on_bytes,
                file_callback=on_file,
            )
        except (OSError, ValueError) as exc:  # network, truncated transfer, checksum
            err_console.print(f"[red]g2c data download: {exc}[/red]")
            return 1
    console.print(f"{ds.name}: all {len(ds.files)} files in {dest}")
    return 0


def _path(args: argparse.Namespace) -> int:

    print(resolve(args.name, download=False))
    return 0


def _load_prepare_tokenizer(spec: str):
    """'gpt2' → the packaged GPT-2 files (g2c.data 'gpt2-tokenizer'); else load_tokenizer(path)."""
    from pathlib import Path

    from g2c.tokenizer import load_tokenizer

    if spec == "gpt2":
        return load_tokenizer(resolve("gpt2-tokenizer"))
    if not Path(spec).exists():
        raise ValueError(
            f"--tokenizer {spec!r}: not 'gpt2' and no such file or directory; pass 'gpt2', a "
            "g2c tokenizer.json, or a run directory"
        )
    return load_tokenizer(spec)


def _prepare(args: argparse.Namespace) -> int:
    from g2c.data.prepare import PrepareConfig, prepare_corpus

    cfg = PrepareConfig(  # bad values → ValueError before any work
        inputs=args.input,
        tokenizer=args.tokenizer,
        shard_tokens=args.shard_tokens,
        workers=args.workers,
        dedupe=args.dedupe,
        quality=args.quality,
        mixture=args.mixture,
        val_fraction=args.val_fraction,
        documents=args.documents,
        include=args.include,
        exclude=args.exclude,
        minhash_threshold=args.minhash_threshold,
    )
    tokenizer = _load_prepare_tokenizer(args.tokenizer)
    quiet = PlainProgress(enabled=False) if args.json else None  # stdout carries the JSON
    with quiet or make_progress(transient=True) as progress:
        task = progress.add_task("documents", total=None, info="")

        def on_event(kind: str, info: dict) -> None:
            if kind == "batch":
                progress.update(task, completed=info["documents"])
            elif kind == "shard":
                progress.update(task, info=f"{info['file']} ({info['tokens']:,} ids)")
            elif kind == "start" and info["resume"]:
                progress.console.print(f"resuming after {info['shards']} finished shards")

        manifest = prepare_corpus(cfg, tokenizer, args.out, on_event=on_event)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    funnel = manifest["funnel"]
    table = Table(title=f"g2c data prepare → {args.out}")
    table.add_column("stage")
    table.add_column("documents", justify="right")
    for key in ("documents_in", "exact_duplicates", "near_duplicates", "quality_dropped", "kept"):
        table.add_row(key.replace("_", " "), f"{funnel[key]:,}")
    console.print(table)
    if funnel["quality_reasons"]:
        console.print(
            "quality: " + ", ".join(f"{k} {v}" for k, v in funnel["quality_reasons"].items())
        )
    tokens = manifest["tokens"]
    console.print(
        f"{tokens['train']:,} train + {tokens['val']:,} val tokens ({manifest['dtype']}) in "
        f"{len(manifest['shards'])} shards"
    )
    if manifest["mixture"]:
        observed = manifest["mixture"]["observed_fractions"]
        console.print("mixture: " + ", ".join(f"{k} {v:.3f}" for k, v in observed.items()))
    gpt2 = " --tokenizer gpt2" if args.tokenizer == "gpt2" else ""
    console.print(f"train on it: g2c train --shards {args.out}{gpt2} ...", highlight=False)
    return 0
