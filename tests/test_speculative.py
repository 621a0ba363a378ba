"""Speculative decoding (g2c.inference.speculative): greedy == plain greedy for every drafter,
sampled output distributed as plain sampling (with a negative control that a wrong acceptance
rule fails), KV-cache rollback, acceptance statistics, bad arguments."""

from __future__ import annotations

import itertools

import pytest
import torch

from g2c.inference import speculative
from g2c.inference.quant import quantize_model
from g2c.inference.speculative import (
    DraftModel,
    PromptLookup,
    _crop,
    accept_or_resample,
    speculative_generate,
)
from g2c.sampling import generate
from g2c.transformer import TransformerLM

torch.set_num_threads(1)
LLAMA = dict(positional="rope", norm="rmsnorm", mlp="swiglu", bias=False)


def _model(seed: int, V: int = 32, D: int = 32, L: int = 2, T: int = 64) -> TransformerLM:
    g = torch.Generator().manual_seed(seed)
    return TransformerLM(V, D, L, 4, T, 2 * D, generator=g, **LLAMA).eval()


# -- greedy: token-for-token equal to plain greedy decoding ----------------------------------------
@pytest.mark.parametrize("kind", ["self", "other", "int8", "lookup"])
def test_greedy_equals_plain_greedy(kind):
    target = _model(1)
    drafts = {
        "self": target,
        "other": _model(2, L=1),  # a different random model: rejections happen
        "int8": quantize_model(target, "int8"),
        "lookup": PromptLookup(max_ngram=2),
    }
    prompts = [[1, 2, 3, 4, 5, 1, 2, 3], [7], [9, 9, 4, 9, 9, 4, 9]]
    rates = []
    for prompt in prompts:
        ref = generate(target, prompt, 24, temperature=0)
        for k in (1, 3, 5):
            r = speculative_generate(
                target, prompt, 24, draft=drafts[kind], num_draft_tokens=k, temperature=0
            )
            assert torch.equal(r.tokens, ref), (kind, prompt, k)
            assert r.new_tokens == 24 and 0 <= r.accepted <= r.proposed
            rates.append(r.acceptance_rate)
    if kind == "self":
        assert min(rates) == 1.0  # the target drafting for itself is always accepted
    if kind == "other":
        assert min(rates) < 1.0  # rejections were exercised


def test_greedy_fewer_target_forwards_when_drafts_agree():
    target = _model(1)
    r = speculative_generate(target, [3, 4], 24, draft=target, num_draft_tokens=4, temperature=0)
    # prompt prefill + ceil(24 / 5) verify rounds instead of 24 one-token steps
    assert r.target_forwards == 1 + 5
    assert r.tokens_per_target_forward == pytest.approx(24 / 5)


def test_eos_stops_and_is_kept():
    target = _model(1)
    ref = generate(target, [1, 2, 3], 20, temperature=0)
    eos = int(ref[6])  # a token the greedy path emits
    want = generate(target, [1, 2, 3], 20, temperature=0, eos_id=eos)
    r = speculative_generate(target, [1, 2, 3], 20, draft=_model(2, L=1), temperature=0,
                             eos_id=eos)  # fmt: skip
    assert torch.equal(r.tokens, want) and int(r.tokens[-1]) == eos


# -- sampling: distribution-equal to plain sampling ------------------------------------------------
V_SMALL = 5


def _exact_joint(target, prompt, n, temperature=1.0, top_k=None):
    """P(first n new tokens) under plain sampling, (V,)*n, from exact forwards."""
    joint = torch.ones(())
    for prefix_len in range(n):
        prefixes = list(itertools.product(range(V_SMALL), repeat=prefix_len))
        ids = torch.tensor([prompt + list(p) for p in prefixes])  # (V^i, T)
        with torch.no_grad():
            probs = speculative._probs(target(ids)[:, -1], temperature, top_k, None)  # (V^i, V)
        joint = joint.unsqueeze(-1) * probs.view(*([V_SMALL] * prefix_len), V_SMALL)
    return joint.reshape(-1)


def _empirical(target, prompt, n, draft, runs, k, **kw):
    counts = torch.zeros(V_SMALL**n)
    rate = []
    for seed in range(runs):
        g = torch.Generator().manual_seed(seed)
        r = speculative_generate(target, prompt, n, draft=draft, num_draft_tokens=k,
                                 generator=g, **kw)  # fmt: skip
        new = r.tokens[len(prompt) :].tolist()
        counts[sum(t * V_SMALL ** (n - 1 - i) for i, t in enumerate(new))] += 1
        rate.append(r.acceptance_rate)
    return counts, sum(rate) / len(rate)


