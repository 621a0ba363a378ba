"""`g2c data` (placeholder until its stage lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `data` sub-command."""
    p = sub.add_parser("data", help="(not built yet)")
    p.set_defaults(func=lambda args: 1)
