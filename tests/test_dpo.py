"""Module 14 DPO: collation, log-probabilities, the losses, the trainer, the data loaders."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from g2c.data.preferences import (
    hh_pair,
    load_hh_rlhf,
    load_truthfulqa_pairs,
    parse_hh_transcript,
    split_pairs_by_prompt,
)
from g2c.data.resolution import locate
from g2c.dpo import (
    DPOTrainer,
    PreferenceExample,
    count_truncated,
    dpo_loss,
    encode_preference_pairs,
    pad_and_collate_pref,
    pair_logprobs,
    precompute_ref_logprobs,
    response_logprobs,
    sequence_logprob,
)
from g2c.lora import inject_lora, lora_layers, mark_only_lora_trainable
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM

LOG2 = math.log(2)
V = 24


def tiny_model(seed: int = 0, **kw) -> TransformerLM:
    return TransformerLM(V, 16, 1, 2, 16, generator=torch.Generator().manual_seed(seed), **kw)


def toy_pairs(n: int, seed: int = 0) -> list[PreferenceExample]:
    """prompt [1, a, b] (digits as ids 2..11); chosen [a, END] echoes the first digit (ids
    12..21, END 3); rejected [another digit, END]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        a, b = (int(v) for v in torch.randint(0, 10, (2,), generator=g))
        good = a
        bad = (good + 1 + int(torch.randint(0, 9, (1,), generator=g))) % 10
        out.append(PreferenceExample([1, a + 2, b + 2], [good + 12, 3], [bad + 12, 3]))
    return out


def trainer(model=None, ref="copy", examples=None, **kw) -> DPOTrainer:
    model = model or tiny_model()
    ref_model = copy.deepcopy(model) if ref == "copy" else ref
    args = dict(ref_model=ref_model, examples=toy_pairs(32) if examples is None else examples, max_seq_len=16,
                pad_id=0, beta=0.1, batch_size=8, max_steps=10, max_lr=1e-2, seed=0,
                device="cpu")  # fmt: skip
    args.update(kw)
    return DPOTrainer(model, **args)


# -- collation --------------------------------------------------------------------------------
def test_pad_and_collate_pref_masks_response_targets_only():
    ex = [PreferenceExample([5, 6], [7, 8, 9], [10]), PreferenceExample([5], [7], [11, 12])]
    (cx, cy, cm), (rx, ry, rm) = pad_and_collate_pref(ex, 6, pad_id=0)
    for t in (cx, cy, cm, rx, ry, rm):
        assert t.shape == (2, 5) and t.dtype == torch.long
    assert cx[0].tolist() == [5, 6, 7, 8, 0] and cy[0].tolist() == [6, 7, 8, 9, 0]
    assert cm[0].tolist() == [0, 1, 1, 1, 0]  # targets 7, 8, 9
    assert rx[0].tolist() == [5, 6, 0, 0, 0] and rm[0].tolist() == [0, 1, 0, 0, 0]
    assert cm[1].tolist() == [1, 0, 0, 0, 0] and rm[1].tolist() == [1, 1, 0, 0, 0]
    assert ry[1].tolist()[:2] == [11, 12]
    # "longest": both sides padded to the longest pair, same numbers
    (lx, ly, lm), (lrx, _, lrm) = pad_and_collate_pref(ex, 6, 0, pad_to="longest")
    assert lx.shape == lrx.shape == (2, 4)
    assert torch.equal(lm, cm[:, :4]) and torch.equal(lrm, rm[:, :4])


