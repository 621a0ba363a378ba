"""g2c.eval core: matchers, calibration, log-likelihood scoring (hand computation, fast == reference),
acc vs acc_norm, the benchmark tasks on the real files, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from g2c.data import benchmarks
from g2c.eval import (
    EvalResult,
    GenerationExample,
    MultipleChoiceExample,
    choice_logprobs,
    choice_logprobs_batch,
    contains_match,
    continuation_logprob,
    encode_pair,
    exact_match,
    expected_calibration_error,
    get_task,
    normalized_match,
    numeric_match,
    reliability_curve,
    run_generation_eval,
    run_multiple_choice_eval,
    score_generation_example,
    score_multiple_choice,
)
from g2c.tokenizer import CharTokenizer
from g2c.transformer import TransformerLM

TOK = CharTokenizer(chars=list("abcdefghijklmnopqrstuvwxyz ?:.,\n"))


def _model(positional: str = "learned", seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(TOK.vocab_size, 32, 2, 4, 64, positional=positional).eval()


def _data_or_skip(loader, *args):
    try:
        return loader(*args, download=False)
    except FileNotFoundError as exc:
        pytest.skip(f"benchmark file not available: {exc}")


# -- matchers ----------------------------------------------------------------------------------


def test_matchers():
    assert exact_match("  Paris\n", ["Lyon", "Paris"]) and not exact_match("paris", "Paris")
    assert normalized_match("The Eiffel Tower!", "eiffel  tower")
    assert not normalized_match("Eiffel", "eiffel tower")
    assert contains_match("It is Paris, France.", ["paris"])
    assert not contains_match("Parisian food", "paris")
    assert numeric_match("so the total is $1,234.", "1234")
    assert numeric_match("#### -3.5", ["-3.50"]) and numeric_match("3 apples then 42", "42")
    assert not numeric_match("3 apples then 42", "3") and not numeric_match("none", "0")
    assert numeric_match("about 3.14159", "3.14", tolerance=0.01)
    with pytest.raises(ValueError, match="tolerance"):
        numeric_match("1", "1", tolerance=-1)
    with pytest.raises(TypeError, match="prediction"):
        exact_match(3, "3")


# -- calibration -------------------------------------------------------------------------------


def test_ece_and_reliability_curve_by_hand():
    conf = [0.05, 0.15, 0.95, 0.92, 0.55, 1.0]
    correct = [False, True, True, False, True, True]
    bins = reliability_curve(conf, correct, n_bins=10)
    assert [b["count"] for b in bins] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 3]
    assert bins[9]["confidence"] == pytest.approx((0.95 + 0.92 + 1.0) / 3)
    assert bins[9]["accuracy"] == pytest.approx(2 / 3) and bins[2]["accuracy"] is None
    # |0-0.05|·1 + |1-0.15|·1 + |1-0.55|·1 + |2/3-0.9567|·3, over 6
    by_hand = (0.05 + 0.85 + 0.45 + 3 * abs(2 / 3 - 2.87 / 3)) / 6
    assert expected_calibration_error(conf, correct) == pytest.approx(by_hand)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0
    assert expected_calibration_error([0.3], [False], n_bins=1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="same length"):
        expected_calibration_error([0.5], [True, False])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_curve([1.5], [True])
    with pytest.raises(ValueError, match="n_bins"):
        reliability_curve([0.5], [True], n_bins=0)


# -- scoring -----------------------------------------------------------------------------------


def test_continuation_logprob_equals_a_hand_computation():
    model = _model()
    prompt, cont = "what is it?\nanswer:", " a cat"
    ids = TOK.encode(prompt + cont)
    n = len(TOK.encode(cont))
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0], dim=-1)  # (T-1, V)
    by_hand = sum(float(logp[t - 1, ids[t]]) for t in range(len(ids) - n, len(ids)))
    ll, n_tokens = continuation_logprob(model, TOK, prompt, cont)
    assert n_tokens == n == 6 and ll == pytest.approx(by_hand, abs=1e-5)
    # lm-eval's _encode_pair: a trailing space of the context moves onto the continuation
    assert encode_pair(TOK, "answer: ", "cat") == (TOK.encode("answer:"), TOK.encode(" cat"))


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_fast_path_equals_reference(positional):
    model = _model(positional)
    examples = [
        MultipleChoiceExample("question: what is it?\nanswer:", ["a cat", "dog", "a big fish"], 1),
        MultipleChoiceExample("pick one:", ["a", "b", "c", "d"], 3),  # one-token choices
        MultipleChoiceExample("x" * 70, ["yes", "no way"], 0),  # > max_seq_len: left-truncated
    ]
    for ex in examples:
        fast, n_fast = choice_logprobs(model, TOK, ex, batched=True)
        ref, n_ref = choice_logprobs(model, TOK, ex, batched=False)
        assert n_fast == n_ref
        torch.testing.assert_close(torch.tensor(fast), torch.tensor(ref), atol=1e-4, rtol=0)
    # a model without a KV cache takes the padded full batch: same numbers
    plain = torch.nn.Module()
    plain.forward = model.forward
    plain.max_seq_len = model.max_seq_len
    fast, _ = choice_logprobs(plain, TOK, examples[0], batched=True)
    ref, _ = choice_logprobs(model, TOK, examples[0], batched=False)
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(ref), atol=1e-4, rtol=0)


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_many_questions_per_forward_equal_one_at_a_time(positional):
    """choice_logprobs_batch (tree attention, several questions per forward, groups cut by
    count and by tokens) gives each question's per-choice numbers of the reference path."""
    model = _model(positional)
    examples = [
        MultipleChoiceExample("question: what is it?\nanswer:", ["a cat", "dog", "a big fish"], 1),
        MultipleChoiceExample("pick one:", ["a", "b", "c", "d"], 3),  # one-token choices
        MultipleChoiceExample("x" * 70, ["yes", "no way"], 0),  # too long: per-question path
        MultipleChoiceExample("the sky is", [" blue and wide", " green", " made of cheese"], 0),
        MultipleChoiceExample("an answer:", [" one", " five", " twenty two"], 0),
    ]
    for per_batch, max_tokens in ((8, 2048), (2, 2048), (8, 40)):
        got = choice_logprobs_batch(model, TOK, examples, questions_per_batch=per_batch,
                                    max_tokens_per_batch=max_tokens)  # fmt: skip
        for ex, (lls, counts) in zip(examples, got):
            ref, n_ref = choice_logprobs(model, TOK, ex, batched=False)
            assert counts == n_ref
            torch.testing.assert_close(torch.tensor(lls), torch.tensor(ref), atol=1e-4, rtol=0)
    one = run_multiple_choice_eval(model, TOK, examples, questions_per_batch=1)
    many = run_multiple_choice_eval(model, TOK, examples, questions_per_batch=4)
    assert [r.metadata["pred"] for r in one.results] == [r.metadata["pred"] for r in many.results]
    with pytest.raises(ValueError, match="questions_per_batch"):
        run_multiple_choice_eval(model, TOK, examples, questions_per_batch=0)


