"""Tests for g2c.training (module 03B): AdamW, clip_grad_norm_, cosine_with_warmup.

References: torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and
torch.optim.lr_scheduler.CosineAnnealingLR, used here as oracles only.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from g2c.nn import Linear, ReLU, Sequential
from g2c.training import AdamW, clip_grad_norm_, cosine_with_warmup, one_dim_params


# -- helpers --------------------------------------------------------------------------------------
def _problem(seed: int, dtype=torch.float32):
    """A random 2-layer regression problem: initial params and a loss(params) closure."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 8), (8,), (8, 3), (3,)]
    init = [torch.randn(s, generator=g, dtype=dtype) * 0.5 for s in shapes]
    x = torch.randn(32, 5, generator=g, dtype=dtype)
    y = torch.randn(32, 3, generator=g, dtype=dtype)

    def loss_fn(params):
        W1, b1, W2, b2 = params
        return (((x @ W1 + b1).tanh() @ W2 + b2 - y) ** 2).mean()

    return init, loss_fn


def _run_pair(seed, steps=100, skip=None, dtype=torch.float32, foreach=True, **kw):
    """Run g2c AdamW and torch.optim.AdamW side by side; return both param lists.

    ``skip(step, i)`` → True leaves param i without a gradient at that step.
    """
    init, loss_fn = _problem(seed, dtype)
    ours = [t.clone().requires_grad_() for t in init]
    ref = [t.clone().requires_grad_() for t in init]
    opt = AdamW(ours, foreach=foreach, **kw)
    ref_opt = torch.optim.AdamW(ref, foreach=False, **kw)
    for step in range(steps):
        for params, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            loss_fn(params).backward()
            if skip is not None:
                for i, p in enumerate(params):
                    if skip(step, i):
                        p.grad = None
            o.step()
    return ours, ref, opt


# -- AdamW ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=1e-2),
        dict(lr=3e-3, weight_decay=0.0),
        dict(lr=1e-2, weight_decay=0.1),
        dict(lr=5e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05),
        dict(lr=1e-3, betas=(0.0, 0.99)),
    ],
    ids=["default", "no_wd", "wd0.1", "gpt_betas", "beta1_0"],
)
@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])
@pytest.mark.parametrize("seed", [0, 1])
def test_adamw_matches_torch_over_100_steps(kw, foreach, seed):
    ours, ref, _ = _run_pair(seed, foreach=foreach, **kw)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_adamw_matches_torch_in_float64_tightly():
    ours, ref, _ = _run_pair(3, dtype=torch.float64, lr=1e-2, weight_decay=0.1)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])
def test_adamw_skipped_params_match_torch(foreach):
    """Params without a gradient at a step are skipped (no decay, their step count frozen)."""

    def skip(step, i):
        return (i == 1 and step % 3 == 0) or (i == 2 and 20 <= step < 40)

    ours, ref, opt = _run_pair(4, skip=skip, foreach=foreach, lr=1e-2, weight_decay=0.1)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert opt.step_count == 100
    assert opt.param_steps == [100, 100 - 34, 80, 100]


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])
def test_adamw_no_decay_matches_torch_param_groups(foreach):
    """``no_decay=one_dim_params(params)`` (the biases here) equals torch.optim.AdamW with two
    param groups, the 1-D one at weight_decay 0 — nanoGPT's configure_optimizers."""
    init, loss_fn = _problem(6, torch.float32)
    ours = [t.clone().requires_grad_() for t in init]
    ref = [t.clone().requires_grad_() for t in init]
    exempt = one_dim_params(ours)
    assert [p.dim() for p in exempt] == [1, 1]
    opt = AdamW(ours, lr=1e-2, weight_decay=0.5, foreach=foreach, no_decay=exempt)
    groups = [{"params": [p for p in ref if p.dim() >= 2], "weight_decay": 0.5},
              {"params": [p for p in ref if p.dim() < 2], "weight_decay": 0.0}]  # fmt: skip
    ref_opt = torch.optim.AdamW(groups, lr=1e-2, foreach=False)
    for _ in range(100):
        for params, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            loss_fn(params).backward()
            o.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    decayed_all, _, _ = _run_pair(6, lr=1e-2, weight_decay=0.5, foreach=foreach)
    assert not torch.allclose(decayed_all[1], ours[1], atol=1e-4)  # the exemption matters
    with pytest.raises(ValueError, match="no_decay"):
        AdamW(ours, lr=1e-2, no_decay=[torch.zeros(3)])