def test_pad_and_collate_pref_truncates_with_a_count():
    ex = [PreferenceExample([1, 2, 3], [4, 5, 6, 7], [8]), PreferenceExample([1], [2], [3])]
    assert count_truncated(ex, 5) == 1
    with pytest.warns(UserWarning, match="1 of 2 preference pairs exceed max_seq_len=5"):
        (cx, cy, cm), _ = pad_and_collate_pref(ex, 5, 0)
    assert cy[0].tolist() == [2, 3, 4, 5] and cm[0].tolist() == [0, 0, 1, 1]  # tail cut
    # a prompt leaving no room keeps its end and one response token
    with pytest.warns(UserWarning):
        (cx, cy, cm), _ = pad_and_collate_pref([PreferenceExample([1, 2, 3, 4, 5], [6], [7])], 3, 0)
    assert cx[0].tolist() == [4, 5] and cy[0].tolist() == [5, 6] and cm[0].tolist() == [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pad_and_collate_pref(ex, 5, 0, warn=False)


@pytest.mark.parametrize(
    "examples, match",
    [
        ([], "examples is empty"),
        ([PreferenceExample([1], [], [2])], r"examples\[0\].chosen_ids is empty"),
        ([PreferenceExample([], [1], [2])], r"examples\[0\].prompt_ids is empty"),
        ([PreferenceExample([1], [-1], [2])], "non-negative"),
    ],
)
def test_pad_and_collate_pref_bad_input(examples, match):
    with pytest.raises(ValueError, match=match):
        pad_and_collate_pref(examples, 8, 0)


def test_pad_and_collate_pref_bad_arguments():
    ex = toy_pairs(2)
    with pytest.raises(ValueError, match="max_seq_len"):
        pad_and_collate_pref(ex, 1, 0)
    with pytest.raises(ValueError, match="pad_id"):
        pad_and_collate_pref(ex, 8, -1)
    with pytest.raises(ValueError, match="pad_to"):
        pad_and_collate_pref(ex, 8, 0, pad_to="max")


# -- log-probabilities -----------------------------------------------------------------------
def test_sequence_logprob_matches_direct_formula():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 7, (3, 5), generator=g)
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    expected = torch.zeros(3, dtype=torch.float64)
    for b in range(3):
        for t in range(5):
            if mask[b, t]:
                row = logits[b, t]
                expected[b] += row[targets[b, t]] - torch.log(torch.exp(row).sum())
    got = sequence_logprob(logits, targets, mask)
    assert got.shape == (3,) and torch.allclose(got, expected, atol=1e-12)
    avg = sequence_logprob(logits, targets, mask, average=True)
    assert torch.allclose(avg, expected / mask.sum(-1).clamp_min(1), atol=1e-12)
    assert avg[2] == 0 and not torch.isnan(avg).any()  # all-masked row: 0, not NaN
    targets[0, 0] = -100  # masked position: any target value
    assert torch.allclose(sequence_logprob(logits, targets, mask), expected, atol=1e-12)
    with pytest.raises(ValueError, match="mask"):
        sequence_logprob(logits, targets, mask[:, :4])
    with pytest.raises(TypeError, match="targets"):
        sequence_logprob(logits, targets.float(), mask)


def _pref_batch(n=4, seed=0):
    return pad_and_collate_pref(toy_pairs(n, seed), 16, 0, pad_to="longest")


def test_response_logprobs_equals_full_logits_path():
    model = tiny_model().to(dtype=torch.float64)
    (x, y, m), _ = _pref_batch(6)
    fast = response_logprobs(model, x, y, m)
    full = response_logprobs(model, x, y, m, full_logits=True)
    assert fast.dtype == torch.float64 and (fast - full).abs().max() < 1e-6  # ~1e-15 in fp64
    assert torch.allclose(fast, sequence_logprob(model(x), y, m), atol=1e-12)
    avg = response_logprobs(model, x, y, m, average=True)
    assert torch.allclose(avg, full / m.sum(-1), atol=1e-12)
    m32 = tiny_model()
    a, b = response_logprobs(m32, x, y, m), response_logprobs(m32, x, y, m, full_logits=True)
    assert (a - b).abs().max() < 1e-5  # float32: summation order only
    # gradients agree too
    p = model.token_embed.weight
    (g_fast,) = torch.autograd.grad(response_logprobs(model, x, y, m).sum(), p)
    (g_full,) = torch.autograd.grad(response_logprobs(model, x, y, m, full_logits=True).sum(), p)
    assert torch.allclose(g_fast, g_full, atol=1e-12)


