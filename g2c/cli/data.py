"""`g2c data`: list the registered datasets, verify local copies, download missing ones.

    g2c data list                    name, files present, licence, source
    g2c data check [NAME] [--json]   per-file status: ok / mismatch / missing (SHA-256)
    g2c data download NAME           fetch missing files into the user cache (verified)
    g2c data path NAME               print the directory the loaders would use

Exit codes: ``check`` returns 1 when a file's checksum mismatches (or, for a named dataset,
when a file is missing); ``download`` returns 1 when a transfer or checksum fails.
"""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from g2c.cli._common import console, err_console, make_progress
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
