"""The copy / reverse-sequence task (g2c.lm.copy_task) and its example: batches are laid out as
documented, a small TransformerLM learns to copy, and examples/08_copy_reverse.py --smoke runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from g2c.lm import (
    RNNLanguageModel,
    copy_task_accuracy,
    copy_task_loss,
    make_copy_batch,
)
from g2c.training import AdamW
from g2c.transformer import TransformerLM

REPO = Path(__file__).resolve().parents[1]


def test_copy_batch_layout_and_validation():
    x, y, mask = make_copy_batch(3, 4, num_symbols=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == mask.shape == (3, 8)
    line = torch.cat([x, y[:, -1:]], dim=1)  # (B, 2L + 1)
    assert torch.equal(y, line[:, 1:])  # targets are the inputs shifted by one
    assert (line[:, 4] == 5).all()  # the separator
    assert torch.equal(line[:, 5:], line[:, :4])  # copy: second half = first half
    assert mask[:, 4:].all() and not mask[:, :4].any()
    assert torch.equal(y[mask].view(3, 4), line[:, :4])  # the scored targets are the y's
    _, yr, mr = make_copy_batch(
        3, 4, num_symbols=5, task="reverse", generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(yr[mr].view(3, 4), line[:, :4].flip(1))  # same symbols, reversed
    for kwargs, match in (
        ({"batch_size": 0, "length": 3}, "batch_size"),
        ({"batch_size": 2, "length": 0}, "length"),
        ({"batch_size": 2, "length": 3, "task": "sort"}, "task"),
        ({"batch_size": 2, "length": 3, "num_symbols": 1}, "num_symbols"),
    ):
        with pytest.raises(ValueError, match=match):
            make_copy_batch(**kwargs)


def test_loss_and_accuracy_score_only_the_second_half():
    x, y, mask = make_copy_batch(4, 3, num_symbols=6, generator=torch.Generator().manual_seed(1))
    perfect = torch.nn.functional.one_hot(y, 7).float() * 50  # (B, T, V): right everywhere
    wrong_first_half = perfect.clone()
    wrong_first_half[:, :3] = perfect[:, :3].roll(1, dims=-1)  # unscored positions wrong
    assert copy_task_accuracy(wrong_first_half, y, mask) == (1.0, 1.0)
    assert copy_task_loss(wrong_first_half, y, mask).item() < 1e-6
    one_off = perfect.clone()
    one_off[0, 4] = perfect[0, 4].roll(1)  # one scored token wrong in line 0
    token, seq = copy_task_accuracy(one_off, y, mask)
    assert token == pytest.approx(11 / 12) and seq == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="logits"):
        copy_task_loss(perfect[0], y, mask)


def test_rnn_sequence_logits_are_causal_and_match_forward():
    m = RNNLanguageModel(7, 5, 4, 6, cell="lstm", generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 7, (3, 5))
    seq = m.sequence_logits(x)
    assert seq.shape == (3, 5, 7)
    torch.testing.assert_close(seq[:, -1], m(x))
    x2 = x.clone()
    x2[:, 3:] = (x2[:, 3:] + 1) % 7  # change the future: earlier outputs are unchanged
    torch.testing.assert_close(m.sequence_logits(x2)[:, :3], seq[:, :3])
    torch.testing.assert_close(m.sequence_logits(x[:, :2]), seq[:, :2])  # any T
    with pytest.raises(ValueError, match="T"):
        m.sequence_logits(x[0])


def test_small_transformer_learns_to_copy_short_sequences():
    model = TransformerLM(9, 32, 2, 4, 8, generator=torch.Generator().manual_seed(0))
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    for _ in range(120):
        x, y, mask = make_copy_batch(32, 4, generator=g)
        loss = copy_task_loss(model(x), y, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y, mask = make_copy_batch(256, 4, generator=torch.Generator().manual_seed(5))
    token, seq = copy_task_accuracy(model(x), y, mask)
    assert token > 0.95 and seq > 0.8  # chance: 1/8 per token


def test_example_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("ex08_copy", REPO / "examples/08_copy_reverse.py")
    ex = importlib.util.module_from_spec(spec)
    sys.modules["ex08_copy"] = ex
    spec.loader.exec_module(ex)
    assert ex.main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "08-copy-reverse.json").read_text())
    n_att, n_lstm = results["parameters"]["attention"], results["parameters"]["lstm"]
    assert abs(n_att - n_lstm) / n_att < 0.1  # equal size within 10 %
    assert [r["length"] for r in results["runs"]["copy"]["lstm"]] == results["config"]["lengths"]
    assert (tmp_path / "08-copy-reverse.png").stat().st_size > 1000
