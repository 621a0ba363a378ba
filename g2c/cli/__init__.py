"""The ``g2c`` command: one sub-command per course stage.

Each stage lives in its own module ``g2c/cli/<stage>.py`` exposing ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed ``argparse.Namespace``, returns
an exit code). Library code never prints; only this package prints tables and progress bars.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from g2c import __version__

# Course order. Each name is a module in this package with a ``register`` function.
STAGES: tuple[str, ...] = (
    "data",
    "mnist",
    "tokenizer",
    "vectors",
    "lm",
    "train",
    "sample",
    "models",
    "inspect",
    "speedrun",
    "sft",
    "dpo",
    "eval",
    "chat",
    "serve",
    "synth",
    "rag",
    "agent",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every stage's sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="g2c",
        description="g2c — From Gradients to ChatGPT: train, sample and inspect small LMs "
        "built from first principles.",
    )
    parser.add_argument("--version", action="version", version=f"g2c {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="STAGE", title="stages")
    for name in STAGES:
        module = importlib.import_module(f"g2c.cli.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``g2c`` console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, TypeError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"g2c {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
