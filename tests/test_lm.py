"""Tests for g2c.lm: bigram/MLP/RNN/LSTM/WaveNet models, batches, perplexity, sampling, training,
the comparison, the CLI and the example's smoke mode."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from g2c.lm import (
    MODELS,
    CompareConfig,
    CountsBigramLM,
    FlattenConsecutive,
    LMConfig,
    LSTMCell,
    LSTMLanguageModel,
    MLPLanguageModel,
    NeuralBigramLM,
    RNNCell,
    RNNLanguageModel,
    WaveNetLM,
    bits_per_token,
    build_model,
    char_split,
    compare_models,
    get_batch,
    load_lm,
    perplexity,
    plot_val_curves,
    results_markdown,
    sample,
    save_lm,
    train_lm,
)

REPO = Path(__file__).resolve().parents[1]
# a zero initial state skips h @ W_hh: W_hh then gets a zero gradient (torch computes 0 too)
UNUSED_OK = {"allow_unused": True, "materialize_grads": True}


def markov_ids(n: int, V: int = 5, seed: int = 0) -> torch.Tensor:
    """A sequence from a random first-order Markov chain over V symbols."""
    g = torch.Generator().manual_seed(seed)
    P = torch.softmax(3 * torch.randn(V, V, generator=g), dim=1)
    ids = [0]
    for _ in range(n - 1):
        ids.append(int(torch.multinomial(P[ids[-1]], 1, generator=g)))
    return torch.tensor(ids)


# -- counts bigram ------------------------------------------------------------------------
def test_counts_bigram_counts_match_loop_and_accumulate():
    ids = markov_ids(300)
    m = CountsBigramLM(5, smoothing=0.0).fit(ids)
    ref = torch.zeros(5, 5)
    for a, b in zip(ids[:-1].tolist(), ids[1:].tolist()):
        ref[a, b] += 1
    assert torch.equal(m.counts, ref)
    m.fit(ids)
    assert torch.equal(m.counts, 2 * ref)


def test_counts_bigram_logits_normalise_and_shapes():
    m = CountsBigramLM(5, smoothing=1.0).fit(markov_ids(200))
    lp = m.logits(torch.tensor([0, 3, 4]))
    assert lp.shape == (3, 5)
    torch.testing.assert_close(lp.exp().sum(1), torch.ones(3))
    torch.testing.assert_close(m.logits(torch.tensor([[0], [3], [4]])), lp)
    # add-one smoothing: (N + 1) / (row + V)
    row = m.counts[3]
    torch.testing.assert_close(lp[1], torch.log((row + 1) / (row.sum() + 5)))
    # forward uses only the last token of a window
    torch.testing.assert_close(
        m(torch.tensor([[1, 2, 0], [0, 1, 3]])), m.logits(torch.tensor([0, 3]))
    )
    with pytest.raises(ValueError, match="ctx"):
        m.logits(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        m.logits(torch.tensor([5]))
    with pytest.raises(TypeError):
        m.fit(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="smoothing"):
        CountsBigramLM(5, smoothing=-1)


def test_counts_bigram_unseen_row_without_smoothing_is_uniform():
    m = CountsBigramLM(4, smoothing=0.0).fit(torch.tensor([0, 1, 0, 1]))
    lp = m.logits(torch.tensor([3]))
    torch.testing.assert_close(lp, torch.full((1, 4), -math.log(4)))


def test_counts_bigram_perplexity_is_exp_mean_nll():
    ids = markov_ids(400)
    m = CountsBigramLM(5).fit(ids[:300])
    val = ids[300:]
    lp = m.log_probs()
    nll = -lp[val[:-1], val[1:]].mean()
    assert perplexity(m, val) == pytest.approx(math.exp(float(nll)), rel=1e-6)
    assert bits_per_token(perplexity(m, val)) == pytest.approx(float(nll) / math.log(2), rel=1e-6)


# -- get_batch --------------------------------------------------------------------------------
def test_get_batch_windows_and_targets():
    ids = torch.arange(100) * 3
    g = torch.Generator().manual_seed(1)
    x, y = get_batch(ids, 8, 16, generator=g)
    assert x.shape == (16, 8) and y.shape == (16,) and x.dtype == torch.long
    starts = x[:, 0] // 3
    assert torch.equal(x, (starts[:, None] + torch.arange(8)) * 3)
    assert torch.equal(y, (starts + 8) * 3)
    x2, _ = get_batch(ids, 8, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)
    x, y = get_batch(list(range(9)), 8, 4)  # shortest legal input: one window
    assert torch.equal(x, torch.arange(8).expand(4, 8)) and torch.equal(y, torch.full((4,), 8))
    with pytest.raises(ValueError, match="too short"):
        get_batch(torch.arange(8), 8, 4)
    with pytest.raises(ValueError, match="batch_size"):
        get_batch(ids, 8, 0)


# -- perplexity -------------------------------------------------------------------------------
def test_perplexity_matches_reference_and_options():
    torch.manual_seed(0)
    V, ctx = 7, 4
    model = MLPLanguageModel(V, ctx, 5, 16)
    ids = torch.randint(0, V, (60,))
    windows = torch.stack([ids[p - ctx : p] for p in range(ctx, 60)])
    with torch.no_grad():
        ref = math.exp(float(F.cross_entropy(model(windows), ids[ctx:])))
    assert perplexity(model, ids, batch_size=7) == pytest.approx(ref, rel=1e-6)
    # first_target / max_targets pick a suffix / prefix of the targets
    with torch.no_grad():
        ref10 = math.exp(float(F.cross_entropy(model(windows[6:16]), ids[10:20])))
    assert perplexity(model, ids, first_target=10, max_targets=10) == pytest.approx(ref10, rel=1e-6)
    with pytest.raises(ValueError, match="first_target"):
        perplexity(model, ids, first_target=2)
    with pytest.raises(ValueError, match="no target"):
        perplexity(model, ids[:4])


def test_uniform_model_has_perplexity_V():
    m = NeuralBigramLM(11, 3)
    with torch.no_grad():
        m.head.W.zero_()
    assert perplexity(m, torch.randint(0, 11, (50,))) == pytest.approx(11.0, rel=1e-6)


# -- sample -----------------------------------------------------------------------------------
def test_sample_greedy_follows_deterministic_chain_and_is_reproducible():
    m = CountsBigramLM(3, smoothing=0.01).fit(torch.tensor([0, 1, 2] * 20))
    out = sample(m, [0], 7, temperature=0)
    assert out.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    mlp = MLPLanguageModel(5, 4, 3, 8)
    a = sample(mlp, torch.tensor([1, 2]), 20, generator=torch.Generator().manual_seed(3))
    b = sample(mlp, torch.tensor([1, 2]), 20, generator=torch.Generator().manual_seed(3))
    assert a.shape == (22,) and a[:2].tolist() == [1, 2] and torch.equal(a, b)
    assert int(a.max()) < 5 and int(a.min()) >= 0
    with pytest.raises(ValueError, match="prompt"):
        sample(mlp, [], 3)
    with pytest.raises(ValueError, match="temperature"):
        sample(mlp, [1], 3, temperature=-1)


def test_sample_restores_training_mode():
    m = WaveNetLM(5, 4, 3, 8)
    m.train()
    sample(m, [0], 3)
    assert m.training
    m.eval()
    perplexity(m, torch.randint(0, 5, (20,)))
    assert not m.training


# -- recurrent cells against torch.nn ---------------------------------------------------------
def _copy_torch_cell_weights(ours, ref):
    """Load a torch.nn.RNNCell/LSTMCell's weights into our cell (ours stores W as (in, out))."""
    with torch.no_grad():
        ours.W_ih.copy_(ref.weight_ih.T)
        ours.W_hh.copy_(ref.weight_hh.T)
        ours.b_ih.copy_(ref.bias_ih)
        ours.b_hh.copy_(ref.bias_hh)