def test_adamw_foreach_equals_loop():
    a, _, opt_a = _run_pair(5, steps=50, foreach=True, lr=1e-2, weight_decay=0.1)
    b, _, opt_b = _run_pair(5, steps=50, foreach=False, lr=1e-2, weight_decay=0.1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-7, rtol=1e-7)
    for x, y in zip(opt_a.m + opt_a.v, opt_b.m + opt_b.v):
        torch.testing.assert_close(x, y, atol=1e-9, rtol=1e-7)


def test_adamw_foreach_in_size_bounded_groups_equals_loop(monkeypatch):
    """The foreach path cuts the parameters into groups of at most FOREACH_CHUNK_NUMEL elements
    (bounded temporaries); a limit smaller than the tensors splits every group, same numbers."""
    import g2c.training.adamw as adamw

    params = [torch.zeros(5, 8), torch.zeros(8), torch.zeros(8, 3), torch.zeros(3)]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = AdamW(params, lr=0.1)

    def sizes(limit):
        monkeypatch.setattr(adamw, "FOREACH_CHUNK_NUMEL", limit)
        chunks = opt._chunks(opt._pieces([0, 1, 2, 3]))
        return [[piece[0].numel() for piece in chunk] for chunk in chunks]

    assert sizes(10) == [[10], [10], [10], [10], [8], [10], [10], [4, 3]]  # 40 and 24 sliced
    assert sizes(30) == [[30], [10, 8], [24, 3]]  # sizes 40, 8, 24, 3
    monkeypatch.setattr(adamw, "FOREACH_CHUNK_NUMEL", 10)
    a, _, _ = _run_pair(5, steps=30, foreach=True, lr=1e-2, weight_decay=0.1)
    b, ref, _ = _run_pair(5, steps=30, foreach=False, lr=1e-2, weight_decay=0.1)
    for x, y, r in zip(a, b, ref):
        torch.testing.assert_close(x, y, atol=1e-7, rtol=1e-7)
        torch.testing.assert_close(x, r, atol=1e-6, rtol=1e-6)


def test_adamw_decoupled_decay_applies_with_zero_gradient():
    p = torch.randn(10, requires_grad=True)
    p0 = p.detach().clone()
    p.grad = torch.zeros(10)
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    opt.step()
    torch.testing.assert_close(p.detach(), p0 * (1 - 0.1 * 0.5))
    assert p.is_leaf and p.grad_fn is None


def test_adamw_first_step_is_lr_times_sign():
    """With bias correction, step 1 moves each weight by ≈ lr·sign(g) (wd = 0)."""
    p = torch.zeros(6, requires_grad=True)
    p.grad = torch.tensor([3.0, -2.0, 1e-3, -1e-3, 50.0, -0.5])
    AdamW([p], lr=0.01, weight_decay=0.0).step()
    torch.testing.assert_close(p.detach(), -0.01 * p.grad.sign(), atol=1e-6, rtol=1e-4)


