"""g2c.data.prepare / dedupe / mixture: shards, determinism, resume, cleaning stages, bad input."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest

from g2c.cli import main as cli_main
from g2c.data import load_token_ids
from g2c.data.dedupe import (
    GOPHER_THRESHOLDS,
    ExactDeduplicator,
    NearDuplicateIndex,
    document_digest,
    gopher_failures,
    minhash_signature,
)
from g2c.data.mixture import MixtureScheduler, parse_mixture
from g2c.data.prepare import (
    PrepareConfig,
    iter_documents,
    load_prepared,
    load_prepared_ids,
    prepare_corpus,
    resolve_sources,
    shard_paths,
)
from g2c.pretraining import TokenStream
from g2c.tokenizer import BPETokenizer, load_tokenizer

datasketch = pytest.importorskip("datasketch", reason="near-duplicate removal needs datasketch")

_WORDS = (
    "the river ran past a quiet town where people of every trade kept small shops and "
    "gardens with apples pears and roses that bloomed in spring while children walked to "
    "school along the bank and old sailors told stories of storms ships harbours and distant "
    "islands to anyone who would listen at the inn by the bridge"
).split()


def _doc(rng: random.Random, n: int = 120) -> str:
    """A prose-like document of n words (passes the Gopher rules)."""
    words = [rng.choice(_WORDS) for _ in range(n)]
    lines = [" ".join(words[i : i + 12]).capitalize() + "." for i in range(0, n, 12)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    tok = BPETokenizer.with_course_special_tokens()
    tok.train("\n".join(_WORDS * 3), 300)
    return tok


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Folder with plain and gzipped files, an exact duplicate and a near duplicate."""
    rng = random.Random(0)
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    docs = [_doc(rng) for _ in range(12)]
    for i, d in enumerate(docs):
        (root / f"d{i:02d}.txt").write_text(d, encoding="utf-8")
    (root / "sub" / "copy.txt").write_text(docs[3], encoding="utf-8")  # exact duplicate
    near = docs[5].split(" ")
    near[10] = "lighthouse"
    (root / "sub" / "near.txt").write_text(" ".join(near), encoding="utf-8")
    (root / "sub" / "short.txt.gz").write_bytes(gzip.compress(b"Too short to keep."))
    return root


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_shards_round_trip_to_direct_encoding(corpus: Path, tok, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = PrepareConfig(inputs=[str(corpus)], shard_tokens=500)
    manifest = prepare_corpus(cfg, tok, out)
    source = resolve_sources([str(corpus)])[0]
    expected = []
    for text in iter_documents(source):
        expected += tok.encode(text) + [tok.special_to_id["<|endoftext|>"]]
    ids = np.concatenate([load_token_ids(p).numpy() for p in shard_paths(out)])
    assert ids.tolist() == expected
    assert load_prepared_ids(out).tolist() == expected
    assert manifest["dtype"] == "uint16" and manifest["tokens"]["train"] == len(expected)
    assert [s["tokens"] for s in manifest["shards"]][:-1] == [500] * (len(manifest["shards"]) - 1)
    assert load_tokenizer(out).encode("river town") == tok.encode("river town")
    stream = TokenStream(shard_paths(out)[0])  # the trainer's memory map reads a shard as is
    assert stream[:].tolist() == expected[:500]
    assert len(manifest["sources"][0]["files"]) == 15  # sorted, gz included, sha256 recorded
    assert manifest["funnel"]["documents_in"] == 15 and manifest["funnel"]["kept"] == 15


class _BigVocab:
    """A picklable tokenizer with a vocabulary above uint16: id = 70,000 + byte."""

    vocab_size = 70_300

    def encode(self, text: str) -> list[int]:
        return [70_000 + b for b in text.encode("utf-8")]


def test_large_vocab_uses_uint32(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    m = prepare_corpus(PrepareConfig(inputs=[str(tmp_path / "a.txt")]), _BigVocab(), tmp_path / "o")
    assert m["dtype"] == "uint32" and m["tokenizer"]["eot_id"] is None
    assert load_prepared_ids(tmp_path / "o").tolist() == [70_000 + b for b in b"hello"]


def _full_config(corpus: Path, workers: int) -> PrepareConfig:
    return PrepareConfig(
        inputs=[str(corpus)],
        shard_tokens=300,
        workers=workers,
        dedupe=["exact", "minhash"],
        quality="gopher",
        val_fraction=0.3,
    )


def test_output_independent_of_workers(corpus: Path, tok, tmp_path: Path) -> None:
    m1 = prepare_corpus(_full_config(corpus, 1), tok, tmp_path / "k1")
    m2 = prepare_corpus(_full_config(corpus, 2), tok, tmp_path / "k2")
    assert m1 == m2
    assert _files(tmp_path / "k1") == _files(tmp_path / "k2")
    funnel = m1["funnel"]
    assert (funnel["exact_duplicates"], funnel["near_duplicates"]) == (1, 1)
    assert funnel["quality_dropped"] == 1 and funnel["quality_reasons"] == {"word_count": 1}
    assert funnel["kept"] == 12 and m1["tokens"]["val"] > 0 and m1["tokens"]["train"] > 0


def test_resume_after_crash_equals_uninterrupted_run(corpus: Path, tok, tmp_path: Path) -> None:
    ref = prepare_corpus(_full_config(corpus, 1), tok, tmp_path / "ref")
    shards = []

    def crash(kind: str, info: dict) -> None:
        if kind == "shard":
            shards.append(info["file"])
            if len(shards) == 2:
                raise KeyboardInterrupt  # a kill after two finished shards

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(_full_config(corpus, 1), tok, out, on_event=crash)
    assert (out / "state" / "checkpoint.json").is_file() and not (out / "manifest.json").exists()
    with pytest.raises(ValueError, match="interrupted"):
        load_prepared(out)
    done = json.loads((out / "state" / "checkpoint.json").read_text())["state"]["shards"]
    events = []
    resumed = prepare_corpus(
        _full_config(corpus, 2), tok, out, on_event=lambda k, i: events.append((k, i))
    )
    assert len(done) >= 2 and done == ref["shards"][: len(done)]  # recorded shards are final
    assert ("start", {"sources": ["corpus"], "resume": True, "shards": len(done)}) in events
    resumed_files = [i["file"] for k, i in events if k == "shard"]
    assert resumed_files == [s["file"] for s in ref["shards"][len(done) :]]  # skips finished ones
    assert resumed == ref and _files(out) == _files(tmp_path / "ref")
    assert not (out / "state").exists()
    again = prepare_corpus(_full_config(corpus, 1), tok, out)  # finished: no work, same manifest
    assert again == ref


def test_exact_and_near_duplicates() -> None:
    rng = random.Random(1)
    a, b = _doc(rng, 200), _doc(rng, 200)
    assert document_digest(a) == document_digest("  " + a + "\n")
    exact = ExactDeduplicator()
    assert [exact.seen(document_digest(t)) for t in (a, b, a)] == [False, False, True]
    words = a.split(" ")
    words[50] = "lighthouse"
    near_a = " ".join(words)
    sig = minhash_signature(a, seed=7)
    assert sig.dtype == np.uint32 and sig.shape == (128,)
    assert np.array_equal(sig, minhash_signature(a, seed=7))  # fixed seed: same signature
    index = NearDuplicateIndex(0.8, seed=7)
    results = [index.check_insert(minhash_signature(t, seed=7)) for t in (a, b, near_a)]
    assert results == [False, False, True] and len(index) == 2


_GOOD = (
    "The keeper of the lighthouse walked down to the harbour every morning, and he counted "
    "the boats that had come in with the tide. Some carried fish and some carried timber "
    "from the northern forests, while others brought letters, salt, cloth and news of "
    "distant cities. He wrote each name in a small book that he kept in his coat, so that "
    "the harbour master could read it later in the day."
)


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ("word_count", "The cat sat with the dog."),
        ("mean_word_length", " ".join(["a to of be the an it"] * 10)),
        ("symbol_word_ratio", _GOOD + " #" * 12),
        ("bullet_lines", "\n".join("- " + w + " of the list" for w in _GOOD.split()[:60])),
        ("ellipsis_lines", "\n".join(s + " ..." for s in _GOOD.split(", "))),
        ("alpha_words", _GOOD + " " + " ".join(str(i) for i in range(30))),
        (
            "stop_words",
            " ".join(
                w
                for w in _GOOD.split()
                if w.lower() not in {"the", "and", "to", "of", "that", "with", "be", "have"}
            ),
        ),
        ("dup_lines", "\n".join([_GOOD] + ["Repeated line here."] * 5)),
        ("dup_paragraphs", "\n\n".join([_GOOD] + ["A short paragraph again."] * 5)),
        ("dup_line_chars", "\n".join([_GOOD, _GOOD])),
        ("dup_paragraph_chars", "\n\n".join([_GOOD, _GOOD])),
        ("top_2gram", _GOOD + " " + "the harbour " * 40),
        ("dup_5gram", _GOOD + " " + _GOOD[:200]),
        ("dup_10gram", _GOOD + " " + _GOOD[:300]),
    ],
)
def test_gopher_rules_on_hand_cases(rule: str, text: str) -> None:
    assert gopher_failures(_GOOD) == []
    failures = gopher_failures(text)
    assert rule in failures, failures
    assert gopher_failures(text, first=True) == failures[:1]


