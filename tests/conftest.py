"""Shared test setup: one torch thread per worker, deterministic seeds, data dir lookup."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("G2C_NO_PROGRESS", "1")
os.environ.setdefault("G2C_OFFLINE", "1")  # tests never reach the internet
# MFU needs a peak FLOP/s: a fixed one, so tests never time a matmul or write ~/.cache
os.environ.setdefault("G2C_PEAK_FLOPS", "1e12")
# the assistant's conversation store: never the user's ./runs/conversations.sqlite
os.environ.setdefault(
    "G2C_CONVERSATIONS",
    os.path.join(tempfile.mkdtemp(prefix="g2c-test-conversations-"), "conversations.sqlite"),
)

REPO = Path(__file__).resolve().parents[1]
if "G2C_DATA_DIR" not in os.environ and (REPO.parent / "shared" / "data").is_dir():
    os.environ["G2C_DATA_DIR"] = str(REPO.parent / "shared" / "data")


def data_dir() -> Path | None:
    """The shared data directory, or None when not configured."""
    d = os.environ.get("G2C_DATA_DIR")
    return Path(d) if d and Path(d).is_dir() else None


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    # one torch thread per test: a test that runs a CLI in-process (its --threads default is
    # min(2, cores)) must not change the thread count later tests in the same worker see
    torch.set_num_threads(1)
    yield
