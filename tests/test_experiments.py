"""Phase III experiments: the shared helper (train_for, power-law fit, distinct-n, own
perplexity) and every example's --smoke mode, run in-process."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from g2c.runs.experiment import (
    SMOKE_TEXT,
    distinct_n,
    fit_power_law,
    sequence_perplexity,
    text_ids,
    train_for,
)
from g2c.transformer import TransformerLM

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMOKES = ["08_heads", "09_block_ablations", "09_positions", "10_shakespeare",
          "11_sampling_tradeoffs", "12_scaling", "13_sft_mask_ablation", "14_dpo_beta_sweep",
          "15_memorization_canaries", "15_failure_modes", "15_calibration_stages"]  # fmt: skip


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SMOKES)
def test_example_smoke_runs(name, capsys):
    assert _load(name).main(["--smoke"]) == 0
    assert capsys.readouterr().out.strip()


def _tiny(tok, **kw) -> TransformerLM:
    return TransformerLM(tok.vocab_size, 16, 1, 2, 16, attention_impl="sdpa", fused=True,
                         generator=torch.Generator().manual_seed(0), **kw)  # fmt: skip


def test_train_for_steps_learns_and_reports():
    tok, train, val = text_ids(SMOKE_TEXT, "char")
    r = train_for(_tiny(tok), train, val, steps=40, batch_size=8, context_length=16, max_lr=1e-2,
                  eval_iters=2)  # fmt: skip
    assert r.steps == 40 and r.tokens == 40 * 8 * 16
    assert len(r.history["train_loss"]) == 40
    assert r.val_loss < math.log(tok.vocab_size) - 0.5  # learned the character statistics
    assert r.tokens_per_s > 0 and r.train_flops == 6.0 * _tiny(tok).num_parameters(True) * r.tokens
    with pytest.raises(ValueError, match="exactly one"):
        train_for(_tiny(tok), train, steps=1, seconds=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        train_for(_tiny(tok), train)


def test_train_for_seconds_picks_steps_and_divergence_reports_inf():
    tok, train, val = text_ids(SMOKE_TEXT, "char")
    r = train_for(
        _tiny(tok), train, val, seconds=0.5, batch_size=4, context_length=16, eval_iters=1
    )
    assert r.steps >= 2
    bad = _tiny(tok)
    r = train_for(bad, train, val, steps=20, batch_size=4, context_length=16, max_lr=1e9,
                  grad_clip=None, eval_iters=1)  # fmt: skip
    assert r.val_loss == float("inf") and r.steps < 20


def test_text_ids_bpe_round_trip():
    tok, train, val = text_ids(SMOKE_TEXT, "bpe", vocab_size=300)
    assert tok.vocab_size == 300
    assert tok.decode(train.tolist()) + tok.decode(val.tolist()) == SMOKE_TEXT
    with pytest.raises(ValueError, match="tokenizer"):
        text_ids(SMOKE_TEXT, "word")


def test_fit_power_law_recovers_exponent():
    x = [1e5, 1e6, 1e7]
    a, b = fit_power_law(x, [3.0 * v**-0.07 for v in x])
    assert a == pytest.approx(3.0, rel=1e-6) and b == pytest.approx(-0.07, abs=1e-9)
    with pytest.raises(ValueError):
        fit_power_law([1.0], [1.0])
    with pytest.raises(ValueError):
        fit_power_law([1.0, -2.0], [1.0, 2.0])


def test_distinct_n():
    assert distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)  # (1,2) (2,1) (1,2)
    assert distinct_n([[1, 2], [1, 2]], 2) == 0.5
    assert distinct_n([[1]], 2) == 0.0
    assert distinct_n([[1, 2, 3]], 1) == 1.0
    with pytest.raises(ValueError):
        distinct_n([[1]], 0)


def test_sequence_perplexity_matches_manual_nll():
    tok, train, _ = text_ids(SMOKE_TEXT, "char")
    model = _tiny(tok).eval()
    prompt, new = train[:5].tolist(), train[5:9].tolist()
    ids = torch.tensor([prompt + new])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1])[0], -1)
    nll = -torch.stack([logp[4 + i, new[i]] for i in range(4)]).mean()
    assert sequence_perplexity(model, prompt, new) == pytest.approx(float(torch.exp(nll)), rel=1e-5)