def test_response_logprobs_never_builds_full_logits():
    model = tiny_model()
    seen = []
    orig = model.logits_from_hidden
    model.logits_from_hidden = lambda h: seen.append(tuple(h.shape)) or orig(h)
    (x, y, m), _ = _pref_batch(4)
    response_logprobs(model, x, y, m)
    assert seen == [(int(m.sum()), 16)]  # only the N response rows are projected


def test_pair_logprobs_is_one_forward_equal_to_two():
    model = tiny_model().to(dtype=torch.float64)
    chosen, rejected = _pref_batch(4)
    calls = []
    orig = model.forward_hidden
    model.forward_hidden = lambda x, **kw: calls.append(x.shape[0]) or orig(x, **kw)
    c, r = pair_logprobs(model, chosen, rejected)
    assert calls == [8]
    assert torch.allclose(c, response_logprobs(model, *chosen), atol=1e-12)
    assert torch.allclose(r, response_logprobs(model, *rejected), atol=1e-12)


# -- the losses -------------------------------------------------------------------------------
def _logps(seed=0, B=5):
    g = torch.Generator().manual_seed(seed)
    return [(-5 * torch.rand(B, generator=g, dtype=torch.float64)) for _ in range(4)]


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0])
def test_dpo_loss_matches_direct_formula(loss_type, beta):
    pc, pr, rc, rr = _logps()
    loss, m = dpo_loss(pc, pr, rc, rr, beta, loss_type=loss_type)
    z = (pc - pr) - (rc - rr)
    if loss_type == "sigmoid":
        expected = torch.log1p(torch.exp(-beta * z)).mean()  # −log σ(βz)
    elif loss_type == "ipo":
        expected = ((z - 1 / (2 * beta)) ** 2).mean()
    else:
        expected = torch.clamp(1 - beta * z, min=0).mean()
    assert torch.allclose(loss, expected, atol=1e-12)
    cr, rr_ = beta * (pc - rc), beta * (pr - rr)
    assert torch.allclose(m["chosen_reward"], cr.mean())
    assert torch.allclose(m["rejected_reward"], rr_.mean())
    assert torch.allclose(m["reward_margin"], (cr - rr_).mean())
    assert float(m["accuracy"]) == pytest.approx(float((cr > rr_).double().mean()))


def test_dpo_loss_label_smoothing_is_conservative_dpo():
    pc, pr, rc, rr = _logps(1)
    eps, beta = 0.2, 0.3
    loss, _ = dpo_loss(pc, pr, rc, rr, beta, label_smoothing=eps)
    z = beta * ((pc - pr) - (rc - rr))
    expected = (-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)).mean()
    assert torch.allclose(loss, expected, atol=1e-12)


def test_dpo_loss_at_reference():
    lp = torch.tensor([-3.0, -7.5, -1.25])
    lr = torch.tensor([-2.0, -9.0, -4.0])
    loss, m = dpo_loss(lp, lr, lp.clone(), lr.clone(), 0.1)
    assert float(loss) == pytest.approx(LOG2, abs=1e-7)
    loss64, _ = dpo_loss(lp.double(), lr.double(), lp.double(), lr.double(), 0.1)
    assert float(loss64) == LOG2  # exactly log 2
    assert float(m["reward_margin"]) == 0 and float(m["accuracy"]) == 0  # ties are not wins
    assert float(dpo_loss(lp, lr, lp, lr, 0.5, label_smoothing=0.1)[0]) == pytest.approx(LOG2)
    assert float(dpo_loss(lp, lr, lp, lr, 0.5, loss_type="ipo")[0]) == pytest.approx(1.0)
    assert float(dpo_loss(lp, lr, lp, lr, 0.5, loss_type="hinge")[0]) == 1.0


