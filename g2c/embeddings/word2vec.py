"""Skip-gram with negative sampling (SGNS), the word2vec training objective, on torch tensors.

Source: Mikolov et al. 2013, "Distributed Representations of Words and Phrases and their
Compositionality" (NeurIPS), and the original word2vec.c for the details it leaves out.

Each word w has an input ("centre") vector v_w and an output ("context") vector u_w, two
(V, D) tables. For a centre word c seen next to a context word o, and K "negative" words n_k
drawn from the unigram distribution raised to the 3/4 power, the loss is

    −log σ(u_o · v_c) − Σ_k log σ(−u_{n_k} · v_c)

i.e. logistic regression telling the true neighbour from noise. Pairs (c, o) come from a
window of ±``window`` words; as in word2vec.c each centre draws its own window size in
1..window (near words count more), and frequent words are dropped before windowing with
probability 1 − (√(f/t) + 1)·t/f (f = word frequency, t = ``subsample``). Training is SGD on a
batch of pairs with the loss summed (each pair gets word2vec's per-pair step), the learning rate
falling linearly to ~0; only the rows a batch touches are updated (``sgd_step_sparse``), each
by the mean of its gradients in the batch (a batched stand-in for word2vec.c's pair-by-pair
updates: a summed step on a word seen 50 times in one batch would diverge).
The input vectors v are the word vectors returned.

Shapes: centre (B,), context (B,), negatives (B, K) long → loss scalar.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from g2c.embeddings.positional import TokenEmbedding
from g2c.embeddings.wordvectors import WordVectors
from g2c.nn import Linear, Module

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def tokenize_words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters, with an inner apostrophe: "don't"); the rest dropped."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    return _WORD.findall(text.lower())


def build_vocab(
    tokens: Sequence[str], max_vocab: int = 20000, min_count: int = 5
) -> tuple[list[str], torch.Tensor]:
    """The ``max_vocab`` most frequent words seen at least ``min_count`` times, and their counts.

    Returns (words (V,), counts (V,) long), most frequent first (ties by first appearance).
    max_vocab < 1 or min_count < 1 → ValueError; no word frequent enough → ValueError.
    """
    if max_vocab < 1:
        raise ValueError(f"max_vocab must be >= 1, got {max_vocab}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    common = [(w, c) for w, c in Counter(tokens).most_common(max_vocab) if c >= min_count]
    if not common:
        raise ValueError(
            f"no word occurs min_count={min_count} times in {len(tokens)} tokens; "
            "use more text or a lower min_count"
        )
    return [w for w, _ in common], torch.tensor([c for _, c in common], dtype=torch.long)


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """P_n(w) ∝ count(w)^power (word2vec: 3/4), float64 (V,) summing to 1."""
    p = counts.double().clamp_min(0) ** power
    if p.sum() <= 0:
        raise ValueError("counts must contain a positive entry")
    return p / p.sum()


def keep_probability(counts: torch.Tensor, subsample: float = 1e-3) -> torch.Tensor:
    """word2vec.c's subsampling: keep a word with p = (√(f/t) + 1)·t/f, clipped to 1. (V,) float64.

    f is the word's share of all tokens, t = ``subsample``; ``subsample <= 0`` keeps everything.
    """
    if subsample <= 0:
        return torch.ones(counts.shape, dtype=torch.float64)
    f = counts.double() / counts.sum()
    return ((f / subsample).sqrt() + 1) * subsample / f.clamp_min(1e-300)


def skipgram_pairs(
    ids: torch.Tensor,
    window: int,
    *,
    dynamic: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All (centre, context) id pairs within ``window`` positions of each other.

    ids (N,) long → centre (P,), context (P,). With ``dynamic`` each centre i draws
    b_i ∈ {1..window} and pairs only with words at distance ≤ b_i (word2vec.c). window < 1 →
    ValueError.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = ids.numel()
    if dynamic:
        reach = torch.randint(1, window + 1, (n,), generator=generator)  # (N,)
    else:
        reach = torch.full((n,), window)
    centres, contexts = [], []
    pos = torch.arange(n)
    for d in range(1, window + 1):
        for sign in (1, -1):
            other = pos + sign * d  # (N,)
            ok = (reach >= d) & (other >= 0) & (other < n)
            centres.append(ids[ok])
            contexts.append(ids[other[ok]])
    return torch.cat(centres), torch.cat(contexts)


def make_skipgram_pairs(
    ids: torch.Tensor | Sequence[int], window: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (centre, context) pair within ±``window`` positions, in reading order.

    The course's fixed-window skip-gram pairs: for each position i = 0 … N−1 in turn, the
    neighbours j = i−window … i+window (j ≠ i, inside the sequence) in increasing order. E.g.
    ids [a, b, c] with window 1 → centres [a, b, b, c], contexts [b, a, c, b]. (The SGNS
    trainer's :func:`skipgram_pairs` gives the same pairs with a dynamic window, grouped by
    distance.)

    Args:
        ids: 1-D token ids (N,), a long tensor or a list of ints.
        window: neighbours on each side (>= 1, else ValueError).

    Returns:
        ``(centers, contexts)``, two long tensors (P,) with P = Σ_i #neighbours of i.

    Raises:
        ValueError: window < 1 or ids not 1-D. TypeError: non-integer ids.
    """
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    ids = torch.as_tensor(ids) if not isinstance(ids, torch.Tensor) else ids
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
        raise TypeError(f"ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D (N,), got shape {tuple(ids.shape)}")
    ids = ids.long()
    n = ids.numel()
    offsets = torch.tensor([d for d in range(-window, window + 1) if d != 0])  # (2w,)
    other = torch.arange(n)[:, None] + offsets  # (N, 2w): neighbour positions, row by row
    ok = (other >= 0) & (other < n)  # (N, 2w)
    centre_pos = torch.arange(n)[:, None].expand_as(other)[ok]  # (P,) row-major = in order
    return ids[centre_pos], ids[other[ok]]


