"""Retrieval test collections as ``(corpus, queries, qrels)``, the layout BEIR uses.

- ``corpus``: doc id → ``{"title", "text"}``; ``queries``: query id → text; ``qrels``: query id
  → {doc id: relevance grade ≥ 1} (only queries with at least one relevant document).
- :func:`load_beir` ("scifact"): ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``
  (header line, tab-separated ``query-id corpus-id score``, CRLF as BEIR ships it).
- :func:`load_openbook_retrieval`: OpenBookQA's open book (1,326 science facts, one per line of
  ``openbook.txt``, quotes stripped) as the corpus and each question of ``test_complete.jsonl``
  / ``dev_complete.jsonl`` as a query whose relevant document is its supporting fact
  ``fact1`` (every line equal to it; SOURCES.md checks that all 1,000 facts occur).

Malformed files → ValueError naming the file and line; missing files → FileNotFoundError
saying where to put them (``g2c.data.resolution``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from g2c.data.resolution import dataset_file

Corpus = dict[str, dict[str, str]]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {n}: expected a JSON object")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: the file holds no records")
    return rows


def _qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with open(path, encoding="utf-8", newline="") as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip("\r\n").split("\t")
            if n == 1 and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}: line {n}: expected 3 tab-separated fields")
            try:
                grade = int(parts[2])
            except ValueError:
                raise ValueError(
                    f"{path}: line {n}: score {parts[2]!r} is not an integer"
                ) from None
            if grade > 0:
                qrels.setdefault(parts[0], {})[parts[1]] = grade
    if not qrels:
        raise ValueError(f"{path}: no relevance judgements")
    return qrels


def load_beir(
    name: str = "scifact",
    split: str = "test",
    *,
    path: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[Corpus, Queries, Qrels]:
    """A BEIR-format collection: ``(corpus, queries, qrels)``; ``queries`` holds only the
    queries judged in ``split`` ("test" or "train"). SciFact test: 5,183 docs, 300 queries."""
    if name != "scifact":
        raise ValueError(f"name must be 'scifact' (the BEIR set in g2c.data), got {name!r}")
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    corpus_file = dataset_file(name, "corpus.jsonl", path=path, download=download)
    query_file = dataset_file(name, "queries.jsonl", path=path, download=download)
    qrels = _qrels(dataset_file(name, f"qrels/{split}.tsv", path=path, download=download))
    corpus = {}
    for row in _jsonl(corpus_file):
        if "_id" not in row or "text" not in row:
            raise ValueError(f"{corpus_file}: a record lacks _id or text: {str(row)[:80]}")
        corpus[str(row["_id"])] = {"title": row.get("title") or "", "text": row["text"]}
    all_queries = {str(r["_id"]): r["text"] for r in _jsonl(query_file)}
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        raise ValueError(f"{query_file}: qrels name queries that are absent: {missing[:5]}")
    return corpus, {q: all_queries[q] for q in qrels}, qrels


def load_openbook_retrieval(
    split: str = "test",
    *,
    query: str = "question+answer",
    path: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[Corpus, Queries, Qrels]:
    """OpenBookQA fact retrieval: corpus = the open book's facts (ids ``fact-0001``..),
    queries = the ``split`` questions ("test" or "validation", 500 each), the relevant
    document = the question's ``fact1``.

    ``query``: "question" (the stem only — the fact rarely shares its words) or
    "question+answer" (stem and the correct choice: does the retriever find the fact that
    justifies the answer?).
    """
    files = {"test": "test_complete.jsonl", "validation": "dev_complete.jsonl"}
    if split not in files:
        raise ValueError(f"split must be one of {', '.join(files)}, got {split!r}")
    if query not in ("question", "question+answer"):
        raise ValueError(f"query must be 'question' or 'question+answer', got {query!r}")
    book = dataset_file("openbookqa-additional", "openbook.txt", path=path, download=download)
    qfile = dataset_file("openbookqa-additional", files[split], path=path, download=download)
    corpus: Corpus = {}
    by_text: dict[str, list[str]] = {}
    for n, line in enumerate(book.read_text(encoding="utf-8").splitlines(), start=1):
        fact = line.strip().strip('"').strip()
        if fact:
            doc_id = f"fact-{n:04d}"
            corpus[doc_id] = {"title": "", "text": fact}
            by_text.setdefault(fact.lower(), []).append(doc_id)
    queries: Queries = {}
    qrels: Qrels = {}
    for row in _jsonl(qfile):
        try:
            stem, choices, key = (
                row["question"]["stem"],
                row["question"]["choices"],
                row["answerKey"],
            )
            fact = row["fact1"]
        except (KeyError, TypeError):
            raise ValueError(f"{qfile}: record {row.get('id')!r} lacks question/fact1") from None
        relevant = by_text.get(fact.strip().strip('"').strip().lower())
        if not relevant:
            raise ValueError(f"{qfile}: fact1 of {row.get('id')!r} is not in {book}")
        answer = next((c["text"] for c in choices if c.get("label") == key), "")
        queries[row["id"]] = stem if query == "question" else f"{stem} {answer}"
        qrels[row["id"]] = dict.fromkeys(relevant, 1)
    return corpus, queries, qrels