class _FixedScores(torch.nn.Module):
    """A 'model' whose next-token log-probabilities do not depend on the context: each token id
    gets a fixed log-probability, so a choice's score is the sum over its tokens."""

    def __init__(self, logp: torch.Tensor):
        super().__init__()
        self.logp = logp

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logp.expand(*idx.shape, -1)


def test_acc_and_acc_norm_differ_on_a_constructed_case():
    logp = torch.full((TOK.vocab_size,), -2.0)
    logp[TOK.encode(" ")[0]] = -0.1
    logp = torch.log_softmax(logp, dim=0)
    model = _FixedScores(logp)
    # " ab": 3 tokens; " abcdefgh": 9 tokens. Summed: the short one wins (acc);
    # per character the long one wins (acc_norm): the space is cheap, letters cost alike.
    ex = MultipleChoiceExample("q:", ["ab", "abcdefgh"], 1)
    lls, counts = choice_logprobs(model, TOK, ex)
    s, c = float(logp[TOK.encode(" ")[0]]), float(logp[TOK.encode("a")[0]])
    assert lls == pytest.approx([s + 2 * c, s + 8 * c]) and counts == [3, 9]
    r = score_multiple_choice(model, TOK, ex)
    assert r.prediction == 0 and not r.correct and r.metadata["acc_norm"]
    assert score_multiple_choice(model, TOK, ex, length_normalize=True).correct
    probs = torch.softmax(torch.tensor(lls), 0)
    assert r.confidence == pytest.approx(float(probs[0]))
    with pytest.raises(ValueError, match="length_normalize"):
        score_multiple_choice(model, TOK, ex, length_normalize="tokens")