class SkipGramEmbeddingModel(Module):
    """Full-softmax skip-gram (Mikolov et al. 2013a): centre id → scores over every context word.

    ``embedding`` (a :class:`~g2c.embeddings.TokenEmbedding`, (V, D)) then ``output`` (a
    :class:`g2c.nn.Linear`, D → V). Train it with cross-entropy on
    :func:`make_skipgram_pairs`; the rows of ``embedding.weight`` are the word vectors. The
    softmax over all V words is what negative sampling (:class:`SkipGramNS`) approximates.

    Args:
        vocab_size: V; embedding_dim: D (both >= 1, else ValueError).
        generator: keyword-only ``torch.Generator`` for the initialisation.

    ``forward(centers)``: centre ids (B,) long → logits (B, V) float32. Ids outside [0, V) →
    ValueError; a non-1-D input → ValueError.
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int, *, generator: torch.Generator | None = None
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.embedding = TokenEmbedding(vocab_size, embedding_dim, generator=generator)
        self.output = Linear(embedding_dim, vocab_size, generator=generator)

    def forward(self, centers: torch.Tensor) -> torch.Tensor:
        """centre ids (B,) → logits (B, V) for the word at any position in the window."""
        if not isinstance(centers, torch.Tensor) or centers.dim() != 1:
            shape = tuple(centers.shape) if isinstance(centers, torch.Tensor) else type(centers)
            raise ValueError(f"centers must be a 1-D tensor of ids (B,), got {shape}")
        return self.output(self.embedding(centers))  # (B,) -> (B, D) -> (B, V)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr``."""
        return f"vocab_size={self.vocab_size}, embedding_dim={self.embedding_dim}"


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log σ(x) = min(x, 0) − log(1 + e^{−|x|}), finite for any x (same shape)."""
    return x.clamp(max=0) - torch.log1p(torch.exp(-x.abs()))


class SkipGramNS(Module):
    """Two (V, D) tables: ``in_embed`` (centre vectors v) and ``out_embed`` (context vectors u).

    Init as word2vec.c: v ~ U(−0.5/D, 0.5/D), u = 0. ``forward(centre (B,), context (B,),
    negatives (B, K))`` → the summed SGNS loss (scalar); ``reduction="mean"`` divides by B.
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int, *, generator: torch.Generator | None = None
    ) -> None:
        self.in_embed = TokenEmbedding(vocab_size, embedding_dim, generator=generator)
        self.out_embed = TokenEmbedding(vocab_size, embedding_dim, generator=generator)
        with torch.no_grad():
            self.in_embed.weight.uniform_(
                -0.5 / embedding_dim, 0.5 / embedding_dim, generator=generator
            )
            self.out_embed.weight.zero_()

    def forward(
        self,
        centre: torch.Tensor,
        context: torch.Tensor,
        negatives: torch.Tensor,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """SGNS loss for a batch; see the module docstring. Shapes (B,), (B,), (B, K) → ()."""
        v = self.in_embed(centre)  # (B, D)
        u_pos = self.out_embed(context)  # (B, D)
        u_neg = self.out_embed(negatives)  # (B, K, D)
        return sgns_loss(v, u_pos, u_neg, reduction)


def sgns_loss(
    v: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """−log σ(u_pos·v) − Σ_k log σ(−u_neg_k·v) from vectors v (B, D), u_pos (B, D), u_neg (B, K, D).

    ``reduction`` "sum" (word2vec's per-pair SGD) or "mean" over B; other → ValueError.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    pos = (u_pos * v).sum(-1)  # (B,)
    neg = torch.einsum("bkd,bd->bk", u_neg, v)  # (B, K)
    loss = -(log_sigmoid(pos) + log_sigmoid(-neg).sum(-1))  # (B,)
    return loss.sum() if reduction == "sum" else loss.mean()


def sgd_step_sparse(
    model: SkipGramNS,
    centre: torch.Tensor,
    context: torch.Tensor,
    negatives: torch.Tensor,
    lr: float,
    *,
    row_mean: bool = True,
) -> float:
    """One SGD step on the summed batch loss that touches only the rows the batch uses.

    The rows are gathered into fresh leaf tensors, autograd gives their gradients, and
    ``index_add_`` scatters −lr·grad back. With ``row_mean=False`` repeated ids accumulate, which
    is exactly a dense SGD step on the full tables (tested) without a (V, D) gradient. With
    ``row_mean=True`` (default) each row's summed gradient is divided by how often the row occurs
    in the batch: word2vec.c updates one pair at a time, so a word seen 50 times in a batch would
    otherwise take a single step 50× too long and diverge. Returns the loss (float).
    """
    w_in, w_out = model.in_embed.weight, model.out_embed.weight
    out_ids = torch.cat([context[:, None], negatives], dim=1).reshape(-1)  # (B·(1+K),)
    v = w_in.detach()[centre].requires_grad_()  # (B, D)
    u = w_out.detach()[out_ids].requires_grad_()  # (B·(1+K), D)
    u3 = u.view(centre.numel(), -1, u.shape[-1])  # (B, 1+K, D)
    loss = sgns_loss(v, u3[:, 0], u3[:, 1:], "sum")
    loss.backward()
    with torch.no_grad():
        for table, ids, grad in ((w_in, centre, v.grad), (w_out, out_ids, u.grad)):
            if row_mean:
                count = torch.bincount(ids, minlength=table.shape[0])[ids]  # (n,) occurrences
                grad = grad / count[:, None]
            table.index_add_(0, ids, grad, alpha=-lr)
    return float(loss.detach())


@dataclass
class SkipGramConfig:
    """Settings of ``train_skipgram`` (JSON round-trip via ``asdict`` / ``SkipGramConfig(**d)``).

    dim D; max_vocab / min_count select the vocabulary; window ±words; negatives K per pair;
    subsample t (0 = off); lr start (linear decay to lr·1e-4); batch_size pairs per step;
    epochs over the (re-subsampled) corpus, or ``steps`` batches when set; seed.
    """

    dim: int = 64
    max_vocab: int = 20000
    min_count: int = 5
    window: int = 5
    negatives: int = 5
    subsample: float = 1e-3
    lr: float = 0.25
    batch_size: int = 1024
    epochs: int = 1
    steps: int | None = None
    seed: int = 1337

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in (
            "dim",
            "max_vocab",
            "min_count",
            "window",
            "negatives",
            "batch_size",
            "epochs",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.subsample < 0:
            raise ValueError(f"subsample must be >= 0 (0 = off), got {self.subsample}")


def _epoch_pairs(
    ids: torch.Tensor, keep: torch.Tensor, cfg: SkipGramConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Subsample the corpus, window it, and shuffle the pairs of one epoch."""
    kept = ids[torch.rand(ids.numel(), generator=g, dtype=torch.float64) < keep[ids]]  # (N',)
    centre, context = skipgram_pairs(kept, cfg.window, generator=g)
    perm = torch.randperm(centre.numel(), generator=g)
    return centre[perm], context[perm]


def train_skipgram(
    text: str | Sequence[str],
    config: SkipGramConfig | None = None,
    *,
    callback: Callable[[int, int, dict], None] | None = None,
    log_every: int = 100,
) -> tuple[WordVectors, dict]:
    """Train SGNS word vectors on ``text`` (a string, tokenised by ``tokenize_words``, or tokens).

    Returns (WordVectors of the input vectors (V, D), history) with history =
    {"losses": [(step, mean loss per pair)], "steps", "pairs_seen", "tokens", "vocab_size",
    "seconds", "config"}. ``callback(step, total_steps, {"loss", "lr"})`` is called every
    ``log_every`` steps and at the end. Bad config → ValueError; too little text → ValueError.
    """
    cfg = config or SkipGramConfig()
    cfg.validate()
    tokens = tokenize_words(text) if isinstance(text, str) else list(text)
    words, counts = build_vocab(tokens, cfg.max_vocab, cfg.min_count)
    index = {w: i for i, w in enumerate(words)}
    ids = torch.tensor([index[t] for t in tokens if t in index], dtype=torch.long)  # OOV dropped
    if ids.numel() < 2:
        raise ValueError("text has fewer than 2 in-vocabulary words; use more text")
    g = torch.Generator().manual_seed(cfg.seed)
    model = SkipGramNS(len(words), cfg.dim, generator=g)
    noise = noise_distribution(counts)  # (V,)
    keep = keep_probability(counts, cfg.subsample)  # (V,)

    centre, context = _epoch_pairs(ids, keep, cfg, g)
    per_epoch = max(1, math.ceil(centre.numel() / cfg.batch_size))
    total = cfg.steps if cfg.steps is not None else per_epoch * cfg.epochs
    losses: list[tuple[int, float]] = []
    run_loss, run_pairs, pairs_seen, cursor = 0.0, 0, 0, 0
    t0 = time.perf_counter()
    for step in range(1, total + 1):
        if cursor >= centre.numel():  # next epoch: fresh subsample, windows and order
            centre, context = _epoch_pairs(ids, keep, cfg, g)
            cursor = 0
        c = centre[cursor : cursor + cfg.batch_size]  # (B,)
        o = context[cursor : cursor + cfg.batch_size]  # (B,)
        cursor += cfg.batch_size
        neg = torch.multinomial(noise, c.numel() * cfg.negatives, True, generator=g)
        lr = cfg.lr * max(1e-4, 1.0 - (step - 1) / total)  # linear decay (word2vec.c)
        run_loss += sgd_step_sparse(model, c, o, neg.view(-1, cfg.negatives), lr)
        run_pairs += c.numel()
        if step % log_every == 0 or step == total:
            losses.append((step, run_loss / max(1, run_pairs)))
            if callback is not None:
                callback(step, total, {"loss": losses[-1][1], "lr": lr})
            pairs_seen += run_pairs
            run_loss, run_pairs = 0.0, 0
    history = {
        "losses": losses,
        "steps": total,
        "pairs_seen": pairs_seen,
        "tokens": len(tokens),
        "vocab_size": len(words),
        "seconds": time.perf_counter() - t0,
        "config": asdict(cfg),
    }
    return WordVectors(words, model.in_embed.weight.detach().clone()), history
