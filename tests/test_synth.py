"""g2c.synth: prompts, numbered-list parsing, pair validation, n-gram de-duplication, the
synthesis loop's funnel and round limit (a scripted teacher: canned replies, so the funnel is
exact), chat-JSONL storage, the teacher loader, and ``g2c synth`` end to end."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from g2c.cli import main
from g2c.inference import Backend, BackendInfo, OpenAIBackend, OpenAIError, TextStream
from g2c.synth import (
    FUNNEL_KEYS,
    build_instruction_prompt,
    build_response_prompt,
    dedupe_pairs,
    load_teacher,
    ngram_overlap,
    parse_numbered_list,
    read_pairs_jsonl,
    served_model,
    synthesize_dataset,
    validate_pair,
    write_pairs_jsonl,
)

SEEDS = [
    "Give three tips for staying healthy during the winter months.",
    "Translate the sentence 'good morning' into French.",
    "Write a haiku about the ocean at night.",
]


class ScriptedTeacher(Backend):
    """A teacher with canned replies: instruction prompts get ``lists`` in turn (the last one
    repeats), response prompts get ``answers[instruction]`` (default: a fixed sentence).
    Records every prompt it was sent."""

    def __init__(self, lists: list[str], answers: dict[str, str] | None = None) -> None:
        self.lists, self.answers = lists, answers or {}
        self.prompts: list[str] = []
        self.rounds = 0

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("scripted", "scripted-teacher")

    def _reply(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if prompt.startswith("Here are some example tasks"):
            reply = self.lists[min(self.rounds, len(self.lists) - 1)]
            self.rounds += 1
            return reply
        instruction = prompt.split("\n\n", 1)[1]
        return self.answers.get(instruction, "Here is a careful, complete answer to that.")

    def _stream(self, prompt: str, text: str) -> TextStream:
        pieces: Iterator[str] = iter([text])
        return TextStream(pieces, lambda t, lat, ttft: self._result(prompt, t, 1, 1, lat))

    def stream_complete(self, prompt, **sampling) -> TextStream:
        return self._stream(prompt, self._reply(prompt))

    def stream_chat(self, messages, **sampling) -> TextStream:
        return self._stream(json.dumps(messages), self._reply(messages[-1]["content"]))


# -- prompts and parsing ------------------------------------------------------------------------
def test_instruction_prompt_lists_the_seeds_by_first_paragraph_and_asks_for_count():
    seeds = [
        SEEDS[0],
        {"user": "Sort these numbers.\n\n3, 1, 2", "assistant": "1, 2, 3"},
        [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Red"}],
    ]
    p = build_instruction_prompt(seeds, count=5)
    assert f"1. {SEEDS[0]}\n2. Sort these numbers.\n3. Name a colour.\n" in p
    assert "3, 1, 2" not in p and "Write 5 new tasks" in p
    assert parse_numbered_list(p)[:3] == [SEEDS[0], "Sort these numbers.", "Name a colour."]
    with pytest.raises(ValueError, match="count"):
        build_instruction_prompt(SEEDS, count=0)
    with pytest.raises(ValueError, match="seeds"):
        build_instruction_prompt([])
    with pytest.raises(TypeError, match=r"seeds\[1\]"):
        build_instruction_prompt([SEEDS[0], 42])
    r = build_response_prompt("  Name a colour. ")
    assert r.endswith("\n\nName a colour.")
    with pytest.raises(ValueError, match="instruction"):
        build_response_prompt("  ")


def test_parse_numbered_list_formats_continuations_and_chatter():
    text = (
        "Sure! Here are some tasks:\n"
        "1. Explain photosynthesis\n   to a child.\n"
        "2) **List three prime numbers.**\n"
        '3: "Write a limerick about a cat."\n'
        "Task 4. Convert 5 km to miles.\n"
        "5.\n"
        "6. 2.\n"
        "7. 8. Name a river. 3.5 km long?\n"
        "\n"
        "I hope these help! 6 of them were hard.\n"
    )
    assert parse_numbered_list(text) == [
        "Explain photosynthesis to a child.",
        "List three prime numbers.",
        "Write a limerick about a cat.",
        "Convert 5 km to miles.",
        "Name a river. 3.5 km long?",
    ]
    assert parse_numbered_list("no list here") == []
    with pytest.raises(TypeError):
        parse_numbered_list(None)


# -- validation ---------------------------------------------------------------------------------
def test_validate_pair_lists_each_problem():
    good = {
        "user": "Give two reasons to learn a second language.",
        "assistant": "It helps you travel and it trains your memory.",
    }
    assert validate_pair(good) == []
    assert validate_pair({"user": good["user"]}) == ["assistant is missing"]
    assert validate_pair({"user": 3, "assistant": "x"}) == ["user is not a string (int)"]
    assert validate_pair({**good, "assistant": "  "}) == ["assistant is empty"]
    assert "user is empty" in validate_pair({**good, "user": ""})
    assert validate_pair({**good, "user": "Hi."}) == ["user has fewer than 3 words"]
    assert validate_pair(good, max_chars=20) == [
        "user is longer than 20 characters (44)",
        "assistant is longer than 20 characters (46)",
    ]
    assert validate_pair({**good, "assistant": good["user"].upper()}) == [
        "assistant repeats the user"
    ]
    assert validate_pair(
        {"user": "Creating lyrics. Output 7 for not.", "assistant": "Creating lyrics."}
    ) == ["assistant repeats the user"]
    label = {"user": "Is this review positive or negative? 'Great film.'", "assistant": "Positive"}
    assert validate_pair(label) == []
    loop = "I like it. " * 20
    assert validate_pair({**good, "assistant": loop}) == ["assistant loops"]
    lines = "\n".join(["The answer is the same line."] * 3)
    assert validate_pair({**good, "assistant": lines}) == ["assistant loops"]
    assert validate_pair({"user": "Draw a picture of a cat please.", "assistant": "ok"}) == [
        "user asks for something a text model cannot do ('picture')"
    ]
    assert validate_pair({**good, "assistant": "Sure<|im_end|>"}) == [
        "assistant contains chat-template tokens"
    ]
    assert validate_pair({**good, "user": "- list three birds now"}) == [
        "user starts with punctuation"
    ]
    with pytest.raises(TypeError, match="pair"):
        validate_pair(["user", "assistant"])
    with pytest.raises(ValueError, match="max_chars"):
        validate_pair(good, max_chars=0)


# -- n-gram overlap and de-duplication ----------------------------------------------------------
def test_ngram_overlap_is_symmetric_case_insensitive_jaccard():
    a, b = "The cat sat on the mat", "the CAT sat on a mat!"
    assert ngram_overlap(a, a) == 1.0 and ngram_overlap("", "") == 1.0
    assert ngram_overlap(a, a.upper() + "  ") == 1.0
    # 3-grams: a = {the cat sat, cat sat on, sat on the, on the mat},
    #          b = {the cat sat, cat sat on, sat on a, on a mat} → 2 shared of 6
    assert ngram_overlap(a, b) == pytest.approx(2 / 6) == ngram_overlap(b, a)
    assert ngram_overlap(a, b, n=1) == pytest.approx(5 / 6)  # {the cat sat on mat a}
    assert ngram_overlap(a, "nothing in common here") == 0.0
    assert ngram_overlap("hi there", "hi there") == 1.0  # shorter than n: one gram
    assert ngram_overlap("hi there", "hi") == 0.0
    with pytest.raises(ValueError, match="n must"):
        ngram_overlap(a, b, n=0)
    with pytest.raises(TypeError):
        ngram_overlap(a, None)


def test_dedupe_against_seeds_and_each_other_indexed_equals_reference():
    pairs = [
        {"user": "Give three tips for staying healthy during the winter.", "assistant": "a"},
        {"user": "Write a short poem about the sea.", "assistant": "b"},
        {"user": "write a short poem about the sea!", "assistant": "c"},  # dup of previous
        {"user": "Explain how a rainbow forms.", "assistant": "d"},
    ]
    kept = dedupe_pairs(pairs, 0.7, against=SEEDS)
    assert [p["assistant"] for p in kept] == ["b", "d"]  # first is near a seed (7/8 3-grams)
    assert [p["assistant"] for p in dedupe_pairs(pairs, 0.7)] == ["a", "b", "d"]
    assert [p["assistant"] for p in dedupe_pairs(pairs, 1.0)] == ["a", "b", "d"]
    rng = random.Random(0)
    vocab = "red blue green cat dog sea sky run jump write poem tell me a the".split()
    many = [
        {"user": " ".join(rng.choices(vocab, k=rng.randint(2, 8))), "assistant": "x"}
        for _ in range(120)
    ]
    for t in (0.3, 0.5, 0.8):
        assert dedupe_pairs(many, t, against=SEEDS) == dedupe_pairs(
            many, t, against=SEEDS, indexed=False
        )
    with pytest.raises(ValueError, match="threshold"):
        dedupe_pairs(pairs, 0)
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        dedupe_pairs([7], 0.5)


# -- the loop -----------------------------------------------------------------------------------
ROUND_1 = (
    "1. Give three tips for staying healthy during the winter months please.\n"  # dup of seed
    "2. Explain how a rainbow forms.\n"
    "3. Draw a map of your town.\n"  # bad: undoable
    "4. Explain how a rainbow forms in the sky.\n"  # near-duplicate of item 2 (3/6)
    "5. List three animals that live in the desert.\n"  # bad: the answer loops
)
ROUND_2 = "1. Name two planets with rings.\n2. Summarise the water cycle in one sentence.\n"


def test_synthesize_dataset_funnel_arithmetic_and_contents():
    answers = {"List three animals that live in the desert.": "camel " * 40}
    teacher = ScriptedTeacher([ROUND_1, ROUND_2], answers)
    events = []
    pairs, funnel = synthesize_dataset(
        teacher,
        SEEDS,
        target=3,
        batch_count=5,
        threshold=0.5,
        seed=1,
        on_event=lambda k, i: events.append((k, i)),
    )
    assert [p["user"] for p in pairs] == [
        "Explain how a rainbow forms.",
        "Name two planets with rings.",
        "Summarise the water cycle in one sentence.",
    ]
    assert funnel == {
        "proposed": 7,
        "accepted": 3,
        "duplicate": 2,
        "bad_pair": 2,
        "surplus": 0,
        "rounds": 2,
        "teacher_calls": 2 + 4,
    }
    assert set(FUNNEL_KEYS) <= set(funnel)
    assert [i["status"] for k, i in events if k == "pair"] == [
        "duplicate",
        "accepted",
        "bad_pair",
        "duplicate",
        "bad_pair",
        "accepted",
        "accepted",
    ]
    assert "Write 5 new tasks" in teacher.prompts[0]
    # the second round's prompt shows an accepted synthetic task next to the seeds
    assert "Explain how a rainbow forms." in teacher.prompts[-3]
    # target reached mid-round: the rest is surplus, and the arithmetic still closes
    pairs, funnel = synthesize_dataset(
        ScriptedTeacher([ROUND_2 * 1]), SEEDS, target=1, batch_count=2, threshold=0.5
    )
    assert len(pairs) == 1 and funnel["surplus"] == 1
    assert funnel["proposed"] == sum(
        funnel[k] for k in ("accepted", "duplicate", "bad_pair", "surplus")
    )


def test_synthesize_dataset_stops_at_max_rounds_and_checks_arguments():
    teacher = ScriptedTeacher(
        [
            "1. Give three tips for staying healthy during the winter months.\n",
            "Sorry, I cannot do that.",
        ]
    )
    pairs, funnel = synthesize_dataset(
        teacher, SEEDS, target=5, batch_count=3, threshold=0.7, max_rounds=4
    )
    assert pairs == [] and funnel["rounds"] == 4 and teacher.rounds == 4
    assert funnel["proposed"] == 1 == funnel["duplicate"] and funnel["teacher_calls"] == 4
    for kwargs, match in [
        ({"target": 0}, "target"),
        ({"batch_count": -1}, "batch_count"),
        ({"threshold": 1.5}, "threshold"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"max_chars": 0}, "max_chars"),
    ]:
        args = {"target": 2, "batch_count": 2, "threshold": 0.7, **kwargs}
        with pytest.raises(ValueError, match=match):
            synthesize_dataset(teacher, SEEDS, **args)
    with pytest.raises(TypeError, match="Backend"):
        synthesize_dataset(object(), SEEDS, 1, 1, 0.7)
    with pytest.raises(ValueError, match="seeds"):
        synthesize_dataset(teacher, [], 1, 1, 0.7)
    assert teacher.rounds == 4  # no call was made for bad arguments


# -- storage and the teacher loader -------------------------------------------------------------
def test_jsonl_round_trip_and_bad_lines(tmp_path):
    pairs = [{"user": "Name a colour.", "assistant": "Blue — like the sky."}]
    path = write_pairs_jsonl(tmp_path / "d.jsonl", pairs, teacher="t")
    row = json.loads(path.read_text(encoding="utf-8"))
    assert row["teacher"] == "t" and row["messages"][1]["content"] == "Blue — like the sky."
    assert read_pairs_jsonl(path) == [
        [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue — like the sky."},
        ]
    ]
    (tmp_path / "bad.jsonl").write_text('{"user": "a", "assistant": "b"}\n{"oops": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_pairs_jsonl(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError):
        read_pairs_jsonl(tmp_path / "none.jsonl")


def test_load_teacher_picks_the_backend_from_the_spec(tmp_path):
    t = load_teacher("http://127.0.0.1:8000", model_id="m")
    assert t.info.name == "openai" and t.base_url == "http://127.0.0.1:8000/v1"
    t = load_teacher("http://127.0.0.1:11434", model_id="llama3")
    assert t.info.name == "ollama" and t.info.model_id == "llama3"
    with pytest.raises(ValueError, match="model_id"):
        load_teacher("http://127.0.0.1:11434")
    with pytest.raises(ValueError, match="api"):
        load_teacher("http://x", api="grpc")
    with pytest.raises(FileNotFoundError):
        load_teacher(str(tmp_path / "missing"))


def test_served_model_reads_the_servers_model_list():
    httpx = pytest.importorskip("httpx")
    listing = {"data": [{"id": "tiny-run", "object": "model"}]}

    def answer(request):
        assert request.url.path == "/v1/models"
        return httpx.Response(200, json=listing)

    backend = OpenAIBackend("unknown", "http://127.0.0.1:8000/v1")
    backend.client = httpx.Client(transport=httpx.MockTransport(answer))
    assert served_model(backend) == "tiny-run"
    listing["data"] = []
    with pytest.raises(OpenAIError, match="lists no model"):
        served_model(backend)


def test_cli_synth_rejects_bad_input_before_loading(tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["synth", "--teacher", "smollm2", "--target", "0", "--out", str(out)]) == 2
    assert "--target" in capsys.readouterr().err
    assert (
        main(["synth", "--teacher", str(tmp_path / "nope"), "--target", "2", "--out", str(out)])
        == 2
    )
    assert "nope" in capsys.readouterr().err and not out.exists()


def test_cli_synth_unreachable_teacher_is_a_message_and_keeps_the_files(tmp_path, capsys):
    seeds = write_pairs_jsonl(
        tmp_path / "seeds.jsonl", [{"user": s, "assistant": "ok"} for s in SEEDS]
    )
    out = tmp_path / "s.jsonl"
    args = [
        "synth",
        "--teacher",
        "http://127.0.0.1:9/v1",
        "--target",
        "2",
        "--out",
        str(out),
        "--seeds",
        str(seeds),
    ]
    assert main(args) == 1  # no model name: the server's list is asked for, and fails
    assert "cannot list the models" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--teacher-model", "m"]) == 1  # the first call fails: files kept
    assert "cannot reach" in capsys.readouterr().err
    funnel = json.loads((tmp_path / "s.funnel.json").read_text())
    assert out.read_text() == "" and funnel["teacher"] == "m"