def test_run_multiple_choice_eval_resumes_and_reports():
    model = _model()
    exs = [MultipleChoiceExample("q: a or b?", ["a", "b"], i % 2) for i in range(4)]
    exs[3] = MultipleChoiceExample("q: pick", ["a", "b", "c"], 0, metadata={"labels": [1, 1, 0]})
    seen = []
    report = run_multiple_choice_eval(model, TOK, exs, on_result=lambda i, r: seen.append(i))
    assert seen == [0, 1, 2, 3] and report.n == 4
    assert report.accuracy == report.metrics["acc"] == sum(r.correct for r in report.results) / 4
    assert "mc2" not in report.metrics  # only one example carries labels
    assert report.results[3].metadata["mc2"] == pytest.approx(
        sum(report.results[3].metadata["probs"][:2])
    )
    fake = EvalResult(True, 0, 0.5, {"acc": True, "acc_norm": True, "acc_bytes": True})
    again = run_multiple_choice_eval(
        model, TOK, exs, completed={0: fake}, on_result=lambda i, r: seen.append(i)
    )
    assert seen[4:] == [1, 2, 3] and again.results[0] is fake
    with pytest.raises(ValueError, match="empty"):
        run_multiple_choice_eval(model, TOK, [])


def test_a_choice_longer_than_the_context_is_skipped_not_fatal():
    model = _model()  # max_seq_len 64
    exs = [MultipleChoiceExample("q: a or b?", ["a", "b"], 0),
           MultipleChoiceExample("q: long?", ["a" * 80, "b"], 1)]  # fmt: skip
    report = run_multiple_choice_eval(model, TOK, exs)
    skipped = report.results[1]
    assert not skipped.correct and skipped.prediction is None and skipped.confidence is None
    assert "exceeds max_seq_len 64" in skipped.metadata["skipped"]
    assert report.metrics["skipped"] == 1 and report.n == 2
    assert report.metrics["acc"] == float(report.results[0].correct) / 2  # counted as wrong
    assert report.ece is not None  # over the scored question


def test_generation_scoring_with_a_callable_and_with_a_model():
    answers = {"2+2=": "the answer is 4.", "3+3=": "7"}
    exs = [GenerationExample("2+2=", "4"), GenerationExample("3+3=", ("6",))]
    report = run_generation_eval(answers.get, exs, matcher="numeric_match")
    assert [r.correct for r in report.results] == [True, False] and report.accuracy == 0.5
    assert report.ece is None and report.results[0].prediction == "the answer is 4."
    model = _model()
    r = score_generation_example(
        model, GenerationExample("abc", "zzz"), tokenizer=TOK, max_new_tokens=5
    )
    assert r.metadata["stop"] == "max_new_tokens" and len(r.metadata["completion"]) == 5
    with pytest.raises(ValueError, match="unknown matcher"):
        score_generation_example(answers.get, exs[0], matcher="fuzzy")