def _chi2_excess(counts, probs):
    """Chi-square statistic in standard deviations above its mean (cells with expectation
    < 5 pooled into one): ~N(0, 1) when counts follow probs."""
    n = counts.sum()
    exp = probs * n
    small = exp < 5
    obs = torch.cat([counts[~small], counts[small].sum().view(1)])
    exp = torch.cat([exp[~small], exp[small].sum().view(1)])
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    dof = int(keep.sum()) - 1
    return (stat - dof) / (2 * dof) ** 0.5


def _always_accept(p, q, x, generator=None):
    return True, x  # WRONG rule: the output follows the draft's distribution


def test_sampled_distribution_matches_plain_sampling_draft_model(monkeypatch):
    target = _model(1, V=V_SMALL, D=16, L=1, T=16)
    draft = _model(5, V=V_SMALL, D=16, L=1, T=16)
    prompt = [1, 2, 3]
    exact = _exact_joint(target, prompt, 3)
    counts, rate = _empirical(target, prompt, 3, draft, runs=600, k=2)
    assert 0.2 < rate < 1.0  # drafts are accepted and rejected
    assert _chi2_excess(counts, exact) < 5.0
    # negative control: always accepting the draft gives a visibly different distribution
    monkeypatch.setattr(speculative, "accept_or_resample", _always_accept)
    bad, _ = _empirical(target, prompt, 3, draft, runs=600, k=2)
    assert _chi2_excess(bad, exact) > 10.0


def test_sampled_distribution_matches_plain_sampling_prompt_lookup(monkeypatch):
    target = _model(3, V=V_SMALL, D=16, L=1, T=16)
    prompt = [1, 2, 3, 1, 2]  # lookup proposes [3, 1]: a point-mass draft
    exact = _exact_joint(target, prompt, 3, temperature=0.8, top_k=4)
    kw = dict(temperature=0.8, top_k=4)
    counts, rate = _empirical(target, prompt, 3, PromptLookup(2), runs=600, k=2, **kw)
    assert 0.0 < rate < 1.0
    assert _chi2_excess(counts, exact) < 5.0
    monkeypatch.setattr(speculative, "accept_or_resample", _always_accept)
    bad, _ = _empirical(target, prompt, 3, PromptLookup(2), runs=600, k=2, **kw)
    assert _chi2_excess(bad, exact) > 10.0


def test_accept_or_resample_is_exact_for_one_token():
    p = torch.tensor([0.5, 0.3, 0.1, 0.1, 0.0])
    q = torch.tensor([0.1, 0.1, 0.1, 0.2, 0.5])
    g = torch.Generator().manual_seed(0)
    n = 8000
    counts = torch.zeros(5)
    for _ in range(n):
        x = int(torch.multinomial(q, 1, generator=g))
        counts[accept_or_resample(p, q, x, g)[1]] += 1
    assert (counts / n - p).abs().max() < 0.025  # ~4.5 standard errors
    assert counts[4] == 0  # p(4) = 0: never emitted, though the draft favours it


# -- KV cache rollback, statistics, bad input ------------------------------------------------------
class _NoCropCache:
    """A cache without ``crop`` (only ``layers``), to exercise the slicing fallback."""

    def __init__(self, cache) -> None:
        self.layers = cache.layers


@pytest.mark.parametrize("native", [True, False])
def test_crop_then_continue_equals_full_forward(native):
    model = _model(1)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    cache = model.empty_kv_cache()
    with torch.no_grad():
        model.forward_prefill(ids, cache)
        _crop(cache if native and hasattr(cache, "crop") else _NoCropCache(cache), 5)
        assert cache.length == 5
        out, _ = model.forward_prefill(torch.tensor([[7, 7]]), cache)
        full = model(torch.tensor([[3, 1, 4, 1, 5, 7, 7]]))
    torch.testing.assert_close(out[0], full[0, 5:], atol=1e-5, rtol=1e-5)


def test_bad_arguments():
    target = _model(1)
    with pytest.raises(ValueError, match="prompt"):
        speculative_generate(target, [], 4)
    with pytest.raises(ValueError, match="num_draft_tokens"):
        speculative_generate(target, [1], 4, num_draft_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        speculative_generate(target, [1], 4, temperature=-1.0)
    with pytest.raises(ValueError, match="max_seq_len"):
        speculative_generate(target, [1], 100)
    with pytest.raises(ValueError, match="vocab_size"):
        speculative_generate(target, [1], 4, draft=_model(2, V=16))
    with pytest.raises(TypeError, match="draft"):
        speculative_generate(target, [1], 4, draft="small")
    with pytest.raises(ValueError, match="min_ngram"):
        PromptLookup(max_ngram=1, min_ngram=2)
    assert isinstance(DraftModel(target).model, TransformerLM)
