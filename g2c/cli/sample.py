"""`g2c sample` (placeholder until its stage lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `sample` sub-command."""
    p = sub.add_parser("sample", help="(not built yet)")
    p.set_defaults(func=lambda args: 1)