def test_gopher_thresholds_are_the_published_ones() -> None:
    t = GOPHER_THRESHOLDS
    assert (t["min_words"], t["max_words"], t["max_symbol_word_ratio"]) == (50, 100_000, 0.1)
    assert t["max_top_ngram_char_fraction"] == {2: 0.20, 3: 0.18, 4: 0.16}
    assert (
        t["max_dup_ngram_char_fraction"][5] == 0.15 and t["max_dup_ngram_char_fraction"][10] == 0.10
    )


def test_mixture_parse_and_schedule() -> None:
    assert parse_mixture("a=3, b=1") == {"a": 3.0, "b": 1.0}
    for bad in ("a=0", "a=-1", "a", "a=x", "a=1,a=2", ""):
        with pytest.raises(ValueError, match="mixture"):
            parse_mixture(bad)
    sched = MixtureScheduler({"a": 3, "b": 1})
    rng = random.Random(0)
    for _ in range(400):
        sched.record(sched.next_source(), rng.randint(5, 15))
    observed = sched.observed_fractions()
    assert abs(observed["a"] - 0.75) < 0.01 and abs(observed["b"] - 0.25) < 0.01


def test_mixture_in_prepare(tok, tmp_path: Path) -> None:
    rng = random.Random(2)
    for name, n in (("x", 40), ("y", 40)):
        (tmp_path / name).mkdir()
        for i in range(n):
            (tmp_path / name / f"{i}.txt").write_text(_doc(rng, rng.randint(60, 140)))
    cfg = PrepareConfig(
        inputs=[f"x={tmp_path / 'x'}", f"y={tmp_path / 'y'}"], mixture={"x": 1, "y": 3}
    )
    m = prepare_corpus(cfg, tok, tmp_path / "out")["mixture"]
    assert m["stopped_by"] == "y"  # y runs out first at a 3:1 share
    assert abs(m["observed_fractions"]["y"] - 0.75) < 0.02
    assert sum(m["tokens"].values()) == load_prepared(tmp_path / "out")["tokens"]["train"]