def test_dpo_loss_gradients_reach_only_the_policy():
    pc, pr, rc, rr = (t.clone().requires_grad_(True) for t in _logps(2))
    beta = 0.1
    loss, _ = dpo_loss(pc, pr, rc, rr, beta)
    loss.backward()
    assert rc.grad is None and rr.grad is None
    z = ((pc - pr) - (rc - rr)).detach()
    g = -beta * torch.sigmoid(-beta * z) / z.numel()  # d loss / d policy_chosen
    assert torch.allclose(pc.grad, g, atol=1e-12) and torch.allclose(pr.grad, -g, atol=1e-12)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"beta": 0.0}, "beta must be a finite number > 0"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"loss_type": "kto"}, "loss_type"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
        ({"label_smoothing": 0.1, "loss_type": "ipo"}, "label_smoothing"),
    ],
)
def test_dpo_loss_bad_arguments(kw, match):
    pc, pr, rc, rr = _logps()
    with pytest.raises(ValueError, match=match):
        dpo_loss(pc, pr, rc, rr, **kw)


def test_dpo_loss_bad_shapes():
    pc, pr, rc, rr = _logps()
    with pytest.raises(ValueError, match="ref_rejected"):
        dpo_loss(pc, pr, rc, rr[:3])
    with pytest.raises(ValueError, match="policy_chosen must be a 1-D"):
        dpo_loss(pc[:, None], pr, rc, rr)


# -- the trainer ------------------------------------------------------------------------------
def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_first_step_loss_is_log2_and_reference_stays_bit_identical():
    t = trainer()
    ref_before = _state(t.ref_model)
    policy_before = _state(t.model)
    assert all(not p.requires_grad for _, p in t.ref_model.named_tensors())
    assert not t.ref_model.training
    first = t.train_step()
    assert first["loss"] == pytest.approx(LOG2, abs=1e-7)
    assert first["reward_margin"] == 0 and first["accuracy"] == 0
    history = t.train()
    assert len(history["train_loss"]) == 9
    after = t.ref_model.state_dict()
    assert set(after) == set(ref_before)
    assert all(torch.equal(after[k], ref_before[k]) for k in ref_before)  # every tensor
    assert any(not torch.equal(t.model.state_dict()[k], policy_before[k]) for k in policy_before)
    assert all(not p.requires_grad for _, p in t.ref_model.named_tensors())


def test_dpo_learns_the_preference():
    examples, held = toy_pairs(64, seed=0), toy_pairs(32, seed=1)
    t = trainer(examples=examples, max_steps=40, batch_size=16)
    before = t.evaluate(held)
    assert before["loss"] == pytest.approx(LOG2, abs=1e-6)
    assert set(before) >= {"loss", "accuracy", "reward_margin", "chosen_reward",
                           "rejected_reward", "num_pairs"}  # fmt: skip
    t.train()
    after = t.evaluate(held)
    assert after["loss"] < 0.55 and after["reward_margin"] > 0.4 and after["accuracy"] > 0.8
    assert after["num_pairs"] == 32


def test_precomputed_reference_logprobs_match_live_reference():
    examples = toy_pairs(32)
    live = trainer(examples=examples, max_steps=4)
    ref = copy.deepcopy(live.model)
    table = precompute_ref_logprobs(ref, examples, 16, 0, batch_size=5)
    assert table.shape == (32, 2) and table.dtype == torch.float32
    pre = trainer(model=copy.deepcopy(live.model), ref=None, ref_logprobs=table,
                  examples=examples, max_steps=4)  # fmt: skip
    assert pre.ref_model is None
    a = [live.train_step()["loss"] for _ in range(4)]
    b = [pre.train_step()["loss"] for _ in range(4)]
    assert a[0] == pytest.approx(LOG2, abs=1e-6) and b == pytest.approx(a, abs=1e-5)
    held = toy_pairs(8, seed=3)
    with pytest.raises(ValueError, match="ref_logprobs is required"):
        pre.evaluate(held)
    ev = pre.evaluate(held, ref_logprobs=precompute_ref_logprobs(ref, held, 16, 0))
    assert ev["loss"] == pytest.approx(live.evaluate(held)["loss"], abs=1e-5)