def test_adamw_exposes_api_attributes():
    params = Linear(3, 2).parameters()
    opt = AdamW(params, lr=1e-3)
    assert opt.params == params and opt.lr == 1e-3
    assert (opt.beta1, opt.beta2, opt.eps, opt.weight_decay) == (0.9, 0.999, 1e-8, 0.01)
    assert opt.step_count == 0 and len(opt.m) == len(opt.v) == 2
    assert all(m.shape == p.shape and not m.any() for m, p in zip(opt.m, params))
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.step_count == 1 and all(m.any() for m in opt.m)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_adamw_state_dict_round_trip_resumes_identically():
    init, loss_fn = _problem(6)

    def run(params, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(params).backward()
            opt.step()

    full = [t.clone().requires_grad_() for t in init]
    run(full, AdamW(full, lr=1e-2, weight_decay=0.1), 20)

    first = [t.clone().requires_grad_() for t in init]
    opt = AdamW(first, lr=1e-2, weight_decay=0.1)
    run(first, opt, 10)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)  # plain tensors and Python values only
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = [t.detach().clone().requires_grad_() for t in first]
    opt2 = AdamW(resumed, lr=123.0, weight_decay=0.0)
    opt2.load_state_dict(state)
    assert opt2.lr == 1e-2 and opt2.weight_decay == 0.1 and opt2.step_count == 10
    run(resumed, opt2, 10)
    for a, b in zip(resumed, full):
        assert torch.equal(a, b)


def test_adamw_load_state_dict_mismatch():
    opt = AdamW([torch.zeros(3, requires_grad=True)], lr=1e-3)
    other = AdamW([torch.zeros(4, requires_grad=True)], lr=1e-3)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(opt.state_dict())
    two = AdamW([torch.zeros(3, requires_grad=True)] * 2, lr=1e-3)
    with pytest.raises(ValueError, match="moment tensors"):
        two.load_state_dict(opt.state_dict())


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(lr=-1e-3), "lr"),
        (dict(lr=1e-3, betas=(1.0, 0.999)), "betas"),
        (dict(lr=1e-3, betas=(0.9, -0.1)), "betas"),
        (dict(lr=1e-3, betas=(0.9,)), "betas"),
        (dict(lr=1e-3, eps=-1.0), "eps"),
        (dict(lr=1e-3, weight_decay=-0.1), "weight_decay"),
    ],
)
def test_adamw_bad_arguments_name_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        AdamW([torch.zeros(2, requires_grad=True)], **kw)


def test_adamw_rejects_non_tensor_params():
    with pytest.raises(TypeError, match="params"):
        AdamW([torch.zeros(2), 3.0], lr=1e-3)


def test_adamw_trains_an_mlp():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    y = (x[:, :1] * x[:, 1:]).sign()  # XOR-like target
    model = Sequential(Linear(2, 16, generator=g), ReLU(), Linear(16, 1, generator=g))
    opt = AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # a linear model cannot beat ~1.0 on this target


# -- clip_grad_norm_ -------------------------------------------------------------------------------
def _grads_pair(seed, scale, none_at=()):
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (7,), (2, 2, 2), (1,)]
    ours = [torch.zeros(s, requires_grad=True) for s in shapes]
    ref = [torch.zeros(s, requires_grad=True) for s in shapes]
    for i, (a, b) in enumerate(zip(ours, ref)):
        if i in none_at:
            continue
        grad = torch.randn(a.shape, generator=g) * scale
        a.grad, b.grad = grad.clone(), grad.clone()
    return ours, ref


@pytest.mark.parametrize("scale", [1e-3, 0.3, 1.0, 10.0, 1e4])
@pytest.mark.parametrize("max_norm", [0.5, 1.0, 5.0])
def test_clip_grad_norm_matches_torch(scale, max_norm):
    ours, ref = _grads_pair(int(scale * 1000) % 97, scale)
    total = clip_grad_norm_(ours, max_norm)
    total_ref = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    assert isinstance(total, float)
    assert math.isclose(total, float(total_ref), rel_tol=1e-6)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-6)
    after = math.sqrt(sum(float((p.grad**2).sum()) for p in ours))
    assert after <= max_norm * (1 + 1e-5)
    if total <= max_norm:  # below the threshold gradients are unchanged (up to coef == 1)
        assert math.isclose(after, total, rel_tol=1e-6)


