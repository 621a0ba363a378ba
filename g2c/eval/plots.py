"""The reliability diagram (Guo et al. 2017, fig. 1): per confidence bin, the accuracy of the
examples in it against the diagonal of perfect calibration, with the bins' share of examples
underneath. Written with matplotlib's non-interactive Agg backend (no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from g2c.artifacts import atomic_write_with
from g2c.eval.core import expected_calibration_error, reliability_curve


def reliability_diagram(
    confidences: Sequence[float],
    correct: Sequence[bool],
    path: str | os.PathLike,
    *,
    title: str = "",
    n_bins: int = 10,
) -> Path:
    """Write the reliability diagram of ``confidences`` (each in [0, 1]) and ``correct`` to
    the PNG ``path`` (atomically); returns the path. The title carries the ECE. Bad input →
    ValueError as :func:`g2c.eval.core.reliability_curve`."""
    import matplotlib  # imported here: most evaluations never draw, and it is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = reliability_curve(confidences, correct, n_bins)
    ece = expected_calibration_error(confidences, correct, n_bins)
    width = 1.0 / n_bins
    lefts = [b["lower"] for b in bins]
    acc = [b["accuracy"] or 0.0 for b in bins]
    conf = [b["confidence"] if b["count"] else b["lower"] + width / 2 for b in bins]
    n = sum(b["count"] for b in bins)
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    ax.bar(lefts, acc, width=width, align="edge", edgecolor="black", label="accuracy")
    ax.bar(lefts, [c - a if b["count"] else 0 for c, a, b in zip(conf, acc, bins)], bottom=acc,
           width=width, align="edge", color="tab:red", alpha=0.3, label="gap")  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {ece:.3f}, n={n})".strip())
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar(lefts, [b["count"] / n for b in bins], width=width, align="edge", color="gray")
    ax_n.set_xlim(0, 1)
    ax_n.set_xlabel("confidence")
    ax_n.set_ylabel("share")
    fig.tight_layout()
    try:
        return atomic_write_with(Path(path), lambda p: fig.savefig(p, format="png", dpi=100))
    finally:
        plt.close(fig)


__all__ = ["reliability_diagram"]