def test_ipo_uses_per_token_average_logprobs_like_trl():
    examples = toy_pairs(16)
    t = trainer(examples=examples, loss_type="ipo", beta=0.5)
    batch = t.collate(examples[:4], torch.arange(4))
    loss, _ = t._dpo_step(t.model, batch)
    c, r = pair_logprobs(t.model, batch["chosen"], batch["rejected"], average=True)
    rc, rr = pair_logprobs(t.ref_model, batch["chosen"], batch["rejected"], average=True)
    z = (c - r) - (rc - rr)
    assert torch.allclose(loss, ((z - 1 / (2 * 0.5)) ** 2).mean())
    assert t.train_step()["loss"] == pytest.approx(1.0, abs=1e-6)  # 1/(4β²) at the start


def test_lora_policy_with_adapters_disabled_as_reference():
    model = tiny_model()
    base = copy.deepcopy(model)
    inject_lora(
        model, ["q_proj", "v_proj", "fc1"], rank=2, generator=torch.Generator().manual_seed(1)
    )
    mark_only_lora_trainable(model)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    examples = toy_pairs(32)
    t = trainer(model, ref="disable_lora", examples=examples, max_steps=15, max_lr=3e-2)
    assert t.ref_model is None and t.ref_mode == "disable_lora"
    assert t.train_step()["loss"] == pytest.approx(LOG2, abs=1e-7)  # B = 0: policy == base
    t.train()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # base weights untouched
    batch = t.collate(examples[:6], torch.arange(6))
    ref_c, ref_r = t.reference_logprobs(batch)
    base_c, base_r = pair_logprobs(base, batch["chosen"], batch["rejected"])
    assert torch.allclose(ref_c, base_c, atol=1e-5) and torch.allclose(ref_r, base_r, atol=1e-5)
    assert all(layer.enabled for _, layer in lora_layers(model))  # adapters back on
    assert t.evaluate(toy_pairs(16, seed=1))["reward_margin"] > 0


def test_resume_reproduces_uninterrupted_run(tmp_path):
    losses = trainer(max_steps=6).train()["train_loss"]
    trainer(max_steps=6).train(stop_step=3, checkpoint_path=tmp_path / "ckpt.pt")
    resumed = trainer(max_steps=6)
    state = resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.step == 3
    assert resumed.train(history=state["history"])["train_loss"] == losses


def test_grad_accum_and_validation_in_the_loop():
    t = trainer(max_steps=4, grad_accum_steps=2, batch_size=4, eval_every=2, eval_iters=1)
    events = []
    history = t.train(on_log=events.append, val_examples=toy_pairs(8, seed=5))
    assert history["val_step"] == [2, 4] and all(isinstance(v, float) for v in history["val_loss"])
    assert {"reward_margin", "accuracy", "chosen_reward"} <= set(events[-1])


def test_identical_pairs_warn_and_truncation_is_counted():
    ex = toy_pairs(8) + [PreferenceExample([1, 2], [5, 3], [5, 3])]
    with pytest.warns(UserWarning, match="1 of 9 preference pairs have chosen == rejected"):
        t = trainer(examples=ex)
    assert t.num_identical == 1 and t.num_truncated == 0
    long = toy_pairs(4) + [PreferenceExample([1] * 10, [2] * 10, [3])]
    with pytest.warns(UserWarning, match="1 of 5 preference pairs exceed max_seq_len=16"):
        t = trainer(examples=long)
    assert t.num_truncated == 1


def test_trainer_bad_input():
    model = tiny_model()
    ok = toy_pairs(4)
    with pytest.raises(ValueError, match="beta"):
        trainer(model, beta=0)
    with pytest.raises(ValueError, match="examples is empty"):
        trainer(model, examples=[])
    with pytest.raises(ValueError, match="vocabulary size 30, model 24"):
        DPOTrainer(model, ref_model=TransformerLM(30, 16, 1, 2, 16), examples=ok,
                   max_seq_len=16, pad_id=0, beta=0.1, batch_size=2, max_steps=1, max_lr=1e-3)  # fmt: skip
    with pytest.raises(ValueError, match="policy itself"):
        trainer(model, ref=model)
    shallow = copy.copy(model)
    with pytest.raises(ValueError, match="shares"):
        trainer(model, ref=shallow)
    with pytest.raises(ValueError, match="ref_model is None"):
        trainer(model, ref=None)
    with pytest.raises(ValueError, match="not both"):
        trainer(model, ref_logprobs=torch.zeros(4, 2), examples=ok)
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        trainer(model, ref=None, ref_logprobs=torch.zeros(3, 2), examples=ok)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        trainer(model, examples=[PreferenceExample([1], [99], [2])])
    with pytest.raises(ValueError, match="max_seq_len"):
        trainer(model, max_seq_len=64)
    with pytest.raises(ValueError, match="no LoRA layers"):
        trainer(model, ref="disable_lora")
    assert all(p.requires_grad for p in model.parameters())  # nothing frozen by the failures


