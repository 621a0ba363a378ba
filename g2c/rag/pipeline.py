"""The RAG pipeline: retrieve, put the numbered sources in the prompt, answer with citations.

:func:`assemble_rag_prompt` numbers the retrieved chunks ``[1]``, ``[2]``, ... with their source
and line span, and asks the model to answer only from them and to cite them as ``[n]``
(Lewis et al. 2020 put retrieved passages in the generator's context; the numbered-citation
format is the one assistants use). :class:`RAGPipeline` runs a retriever and any
:class:`~g2c.inference.Backend` (g2c's engine on SmolLM2, ``g2c serve``, Ollama, an OpenAI-
compatible server): when nothing is retrieved, or the best score is below ``min_score``, it
answers that it does not know **without calling the model** — a model given no evidence
answers from its weights, which is exactly what RAG is meant to prevent.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import Any

from g2c.inference import Backend, InferenceResult
from g2c.rag.retrieval import RetrievedChunk

DEFAULT_SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources below. Cite the sources you use "
    "as [1], [2], ... right after the statement they support. If the sources do not contain "
    "the answer, say that you do not know."
)
DONT_KNOW = "I don't know: the index holds nothing relevant enough to answer this question."
_CITE = re.compile(r"\[(\d+)\]")


@dataclasses.dataclass(frozen=True)
class Citation:
    """Source ``[n]`` of a prompt: ``n`` (1-based), ``source``, ``line_start`` /
    ``line_end`` (None when unknown), ``score`` (the retriever's)."""

    n: int
    source: str
    line_start: int | None
    line_end: int | None
    score: float

    def __str__(self) -> str:
        if self.line_start is None:
            return f"[{self.n}] {self.source}"
        lines = (f"line {self.line_start}" if self.line_start == self.line_end
                 else f"lines {self.line_start}-{self.line_end}")  # fmt: skip
        return f"[{self.n}] {self.source}, {lines}"


@dataclasses.dataclass(frozen=True)
class RAGPrompt:
    """``question``, ``system`` (instructions), ``context`` (the numbered sources),
    ``text`` (system + context + question as one string, for completion backends),
    ``messages`` (the same as chat messages), ``citations`` (one per source, in order)."""

    question: str
    system: str
    context: str
    text: str
    messages: list[dict[str, str]]
    citations: list[Citation]


@dataclasses.dataclass(frozen=True)
class RAGAnswer:
    """``question``, ``answer`` (text), ``answered`` (False when the pipeline declined for
    lack of evidence: then no model call was made), ``citations`` (all sources the model was
    given), ``cited`` (the ones the answer refers to by ``[n]``, in order of first mention),
    ``retrieved`` (the hits), ``prompt`` (None when declined), ``result`` (the backend's
    :class:`~g2c.inference.InferenceResult`, None when declined)."""

    question: str
    answer: str
    answered: bool
    citations: list[Citation]
    cited: list[Citation]
    retrieved: list[RetrievedChunk]
    prompt: RAGPrompt | None = None
    result: InferenceResult | None = None


def assemble_rag_prompt(
    question: str,
    retrieved: Sequence[RetrievedChunk],
    *,
    system: str = DEFAULT_SYSTEM_PROMPT,
    max_context_chars: int = 6000,
) -> RAGPrompt:
    """The prompt for ``question`` with ``retrieved`` as numbered sources.

    Each source reads ``[n] (source, lines a-b)`` then its text; sources are added in rank
    order while the context stays within ``max_context_chars`` (the first is always kept, cut
    to fit). Empty question → ValueError; non-RetrievedChunk items → TypeError.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    if not all(isinstance(r, RetrievedChunk) for r in retrieved):
        raise TypeError("retrieved must be a list of RetrievedChunk")
    if not isinstance(max_context_chars, int) or max_context_chars < 1:
        raise ValueError(f"max_context_chars must be an integer >= 1, got {max_context_chars!r}")
    blocks, citations, used = [], [], 0
    for n, hit in enumerate(retrieved, start=1):
        c = hit.chunk
        block = f"[{n}] ({c.citation()})\n{c.text.strip()}"
        if used + len(block) > max_context_chars:
            if blocks:
                break
            block = block[:max_context_chars]
        blocks.append(block)
        used += len(block) + 2
        citations.append(Citation(n, c.source, c.metadata.get("line_start"),
                                  c.metadata.get("line_end"), hit.score))  # fmt: skip
    context = "\n\n".join(blocks)
    user = f"Sources:\n\n{context}\n\nQuestion: {question.strip()}"
    text = f"{system}\n\n{user}\n\nAnswer:"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return RAGPrompt(question, system, context, text, messages, citations)


def cited_sources(answer: str, citations: Sequence[Citation]) -> list[Citation]:
    """The citations ``answer`` refers to as ``[n]``, in order of first mention (numbers
    outside the sources are ignored)."""
    by_n = {c.n: c for c in citations}
    out: dict[int, Citation] = {}
    for m in _CITE.finditer(answer):
        n = int(m.group(1))
        if n in by_n and n not in out:
            out[n] = by_n[n]
    return list(out.values())


class RAGPipeline:
    """Retrieve, prompt, answer: ``RAGPipeline(retriever, backend).answer(question, k)``.

    ``RAGPipeline(retriever, backend, *, min_score=None, score_name=None, chat=True,
    system=DEFAULT_SYSTEM_PROMPT, max_context_chars=6000, max_new_tokens=256,
    temperature=0.0)``. ``min_score``: decline (answer :data:`DONT_KNOW`, no model call)
    when the best hit's score is below it — ``score_name`` picks a component score of
    hybrid hits ("dense" for the cosine, "bm25"), else the hit's own ``score``. With no hits
    at all it always declines. ``chat=False`` sends ``prompt.text`` to ``complete`` instead of
    the messages to ``chat``.
    """

    def __init__(self, retriever: Any, backend: Backend, *, min_score: float | None = None,
                 score_name: str | None = None, chat: bool = True,
                 system: str = DEFAULT_SYSTEM_PROMPT, max_context_chars: int = 6000,
                 max_new_tokens: int = 256, temperature: float = 0.0) -> None:  # fmt: skip
        if not callable(getattr(retriever, "retrieve", None)):
            raise TypeError(f"retriever must have retrieve(query, k), got "
                            f"{type(retriever).__name__}")  # fmt: skip
        if not isinstance(backend, Backend):
            raise TypeError(f"backend must be a g2c.inference Backend, got "
                            f"{type(backend).__name__}")  # fmt: skip
        if min_score is not None and not isinstance(min_score, (int, float)):
            raise ValueError(f"min_score must be a number or None, got {min_score!r}")
        self.retriever, self.backend = retriever, backend
        self.min_score, self.score_name, self.chat = min_score, score_name, chat
        self.system, self.max_context_chars = system, max_context_chars
        self.sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature}

    def best_score(self, retrieved: Sequence[RetrievedChunk]) -> float | None:
        """The score the threshold is compared with (None when there is none)."""
        if self.score_name is None:
            return max((r.score for r in retrieved), default=None)
        vals = [r.scores[self.score_name] for r in retrieved if self.score_name in r.scores]
        return max(vals, default=None)

    def _declined(self, question: str, retrieved: list[RetrievedChunk]) -> RAGAnswer | None:
        best = self.best_score(retrieved)
        if retrieved and (self.min_score is None or (best is not None and best >= self.min_score)):
            return None
        return RAGAnswer(question, DONT_KNOW, False, [], [], retrieved)

    def stream(self, question: str, k: int = 4) -> tuple[Iterator[str], Any]:
        """``(pieces, finish)``: iterate ``pieces`` for the answer text as it is generated,
        then call ``finish()`` for the :class:`RAGAnswer`."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        retrieved = self.retriever.retrieve(question, k)
        declined = self._declined(question, retrieved)
        if declined is not None:
            return iter([declined.answer]), lambda: declined
        prompt = assemble_rag_prompt(question, retrieved, system=self.system,
                                     max_context_chars=self.max_context_chars)  # fmt: skip
        stream = (self.backend.stream_chat(prompt.messages, **self.sampling) if self.chat
                  else self.backend.stream_complete(prompt.text, **self.sampling))  # fmt: skip
        parts: list[str] = []

        def pieces() -> Iterator[str]:
            for piece in stream:
                parts.append(piece)
                yield piece

        def finish() -> RAGAnswer:
            text = "".join(parts).strip()
            return RAGAnswer(question, text, True, prompt.citations,
                             cited_sources(text, prompt.citations), retrieved, prompt,
                             stream.result)  # fmt: skip

        return pieces(), finish

    def answer(self, question: str, k: int = 4) -> RAGAnswer:
        """Retrieve ``k`` chunks and answer ``question`` from them (or decline)."""
        pieces, finish = self.stream(question, k)
        for _ in pieces:
            pass
        return finish()