def test_bad_input_fails_before_any_write(corpus: Path, tok, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        prepare_corpus(PrepareConfig(inputs=[str(tmp_path / "missing")]), tok, out)
    with pytest.raises(ValueError, match="needs a path"):
        resolve_sources(["web="])
    with pytest.raises(ValueError, match="named"):
        resolve_sources([f"a={corpus}", f"a={corpus}"])
    with pytest.raises(ValueError, match="positive"):
        PrepareConfig(inputs=[str(corpus)], mixture={"corpus": 0})
    with pytest.raises(ValueError, match="exactly the sources"):
        prepare_corpus(PrepareConfig(inputs=[str(corpus)], mixture={"web": 1}), tok, out)
    with pytest.raises(ValueError, match="dedupe stage"):
        PrepareConfig(inputs=[str(corpus)], dedupe=["fuzzy"])
    with pytest.raises(ValueError, match="val_fraction"):
        PrepareConfig(inputs=[str(corpus)], val_fraction=1.0)
    assert not out.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds other files"):
        prepare_corpus(PrepareConfig(inputs=[str(corpus)]), tok, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    prepare_corpus(PrepareConfig(inputs=[str(corpus)]), tok, out)
    with pytest.raises(ValueError, match="another config"):
        prepare_corpus(PrepareConfig(inputs=[str(corpus)], shard_tokens=7), tok, out)
    code = cli_main(
        [
            "data",
            "prepare",
            "--input",
            str(corpus),
            "--tokenizer",
            "nope",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    assert code == 2 and "--tokenizer 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_cli_prepare_writes_manifest(corpus: Path, tok, tmp_path: Path, capsys) -> None:
    tok.save(tmp_path / "tokenizer.json")
    out = tmp_path / "cli"
    argv = [
        "data",
        "prepare",
        "--input",
        str(corpus),
        "--tokenizer",
        str(tmp_path / "tokenizer.json"),
    ]
    assert cli_main([*argv, "--out", str(out), "--dedupe", "exact", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == load_prepared(out) and printed["funnel"]["exact_duplicates"] == 1


@pytest.mark.slow
def test_python_specialist_example_smoke(capsys) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "14_python_specialist.py"
    spec = importlib.util.spec_from_file_location("example_14_python_specialist", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "val loss" in out and "samples that parse" in out
