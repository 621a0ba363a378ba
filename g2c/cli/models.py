"""`g2c models` (placeholder until its stage lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `models` sub-command."""
    p = sub.add_parser("models", help="(not built yet)")
    p.set_defaults(func=lambda args: 1)
