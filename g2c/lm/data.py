"""Character-level data for the module-06 models: text → CharTokenizer → contiguous split ids.

The vocabulary is built from the whole text (as nanoGPT's ``shakespeare_char``), so validation
never meets an unknown character; the split is contiguous (``g2c.data.split_text``): the first
90 % trains, the last 10 % validates.
"""

from __future__ import annotations

import torch

from g2c.data import split_text
from g2c.tokenizer import CharTokenizer


def char_split(
    text: str, val_fraction: float = 0.1
) -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """Return (tokenizer, train ids (T_train,) long, val ids (T_val,) long) for ``text``.

    Raises TypeError for non-str text and ValueError when a split would be empty or
    ``val_fraction`` is outside (0, 1) (see ``split_text``).
    """
    train_text, val_text = split_text(text, val_fraction)
    tok = CharTokenizer(text)
    train_ids = torch.tensor(tok.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(tok.encode(val_text), dtype=torch.long)
    return tok, train_ids, val_ids