def _assert_cell_grads_match(g, g_ref, n):
    """Input grads g[:n] equal torch's; then W_ih, W_hh (transposed), b_ih, b_hh."""
    for a, b in zip(g[:n], g_ref[:n]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(g[n], g_ref[n].T, atol=1e-6, rtol=0)  # W_ih
    torch.testing.assert_close(g[n + 1], g_ref[n + 1].T, atol=1e-6, rtol=0)  # W_hh
    torch.testing.assert_close(g[n + 2], g_ref[n + 2], atol=1e-6, rtol=0)  # b_ih
    torch.testing.assert_close(g[n + 3], g_ref[n + 3], atol=1e-6, rtol=0)  # b_hh


@pytest.mark.parametrize("with_state", [True, False])
def test_rnn_cell_matches_torch(with_state):
    torch.manual_seed(0)
    I, H, B = 5, 7, 4
    ref = torch.nn.RNNCell(I, H).double()
    ours = RNNCell(I, H).to(dtype=torch.float64)
    _copy_torch_cell_weights(ours, ref)
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    h = torch.randn(B, H, dtype=torch.float64, requires_grad=True) if with_state else None
    out_ref = ref(x, h)
    out = ours(x, h)
    torch.testing.assert_close(out, out_ref, atol=1e-6, rtol=0)
    w = torch.randn(B, H, dtype=torch.float64)
    ins = [x] + ([h] if with_state else [])
    g_ref = torch.autograd.grad((out_ref * w).sum(), ins + list(ref.parameters()))
    g = torch.autograd.grad(
        (out * w).sum(), ins + [ours.W_ih, ours.W_hh, ours.b_ih, ours.b_hh], **UNUSED_OK
    )
    _assert_cell_grads_match(g, g_ref, len(ins))


@pytest.mark.parametrize("with_state", [True, False])
def test_lstm_cell_matches_torch(with_state):
    torch.manual_seed(1)
    I, H, B = 6, 5, 3
    ref = torch.nn.LSTMCell(I, H).double()
    ours = LSTMCell(I, H).to(dtype=torch.float64)
    _copy_torch_cell_weights(ours, ref)
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    if with_state:
        h = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
        c = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
        state, ins = (h, c), [x, h, c]
    else:
        state, ins = None, [x]
    h_ref, c_ref = ref(x, state)
    h1, c1 = ours(x, state)
    torch.testing.assert_close(h1, h_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(c1, c_ref, atol=1e-6, rtol=0)
    wh, wc = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    g_ref = torch.autograd.grad((h_ref * wh + c_ref * wc).sum(), ins + list(ref.parameters()))
    g = torch.autograd.grad(
        (h1 * wh + c1 * wc).sum(),
        ins + [ours.W_ih, ours.W_hh, ours.b_ih, ours.b_hh],
        **UNUSED_OK,
    )
    _assert_cell_grads_match(g, g_ref, len(ins))


def test_lstm_model_matches_torch_lstm_over_a_window():
    """Our LSTM LM's final hidden state equals torch.nn.LSTM's on the same embedded window."""
    torch.manual_seed(2)
    V, T, D, H = 9, 6, 4, 5
    m = RNNLanguageModel(V, T, D, H, cell="lstm").to(dtype=torch.float64)
    ref = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(m.cell.W_ih.T)
        ref.weight_hh_l0.copy_(m.cell.W_hh.T)
        ref.bias_ih_l0.copy_(m.cell.b_ih)
        ref.bias_hh_l0.copy_(m.cell.b_hh)
    x = torch.randint(0, V, (3, T))
    _, (h_n, _) = ref(m.embedding(x))
    expected = h_n[0] @ m.head.W + m.head.b
    torch.testing.assert_close(m(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_fused_input_projection_equals_reference_loop(cell):
    torch.manual_seed(3)
    m = RNNLanguageModel(10, 8, 6, 12, cell=cell)
    x = torch.randint(0, 10, (5, 8))
    m.fused_input = True
    fast = m(x)
    g_fast = torch.autograd.grad(fast.square().sum(), m.parameters())
    m.fused_input = False
    ref = m(x)
    g_ref = torch.autograd.grad(ref.square().sum(), m.parameters())
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cell_shape_errors():
    with pytest.raises(ValueError, match="hidden"):
        RNNCell(3, 4)(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        LSTMCell(3, 4)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="cell"):
        RNNLanguageModel(5, 4, 3, 3, cell="gru")
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        RNNLanguageModel(5, 4, 3, 3)(torch.zeros(2, 3, dtype=torch.long))


# -- WaveNet ----------------------------------------------------------------------------------
def test_flatten_consecutive_shapes():
    x = torch.arange(2 * 8 * 3.0).reshape(2, 8, 3)
    y = FlattenConsecutive(2)(x)
    assert y.shape == (2, 4, 6)
    torch.testing.assert_close(y[0, 1], torch.cat([x[0, 2], x[0, 3]]))
    assert FlattenConsecutive(8)(x).shape == (2, 24)
    with pytest.raises(ValueError, match="divisible"):
        FlattenConsecutive(3)(x)


def test_wavenet_structure_and_eval_mode_is_per_example():
    m = WaveNetLM(7, 8, 4, 10)
    assert sum(isinstance(layer, FlattenConsecutive) for layer in m.layers) == 3
    x = torch.randint(0, 7, (6, 8))
    m.train()
    m(x)  # updates running statistics
    m.eval()
    with torch.no_grad():
        full = m(x)
        one = m(x[2:3])
    torch.testing.assert_close(one[0], full[2])
    with pytest.raises(ValueError, match="power of two"):
        WaveNetLM(7, 6, 4, 10)


# -- training ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["neural-bigram", "mlp", "rnn", "lstm", "wavenet"])
def test_every_model_learns_a_markov_chain(name):
    """Training drives validation perplexity well below its start, towards the chain's."""
    ids = markov_ids(3000)
    train, val = ids[:2500], ids[2500:]
    cfg = LMConfig(
        model=name,
        vocab_size=5,
        context_length=1 if "bigram" in name else 4,
        embedding_dim=8,
        hidden_dim=24,
    )
    model = build_model(cfg, generator=torch.Generator().manual_seed(0))
    hist = train_lm(
        model,
        train,
        val,
        num_steps=150,
        batch_size=32,
        lr=1e-2,
        log_every=50,
        grad_clip=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    counts_ppl = perplexity(CountsBigramLM(5).fit(train), val)
    assert hist["val_steps"] == [0, 50, 100, 150]
    assert len(hist["train_losses"]) == 150 and len(hist["grad_norms"]) == 150
    assert hist["val_perplexities"][-1] < hist["val_perplexities"][0]
    assert hist["val_perplexities"][-1] < 1.15 * counts_ppl


def test_neural_bigram_converges_to_counts_bigram():
    ids = markov_ids(2000, V=4)
    counts = CountsBigramLM(4, smoothing=0.0).fit(ids)
    m = NeuralBigramLM(4, 4, generator=torch.Generator().manual_seed(0))
    train_lm(
        m,
        ids,
        num_steps=400,
        batch_size=256,
        lr=0.05,
        log_every=400,
        generator=torch.Generator().manual_seed(1),
    )
    assert perplexity(m, ids) == pytest.approx(perplexity(counts, ids), rel=0.01)


def test_train_lm_sgd_clipping_and_errors():
    ids = markov_ids(500)
    m = MLPLanguageModel(5, 3, 4, 8)
    logs = []
    hist = train_lm(
        m,
        ids,
        num_steps=20,
        batch_size=8,
        lr=0.1,
        log_every=10,
        optimizer="sgd",
        grad_clip=0.01,
        on_log=logs.append,
    )
    assert [r["step"] for r in logs] == [10, 20] and logs[0]["val_ppl"] is None
    assert hist["val_perplexities"] == [] and hist["tokens_seen"] == 160
    assert max(hist["grad_norms"]) > 0.01  # pre-clip norms are reported
    with pytest.raises(ValueError, match="fit"):
        train_lm(CountsBigramLM(5), ids)
    with pytest.raises(ValueError, match="optimizer"):
        train_lm(m, ids, optimizer="adam")
    with pytest.raises(ValueError, match="grad_clip"):
        train_lm(m, ids, grad_clip=0.0)


def test_clipping_bounds_the_update():
    """With grad_clip tiny, one SGD step moves the parameters by at most lr * clip."""
    m = MLPLanguageModel(5, 3, 4, 8)
    before = torch.cat([p.detach().flatten().clone() for p in m.parameters()])
    train_lm(
        m,
        markov_ids(200),
        num_steps=1,
        batch_size=16,
        lr=1.0,
        optimizer="sgd",
        grad_clip=1e-3,
        log_every=1,
    )
    after = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert float((after - before).norm()) <= 1e-3 * (1 + 1e-4)


# -- persistence, comparison, CLI, example --------------------------------------------------
@pytest.mark.parametrize("name", ["bigram", "lstm", "wavenet"])
def test_save_load_roundtrip(tmp_path, name):
    cfg = LMConfig(model=name, vocab_size=6, context_length=4, embedding_dim=3, hidden_dim=5)
    m = build_model(cfg)
    if name == "bigram":
        m.fit(torch.randint(0, 6, (50,)))
    else:
        train_lm(m, torch.randint(0, 6, (60,)), num_steps=3, batch_size=4, log_every=3)
    m.eval()
    save_lm(tmp_path, m, cfg, metrics={"x": 1})
    m2, cfg2, manifest = load_lm(tmp_path)
    assert cfg2 == cfg and manifest["metrics"] == {"x": 1}
    x = torch.randint(0, 6, (3, m.context_length))
    torch.testing.assert_close(m2(x), m(x))
    with pytest.raises(ValueError, match="unknown LMConfig"):
        LMConfig.from_dict({"model": "mlp", "bogus": 1})
    with pytest.raises(ValueError, match="model must be one of"):
        build_model(LMConfig(model="gpt"))


def test_compare_models_tiny(tmp_path):
    text = "To be, or not to be: that is the question.\n" * 30
    tok, train_ids, val_ids = char_split(text)
    cfg = CompareConfig(
        steps=6,
        batch_size=8,
        context_length=4,
        embedding_dim=4,
        hidden_dim=8,
        eval_every=3,
        eval_tokens=50,
        sample_tokens=20,
    )
    results = compare_models(train_ids, val_ids, tok.vocab_size, cfg)
    assert [r["model"] for r in results] == list(cfg.models)
    assert len({r["val_targets"] for r in results}) == 1  # same targets for every model
    for r in results:
        assert r["bpc"] == pytest.approx(math.log2(r["val_ppl"]))
        assert len(r["sample_ids"]) == 21 and 1 <= r["val_ppl"] < 2 * tok.vocab_size
        assert r["curve_steps"][0] == 0 and r["curve_steps"][-1] == 6
    md = results_markdown(results, decode=tok.decode)
    assert md.count("\n| ") == 6 and "**lstm**" in md  # one row per model after the header
    png = plot_val_curves(results, tmp_path / "curves.png")
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="unknown model"):
        compare_models(train_ids, val_ids, tok.vocab_size, CompareConfig(models=("gpt",)))


def _tiny_text(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.txt"
    p.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20)
    return p


def test_cli_lm_train_end_to_end(tmp_path):
    from g2c.cli import main

    out = tmp_path / "run"
    rc = main(
        [
            "lm",
            "train",
            "--model",
            "lstm",
            "--text-file",
            str(_tiny_text(tmp_path)),
            "--steps",
            "4",
            "--batch-size",
            "4",
            "--context-length",
            "4",
            "--hidden-dim",
            "8",
            "--embedding-dim",
            "4",
            "--eval-every",
            "2",
            "--sample-tokens",
            "10",
            "--out",
            str(out),
            "--threads",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "g2c.lm" and manifest["model_config"]["model"] == "lstm"
    assert manifest["metrics"]["val_ppl"] >= 1.0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    model, cfg, _ = load_lm(out)
    assert cfg.hidden_dim == 8 and model.context_length == 4
    assert (out / "tokenizer.json").is_file() and (out / "report.md").is_file()
    # bad input exits with code 2 and a message, not a traceback
    assert (
        main(
            [
                "lm",
                "train",
                "--model",
                "wavenet",
                "--context-length",
                "6",
                "--text-file",
                str(_tiny_text(tmp_path)),
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_cli_lm_compare_end_to_end(tmp_path):
    from g2c.cli import main

    out = tmp_path / "cmp"
    rc = main(
        [
            "lm",
            "compare",
            "--models",
            "bigram,mlp,wavenet",
            "--text-file",
            str(_tiny_text(tmp_path)),
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--context-length",
            "4",
            "--hidden-dim",
            "8",
            "--embedding-dim",
            "4",
            "--eval-every",
            "3",
            "--sample-tokens",
            "10",
            "--out",
            str(out),
            "--threads",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["model"] for r in results] == ["bigram", "mlp", "wavenet"]
    assert (out / "val-ppl.png").is_file() and "| wavenet |" in (out / "table.md").read_text()


def test_example_smoke(tmp_path):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import importlib

        example = importlib.import_module("06_language_models")
    finally:
        sys.path.pop(0)
    assert example.main(["--smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "06-val-ppl.png").is_file() and (tmp_path / "06-table.md").is_file()


@pytest.mark.slow
def test_tinyshakespeare_split_is_available_and_contiguous():
    root = os.environ.get("G2C_DATA_DIR")
    if not root or not (Path(root) / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip("TinyShakespeare not found under $G2C_DATA_DIR/tinyshakespeare/input.txt")
    from g2c.data import load_text

    text = load_text("tinyshakespeare")
    tok, train_ids, val_ids = char_split(text)
    assert tok.vocab_size == 65 and len(train_ids) + len(val_ids) == len(text)
    assert tok.decode(val_ids[:20].tolist()) == text[len(train_ids) : len(train_ids) + 20]


# -- course compatibility (API.md Addendum 06) and the name → class table --------------------
def test_neural_bigram_accepts_ids_b_or_b1_and_logits_is_the_same_call():
    m = NeuralBigramLM(7, 4, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([0, 3, 6, 2])
    out = m(ids)  # (B,)
    assert out.shape == (4, 7)
    torch.testing.assert_close(m(ids[:, None]), out)  # (B, 1)
    torch.testing.assert_close(m.logits(ids), out)
    torch.testing.assert_close(m.logits(ids[:, None]), out)
    wide = torch.stack([torch.tensor([5, 5, 5, 5]), ids], dim=1)  # (B, 2): last column counts
    torch.testing.assert_close(m(wide), out)
    torch.testing.assert_close(out, m.head(m.embedding.weight[ids]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        m(torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError):
        m(torch.tensor([7]))  # outside the vocabulary


def test_build_model_uses_the_name_to_class_table():
    cfg = dict(vocab_size=6, context_length=4, embedding_dim=3, hidden_dim=5)
    for name, entry in MODELS.items():
        m = build_model(LMConfig(model=name, **cfg), generator=torch.Generator().manual_seed(0))
        assert type(m) is entry.cls
        assert m(torch.randint(0, 6, (2, m.context_length))).shape == (2, 6)
    assert MODELS["lstm"].cls is LSTMLanguageModel
    a = build_model(LMConfig(model="lstm", **cfg), generator=torch.Generator().manual_seed(3))
    b = RNNLanguageModel(6, 4, 3, 5, cell="lstm", generator=torch.Generator().manual_seed(3))
    for (ka, va), (kb, vb) in zip(a.named_tensors(), b.named_tensors()):
        assert ka == kb and torch.equal(va, vb)  # same weights as the explicit constructor