def test_bad_examples():
    with pytest.raises(ValueError, match="answer_idx"):
        MultipleChoiceExample("q", ["a", "b"], 2)
    with pytest.raises(ValueError, match="at least 2"):
        MultipleChoiceExample("q", ["a"], 0)
    with pytest.raises(ValueError, match="prompt"):
        MultipleChoiceExample("", ["a", "b"], 0)
    with pytest.raises(TypeError, match="tokenizer"):
        continuation_logprob(_model(), None, "q", " a")


# -- tasks on the real files -----------------------------------------------------------------


def test_task_prompts_follow_lm_eval():
    _data_or_skip(benchmarks.load_arc, "easy", "validation")
    ex = get_task("arc_easy").examples(2)
    assert (
        len(ex) == 2
        and ex[0].prompt.startswith("Question: ")
        and ex[0].prompt.endswith("\nAnswer:")
    )
    assert ex[0].metadata["id"] == "Mercury_417466" and ex[0].answer_idx == 0
    obqa = get_task("openbookqa").examples(1)[0]
    assert obqa.prompt.startswith("A person wants to start saving money") and obqa.answer_idx == 1
    mmlu = get_task("mmlu").examples(1)
    assert len(mmlu) == 57 and mmlu[0].choices == ("A", "B", "C", "D")
    assert mmlu[0].prompt.startswith(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    )
    shot = get_task("mmlu_anatomy").examples(1, shots=2)[0].prompt
    assert shot.count("\nAnswer:") == 3 and "Answer: D\n\nWhich of these branches" in shot
    s1 = get_task("arc_challenge").examples(3, seed=1, shots=3)
    assert s1 == get_task("arc_challenge").examples(3, seed=1, shots=3)
    assert s1 != get_task("arc_challenge").examples(3, seed=2, shots=3)
    hs = get_task("hellaswag").examples(1)[0]
    assert (
        hs.prompt == "Roof shingle removal: A man is sitting on a roof. he" and hs.answer_idx == 3
    )
    assert get_task("piqa").examples(1)[0].prompt.startswith("Question: How do I ready a guinea")
    mc2 = get_task("truthfulqa_mc2").examples(1)[0]
    assert mc2.prompt.endswith("\n\nQ: What happens to you if you eat watermelon seeds?\nA:")
    assert sum(mc2.metadata["labels"]) == 5 and len(mc2.choices) == 12


def test_task_errors():
    with pytest.raises(ValueError, match="unknown task 'nope'.*openbookqa"):
        get_task("nope")
    _data_or_skip(benchmarks.load_mmlu, "anatomy", "dev")
    with pytest.raises(ValueError, match="--shots 6.*maximum is --shots 5"):
        get_task("mmlu_anatomy").examples(1, shots=6)
    with pytest.raises(ValueError, match="--shots 1.*maximum is --shots 0"):
        get_task("hellaswag").examples(1, shots=1)


def test_malformed_data_files_name_file_and_line(tmp_path):
    d = tmp_path / "arc"
    d.mkdir()
    good = {"id": "x", "question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}}
    lines = [json.dumps({**good, "answerKey": "A"}), "{not json", ""]
    (d / "ARC-Easy-test.jsonl").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"ARC-Easy-test.jsonl: line 2: not valid JSON"):
        benchmarks.load_arc("easy", "test", path=d)
    (d / "ARC-Easy-test.jsonl").write_text(json.dumps({**good, "answerKey": "C"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: answerKey 'C'"):
        benchmarks.load_arc("easy", "test", path=d)
    (d / "ARC-Easy-test.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no records"):
        benchmarks.load_arc("easy", "test", path=d)
    m = tmp_path / "mmlu" / "test"
    m.mkdir(parents=True)
    (m / "anatomy_test.csv").write_text(
        "question,choice0,choice1,choice2,choice3,answer\nq,a,b,c,d,1\nq,a,b,c,d,E\n"
    )
    with pytest.raises(ValueError, match=r"anatomy_test.csv: line 3: answer must be 0-3"):
        benchmarks.load_mmlu("anatomy", "test", path=tmp_path / "mmlu")
    assert math.isclose(len(benchmarks.MMLU_SUBJECTS), 57)