def test_clip_grad_norm_skips_none_grads():
    ours, ref = _grads_pair(1, 3.0, none_at=(1, 3))
    total = clip_grad_norm_(ours, 1.0)
    total_ref = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    assert math.isclose(total, float(total_ref), rel_tol=1e-6)
    assert ours[1].grad is None and ours[3].grad is None
    for a, b in zip(ours, ref):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad)


def test_clip_grad_norm_empty_and_all_none():
    assert clip_grad_norm_([], 1.0) == 0.0
    assert clip_grad_norm_([torch.zeros(2, requires_grad=True)], 1.0) == 0.0
    assert clip_grad_norm_(iter([]), 1.0) == 0.0


def test_clip_grad_norm_accepts_a_generator_and_returns_pre_clip_norm():
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0])
    total = clip_grad_norm_((q for q in [p]), 1.0)
    assert total == pytest.approx(5.0)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("max_norm", [0.0, -1.0])
def test_clip_grad_norm_bad_max_norm(max_norm):
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_([p], max_norm)
    assert torch.equal(p.grad, torch.ones(2))


# -- cosine_with_warmup ------------------------------------------------------------------------------
def test_cosine_warmup_phase_is_linear():
    lrs = [cosine_with_warmup(s, 10, 100, 1e-3) for s in range(10)]
    assert lrs == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert cosine_with_warmup(10, 10, 100, 1e-3) == pytest.approx(1e-3)  # peak at warmup_steps


def test_cosine_decay_matches_torch_cosine_annealing():
    """With warmup 0 the schedule is torch's CosineAnnealingLR (closed form, T_max=max_steps)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50, eta_min=0.01)
    for step in range(51):
        ref = sched._get_closed_form_lr()[0]
        assert cosine_with_warmup(step, 0, 50, 0.1, 0.01) == pytest.approx(ref, rel=1e-9)
        opt.step()
        sched.step()


def test_cosine_endpoints_midpoint_and_monotone():
    assert cosine_with_warmup(0, 0, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 10, 100, 1.0, 0.1) == pytest.approx(0.55)  # halfway
    assert cosine_with_warmup(100, 10, 100, 1.0, 0.1) == pytest.approx(0.1)
    for step in (101, 500, 10**6):
        assert cosine_with_warmup(step, 10, 100, 1.0, 0.1) == 0.1
    decay = [cosine_with_warmup(s, 10, 100, 1.0, 0.1) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_cosine_warmup_equal_to_max_steps():
    assert cosine_with_warmup(4, 5, 5, 1.0) == pytest.approx(1.0)
    assert cosine_with_warmup(5, 5, 5, 1.0, 0.2) == 0.2
    assert cosine_with_warmup(0, 0, 0, 1.0, 0.2) == 0.2


@pytest.mark.parametrize(
    "args, name",
    [
        ((-1, 0, 10, 1.0), "step"),
        ((0, -1, 10, 1.0), "warmup_steps"),
        ((0, 20, 10, 1.0), "max_steps"),
        ((0, 0, 10, 1.0, 2.0), "min_lr"),
        ((0, 0, 10, -1.0), "max_lr"),
    ],
)
def test_cosine_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        cosine_with_warmup(*args)


def test_pin_malloc_mmap_threshold(monkeypatch):
    import platform

    from g2c.training import pin_malloc_mmap_threshold

    with pytest.raises(ValueError, match="threshold_bytes"):
        pin_malloc_mmap_threshold(100)
    monkeypatch.setenv("G2C_MALLOC_TUNING", "0")
    assert pin_malloc_mmap_threshold() is False  # opted out
    monkeypatch.delenv("G2C_MALLOC_TUNING")
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert pin_malloc_mmap_threshold() is glibc  # mallopt accepted it (glibc) / no-op elsewhere


def test_release_free_heap_returns_a_bool():
    import platform

    from g2c.training import release_free_heap

    junk = [torch.ones(50_000) for _ in range(200)]  # ~40 MB of heap blocks, then freed
    del junk
    result = release_free_heap()
    assert isinstance(result, bool)
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert result is False
