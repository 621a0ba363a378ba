"""Perplexity and bits per byte on held-out text, as an evaluation task.

The measurement itself lives in the one evaluation home, :mod:`g2c.training.evaluation`
(``stream_loss``, ``bits_per_byte``, ``perplexity_from_loss``); this module only chooses the
text, cuts it into documents and adds the numbers up.

The text (:func:`heldout_text`): the last ``val_fraction`` = 2 % of the speedrun's corpus
(``g2c.data.load_corpus(("tinyshakespeare", "gutenberg"))`` split contiguously by
``g2c.data.split_text``) — exactly the validation split the speedrun never trains on (the end
of Whitman's *Leaves of Grass*, 142,792 characters). For other models it is simply English
prose they were not tuned on (SmolLM2's pre-training data may well contain Project Gutenberg:
held out from g2c's runs, not necessarily from a foreign model's).

Scoring one document (:func:`score_text`): ``ids = tokenizer.encode(text)`` (N tokens, N − 1
predictions: the first token has no context). Consecutive windows of T = ``context_length``
(default the model's ``max_seq_len``) are scored by ``stream_loss``; the leftover tail of
r < T predictions by a second ``stream_loss`` call over the last r + 1 ids, so every
prediction is counted exactly once. The bytes are the UTF-8 bytes of the scored tokens
(``tokenizer.decode(ids[1:])``), so numerator and denominator cover the same text:

    bits_per_byte = Σ_docs loss_nats·tokens / Σ_docs bytes / ln 2
    perplexity    = exp(Σ_docs loss_nats·tokens / Σ_docs tokens)    (per token of the model's
                                                                     own tokenizer)

Lower is better for both; only bits per byte compares across tokenizers (Gao et al. 2020, The
Pile). Documents are scored independently (no context carried over), so numbers are a little
higher than a single stream's.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

from g2c.data import DEFAULT_CORPUS, load_corpus, split_text
from g2c.eval.core import EvalResult
from g2c.training.evaluation import bits_per_byte, perplexity_from_loss, stream_loss

#: The speedrun's validation fraction: the held-out tail of its corpus.
VAL_FRACTION = 0.02
#: Target document size in characters (documents are cut at blank lines).
CHUNK_CHARS = 2000


def heldout_text(
    corpus: str | Sequence[str] = DEFAULT_CORPUS,
    val_fraction: float = VAL_FRACTION,
    path: str | os.PathLike | None = None,
) -> str:
    """The held-out tail of ``corpus``: ``split_text(load_corpus(corpus, path),
    val_fraction)[1]``. Defaults give the speedrun's own validation text. Missing data →
    FileNotFoundError from :mod:`g2c.data`; bad fraction → ValueError."""
    return split_text(load_corpus(corpus, path), val_fraction)[1]


def chunk_text(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into documents of about ``chunk_chars`` characters, at blank lines where
    possible (a paragraph longer than ``chunk_chars`` is cut at line ends, then hard). The
    documents concatenate back to ``text``; empty / whitespace-only ones are dropped.
    ``chunk_chars`` < 1 → ValueError; non-str text → TypeError."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(chunk_chars, bool) or not isinstance(chunk_chars, int) or chunk_chars < 1:
        raise ValueError(f"chunk_chars must be an integer >= 1, got {chunk_chars!r}")
    out: list[str] = []
    start = 0
    while start < len(text):
        stop = min(start + chunk_chars, len(text))
        if stop < len(text):
            window = text[start:stop]
            for sep in ("\n\n", "\n"):
                cut = window.rfind(sep)
                if cut > chunk_chars // 4:
                    stop = start + cut + len(sep)
                    break
        out.append(text[start:stop])
        start = stop
    return [c for c in out if c.strip()]


@dataclasses.dataclass(frozen=True)
class TextChunk:
    """One document of a perplexity task: ``prompt`` (the text scored — named like the other
    examples' field so records look alike) and ``metadata`` (``id``)."""

    prompt: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


def score_text(
    model: Any,
    tokenizer: Any,
    text: str,
    *,
    context_length: int | None = None,
    batch_size: int = 16,
) -> dict[str, float | int]:
    """Summed loss of ``text`` under ``model``: every next-token prediction scored once.

    ``model``: ids (B, T) long → logits (B, T, V) (a ``TransformerLM``); ``tokenizer``:
    ``encode``/``decode``. ``context_length``: the window T (default ``model.max_seq_len``).

    Returns ``{"loss_sum": Σ nats (float), "tokens": predictions scored (int), "bytes": UTF-8
    bytes of the scored tokens (int)}``; a text that encodes to fewer than 2 tokens gives
    zeros. Bad context_length → ValueError (from ``stream_loss``).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    ids = tokenizer.encode(text)
    ids = ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]
    n_pred = len(ids) - 1
    if n_pred < 1:
        return {"loss_sum": 0.0, "tokens": 0, "bytes": 0}
    T = context_length or int(getattr(model, "max_seq_len", 0) or n_pred)
    T = min(T, n_pred)
    head = stream_loss(model, ids, T, batch_size=batch_size)
    total = head["loss"] * head["tokens"]
    count = int(head["tokens"])
    rest = n_pred - count
    if rest > 0:  # the tail: the last rest + 1 ids, one window of rest predictions
        tail = stream_loss(model, ids[count:], rest, batch_size=1)
        total += tail["loss"] * tail["tokens"]
        count += int(tail["tokens"])
    n_bytes = len(tokenizer.decode(ids[1:]).encode("utf-8"))
    return {"loss_sum": float(total), "tokens": count, "bytes": n_bytes}


def aggregate(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Pool per-document sums (``loss_sum``, ``tokens``, ``bytes``) → ``loss`` (nats/token),
    ``perplexity``, ``bits_per_byte``, ``tokens``, ``bytes``. Nothing scored → ValueError."""
    loss_sum = sum(float(p["loss_sum"]) for p in parts)
    tokens = sum(int(p["tokens"]) for p in parts)
    n_bytes = sum(int(p["bytes"]) for p in parts)
    if tokens < 1 or n_bytes < 1:
        raise ValueError("no tokens were scored: the documents are empty")
    loss = loss_sum / tokens
    return {"loss": loss, "perplexity": perplexity_from_loss(loss),
            "bits_per_byte": bits_per_byte(loss, tokens, n_bytes), "tokens": float(tokens),
            "bytes": float(n_bytes)}  # fmt: skip


class PerplexityTask:
    """The ``perplexity`` task of ``g2c eval``: held-out documents scored by the model itself
    (no generation). ``examples(limit)`` = the first ``limit`` documents of
    :func:`heldout_text` cut by :func:`chunk_text`; :meth:`evaluate_model` scores one;
    :meth:`metrics` pools them (:func:`aggregate`). Gate metrics ``bits_per_byte``,
    ``perplexity`` and ``loss`` are lower-is-better (``metric = {max = X}`` in a gate file)."""

    name = "perplexity"
    kind = "perplexity"
    takes_shots = False
    metric_names: tuple[str, ...] = ("bits_per_byte", "perplexity", "loss")
    lower_is_better: tuple[str, ...] = ("bits_per_byte", "perplexity", "loss")

    def __init__(
        self,
        corpus: str | Sequence[str] = DEFAULT_CORPUS,
        val_fraction: float = VAL_FRACTION,
        chunk_chars: int = CHUNK_CHARS,
        path: str | os.PathLike | None = None,
    ) -> None:
        self.corpus = corpus
        self.val_fraction = val_fraction
        self.chunk_chars = chunk_chars
        self.path = path

    def examples(self, limit: int | None = None, seed: int = 0, shots: int = 0) -> list[TextChunk]:
        """The first ``limit`` documents (all when None); ``seed``/``shots`` are unused."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):  # fmt: skip
            raise ValueError(f"limit must be an integer >= 1 or None (all), got {limit!r}")
        docs = chunk_text(heldout_text(self.corpus, self.val_fraction, self.path), self.chunk_chars)
        return [TextChunk(d, {"id": f"heldout-{i}"}) for i, d in enumerate(docs[:limit])]

    def prompt_format(self, shots: int = 0) -> dict[str, Any]:
        """The text and how it is scored."""
        corpus = [self.corpus] if isinstance(self.corpus, str) else list(self.corpus)
        return {"text": f"held-out tail of {'+'.join(corpus)} (val_fraction "
                f"{self.val_fraction}: the speedrun's validation split)",
                "documents": f"cut at blank lines, about {self.chunk_chars} characters each",
                "scoring": "every next-token prediction once; windows of max_seq_len "
                "(g2c.training.evaluation.stream_loss); bytes of the scored tokens"}  # fmt: skip

    def evaluate_model(self, model: Any, tokenizer: Any, example: TextChunk) -> EvalResult:
        """Score one document → EvalResult(correct = whether the loss is finite, prediction =
        None, metadata = loss_sum, tokens, bytes)."""
        s = score_text(model, tokenizer, example.prompt)
        return EvalResult(math.isfinite(s["loss_sum"]), None, None, dict(s))

    def metrics(self, results: Sequence[EvalResult]) -> dict[str, float]:
        """Pooled over the documents: :func:`aggregate`."""
        return aggregate([r.metadata for r in results])


__all__ = [
    "CHUNK_CHARS",
    "PerplexityTask",
    "TextChunk",
    "VAL_FRACTION",
    "aggregate",
    "chunk_text",
    "heldout_text",
    "score_text",
]