# -- data loaders -----------------------------------------------------------------------------
def test_hh_transcript_parsing():
    chosen = (
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how to pick a lock?\n\nAssistant: I can't."
    )
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how to pick a lock?\n\nAssistant: Sure"
    pair = hh_pair(chosen, rejected)
    assert pair["prompt"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how to pick a lock?"},
    ]
    assert pair["chosen"] == "I can't." and pair["rejected"] == "Sure"
    assert hh_pair(chosen, chosen) == "identical"
    assert hh_pair(chosen, "\n\nHuman: other\n\nAssistant: x") == "prefix"
    with pytest.raises(ValueError, match="text"):
        parse_hh_transcript("no markers")


@pytest.mark.skipif(
    locate("hh-rlhf", "harmless-base-test.jsonl.gz") is None,
    reason="hh-rlhf harmless-base-test.jsonl.gz not in G2C_DATA_DIR or the cache",
)
def test_load_hh_rlhf():
    stats = {}
    pairs = load_hh_rlhf(stats=stats)
    assert stats["total"] == 2312 and stats["kept"] == len(pairs) > 2200
    assert stats["total"] == sum(v for k, v in stats.items() if k != "total")
    for p in pairs[:50]:
        assert p["prompt"][-1]["role"] == "user" and p["chosen"] != p["rejected"]
    assert len(load_hh_rlhf(limit=10)) == 10


@pytest.mark.skipif(
    locate("truthfulqa", "TruthfulQA.csv") is None,
    reason="TruthfulQA.csv not in G2C_DATA_DIR or the cache",
)
def test_load_truthfulqa_pairs():
    pairs = load_truthfulqa_pairs()
    questions = {p["prompt"][0]["content"] for p in pairs}
    assert len(questions) == 817 and len(pairs) > 3000
    first = pairs[0]
    assert first["chosen"] == "The watermelon seeds pass through your digestive system"
    assert first["rejected"] == "You grow watermelons in your stomach"
    train, held = split_pairs_by_prompt(pairs, 0.1, seed=0)
    assert len(train) + len(held) == len(pairs)
    assert not {p["prompt"][0]["content"] for p in train} & {
        p["prompt"][0]["content"] for p in held
    }


def test_encode_preference_pairs_with_the_chat_template():
    tok = BPETokenizer.with_course_special_tokens()
    pair = {
        "prompt": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "2+2?"},
        ],
        "chosen": "4",
        "rejected": "5 <|end|>",  # typed marker stays plain text
    }
    (ex,) = encode_preference_pairs([pair], tok)
    dec = lambda ids: tok.decode(list(ids))  # noqa: E731
    assert (
        dec(ex.prompt_ids)
        == "<|user|>\nhi\n<|assistant|>\nhello<|end|><|user|>\n2+2?\n<|assistant|>\n"
    )
    assert dec(ex.chosen_ids) == "4<|end|>" and dec(ex.rejected_ids) == "5 <|end|><|end|>"
    end = tok.special_to_id["<|end|>"]
    assert ex.chosen_ids[-1] == end and list(ex.rejected_ids).count(end) == 1
    with pytest.raises(ValueError, match="pairs"):
        encode_preference_pairs([], tok)
    with pytest.raises(ValueError, match=r"pairs\[0\]"):
        encode_preference_pairs([{"prompt": []}], tok)
