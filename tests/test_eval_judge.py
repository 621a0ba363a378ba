"""g2c.eval.judge: verdict parsing, the position swap (win only when both orders agree), the
win-rate arithmetic and position-bias rate, the AlpacaEval task and judge agreement — all with
scripted judges (deterministic callables standing in for a model; the judge is not what is
tested here, the protocol around it is)."""

from __future__ import annotations

import math

import pytest

from g2c.eval.generation import Generation
from g2c.eval.judge import (
    JUDGE_PROMPT,
    AlpacaEvalTask,
    PairJudgement,
    annotation_label,
    judge_agreement,
    judge_pair,
    load_alpaca_eval,
    pair_outcome,
    parse_verdict,
    win_rate_summary,
)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [("[[A]]", "A"), ("After careful thought: [[B]]", "B"), ("[[ A ]]", "A"),
     ("[[A]] ... yes, [[A]]", "A"), ("[[A]] or [[B]]", None), ("A", None), ("[A]", None),
     ("[[a]]", None), ("", None), ("[[C]]", None)],
)  # fmt: skip
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def _answers(prompt):
    """(output A, output B) of a judge prompt built from JUDGE_PROMPT."""
    a = prompt.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
    b = prompt.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
    return a, b


def longer(prompt, *, max_new_tokens, stop=()):
    """Prefers the longer answer wherever it stands: a consistent judge."""
    a, b = _answers(prompt)
    return "[[A]]" if len(a) >= len(b) else "[[B]]"


def always_a(prompt, *, max_new_tokens, stop=()):
    return Generation("[[A]]", "stop", 4)


def garbage(prompt, *, max_new_tokens, stop=()):
    return "Both are fine."


def test_swap_logic():
    assert pair_outcome("A", "B") == "win" and pair_outcome("B", "A") == "loss"
    assert pair_outcome("A", "A") == "tie" and pair_outcome("B", "B") == "tie"
    assert pair_outcome(None, "B") == "invalid" and pair_outcome("A", None) == "invalid"
    j = judge_pair(longer, "Say hi.", "Hello there, friend!", "Hi.")
    assert (j.outcome, j.verdicts) == ("win", ("A", "B"))
    assert judge_pair(longer, "Say hi.", "Hi.", "Hello there, friend!").outcome == "loss"
    biased = judge_pair(always_a, "Say hi.", "Hi.", "Hello there, friend!")
    assert (biased.outcome, biased.score) == ("tie", 0.5)
    bad = judge_pair(garbage, "Say hi.", "Hi.", "Hello.")
    assert bad.outcome == "invalid" and bad.answers == ("Both are fine.", "Both are fine.")


def test_judge_sees_both_orders_of_the_prompt():
    seen = []

    def spy(prompt, *, max_new_tokens, stop=()):
        seen.append(_answers(prompt))
        return "[[A]]"

    judge_pair(spy, "Q?", "model text", "reference text", max_new_tokens=5)
    assert seen == [("model text", "reference text"), ("reference text", "model text")]
    assert "{instruction}" in JUDGE_PROMPT and "[[A]]" in JUDGE_PROMPT


def test_win_rate_arithmetic():
    js = [PairJudgement("win", ("A", "B"), ("", "")), PairJudgement("win", ("A", "B"), ("", "")),
          PairJudgement("loss", ("B", "A"), ("", "")), PairJudgement("tie", ("A", "A"), ("", "")),
          PairJudgement("invalid", ("A", None), ("", ""))]  # fmt: skip
    s = win_rate_summary(js)
    assert s["win_rate"] == pytest.approx((2 + 0.5 * 2) / 5)
    assert (s["wins"], s["losses"], s["ties"], s["invalid"], s["n"]) == (2, 1, 1, 1, 5)
    assert s["invalid_rate"] == pytest.approx(1 / 10)
    assert s["position_bias_rate"] == pytest.approx(1 / 4)  # A, A among 4 fully valid pairs
    assert s["first_position_rate"] == pytest.approx(6 / 9)  # A in 6 of 9 valid verdicts
    only_bad = win_rate_summary([PairJudgement("invalid", (None, None), ("", ""))])
    assert only_bad["win_rate"] == 0.5 and math.isnan(only_bad["position_bias_rate"])
    with pytest.raises(ValueError, match="judgements is empty"):
        win_rate_summary([])


def test_annotation_labels_and_agreement_on_hand_annotations():
    assert [annotation_label(p) for p in (1.0, 1.49, 1.5, 1.51, 2.0, None)] == [1, 1, None, 2, 2,
                                                                                 None]  # fmt: skip
    ann = [{"instruction": "q", "output_1": "long answer here", "output_2": "short",
            "preference": 1.0},
           {"instruction": "q", "output_1": "short", "output_2": "long answer here",
            "preference": 2.0},
           {"instruction": "q", "output_1": "long answer here", "output_2": "short",
            "preference": 1.9},
           {"instruction": "q", "output_1": "x", "output_2": "y", "preference": 1.5}]  # fmt: skip
    r = judge_agreement(longer, ann)
    assert r["n"] == 3 and r["agreement"] == pytest.approx(2 / 3) and r["decisive_rate"] == 1.0
    assert [x["label"] for x in r["records"]] == [1, 2, 2]
    assert judge_agreement(always_a, ann)["agreement"] == 0.0  # ties never agree
    assert judge_agreement(longer, ann, limit=1)["n"] == 1
    with pytest.raises(ValueError, match="limit"):
        judge_agreement(longer, ann, limit=0)


def test_judge_agreement_smoke_on_alpaca_eval_annotations():
    try:
        r = judge_agreement(longer, None, limit=4)
    except FileNotFoundError as exc:
        pytest.skip(f"alpaca-eval annotations not available: {exc}")
    assert r["n"] == 4 and 0.0 <= r["agreement"] <= 1.0 and r["position_bias_rate"] == 0.0


def test_alpaca_eval_task_with_scripted_model_and_judge():
    try:
        rows = load_alpaca_eval()
    except FileNotFoundError as exc:
        pytest.skip(f"alpaca-eval outputs not available: {exc}")
    assert len(rows) == 805 and rows[0]["instruction"] and rows[0]["output"]

    def marked(prompt, *, max_new_tokens, stop=()):  # prefers the answer holding "XYZZY"
        return "[[A]]" if "XYZZY" in _answers(prompt)[0] else "[[B]]"

    task = AlpacaEvalTask(judge=marked)
    examples = task.examples(limit=3)
    assert [e.metadata["id"] for e in examples] == ["alpaca_eval-0", "alpaca_eval-1",
                                                    "alpaca_eval-2"]  # fmt: skip

    def verbose(prompt, *, max_new_tokens, stop=()):
        return Generation("XYZZY " * 10, "length", max_new_tokens)

    results = [task.evaluate(verbose, e, max_new_tokens=8) for e in examples]
    assert all(r.correct and r.metadata["outcome"] == "win" for r in results)
    m = task.metrics(results)
    assert m["win_rate"] == 1.0 and m["hit_max_tokens"] == 1.0 and m["position_bias_rate"] == 0
    self_judged = AlpacaEvalTask()  # no judge: the model judges itself, here always "[[A]]"
    r = self_judged.evaluate(always_a, examples[0])
    assert r.metadata["outcome"] == "tie" and r.metadata["verdicts"] == ["A", "A"]
    with pytest.raises(ValueError, match="judge is None"):
        self_judged.score(examples[0], "text")
